import { RingBuffer } from '../../gpu/index.js';
import { LEVEL_VALUES, isLevelName } from './levels.js';

export interface LogEntry {
  /** The record exactly as written to stdout, without the newline. */
  line: string;
  level: number;
  time: number;
  jobId?: string;
  traceId?: string;
}

export interface LogQuery {
  limit: number;
  minLevel: number;
  jobId?: string;
  traceId?: string;
  /** Epoch ms; only records at or after it. */
  since?: number;
}

/**
 * The newest log records, bounded. It receives the serialized lines pino writes, so `/debug/logs`
 * returns byte-for-byte what went to stdout, and answers by joining stored strings (no re-encoding).
 */
export class LogRing {
  private readonly ring: RingBuffer<LogEntry>;
  private bytes = 0;

  /**
   * @param capacity records kept at most
   * @param maxBytes characters kept at most, over all records: a workload printing long lines must not
   *   make the buffer hold hundreds of megabytes
   */
  constructor(
    capacity: number,
    private readonly maxBytes = 16 * 1024 * 1024,
  ) {
    this.ring = new RingBuffer(capacity);
  }

  get capacity(): number {
    return this.ring.capacity;
  }

  get size(): number {
    return this.ring.size;
  }

  /** Records pushed out by newer ones, by count or by size. */
  get dropped(): number {
    return this.ring.dropped;
  }

  /** Changes whenever the records change (every record kept moves it on); for caching answers. */
  get version(): number {
    return this.ring.totalPushed;
  }

  /** Characters held now. */
  get sizeBytes(): number {
    return this.bytes;
  }

  /** Takes one serialized record (a trailing newline is allowed). Lines that are not JSON are kept as info. */
  write(chunk: string): void {
    const line = chunk.endsWith('\n') ? chunk.slice(0, -1) : chunk;
    let level: number = LEVEL_VALUES.info;
    let time = Date.now();
    let jobId: string | undefined;
    let traceId: string | undefined;
    try {
      const rec = JSON.parse(line) as Record<string, unknown>;
      if (typeof rec.level === 'string' && isLevelName(rec.level)) level = LEVEL_VALUES[rec.level];
      else if (typeof rec.level === 'number') level = rec.level;
      if (typeof rec.timestamp === 'string') time = Date.parse(rec.timestamp) || time;
      if (typeof rec.job_id === 'string') jobId = rec.job_id;
      if (typeof rec.trace_id === 'string') traceId = rec.trace_id;
    } catch {
      // Kept as an info record; the raw line still reads as JSON in responses only if it was JSON,
      // so wrap it.
      return this.push({ line: JSON.stringify({ level: 'info', message: line }), level, time });
    }
    this.push({ line, level, time, jobId, traceId });
  }

  /**
   * Takes one record whose fields the writer already knows (the agent's own logger), so the line need
   * not be parsed back. `line` may end with a newline.
   */
  writeRecord(line: string, level: number, time: number, jobId?: string, traceId?: string): void {
    this.push({ line: line.endsWith('\n') ? line.slice(0, -1) : line, level, time, jobId, traceId });
  }

  query(q: LogQuery): LogEntry[] {
    return this.ring.newestMatching(
      q.limit,
      (e) =>
        e.level >= q.minLevel &&
        (q.jobId === undefined || e.jobId === q.jobId) &&
        (q.traceId === undefined || e.traceId === q.traceId) &&
        (q.since === undefined || e.time >= q.since),
    );
  }

  /** Called with every record kept (for the event stream); one listener. */
  onRecord: ((entry: LogEntry) => void) | undefined;

  private push(entry: LogEntry): void {
    this.onRecord?.(entry);
    if (this.ring.size === this.ring.capacity) this.bytes -= this.ring.at(0)?.line.length ?? 0;
    this.ring.push(entry);
    this.bytes += entry.line.length;
    while (this.bytes > this.maxBytes && this.ring.size > 1) {
      this.bytes -= this.ring.shift()?.line.length ?? 0;
    }
  }
}
