/**
 * Failure categories shared by every backend, used in logs, per-minute summaries and the
 * `agent_gpu_sample_failures_total{category}` metric. Kept to a small, bounded set.
 */
export type FailureCategory =
  | 'spawn'
  | 'timeout'
  | `exit:${number}`
  | 'parse'
  | 'not_supported'
  | 'connect'
  | `status:${number}`
  | 'library'
  | 'injected'
  | 'unknown';

export class GpuError extends Error {
  constructor(
    readonly category: FailureCategory,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'GpuError';
  }
}

/** The category of any thrown value: a GpuError's own, an abort's `timeout`, otherwise `unknown`. */
export function categorize(err: unknown): FailureCategory {
  if (err instanceof GpuError) return err.category;
  if (err instanceof Error && (err.name === 'AbortError' || err.name === 'TimeoutError')) return 'timeout';
  return 'unknown';
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
