import { spawn as nodeSpawn } from 'node:child_process';
import type { ChildProcess, SpawnOptions } from 'node:child_process';
import { GpuError } from './errors.js';

export type SpawnFn = (command: string, args: readonly string[], options: SpawnOptions) => ChildProcess;

export interface RunOptions {
  /** Aborting kills the whole process group and rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Kills the process group and rejects with `timeout` after this long. */
  timeoutMs: number;
  /** Output beyond this is an error: a tool printing without end must not exhaust memory. */
  maxOutputBytes?: number;
  env?: NodeJS.ProcessEnv;
  spawn?: SpawnFn;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  durationMs: number;
}

/**
 * Runs a command to completion with a hard deadline. The child gets its own process group, so a
 * timeout or abort kills it together with anything it started (a wrapper script's children too),
 * and the promise settles only after the child is reaped: no zombies, no open pipes. A non-zero exit
 * is `exit:N`; stderr alone is not a failure (nvidia-smi warns there on healthy systems).
 */
export function runCommand(command: string, args: readonly string[], opts: RunOptions): Promise<RunResult> {
  const spawn = opts.spawn ?? nodeSpawn;
  const maxBytes = opts.maxOutputBytes ?? 32 * 1024 * 1024;
  const started = performance.now();
  return new Promise<RunResult>((resolve, reject) => {
    if (opts.signal?.aborted) {
      reject(abortReason(opts.signal));
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
    const out: Buffer[] = [];
    const errOut: Buffer[] = [];
    let outBytes = 0;
    let failure: Error | undefined;

    const kill = (why: Error): void => {
      failure ??= why;
      if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          child.kill('SIGKILL');
        }
      }
    };
    const timer = setTimeout(
      () => kill(new GpuError('timeout', `${command} did not finish within ${opts.timeoutMs} ms; killed`)),
      opts.timeoutMs,
    );
    const onAbort = (): void => kill(abortReason(opts.signal as AbortSignal));
    opts.signal?.addEventListener('abort', onAbort, { once: true });

    child.stdout?.on('data', (chunk: Buffer) => {
      outBytes += chunk.length;
      if (outBytes > maxBytes) kill(new GpuError('parse', `${command} printed more than ${maxBytes} bytes`));
      else out.push(chunk);
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      if (errOut.reduce((n, b) => n + b.length, 0) < 64 * 1024) errOut.push(chunk);
    });
    child.once('error', (err: NodeJS.ErrnoException) => {
      failure ??= new GpuError('spawn', `cannot start ${command}: ${err.code ?? err.message}`, {
        cause: err,
      });
    });
    // 'close' comes after the process exited and its pipes closed: nothing is left behind.
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      const stderr = Buffer.concat(errOut).toString('utf8');
      if (failure) {
        reject(failure);
        return;
      }
      if (code !== 0) {
        const detail =
          stderr.trim().split('\n').slice(-3).join(' | ') ||
          Buffer.concat(out).toString('utf8').trim().slice(0, 300);
        const status = code ?? 128;
        reject(
          new GpuError(
            `exit:${status}`,
            `${command} exited with ${code ?? signal}${detail ? `: ${detail}` : ''}`,
          ),
        );
        return;
      }
      resolve({
        stdout: Buffer.concat(out).toString('utf8'),
        stderr,
        durationMs: performance.now() - started,
      });
    });
  });
}

function abortReason(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new GpuError('timeout', 'aborted');
}
