import type { Logger } from 'pino';
import { settlesWithin } from '../deadline.js';

/** What producers and bull-board see as `job.progress`. */
export interface ProgressPayload {
  progress: number;
  node: string | null;
  step: number | null;
  total: number | null;
}

export interface JobReporterOptions {
  /** Writes the progress to the queue (`job.updateProgress`). */
  writeProgress: (p: ProgressPayload) => Promise<unknown>;
  /** Appends lines to the job's log in the queue (`job.log`). */
  writeLog: (line: string) => Promise<unknown>;
  /** Least time between two progress writes. */
  progressIntervalMs: number;
  /** 0 turns the job log off. */
  keepLogs: number;
  logger: Logger;
  now?: () => number;
}

/** Lines waiting to be written to the job log; past this the oldest are dropped (and counted). */
const MAX_PENDING_LOG_LINES = 1000;
/** Longest line written to the job log. */
const LOG_LINE_MAX = 8192;

/**
 * Sends one job's progress and output lines to the queue without ever holding the job up: progress
 * writes are throttled (one in flight, the newest value always sent last, percent never lower than
 * one already sent); log lines are written in order, one at a time, from a bounded backlog. While
 * Redis is away, nothing piles up beyond those bounds.
 */
export class JobReporter {
  private readonly now: () => number;
  private lastSent: ProgressPayload | undefined;
  /** The highest percent given so far: nothing lower is ever written after it. */
  private floor = 0;
  private pending: ProgressPayload | undefined;
  private lastWriteAt = -Infinity;
  private inFlight: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly logBacklog: string[] = [];
  private logWriting: Promise<void> | undefined;
  private droppedLines = 0;
  private closed = false;
  private failuresLogged = 0;

  constructor(private readonly opts: JobReporterOptions) {
    this.now = opts.now ?? Date.now;
  }

  /** Whether any progress was given: a job that reported none gets no final 100 % either. */
  get reported(): boolean {
    return this.lastSent !== undefined || this.pending !== undefined || this.inFlight !== undefined;
  }

  /** A new progress value; written now, or when the interval allows. */
  progress(p: ProgressPayload): void {
    if (this.closed) return;
    const next = { ...p, progress: Math.max(this.floor, Math.round(p.progress * 10) / 10) };
    this.floor = next.progress;
    if (this.lastSent && sameProgress(this.lastSent, next) && !this.pending) return;
    this.pending = next;
    this.schedule();
  }

  /** An output line of the job, for the queue's job log. */
  line(text: string): void {
    if (this.closed || this.opts.keepLogs === 0) return;
    if (this.logBacklog.length >= MAX_PENDING_LOG_LINES) {
      this.logBacklog.shift();
      this.droppedLines++;
    }
    this.logBacklog.push(text.length > LOG_LINE_MAX ? `${text.slice(0, LOG_LINE_MAX)}…` : text);
    this.logWriting ??= this.drainLog();
  }

  /**
   * Writes what is pending (the last progress, the log backlog) and stops taking more. Waits at most
   * `timeoutMs`: a job's end is never held up by an unreachable Redis.
   */
  async close(timeoutMs: number): Promise<void> {
    if (this.closed) return;
    clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.inFlight && !this.pending && !this.logWriting) {
      this.closed = true;
      return;
    }
    const work = (async () => {
      await this.inFlight;
      if (this.pending) await this.send();
      await this.logWriting;
    })();
    this.closed = true;
    await settlesWithin(work, timeoutMs);
  }

  private schedule(): void {
    if (this.inFlight || this.timer) return;
    const wait = this.lastWriteAt + this.opts.progressIntervalMs - this.now();
    if (wait <= 0) {
      void this.send();
      return;
    }
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.send();
    }, wait);
  }

  private async send(): Promise<void> {
    const p = this.pending;
    if (!p) return;
    this.pending = undefined;
    this.lastWriteAt = this.now();
    const write = this.opts.writeProgress(p).then(
      () => {
        this.lastSent = p;
      },
      (err: unknown) => this.writeFailed('progress', err),
    );
    this.inFlight = write;
    await write;
    this.inFlight = undefined;
    if (this.pending && !this.closed) this.schedule();
  }

  private async drainLog(): Promise<void> {
    while (this.logBacklog.length > 0) {
      if (this.droppedLines > 0) {
        const n = this.droppedLines;
        this.droppedLines = 0;
        await this.opts
          .writeLog(`[${n} lines dropped: the job printed faster than Redis took them]`)
          .catch((err: unknown) => this.writeFailed('log', err));
      }
      const line = this.logBacklog.shift() as string;
      await this.opts.writeLog(line).catch((err: unknown) => this.writeFailed('log', err));
    }
    this.logWriting = undefined;
  }

  private writeFailed(what: string, err: unknown): void {
    // One record per job is enough to say Redis refused; the rest would only repeat it.
    if (this.failuresLogged++ === 0) {
      this.opts.logger.warn({ error: err, data: { what } }, 'could not write the job to the queue');
    }
  }
}

function sameProgress(a: ProgressPayload, b: ProgressPayload): boolean {
  return a.progress === b.progress && a.node === b.node && a.step === b.step && a.total === b.total;
}
