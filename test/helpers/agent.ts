import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root (this file runs from dist/test/helpers). */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const CLI = path.join(ROOT, 'dist/src/cli.js');

export type LogRecord = Record<string, unknown> & { level: string; message: string };

export interface AgentProcess {
  url: string;
  port: number;
  proc: ChildProcess;
  /** Every JSON record the agent printed so far. */
  records: LogRecord[];
  /** The same, as the raw lines printed. */
  lines: string[];
  stderr: () => string;
  /** Resolves with the first record (already printed or future) that matches. */
  waitForRecord(pred: (r: LogRecord) => boolean, timeoutMs?: number): Promise<LogRecord>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Sends SIGTERM (or `signal`) and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface StartOptions {
  env?: Record<string, string>;
  args?: string[];
  /** Wait for the `listening` record; false for runs expected to fail at start. */
  waitForListening?: boolean;
  cwd?: string;
}

const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of running) p.kill('SIGKILL');
});

const tempDirs: string[] = [];
process.on('exit', () => {
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
});

/** A fresh directory for one test, removed when the test process exits. */
export function tempDir(prefix = 'gpa-test-'): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

/**
 * Starts the real agent (`node dist/src/cli.js`) as a child on a free port (PORT=0: the agent reports
 * the port it got in its `listening` record), with MOCK_GPU=1 unless the caller overrides it.
 */
export async function startAgentProcess(opts: StartOptions = {}): Promise<AgentProcess> {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? '/tmp',
    PORT: '0',
    HOST: '127.0.0.1',
    MOCK_GPU: '1',
    GPU_POLL_INTERVAL_MS: '100',
    LOG_LEVEL: 'debug',
    ARTIFACTS_DIR: tempDir('gpa-artifacts-'),
    ...opts.env,
  };
  const proc = spawn(process.execPath, [CLI, ...(opts.args ?? [])], {
    env,
    cwd: opts.cwd ?? ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(proc);
  const records: LogRecord[] = [];
  const lines: string[] = [];
  const waiters: { pred: (r: LogRecord) => boolean; resolve: (r: LogRecord) => void }[] = [];
  let buf = '';
  let err = '';
  proc.stdout?.setEncoding('utf8');
  proc.stdout?.on('data', (chunk: string) => {
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf('\n')) !== -1) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      lines.push(line);
      let rec: LogRecord;
      try {
        rec = JSON.parse(line) as LogRecord;
      } catch {
        rec = { level: 'raw', message: line };
      }
      records.push(rec);
      for (const w of [...waiters]) {
        if (w.pred(rec)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(rec);
        }
      }
    }
  });
  proc.stderr?.setEncoding('utf8');
  proc.stderr?.on('data', (c: string) => (err += c));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    proc.once('exit', (code, signal) => {
      running.delete(proc);
      resolve({ code, signal });
    });
  });

  const waitForRecord = (pred: (r: LogRecord) => boolean, timeoutMs = 15_000): Promise<LogRecord> => {
    const seen = records.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        waiters.splice(waiters.indexOf(w), 1);
        reject(new Error(`no matching log record within ${timeoutMs} ms; stderr: ${err.slice(0, 2000)}`));
      }, timeoutMs);
      const w = {
        pred,
        resolve: (r: LogRecord) => {
          clearTimeout(timer);
          resolve(r);
        },
      };
      waiters.push(w);
      void exited.then(() => {
        if (waiters.includes(w)) {
          clearTimeout(timer);
          waiters.splice(waiters.indexOf(w), 1);
          reject(new Error(`agent exited before the record appeared; stderr: ${err.slice(0, 2000)}`));
        }
      });
    });
  };

  let port = 0;
  if (opts.waitForListening !== false) {
    const rec = await waitForRecord((r) => r.message === 'listening');
    port = (rec.data as { port: number }).port;
  }
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    proc,
    records,
    lines,
    stderr: () => err,
    waitForRecord,
    exited,
    stop: async (signal: NodeJS.Signals = 'SIGTERM') => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
}

/** Polls `fn` until it returns a value that is not undefined; fails after `timeoutMs`. */
export async function eventually<T>(
  fn: () => Promise<T | undefined>,
  timeoutMs = 15_000,
  what = 'condition',
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      const why = last instanceof Error ? `: ${last.message}` : '';
      throw new Error(`${what} not reached within ${timeoutMs} ms${why}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface JsonResponse<T = Record<string, unknown>> {
  status: number;
  headers: Headers;
  body: T;
}

/** A request over a real socket; the body parsed as JSON. */
export async function http<T = Record<string, unknown>>(
  url: string,
  init: RequestInit = {},
): Promise<JsonResponse<T>> {
  const res = await fetch(url, init);
  const text = await res.text();
  let body: T;
  try {
    body = JSON.parse(text) as T;
  } catch {
    throw new Error(
      `${init.method ?? 'GET'} ${url} answered ${res.status} with non-JSON: ${text.slice(0, 300)}`,
    );
  }
  return { status: res.status, headers: res.headers, body };
}
