export type Phase = 'starting' | 'running' | 'draining' | 'stopped';

/** Where the agent is in its life; `/ready` and `/debug/status` read it. */
export class Lifecycle {
  private current: Phase = 'starting';
  private readonly listeners = new Set<(phase: Phase, previous: Phase) => void>();

  get phase(): Phase {
    return this.current;
  }

  /** Moves forward only: a draining agent never becomes running again. */
  advance(to: Phase): boolean {
    const order: Phase[] = ['starting', 'running', 'draining', 'stopped'];
    if (order.indexOf(to) <= order.indexOf(this.current)) return false;
    const previous = this.current;
    this.current = to;
    for (const l of this.listeners) {
      try {
        l(to, previous);
      } catch {
        // Listeners never stop a shutdown.
      }
    }
    return true;
  }

  subscribe(listener: (phase: Phase, previous: Phase) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
