import { spawn as nodeSpawn } from 'node:child_process';
import type { ChildProcess, SpawnOptions } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import path from 'node:path';
import type { Logger } from 'pino';
import { LineSplitter } from './line-splitter.js';
import { parseProtocolLine } from './progress-protocol.js';
import type { ProtocolEvent } from './progress-protocol.js';
import { classifyWorkloadLine } from './workload-lines.js';

export type WorkloadState = 'not_configured' | 'starting' | 'running' | 'exited';

export interface WorkloadStatus {
  state: WorkloadState;
  command?: string[];
  pid?: number;
  startedAt?: number;
  exitedAt?: number;
  /** The exit code, or 128 + signal number when a signal ended it (as shells report it). */
  exitCode?: number;
  signal?: string;
  /** Set when the command could not be started at all. */
  spawnError?: string;
}

export interface SupervisorDeps {
  command: string[];
  env: NodeJS.ProcessEnv;
  /** For the agent's own records about the workload (started, exited, killed). */
  logger: Logger;
  /** For the workload's output lines; bound to `source: "workload"`. */
  workloadLogger: Logger;
  /** Receives progress-protocol events from the workload's stdout. */
  onEvent: (event: ProtocolEvent) => void;
  /** Correlation fields for a workload line (the job and node running when it was printed). */
  context?: () => { job_id?: string; node_id?: string };
  spawn?: (cmd: string, args: string[], opts: SpawnOptions) => ChildProcess;
  now?: () => number;
  /** Written to the child's stdin, which is then closed; without it stdin is /dev/null. */
  stdin?: string;
  /** Sees every output line that is not a protocol event (a job's stderr tail, its queue log). */
  onOutputLine?: (stream: 'stdout' | 'stderr', line: string) => void;
  /** What the agent's own records call the child. @defaultValue 'workload' */
  label?: string;
  /** Level of the routine records (started, exited with 0): `debug` for a child per job. @defaultValue 'info' */
  routineLevel?: 'info' | 'debug';
}

export interface WorkloadExit {
  code: number;
  signal?: string;
}

/** How long output may still arrive after the workload exited (a grandchild can hold the pipes open). */
const OUTPUT_GRACE_MS = 1500;
/** At most one redrawn progress-bar line per stream per this interval becomes a record. */
const REDRAW_INTERVAL_MS = 1000;

/**
 * Runs the workload as a child in its own process group, turns each output line into a log record
 * (`source: "workload"`), feeds protocol lines to the stores, forwards signals to the whole group, and
 * reports how it ended.
 */
export class WorkloadSupervisor {
  private child: ChildProcess | undefined;
  private readonly st: WorkloadStatus;
  /** The agent asked it to stop: an exit by that signal is what was asked for, not a failure. */
  private stopAsked = false;
  private readonly exitPromise: Promise<WorkloadExit>;
  private resolveExit!: (e: WorkloadExit) => void;
  private readonly now: () => number;
  private readonly label: string;

  constructor(private readonly deps: SupervisorDeps) {
    this.now = deps.now ?? Date.now;
    this.label = deps.label ?? 'workload';
    this.st = { state: deps.command.length ? 'starting' : 'not_configured', command: deps.command };
    this.exitPromise = new Promise((resolve) => (this.resolveExit = resolve));
  }

  status(): WorkloadStatus {
    return { ...this.st };
  }

  /** Resolves when the workload has exited (immediately resolved never for a sidecar). */
  get exited(): Promise<WorkloadExit> {
    return this.exitPromise;
  }

  get pid(): number | undefined {
    return this.st.state === 'running' ? this.st.pid : undefined;
  }

  start(): void {
    if (this.child || this.st.state !== 'starting') return;
    const [cmd, ...args] = this.deps.command as [string, ...string[]];
    const { logger } = this.deps;
    const spawn = this.deps.spawn ?? nodeSpawn;
    let child: ChildProcess;
    try {
      child = spawn(cmd, args, {
        env: this.deps.env,
        stdio: [this.deps.stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
        // Its own process group, so a forwarded signal reaches everything it started.
        detached: true,
      });
    } catch (err) {
      this.spawnFailed(err);
      return;
    }
    this.child = child;
    if (this.deps.stdin !== undefined && child.stdin) {
      // A child that exits without reading its input makes the write fail with EPIPE: not an error.
      child.stdin.on('error', () => undefined);
      child.stdin.end(this.deps.stdin);
    }
    child.once('error', (err) => {
      if (this.st.state === 'starting') this.spawnFailed(err);
      else logger.error({ error: err }, `${this.label} process error`);
    });
    child.once('spawn', () => {
      this.st.state = 'running';
      this.st.pid = child.pid;
      this.st.startedAt = this.now();
      logger[this.deps.routineLevel ?? 'info'](
        { data: { pid: child.pid, command: this.deps.command } },
        `${this.label} started`,
      );
    });
    const splitters: LineSplitter[] = [];
    for (const stream of ['stdout', 'stderr'] as const) {
      let lastRedraw = -Infinity;
      const splitter = new LineSplitter((line, info) => {
        if (info.redraw) {
          const t = this.now();
          if (t - lastRedraw < REDRAW_INTERVAL_MS) return;
          lastRedraw = t;
        }
        this.onLine(stream, line, info.truncated);
      });
      splitters.push(splitter);
      child[stream]?.on('data', (chunk: Buffer) => splitter.push(chunk));
      child[stream]?.on('end', () => splitter.end());
    }
    // The exit is the workload's end, whatever still holds its output pipes (a background grandchild
    // would keep them open for as long as it lives). Output already written is still read for a
    // moment, then the pipes are let go.
    child.once('exit', (code, signal) => {
      const exitCode = code ?? 128 + (signal ? (osConstants.signals[signal] ?? 0) : 0);
      this.st.state = 'exited';
      this.st.exitCode = exitCode;
      this.st.signal = signal ?? undefined;
      this.st.exitedAt = this.now();
      const finish = (): void => {
        clearTimeout(grace);
        child.stdout?.destroy();
        child.stderr?.destroy();
        for (const sp of splitters) sp.end();
        const fields = { data: { pid: child.pid, exit_code: exitCode, signal: signal ?? undefined } };
        const routine = logger[this.deps.routineLevel ?? 'info'].bind(logger);
        if (exitCode === 0) routine(fields, `${this.label} exited`);
        else if (this.stopAsked) routine(fields, `${this.label} stopped`);
        else logger.warn(fields, `${this.label} exited with a failure`);
        this.resolveExit({ code: exitCode, signal: signal ?? undefined });
      };
      const grace = setTimeout(finish, OUTPUT_GRACE_MS);
      child.once('close', finish);
    });
  }

  /** Sends `signal` to the workload's process group. Returns false when nothing is running. */
  signal(signal: NodeJS.Signals): boolean {
    const pid = this.child?.pid;
    if (pid === undefined || this.st.state !== 'running') return false;
    return this.signalGroup(pid, signal);
  }

  /**
   * Kills what is left of the workload's process group: background children it started and did not
   * wait for. An entrypoint leaves nothing of its workload behind.
   */
  killLeftovers(): void {
    const pid = this.child?.pid;
    if (pid !== undefined) this.signalGroup(pid, 'SIGKILL');
  }

  private signalGroup(pid: number, signal: NodeJS.Signals): boolean {
    try {
      process.kill(-pid, signal);
      return true;
    } catch {
      try {
        return this.child?.kill(signal) ?? false;
      } catch {
        return false;
      }
    }
  }

  /**
   * Asks the workload to stop with SIGTERM and waits up to `graceMs`, then kills the group. Resolves
   * with how it ended; safe to call more than once.
   */
  async stop(graceMs: number, signal: NodeJS.Signals = 'SIGTERM'): Promise<WorkloadExit | undefined> {
    if (this.st.state === 'not_configured') return undefined;
    if (this.st.state === 'exited') return this.exitPromise;
    this.stopAsked = true;
    this.signal(signal);
    let timer: NodeJS.Timeout | undefined;
    const killed = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        this.deps.logger.warn(
          { data: { grace_ms: graceMs } },
          `${this.label} did not stop in time; killing it`,
        );
        this.signal('SIGKILL');
        resolve();
      }, graceMs);
    });
    await Promise.race([this.exitPromise, killed]);
    clearTimeout(timer);
    return this.exitPromise;
  }

  /** Last resort at process exit: kill the group without waiting. */
  kill(): void {
    this.stopAsked = true;
    this.signal('SIGKILL');
    this.killLeftovers();
  }

  private spawnFailed(err: unknown): void {
    const message = err instanceof Error ? err.message : String(err);
    this.st.state = 'exited';
    this.st.spawnError = message;
    // 127 is what shells return for a command that cannot be found or run.
    this.st.exitCode = 127;
    this.st.exitedAt = this.now();
    this.deps.logger.error(
      { data: { command: this.deps.command }, error: err },
      `${this.label} could not be started`,
    );
    this.resolveExit({ code: 127 });
  }

  private onLine(stream: 'stdout' | 'stderr', line: string, truncated: boolean): void {
    if (line.trim() === '') return;
    const logger = this.deps.workloadLogger;
    const ctx = this.deps.context?.() ?? {};
    const base = { stream, ...ctx, ...(truncated ? { truncated: true } : {}) };
    if (stream === 'stdout') {
      const parsed = parseProtocolLine(line);
      if (parsed.kind === 'event') {
        try {
          this.deps.onEvent(parsed.event);
        } catch (err) {
          logger.error({ ...base, error: err, data: parsed.event }, 'progress event could not be applied');
          return;
        }
        // Fields of the job may have changed with the event; take them again.
        logger.debug(
          { ...base, ...(this.deps.context?.() ?? {}), data: parsed.event },
          `progress ${parsed.event.type}`,
        );
        return;
      }
      if (parsed.kind === 'invalid') {
        logger.warn({ ...base, data: { line, error: parsed.error } }, 'invalid progress line');
        return;
      }
    }
    this.deps.onOutputLine?.(stream, line);
    const rec = classifyWorkloadLine(line);
    logger[rec.level]({ ...base, ...(rec.data ? { data: rec.data } : {}) }, rec.message);
  }
}

/** The workload's short name for process lists, e.g. `python3` for `/usr/bin/python3 main.py`. */
export function workloadName(command: string[]): string {
  return path.basename(command[0] ?? 'workload');
}
