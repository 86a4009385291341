import pino from 'pino';
import sonicBoom from 'sonic-boom';
import type { SonicBoom as SonicBoomClass } from 'sonic-boom';
import type { Logger } from 'pino';
import type { LogLevel } from '../config.js';
import { LEVEL_VALUES } from './levels.js';
import type { LogRing } from './log-ring.js';

export type { Logger };

export interface LineSink {
  write(line: string): unknown;
}

export interface LoggerOptions {
  level: LogLevel;
  service: string;
  environment: string;
  podId: string;
  ring: LogRing;
  /** Where lines go besides the ring; stdout in the agent. */
  out: LineSink;
}

/**
 * One JSON record per line with the fields DESIGN.md names (`timestamp`, `level`, `message`, `service`,
 * `environment`, `pod_id`, correlation ids bound by child loggers, `data`), written to `out` and to the
 * ring buffer, so `/debug/logs` shows exactly what stdout got.
 */
export function createLogger(opts: LoggerOptions): Logger {
  // The record's time, as its `timestamp` says: one string per millisecond however many records, and
  // the date and time up to the second formatted once per second (a busy queue logs every millisecond).
  let stampMs = NaN;
  let stamp = '';
  let second = NaN;
  let secondPrefix = '';
  const timestamp = (): string => {
    const t = Date.now();
    if (t !== stampMs) {
      stampMs = t;
      const ms = t % 1000;
      if (t - ms !== second) {
        second = t - ms;
        // Everything but the milliseconds and the zone: "2026-11-22T18:51:51."
        secondPrefix = `,"timestamp":"${new Date(second).toISOString().slice(0, -4)}`;
      }
      stamp = `${secondPrefix}${ms < 10 ? '00' : ms < 100 ? '0' : ''}${ms}Z"`;
    }
    return stamp;
  };
  /** Correlation ids a child logger binds, read once per logger (bindings are fixed at creation). */
  const boundIds = new WeakMap<object, Ids>();
  const idsOf = (logger: Logger): Ids => {
    let ids = boundIds.get(logger);
    if (!ids) {
      ids = pickIds(logger.bindings());
      boundIds.set(logger, ids);
    }
    return ids;
  };
  // pino hands a stream that asks for it the record's level, merge object and logger before each
  // line, so the ring files the record without parsing the line back.
  const tee: LineSink & PinoMetadata = {
    [Symbol.for('pino.metadata')]: true,
    write(line: string) {
      opts.out.write(line);
      const own = pickIds(tee.lastObj);
      const bound = tee.lastLogger ? idsOf(tee.lastLogger) : NO_IDS;
      // Fields of the call's own object come after bound ones in the line, and JSON readers take the last.
      opts.ring.writeRecord(
        line,
        tee.lastLevel ?? LEVEL_VALUES.info,
        stampMs,
        own.jobId ?? bound.jobId,
        own.traceId ?? bound.traceId,
      );
    },
  };
  return pino(
    {
      level: opts.level,
      messageKey: 'message',
      errorKey: 'error',
      base: { service: opts.service, environment: opts.environment, pod_id: opts.podId },
      timestamp,
      formatters: { level: (label) => ({ level: label }) },
      serializers: { error: pino.stdSerializers.err },
    },
    tee,
  );
}

/** What pino sets on a stream marked with `Symbol.for('pino.metadata')` before each write. */
interface PinoMetadata {
  lastLevel?: number;
  lastObj?: unknown;
  lastLogger?: Logger;
}

interface Ids {
  jobId?: string;
  traceId?: string;
}

const NO_IDS: Ids = {};

function pickIds(obj: unknown): Ids {
  if (!obj || typeof obj !== 'object') return NO_IDS;
  const o = obj as { job_id?: unknown; trace_id?: unknown };
  const jobId = typeof o.job_id === 'string' ? o.job_id : undefined;
  const traceId = typeof o.trace_id === 'string' ? o.trace_id : undefined;
  return jobId === undefined && traceId === undefined ? NO_IDS : { jobId, traceId };
}

/** A line sink that can be drained before exit. */
export interface FlushableSink extends LineSink {
  /**
   * Writes out everything pending and stops taking lines; resolves when done or after `timeoutMs`,
   * whichever is first. For the very end of a run.
   */
  close(timeoutMs: number): Promise<void>;
}

// The package is CommonJS and its types describe an ES default export: at runtime the default import
// is the class itself.
const SonicBoom = sonicBoom as unknown as typeof SonicBoomClass;

/** How long a log line may wait to be written together with the lines after it. */
export const STDOUT_COALESCE_MS = 10;
/** Pending bytes that are written at once, without waiting. */
const STDOUT_COALESCE_BYTES = 64 * 1024;

/**
 * stdout for log lines: asynchronous so a slow reader never blocks the event loop. Lines that come
 * within a few milliseconds of each other go out in one write (a write costs a thread-pool round trip,
 * which at hundreds of jobs or requests a second costs more than the logging itself); a line waits at
 * most `STDOUT_COALESCE_MS`. When the reader is gone (EPIPE: `agent | head`) lines are dropped.
 * Draining at exit is asynchronous and bounded: SonicBoom's flushSync retries a broken pipe forever, so
 * nothing may call it (which is also why this is SonicBoom itself and not pino.destination(), which
 * would call it from an exit hook).
 */
export function stdoutSink(): FlushableSink {
  const dest = new SonicBoom({ fd: 1, sync: false, minLength: 0 });
  let open = true;
  let pending: string[] = [];
  let pendingBytes = 0;
  let timer: NodeJS.Timeout | undefined;
  dest.on('error', () => {
    open = false;
  });
  const flush = (): void => {
    clearTimeout(timer);
    timer = undefined;
    if (pending.length === 0) return;
    const chunk = pending.length === 1 ? (pending[0] as string) : pending.join('');
    pending = [];
    pendingBytes = 0;
    if (open) dest.write(chunk);
  };
  return {
    write: (line: string) => {
      if (!open) return false;
      pending.push(line);
      pendingBytes += line.length;
      if (pendingBytes >= STDOUT_COALESCE_BYTES) flush();
      else if (!timer) {
        timer = setTimeout(flush, STDOUT_COALESCE_MS);
        // Never what keeps the process alive: close() writes what is pending.
        timer.unref();
      }
      return true;
    },
    close: (timeoutMs) =>
      new Promise<void>((resolve) => {
        flush();
        if (!open) return resolve();
        open = false;
        const t = setTimeout(resolve, timeoutMs);
        t.unref();
        const done = (): void => {
          clearTimeout(t);
          resolve();
        };
        dest.once('close', done);
        dest.once('error', done);
        // end() writes what is pending, then emits 'close' (stdout itself stays open).
        dest.end();
      }),
  };
}
