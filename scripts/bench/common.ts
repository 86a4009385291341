import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root (this file runs from dist/scripts/bench). */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

export interface Child {
  proc: ChildProcess;
  port: number;
  stop(): Promise<void>;
}

/** Starts the built agent on a free port with the given environment and waits for `listening`. */
export async function startAgent(env: Record<string, string>, args: string[] = []): Promise<Child> {
  const [cmd, ...pre] = serverCommand();
  const proc = spawn(cmd!, [...pre, path.join(ROOT, 'dist/src/cli.js'), ...args], {
    env: { PATH: process.env.PATH ?? '', PORT: '0', HOST: '127.0.0.1', MOCK_GPU: '1', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    let buf = '';
    proc.stdout?.setEncoding('utf8');
    const onData = (chunk: string): void => {
      buf += chunk;
      for (const line of buf.split('\n')) {
        if (!line.includes('"listening"')) continue;
        const rec = JSON.parse(line) as { data: { port: number } };
        proc.stdout?.off('data', onData);
        // Keep draining stdout so the agent never blocks on a full pipe.
        proc.stdout?.resume();
        resolve(rec.data.port);
      }
    };
    proc.stdout?.on('data', onData);
    proc.once('exit', (code) => reject(new Error(`agent exited with ${code} before listening`)));
  });
  return { proc, port, stop: () => stopChild(proc) };
}

/** Starts a compiled script that prints its port on stdout. */
export async function startScript(script: string, env: Record<string, string>): Promise<Child> {
  const [cmd, ...pre] = serverCommand();
  const proc = spawn(cmd!, [...pre, script], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    proc.stdout?.setEncoding('utf8');
    proc.stdout?.once('data', (chunk: string) => resolve(Number(chunk.trim())));
    proc.once('exit', (code) => reject(new Error(`${script} exited with ${code}`)));
  });
  return { proc, port, stop: () => stopChild(proc) };
}

/**
 * How servers are started: with BENCH_SERVER_CPU=N they are pinned to CPU N (taskset), so the load
 * generator on another CPU does not compete with them and scheduler noise drops.
 */
function serverCommand(): string[] {
  const cpu = process.env.BENCH_SERVER_CPU;
  return cpu ? ['taskset', '-c', cpu, process.execPath] : [process.execPath];
}

/**
 * On a machine with two or more CPUs and taskset, pins this process (the load generator) to CPU 0 and
 * the servers to CPU 1 unless BENCH_SERVER_CPU says otherwise. Returns a line describing the setup.
 */
export function pinCpus(): string {
  if (process.env.BENCH_SERVER_CPU === undefined && os.cpus().length >= 2) {
    const r = spawnSync('taskset', ['-p', '-c', '0', String(process.pid)], { stdio: 'ignore' });
    if (r.status === 0) process.env.BENCH_SERVER_CPU = '1';
  }
  const cpu = process.env.BENCH_SERVER_CPU;
  return cpu ? `servers pinned to CPU ${cpu}, load generator to CPU 0` : 'no CPU pinning';
}

function stopChild(proc: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (proc.exitCode !== null) return resolve();
    proc.once('exit', () => resolve());
    proc.kill('SIGTERM');
    setTimeout(() => proc.kill('SIGKILL'), 5000).unref();
  });
}

/** CPU time (user + system) of a process in seconds, from /proc. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14 and 15 of /proc/PID/stat (utime, stime) in clock ticks; Linux uses 100 ticks per second.
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Resident set size of a process in bytes, from /proc. */
export function rssBytes(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}
