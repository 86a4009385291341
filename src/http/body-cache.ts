/**
 * Encoded answers kept per query while the data they were built from is unchanged. A store's version
 * (a counter it moves on every change) is the validity check: an answer built at another version is
 * never served, and is let go as soon as the version moves on. Bounded in entries and in the size of
 * each body, so a few huge answers cannot pin memory.
 */
export class BodyCache {
  private readonly bodies = new Map<string, { version: number; body: Buffer }>();

  constructor(private readonly limits: { entries: number; maxBytes: number }) {}

  /** Bodies kept now. */
  get size(): number {
    return this.bodies.size;
  }

  /** The body kept for `key` at `version`, if any. */
  get(key: string, version: number): Buffer | undefined {
    const hit = this.bodies.get(key);
    if (hit && hit.version === version) return hit.body;
    // Versions only move on: a body built at an older one can never be served again.
    if (hit && hit.version < version) this.bodies.delete(key);
    return undefined;
  }

  /** Keeps `body` for `key`; bodies of older versions are let go. */
  set(key: string, version: number, body: Buffer): void {
    this.bodies.delete(key);
    for (const [k, v] of this.bodies) if (v.version < version) this.bodies.delete(k);
    if (body.length > this.limits.maxBytes) return;
    // Oldest insertion out first; a Map iterates in insertion order.
    while (this.bodies.size >= this.limits.entries) {
      this.bodies.delete(this.bodies.keys().next().value as string);
    }
    this.bodies.set(key, { version, body });
  }
}
