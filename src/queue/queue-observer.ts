import { QueueEvents } from 'bullmq';
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { JobState, JobStore } from '../jobs/job-store.js';
import type { WorkflowStore } from '../workflow/workflow-store.js';
import type { QueueParticipant } from './queue-monitor.js';
import { createRedis } from './redis.js';

export interface QueueObserverOptions {
  url: string;
  queueName: string;
  prefix: string;
  jobs: JobStore;
  workflows: WorkflowStore;
  logger: Logger;
  /** Live jobs whose state is checked against Redis per refresh (events missed in an outage). @defaultValue 50 */
  reconcileBatch?: number;
}

const SOURCE = 'queue-observer';

/**
 * Follows a queue some other process works on (`JOB_RUNNER=none`): BullMQ's event stream keeps a record
 * per job (active, progress, completed, failed, stalled, back to waiting), and each monitor refresh
 * checks live records against Redis, so events missed while Redis was away cannot leave a job
 * "active" forever.
 */
export class QueueObserver implements QueueParticipant {
  readonly mode = 'observer' as const;
  private readonly redis: Redis;
  private readonly events: QueueEvents;
  private readonly seen = { active: 0, completed: 0, failed: 0, stalled: 0, progress: 0 };

  constructor(private readonly opts: QueueObserverOptions) {
    this.redis = createRedis(opts.url, 'events', opts.logger);
    this.events = new QueueEvents(opts.queueName, {
      connection: this.redis,
      prefix: opts.prefix,
      autorun: false,
    });
    const ev = this.events;
    ev.on('error', () => undefined);
    ev.on('active', ({ jobId }) => {
      this.seen.active++;
      this.activate(jobId);
    });
    ev.on('progress', ({ jobId, data }) => {
      this.seen.progress++;
      this.progress(jobId, data);
    });
    ev.on('completed', ({ jobId, returnvalue }) => {
      this.seen.completed++;
      this.finish(jobId, 'completed', { result: returnvalue });
    });
    ev.on('failed', ({ jobId, failedReason }) => {
      this.seen.failed++;
      this.finish(jobId, 'failed', { failure: { message: failedReason } });
    });
    ev.on('stalled', ({ jobId }) => {
      this.seen.stalled++;
      opts.jobs.transition(jobId, 'stalled');
    });
    ev.on('waiting', ({ jobId, prev }) => {
      // Back to waiting from active (stalled, handed back) or from failed (retried).
      if (prev)
        this.finish(jobId, 'returned', {
          failure: { message: `back to waiting from ${prev}`, retryable: true },
        });
    });
    ev.on('removed', ({ jobId }) =>
      this.finish(jobId, 'canceled', { failure: { message: 'removed from the queue' } }),
    );
  }

  start(): void {
    this.events.run().catch((err: unknown) => {
      this.opts.logger.error({ error: err }, 'queue observer stopped');
    });
    this.opts.logger.info(
      { data: { queue: this.opts.queueName, prefix: this.opts.prefix } },
      'following the queue',
    );
  }

  connections(): { role: string; status: string }[] {
    return [{ role: 'observer', status: this.redis.status }];
  }

  view(): Record<string, unknown> {
    return { mode: this.mode, runner: 'none', events_seen: { ...this.seen } };
  }

  /** Checks the oldest live records against Redis: what finished while events were missed ends here too. */
  async onRefresh(queue: Queue): Promise<void> {
    const live = this.opts.jobs
      .liveJobs()
      .filter((j) => j.source === SOURCE)
      .slice(0, this.opts.reconcileBatch ?? 50);
    for (const j of live) {
      const state = await queue.getJobState(j.id);
      if (state === 'completed') this.finish(j.id, 'completed', {});
      else if (state === 'failed')
        this.finish(j.id, 'failed', { failure: { message: 'failed (seen on reconciliation)' } });
      else if (state === 'unknown')
        this.finish(j.id, 'canceled', { failure: { message: 'no longer in the queue' } });
      else if (state === 'waiting' || state === 'delayed' || state === 'prioritized') {
        this.finish(j.id, 'returned', { failure: { message: `back to ${state}`, retryable: true } });
      }
    }
  }

  async close(): Promise<void> {
    await this.events.close().catch(() => undefined);
    this.redis.disconnect();
  }

  private activate(id: string): void {
    const { jobs, workflows } = this.opts;
    const known = jobs.get(id);
    if (known && known.state === 'active') return;
    try {
      jobs.upsert({ id, queue: this.opts.queueName, source: SOURCE, state: 'active' });
    } catch (err) {
      this.opts.logger.warn({ job_id: id, error: err }, 'job not followed');
      return;
    }
    workflows.begin(id);
  }

  private progress(id: string, data: unknown): void {
    const { jobs, workflows } = this.opts;
    if (jobs.get(id)?.state !== 'active') this.activate(id);
    if (typeof data === 'number') {
      jobs.setProgress(id, data);
      return;
    }
    if (!data || typeof data !== 'object') return;
    const p = data as Record<string, unknown>;
    const percent =
      typeof p.progress === 'number' ? p.progress : typeof p.percent === 'number' ? p.percent : undefined;
    if (typeof p.node === 'string' && p.node) {
      workflows.nodeStart(id, p.node);
      if (typeof p.step === 'number' && typeof p.total === 'number' && p.total > 0) {
        workflows.nodeProgress(id, p.node, p.step, p.total);
      }
    }
    if (percent !== undefined) jobs.setProgress(id, percent);
  }

  private finish(
    id: string,
    to: Extract<JobState, 'completed' | 'failed' | 'canceled' | 'returned'>,
    patch: { result?: unknown; failure?: { message: string; retryable?: boolean } },
  ): void {
    const { jobs, workflows } = this.opts;
    const known = jobs.get(id);
    if (!known || (known.state !== 'active' && known.state !== 'stalled')) return;
    if (to === 'returned' && known.state === 'stalled') {
      jobs.transition(id, 'returned', patch);
    } else if (!jobs.transition(id, to, patch)) {
      return;
    }
    workflows.finish(id, to);
  }
}
