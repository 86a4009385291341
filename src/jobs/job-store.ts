export const JOB_STATES = [
  'queued',
  'active',
  'completed',
  'failed',
  'canceled',
  'stalled',
  'returned',
] as const;
export type JobState = (typeof JOB_STATES)[number];

/** States after which this pod no longer holds the job. */
export const FINISHED_STATES: ReadonlySet<JobState> = new Set([
  'completed',
  'failed',
  'canceled',
  'returned',
]);

/**
 * Allowed moves. A job comes back from `failed`/`returned`/`stalled` when its queue retries it on this pod.
 */
const TRANSITIONS: Record<JobState, readonly JobState[]> = {
  queued: ['active', 'canceled', 'failed'],
  active: ['completed', 'failed', 'canceled', 'stalled', 'returned'],
  stalled: ['active', 'queued', 'completed', 'failed', 'canceled', 'returned'],
  completed: [],
  failed: ['queued', 'active'],
  canceled: [],
  returned: ['queued', 'active'],
};

export interface JobFailure {
  message: string;
  type?: string;
  stack?: string;
  nodeId?: string;
  details?: unknown;
  /** The queue may try again (a preempted or handed-back job). */
  retryable?: boolean;
}

export interface JobRecord {
  id: string;
  queue: string;
  name?: string;
  /** Who reported the job: the supervised workload, a queue worker, or a queue observer. */
  source: string;
  state: JobState;
  createdAt: number;
  /** When the producer put it in the queue (epoch ms), when known. */
  enqueuedAt?: number;
  startedAt?: number;
  finishedAt?: number;
  attempts: number;
  /** 0–100, never decreases while the job runs. */
  progressPercent: number;
  failure?: JobFailure;
  result?: unknown;
  traceId?: string;
  /** The producer's W3C traceparent, when it gave one: what the job's span continues. */
  traceparent?: string;
}

export type JobEvent =
  | { type: 'created'; job: JobRecord }
  | { type: 'transition'; job: JobRecord; from: JobState; to: JobState }
  | { type: 'progress'; job: JobRecord };

export interface NewJob {
  id: string;
  queue: string;
  source: string;
  name?: string;
  state?: 'queued' | 'active';
  attempts?: number;
  traceId?: string;
  traceparent?: string;
  enqueuedAt?: number;
}

export interface JobCounts {
  queued: number;
  active: number;
  stalled: number;
}

/**
 * Every job this pod knows of, as a state machine. Live jobs are kept until they finish; finished ones
 * in a bounded history (oldest evicted first), so memory does not grow with uptime.
 */
export class JobStore {
  private readonly live = new Map<string, JobRecord>();
  private readonly finished = new Map<string, JobRecord>();
  private readonly listeners = new Set<(e: JobEvent) => void>();

  constructor(
    private readonly historySize: number,
    private readonly now: () => number = Date.now,
    /** Live jobs beyond this are refused: a runaway producer must not exhaust memory. */
    private readonly maxLive = 10_000,
  ) {}

  /** Creates a job, or returns the known one (a retried job keeps its record and counts an attempt). */
  upsert(spec: NewJob): JobRecord {
    const known = this.get(spec.id);
    const state = spec.state ?? 'queued';
    if (known) {
      if (known.state !== state) this.transition(known.id, state);
      return known;
    }
    if (this.live.size >= this.maxLive) {
      throw new RangeError(`more than ${this.maxLive} live jobs; refusing ${spec.id}`);
    }
    const t = this.now();
    const job: JobRecord = {
      id: spec.id,
      queue: spec.queue,
      name: spec.name,
      source: spec.source,
      state,
      createdAt: t,
      startedAt: state === 'active' ? t : undefined,
      attempts: spec.attempts ?? (state === 'active' ? 1 : 0),
      progressPercent: 0,
      traceId: spec.traceId,
      traceparent: spec.traceparent,
      enqueuedAt: spec.enqueuedAt,
    };
    this.live.set(job.id, job);
    this.emit({ type: 'created', job });
    return job;
  }

  get(id: string): JobRecord | undefined {
    return this.live.get(id) ?? this.finished.get(id);
  }

  /**
   * Moves a job to `to`. Returns false (and changes nothing) for an unknown job or a move the state
   * machine does not allow, so a confused source can never corrupt the record.
   */
  transition(id: string, to: JobState, patch: { failure?: JobFailure; result?: unknown } = {}): boolean {
    const job = this.get(id);
    if (!job) return false;
    const from = job.state;
    if (!TRANSITIONS[from].includes(to)) return false;
    const t = this.now();
    job.state = to;
    if (to === 'active') {
      job.startedAt = t;
      job.finishedAt = undefined;
      job.failure = undefined;
      job.progressPercent = 0;
      job.attempts++;
    }
    if (patch.failure) job.failure = patch.failure;
    if ('result' in patch) job.result = patch.result;
    if (FINISHED_STATES.has(to)) {
      job.finishedAt = t;
      if (to === 'completed') job.progressPercent = 100;
      this.live.delete(id);
      this.finished.delete(id);
      this.finished.set(id, job);
      while (this.finished.size > this.historySize) {
        const oldest = this.finished.keys().next().value as string;
        this.finished.delete(oldest);
      }
    } else if (!this.live.has(id)) {
      this.finished.delete(id);
      this.live.set(id, job);
    }
    this.emit({ type: 'transition', job, from, to });
    return true;
  }

  /** Raises the job's percent; a lower value is ignored so progress never goes backwards. */
  setProgress(id: string, percent: number): boolean {
    const job = this.live.get(id);
    if (!job || job.state !== 'active' || !Number.isFinite(percent)) return false;
    const p = Math.min(100, Math.max(0, percent));
    if (p <= job.progressPercent) return false;
    job.progressPercent = p;
    this.emit({ type: 'progress', job });
    return true;
  }

  /** Live jobs in the order they arrived. */
  liveJobs(): JobRecord[] {
    return [...this.live.values()];
  }

  /** The job shown as `current_job`: the most recently started active one. */
  currentJob(): JobRecord | undefined {
    let current: JobRecord | undefined;
    for (const j of this.live.values()) {
      if (j.state === 'active' && (!current || (j.startedAt ?? 0) >= (current.startedAt ?? 0))) current = j;
    }
    return current;
  }

  /** Finished jobs, newest first. */
  recent(limit = this.historySize): JobRecord[] {
    return [...this.finished.values()].reverse().slice(0, limit);
  }

  /** The newest job of any state, for views that default to "the latest". */
  latest(): JobRecord | undefined {
    return this.currentJob() ?? [...this.finished.values()].pop();
  }

  counts(queue?: string): JobCounts {
    const c: JobCounts = { queued: 0, active: 0, stalled: 0 };
    for (const j of this.live.values()) {
      if (queue !== undefined && j.queue !== queue) continue;
      if (j.state === 'queued') c.queued++;
      else if (j.state === 'active') c.active++;
      else if (j.state === 'stalled') c.stalled++;
    }
    return c;
  }

  /** Queue names of live jobs, for per-queue gauges. */
  queues(): string[] {
    return [...new Set([...this.live.values()].map((j) => j.queue))];
  }

  subscribe(listener: (e: JobEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(e: JobEvent): void {
    for (const l of this.listeners) {
      try {
        l(e);
      } catch {
        // Views and metrics must never break the state machine.
      }
    }
  }
}
