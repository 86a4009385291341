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

/**
 * What the stores record, as one sequence of events with ids, kept in a bounded buffer so a client
 * that reconnects with `Last-Event-ID` gets what it missed (as long as it is still in the buffer).
 * Publishing serializes once; streams only write strings.
 */
export class EventHub {
  private readonly buffer: RingBuffer<HubEvent>;
  private nextId = 1;
  private readonly listeners = new Set<HubListener>();

  constructor(capacity: number) {
    this.buffer = new RingBuffer(capacity);
  }

  get lastId(): number {
    return this.nextId - 1;
  }

  /**
   * `data` is serialized when a stream first sends it, not here: most events are never streamed, and a
   * job's end is on the queue worker's path. The caller must not change `data` afterwards.
   */
  publish(type: HubEventType, data: unknown, level?: number): void {
    this.push(new LazyEvent(this.nextId++, type, data, Date.now(), level));
  }

  /** An event whose data is already JSON text (a log record as written). */
  publishJson(type: HubEventType, json: string, level?: number): void {
    this.push({ id: this.nextId++, type, data: json, at: Date.now(), level });
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
    return () => this.listeners.delete(l);
  }

  get subscribers(): number {
    return this.listeners.size;
  }
}
