/** What `/debug/queue` and the readiness check know of the job queue. The queue worker provides one. */
export interface QueueView {
  readonly enabled: boolean;
  snapshot(now: number): Record<string, unknown>;
  readiness(now: number): { status: 'ok' | 'disabled' | 'failing' | 'starting'; reason?: string };
}

/** The queue view while no queue is configured. */
export function disabledQueue(reason: string): QueueView {
  return {
    enabled: false,
    snapshot: () => ({ enabled: false, reason }),
    readiness: () => ({ status: 'disabled', reason }),
  };
}
