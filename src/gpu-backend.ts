import {
  DcgmExporterBackend,
  DcgmiBackend,
  GpuPoller,
  MockBackend,
  NvidiaSmiBackend,
  NvmlBackend,
  detectBackend,
  findMockModel,
  probeDcgm,
  probeNvidiaSmi,
  probeNvml,
} from '../gpu/index.js';
import type { ActivitySource, BackendCandidate, Detection, GpuBackend, GpuStore } from '../gpu/index.js';
import type { AgentConfig } from './config.js';
import type { Logger } from './logging/logger.js';

/** How long auto-detection waits for one backend's probe. */
const PROBE_TIMEOUT_MS = 5000;

/** The real backends, in the order auto-detection tries them: NVML, DCGM, nvidia-smi. */
function candidates(config: AgentConfig, logger: Logger): BackendCandidate[] {
  const gpuLog = logger;
  let dcgmVia: 'dcgmi' | 'exporter' = config.dcgmExporterUrl ? 'exporter' : 'dcgmi';
  return [
    {
      name: 'nvml',
      probe: async () => {
        const r = await probeNvml({ libraryPath: config.nvmlLibraryPath, timeoutMs: PROBE_TIMEOUT_MS - 500 });
        return r.ok
          ? { ok: true, detail: `${r.deviceCount} GPU(s), driver ${r.driverVersion ?? 'unknown'}` }
          : r;
      },
      create: () => new NvmlBackend({ libraryPath: config.nvmlLibraryPath, logger: gpuLog }),
    },
    {
      name: 'dcgm',
      probe: async () => {
        const r = await probeDcgm({
          exporterUrl: config.dcgmExporterUrl,
          dcgmiBinary: config.dcgmiPath,
          host: config.dcgmHost,
          timeoutMs: PROBE_TIMEOUT_MS / 2 - 100,
        });
        if (!r.ok) return r;
        dcgmVia = r.via;
        return { ok: true, detail: `via ${r.via}` };
      },
      create: () =>
        dcgmVia === 'exporter' && config.dcgmExporterUrl
          ? new DcgmExporterBackend({ url: config.dcgmExporterUrl, logger: gpuLog })
          : new DcgmiBackend({
              binary: config.dcgmiPath,
              host: config.dcgmHost,
              intervalMs: config.gpuPollIntervalMs,
              logger: gpuLog,
            }),
    },
    {
      name: 'nvidia-smi',
      probe: (signal) => probeNvidiaSmi(signal, config.nvidiaSmiPath),
      create: () =>
        new NvidiaSmiBackend({
          path: config.nvidiaSmiPath,
          detailIntervalMs: config.nvidiaSmiDetailIntervalMs,
          logger: gpuLog,
        }),
    },
  ];
}

/** The backend the configuration asks for: the mock, one named backend, or the first that works. */
export async function chooseGpuBackend(
  config: AgentConfig,
  activity: ActivitySource,
  logger: Logger,
): Promise<Detection> {
  if (config.gpuBackend === 'mock') {
    const backend = new MockBackend({
      count: config.mockGpuCount,
      model: findMockModel(config.mockGpuModel),
      seed: config.mockGpuSeed,
      fault: config.mockGpuFault,
      activity,
    });
    return { backend, attempts: [] };
  }
  const all = candidates(config, logger);
  if (config.gpuBackend === 'auto') return detectBackend(all, { probeTimeoutMs: PROBE_TIMEOUT_MS, logger });
  // A backend named explicitly is used without probing: if it fails, its samples say why.
  const named = all.find((c) => c.name === config.gpuBackend);
  if (named) return { backend: named.create(), attempts: [] };
  return { backend: undefined, attempts: [], reason: `unknown GPU backend "${config.gpuBackend}"` };
}

/**
 * The GPU source of the agent: chooses the backend (auto-detection runs after the HTTP port is open,
 * so probes never delay /health), then polls it into the store until stopped.
 */
export class GpuSource {
  private backend: GpuBackend | undefined;
  private poller: GpuPoller | undefined;
  private starting: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly config: AgentConfig,
    private readonly store: GpuStore,
    private readonly activity: ActivitySource,
    private readonly logger: Logger,
  ) {}

  start(): void {
    this.starting ??= chooseGpuBackend(this.config, this.activity, this.logger)
      .then((d) => this.use(d))
      .catch((err: unknown) => {
        this.store.setSource('none', `GPU backend selection failed: ${(err as Error).message}`);
        this.logger.error({ error: err }, 'GPU backend selection failed');
      });
  }

  private use(d: Detection): void {
    if (!d.backend) {
      this.store.setSource('none', d.reason);
      this.logger.error({ data: { reason: d.reason, attempts: d.attempts } }, 'no GPU backend');
      return;
    }
    if (this.stopped) {
      void d.backend.close();
      return;
    }
    this.backend = d.backend;
    this.store.setSource(d.backend.name);
    this.logger.info({ data: { backend: d.backend.name, attempts: d.attempts } }, 'gpu backend selected');
    this.poller = new GpuPoller({
      backend: d.backend,
      store: this.store,
      intervalMs: this.config.gpuPollIntervalMs,
      sampleTimeoutMs: this.config.gpuSampleTimeoutMs,
      logger: this.logger,
    });
    this.poller.start();
  }

  /**
   * Whether a thread is stuck in a driver call: then the process cannot exit normally, as Node waits
   * for its threads (see exitImmediately).
   */
  hasWedgedThreads(): boolean {
    return this.backend instanceof NvmlBackend && this.backend.stats().abandonedWorkers > 0;
  }

  /** Stops polling and closes the backend; waits for a detection in progress. Idempotent. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.starting;
    await this.poller?.stop();
    await this.backend
      ?.close()
      .catch((err: unknown) => this.logger.warn({ error: err }, 'GPU backend did not close cleanly'));
    this.backend = undefined;
  }
}
