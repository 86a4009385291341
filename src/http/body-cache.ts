/**
 * Encoded answers kept per query while the data they were built from is unchanged. A store's version
 * (a counter it moves on every change) is the validity check: answers are kept for one version only,
 * and all of them are let go when a body is kept at a newer one. Bounded in entries and in the size of
 * each body, so a few huge answers cannot pin memory.
 */
export class BodyCache {
  private readonly bodies = new Map<string, Buffer>();
  /** The version every kept body was built at. */
  private version = -Infinity;

  constructor(private readonly limits: { entries: number; maxBytes: number }) {}

  /** Bodies kept now. */
  get size(): number {
    return this.bodies.size;
  }

  /** The body kept for `key` at `version`, if any. */
  get(key: string, version: number): Buffer | undefined {
    return version === this.version ? this.bodies.get(key) : undefined;
  }

  /** Keeps `body` for `key`; bodies of older versions are let go. */
  set(key: string, version: number, body: Buffer): void {
    if (version > this.version) {
      // Versions only move on: a body built at an older one can never be served again.
      this.bodies.clear();
      this.version = version;
    } else if (version < this.version) {
      return;
    }
    this.bodies.delete(key);
    if (body.length > this.limits.maxBytes) return;
    // Oldest insertion out first; a Map iterates in insertion order.
    while (this.bodies.size >= this.limits.entries) {
      this.bodies.delete(this.bodies.keys().next().value as string);
    }
    this.bodies.set(key, body);
  }
}
