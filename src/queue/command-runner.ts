import { PROTOCOL_PREFIX } from '../workload/progress-protocol.js';
import { WorkloadSupervisor } from '../workload/supervisor.js';
import type { JobEndEvent } from '../workload/progress-applier.js';
import { JobRunFailure } from './runner.js';
import type { JobRunner, RunContext } from './runner.js';

export interface CommandRunnerOptions {
  /** Run with `/bin/sh -c` per job. */
  command: string;
  /** The environment every job's command starts from (the agent's, without its secrets). */
  env: NodeJS.ProcessEnv;
  artifactsDir: string;
  /**
   * How long a canceled or preempted job's command has after SIGTERM before its process group is
   * killed.
   * @defaultValue 5000
   */
  killGraceMs?: number;
  /**
   * Lines of stderr kept as the failure reason of a command that exits non-zero.
   * @defaultValue 20
   */
  stderrTailLines?: number;
}

/** Longest stderr line kept in a failure reason. */
const TAIL_LINE_MAX = 2000;

/**
 * Runs `JOB_COMMAND` once per job: the job data as JSON on stdin; `JOB_ID`, `JOB_QUEUE`, `JOB_ATTEMPT`,
 * `TRACEPARENT` in its environment; progress events on its stdout. Exit 0 completes the job with the
 * result its `job.end` event reported; anything else fails it with the last lines of stderr.
 */
export class CommandRunner implements JobRunner {
  readonly name = 'command';
  private readonly killGraceMs: number;
  private readonly tailLines: number;
  /** The commands running now. */
  private readonly running = new Set<WorkloadSupervisor>();

  constructor(private readonly opts: CommandRunnerOptions) {
    this.killGraceMs = opts.killGraceMs ?? 5000;
    this.tailLines = opts.stderrTailLines ?? 20;
  }

  async run(ctx: RunContext): Promise<unknown> {
    ctx.signal.throwIfAborted();
    const tail: string[] = [];
    let reported: JobEndEvent | undefined;
    const env: NodeJS.ProcessEnv = {
      ...this.opts.env,
      PYTHONUNBUFFERED: this.opts.env.PYTHONUNBUFFERED ?? '1',
      AGENT_PROGRESS_PREFIX: PROTOCOL_PREFIX,
      ARTIFACTS_DIR: this.opts.artifactsDir,
      JOB_ID: ctx.jobId,
      JOB_QUEUE: ctx.queue,
      JOB_NAME: ctx.name,
      JOB_ATTEMPT: String(ctx.attempt),
    };
    if (ctx.traceparent) env.TRACEPARENT = ctx.traceparent;
    else delete env.TRACEPARENT;

    const child = new WorkloadSupervisor({
      command: ['/bin/sh', '-c', this.opts.command],
      env,
      stdin: JSON.stringify(ctx.data ?? null),
      label: 'job command',
      routineLevel: 'debug',
      logger: ctx.logger,
      workloadLogger: ctx.outputLogger,
      onEvent: (e) => {
        if (e.type === 'job.end') reported = e;
        ctx.event(e);
      },
      onOutputLine: (stream, line) => {
        if (stream === 'stderr') {
          tail.push(line.length > TAIL_LINE_MAX ? `${line.slice(0, TAIL_LINE_MAX)}…` : line);
          if (tail.length > this.tailLines) tail.shift();
        }
        ctx.outputLine(stream, line);
      },
      context: () => ({ job_id: ctx.jobId, node_id: ctx.currentNodeId() }),
    });
    this.running.add(child);
    const onAbort = (): void => void child.stop(this.killGraceMs, 'SIGTERM');
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    const step = ctx.step('command.run');
    let failure: { message: string; type?: string } | undefined;
    try {
      child.start();
      const pid = child.status().pid;
      if (pid !== undefined) step.setAttribute('process.pid', pid);
      const exit = await child.exited;
      step.setAttribute('process.exit.code', exit.code ?? -1);
      // Whatever the command left running in its group goes with it.
      child.killLeftovers();
      if (ctx.signal.aborted) throw ctx.signal.reason;
      const status = child.status();
      if (status.spawnError) {
        throw new JobRunFailure({ message: `the job command could not start: ${status.spawnError}` });
      }
      if (exit.code !== 0) {
        const how = exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`;
        const last = tail.length ? `: ${tail[tail.length - 1]}` : '';
        throw new JobRunFailure({
          message: `the job command ${how}${last}`,
          type: 'CommandFailed',
          stack: tail.join('\n') || undefined,
          details: { exit_code: exit.code, signal: exit.signal ?? null, stderr_tail: tail },
        });
      }
      if (reported?.status === 'failed' || reported?.status === 'canceled') {
        const err = reported.error;
        throw new JobRunFailure({
          message: err?.message ?? `the job command reported the job ${reported.status}`,
          type: err && 'exception_type' in err ? err.exception_type : undefined,
          stack: tail.join('\n') || undefined,
        });
      }
      return reported?.result ?? null;
    } catch (err) {
      failure = {
        message: err instanceof Error ? err.message : String(err),
        type: err instanceof Error ? err.name : undefined,
      };
      throw err;
    } finally {
      this.running.delete(child);
      ctx.signal.removeEventListener('abort', onAbort);
      step.end(failure);
    }
  }

  /** SIGKILLs every running command with its process group. */
  kill(): void {
    for (const child of this.running) child.kill();
  }
}
