import { GpuError, categorize, errorMessage } from './errors.js';
import type { GpuStore } from './store.js';
import { systemClock, silentLogger } from './types.js';
import type { Clock, GpuBackend, GpuLogger, GpuSample } from './types.js';

export interface PollerOptions {
  backend: GpuBackend;
  store: GpuStore;
  /** Time between the starts of two samples while the backend is healthy. */
  intervalMs: number;
  /** A sample still running after this is aborted and counted as a `timeout` failure. */
  sampleTimeoutMs: number;
  /**
   * Upper bound of the wait after consecutive failures (it doubles from `intervalMs`). Kept small by
   * default: a backend that answers again must be read within two intervals, and each attempt is
   * already bounded by its deadline, so waiting longer saves little.
   * @defaultValue 2 × intervalMs
   */
  maxBackoffMs?: number;
  /** @defaultValue 60 000 — one INFO summary per window, so a silent source is still visible. */
  summaryIntervalMs?: number;
  clock?: Clock;
  logger?: GpuLogger;
}

/** The wait before the next sample: the rest of the interval while healthy, doubling after failures. */
export function nextDelayMs(
  consecutiveFailures: number,
  elapsedMs: number,
  intervalMs: number,
  maxBackoffMs: number,
): number {
  if (consecutiveFailures === 0) return Math.max(0, intervalMs - elapsedMs);
  const exponent = Math.min(consecutiveFailures - 1, 30);
  return Math.min(intervalMs * 2 ** exponent, Math.max(maxBackoffMs, intervalMs));
}

interface Window {
  samples: number;
  failures: Record<string, number>;
  durationMsTotal: number;
}

/**
 * Samples one backend on a fixed cadence. Runs never overlap; each has a deadline enforced through an
 * AbortSignal *and* by racing it, so a backend that ignores the signal still cannot stall the loop.
 * A backend call abandoned that way is not called again until it settles, which bounds the work a
 * wedged driver can pile up to one call. The loop never throws.
 */
export class GpuPoller {
  private readonly clock: Clock;
  private readonly logger: GpuLogger;
  private readonly maxBackoffMs: number;
  private readonly summaryIntervalMs: number;
  private running = false;
  private timer: unknown;
  private summaryTimer: unknown;
  private inFlight: Promise<void> | undefined;
  private inFlightAbort: AbortController | undefined;
  private abandoned: Promise<unknown> | undefined;
  private window: Window = { samples: 0, failures: {}, durationMsTotal: 0 };

  constructor(private readonly options: PollerOptions) {
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger ?? silentLogger;
    this.maxBackoffMs = options.maxBackoffMs ?? 2 * options.intervalMs;
    this.summaryIntervalMs = options.summaryIntervalMs ?? 60_000;
  }

  get isRunning(): boolean {
    return this.running;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.schedule(0);
    this.scheduleSummary();
  }

  /** Stops the loop and aborts a sample in progress; resolves once that sample has settled. */
  async stop(): Promise<void> {
    this.running = false;
    this.clock.clearTimeout(this.timer);
    this.clock.clearTimeout(this.summaryTimer);
    this.inFlightAbort?.abort(new GpuError('timeout', 'poller stopped'));
    await this.inFlight;
  }

  /** One sample, recorded in the store. Never throws. Exposed for tests and one-shot use. */
  pollOnce(): Promise<void> {
    const run = this.sampleAndRecord();
    this.inFlight = run;
    return run.finally(() => {
      if (this.inFlight === run) this.inFlight = undefined;
    });
  }

  private schedule(delayMs: number): void {
    this.timer = this.clock.setTimeout(() => void this.tick(), delayMs);
  }

  private async tick(): Promise<void> {
    if (!this.running) return;
    const startedAt = this.clock.now();
    await this.pollOnce();
    if (!this.running) return;
    const status = this.options.store.status(this.clock.now());
    this.schedule(
      nextDelayMs(
        status.consecutiveFailures,
        this.clock.now() - startedAt,
        this.options.intervalMs,
        this.maxBackoffMs,
      ),
    );
  }

  private async sampleAndRecord(): Promise<void> {
    const { backend, store, sampleTimeoutMs } = this.options;
    const startedAt = this.clock.now();
    const wasUp = store.status(startedAt).up;
    let sample: GpuSample | undefined;
    let failure: unknown;

    if (this.abandoned) {
      failure = new GpuError('timeout', 'backend is still busy with a sample abandoned at its deadline');
    } else {
      const abort = new AbortController();
      this.inFlightAbort = abort;
      const deadline = this.clock.setTimeout(
        () => abort.abort(new GpuError('timeout', `sample took longer than ${sampleTimeoutMs} ms`)),
        sampleTimeoutMs,
      );
      let call: Promise<GpuSample>;
      try {
        call = backend.sample(abort.signal);
      } catch (err) {
        call = Promise.reject(err instanceof Error ? err : new Error(String(err)));
      }
      try {
        sample = await Promise.race([call, rejectOnAbort(abort.signal)]);
      } catch (err) {
        failure = err;
        if (abort.signal.aborted) this.abandon(call);
      } finally {
        this.clock.clearTimeout(deadline);
        this.inFlightAbort = undefined;
      }
    }

    const endedAt = this.clock.now();
    const durationMs = endedAt - startedAt;
    this.window.samples++;
    this.window.durationMsTotal += durationMs;
    if (sample) {
      store.recordSuccess(sample, durationMs, endedAt);
      this.logger.debug(
        { data: { backend: backend.name, duration_ms: durationMs, devices: sample.devices.length } },
        'gpu sample taken',
      );
      if (!wasUp && store.status(endedAt).samplesTotal > 1) {
        this.logger.info({ data: { backend: backend.name } }, 'gpu backend is up again');
      }
      return;
    }
    const category = categorize(failure);
    const message = errorMessage(failure);
    store.recordFailure(category, message, durationMs, endedAt);
    this.window.failures[category] = (this.window.failures[category] ?? 0) + 1;
    const fields = { data: { backend: backend.name, category, error: message, duration_ms: durationMs } };
    if (wasUp || store.status(endedAt).samplesTotal === 1) this.logger.warn(fields, 'gpu backend is down');
    else this.logger.debug(fields, 'gpu sample failed');
  }

  /** Keeps a reference to a call that outlived its deadline until it settles, whatever it does. */
  private abandon(call: Promise<GpuSample>): void {
    const settled = call.then(
      () => undefined,
      () => undefined,
    );
    this.abandoned = settled;
    void settled.then(() => {
      if (this.abandoned === settled) this.abandoned = undefined;
    });
  }

  private scheduleSummary(): void {
    this.summaryTimer = this.clock.setTimeout(() => {
      this.logSummary();
      if (this.running) this.scheduleSummary();
    }, this.summaryIntervalMs);
  }

  private logSummary(): void {
    const w = this.window;
    this.window = { samples: 0, failures: {}, durationMsTotal: 0 };
    const status = this.options.store.status(this.clock.now());
    const latest = this.options.store.latest();
    this.logger.info(
      {
        data: {
          backend: this.options.backend.name,
          samples: w.samples,
          failures: w.failures,
          mean_duration_ms: w.samples ? Math.round((w.durationMsTotal / w.samples) * 10) / 10 : undefined,
          devices: latest?.devices.length ?? 0,
          up: status.up,
          stale: status.stale,
          sample_age_ms: status.sampleAgeMs,
        },
      },
      'gpu poller summary',
    );
  }
}

function rejectOnAbort(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    const fail = (): void => {
      reject(signal.reason instanceof Error ? signal.reason : new GpuError('timeout', 'sample aborted'));
    };
    if (signal.aborted) fail();
    else signal.addEventListener('abort', fail, { once: true });
  });
}
