import { RingBuffer } from './ring-buffer.js';
import type { FailureCategory } from './errors.js';
import type { BackendName, GpuSample } from './types.js';

/** One device's reading in the history, kept small so minutes of history cost little memory. */
export interface GpuHistoryPoint {
  index: number;
  gpuPercent?: number;
  memoryUsedBytes: number;
  powerW?: number;
  temperatureC?: number;
}

export interface GpuHistoryEntry {
  takenAt: number;
  devices: GpuHistoryPoint[];
}

export interface GpuFailure {
  category: FailureCategory;
  message: string;
  at: number;
}

export interface GpuSourceStatus {
  backend: BackendName | 'none';
  /** The last attempt succeeded. */
  up: boolean;
  /** No successful sample yet, or the last one is older than the stale threshold. */
  stale: boolean;
  /** Age of the newest good sample; undefined before the first. */
  sampleAgeMs?: number;
  lastSuccessAt?: number;
  lastAttemptAt?: number;
  lastDurationMs?: number;
  lastFailure?: GpuFailure;
  consecutiveFailures: number;
  samplesTotal: number;
  failuresTotal: number;
  failuresByCategory: Record<string, number>;
  /** Why there is no backend at all, when `backend` is `none`. */
  unavailableReason?: string;
  /** The backend is still being chosen (auto-detection running). */
  detecting: boolean;
}

export type GpuStoreEvent =
  | { type: 'sample'; sample: GpuSample; durationMs: number }
  | { type: 'failure'; failure: GpuFailure; durationMs: number }
  | { type: 'up'; up: boolean }
  | { type: 'source'; backend: BackendName | 'none' };

export interface GpuStoreOptions {
  /** `none` with `detecting` while auto-detection runs; see setSource. */
  backend: BackendName | 'none';
  detecting?: boolean;
  /** A sample older than this is stale. */
  staleAfterMs: number;
  /** How many samples the history keeps. */
  historySize: number;
  unavailableReason?: string;
}

/**
 * The newest GPU reading, a bounded history, and the source's health. Written only by the poller;
 * read by HTTP views and metrics, which never touch the hardware themselves.
 */
export class GpuStore {
  private latestSample: GpuSample | undefined;
  private readonly historyRing: RingBuffer<GpuHistoryEntry>;
  private readonly listeners = new Set<(e: GpuStoreEvent) => void>();
  private up = false;
  private lastSuccessAt: number | undefined;
  private lastAttemptAt: number | undefined;
  private lastDurationMs: number | undefined;
  private lastFailure: GpuFailure | undefined;
  private consecutiveFailures = 0;
  private samplesTotal = 0;
  private failuresTotal = 0;
  private readonly failuresByCategory: Record<string, number> = {};
  private source: { backend: BackendName | 'none'; detecting: boolean; unavailableReason?: string };

  constructor(private readonly options: GpuStoreOptions) {
    this.historyRing = new RingBuffer(options.historySize);
    this.source = {
      backend: options.backend,
      detecting: options.detecting ?? false,
      unavailableReason: options.unavailableReason,
    };
  }

  get backend(): BackendName | 'none' {
    return this.source.backend;
  }

  /** Records which backend feeds the store once detection has decided (or why there is none). */
  setSource(backend: BackendName | 'none', unavailableReason?: string): void {
    this.source = {
      backend,
      detecting: false,
      unavailableReason: backend === 'none' ? unavailableReason : undefined,
    };
    this.emit({ type: 'source', backend });
  }

  latest(): GpuSample | undefined {
    return this.latestSample;
  }

  history(): GpuHistoryEntry[] {
    return this.historyRing.toArray();
  }

  recordSuccess(sample: GpuSample, durationMs: number, at: number): void {
    this.latestSample = sample;
    this.lastSuccessAt = at;
    this.lastAttemptAt = at;
    this.lastDurationMs = durationMs;
    this.consecutiveFailures = 0;
    this.samplesTotal++;
    this.historyRing.push({
      takenAt: sample.takenAt,
      devices: sample.devices.map((d) => ({
        index: d.index,
        gpuPercent: d.utilization.gpuPercent,
        memoryUsedBytes: d.memory.usedBytes,
        powerW: d.powerW,
        temperatureC: d.temperatureC,
      })),
    });
    this.emit({ type: 'sample', sample, durationMs });
    this.setUp(true);
  }

  recordFailure(category: FailureCategory, message: string, durationMs: number, at: number): void {
    const failure = { category, message, at };
    this.lastFailure = failure;
    this.lastAttemptAt = at;
    this.lastDurationMs = durationMs;
    this.consecutiveFailures++;
    this.samplesTotal++;
    this.failuresTotal++;
    this.failuresByCategory[category] = (this.failuresByCategory[category] ?? 0) + 1;
    this.emit({ type: 'failure', failure, durationMs });
    this.setUp(false);
  }

  status(now: number): GpuSourceStatus {
    const ageMs = this.latestSample ? Math.max(0, now - this.latestSample.takenAt) : undefined;
    return {
      backend: this.source.backend,
      detecting: this.source.detecting,
      up: this.up,
      stale: ageMs === undefined || ageMs > this.options.staleAfterMs,
      sampleAgeMs: ageMs,
      lastSuccessAt: this.lastSuccessAt,
      lastAttemptAt: this.lastAttemptAt,
      lastDurationMs: this.lastDurationMs,
      lastFailure: this.lastFailure,
      consecutiveFailures: this.consecutiveFailures,
      samplesTotal: this.samplesTotal,
      failuresTotal: this.failuresTotal,
      failuresByCategory: { ...this.failuresByCategory },
      unavailableReason: this.source.unavailableReason,
    };
  }

  /** Returns the unsubscribe function. Listeners must not throw; a throwing one is ignored. */
  subscribe(listener: (e: GpuStoreEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private setUp(up: boolean): void {
    if (this.up === up) return;
    this.up = up;
    this.emit({ type: 'up', up });
  }

  private emit(e: GpuStoreEvent): void {
    for (const l of this.listeners) {
      try {
        l(e);
      } catch {
        // A view's listener failing must not stop the source from recording.
      }
    }
  }
}
