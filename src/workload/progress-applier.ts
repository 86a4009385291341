import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { ArtifactStore } from '../artifacts/artifact-store.js';
import type { JobFailure, JobStore } from '../jobs/job-store.js';
import { parseTraceparent } from '../tracing/traceparent.js';
import type { GraphNode, WorkflowStore } from '../workflow/workflow-store.js';
import { tracebackLines } from './progress-protocol.js';
import type { ProtocolEvent } from './progress-protocol.js';

export interface ProgressApplierDeps {
  jobs: JobStore;
  workflows: WorkflowStore;
  artifacts: ArtifactStore;
  logger: Logger;
  /** Queue label for jobs whose `job.start` names none. */
  defaultQueue: string;
  /** Recorded as the job's source. */
  source: string;
  newJobId?: () => string;
  /**
   * Every event belongs to this one job, whatever `job_id` it names: a queue job's command reports
   * into the record its worker made. Its `job.end` goes to `onJobEnd` (the worker decides how the job
   * ends, once the queue has confirmed it), and its `job.start` only declares the graph.
   */
  scope?: { jobId: string; onJobEnd: (event: JobEndEvent) => void };
}

export type JobEndEvent = Extract<ProtocolEvent, { type: 'job.end' }>;

/**
 * Applies progress-protocol events to the stores. Events may omit `job_id`: they then belong to the job
 * started last. Node events with no job running start an implicit one, so a workload that only reports
 * nodes still shows up in `/debug/status`.
 */
export class ProgressApplier {
  private currentJobId: string | undefined;
  private readonly pending = new Set<Promise<void>>();
  /** Jobs this workload started that have not ended: all of them fail if it goes away. */
  private readonly started = new Set<string>();
  private readonly newJobId: () => string;

  constructor(private readonly deps: ProgressApplierDeps) {
    this.newJobId = deps.newJobId ?? randomUUID;
    if (deps.scope) this.currentJobId = deps.scope.jobId;
  }

  get jobId(): string | undefined {
    return this.currentJobId;
  }

  apply(event: ProtocolEvent): void {
    const { jobs, workflows, logger, scope } = this.deps;
    if (scope) {
      event = { ...event, job_id: scope.jobId };
      if (event.type === 'job.end') {
        scope.onJobEnd(event);
        return;
      }
      if (event.type === 'job.start') {
        const wf = workflows.get(scope.jobId);
        if (event.nodes?.length || event.nodes_total !== undefined) {
          if (!wf || wf.nodes.size === 0) {
            workflows.begin(scope.jobId, graphOf(event), event.nodes_total);
          }
        }
        return;
      }
    }
    switch (event.type) {
      case 'job.start': {
        const id = event.job_id ?? this.newJobId();
        const known = jobs.get(id);
        if (known && known.state !== 'active') {
          // A finished job cannot start again under the same id: its record and workflow stay as
          // they ended, and the events that follow are ignored.
          logger.warn(
            { job_id: id, data: { state: known.state } },
            'job.start for a job that already ended; ignored',
          );
          return;
        }
        if (!known) {
          jobs.upsert({
            id,
            queue: event.queue ?? this.deps.defaultQueue,
            name: event.name,
            source: this.deps.source,
            state: 'active',
            traceId: traceIdOf(event.traceparent),
            traceparent: traceIdOf(event.traceparent) ? event.traceparent : undefined,
          });
          workflows.begin(id, graphOf(event), event.nodes_total);
          logger.info(
            {
              job_id: id,
              data: {
                queue: event.queue ?? this.deps.defaultQueue,
                nodes_total: event.nodes_total ?? event.nodes?.length,
              },
            },
            'job started',
          );
        }
        this.started.add(id);
        this.currentJobId = id;
        return;
      }
      case 'job.progress': {
        const id = this.jobFor(event.job_id, false);
        if (id) jobs.setProgress(id, event.progress_percent);
        return;
      }
      case 'job.end': {
        const id = this.jobFor(event.job_id, false);
        if (!id) return;
        const failure = event.error
          ? {
              message: event.error.message,
              type: 'exception_type' in event.error ? event.error.exception_type : undefined,
            }
          : event.status === 'failed'
            ? (jobs.get(id)?.failure ?? { message: 'the workload reported the job failed' })
            : undefined;
        this.finishJob(id, event.status, failure, event.result);
        return;
      }
      case 'node.start': {
        const id = this.jobFor(event.job_id, true) as string;
        workflows.nodeStart(id, event.node_id, event.node_type, {
          display: event.display,
          parent: event.parent,
        });
        this.syncProgress(id);
        return;
      }
      case 'node.progress': {
        const id = this.jobFor(event.job_id, true) as string;
        if (event.node_type) workflows.nodeStart(id, event.node_id, event.node_type);
        workflows.nodeProgress(id, event.node_id, event.step, event.total);
        this.syncProgress(id);
        return;
      }
      case 'node.end': {
        const id = this.jobFor(event.job_id, true) as string;
        const error = event.error
          ? {
              message: event.error.message,
              exceptionType: 'exception_type' in event.error ? event.error.exception_type : undefined,
              traceback: 'traceback' in event.error ? tracebackLines(event.error.traceback) : undefined,
              details: 'details' in event.error ? event.error.details : undefined,
            }
          : undefined;
        workflows.nodeEnd(id, event.node_id, event.status, { type: event.node_type, error });
        this.syncProgress(id);
        return;
      }
      case 'artifact': {
        const id = this.jobFor(event.job_id, true) as string;
        const recording = this.deps.artifacts.add(id, event.path, event.content_type).then(
          (a) =>
            logger.info(
              { job_id: id, data: { name: a.name, size_bytes: a.sizeBytes, sha256: a.sha256 } },
              'artifact recorded',
            ),
          (err: unknown) =>
            logger.warn({ job_id: id, error: err, data: { path: event.path } }, 'artifact refused'),
        );
        this.pending.add(recording);
        void recording.finally(() => this.pending.delete(recording));
        return;
      }
      case 'error': {
        const id = this.jobFor(event.job_id, false);
        const traceback = tracebackLines(event.traceback);
        if (id) {
          const job = jobs.get(id);
          if (job && job.state === 'active') {
            job.failure = {
              message: event.message,
              type: event.exception_type,
              nodeId: event.node_id,
              stack: traceback?.join('\n'),
            };
          }
          if (event.node_id) {
            workflows.nodeEnd(id, event.node_id, 'failed', {
              error: { message: event.message, exceptionType: event.exception_type, traceback },
            });
          }
        }
        logger.error(
          { job_id: id, node_id: event.node_id, data: { exception_type: event.exception_type, traceback } },
          event.message,
        );
        return;
      }
    }
  }

  /** Resolves once every artifact being recorded is recorded (or refused), so none is lost at exit. */
  async settled(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
  }

  /** The workload is gone: every job it left running fails with `reason`. */
  abandon(reason: JobFailure): void {
    for (const id of [...this.started]) {
      const job = this.deps.jobs.get(id);
      if (job && (job.state === 'active' || job.state === 'queued')) this.finishJob(id, 'failed', reason);
    }
    this.started.clear();
  }

  private finishJob(
    id: string,
    status: 'completed' | 'failed' | 'canceled',
    failure?: JobFailure,
    result?: unknown,
  ): void {
    const { jobs, workflows, logger } = this.deps;
    const before = jobs.get(id);
    const keptFailure = failure ?? (status === 'completed' ? undefined : before?.failure);
    if (!jobs.transition(id, status, { failure: status === 'completed' ? undefined : keptFailure, result }))
      return;
    workflows.finish(id, status);
    this.started.delete(id);
    // Events without a job id go to the newest job still running, if any.
    if (this.currentJobId === id) this.currentJobId = [...this.started].pop();
    const job = jobs.get(id);
    const durationMs =
      job?.startedAt !== undefined && job.finishedAt !== undefined
        ? job.finishedAt - job.startedAt
        : undefined;
    const fields = { job_id: id, data: { status, duration_ms: durationMs, failure: keptFailure } };
    if (status === 'failed') logger.warn(fields, 'job failed');
    else logger.info(fields, `job ${status}`);
  }

  private jobFor(given: string | undefined, createImplicit: boolean): string | undefined {
    if (given !== undefined) {
      const known = this.deps.jobs.get(given);
      if (known) return given;
      if (!createImplicit) return undefined;
      this.apply({ type: 'job.start', job_id: given });
      return given;
    }
    if (this.currentJobId !== undefined) return this.currentJobId;
    if (!createImplicit) return undefined;
    this.apply({ type: 'job.start' });
    return this.currentJobId;
  }

  private syncProgress(jobId: string): void {
    const wf = this.deps.workflows.get(jobId);
    if (wf) this.deps.jobs.setProgress(jobId, wf.progressPercent);
  }
}

/** The nodes a `job.start` declares, as the workflow store takes them. */
function graphOf(event: Extract<ProtocolEvent, { type: 'job.start' }>): GraphNode[] {
  return (event.nodes ?? []).map((n) => ({ id: n.id, type: n.type, display: n.display, parent: n.parent }));
}

function traceIdOf(traceparent: string | undefined): string | undefined {
  return parseTraceparent(traceparent)?.traceId;
}
