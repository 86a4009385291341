import pino from 'pino';
import sonicBoom from 'sonic-boom';
import type { SonicBoom as SonicBoomClass } from 'sonic-boom';
import type { Logger } from 'pino';
import type { LogLevel } from '../config.js';
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
  const tee: LineSink = {
    write(line: string) {
      opts.out.write(line);
      opts.ring.write(line);
    },
  };
  return pino(
    {
      level: opts.level,
      messageKey: 'message',
      errorKey: 'error',
      base: { service: opts.service, environment: opts.environment, pod_id: opts.podId },
      timestamp: () => `,"timestamp":"${new Date().toISOString()}"`,
      formatters: { level: (label) => ({ level: label }) },
      serializers: { error: pino.stdSerializers.err },
    },
    tee,
  );
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

/**
 * stdout for log lines: asynchronous so a slow reader never blocks the event loop. When the reader is
 * gone (EPIPE: `agent | head`) lines are dropped. Draining at exit is asynchronous and bounded:
 * SonicBoom's flushSync retries a broken pipe forever, so nothing may call it (which is also why this
 * is SonicBoom itself and not pino.destination(), which would call it from an exit hook).
 */
export function stdoutSink(): FlushableSink {
  const dest = new SonicBoom({ fd: 1, sync: false, minLength: 0 });
  let open = true;
  dest.on('error', () => {
    open = false;
  });
  return {
    write: (line: string) => (open ? dest.write(line) : false),
    close: (timeoutMs) =>
      new Promise<void>((resolve) => {
        if (!open) return resolve();
        open = false;
        const timer = setTimeout(resolve, timeoutMs);
        timer.unref();
        const done = (): void => {
          clearTimeout(timer);
          resolve();
        };
        dest.once('close', done);
        dest.once('error', done);
        // end() writes what is pending, then emits 'close' (stdout itself stays open).
        dest.end();
      }),
  };
}
