import pino from 'pino';
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

/** stdout for log lines: asynchronous so a slow reader never blocks the event loop; flushed at exit. */
export function stdoutSink(): LineSink & { flushSync(): void } {
  const dest = pino.destination({ dest: 1, sync: false, minLength: 0 });
  return {
    write: (line: string) => dest.write(line),
    flushSync: () => {
      try {
        dest.flushSync();
      } catch {
        // Nothing more can be done for stdout at exit.
      }
    },
  };
}
