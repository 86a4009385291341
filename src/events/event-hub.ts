import { RingBuffer } from '../../gpu/index.js';

/** Kinds of events `/debug/events` streams. */
export const EVENT_TYPES = ['gpu', 'job', 'node', 'progress', 'log', 'ready'] as const;
export type HubEventType = (typeof EVENT_TYPES)[number];

export interface HubEvent {
  /** Monotonic from 1: a client resumes after the last id it saw. */
  readonly id: number;
  readonly type: HubEventType;
  /** The event's data, serialized once for every stream. */
  readonly data: string;
  /** Epoch ms. */
  readonly at: number;
  /** Log events: the record's numeric level, for `?level=`. */
  readonly level?: number;
}

export type HubListener = (e: HubEvent) => void;

/** An event whose JSON is made on first read, once for every stream. */
class LazyEvent implements HubEvent {
  private json: string | undefined;
  constructor(
    readonly id: number,
    readonly type: HubEventType,
    private value: unknown,
    readonly at: number,
    readonly level?: number,
  ) {}

  get data(): string {
    if (this.json === undefined) {
      this.json = JSON.stringify(this.value);
      this.value = undefined;
    }
    return this.json;
  }
}

/** How long events are still kept for resuming after the last stream closed. */
export const RESUME_GRACE_MS = 5 * 60_000;

/**
 * What the stores record, as one sequence of events with ids, kept in a bounded buffer so a client
 * that reconnects with `Last-Event-ID` gets what it missed (as long as it is still in the buffer).
 * Publishing serializes once; streams only write strings.
 *
 * Events are kept only while a stream is open and for RESUME_GRACE_MS after the last one closed: that
 * covers every reconnect, and a pod nobody watches keeps nothing. Holding thousands of events for no
 * one made a busy queue worker's garbage collector copy and mark every one of them. Ids advance
 * either way, so a client coming back later is told how many it missed.
 */
export class EventHub {
  private buffer: RingBuffer<HubEvent>;
  private nextId = 1;
  private readonly listeners = new Set<HubListener>();
  /** When the last stream closed; -Infinity before any stream opened. */
  private lastLeftAt = -Infinity;

  constructor(
    private readonly capacity: number,
    private readonly now: () => number = Date.now,
  ) {
    this.buffer = new RingBuffer(capacity);
  }

  /** Whether events are kept now: a stream is open, or one closed less than RESUME_GRACE_MS ago. */
  get keeping(): boolean {
    return this.listeners.size > 0 || this.now() - this.lastLeftAt < RESUME_GRACE_MS;
  }

  get lastId(): number {
    return this.nextId - 1;
  }

  /**
   * `data` is serialized when a stream first sends it, not here: most events are never streamed, and a
   * job's end is on the queue worker's path. The caller must not change `data` afterwards.
   */
  publish(type: HubEventType, data: unknown, level?: number): void {
    if (this.skip()) return;
    this.push(new LazyEvent(this.nextId++, type, data, this.now(), level));
  }

  /** An event whose data is already JSON text (a log record as written). */
  publishJson(type: HubEventType, json: string, level?: number): void {
    if (this.skip()) return;
    this.push({ id: this.nextId++, type, data: json, at: this.now(), level });
  }

  /** Counts an event nobody will read, letting go of what is kept once the grace has passed. */
  private skip(): boolean {
    if (this.keeping) return false;
    this.nextId++;
    if (this.buffer.size > 0) this.buffer = new RingBuffer(this.capacity);
    return true;
  }

  private push(e: HubEvent): void {
    this.buffer.push(e);
    for (const l of this.listeners) {
      try {
        l(e);
      } catch {
        // A stream's failure is its own; it never stops the others.
      }
    }
  }

  /**
   * Events after `lastId` still in the buffer, and whether some were lost (older than the buffer's
   * oldest).
   */
  since(lastId: number): { events: HubEvent[]; lost: number } {
    const events: HubEvent[] = [];
    let oldest: number | undefined;
    for (let i = 0; i < this.buffer.size; i++) {
      const e = this.buffer.at(i) as HubEvent;
      oldest ??= e.id;
      if (e.id > lastId) events.push(e);
    }
    const lost = oldest === undefined ? Math.max(0, this.lastId - lastId) : Math.max(0, oldest - lastId - 1);
    return { events, lost };
  }

  subscribe(l: HubListener): () => void {
    this.listeners.add(l);
    return () => {
      if (this.listeners.delete(l) && this.listeners.size === 0) this.lastLeftAt = this.now();
    };
  }

  get subscribers(): number {
    return this.listeners.size;
  }
}
