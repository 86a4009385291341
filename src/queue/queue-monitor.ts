import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { redactUrl } from '../config.js';
import { settlesWithin } from '../deadline.js';
import type { JobRecord, JobStore } from '../jobs/job-store.js';
import { iso, orNull } from '../views/gpu.js';
import type { QueueView } from '../views/queue.js';
import type { WorkflowStore } from '../workflow/workflow-store.js';
import { connectionError, createRedis } from './redis.js';

/** Job states whose counts `/debug/queue` shows, as BullMQ names them. */
export const COUNTED_STATES = [
  'waiting',
  'active',
  'delayed',
  'prioritized',
  'waiting-children',
  'completed',
  'failed',
] as const;
export type CountedState = (typeof COUNTED_STATES)[number];

export interface QueueCounts {
  counts: Record<CountedState, number>;
  workers: number;
  /** Round trip of a PING, ms. */
  latencyMs: number;
  at: number;
}

/** What the queue's user on this pod (the worker or the observer) adds to `/debug/queue`. */
export interface QueueParticipant {
  mode: 'worker' | 'observer';
  /** ioredis status of its connections, for readiness. */
  connections(): { role: string; status: string }[];
  view(now: number): Record<string, unknown>;
  /** Called after each successful refresh with the monitor's queue handle (observer reconciliation). */
  onRefresh?(queue: Queue): Promise<void>;
}

export interface QueueMonitorOptions {
  url: string;
  queueName: string;
  prefix: string;
  refreshIntervalMs: number;
  jobs: JobStore;
  workflows: WorkflowStore;
  logger: Logger;
  now?: () => number;
  /** Finished jobs listed under `recent`. @defaultValue 20 */
  recentLimit?: number;
  /** Called after each refresh, read or failed (the metrics render again). */
  onChange?: () => void;
}

/**
 * Reads the queue's counts, worker count and Redis latency on a timer, off the request path, so
 * `/debug/queue` and `/ready` answer from memory however Redis is doing. A refresh that fails marks
 * Redis unreachable until one succeeds again.
 */
export class QueueMonitor implements QueueView {
  readonly enabled = true;
  private readonly redis: Redis;
  readonly queue: Queue;
  private latest: QueueCounts | undefined;
  private lastError: { message: string; at: number } | undefined;
  private attempts = 0;
  private timer: NodeJS.Timeout | undefined;
  private refreshing: Promise<void> | undefined;
  private participant: QueueParticipant | undefined;
  private readonly now: () => number;
  private stopped = false;
  private summary = { refreshes: 0, failures: 0 };
  private summaryTimer: NodeJS.Timeout | undefined;

  constructor(private readonly opts: QueueMonitorOptions) {
    this.now = opts.now ?? Date.now;
    this.redis = createRedis(opts.url, 'monitor', opts.logger);
    this.queue = new Queue(opts.queueName, { connection: this.redis, prefix: opts.prefix });
    // The Queue re-emits connection errors; they are logged once per outage by createRedis.
    this.queue.on('error', () => undefined);
  }

  attach(participant: QueueParticipant): void {
    this.participant = participant;
  }

  start(): void {
    if (this.timer || this.stopped) return;
    const tick = (): void => {
      this.refreshing ??= this.refresh().finally(() => (this.refreshing = undefined));
    };
    tick();
    this.timer = setInterval(tick, this.opts.refreshIntervalMs);
    this.timer.unref();
    this.summaryTimer = setInterval(() => {
      this.opts.logger.info(
        {
          data: {
            queue: this.opts.queueName,
            refreshes: this.summary.refreshes,
            failures: this.summary.failures,
            counts: this.latest?.counts,
            workers: this.latest?.workers,
            latency_ms: this.latest?.latencyMs,
          },
        },
        'queue summary',
      );
      this.summary = { refreshes: 0, failures: 0 };
    }, 60_000);
    this.summaryTimer.unref();
  }

  /** The newest counts read from Redis, if any. */
  counts(): QueueCounts | undefined {
    return this.latest;
  }

  /** Whether the newest refresh reached Redis. */
  get redisUp(): boolean {
    const read =
      this.latest !== undefined && (this.lastError === undefined || this.lastError.at < this.latest.at);
    return read && !this.participant?.connections().some((c) => c.status !== 'ready');
  }

  /** Refreshes now (also what the timer does); resolves when done, never rejects. */
  async refresh(): Promise<void> {
    if (this.stopped) return;
    this.attempts++;
    this.summary.refreshes++;
    const timeoutMs = Math.max(1000, Math.min(this.opts.refreshIntervalMs, 5000));
    try {
      const work = (async () => {
        // enableOfflineQueue is off: a command sent before the connection is up fails at once.
        if (this.redis.status !== 'ready') await readyOrTimeout(this.redis, timeoutMs);
        if (this.redis.status !== 'ready') {
          throw new Error(
            `not connected (${this.redis.status}): ${connectionError(this.redis) ?? 'no answer'}`,
          );
        }
        const t0 = performance.now();
        await this.redis.ping();
        const latencyMs = performance.now() - t0;
        const [counts, workers] = await Promise.all([
          this.queue.getJobCounts(...COUNTED_STATES),
          this.queue.getWorkersCount(),
        ]);
        return { counts, workers, latencyMs };
      })();
      if (!(await settlesWithin(work, timeoutMs))) throw new Error(`no answer from Redis in ${timeoutMs} ms`);
      const r = await work;
      const counts = {} as Record<CountedState, number>;
      for (const s of COUNTED_STATES) counts[s] = r.counts[s] ?? 0;
      this.latest = {
        counts,
        workers: r.workers,
        latencyMs: Math.round(r.latencyMs * 100) / 100,
        at: this.now(),
      };
      if (this.lastError) {
        this.opts.logger.info({ data: { queue: this.opts.queueName } }, 'queue readable again');
        this.lastError = undefined;
      }
      await this.participant?.onRefresh?.(this.queue);
    } catch (err) {
      this.summary.failures++;
      const message = err instanceof Error ? err.message : String(err);
      if (!this.lastError) {
        this.opts.logger.warn(
          { data: { queue: this.opts.queueName, error: message } },
          'queue refresh failed',
        );
      }
      this.lastError = { message, at: this.now() };
    } finally {
      this.opts.onChange?.();
    }
  }

  readiness(): { status: 'ok' | 'disabled' | 'failing' | 'starting'; reason?: string } {
    const down = this.participant?.connections().find((c) => c.status !== 'ready');
    if (this.lastError && (!this.latest || this.lastError.at >= this.latest.at)) {
      return { status: 'failing', reason: `Redis unreachable: ${this.lastError.message}` };
    }
    if (!this.latest) return { status: 'starting', reason: 'connecting to Redis' };
    if (down) return { status: 'failing', reason: `Redis connection of the ${down.role} is ${down.status}` };
    return { status: 'ok' };
  }

  snapshot(now: number): Record<string, unknown> {
    const { jobs, queueName } = this.opts;
    const live = jobs.liveJobs().filter((j) => j.queue === queueName);
    const recent = jobs
      .recent()
      .filter((j) => j.queue === queueName)
      .slice(0, this.opts.recentLimit ?? 20);
    const l = this.latest;
    const up = this.redisUp;
    return {
      enabled: true,
      queue: queueName,
      prefix: this.opts.prefix,
      ...(this.participant?.view(now) ?? {}),
      counts: l ? snakeCounts(l.counts) : null,
      counts_at: iso(l?.at),
      counts_age_ms: l ? now - l.at : null,
      workers: l ? l.workers : null,
      active_jobs: live.map((j) => this.jobView(j, now)),
      recent: recent.map((j) => this.jobView(j, now)),
      redis: {
        url: redactUrl(this.opts.url),
        status: up ? 'ready' : l === undefined && !this.lastError ? 'connecting' : 'unreachable',
        latency_ms: up && l ? l.latencyMs : null,
        last_error: this.lastError ? { message: this.lastError.message, at: iso(this.lastError.at) } : null,
        connections: this.participant?.connections() ?? [],
      },
    };
  }

  private jobView(j: JobRecord, now: number) {
    const node = this.opts.workflows.currentNode(j.id);
    return {
      job_id: j.id,
      name: orNull(j.name),
      state: j.state,
      attempts: j.attempts,
      progress_percent: j.progressPercent,
      node: node ? { id: node.id, step: orNull(node.step), total: orNull(node.total) } : null,
      started_at: iso(j.startedAt),
      finished_at: iso(j.finishedAt),
      duration_ms:
        j.startedAt === undefined
          ? null
          : (j.finishedAt ?? (j.state === 'active' ? now : j.startedAt)) - j.startedAt,
      failure: j.failure
        ? {
            message: j.failure.message,
            type: orNull(j.failure.type),
            retryable: j.failure.retryable ?? false,
          }
        : null,
      trace_id: orNull(j.traceId),
    };
  }

  async close(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    clearInterval(this.summaryTimer);
    await this.refreshing;
    await this.queue.close().catch(() => undefined);
    this.redis.disconnect();
  }
}

function snakeCounts(c: Record<CountedState, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(c)) out[k.replace(/-/g, '_')] = v;
  return out;
}

/** Waits for the connection to be ready, at most `ms`; resolves either way. */
function readyOrTimeout(redis: Redis, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(t);
      redis.off('ready', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    redis.once('ready', done);
  });
}
