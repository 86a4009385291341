import { spawn as nodeSpawn } from 'node:child_process';
import type { ChildProcess, SpawnOptions } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import { GpuError } from '../errors.js';
import type { FailureCategory } from '../errors.js';
import { systemClock } from '../types.js';
import type { Clock } from '../types.js';

/** `child_process.spawn`'s shape, injectable so tests can count or wrap spawns. */
export type SpawnFn = (command: string, args: readonly string[], options: SpawnOptions) => ChildProcess;

export const defaultSpawn: SpawnFn = (command, args, options) => nodeSpawn(command, args, options);

/**
 * Signals the child's whole process group. Children are spawned `detached`, which makes each the leader
 * of a new group, so a wrapper script and whatever it started go together.
 */
export function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  const pid = child.pid;
  if (pid === undefined) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // The group is gone already, or the child never got its own: signal the child alone.
    try {
      child.kill(signal);
    } catch {
      // Already exited.
    }
  }
}

/** The failure category of a child's end: `exit:N`, with signals as a shell reports them (128 + n). */
export function exitCategory(code: number | null, signal: NodeJS.Signals | null): FailureCategory {
  if (code !== null) return `exit:${code}`;
  const n = signal ? osConstants.signals[signal] : undefined;
  return `exit:${n !== undefined ? 128 + n : -1}`;
}

export interface RunOptions {
  /** The run is killed (its whole group) and rejected as `timeout` after this. */
  timeoutMs: number;
  signal?: AbortSignal;
  env?: NodeJS.ProcessEnv;
  spawn?: SpawnFn;
  clock?: Clock;
  /** Output kept per stream; the rest is dropped so a chatty child cannot grow memory. @defaultValue 1 MiB */
  maxOutputBytes?: number;
  /**
   * Told, once the child started, of a promise that settles when it is gone, even after the run was
   * rejected at its deadline: a caller shutting down can wait for that.
   */
  onStarted?: (gone: Promise<void>) => void;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a short command to its end under a deadline. Rejects with `spawn` when it cannot start and
 * `timeout` when the deadline or `signal` ends it; any exit status resolves, for the caller to judge.
 */
export function runCommand(binary: string, args: readonly string[], options: RunOptions): Promise<RunResult> {
  const spawn = options.spawn ?? defaultSpawn;
  const clock = options.clock ?? systemClock;
  const max = options.maxOutputBytes ?? 1024 * 1024;
  return new Promise<RunResult>((resolve, reject) => {
    let child: ChildProcess;
    try {
      child = spawn(binary, args, {
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: options.env ?? process.env,
      });
    } catch (err) {
      reject(new GpuError('spawn', `cannot start ${binary}: ${String(err)}`, { cause: err }));
      return;
    }
    options.onStarted?.(
      new Promise<void>((resolveGone) => {
        child.once('exit', () => resolveGone());
        child.once('error', () => resolveGone());
      }),
    );
    const out = { stdout: '', stderr: '' };
    child.stdout?.setEncoding('utf8');
    child.stderr?.setEncoding('utf8');
    child.stdout?.on('data', (chunk: string) => {
      if (out.stdout.length < max) out.stdout += chunk.slice(0, max - out.stdout.length);
    });
    child.stderr?.on('data', (chunk: string) => {
      if (out.stderr.length < max) out.stderr += chunk.slice(0, max - out.stderr.length);
    });

    let settled = false;
    const finish = (fn: () => void): void => {
      if (settled) return;
      settled = true;
      clock.clearTimeout(deadline);
      options.signal?.removeEventListener('abort', onAbort);
      fn();
    };
    const stop = (reason: GpuError): void => {
      signalGroup(child, 'SIGKILL');
      finish(() => reject(reason));
    };
    const deadline = clock.setTimeout(
      () =>
        stop(new GpuError('timeout', `${binary} ${args.join(' ')} took longer than ${options.timeoutMs} ms`)),
      options.timeoutMs,
    );
    const onAbort = (): void => {
      const reason: unknown = options.signal?.reason;
      stop(
        reason instanceof GpuError ? reason : new GpuError('timeout', `${binary} ${args.join(' ')} aborted`),
      );
    };
    if (options.signal?.aborted) onAbort();
    else options.signal?.addEventListener('abort', onAbort, { once: true });

    child.on('error', (err) => {
      finish(() => reject(new GpuError('spawn', `cannot start ${binary}: ${err.message}`, { cause: err })));
    });
    // 'close' waits for the output to drain, so nothing the child printed is lost.
    child.on('close', (code: number | null, signal: NodeJS.Signals | null) => {
      finish(() => resolve({ code, signal, ...out }));
    });
  });
}
