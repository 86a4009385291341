import { GpuPoller, MockBackend, detectBackend, findMockModel } from '../gpu/index.js';
import type { ActivitySource, BackendCandidate, Detection, GpuBackend, GpuStore } from '../gpu/index.js';
import type { AgentConfig } from './config.js';
import type { Logger } from './logging/logger.js';

/** How long auto-detection waits for one backend's probe. */
const PROBE_TIMEOUT_MS = 5000;

/** The real backends auto-detection tries, in order: NVML, DCGM, nvidia-smi. */
function candidates(_config: AgentConfig): BackendCandidate[] {
  return [];
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
  const all = candidates(config);
  if (config.gpuBackend === 'auto') return detectBackend(all, { probeTimeoutMs: PROBE_TIMEOUT_MS, logger });
  // A backend named explicitly is used without probing: if it fails, its samples say why.
  const named = all.find((c) => c.name === config.gpuBackend);
  if (named) return { backend: named.create(), attempts: [] };
  return {
    backend: undefined,
    attempts: [],
    reason: `GPU backend "${config.gpuBackend}" is not available in this build; set MOCK_GPU=1 to simulate GPUs`,
  };
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
