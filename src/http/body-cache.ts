/**
 * Encoded answers kept per query while the data they were built from is unchanged. A store's version
 * (a counter it moves on every change) is the validity check: an answer built at another version is
 * never served. Bounded in entries and in the size of each body, so a few huge answers cannot pin
 * memory.
 */
export class BodyCache {
  private readonly bodies = new Map<string, { version: number; body: Buffer }>();

  constructor(private readonly limits: { entries: number; maxBytes: number }) {}

  /** The body kept for `key` at `version`, if any. */
  get(key: string, version: number): Buffer | undefined {
    const hit = this.bodies.get(key);
    return hit && hit.version === version ? hit.body : undefined;
  }

  set(key: string, version: number, body: Buffer): void {
    this.bodies.delete(key);
    if (body.length > this.limits.maxBytes) return;
    // Oldest insertion out first; a Map iterates in insertion order.
    while (this.bodies.size >= this.limits.entries) {
      this.bodies.delete(this.bodies.keys().next().value as string);
    }
    this.bodies.set(key, { version, body });
  }
}
