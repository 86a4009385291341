import { Job, UnrecoverableError, WaitingError, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { ArtifactStore } from '../artifacts/artifact-store.js';
import type { JobFailure, JobStore } from '../jobs/job-store.js';
import { settlesWithin } from '../deadline.js';
import { ATTR, SPAN } from '../tracing/attributes.js';
import { SpanKind, endSpan, traceparentOf as spanTraceparent } from '../tracing/otel.js';
import type { Span, Tracing } from '../tracing/otel.js';
import { parseTraceparent } from '../tracing/traceparent.js';
import type { WorkflowSpans } from '../tracing/workflow-spans.js';
import type { WorkflowStore } from '../workflow/workflow-store.js';
import { ProgressApplier } from '../workload/progress-applier.js';
import { JobReporter } from './job-reporter.js';
import type { ProgressPayload } from './job-reporter.js';
import type { QueueParticipant } from './queue-monitor.js';
import { createRedis } from './redis.js';
import { JobRunFailure, NO_STEP } from './runner.js';
import type { JobRunner, RunContext, RunStep } from './runner.js';
import type { ProtocolEvent } from '../workload/progress-protocol.js';

export interface QueueWorkerOptions {
  url: string;
  queueName: string;
  prefix: string;
  concurrency: number;
  lockDurationMs: number;
  /** BullMQ's `stalledInterval` and `maxStalledCount`; BullMQ's defaults when absent. */
  stalledIntervalMs?: number;
  maxStalledCount?: number;
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
  /** A span per job (continuing the producer's trace) and per workflow node, when tracing is on. */
  tracing?: { tracing: Tracing; workflowSpans: WorkflowSpans };
}

/** Why a running job's runner was aborted. */
type AbortCause = { kind: 'canceled'; reason: string } | { kind: 'preempted'; reason: string };

/** What a job's run needs of the worker. */
interface RunDeps {
  opts: QueueWorkerOptions;
  worker: Worker;
  now: () => number;
}

/**
 * One job on this pod: the runner's context for it and what the worker keeps while it runs. One object
 * per job, its methods on the prototype: a fast queue pays for every allocation on a job's path.
 * What only some jobs need (a bound logger, the progress applier, the job's reporter) is made on first
 * use: most jobs of a busy queue log, report and apply nothing but their end.
 */
class JobRun implements RunContext {
  readonly queue: string;
  readonly name: string;
  readonly data: unknown;
  cause?: AbortCause;
  /** Made on the job's first progress or output line. */
  reporter?: JobReporter;
  /** The runner's own account of the job's failure, kept whole for the JobStore. */
  failure?: JobFailure;
  /** Progress goes to the queue until the job's runner is done. */
  reporting = true;
  private ended = false;
  private donePromise?: Promise<void>;
  private resolveDone?: () => void;
  private jobLogger?: Logger;
  private outLogger?: Logger;
  private applier?: ProgressApplier;

  constructor(
    private readonly deps: RunDeps,
    private readonly job: Job,
    readonly jobId: string,
    /** The processor's signal: once aborted, the job is on its way out whatever `cause` says. */
    readonly signal: AbortSignal,
    readonly attempt: number,
    readonly traceparent: string | undefined,
    private readonly traceIds: { trace_id?: string; span_id?: string } | undefined,
    private readonly span: Span | undefined,
  ) {
    this.queue = deps.opts.queueName;
    this.name = job.name;
    this.data = job.data;
  }

  /** Settles once the job's run is over (for the drain). */
  get done(): Promise<void> {
    if (this.ended) return Promise.resolve();
    return (this.donePromise ??= new Promise((r) => (this.resolveDone = r)));
  }

  end(): void {
    this.ended = true;
    this.reporting = false;
    this.resolveDone?.();
  }

  get logger(): Logger {
    return (this.jobLogger ??= this.deps.opts.logger.child({ job_id: this.jobId, ...this.traceIds }));
  }

  get outputLogger(): Logger {
    // Output records take job_id (and the node) from the runner's context, per line.
    const out = this.deps.opts.jobOutputLogger;
    return (this.outLogger ??= this.traceIds ? out.child(this.traceIds) : out);
  }

  event(e: ProtocolEvent): void {
    const { jobs, workflows, artifacts, queueName } = this.deps.opts;
    this.applier ??= new ProgressApplier({
      jobs,
      workflows,
      artifacts,
      logger: this.logger,
      defaultQueue: queueName,
      source: 'queue-worker',
      scope: { jobId: this.jobId, onJobEnd: () => undefined },
    });
    this.applier.apply(e);
  }

  /** Settles once the progress events applied so far are done; undefined when there were none. */
  applied(): Promise<void> | undefined {
    return this.applier?.settled();
  }

  outputLine(_stream: 'stdout' | 'stderr', line: string): void {
    this.reporterOf().line(line);
  }

  currentNodeId(): string | undefined {
    return this.deps.opts.workflows.currentNode(this.jobId)?.id;
  }

  step(name: string, attributes: Record<string, string | number | boolean> = {}): RunStep {
    const traced = this.deps.opts.tracing;
    if (!this.span || !traced) return NO_STEP;
    const child = traced.tracing.startChild(name, this.span, { [ATTR.jobId]: this.jobId, ...attributes });
    return {
      setAttribute: (k, v) => void child.setAttribute(k, v),
      end: (failure) => endSpan(child, failure),
    };
  }

  /** Sends the job's progress to the queue (throttled by the reporter). */
  pushProgress(): void {
    if (this.reporting) this.reporterOf().progress(this.progress());
  }

  /** What `job.progress` says now: the job's percent and its current node. */
  progress(): ProgressPayload {
    const { jobs, workflows } = this.deps.opts;
    const node = workflows.currentNode(this.jobId);
    return {
      progress: jobs.get(this.jobId)?.progressPercent ?? 0,
      node: node?.id ?? null,
      step: node?.step ?? null,
      total: node?.total ?? null,
    };
  }

  private reporterOf(): JobReporter {
    if (this.reporter) return this.reporter;
    const { opts, worker, now } = this.deps;
    const { job, jobId } = this;
    const keepLogs = job.opts.keepLogs ?? opts.keepLogs;
    return (this.reporter = new JobReporter({
      writeProgress: (p) => job.updateProgress(p),
      writeLog: (line) => Job.addJobLog(worker, jobId, line, keepLogs),
      progressIntervalMs: opts.progressIntervalMs,
      keepLogs,
      logger: this.logger,
      now,
    }));
  }
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

  override processJob(job: Job, token: string, fetchNextCallback?: () => boolean): Promise<void | Job> {
    // One reaction on BullMQ's own promise (no extra async frame): this runs for every job.
    return super.processJob(job, token, fetchNextCallback).then(
      (next) => {
        this.afterJob(job);
        return next;
      },
      (err: unknown) => {
        this.afterJob(job);
        throw err;
      },
    );
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
  private readonly running = new Map<string, JobRun>();
  /** Called when the last running job has left BullMQ's hands (its outcome is in Redis). */
  private readonly idleWaiters = new Set<() => void>();
  private readonly now: () => number;
  private draining = false;
  private closePromise: Promise<void> | undefined;
  private readonly stats = { processed: 0, completed: 0, failed: 0, canceled: 0, returned: 0 };
  private errorsLogged = 0;
  private readonly unsubscribe: (() => void)[];
  /** Not taking jobs because the runner is not ready. */
  private held = false;
  private everRan = false;
  /** Bookkeeping of ended jobs waiting for the next turn of the event loop, per job id. */
  private readonly deferred = new Map<string, (() => void)[]>();
  private flushing = false;
  private readonly runDeps: RunDeps;

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
        // BullMQ takes an option given as undefined over its default.
        ...(opts.stalledIntervalMs !== undefined && { stalledInterval: opts.stalledIntervalMs }),
        ...(opts.maxStalledCount !== undefined && { maxStalledCount: opts.maxStalledCount }),
        name: opts.workerName,
        autorun: false,
      },
    );
    this.worker.afterJob = (job) => this.afterJob(job);
    this.runDeps = { opts, worker: this.worker, now: this.now };
    // One subscription for all running jobs: the job's percent or its current node changed.
    this.unsubscribe = [
      opts.jobs.subscribe((e) => {
        if (e.type === 'progress') this.running.get(e.job.id)?.pushProgress();
      }),
      opts.workflows.subscribe((e) => {
        if (e.type !== 'progress') this.running.get(e.jobId)?.pushProgress();
      }),
    ];
    // The bookkeeping of a job's end waits for the next turn of the event loop: it then runs while the
    // worker waits on Redis for the next job, instead of holding that job up.
    this.worker.on('completed', (job: Job, result: unknown) =>
      this.defer(job.id as string, () => this.settled(job, 'completed', { result })),
    );
    this.worker.on('failed', (job: Job | undefined, err: Error) => {
      if (!job) return;
      const entry = this.running.get(job.id as string);
      this.defer(job.id as string, () => this.onFailed(job, err, entry));
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
    const { runner, logger } = this.opts;
    runner.start?.();
    if (runner.onReadinessChange) {
      this.unsubscribe.push(runner.onReadinessChange((ok) => this.runnerReady(ok)));
    }
    const ready = runner.readiness?.() ?? { ok: true };
    if (ready.ok) this.runWorker();
    else {
      // Jobs stay in the queue for pods that can run them until this one's runner is up.
      this.held = true;
      logger.info(
        { data: { runner: runner.name, reason: ready.reason } },
        'runner not ready; taking no jobs yet',
      );
    }
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

  private runWorker(): void {
    this.everRan = true;
    this.worker.run().catch((err: unknown) => {
      this.opts.logger.error({ error: err }, 'queue worker stopped');
    });
  }

  /** The runner came up or went down: take jobs, or stop taking them (running ones go on). */
  private runnerReady(ok: boolean): void {
    if (this.draining || ok !== this.held) return;
    const { logger, runner } = this.opts;
    if (ok) {
      this.held = false;
      logger.info({ data: { runner: runner.name } }, 'runner ready; taking jobs');
      if (this.everRan) void this.worker.resume();
      else this.runWorker();
    } else {
      this.held = true;
      logger.warn(
        { data: { runner: runner.name, reason: runner.readiness?.().reason } },
        'runner not ready; taking no new jobs',
      );
      void this.worker.pause(true).catch(() => undefined);
    }
  }

  /**
   * The agent is exiting at once (a second signal): every running job is stopped now (its processes
   * killed) and handed back to the queue if Redis answers within `waitMs`. A job not handed back by
   * then stays locked until its lock expires and a stall check gives it to another pod.
   */
  async kill(waitMs = 0): Promise<void> {
    for (const [id, r] of this.running) {
      if (!r.cause && !r.signal.aborted) {
        r.cause = { kind: 'preempted', reason: 'the agent is exiting' };
        this.worker.cancelJob(id, 'preempted: the agent is exiting');
      }
    }
    this.opts.runner.kill?.();
    await settlesWithin(Promise.all([...this.running.values()].map((r) => r.done)), waitMs);
  }

  /** Cancels a job running on this pod (its runner is aborted; the job fails, not retried). */
  cancel(jobId: string, reason = 'canceled'): boolean {
    const r = this.running.get(jobId);
    if (!r || r.cause || r.signal.aborted) return false;
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
        taking_jobs: !this.draining && !this.held,
        ...this.stats,
      },
      ...(this.opts.runner.view ? { [this.opts.runner.name]: this.opts.runner.view() } : {}),
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
      // Until BullMQ has written each job's outcome, not only until its runner is done: a job between
      // the two is finished, not one to hand back.
      await settlesWithin(this.idle(), Math.max(0, deadline - this.now()));
      if (this.running.size > 0) {
        log.warn(
          { data: { job_ids: [...this.running.keys()] } },
          'drain deadline reached; handing running jobs back to the queue',
        );
        for (const [id, r] of this.running) {
          if (!r.cause && !r.signal.aborted) {
            r.cause = { kind: 'preempted', reason: 'the pod is draining' };
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
      this.flushDeferred();
      for (const u of this.unsubscribe) u();
      log.info({ data: this.stats }, 'queue worker stopped');
    })();
    return this.closePromise;
  }

  private async process(job: Job, token: string, signal: AbortSignal | undefined): Promise<unknown> {
    const id = job.id as string;
    // A retry can come straight back to this pod: the end of its last attempt is recorded first.
    this.flushDeferred(id);
    const { jobs, workflows, logger } = this.opts;
    if (this.draining) {
      // Fetched just as the drain began: straight back to the queue, untouched.
      await this.handBack(job, token);
      throw new WaitingError();
    }
    const given = traceparentOf(job.data) ?? telemetryTraceparent(job.opts.telemetry?.metadata);
    const attempt = job.attemptsStarted || job.attemptsMade + 1;
    const traced = this.opts.tracing;
    const span: Span | undefined = traced?.tracing.enabled
      ? traced.tracing.startFromTraceparent(SPAN.job(this.opts.queueName), given, SpanKind.CONSUMER, {
          [ATTR.jobId]: id,
          [ATTR.jobName]: job.name,
          [ATTR.jobQueue]: this.opts.queueName,
          [ATTR.jobAttempt]: attempt,
          [ATTR.jobRunner]: this.opts.runner.name,
        })
      : undefined;
    // What the job's own code continues: the job's span when traced, else the producer's context.
    const traceparent = span ? spanTraceparent(span) : given;
    const traceIds = span
      ? { trace_id: span.spanContext().traceId, span_id: span.spanContext().spanId }
      : given
        ? { trace_id: parseTraceparent(given)?.traceId }
        : undefined;
    const record = jobs.upsert({
      id,
      attempts: attempt,
      queue: this.opts.queueName,
      name: job.name,
      source: 'queue-worker',
      state: 'active',
      traceId: traceIds?.trace_id,
      // A delayed job waits from when its delay ends.
      enqueuedAt: job.timestamp + (job.opts.delay ?? 0),
    });
    record.attempts = attempt;
    if (traceIds?.trace_id) record.traceId = traceIds.trace_id;
    workflows.begin(id);
    if (span) traced?.workflowSpans.begin(id, span);
    this.stats.processed++;

    // BullMQ gives a signal to a processor that declares one: aborted by cancelJob, from the API, a
    // BullMQ cancel, or the drain (which set `cause` first).
    const jobSignal = signal ?? new AbortController().signal;
    const entry = new JobRun(this.runDeps, job, id, jobSignal, record.attempts, traceparent, traceIds, span);
    this.running.set(id, entry);
    // Per job, one INFO record is enough: the one at its end, with how it went.
    if (logger.isLevelEnabled('debug')) {
      entry.logger.debug(
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
    }
    let failure: { message: string; type?: string } | undefined;
    try {
      const result = await this.opts.runner.run(entry);
      await entry.applied();
      // Producers polling the progress see the end before the completed state.
      if (entry.reporter?.reported) entry.reporter.progress({ ...entry.progress(), progress: 100 });
      return result ?? null;
    } catch (err) {
      failure = {
        message: err instanceof Error ? err.message : String(err),
        type: err instanceof JobRunFailure ? err.failure.type : err instanceof Error ? err.name : undefined,
      };
      await entry.applied();
      // A cancel nobody here explained (BullMQ's own) is a cancel all the same.
      if (!entry.cause && jobSignal.aborted) {
        entry.cause = { kind: 'canceled', reason: abortMessage(jobSignal.reason) };
      }
      const cause = entry.cause;
      if (cause?.kind === 'preempted') {
        await entry.reporter?.close(REPORTER_CLOSE_MS);
        await this.handBack(job, token, cause.reason);
        throw new WaitingError();
      }
      if (cause?.kind === 'canceled') throw new UnrecoverableError(`canceled: ${cause.reason}`);
      if (err instanceof JobRunFailure) {
        // The JobStore keeps the failure whole (node, details); BullMQ gets its message and stack.
        entry.failure = err.failure;
        const e =
          err.failure.retryable === false
            ? new UnrecoverableError(err.failure.message)
            : new Error(err.failure.message);
        e.name = err.failure.type ?? 'JobRunFailure';
        e.stack = err.stack;
        throw e;
      }
      throw err;
    } finally {
      entry.reporting = false;
      await entry.reporter?.close(REPORTER_CLOSE_MS);
      if (span) {
        traced?.workflowSpans.end(id);
        const status =
          entry.cause?.kind === 'preempted'
            ? 'returned'
            : entry.cause
              ? 'canceled'
              : failure
                ? 'failed'
                : 'completed';
        span.setAttribute(ATTR.jobStatus, status);
        endSpan(span, status === 'completed' || status === 'returned' ? undefined : failure);
      }
      entry.end();
    }
  }

  /** Moves a job this pod holds back to `wait`, without spending an attempt. */
  private async handBack(job: Job, token: string, why = 'the pod is draining'): Promise<void> {
    const id = job.id as string;
    const ok = await settlesWithin(job.moveToWait(token), HAND_BACK_TIMEOUT_MS).catch((err: unknown) => {
      this.opts.logger.warn(
        { job_id: id, error: err },
        'could not hand the job back; it returns to the queue once its lock expired and a stall check ran',
      );
      return false;
    });
    if (ok) this.opts.logger.info({ job_id: id }, 'job handed back to the queue');
    this.settled(job, 'returned', {
      failure: {
        message: `preempted: ${why}; handed back to the queue`,
        type: 'Preempted',
        retryable: true,
      },
    });
  }

  private onFailed(job: Job, err: Error, entry: JobRun | undefined): void {
    if (entry?.cause?.kind === 'canceled') {
      this.settled(job, 'canceled', { failure: { message: err.message, type: 'Canceled' } });
      return;
    }
    const attempts = job.opts.attempts ?? 1;
    const retryable = job.attemptsMade < attempts && !(err instanceof UnrecoverableError);
    const known = entry?.failure;
    this.settled(job, 'failed', {
      failure: known
        ? { ...known, retryable }
        : { message: err.message, type: err.name, stack: err.stack, retryable },
    });
  }

  /** The JobStore follows what BullMQ settled. */
  private settled(
    job: Job,
    to: 'completed' | 'failed' | 'canceled' | 'returned',
    patch: { failure?: JobFailure; result?: unknown },
  ): void {
    const id = job.id as string;
    // The record is the store's own object: the transition updates it in place.
    const rec = this.opts.jobs.get(id);
    if (!rec || rec.state !== 'active') return;
    if (!this.opts.jobs.transition(id, to, patch)) return;
    this.opts.workflows.finish(id, to);
    this.stats[to]++;
    const fields = {
      job_id: id,
      trace_id: rec.traceId,
      data: {
        status: to,
        name: job.name,
        attempt: rec.attempts,
        duration_ms:
          rec.startedAt !== undefined && rec.finishedAt !== undefined
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
    if (this.running.size === 0) for (const wake of this.idleWaiters) wake();
    // After the job's completed or failed bookkeeping, which was deferred before this.
    this.defer(id, () => {
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
    });
  }

  /** Resolves once no job is running here any more. */
  private idle(): Promise<void> {
    if (this.running.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = (): void => {
        this.idleWaiters.delete(wake);
        resolve();
      };
      this.idleWaiters.add(wake);
    });
  }

  /** Runs `f` on the next turn of the event loop, in order with the job's other deferred steps. */
  private defer(id: string, f: () => void): void {
    let steps = this.deferred.get(id);
    if (!steps) this.deferred.set(id, (steps = []));
    steps.push(f);
    if (!this.flushing) {
      this.flushing = true;
      setImmediate(() => this.flushDeferred());
    }
  }

  /** Runs deferred steps: one job's (before it starts again), or all. */
  private flushDeferred(id?: string): void {
    if (id !== undefined) {
      const steps = this.deferred.get(id);
      this.deferred.delete(id);
      for (const f of steps ?? []) f();
      return;
    }
    this.flushing = false;
    const all = [...this.deferred.values()];
    this.deferred.clear();
    for (const steps of all) for (const f of steps) f();
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

/**
 * The traceparent BullMQ's own telemetry stored with the job (`opts.telemetry.metadata`: the producer's
 * propagation carrier as JSON), for producers that use BullMQ's OpenTelemetry integration.
 */
function telemetryTraceparent(metadata: unknown): string | undefined {
  if (typeof metadata !== 'string' || metadata.length > 4096) return undefined;
  try {
    const carrier = JSON.parse(metadata) as { traceparent?: unknown };
    const tp = carrier.traceparent;
    return typeof tp === 'string' && parseTraceparent(tp) ? tp : undefined;
  } catch {
    return undefined;
  }
}
