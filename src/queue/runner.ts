import type { Logger } from 'pino';
import type { JobFailure } from '../jobs/job-store.js';
import type { ProtocolEvent } from '../workload/progress-protocol.js';

/** What a runner gets for one job. It reports progress through `event`, never touching the queue. */
export interface RunContext {
  jobId: string;
  queue: string;
  name: string;
  /** `job.data` as the producer gave it. */
  data: unknown;
  /** 1 for the first run of the job, counting runs on any pod. */
  attempt: number;
  /** W3C trace context to continue: from the job data, else none. */
  traceparent?: string;
  /** Aborted when the job is canceled or the pod drains; `signal.reason` says which. */
  signal: AbortSignal;
  /** Bound to the job: the agent's own records about this job. */
  logger: Logger;
  /** Bound to the job with `source: "job"`: what the job's own code prints. */
  outputLogger: Logger;
  /** Progress-protocol events of the job (nodes, steps, artifacts, errors, its result). */
  event(e: ProtocolEvent): void;
  /** An output line of the job (for the queue's job log); not a protocol event. */
  outputLine(stream: 'stdout' | 'stderr', line: string): void;
  /** The node running now, for correlating output lines. */
  currentNodeId(): string | undefined;
  /**
   * Marks a step of the runner's own work (submit, execute, collect): a span under the job's when
   * tracing is on, nothing otherwise. `end` takes the step's failure, if it failed.
   */
  step(name: string, attributes?: Record<string, string | number | boolean>): RunStep;
}

export interface RunStep {
  setAttribute(key: string, value: string | number | boolean): void;
  end(failure?: { message: string; type?: string }): void;
}

/** The step of a job that is not traced. */
export const NO_STEP: RunStep = { setAttribute: () => undefined, end: () => undefined };

/** The job's own failure: the runner ran it and it failed (as opposed to the runner breaking). */
export class JobRunFailure extends Error {
  constructor(readonly failure: JobFailure) {
    super(failure.message);
    this.name = 'JobRunFailure';
    if (failure.stack)
      this.stack = `${failure.type ?? 'JobRunFailure'}: ${failure.message}\n${failure.stack}`;
  }
}

/**
 * Runs one queue job to its end. Resolves with the job's result, rejects with a `JobRunFailure` when
 * the job failed, or with `signal.reason` once aborted. A runner never acknowledges the job itself:
 * the worker does, once the runner has returned.
 */
export interface JobRunner {
  readonly name: string;
  run(ctx: RunContext): Promise<unknown>;
  /** Whether the runner can take jobs now (ComfyUI up, ...); undefined when it always can. */
  readiness?(): { ok: boolean; reason?: string; starting?: boolean };
  /** Tells when `readiness().ok` changes; the worker takes no jobs while it is false. */
  onReadinessChange?(listener: (ok: boolean) => void): () => void;
  /** Starts what the runner keeps open (a connection); called once, before any job. */
  start?(): void;
  /** What `/debug/queue` shows of the runner. */
  view?(): Record<string, unknown>;
  close?(): Promise<void>;
  /**
   * Kills what the runner's jobs left running on this machine (their processes), at once and
   * synchronously: the agent is exiting without a drain and nothing may outlive it.
   */
  kill?(): void;
}

/** Completes every job at once with no result: measures the queue plumbing and nothing else. */
export class NoopRunner implements JobRunner {
  readonly name = 'noop';
  run(ctx: RunContext): Promise<unknown> {
    ctx.signal.throwIfAborted();
    return Promise.resolve(null);
  }
}
