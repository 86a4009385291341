import { Job, UnrecoverableError, WaitingError, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { ArtifactStore } from '../artifacts/artifact-store.js';
import type { JobFailure, JobStore } from '../jobs/job-store.js';
import { settlesWithin } from '../deadline.js';
import { parseTraceparent } from '../tracing/traceparent.js';
import type { WorkflowStore } from '../workflow/workflow-store.js';
import { ProgressApplier } from '../workload/progress-applier.js';
import { JobReporter } from './job-reporter.js';
import type { QueueParticipant } from './queue-monitor.js';
import { createRedis } from './redis.js';
import { JobRunFailure } from './runner.js';
import type { JobRunner, RunContext } from './runner.js';

export interface QueueWorkerOptions {
  url: string;
  queueName: string;
  prefix: string;
  concurrency: number;
  lockDurationMs: number;
  progressIntervalMs: number;
  keepLogs: number;
  runner: JobRunner;
  jobs: JobStore;
  workflows: WorkflowStore;
  artifacts: ArtifactStore;
  /** The agent's logger (source agent); job records get `job_id`. */
  logger: Logger;
  /** For what jobs print (`source: "job"`). */
  jobOutputLogger: Logger;
  /** Stored on each job as the worker that ran it (`job.processedBy`). */
  workerName: string;
  now?: () => number;
}

/** Why a running job's runner was aborted. */
type AbortCause = { kind: 'canceled'; reason: string } | { kind: 'preempted' };

interface Running {
  job: Job;
  token: string;
  cause?: AbortCause;
  done: Promise<void>;
}

/** How long writing a job's last progress and log lines may hold up its end. */
const REPORTER_CLOSE_MS = 2000;
/** How long handing a job back to the queue may take before it is left to stall detection. */
const HAND_BACK_TIMEOUT_MS = 3000;
/** How long preempted jobs get to stop (a command's kill grace) and be moved back. */
const PREEMPT_WAIT_MS = 10_000;
/** How long the worker's close may take once its jobs are done or handed back. */
const CLOSE_TIMEOUT_MS = 5000;

/** BullMQ's Worker with a hook after each job: the job's outcome as BullMQ settled it (or did not). */
class AgentWorker extends Worker {
  afterJob: (job: Job) => void = () => undefined;

  override async processJob(job: Job, token: string, fetchNextCallback?: () => boolean): Promise<void | Job> {
    try {
      return await super.processJob(job, token, fetchNextCallback);
    } finally {
      this.afterJob(job);
    }
  }
}

/**
 * The pod as a BullMQ worker: takes jobs from the queue, hands each to the runner, and keeps the
 * JobStore in step with what the queue confirmed. A job counts as completed or failed here only once
 * BullMQ has moved it so in Redis, so a job is never counted twice, whatever Redis does meanwhile.
 *
 * Drain: `drain()` stops fetching, lets running jobs finish until the deadline, then aborts their
 * runners and moves them back to `wait` (no attempt spent) for another pod to take.
 */
export class QueueWorker implements QueueParticipant {
  readonly mode = 'worker' as const;
  private readonly redis: Redis;
  private readonly worker: AgentWorker;
  private readonly running = new Map<string, Running>();
  private readonly now: () => number;
  private draining = false;
  private closePromise: Promise<void> | undefined;
  private readonly stats = { processed: 0, completed: 0, failed: 0, canceled: 0, returned: 0 };
  private errorsLogged = 0;

  constructor(private readonly opts: QueueWorkerOptions) {
    this.now = opts.now ?? Date.now;
    this.redis = createRedis(opts.url, 'worker', opts.logger);
    this.worker = new AgentWorker(
      opts.queueName,
      // Three parameters: BullMQ passes the AbortSignal only to a processor that declares it.
      (job: Job, token?: string, signal?: AbortSignal) => this.process(job, token ?? '', signal),
      {
        connection: this.redis,
        prefix: opts.prefix,
        concurrency: opts.concurrency,
        lockDuration: opts.lockDurationMs,
        name: opts.workerName,
        autorun: false,
      },
    );
    this.worker.afterJob = (job) => this.afterJob(job);
    this.worker.on('completed', (job: Job, result: unknown) => this.settled(job, 'completed', { result }));
    this.worker.on('failed', (job: Job | undefined, err: Error) => {
      if (job) this.onFailed(job, err);
    });
    this.worker.on('lockRenewalFailed', (ids: string[]) => {
      opts.logger.warn(
        { data: { job_ids: ids } },
        'could not renew job locks: another pod may take these jobs',
      );
    });
    this.worker.on('error', (err: Error) => {
      // Connection errors repeat on every retry; createRedis already says Redis is down.
      if (isConnectionError(err)) return;
      if (this.errorsLogged++ < 20) opts.logger.warn({ error: err }, 'queue worker error');
    });
  }

  start(): void {
    this.worker.run().catch((err: unknown) => {
      this.opts.logger.error({ error: err }, 'queue worker stopped');
    });
    this.opts.logger.info(
      {
        data: {
          queue: this.opts.queueName,
          prefix: this.opts.prefix,
          runner: this.opts.runner.name,
          concurrency: this.opts.concurrency,
        },
      },
      'queue worker started',
    );
  }

  /** Cancels a job running on this pod (its runner is aborted; the job fails, not retried). */
  cancel(jobId: string, reason = 'canceled'): boolean {
    const r = this.running.get(jobId);
    if (!r || r.cause) return false;
    r.cause = { kind: 'canceled', reason };
    this.opts.logger.info({ job_id: jobId, data: { reason } }, 'canceling job');
    // BullMQ aborts the signal it gave the processor; the cause says what the abort means.
    this.worker.cancelJob(jobId, `canceled: ${reason}`);
    return true;
  }

  connections(): { role: string; status: string }[] {
    return [{ role: 'worker', status: this.redis.status }];
  }

  view(): Record<string, unknown> {
    return {
      mode: this.mode,
      runner: this.opts.runner.name,
      this_pod: {
        worker_name: this.opts.workerName,
        concurrency: this.opts.concurrency,
        running: this.running.size,
        draining: this.draining,
        ...this.stats,
      },
    };
  }

  /**
   * Stops taking jobs; lets running ones finish until `deadline` (epoch ms); then hands the rest
   * back to the queue; then closes. Safe to call more than once.
   */
  drain(deadline: number): Promise<void> {
    this.closePromise ??= (async () => {
      this.draining = true;
      const log = this.opts.logger;
      log.info(
        { data: { running: this.running.size, wait_ms: Math.max(0, deadline - this.now()) } },
        'queue worker draining',
      );
      // Pausing touches no Redis, but is bounded all the same: a drain never waits on Redis.
      await settlesWithin(
        this.worker.pause(true).catch(() => undefined),
        1000,
      );
      await settlesWithin(
        Promise.all([...this.running.values()].map((r) => r.done)),
        Math.max(0, deadline - this.now()),
      );
      if (this.running.size > 0) {
        log.warn(
          { data: { job_ids: [...this.running.keys()] } },
          'drain deadline reached; handing running jobs back to the queue',
        );
        for (const [id, r] of this.running) {
          if (!r.cause) {
            r.cause = { kind: 'preempted' };
            this.worker.cancelJob(id, 'preempted: the pod is draining');
          }
        }
        // The runners stop their work (a command gets its kill grace), then each job is moved back.
        await settlesWithin(Promise.all([...this.running.values()].map((r) => r.done)), PREEMPT_WAIT_MS);
      }
      // close() may wait on Redis: bounded, then forced, then the connection dropped. With Redis away
      // nothing can be acknowledged any more, so it is forced at once.
      const quiet = (p: Promise<unknown>): Promise<unknown> => p.catch(() => undefined);
      const patient = this.redis.status === 'ready';
      if (!patient || !(await settlesWithin(quiet(this.worker.close()), CLOSE_TIMEOUT_MS))) {
        await settlesWithin(quiet(this.worker.close(true)), 1000);
      }
      await settlesWithin(quiet(this.opts.runner.close?.() ?? Promise.resolve()), CLOSE_TIMEOUT_MS);
      this.redis.disconnect();
      log.info({ data: this.stats }, 'queue worker stopped');
    })();
    return this.closePromise;
  }

  private async process(job: Job, token: string, signal: AbortSignal | undefined): Promise<unknown> {
    const id = job.id as string;
    const { jobs, workflows, logger } = this.opts;
    if (this.draining) {
      // Fetched just as the drain began: straight back to the queue, untouched.
      await this.handBack(job, token);
      throw new WaitingError();
    }
    const traceparent = traceparentOf(job.data);
    const record = jobs.upsert({
      id,
      queue: this.opts.queueName,
      name: job.name,
      source: 'queue-worker',
      state: 'active',
      traceId: traceparent ? parseTraceparent(traceparent)?.traceId : undefined,
    });
    record.attempts = job.attemptsStarted || job.attemptsMade + 1;
    workflows.begin(id);
    this.stats.processed++;

    // BullMQ gives a signal to a processor that declares one: aborted by cancelJob, from the API, a
    // BullMQ cancel, or the drain (which set `cause` first). A cancel nobody explained is a cancel.
    const jobSignal = signal ?? new AbortController().signal;
    const onBullCancel = (): void => {
      const r = this.running.get(id);
      if (r && !r.cause) r.cause = { kind: 'canceled', reason: String(abortMessage(jobSignal.reason)) };
    };
    jobSignal.addEventListener('abort', onBullCancel, { once: true });
    let resolveDone!: () => void;
    const entry: Running = { job, token, done: new Promise((r) => (resolveDone = r)) };
    this.running.set(id, entry);

    const jobLogger = logger.child({ job_id: id });
    // Output records take job_id (and the node) from the runner's context, per line.
    const outputLogger = this.opts.jobOutputLogger;
    const keepLogs = job.opts.keepLogs ?? this.opts.keepLogs;
    const reporter = new JobReporter({
      writeProgress: (p) => job.updateProgress(p),
      writeLog: (line) => Job.addJobLog(this.worker, id, line, keepLogs),
      progressIntervalMs: this.opts.progressIntervalMs,
      keepLogs,
      logger: jobLogger,
      now: this.now,
    });
    const pushProgress = (): void => {
      const node = workflows.currentNode(id);
      reporter.progress({
        progress: jobs.get(id)?.progressPercent ?? 0,
        node: node?.id ?? null,
        step: node?.step ?? null,
        total: node?.total ?? null,
      });
    };
    const unsubscribe = [
      jobs.subscribe((e) => {
        if (e.job.id === id && e.type === 'progress') pushProgress();
      }),
      workflows.subscribe((e) => {
        if (e.jobId === id && e.type !== 'progress') pushProgress();
      }),
    ];
    const applier = new ProgressApplier({
      jobs,
      workflows,
      artifacts: this.opts.artifacts,
      logger: jobLogger,
      defaultQueue: this.opts.queueName,
      source: 'queue-worker',
      scope: { jobId: id, onJobEnd: () => undefined },
    });
    const ctx: RunContext = {
      jobId: id,
      queue: this.opts.queueName,
      name: job.name,
      data: job.data,
      attempt: record.attempts,
      traceparent,
      signal: jobSignal,
      logger: jobLogger,
      outputLogger,
      event: (e) => applier.apply(e),
      outputLine: (_stream, line) => reporter.line(line),
      currentNodeId: () => workflows.currentNode(id)?.id,
    };
    // Per job, one INFO record is enough: the one at its end, with how it went.
    jobLogger.debug(
      {
        data: {
          queue: this.opts.queueName,
          name: job.name,
          attempt: record.attempts,
          runner: this.opts.runner.name,
        },
      },
      'job started',
    );
    try {
      const result = await this.opts.runner.run(ctx);
      await applier.settled();
      // Producers polling the progress see the end before the completed state.
      const node = workflows.currentNode(id);
      if (reporter.reported)
        reporter.progress({
          progress: 100,
          node: node?.id ?? null,
          step: node?.step ?? null,
          total: node?.total ?? null,
        });
      return result ?? null;
    } catch (err) {
      await applier.settled();
      const cause = entry.cause;
      if (cause?.kind === 'preempted') {
        await reporter.close(REPORTER_CLOSE_MS);
        await this.handBack(job, token);
        throw new WaitingError();
      }
      if (cause?.kind === 'canceled') throw new UnrecoverableError(`canceled: ${cause.reason}`);
      if (err instanceof JobRunFailure) {
        const e = new Error(err.failure.message);
        e.name = err.failure.type ?? 'JobRunFailure';
        e.stack = err.stack;
        throw e;
      }
      throw err;
    } finally {
      jobSignal.removeEventListener('abort', onBullCancel);
      for (const u of unsubscribe) u();
      await reporter.close(REPORTER_CLOSE_MS);
      resolveDone();
    }
  }

  /** Moves a job this pod holds back to `wait`, without spending an attempt. */
  private async handBack(job: Job, token: string): Promise<void> {
    const id = job.id as string;
    const ok = await settlesWithin(job.moveToWait(token), HAND_BACK_TIMEOUT_MS).catch((err: unknown) => {
      this.opts.logger.warn(
        { job_id: id, error: err },
        'could not hand the job back; it returns to the queue when its lock expires',
      );
      return false;
    });
    if (ok) this.opts.logger.info({ job_id: id }, 'job handed back to the queue');
    this.settled(job, 'returned', {
      failure: {
        message: 'preempted: the pod is draining; handed back to the queue',
        type: 'Preempted',
        retryable: true,
      },
    });
  }

  private onFailed(job: Job, err: Error): void {
    const entry = this.running.get(job.id as string);
    if (entry?.cause?.kind === 'canceled') {
      this.settled(job, 'canceled', { failure: { message: err.message, type: 'Canceled' } });
      return;
    }
    const attempts = job.opts.attempts ?? 1;
    const retryable = job.attemptsMade < attempts && !(err instanceof UnrecoverableError);
    this.settled(job, 'failed', {
      failure: { message: err.message, type: err.name, stack: err.stack, retryable },
    });
  }

  /** The JobStore follows what BullMQ settled. */
  private settled(
    job: Job,
    to: 'completed' | 'failed' | 'canceled' | 'returned',
    patch: { failure?: JobFailure; result?: unknown },
  ): void {
    const id = job.id as string;
    const known = this.opts.jobs.get(id);
    if (!known || known.state !== 'active') return;
    if (!this.opts.jobs.transition(id, to, patch)) return;
    this.opts.workflows.finish(id, to);
    this.stats[to]++;
    const rec = this.opts.jobs.get(id);
    const fields = {
      job_id: id,
      data: {
        status: to,
        name: job.name,
        attempt: rec?.attempts,
        duration_ms:
          rec?.startedAt !== undefined && rec.finishedAt !== undefined
            ? rec.finishedAt - rec.startedAt
            : undefined,
        failure: patch.failure,
      },
    };
    if (to === 'completed') this.opts.logger.info(fields, 'job completed');
    else this.opts.logger.warn(fields, `job ${to}`);
  }

  /** After BullMQ is done with a job: if it never settled it (lock lost, Redis gone), say so. */
  private afterJob(job: Job): void {
    const id = job.id as string;
    this.running.delete(id);
    const rec = this.opts.jobs.get(id);
    if (rec?.state === 'active') {
      this.settled(job, 'returned', {
        failure: {
          message:
            'the queue did not take the outcome (lock lost or Redis unreachable); the queue retries the job when its lock expires',
          type: 'LockLost',
          retryable: true,
        },
      });
    }
  }
}

function abortMessage(reason: unknown): string {
  const text =
    reason instanceof Error ? reason.message : typeof reason === 'string' && reason ? reason : 'canceled';
  return text.replace(/^canceled: /, '');
}

function isConnectionError(err: Error): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return (
    code === 'ECONNREFUSED' ||
    code === 'ECONNRESET' ||
    code === 'ETIMEDOUT' ||
    code === 'EHOSTUNREACH' ||
    /Connection is closed|ECONNREFUSED|Stream isn't writeable/.test(err.message)
  );
}

function traceparentOf(data: unknown): string | undefined {
  if (data && typeof data === 'object' && 'traceparent' in data) {
    const tp = data.traceparent;
    if (typeof tp === 'string' && parseTraceparent(tp)) return tp;
  }
  return undefined;
}
