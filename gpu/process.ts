import { spawn as nodeSpawn } from 'node:child_process';
import type { ChildProcess, SpawnOptions } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import { GpuError } from './errors.js';
import type { FailureCategory } from './errors.js';
import { systemClock } from './types.js';
import type { Clock } from './types.js';

/** `child_process.spawn`'s shape, injectable so tests can count or wrap spawns. */
export type SpawnFn = (command: string, args: readonly string[], options: SpawnOptions) => ChildProcess;

export const defaultSpawn: SpawnFn = (command, args, options) => nodeSpawn(command, args, options);

/**
 * Signals a child's whole process group. Children are spawned `detached`, which makes each the leader
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
  /** Aborting kills the group too, and rejects with the signal's reason. */
  signal?: AbortSignal;
  env?: NodeJS.ProcessEnv;
  spawn?: SpawnFn;
  clock?: Clock;
  /**
   * Output beyond this, per stream, fails the run (`parse`): a tool printing without end must not
   * exhaust memory, and cut output must not be read as whole. @defaultValue 32 MiB
   */
  maxOutputBytes?: number;
  /**
   * Told, once the child started, of a promise that settles when it has exited, even after the run
   * was rejected at its deadline: a caller shutting down can wait for that.
   */
  onStarted?: (gone: Promise<void>) => void;
}

export interface ProcessResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  durationMs: number;
}

/** After the child exits, how long its pipes may stay open (a background grandchild can hold them). */
const PIPE_GRACE_MS = 500;

/**
 * Runs a command to its end under a deadline and resolves with how it ended, whatever the exit
 * status. The child gets its own process group: the deadline or an abort kills the group (a
 * wrapper's children too) and rejects at once with `timeout` (or the abort's reason). Rejects with
 * `spawn` when it cannot start. Pipes are released even if a grandchild keeps them open, so nothing
 * leaks.
 */
export function runProcess(
  command: string,
  args: readonly string[],
  opts: RunOptions,
): Promise<ProcessResult> {
  const spawn = opts.spawn ?? defaultSpawn;
  const clock = opts.clock ?? systemClock;
  const maxBytes = opts.maxOutputBytes ?? 32 * 1024 * 1024;
  const started = performance.now();
  return new Promise<ProcessResult>((resolve, reject) => {
    if (opts.signal?.aborted) {
      reject(abortReason(opts.signal, command));
      return;
    }
    let child: ChildProcess;
    try {
      child = spawn(command, args, {
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true,
        env: opts.env ?? process.env,
      });
    } catch (err) {
      reject(new GpuError('spawn', `cannot start ${command}: ${(err as Error).message}`, { cause: err }));
      return;
    }
    const exited = new Promise<void>((resolveGone) => {
      child.once('exit', () => resolveGone());
      child.once('error', () => resolveGone());
    });
    opts.onStarted?.(exited);

    const out: Buffer[] = [];
    const errOut: Buffer[] = [];
    let outBytes = 0;
    let errBytes = 0;
    let settled = false;
    const finish = (fn: () => void): void => {
      if (settled) return;
      settled = true;
      clock.clearTimeout(deadline);
      opts.signal?.removeEventListener('abort', onAbort);
      fn();
    };
    const fail = (why: GpuError | Error): void => {
      signalGroup(child, 'SIGKILL');
      releasePipes();
      finish(() => reject(why));
    };
    const releasePipes = (): void => {
      child.stdout?.destroy();
      child.stderr?.destroy();
    };
    const deadline = clock.setTimeout(
      () => fail(new GpuError('timeout', `${command} did not finish within ${opts.timeoutMs} ms; killed`)),
      opts.timeoutMs,
    );
    const onAbort = (): void => fail(abortReason(opts.signal as AbortSignal, command));
    opts.signal?.addEventListener('abort', onAbort, { once: true });

    child.stdout?.on('data', (chunk: Buffer) => {
      outBytes += chunk.length;
      if (outBytes > maxBytes) fail(new GpuError('parse', `${command} printed more than ${maxBytes} bytes`));
      else out.push(chunk);
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      errBytes += chunk.length;
      if (errBytes <= 64 * 1024) errOut.push(chunk);
    });
    child.once('error', (err: NodeJS.ErrnoException) => {
      finish(() =>
        reject(new GpuError('spawn', `cannot start ${command}: ${err.code ?? err.message}`, { cause: err })),
      );
    });
    // 'close' comes once the output is drained; if a grandchild keeps the pipes open, the exit plus a
    // short grace will do, with what was read by then.
    const done = (code: number | null, signal: NodeJS.Signals | null): void => {
      finish(() =>
        resolve({
          code,
          signal,
          stdout: Buffer.concat(out).toString('utf8'),
          stderr: Buffer.concat(errOut).toString('utf8'),
          durationMs: performance.now() - started,
        }),
      );
    };
    child.once('close', done);
    child.once('exit', (code, signal) => {
      const grace = setTimeout(() => {
        releasePipes();
        done(code, signal);
      }, PIPE_GRACE_MS);
      grace.unref();
      child.once('close', () => clearTimeout(grace));
    });
  });
}

export interface RunResult {
  stdout: string;
  stderr: string;
  durationMs: number;
}

/**
 * Like {@link runProcess}, for tools whose non-zero exit is a failure: rejects with `exit:N` and the
 * last stderr lines. stderr alone is not a failure (nvidia-smi warns there on healthy systems).
 */
export async function runCommand(
  command: string,
  args: readonly string[],
  opts: RunOptions,
): Promise<RunResult> {
  const r = await runProcess(command, args, opts);
  if (r.code !== 0) {
    const detail = r.stderr.trim().split('\n').slice(-3).join(' | ') || r.stdout.trim().slice(0, 300);
    throw new GpuError(
      exitCategory(r.code, r.signal),
      `${command} exited with ${r.code ?? r.signal}${detail ? `: ${detail}` : ''}`,
    );
  }
  return { stdout: r.stdout, stderr: r.stderr, durationMs: r.durationMs };
}

function abortReason(signal: AbortSignal, command: string): Error {
  return signal.reason instanceof Error ? signal.reason : new GpuError('timeout', `${command} aborted`);
}
