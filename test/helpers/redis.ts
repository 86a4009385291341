import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { Redis } from 'ioredis';
import { tempDir } from './agent.js';

/**
 * Redis for tests: the machine's own on 127.0.0.1:6379 when it answers, else one redis-server this
 * test process starts on a free port. Every test gets its own key prefix, so runs never see each
 * other's keys.
 */
export interface TestRedis {
  url: string;
  /** A fresh BullMQ key prefix. */
  prefix: string;
}

const SYSTEM_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
let shared: Promise<string> | undefined;
const servers = new Set<ChildProcess>();
process.on('exit', () => {
  for (const s of servers) s.kill('SIGKILL');
});

export async function testRedis(): Promise<TestRedis> {
  shared ??= (async () => {
    const u = new URL(SYSTEM_URL);
    if (await pings(u.hostname, Number(u.port || 6379))) return SYSTEM_URL;
    const server = await startRedisServer();
    return server.url;
  })();
  return { url: await shared, prefix: uniquePrefix() };
}

export function uniquePrefix(): string {
  return `gpa-test-${process.pid}-${randomBytes(4).toString('hex')}`;
}

/** A client for checking what the agent did; BullMQ needs `maxRetriesPerRequest: null`. */
export function redisClient(url: string): Redis {
  const r = new Redis(url, { maxRetriesPerRequest: null, retryStrategy: () => 200 });
  r.on('error', () => undefined);
  return r;
}

/** Deletes every key under `prefix`. */
export async function deletePrefix(url: string, prefix: string): Promise<void> {
  const r = new Redis(url, { maxRetriesPerRequest: 1, retryStrategy: () => null });
  r.on('error', () => undefined);
  try {
    let cursor = '0';
    do {
      const [next, keys] = await r.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length) await r.del(...keys);
    } while (cursor !== '0');
  } catch {
    // A server that is gone has nothing left to clean.
  } finally {
    r.disconnect();
  }
}

/** Whether a Redis answers PING at host:port within `timeoutMs`. */
export function pings(host: string, port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ host, port });
    let buf = '';
    const done = (ok: boolean): void => {
      clearTimeout(t);
      sock.destroy();
      resolve(ok);
    };
    const t = setTimeout(() => done(false), timeoutMs);
    sock.on('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d) => {
      buf += d.toString();
      if (buf.includes('\r\n')) done(buf.startsWith('+PONG'));
    });
    sock.on('error', () => done(false));
  });
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

export interface RedisServer {
  url: string;
  port: number;
  /** Kills the server at once (SIGKILL: no clean shutdown). */
  kill(): Promise<void>;
  /** Starts it again on the same port and data directory. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * A private redis-server on a free port. With `persist`, every write is in its append-only file
 * before it is acknowledged, so a killed and restarted server still has the queue: a crash of Redis,
 * not a fresh one.
 */
export async function startRedisServer(opts: { persist?: boolean } = {}): Promise<RedisServer> {
  const port = await freePort();
  const dir = tempDir('gpa-redis-');
  const args = [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--dir',
    dir,
    '--save',
    '',
    ...(opts.persist ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no']),
  ];
  let proc: ChildProcess | undefined;
  const launch = async (): Promise<void> => {
    const p = spawn('redis-server', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    servers.add(p);
    p.once('exit', () => servers.delete(p));
    proc = p;
    const deadline = Date.now() + 10_000;
    while (!(await pings('127.0.0.1', port, 200))) {
      if (p.exitCode !== null) throw new Error(`redis-server exited with ${p.exitCode}`);
      if (Date.now() > deadline) throw new Error('redis-server did not start in 10 s');
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const killWith = async (signal: NodeJS.Signals): Promise<void> => {
    const p = proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill(signal);
    await exited;
  };
  await launch();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    kill: () => killWith('SIGKILL'),
    restart: launch,
    stop: () => killWith('SIGTERM'),
  };
}
