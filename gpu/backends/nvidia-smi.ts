import { GpuError, categorize, errorMessage } from '../errors.js';
import {
  COMPUTE_APPS_FIELDS,
  chooseQueryFields,
  parseComputeAppsCsv,
  parseHelpQueryGpu,
  parseNvidiaSmiXml,
  parseQueryGpuCsv,
  withComputeApps,
} from '../parsers/index.js';
import type { NvidiaSmiXmlReport } from '../parsers/index.js';
import { runCommand } from '../process.js';
import type { SpawnFn } from '../process.js';
import type { ProbeResult } from '../detect.js';
import { silentLogger } from '../types.js';
import type { GpuBackend, GpuDevice, GpuLogger, GpuSample } from '../types.js';

export interface NvidiaSmiOptions {
  /** @defaultValue 'nvidia-smi' (found on PATH) */
  path?: string;
  /**
   * Longest one nvidia-smi run may take; the poller's own deadline usually ends it sooner.
   * @defaultValue 10 000
   */
  commandTimeoutMs?: number;
  /**
   * How often the full `-q -x` report is taken alongside the CSV fast path, for what CSV lacks
   * (process types, PCIe throughput, CUDA version) and for GET /debug/gpu. With MIG on it runs with
   * every sample, as MIG instances are only in the report.
   * @defaultValue 30 000
   */
  detailIntervalMs?: number;
  logger?: GpuLogger;
  spawn?: SpawnFn;
  now?: () => number;
}

/** The newest `-q -x` report: its text (for views that show it whole) and what it says. */
export interface NvidiaSmiDetail {
  takenAt: number;
  xml: string;
  report: NvidiaSmiXmlReport;
}

/** What the first run of a backend found out about this nvidia-smi. */
type Mode = { kind: 'csv'; fields: string[] } | { kind: 'xml'; why: string };

const FORMAT = 'csv,noheader,nounits';

/**
 * nvidia-smi as a GPU source. The fast path is two CSV queries run side by side (`--query-gpu` with
 * the fields this driver supports, checked once against `--help-query-gpu`, and
 * `--query-compute-apps`); the full `-q -x` report fills in what CSV lacks every `detailIntervalMs`,
 * and every sample under MIG. An nvidia-smi without the CSV queries is read through `-q -x` alone.
 * Every run has a deadline and is killed with its process group when it passes or the poller aborts.
 */
export class NvidiaSmiBackend implements GpuBackend {
  readonly name = 'nvidia-smi' as const;
  private readonly path: string;
  private readonly timeoutMs: number;
  private readonly detailIntervalMs: number;
  private readonly logger: GpuLogger;
  private readonly now: () => number;
  private mode: Mode | undefined;
  private detail: NvidiaSmiDetail | undefined;
  private detailFailures = 0;
  private closed = false;

  constructor(private readonly options: NvidiaSmiOptions = {}) {
    this.path = options.path ?? 'nvidia-smi';
    this.timeoutMs = options.commandTimeoutMs ?? 10_000;
    this.detailIntervalMs = options.detailIntervalMs ?? 30_000;
    this.logger = options.logger ?? silentLogger;
    this.now = options.now ?? Date.now;
  }

  /** The newest full report, for GET /debug/gpu. */
  latestDetail(): NvidiaSmiDetail | undefined {
    return this.detail;
  }

  async sample(signal: AbortSignal): Promise<GpuSample> {
    if (this.closed) throw new GpuError('library', 'nvidia-smi backend is closed');
    this.mode ??= await this.discover(signal);
    if (this.mode.kind === 'xml') return this.sampleXml(signal);
    try {
      return await this.sampleCsv(this.mode.fields, signal);
    } catch (err) {
      // Output that does not parse as the CSV asked for means this nvidia-smi does not speak it
      // (some wrappers and old builds answer every call with -q -x): use the report from now on.
      if (categorize(err) !== 'parse' || signal.aborted) throw err;
      this.mode = { kind: 'xml', why: `CSV output did not parse: ${errorMessage(err)}` };
      this.logger.warn({ data: { reason: this.mode.why } }, 'nvidia-smi: reading -q -x from now on');
      return this.sampleXml(signal);
    }
  }

  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }

  /** Finds the query fields this driver supports, once. */
  private async discover(signal: AbortSignal): Promise<Mode> {
    let text: string;
    try {
      text = (await this.run(['--help-query-gpu'], signal)).stdout;
    } catch (err) {
      if (signal.aborted || categorize(err) === 'spawn' || categorize(err) === 'timeout') throw err;
      return this.xmlMode(`--help-query-gpu failed: ${errorMessage(err)}`);
    }
    const fields = chooseQueryFields(parseHelpQueryGpu(text));
    const essential = ['uuid', 'memory.total', 'memory.used'];
    if (!essential.every((f) => fields.includes(f) || fields.some((x) => x === `gpu_${f}`))) {
      return this.xmlMode('--help-query-gpu lists none of the fields the fast path needs');
    }
    this.logger.info({ data: { fields: fields.length } }, 'nvidia-smi: CSV fast path');
    return { kind: 'csv', fields };
  }

  private xmlMode(why: string): Mode {
    this.logger.warn({ data: { reason: why } }, 'nvidia-smi: reading -q -x only');
    return { kind: 'xml', why };
  }

  private async sampleCsv(fields: string[], signal: AbortSignal): Promise<GpuSample> {
    const wantDetail = this.detailDue();
    const [gpus, apps, detail] = await Promise.all([
      this.run([`--query-gpu=${fields.join(',')}`, `--format=${FORMAT}`], signal),
      this.run([`--query-compute-apps=${COMPUTE_APPS_FIELDS.join(',')}`, `--format=${FORMAT}`], signal),
      wantDetail ? this.refreshDetail(signal) : Promise.resolve(undefined),
    ]);
    const parsed = parseQueryGpuCsv(gpus.stdout, fields, {});
    let devices = withComputeApps(parsed.devices, parseComputeAppsCsv(apps.stdout, COMPUTE_APPS_FIELDS, {}));
    // MIG instances are only in the report: with MIG on, take it now if it was not just taken.
    if (!detail && devices.some((d) => d.mig?.enabled)) await this.refreshDetail(signal);
    if (this.detail) devices = devices.map((d) => fillFrom(d, this.detail!.report.devices));
    return {
      takenAt: this.now(),
      driverVersion: parsed.driverVersion ?? this.detail?.report.driverVersion,
      cudaVersion: this.detail?.report.cudaVersion,
      devices,
      detail: this.detail ? { format: 'nvidia-smi-xml', data: this.detail } : undefined,
    };
  }

  private async sampleXml(signal: AbortSignal): Promise<GpuSample> {
    const detail = await this.takeDetail(signal);
    return {
      takenAt: detail.takenAt,
      driverVersion: detail.report.driverVersion,
      cudaVersion: detail.report.cudaVersion,
      devices: detail.report.devices,
      detail: { format: 'nvidia-smi-xml', data: detail },
    };
  }

  private detailDue(): boolean {
    return !this.detail || this.now() - this.detail.takenAt >= this.detailIntervalMs;
  }

  private async takeDetail(signal: AbortSignal): Promise<NvidiaSmiDetail> {
    const { stdout } = await this.run(['-q', '-x'], signal);
    const detail = {
      takenAt: this.now(),
      xml: stdout,
      report: parseNvidiaSmiXml(stdout, { supportedClocks: false }),
    };
    this.detail = detail;
    return detail;
  }

  /** The report for the CSV path: its failure is logged, never fails the sample. */
  private async refreshDetail(signal: AbortSignal): Promise<NvidiaSmiDetail | undefined> {
    try {
      const d = await this.takeDetail(signal);
      this.detailFailures = 0;
      return d;
    } catch (err) {
      if (signal.aborted) throw err;
      // Once at WARN, then quietly: an nvidia-smi without -x support fails the same way every time.
      if (this.detailFailures++ === 0)
        this.logger.warn({ data: { error: errorMessage(err) } }, 'nvidia-smi -q -x failed');
      else this.logger.debug({ data: { error: errorMessage(err) } }, 'nvidia-smi -q -x failed');
      return undefined;
    }
  }

  private async run(args: string[], signal: AbortSignal): Promise<{ stdout: string }> {
    const r = await runCommand(this.path, args, {
      timeoutMs: this.timeoutMs,
      signal,
      spawn: this.options.spawn,
    });
    if (r.stderr.trim())
      this.logger.debug(
        { data: { args: args[0], stderr: r.stderr.trim().slice(0, 500) } },
        'nvidia-smi stderr',
      );
    return r;
  }
}

/**
 * A CSV reading completed with what the full report knows and CSV does not carry (MIG instances,
 * process types, PCIe throughput): the CSV value wins wherever it has one, as it is the newer.
 */
function fillFrom(d: GpuDevice, reportDevices: readonly GpuDevice[]): GpuDevice {
  // By UUID; by position only when the CSV did not give one, so two GPUs can never be mixed up.
  const r = d.uuid
    ? reportDevices.find((x) => x.uuid === d.uuid)
    : reportDevices.find((x) => x.index === d.index);
  if (!r) return d;
  const out: GpuDevice = { ...r, ...stripUndefined(d) };
  out.memory = { ...r.memory, ...stripUndefined(d.memory) };
  out.utilization = { ...r.utilization, ...stripUndefined(d.utilization) };
  if (r.mig) out.mig = r.mig;
  // Types come from the report; memory and the process list from the fresher compute-apps query.
  out.processes = d.processes.map((p) => ({
    ...p,
    type: p.type ?? r.processes.find((q) => q.pid === p.pid)?.type,
  }));
  return out;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Auto-detection's check: `nvidia-smi -L` lists at least one GPU. */
export async function probeNvidiaSmi(
  signal: AbortSignal,
  path = 'nvidia-smi',
  spawn?: SpawnFn,
): Promise<ProbeResult> {
  try {
    const { stdout } = await runCommand(path, ['-L'], { timeoutMs: 10_000, signal, spawn });
    const gpus = stdout.split('\n').filter((l) => /^GPU \d+:/.test(l)).length;
    return gpus > 0
      ? { ok: true, detail: `${gpus} GPU(s) listed` }
      : { ok: false, reason: 'nvidia-smi -L lists no GPU' };
  } catch (err) {
    return { ok: false, reason: `nvidia-smi: ${errorMessage(err)}` };
  }
}
