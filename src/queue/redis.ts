import { Redis } from 'ioredis';
import type { RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import { redactUrl } from '../config.js';

export type RedisRole = 'worker' | 'events' | 'monitor';

/** Reconnect backoff: 250 ms doubling to 10 s, with jitter so a fleet does not reconnect in step. */
export function reconnectDelayMs(attempt: number): number {
  const base = Math.min(250 * 2 ** Math.min(attempt - 1, 10), 10_000);
  return Math.round(base * (0.8 + Math.random() * 0.4));
}

/**
 * One ioredis connection for one role. Workers and event readers block and must wait out a Redis
 * outage (`maxRetriesPerRequest: null`, as BullMQ requires); the monitor's reads fail fast instead, so
 * `/debug/queue` reports the outage rather than waiting on it. Connection errors are logged once per
 * outage, not once per retry, and never thrown.
 */
const lastErrors = new WeakMap<Redis, string>();

/** The newest connection error of a client made by createRedis, if it is not connected. */
export function connectionError(client: Redis): string | undefined {
  return client.status === 'ready' ? undefined : lastErrors.get(client);
}

export function createRedis(url: string, role: RedisRole, logger: Logger): Redis {
  const blocking = role !== 'monitor';
  const options: RedisOptions = {
    connectionName: `gpu-pod-agent:${role}`,
    maxRetriesPerRequest: blocking ? null : 1,
    enableOfflineQueue: blocking,
    connectTimeout: 5000,
    retryStrategy: reconnectDelayMs,
    // BullMQ reads the server version and info itself.
    enableReadyCheck: true,
    lazyConnect: false,
  };
  const client = new Redis(url, options);
  const shown = redactUrl(url);
  let down = false;
  client.on('error', (err: Error) => {
    lastErrors.set(client, err.message);
    if (down) return;
    down = true;
    logger.warn(
      { error: err, data: { role, url: shown } },
      'Redis connection failed; reconnecting with backoff',
    );
  });
  client.on('ready', () => {
    if (down) logger.info({ data: { role, url: shown } }, 'Redis connection is back');
    down = false;
  });
  return client;
}
