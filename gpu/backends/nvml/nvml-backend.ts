import { Worker } from 'node:worker_threads';
import { GpuError, errorMessage } from '../../errors.js';
import type { FailureCategory } from '../../errors.js';
import { silentLogger, systemClock } from '../../types.js';
import type { Clock, GpuBackend, GpuDevice, GpuLogger, GpuSample, XidRecord } from '../../types.js';
import type {
  EventsToMain,
  InitInfo,
  MainToWorker,
  NvmlReading,
  NvmlWorkerData,
  SamplerReply,
} from './protocol.js';

/** Resolved next to this file, so it works from dist/ as it is laid out at build time. */
const WORKER_URL = new URL('./worker.js', import.meta.url);

export const DEFAULT_NVML_LIBRARY = 'libnvidia-ml.so.1';

export interface NvmlBackendOptions {
  /**
   * File name or path of NVML, as `dlopen` takes it.
   * @defaultValue 'libnvidia-ml.so.1'
   */
  libraryPath?: string;
  /**
   * Wait after the first failed load or nvmlInit before trying again; it doubles with each failure in a
   * row. Drivers often come up after the agent in a fresh pod, so init is retried, but not in a loop.
   * @defaultValue 1000
   */
  initRetryMinMs?: number;
  /** @defaultValue 60 000 */
  initRetryMaxMs?: number;
  /**
   * Worker threads stuck inside a driver call that may exist at once. A thread blocked in C cannot be
   * killed; past this many, `sample()` fails fast with `timeout` rather than starting yet another.
   * @defaultValue 2
   */
  maxAbandonedWorkers?: number;
  /**
   * Count XID errors through NVML's event API, in a thread of their own.
   * @defaultValue true
   */
  xidEvents?: boolean;
  /**
   * How long one nvmlEventSetWait blocks; also how late the event thread notices `close()`.
   * @defaultValue 500
   */
  eventWaitTimeoutMs?: number;
  /**
   * Read PCIe TX/RX throughput. NVML measures each direction over a 20 ms window inside the call, so
   * this costs about 40 ms of the sample per GPU.
   * @defaultValue true
   */
  pcieThroughput?: boolean;
  /**
   * How long `close()` waits for each worker to call nvmlShutdown and exit.
   * @defaultValue 2000
   */
  closeTimeoutMs?: number;
  clock?: Clock;
  logger?: GpuLogger;
}

export type XidMonitorState = 'off' | 'starting' | 'active' | 'unavailable' | 'stopped';

export interface NvmlBackendStats {
  /** Worker threads that have not exited: the sampler, the event thread and abandoned ones. */
  liveWorkers: number;
  /** Threads given up on at a deadline that have not returned from the driver yet. */
  abandonedWorkers: number;
  workersStarted: number;
  initAttempts: number;
  /** Failed load/init attempts in a row; 0 once NVML is up. */
  consecutiveInitFailures: number;
  /** Epoch ms before which no init is attempted, while init is failing. */
  nextInitAttemptAt?: number;
  /** The export bound for each capability (null where the library has none), once init succeeded. */
  symbols?: Record<string, string | null>;
  xid: { state: XidMonitorState; monitored: number[]; reason?: string };
}

/** A failure the worker reported; `reinit` asks for a fresh nvmlInit. */
class NvmlWorkerError extends GpuError {
  constructor(
    category: FailureCategory,
    message: string,
    readonly reinit: boolean,
  ) {
    super(category, message);
  }
}

function abortReason(signal: AbortSignal): Error {
  const r: unknown = signal.reason;
  return r instanceof Error ? r : new GpuError('timeout', 'sample aborted');
}

/** `p`, or a rejection with the abort reason as soon as `signal` aborts. */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(abortReason(signal));
  return new Promise<T>((resolve, reject) => {
    const abort = (): void => reject(abortReason(signal));
    signal.addEventListener('abort', abort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', abort);
        resolve(v);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', abort);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}

/**
 * One worker thread and the requests in flight to it. The thread keeps the process alive only while a
 * request waits for it, so an idle backend never holds the process open.
 */
class WorkerLink {
  readonly worker: Worker;
  readonly exited: Promise<void>;
  hasExited = false;
  /** Given up on: never referenced or asked anything again. */
  abandoned = false;
  /** Unsolicited messages (event reports, late replies of an abandoned worker). */
  onMessage: ((m: unknown) => void) | undefined;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private nextId = 1;

  constructor(data: NvmlWorkerData) {
    this.worker = new Worker(WORKER_URL, { workerData: data });
    this.worker.unref();
    this.worker.on('message', (m: SamplerReply) => this.receive(m));
    this.worker.on('error', (err) =>
      this.failAll(new GpuError('library', `NVML worker failed: ${err.message}`)),
    );
    this.exited = new Promise((resolve) => {
      this.worker.once('exit', () => {
        this.hasExited = true;
        this.failAll(new GpuError('library', 'NVML worker exited'));
        resolve();
      });
    });
  }

  /** Sends a request; rejects with the abort reason the moment `signal` aborts, whatever the thread does. */
  request<T>(msg: { type: 'init' | 'sample' }, signal: AbortSignal, onAbort: () => void): Promise<T> {
    if (signal.aborted) return Promise.reject(abortReason(signal));
    if (this.hasExited) return Promise.reject(new GpuError('library', 'NVML worker exited'));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const abort = (): void => {
        if (!this.pending.delete(id)) return;
        this.updateRef();
        reject(abortReason(signal));
        onAbort();
      };
      signal.addEventListener('abort', abort, { once: true });
      this.pending.set(id, {
        resolve: (v) => {
          signal.removeEventListener('abort', abort);
          resolve(v as T);
        },
        reject: (e) => {
          signal.removeEventListener('abort', abort);
          reject(e);
        },
      });
      this.updateRef();
      this.worker.postMessage({ ...msg, id } satisfies MainToWorker);
    });
  }

  post(msg: MainToWorker): void {
    if (!this.hasExited) this.worker.postMessage(msg);
  }

  failAll(err: Error): void {
    const all = [...this.pending.values()];
    this.pending.clear();
    this.updateRef();
    for (const p of all) p.reject(err);
  }

  private receive(m: SamplerReply): void {
    if (m.type === 'reply') {
      const p = this.pending.get(m.id);
      if (p) {
        this.pending.delete(m.id);
        this.updateRef();
        const r = m.result;
        if (r.ok) p.resolve(r.value);
        else p.reject(new NvmlWorkerError(r.category, r.message, r.reinit ?? false));
        return;
      }
    }
    this.onMessage?.(m);
  }

  private updateRef(): void {
    if (this.pending.size > 0 && !this.abandoned) this.worker.ref();
    else this.worker.unref();
  }
}

interface XidCounter {
  total: number;
  byXid: Record<string, number>;
  last?: XidRecord;
}

/**
 * GPU readings from NVML (libnvidia-ml) through koffi. The library is loaded and called only in worker
 * threads: the main thread never blocks on the driver. A call that outlives the sample's deadline cannot
 * be interrupted, so its thread is abandoned (and terminated if it ever comes back) and the next sample
 * gets a fresh one; at most `maxAbandonedWorkers` such threads exist. A second thread waits for XID
 * events and keeps per-device counts that every sample carries.
 *
 * Note for whoever owns process exit: Node joins worker threads when the process exits, so a thread
 * stuck in the driver also holds up `process.exit()`. `stats().abandonedWorkers > 0` says so.
 */
export class NvmlBackend implements GpuBackend {
  readonly name = 'nvml' as const;
  private readonly libraryPath: string;
  private readonly clock: Clock;
  private readonly logger: GpuLogger;
  private readonly retryMinMs: number;
  private readonly retryMaxMs: number;
  private readonly maxAbandoned: number;
  private readonly closeTimeoutMs: number;
  private sampler: WorkerLink | undefined;
  private starting: Promise<WorkerLink> | undefined;
  private startingLink: WorkerLink | undefined;
  private readonly abandoned = new Set<WorkerLink>();
  private events: WorkerLink | undefined;
  private eventsSupported = true;
  private nextEventsStartAt = 0;
  private xidState: XidMonitorState;
  private xidReason: string | undefined;
  private monitored: number[] = [];
  private readonly xid = new Map<number, XidCounter>();
  private consecutiveInitFailures = 0;
  private nextInitAt = 0;
  private lastInitError: Error | undefined;
  private workersStarted = 0;
  private initAttempts = 0;
  private symbols: Record<string, string | null> | undefined;
  private closed = false;
  private closing: Promise<void> | undefined;

  constructor(private readonly options: NvmlBackendOptions = {}) {
    this.libraryPath = options.libraryPath ?? DEFAULT_NVML_LIBRARY;
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger ?? silentLogger;
    this.retryMinMs = options.initRetryMinMs ?? 1000;
    this.retryMaxMs = options.initRetryMaxMs ?? 60_000;
    this.maxAbandoned = options.maxAbandonedWorkers ?? 2;
    this.closeTimeoutMs = options.closeTimeoutMs ?? 2000;
    this.xidState = options.xidEvents === false ? 'off' : 'starting';
  }

  async sample(signal: AbortSignal): Promise<GpuSample> {
    if (this.closed) throw new GpuError('library', 'NVML backend is closed');
    if (signal.aborted) throw abortReason(signal);
    const link = await this.readySampler(signal);
    let reading: NvmlReading;
    try {
      reading = await link.request<NvmlReading>({ type: 'sample' }, signal, () => this.abandon(link));
    } catch (err) {
      if (err instanceof NvmlWorkerError && err.reinit && this.sampler === link) {
        // The driver went away under this nvmlInit (unloaded, upgraded): start over, with backoff.
        this.sampler = undefined;
        this.recordInitFailure(err);
        this.stopEvents();
        void this.shutdownWorker(link);
      }
      throw err;
    }
    this.maybeStartEvents();
    return this.compose(reading);
  }

  close(): Promise<void> {
    this.closing ??= this.shutdownAll();
    return this.closing;
  }

  stats(): NvmlBackendStats {
    const live = [this.sampler, this.events, ...this.abandoned].filter((w) => w && !w.hasExited).length;
    return {
      liveWorkers: live,
      abandonedWorkers: this.abandoned.size,
      workersStarted: this.workersStarted,
      initAttempts: this.initAttempts,
      consecutiveInitFailures: this.consecutiveInitFailures,
      nextInitAttemptAt: this.consecutiveInitFailures > 0 ? this.nextInitAt : undefined,
      symbols: this.symbols,
      xid: { state: this.xidState, monitored: [...this.monitored], reason: this.xidReason },
    };
  }

  private spawn(data: NvmlWorkerData): WorkerLink {
    this.workersStarted++;
    return new WorkerLink(data);
  }

  private readySampler(signal: AbortSignal): Promise<WorkerLink> {
    if (this.sampler) return Promise.resolve(this.sampler);
    // Another sample is starting the worker; wait for it, but leave at this caller's own deadline.
    if (this.starting) return untilAborted(this.starting, signal);
    const now = this.clock.now();
    if (this.consecutiveInitFailures > 0 && now < this.nextInitAt) {
      const why = this.lastInitError ? errorMessage(this.lastInitError) : 'NVML init failed';
      return Promise.reject(
        new GpuError('library', `NVML unavailable: ${why} (next attempt in ${this.nextInitAt - now} ms)`),
      );
    }
    if (this.abandoned.size >= this.maxAbandoned) {
      return Promise.reject(
        new GpuError(
          'timeout',
          `${this.abandoned.size} NVML worker threads are still stuck in driver calls; not starting another`,
        ),
      );
    }
    const start = this.startSampler(signal);
    this.starting = start;
    const clear = (): void => {
      if (this.starting === start) this.starting = undefined;
    };
    start.then(clear, clear);
    return start;
  }

  private async startSampler(signal: AbortSignal): Promise<WorkerLink> {
    const link = this.spawn({
      role: 'sampler',
      libraryPath: this.libraryPath,
      pcieThroughput: this.options.pcieThroughput ?? true,
    });
    this.initAttempts++;
    this.startingLink = link;
    let info: InitInfo;
    try {
      info = await link.request<InitInfo>({ type: 'init' }, signal, () => this.abandon(link));
    } catch (err) {
      this.startingLink = undefined;
      if (!link.abandoned) {
        this.recordInitFailure(err);
        void this.shutdownWorker(link);
      }
      if (err instanceof NvmlWorkerError && err.category === 'library') {
        throw new GpuError('library', `NVML unavailable: ${err.message}`, { cause: err });
      }
      throw err;
    }
    this.startingLink = undefined;
    // close() already asked this worker to shut down.
    if (this.closed) throw new GpuError('library', 'NVML backend is closed');
    if (this.consecutiveInitFailures > 0 || !this.symbols) {
      this.logger.info(
        {
          data: {
            library: this.libraryPath,
            devices: info.deviceCount,
            driver_version: info.driverVersion,
            symbols: info.symbols,
            after_failures: this.consecutiveInitFailures,
          },
        },
        'NVML initialised',
      );
    }
    this.consecutiveInitFailures = 0;
    this.lastInitError = undefined;
    this.symbols = info.symbols;
    this.eventsSupported = info.hasEvents;
    if (!info.hasEvents && this.xidState !== 'off') {
      this.xidState = 'unavailable';
      this.xidReason = 'the library exports no event API';
    }
    this.sampler = link;
    link.onMessage = undefined;
    void link.exited.then(() => {
      if (this.sampler !== link) return;
      // Died on its own (a crash in the worker): treat it like a failed init so restarts are paced.
      this.sampler = undefined;
      this.recordInitFailure(new GpuError('library', 'NVML worker exited unexpectedly'));
    });
    return link;
  }

  private recordInitFailure(err: unknown): void {
    this.consecutiveInitFailures++;
    const delay = Math.min(
      this.retryMinMs * 2 ** Math.min(this.consecutiveInitFailures - 1, 30),
      this.retryMaxMs,
    );
    this.nextInitAt = this.clock.now() + delay;
    this.lastInitError = err instanceof Error ? err : new Error(String(err));
    this.logger.debug(
      { data: { error: errorMessage(err), failures: this.consecutiveInitFailures, retry_in_ms: delay } },
      'NVML init failed',
    );
  }

  /** The thread is inside a call that missed its deadline: forget it, and end it if it ever returns. */
  private abandon(link: WorkerLink): void {
    if (link.abandoned) return;
    link.abandoned = true;
    if (this.sampler === link) this.sampler = undefined;
    link.worker.unref();
    if (link.hasExited) return;
    this.abandoned.add(link);
    link.onMessage = () => void link.worker.terminate();
    void link.exited.then(() => this.abandoned.delete(link));
    this.logger.warn(
      { data: { abandoned_workers: this.abandoned.size, max: this.maxAbandoned } },
      'NVML call missed its deadline; its worker thread is abandoned',
    );
  }

  private maybeStartEvents(): void {
    if (this.events || this.closed || this.xidState === 'off' || !this.eventsSupported) return;
    if (this.clock.now() < this.nextEventsStartAt) return;
    const link = this.spawn({
      role: 'events',
      libraryPath: this.libraryPath,
      eventWaitTimeoutMs: this.options.eventWaitTimeoutMs ?? 500,
    });
    this.events = link;
    this.xidState = 'starting';
    link.onMessage = (m) => this.onEvent(m as EventsToMain);
    link.worker.on('error', (err) =>
      this.logger.warn({ data: { error: err.message } }, 'NVML event thread failed'),
    );
    void link.exited.then(() => {
      if (this.events !== link) return;
      this.events = undefined;
      if (this.xidState === 'active' || this.xidState === 'starting') this.xidState = 'stopped';
      // The counts so far stay; the thread is started again on a later sample, not in a loop.
      this.nextEventsStartAt = this.clock.now() + this.retryMaxMs;
    });
  }

  private onEvent(m: EventsToMain): void {
    switch (m.type) {
      case 'events-ready':
        this.monitored = m.monitored;
        for (const i of m.monitored) if (!this.xid.has(i)) this.xid.set(i, { total: 0, byXid: {} });
        if (m.monitored.length === 0) {
          this.setUnavailable('no device supports XID events');
          return;
        }
        this.xidState = 'active';
        this.xidReason = undefined;
        this.logger.info({ data: { monitored: m.monitored } }, 'NVML XID event monitoring started');
        return;
      case 'events-unavailable':
        this.setUnavailable(m.reason);
        return;
      case 'xid': {
        const c = this.xid.get(m.device) ?? { total: 0, byXid: {} };
        c.total++;
        c.byXid[String(m.xid)] = (c.byXid[String(m.xid)] ?? 0) + 1;
        c.last = { xid: m.xid, at: this.clock.now() };
        this.xid.set(m.device, c);
        this.logger.warn(
          { data: { gpu: m.device, xid: m.xid, gpu_instance_id: m.gpuInstanceId } },
          'GPU XID error',
        );
        return;
      }
      case 'events-error':
        this.logger.warn({ data: { error: m.message } }, 'NVML event wait failed');
        return;
      case 'closed':
        return;
    }
  }

  private setUnavailable(reason: string): void {
    // Retried every initRetryMaxMs; only a change of reason is news worth an INFO line.
    if (reason !== this.xidReason) this.logger.info({ data: { reason } }, 'NVML XID events unavailable');
    this.xidState = 'unavailable';
    this.xidReason = reason;
  }

  private stopEvents(): void {
    const link = this.events;
    if (!link) return;
    this.events = undefined;
    this.xidState = 'stopped';
    void this.shutdownWorker(link);
  }

  private compose(reading: NvmlReading): GpuSample {
    const devices: GpuDevice[] = reading.devices.map((d) => {
      const c = this.xid.get(d.index);
      return c ? { ...d, xidErrors: { total: c.total, byXid: { ...c.byXid }, last: c.last } } : d;
    });
    return {
      takenAt: this.clock.now(),
      driverVersion: reading.driverVersion,
      cudaVersion: reading.cudaVersion,
      devices,
    };
  }

  /** Asks the worker to call nvmlShutdown and exit; past `closeTimeoutMs` it is terminated and left. */
  private async shutdownWorker(link: WorkerLink): Promise<void> {
    if (link.hasExited) return;
    // Held while it shuts down, so a caller awaiting close() is not cut short by an empty event loop.
    link.worker.ref();
    link.post({ type: 'close' });
    let timer: unknown;
    const timedOut = new Promise<boolean>((resolve) => {
      timer = this.clock.setTimeout(() => resolve(true), this.closeTimeoutMs);
    });
    const late = await Promise.race([link.exited.then(() => false), timedOut]);
    this.clock.clearTimeout(timer);
    if (late) {
      link.failAll(new GpuError('library', 'NVML backend closed'));
      link.worker.unref();
      void link.worker.terminate();
    }
  }

  private async shutdownAll(): Promise<void> {
    this.closed = true;
    // A worker still in its init is asked too: its 'close' waits behind the init, within the bound.
    const links = [this.sampler, this.startingLink, this.events].filter(
      (l): l is WorkerLink => l !== undefined && !l.abandoned,
    );
    this.sampler = undefined;
    this.events = undefined;
    if (this.xidState !== 'off') this.xidState = 'stopped';
    for (const link of this.abandoned) void link.worker.terminate();
    await Promise.all(links.map((l) => this.shutdownWorker(l)));
  }
}

export interface ProbeNvmlOptions {
  /** @defaultValue 'libnvidia-ml.so.1' */
  libraryPath?: string;
  /**
   * Deadline for loading the library and nvmlInit.
   * @defaultValue 5000
   */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export type NvmlProbeResult =
  { ok: true; deviceCount: number; driverVersion?: string } | { ok: false; reason: string };

/**
 * Whether NVML can be used here: loads the library and runs nvmlInit in a worker thread, within a
 * deadline. For auto-detection; never throws.
 */
export async function probeNvml(opts: ProbeNvmlOptions = {}): Promise<NvmlProbeResult> {
  const timeoutMs = opts.timeoutMs ?? 5000;
  const abort = new AbortController();
  const timer = setTimeout(
    () => abort.abort(new GpuError('timeout', `NVML did not initialise within ${timeoutMs} ms`)),
    timeoutMs,
  );
  const onOuterAbort = (): void => abort.abort(opts.signal?.reason);
  opts.signal?.addEventListener('abort', onOuterAbort, { once: true });
  if (opts.signal?.aborted) onOuterAbort();
  let link: WorkerLink | undefined;
  try {
    link = new WorkerLink({ role: 'sampler', libraryPath: opts.libraryPath ?? DEFAULT_NVML_LIBRARY });
    const wedged = link;
    const info = await link.request<InitInfo>({ type: 'init' }, abort.signal, () => {
      wedged.abandoned = true;
      wedged.onMessage = () => void wedged.worker.terminate();
    });
    if (info.deviceCount === 0) return { ok: false, reason: 'NVML initialised but reports no GPUs' };
    return { ok: true, deviceCount: info.deviceCount, driverVersion: info.driverVersion };
  } catch (err) {
    return { ok: false, reason: errorMessage(err) };
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener('abort', onOuterAbort);
    if (link && !link.abandoned) link.post({ type: 'close' });
  }
}
