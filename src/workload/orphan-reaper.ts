import { ChildProcess } from 'node:child_process';
import { readFile, readdir } from 'node:fs/promises';
import { setTimeout as delay } from 'node:timers/promises';
import type { Logger } from 'pino';

/**
 * PID 1 duties for a container started without an init (no tini, no `docker run --init`).
 *
 * Every process whose parent exits is handed to PID 1, and stays a zombie until PID 1 waits for it.
 * Node.js waits only for the children it spawned (libuv calls `waitpid` with each of their pids), so
 * as PID 1 the agent would collect the zombies of its workload's orphans and double-forked daemons for
 * as long as it runs. The reaper waits for those: on each SIGCHLD it looks through /proc for zombie
 * children of this process and calls libc's `waitpid(pid, WNOHANG)` for each one that Node.js did not
 * spawn. It never calls `waitpid(-1)`: that would take the exit status of a child libuv is waiting for
 * (the workload, nvidia-smi, dcgmi, a job command), which would then never report its exit.
 */

/** Pids of the children spawned through `node:child_process` that libuv has not reaped yet. */
const spawned = new Set<number>();
let tracking = false;

interface SpawningChildProcess {
  spawn: (this: ChildProcess, ...args: unknown[]) => unknown;
}

/**
 * Records the pid of every child this process spawns through `node:child_process` (`spawn`, `exec`,
 * `execFile` and `fork` all create a `ChildProcess` and call its `spawn`), from the moment it exists
 * until its `exit` event, which libuv emits right after it reaped the child. Children of worker
 * threads are not seen (each thread has its own module instances); the agent spawns none there.
 * `spawnSync` needs no record: it waits for its child while the event loop, and so the reaper, stands
 * still. Idempotent.
 */
export function trackSpawnedChildren(): void {
  if (tracking) return;
  tracking = true;
  // `spawn` is an undocumented method of ChildProcess, absent from its typings.
  const proto = ChildProcess.prototype as unknown as SpawningChildProcess;
  const original = proto.spawn;
  proto.spawn = function (this: ChildProcess, ...args: unknown[]): unknown {
    const result = original.apply(this, args);
    const pid = this.pid;
    if (pid !== undefined) {
      spawned.add(pid);
      this.once('exit', () => spawned.delete(pid));
    }
    return result;
  };
}

/** Whether `pid` is a child Node.js spawned and has not reaped yet. */
export function isSpawnedChild(pid: number): boolean {
  return spawned.has(pid);
}

export interface ProcStat {
  pid: number;
  comm: string;
  state: string;
  ppid: number;
}

/** Parses `/proc/<pid>/stat`. The command name is in parentheses and may itself hold spaces and `)`. */
export function parseProcStat(text: string): ProcStat | undefined {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open === -1 || close < open) return undefined;
  const pid = Number(text.slice(0, open).trim());
  const [state, ppid] = text
    .slice(close + 1)
    .trim()
    .split(' ');
  if (!Number.isInteger(pid) || state === undefined || ppid === undefined) return undefined;
  return { pid, comm: text.slice(open + 1, close), state, ppid: Number(ppid) };
}

/** How a wait status (as `waitpid` fills it) says the process ended. */
export function decodeWaitStatus(status: number): { exitCode?: number; signal?: number } {
  const sig = status & 0x7f;
  return sig === 0 ? { exitCode: (status >> 8) & 0xff } : { signal: sig };
}

/** `waitpid(pid, &status, WNOHANG)`: the pid reaped and its status, 0 when it has not exited, -1 on error. */
export type WaitPid = (pid: number) => { result: number; status: number };

const WNOHANG = 1;
/** Least pause between two looks through /proc, so that a burst of SIGCHLD costs a few of them. */
const RESCAN_GAP_MS = 50;

/** libc's `waitpid` through koffi, or undefined (with why) where it cannot be called. */
async function libcWaitPid(): Promise<{ waitpid?: WaitPid; error?: string }> {
  try {
    const koffi = (await import('koffi')).default;
    let lib;
    try {
      // The symbols the node binary is linked with, libc's included (glibc and musl alike).
      lib = koffi.load(null);
    } catch {
      lib = koffi.load('libc.so.6');
    }
    const fn = lib.func('int waitpid(int pid, _Out_ int *status, int options)') as (
      pid: number,
      status: number[],
      options: number,
    ) => number;
    return {
      waitpid: (pid) => {
        const out = [0];
        const result = fn(pid, out, WNOHANG);
        return { result, status: out[0] ?? 0 };
      },
    };
  } catch (err) {
    return { error: err instanceof Error ? err.message : String(err) };
  }
}

export interface OrphanReaperDeps {
  logger: Logger;
  /** @defaultValue '/proc' */
  procRoot?: string;
  /** @defaultValue process.pid */
  selfPid?: number;
  /** @defaultValue libc's, through koffi */
  waitpid?: WaitPid;
  /** A look through /proc this often besides the one each SIGCHLD asks for. @defaultValue 30000 */
  safetyIntervalMs?: number;
}

/** Waits for the zombie children of this process that Node.js did not spawn (see the top of this file). */
export class OrphanReaper {
  private waitpid: WaitPid | undefined;
  private timer: NodeJS.Timeout | undefined;
  private scanning: Promise<void> | undefined;
  private queued: Promise<void> | undefined;
  private reaped = 0;
  private readonly procRoot: string;
  private readonly selfPid: number;
  private readonly onSigchld = (): void => {
    void this.reap();
  };

  constructor(private readonly deps: OrphanReaperDeps) {
    this.procRoot = deps.procRoot ?? '/proc';
    this.selfPid = deps.selfPid ?? process.pid;
    // Before anything is spawned: a child spawned untracked could have its exit status taken.
    trackSpawnedChildren();
  }

  /** Orphans reaped so far. */
  get reapedTotal(): number {
    return this.reaped;
  }

  /**
   * Starts reaping. Returns false, with a warning on the log, where it cannot: no libc to call, or a
   * /proc that is not this PID namespace's (mounted from outside it).
   */
  async start(): Promise<boolean> {
    if (this.timer) return true;
    const { logger } = this.deps;
    const advice = 'run the agent under tini (docker run --init) to have them reaped';
    let error: string | undefined;
    if (this.deps.waitpid) this.waitpid = this.deps.waitpid;
    else ({ waitpid: this.waitpid, error } = await libcWaitPid());
    if (!this.waitpid) {
      logger.warn(
        { data: { error } },
        `running as PID 1 without libc's waitpid: orphaned processes will stay zombies; ${advice}`,
      );
      return false;
    }
    const self = await readFile(`${this.procRoot}/self/stat`, 'utf8').then(parseProcStat, () => undefined);
    if (self?.pid !== this.selfPid) {
      logger.warn(
        { data: { proc_self_pid: self?.pid ?? null, pid: this.selfPid } },
        `running as PID 1 with a /proc from another PID namespace: orphaned processes cannot be found and will stay zombies; ${advice}`,
      );
      return false;
    }
    process.on('SIGCHLD', this.onSigchld);
    this.timer = setInterval(this.onSigchld, this.deps.safetyIntervalMs ?? 30_000);
    this.timer.unref();
    logger.info('running as PID 1: forwarding signals to the workload and reaping orphaned processes');
    // Zombies handed over before the start.
    await this.reap();
    return true;
  }

  stop(): void {
    if (!this.timer) return;
    clearInterval(this.timer);
    this.timer = undefined;
    process.off('SIGCHLD', this.onSigchld);
  }

  /**
   * Looks through /proc. Resolves once a look that began after the call has ended: when one is under
   * way (it may have passed the zombie that asked), one more follows it, shared by every call meanwhile.
   */
  reap(): Promise<void> {
    if (!this.scanning) {
      this.scanning = this.scan().finally(() => (this.scanning = undefined));
      return this.scanning;
    }
    this.queued ??= this.scanning
      .then(() => delay(RESCAN_GAP_MS))
      .then(() => {
        this.queued = undefined;
        return this.reap();
      });
    return this.queued;
  }

  private async scan(): Promise<void> {
    const waitpid = this.waitpid;
    if (!waitpid) return;
    let entries: string[];
    try {
      entries = await readdir(this.procRoot);
    } catch (err) {
      this.deps.logger.debug({ error: err }, 'cannot list processes');
      return;
    }
    for (const name of entries) {
      if (!/^\d+$/.test(name)) continue;
      let stat: ProcStat | undefined;
      try {
        stat = parseProcStat(await readFile(`${this.procRoot}/${name}/stat`, 'utf8'));
      } catch {
        continue; // Gone meanwhile.
      }
      if (!stat || stat.state !== 'Z' || stat.ppid !== this.selfPid) continue;
      // Checked right before the call: a child libuv waits for is in the set until libuv has reaped it,
      // and a zombie's pid cannot be taken by another process until someone waits for it.
      if (isSpawnedChild(stat.pid)) continue;
      const { result, status } = waitpid(stat.pid);
      if (result !== stat.pid) continue;
      this.reaped++;
      const how = decodeWaitStatus(status);
      this.deps.logger.debug(
        {
          data: {
            pid: stat.pid,
            command: stat.comm,
            exit_code: how.exitCode,
            signal: how.signal,
            reaped_total: this.reaped,
          },
        },
        'orphaned process reaped',
      );
    }
  }
}
