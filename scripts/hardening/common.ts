/**
 * Shared parts of the hardening suites: the agent as a child process, a raw HTTP/1.1 client that can
 * send what fetch refuses to, the error-format check, a seeded random source, and table output.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import WebSocket from 'ws';
import { ROOT, rssBytes } from '../bench/common.js';

export { ROOT, rssBytes };
export const CLI = path.join(ROOT, 'dist/src/cli.js');
/** The progress-protocol workload; it is plain JavaScript, so it runs from the source tree. */
export const WORKLOAD = path.join(ROOT, 'scripts/hardening/progress-workload.mjs');

export type LogRecord = Record<string, unknown> & { level?: string; message?: string };

export interface AgentOptions {
  env?: Record<string, string>;
  /** The workload command run after `--` (entrypoint mode); none runs the agent as a sidecar. */
  workload?: string[];
  /** Agent flags before `--`. */
  args?: string[];
  /** Flags for node itself, before the agent's script (`--inspect=127.0.0.1:0` for `collectGarbage`). */
  nodeArgs?: string[];
}

export interface RunningAgent {
  url: string;
  port: number;
  pid: number;
  proc: ChildProcess;
  artifactsDir: string;
  /** Records printed so far, by level. */
  levels: Map<string, number>;
  /** Records at error level or above (the first 200). */
  errors: LogRecord[];
  /** Lines printed on stdout so far. */
  lineCount(): number;
  /** Calls `fn` with every later stdout line. */
  onLine(fn: (line: string) => void): void;
  stderr(): string;
  /** The inspector's WebSocket URL, when node was started with `--inspect`. */
  inspectorUrl(): string | undefined;
  alive(): boolean;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, then SIGKILL after 20 s; removes the artifacts directory. */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of running) p.kill('SIGKILL');
});

/**
 * Starts the built agent (`node dist/src/cli.js`) on a free port with simulated GPUs and waits for its
 * `listening` record. Its stdout is read as it comes and only counted, so a long run keeps no history
 * here.
 */
export async function startAgent(opts: AgentOptions = {}): Promise<RunningAgent> {
  const artifactsDir = mkdtempSync(path.join(os.tmpdir(), 'gpa-hardening-'));
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? '/tmp',
    PORT: '0',
    HOST: '127.0.0.1',
    MOCK_GPU: '1',
    GPU_POLL_INTERVAL_MS: '1000',
    LOG_LEVEL: 'info',
    DRAIN_TIMEOUT_MS: '5000',
    ARTIFACTS_DIR: artifactsDir,
    ...opts.env,
  };
  const argv = [
    ...(opts.nodeArgs ?? []),
    CLI,
    ...(opts.args ?? []),
    ...(opts.workload ? ['--', ...opts.workload] : []),
  ];
  const proc = spawn(process.execPath, argv, { env, cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(proc);
  const levels = new Map<string, number>();
  const errors: LogRecord[] = [];
  const listeners: ((line: string) => void)[] = [];
  let lines = 0;
  let buf = '';
  let err = '';
  let onListening: ((port: number) => void) | undefined;
  proc.stdout?.setEncoding('utf8');
  proc.stdout?.on('data', (chunk: string) => {
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf('\n')) !== -1) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      lines++;
      for (const fn of listeners) fn(line);
      let rec: LogRecord;
      try {
        rec = JSON.parse(line) as LogRecord;
      } catch {
        rec = { level: 'raw', message: line.slice(0, 500) };
      }
      const level = typeof rec.level === 'string' ? rec.level : 'unknown';
      levels.set(level, (levels.get(level) ?? 0) + 1);
      if ((level === 'error' || level === 'fatal') && errors.length < 200) errors.push(rec);
      if (onListening && rec.message === 'listening') {
        onListening((rec.data as { port: number }).port);
        onListening = undefined;
      }
    }
  });
  proc.stderr?.setEncoding('utf8');
  proc.stderr?.on('data', (c: string) => {
    if (err.length < 100_000) err += c;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    proc.once('exit', (code, signal) => {
      running.delete(proc);
      resolve({ code, signal });
    });
  });
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`agent did not listen within 20 s: ${err}`)), 20_000);
    onListening = (p) => {
      clearTimeout(timer);
      resolve(p);
    };
    void exited.then(({ code }) => {
      clearTimeout(timer);
      reject(new Error(`agent exited with ${code} before listening: ${err.slice(0, 2000)}`));
    });
  });
  let stopping: Promise<{ code: number | null; signal: NodeJS.Signals | null }> | undefined;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    pid: proc.pid ?? 0,
    proc,
    artifactsDir,
    levels,
    errors,
    lineCount: () => lines,
    onLine: (fn) => listeners.push(fn),
    stderr: () => err,
    inspectorUrl: () => /Debugger listening on (ws:\/\/\S+)/.exec(err)?.[1],
    alive: () => proc.exitCode === null && proc.signalCode === null,
    exited,
    stop: () => {
      stopping ??= (async () => {
        if (proc.exitCode === null && proc.signalCode === null) {
          proc.kill('SIGTERM');
          const kill = setTimeout(() => proc.kill('SIGKILL'), 20_000);
          const r = await exited;
          clearTimeout(kill);
          rmSync(artifactsDir, { recursive: true, force: true });
          return r;
        }
        rmSync(artifactsDir, { recursive: true, force: true });
        return exited;
      })();
      return stopping;
    },
  };
}

/**
 * Runs a full garbage collection in the agent through its inspector (node started with `--inspect`), so
 * memory figures compare what is retained rather than when V8 happened to collect.
 */
export async function collectGarbage(agent: RunningAgent): Promise<void> {
  const url = agent.inspectorUrl();
  if (!url) throw new Error('the agent was not started with --inspect');
  const ws = new WebSocket(url);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('HeapProfiler.collectGarbage did not answer')), 30_000);
      ws.on('message', (data: Buffer) => {
        if ((JSON.parse(data.toString()) as { id?: number }).id === 1) {
          clearTimeout(timer);
          resolve();
        }
      });
      ws.send(JSON.stringify({ id: 1, method: 'HeapProfiler.collectGarbage' }));
    });
  } finally {
    ws.close();
  }
}

/** A GET over fetch, the body parsed as JSON. */
export async function getJson<T>(url: string, headers: Record<string, string> = {}): Promise<T> {
  const res = await fetch(url, { headers });
  const text = await res.text();
  if (!res.ok) throw new Error(`GET ${url}: ${res.status} ${text.slice(0, 300)}`);
  return JSON.parse(text) as T;
}

export async function getText(url: string, headers: Record<string, string> = {}): Promise<string> {
  const res = await fetch(url, { headers });
  const text = await res.text();
  if (!res.ok) throw new Error(`GET ${url}: ${res.status} ${text.slice(0, 300)}`);
  return text;
}

/** The value of the first Prometheus sample of `name` whose labels include `labels`. */
export function metricValue(
  text: string,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || (line[name.length] !== ' ' && line[name.length] !== '{')) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    const value = line.slice(line.lastIndexOf(' ') + 1);
    return Number(value);
  }
  return undefined;
}

/** Open file descriptors of a process, from /proc. */
export function openFds(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return NaN;
  }
}

/** Threads of a process, from /proc. */
export function threads(pid: number): number {
  const m = /^Threads:\s+(\d+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

export interface RawResponse {
  /** `answered`: a whole response came back; the others say what happened instead. */
  outcome: 'answered' | 'no_answer' | 'truncated' | 'timeout';
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  /** Interim 1xx statuses seen before the response. */
  interim: number[];
  /** Socket error, if one happened (a reset after the answer is normal for a refused body). */
  socketError?: string;
}

/**
 * Sends `data` as is over a fresh connection and reads one response, however malformed the request. The
 * response ends by its Content-Length, its last chunk, or the server closing the connection.
 */
export function rawRequest(
  port: number,
  data: Buffer,
  opts: { head?: boolean; timeoutMs?: number } = {},
): Promise<RawResponse> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    let socketError: string | undefined;
    let settled = false;
    const finish = (outcome: RawResponse['outcome'], parsed?: ParsedResponse): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({
        outcome,
        status: parsed?.status ?? 0,
        headers: parsed?.headers ?? {},
        body: parsed?.body ?? Buffer.alloc(0),
        interim: parsed?.interim ?? [],
        socketError,
      });
    };
    const timer = setTimeout(() => {
      finish('timeout', parseResponse(buf, opts.head ?? false, true) ?? undefined);
    }, opts.timeoutMs ?? 15_000);
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const p = parseResponse(buf, opts.head ?? false, false);
      if (p?.complete) finish('answered', p);
    });
    socket.on('error', (e: NodeJS.ErrnoException) => {
      socketError = e.code ?? e.message;
    });
    socket.on('close', () => {
      if (buf.length === 0) return finish('no_answer');
      const p = parseResponse(buf, opts.head ?? false, true);
      finish(p?.complete ? 'answered' : 'truncated', p ?? undefined);
    });
    // A large body goes out in pieces and stops once the answer starts, as a careful client does: the
    // agent may answer early (413, 404) and close, and a write into the closed connection would make
    // node drop the socket before the answer already received was read.
    const CHUNK = 64 * 1024;
    const writeFrom = (at: number): void => {
      if (settled || buf.length > 0 || at >= data.length) return;
      socket.write(data.subarray(at, at + CHUNK), (err) => {
        if (!err) writeFrom(at + CHUNK);
      });
    };
    writeFrom(0);
  });
}

interface ParsedResponse {
  complete: boolean;
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  interim: number[];
}

const CRLF2 = Buffer.from('\r\n\r\n');

/** Parses one response out of `buf`; `closed` says the connection ended (a body without length ends there). */
function parseResponse(buf: Buffer, head: boolean, closed: boolean): ParsedResponse | null {
  let at = 0;
  const interim: number[] = [];
  for (;;) {
    const end = buf.indexOf(CRLF2, at);
    if (end === -1) return null;
    const lines = buf.subarray(at, end).toString('latin1').split('\r\n');
    const m = /^HTTP\/\d\.\d (\d{3})/.exec(lines[0] ?? '');
    if (!m) return { complete: false, status: 0, headers: {}, body: buf.subarray(at), interim };
    const status = Number(m[1]);
    const headers: Record<string, string> = {};
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      if (i > 0) {
        const k = l.slice(0, i).trim().toLowerCase();
        const v = l.slice(i + 1).trim();
        headers[k] = headers[k] === undefined ? v : `${headers[k]}, ${v}`;
      }
    }
    const bodyAt = end + 4;
    if (status >= 100 && status < 200 && status !== 101) {
      interim.push(status);
      at = bodyAt;
      continue;
    }
    const rest = buf.subarray(bodyAt);
    // An event stream never ends by itself: its head (and whatever came with it) is the answer.
    if (
      head ||
      status === 204 ||
      status === 304 ||
      /^text\/event-stream/i.test(headers['content-type'] ?? '')
    ) {
      return { complete: true, status, headers, body: Buffer.alloc(0), interim };
    }
    if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
      const body = dechunk(rest);
      return body
        ? { complete: true, status, headers, body, interim }
        : { complete: false, status, headers, body: rest, interim };
    }
    if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length']);
      if (rest.length >= n) return { complete: true, status, headers, body: rest.subarray(0, n), interim };
      return { complete: false, status, headers, body: rest, interim };
    }
    return { complete: closed, status, headers, body: rest, interim };
  }
}

/** The body of a complete chunked message, or null while chunks are missing. */
function dechunk(buf: Buffer): Buffer | null {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const eol = buf.indexOf('\r\n', at);
    if (eol === -1) return null;
    const size = parseInt(buf.subarray(at, eol).toString('latin1'), 16);
    if (!Number.isFinite(size)) return null;
    // The last chunk, then optional trailers, then an empty line.
    if (size === 0) return buf.indexOf(CRLF2, eol) === -1 ? null : Buffer.concat(parts);
    if (buf.length < eol + 2 + size + 2) return null;
    parts.push(buf.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
}

const ERROR_KEYS = ['code', 'details', 'help', 'message', 'request_id', 'trace_id'];

/**
 * Why `body` is not the documented error body (`{"error":{code, message, request_id, trace_id, details,
 * help}}`), or undefined when it is.
 */
export function errorFormatProblem(
  contentType: string | undefined,
  body: Buffer | string,
): string | undefined {
  if (!/^application\/json\b/i.test(contentType ?? '')) return `content-type ${contentType ?? 'missing'}`;
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString());
  } catch {
    return 'body is not JSON';
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return 'body is not an object';
  const keys = Object.keys(parsed);
  if (keys.length !== 1 || keys[0] !== 'error') return `top-level keys ${keys.join(',')}`;
  const e = (parsed as { error: unknown }).error;
  if (e === null || typeof e !== 'object') return 'error is not an object';
  const ek = Object.keys(e).sort();
  if (ek.join() !== ERROR_KEYS.join()) return `error keys ${ek.join(',')}`;
  const err = e as Record<string, unknown>;
  if (typeof err.code !== 'string' || !/^[A-Z][A-Z0-9_]*$/.test(err.code)) return 'code is not UPPER_SNAKE';
  if (typeof err.message !== 'string' || err.message === '') return 'message is not a string';
  if (typeof err.help !== 'string') return 'help is not a string';
  if (err.request_id !== null && typeof err.request_id !== 'string') return 'request_id has the wrong type';
  if (err.trace_id !== null && typeof err.trace_id !== 'string') return 'trace_id has the wrong type';
  return undefined;
}

/** A small seeded generator (mulberry32), so a run can be repeated from its seed. */
export class Random {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** An integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.next() * xs.length)] as T;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
}

/** Whether the suite runs in its short form (`--short` or HARDENING_SHORT=1). */
export function isShort(argv: readonly string[] = process.argv): boolean {
  return argv.includes('--short') || process.env.HARDENING_SHORT === '1';
}

/** The value of `--name=value` or `--name value` on the command line. */
export function argValue(name: string, argv: readonly string[] = process.argv): string | undefined {
  const i = argv.findIndex((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  if (i === -1) return undefined;
  const a = argv[i] as string;
  return a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[i + 1];
}

/** Whether the module with this `import.meta.url` is the script node was started with. */
export function isMain(metaUrl: string): boolean {
  return process.argv[1] !== undefined && metaUrl === pathToFileURL(process.argv[1]).href;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Prints rows as an aligned table under a title. */
export function printTable(title: string, header: string[], rows: (string | number)[][]): void {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const fmt = (r: string[]): string =>
    r.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ');
  console.log(`\n${title}`);
  console.log(fmt(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of cells.slice(1)) console.log(fmt(r));
}

export const mb = (bytes: number): string => (bytes / 1024 / 1024).toFixed(1);

/** What every suite returns: whether its targets were met and, if not, which were missed. */
export interface SuiteOutcome {
  ok: boolean;
  failures: string[];
}

/** Runs a suite as a script: exit status 1 when a target is missed or the suite itself fails. */
export function runAsScript(run: () => Promise<SuiteOutcome>): void {
  run().then(
    (r) => {
      if (r.ok) console.log('\nall targets met');
      else {
        console.log('\ntargets missed:');
        for (const f of r.failures) console.log(`  - ${f}`);
      }
      process.exit(r.ok ? 0 : 1);
    },
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
