/**
 * A fixed-capacity FIFO: pushing past capacity overwrites the oldest item. Every bounded store in the
 * agent (log records, GPU history, recent events) uses it, so memory does not grow with uptime.
 */
export class RingBuffer<T> {
  private readonly items: (T | undefined)[];
  private start = 0;
  private length = 0;
  private pushed = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`ring buffer capacity must be a positive integer, got ${capacity}`);
    }
    this.items = new Array<T | undefined>(capacity);
  }

  get size(): number {
    return this.length;
  }

  /** Items pushed since creation, including those already overwritten. */
  get totalPushed(): number {
    return this.pushed;
  }

  /** Items lost to overwriting since creation. */
  get dropped(): number {
    return this.pushed - this.length;
  }

  push(item: T): void {
    const end = (this.start + this.length) % this.capacity;
    this.items[end] = item;
    if (this.length < this.capacity) this.length++;
    else this.start = (this.start + 1) % this.capacity;
    this.pushed++;
  }

  /** The i-th oldest item (0 = oldest). */
  at(i: number): T | undefined {
    if (i < 0 || i >= this.length) return undefined;
    return this.items[(this.start + i) % this.capacity];
  }

  newest(): T | undefined {
    return this.at(this.length - 1);
  }

  /** All items, oldest first. */
  toArray(): T[] {
    const out: T[] = [];
    for (let i = 0; i < this.length; i++) out.push(this.at(i) as T);
    return out;
  }

  /**
   * The newest `limit` items that satisfy `keep`, returned oldest first. Scans from the newest end and
   * stops as soon as `limit` are found, so a small `limit` on a big buffer stays cheap.
   */
  newestMatching(limit: number, keep: (item: T) => boolean): T[] {
    const out: T[] = [];
    for (let i = this.length - 1; i >= 0 && out.length < limit; i--) {
      const item = this.at(i) as T;
      if (keep(item)) out.push(item);
    }
    return out.reverse();
  }

  /** Removes and returns the oldest item. */
  shift(): T | undefined {
    if (this.length === 0) return undefined;
    const item = this.items[this.start];
    this.items[this.start] = undefined;
    this.start = (this.start + 1) % this.capacity;
    this.length--;
    // `dropped` counts it: it left the buffer without being read out.
    return item;
  }

  clear(): void {
    this.items.fill(undefined);
    this.start = 0;
    this.length = 0;
    this.pushed = 0;
  }
}
