import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { LabelValues, RegistryContentType } from 'prom-client';
import type { GpuStore } from '../../gpu/index.js';
import type { JobStore } from '../jobs/job-store.js';
import { FINISHED_STATES } from '../jobs/job-store.js';
import type { JobCounts, JobState } from '../jobs/job-store.js';
import type { LogRing } from '../logging/log-ring.js';
import type { WorkflowStore } from '../workflow/workflow-store.js';
import { defineDcgmCompatMetrics, defineGpuMetrics } from './gpu-metrics.js';
import {
  AGENT_METRICS,
  API_METRICS,
  DEFAULT_MAX_PROCESS_SERIES,
  JOB_METRICS,
  MAX_NODE_TYPES,
  MAX_QUEUES,
  QUEUE_METRICS,
} from './names.js';

/** What the queue monitor last read from Redis. */
export interface QueueMetricsSource {
  queue: string;
  /** Per BullMQ state; undefined before the first read. */
  counts(): Record<string, number> | undefined;
  workers(): number | undefined;
  redisUp(): boolean;
  latencyMs(): number | undefined;
}

export interface MetricsDeps {
  version: string;
  hostname: string;
  gpu: GpuStore;
  jobs: JobStore;
  workflows: WorkflowStore;
  logRing: LogRing;
  /** Queues that always have series, even before their first job. */
  queues: string[];
  ready: () => boolean;
  /** Shutting down: taking no jobs, finishing or handing back the running ones. */
  draining?: () => boolean;
  /** Undefined when no workload is supervised. */
  workloadRunning: () => boolean | undefined;
  dcgmCompat: boolean;
  /** @defaultValue DEFAULT_MAX_PROCESS_SERIES */
  maxProcessSeries?: number;
  now: () => number;
  /** Set when a queue is configured. */
  queue?: QueueMetricsSource;
}

/** The templated route of the exposition itself. */
const METRICS_ENDPOINT = '/metrics';
/** The longest a rendered exposition is served again while nothing it shows has changed. */
export const RENDER_MAX_AGE_MS = 1000;

/** The two text formats `/metrics` answers in, by the scraper's Accept header. */
export type ExpositionFormat = 'prometheus' | 'openmetrics';

/** A job's start (no `ended`) or end, as the job metrics record it. */
interface JobMetricUpdate {
  queue: string;
  ended?: JobState;
  /** Time waited in the queue (a start; first attempts only) or run time (an end). */
  seconds?: number;
  traceId?: string;
}

/**
 * The agent's Prometheus registry. Gauges read the stores in `collect()` and nothing else, so a scrape
 * never touches hardware and a failing source cannot fail it; counters and histograms are fed by store
 * events (a job's start and end at the end of the event loop turn they happened in, and always before
 * a render).
 */
export class AgentMetrics {
  /**
   * OpenMetrics-typed, because prom-client allows exemplars only on such a registry; the Prometheus text
   * format is rendered from it by switching the type for that render (see `renderAs`).
   */
  readonly registry = new Registry<RegistryContentType>();
  /** Counter names as defined: an OpenMetrics render strips their `_total`, which is put back after. */
  private counterNames = new Map<{ name: string }, string>();
  private readonly unsubscribe: (() => void)[] = [];
  private readonly apiRequests: Counter<'endpoint' | 'method' | 'status'>;
  private readonly apiDuration: Histogram<'endpoint' | 'method'>;
  private readonly nodeTypes = new Set<string>();
  private readonly queueNames = new Set<string>();
  private dirty: Record<ExpositionFormat, boolean> = { prometheus: true, openmetrics: true };
  private cached: Partial<Record<ExpositionFormat, { body: Buffer; at: number }>> = {};
  private rendering: Promise<Buffer> | undefined;
  /** Job events so far, and how many of them the newest scrape showed: the others no scraper has read. */
  private jobEvents = 0;
  private jobEventsScraped = 0;
  /** When the last two scrapes came, for how often someone scrapes. */
  private scrapedAt: [number, number] = [NaN, NaN];
  private readonly scrapeWaiters = new Set<() => void>();
  private renderingFormat: ExpositionFormat | undefined;
  /** Job starts and ends whose metric updates wait for the end of this turn of the event loop. */
  private readonly pendingJobUpdates: JobMetricUpdate[] = [];
  private jobUpdatesFlush: NodeJS.Immediate | undefined;
  private applyJobUpdate: (u: JobMetricUpdate) => void = () => undefined;

  constructor(private readonly deps: MetricsDeps) {
    this.registry.setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
    const r = [this.registry];
    // The event-loop monitor wakes the process at this precision; the default 10 ms costs ~0.7 % of a
    // core on an idle pod, 100 ms costs almost nothing and still shows lag that matters.
    collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 100 });
    // prom-client exports these sums as gauges named *_total, which promtool's lint rejects; the
    // per-type series without the suffix carry the same numbers.
    for (const name of [
      'nodejs_active_handles_total',
      'nodejs_active_requests_total',
      'nodejs_active_resources_total',
    ]) {
      this.registry.removeSingleMetric(name);
    }

    new Gauge({
      name: AGENT_METRICS.buildInfo,
      help: 'Build of the running agent; always 1.',
      labelNames: ['version', 'node_version'],
      registers: r,
    }).set({ version: deps.version, node_version: process.version }, 1);

    defineGpuMetrics({
      registry: this.registry,
      gpu: deps.gpu,
      now: deps.now,
      maxProcessSeries: deps.maxProcessSeries ?? DEFAULT_MAX_PROCESS_SERIES,
    });
    if (deps.dcgmCompat) defineDcgmCompatMetrics(this.registry, deps.gpu, deps.hostname, deps.now);
    this.defineJobMetrics();
    this.defineAgentMetrics();

    this.apiRequests = new Counter({
      name: API_METRICS.requestsTotal,
      help: 'HTTP requests answered, by templated route.',
      labelNames: ['endpoint', 'method', 'status'],
      registers: r,
    });
    this.apiDuration = new Histogram({
      name: API_METRICS.requestDurationSeconds,
      help: 'Time to answer an HTTP request, by templated route.',
      labelNames: ['endpoint', 'method'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: r,
      enableExemplars: true,
    });
    for (const m of this.registry.getMetricsAsArray()) {
      if (String(m.type) === 'counter') this.counterNames.set(m, m.name);
    }
  }

  /** `traceId`: the request's, as an exemplar, when its span is exported. */
  observeRequest(endpoint: string, method: string, status: number, seconds: number, traceId?: string): void {
    this.apiRequests.inc({ endpoint, method, status: String(status) });
    this.apiDuration.observe({
      labels: { endpoint, method },
      value: seconds,
      // prom-client's types tie exemplar labels to the metric's label names; its runtime takes any.
      exemplarLabels: (traceId ? { trace_id: traceId } : {}) as LabelValues<'endpoint' | 'method'>,
    });
    // A scrape counting itself must not force the next scrape to render again.
    if (endpoint !== METRICS_ENDPOINT) this.invalidate();
  }

  /** Something the exposition shows has changed; the next scrape renders it again. */
  invalidate(): void {
    this.dirty.prometheus = true;
    this.dirty.openmetrics = true;
  }

  /**
   * The text exposition, as bytes. Rendering costs far more than sending, so the text is kept and served again
   * until something it shows changes (a GPU sample, a job or node event, a request to another route),
   * or for at most RENDER_MAX_AGE_MS so process and time-based gauges stay fresh. Concurrent scrapes
   * share one render.
   */
  render(format: ExpositionFormat = 'prometheus'): Promise<Buffer> {
    const now = this.deps.now();
    this.scrapedAt = [this.scrapedAt[1], now];
    // What was noted so far is flushed into this render (or was in the cached one).
    this.jobEventsScraped = this.jobEvents;
    for (const wake of this.scrapeWaiters) wake();
    const cached = this.cached[format];
    if (cached && !this.dirty[format] && now - cached.at < RENDER_MAX_AGE_MS)
      return Promise.resolve(cached.body);
    if (this.rendering && this.renderingFormat === format) return this.rendering;
    // One render at a time: the format is a setting of the registry for the length of a render.
    const previous = this.rendering ?? Promise.resolve(Buffer.alloc(0));
    this.dirty[format] = false;
    const rendering = previous
      .catch(() => undefined)
      .then(() => this.renderAs(format))
      .then((text) => {
        // Kept as bytes: converting 30 kB of text per response would cost more than the rest of it.
        const body = Buffer.from(text);
        this.cached[format] = { body, at: now };
        return body;
      });
    this.rendering = rendering;
    this.renderingFormat = format;
    void rendering.then(
      () => {
        if (this.rendering === rendering) this.rendering = undefined;
      },
      () => {
        if (this.rendering === rendering) this.rendering = undefined;
        this.dirty[format] = true;
      },
    );
    return rendering;
  }

  /**
   * At shutdown, after the last job has ended: when someone has been scraping and has not yet read the
   * newest job counts, waits for their next scrape, up to twice the interval they scrape at and at most
   * `maxWaitMs`, so the counts of a pod's last jobs reach its scraper (Prometheus, an E2E test) before
   * the port closes. Resolves with how long it waited, 0 when there was nothing to wait for.
   */
  async finalScrape(maxWaitMs: number): Promise<number> {
    const [before, last] = this.scrapedAt;
    const interval = last - before;
    const start = this.deps.now();
    // NaN (fewer than two scrapes) fails every comparison: no scraper, no wait.
    const scraping = interval >= 0 && start - last <= 3 * interval + 1000;
    if (this.jobEventsScraped === this.jobEvents || !scraping || maxWaitMs <= 0) return 0;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.scrapeWaiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, Math.min(maxWaitMs, 2 * interval + 100));
      this.scrapeWaiters.add(done);
    });
    return this.deps.now() - start;
  }

  /** The content type of a format's exposition. */
  static contentType(format: ExpositionFormat): string {
    return format === 'openmetrics' ? Registry.OPENMETRICS_CONTENT_TYPE : Registry.PROMETHEUS_CONTENT_TYPE;
  }

  private async renderAs(format: ExpositionFormat): Promise<string> {
    this.flushJobUpdates();
    this.registry.setContentType(AgentMetrics.contentType(format) as RegistryContentType);
    try {
      return await this.registry.metrics();
    } finally {
      // prom-client renames counters for OpenMetrics (drops `_total`) in place; the Prometheus text
      // and the next render need the names as defined.
      for (const [m, name] of this.counterNames) m.name = name;
      this.registry.setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
    }
  }

  close(): void {
    this.flushJobUpdates();
    for (const u of this.unsubscribe) u();
    this.unsubscribe.length = 0;
  }

  /** Applies the job metric updates waiting since this turn of the event loop began. */
  private flushJobUpdates(): void {
    if (this.jobUpdatesFlush) clearImmediate(this.jobUpdatesFlush);
    this.jobUpdatesFlush = undefined;
    const pending = this.pendingJobUpdates;
    for (const u of pending) this.applyJobUpdate(u);
    pending.length = 0;
  }

  private defineJobMetrics(): void {
    const { jobs, workflows } = this.deps;
    const r = [this.registry];
    const started = new Counter({
      name: JOB_METRICS.startedTotal,
      help: 'Jobs this pod started, retries included.',
      labelNames: ['queue'],
      registers: r,
    });
    const completed = new Counter({
      name: JOB_METRICS.completedTotal,
      help: 'Jobs that left this pod, by final status (completed, failed, canceled, returned).',
      labelNames: ['queue', 'status'],
      registers: r,
    });
    const duration = new Histogram({
      name: JOB_METRICS.durationSeconds,
      help: 'Time from start to end of a job on this pod.',
      labelNames: ['queue', 'status'],
      buckets: [0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600],
      registers: r,
      enableExemplars: true,
    });
    const queues = this.deps.queues;
    // Present from the start, so `increase()` sees a pod's very first job of each kind.
    for (const q of queues) {
      started.inc({ queue: this.queueLabel(q) }, 0);
      for (const status of ['completed', 'failed', 'canceled', 'returned']) {
        completed.inc({ queue: this.queueLabel(q), status }, 0);
      }
    }
    const qs = this.deps.queue;
    /** Jobs waiting in the configured queue, as Redis last said. */
    const queueDepth = (): { label: string; n: number } | undefined => {
      const c = qs?.counts();
      if (!qs || !c) return undefined;
      return { label: this.queueLabel(qs.queue), n: (c.waiting ?? 0) + (c.prioritized ?? 0) };
    };
    /** Live job counts per queue label, the configured queues always present. */
    const perQueue = (pick: (c: JobCounts) => number): Map<string, number> => {
      const out = new Map<string, number>(queues.map((q) => [this.queueLabel(q), 0]));
      for (const q of jobs.queues()) {
        const label = this.queueLabel(q);
        out.set(label, (out.get(label) ?? 0) + pick(jobs.counts(q)));
      }
      return out;
    };
    new Gauge({
      name: JOB_METRICS.queuedCurrent,
      help: 'Jobs waiting for this pod.',
      labelNames: ['queue'],
      registers: r,
      collect() {
        this.reset();
        const depth = queueDepth();
        for (const [queue, n] of perQueue((c) => c.queued)) {
          this.set({ queue }, n + (depth && queue === depth.label ? depth.n : 0));
        }
      },
    });
    new Gauge({
      name: JOB_METRICS.processingCurrent,
      help: 'Jobs running on this pod now.',
      labelNames: ['queue'],
      registers: r,
      collect() {
        this.reset();
        for (const [queue, n] of perQueue((c) => c.active)) this.set({ queue }, n);
      },
    });
    const nodeDuration = new Histogram({
      name: JOB_METRICS.nodeDurationSeconds,
      help: 'Run time of completed workflow nodes, by node class.',
      labelNames: ['node_type'],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600],
      registers: r,
    });

    const nodeSteps = new Histogram({
      name: JOB_METRICS.nodeStepsPerSecond,
      help: 'Steps per second of completed workflow nodes that report steps (samplers), by node class.',
      labelNames: ['node_type'],
      buckets: [0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128],
      registers: r,
    });
    const queueWait = new Histogram({
      name: JOB_METRICS.queueWaitSeconds,
      help: "Time a job waited in the queue before this pod started it (first attempts; from the producer's enqueue).",
      labelNames: ['queue'],
      buckets: [0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600],
      registers: r,
    });

    if (qs) this.defineQueueMetrics(qs);

    this.applyJobUpdate = (u) => {
      const queue = this.queueLabel(u.queue);
      if (u.ended === undefined) {
        started.inc({ queue });
        if (u.seconds !== undefined) queueWait.observe({ queue }, u.seconds);
        return;
      }
      completed.inc({ queue, status: u.ended });
      if (u.seconds !== undefined) {
        duration.observe({
          labels: { queue, status: u.ended },
          value: u.seconds,
          // The job's trace (the producer's, continued): a slow bucket leads to the trace behind it.
          exemplarLabels: (u.traceId ? { trace_id: u.traceId } : {}) as LabelValues<'queue' | 'status'>,
        });
      }
    };

    this.unsubscribe.push(
      jobs.subscribe((e) => {
        this.invalidate();
        if (e.type !== 'progress') this.jobEvents++;
      }),
      workflows.subscribe(() => this.invalidate()),
      // A job's start and end are on the queue worker's path: the counters and histograms are updated
      // once the turn of the event loop that started or ended it is done (and before any render).
      jobs.subscribe((e) => {
        const j = e.job;
        let update: JobMetricUpdate;
        if (
          (e.type === 'created' && j.state === 'active') ||
          (e.type === 'transition' && e.to === 'active')
        ) {
          update = {
            queue: j.queue,
            // Time in the queue, for first attempts.
            seconds:
              j.enqueuedAt !== undefined && j.startedAt !== undefined && j.attempts <= 1
                ? Math.max(0, j.startedAt - j.enqueuedAt) / 1000
                : undefined,
          };
        } else if (e.type === 'transition' && FINISHED_STATES.has(e.to) && e.from !== 'queued') {
          update = {
            queue: j.queue,
            ended: e.to,
            seconds:
              j.startedAt !== undefined && j.finishedAt !== undefined
                ? (j.finishedAt - j.startedAt) / 1000
                : undefined,
            traceId: j.traceId,
          };
        } else return;
        this.pendingJobUpdates.push(update);
        this.jobUpdatesFlush ??= setImmediate(() => this.flushJobUpdates());
      }),
      workflows.subscribe((e) => {
        if (e.type !== 'node' || e.node.status !== 'completed' || e.from !== 'running') return;
        if (e.node.startedAt === undefined || e.node.endedAt === undefined) return;
        const seconds = (e.node.endedAt - e.node.startedAt) / 1000;
        nodeDuration.observe({ node_type: this.nodeTypeLabel(e.node.type) }, seconds);
        if (e.node.step && seconds > 0) {
          nodeSteps.observe({ node_type: this.nodeTypeLabel(e.node.type) }, e.node.step / seconds);
        }
      }),
    );
  }

  private defineQueueMetrics(qs: QueueMetricsSource): void {
    const r = [this.registry];
    new Gauge({
      name: QUEUE_METRICS.bullmqJobCount,
      help: 'Jobs in the queue by state, as Redis last said (BullMQ exportPrometheusMetrics family).',
      labelNames: ['queue', 'state'],
      registers: r,
      collect() {
        this.reset();
        const c = qs.counts();
        if (c) for (const [state, n] of Object.entries(c)) this.set({ queue: qs.queue, state }, n);
      },
    });
    new Gauge({
      name: QUEUE_METRICS.workers,
      help: 'Workers connected to the queue, all pods together.',
      labelNames: ['queue'],
      registers: r,
      collect() {
        this.reset();
        const w = qs.workers();
        if (w !== undefined) this.set({ queue: qs.queue }, w);
      },
    });
    new Gauge({
      name: QUEUE_METRICS.redisUp,
      help: '1 when the last read of the queue from Redis succeeded.',
      labelNames: ['queue'],
      registers: r,
      collect() {
        this.set({ queue: qs.queue }, qs.redisUp() ? 1 : 0);
      },
    });
    new Gauge({
      name: QUEUE_METRICS.redisLatencySeconds,
      help: 'Round trip of the last PING to the queue Redis.',
      labelNames: ['queue'],
      registers: r,
      collect() {
        this.reset();
        const l = qs.latencyMs();
        if (l !== undefined && qs.redisUp()) this.set({ queue: qs.queue }, l / 1000);
      },
    });
  }

  /** Caps the distinct node classes so a graph of generated class names cannot blow up the series count. */
  private nodeTypeLabel(type: string): string {
    return boundedLabel(this.nodeTypes, type || 'unknown', MAX_NODE_TYPES);
  }

  /** Caps the distinct queue names likewise: a workload names its queues freely. */
  private queueLabel(queue: string): string {
    return boundedLabel(this.queueNames, queue, MAX_QUEUES);
  }

  private defineAgentMetrics(): void {
    const { gpu, now, logRing } = this.deps;
    const deps = this.deps;
    const r = [this.registry];
    new Gauge({
      name: AGENT_METRICS.ready,
      help: '1 when /ready answers 200.',
      registers: r,
      collect() {
        this.set(deps.ready() ? 1 : 0);
      },
    });
    new Gauge({
      name: AGENT_METRICS.draining,
      help: '1 from the first stop signal until exit: the pod takes no new jobs.',
      registers: r,
      collect() {
        this.set(deps.draining?.() ? 1 : 0);
      },
    });
    new Gauge({
      name: AGENT_METRICS.gpuBackendUp,
      help: '1 when the last GPU sample succeeded.',
      labelNames: ['backend'],
      registers: r,
      collect() {
        this.reset();
        this.set({ backend: gpu.backend }, gpu.status(now()).up ? 1 : 0);
      },
    });
    new Gauge({
      name: AGENT_METRICS.gpuLastSampleTimestampSeconds,
      help: 'When the newest good GPU sample was taken (Unix seconds); GPU series vanish when it is stale.',
      labelNames: ['backend'],
      registers: r,
      collect() {
        this.reset();
        const t = gpu.status(now()).lastSuccessAt;
        if (t !== undefined) this.set({ backend: gpu.backend }, t / 1000);
      },
    });
    new Gauge({
      name: AGENT_METRICS.gpuSampleAgeSeconds,
      help: 'Age of the newest good GPU sample.',
      labelNames: ['backend'],
      registers: r,
      collect() {
        this.reset();
        const age = gpu.status(now()).sampleAgeMs;
        if (age !== undefined) this.set({ backend: gpu.backend }, age / 1000);
      },
    });
    new Gauge({
      name: AGENT_METRICS.workloadRunning,
      help: '1 while the supervised workload runs (absent in sidecar mode).',
      registers: r,
      collect() {
        this.reset();
        const running = deps.workloadRunning();
        if (running !== undefined) this.set(running ? 1 : 0);
      },
    });
    new Counter({
      name: AGENT_METRICS.logRecordsDroppedTotal,
      help: 'Log records pushed out of the /debug/logs buffer by newer ones.',
      registers: r,
      collect() {
        this.reset();
        this.inc(logRing.dropped);
      },
    });
    const sampleDuration = new Histogram({
      name: AGENT_METRICS.gpuSampleDurationSeconds,
      help: 'Time one GPU sample took, failures included.',
      labelNames: ['backend'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: r,
    });
    const samples = new Counter({
      name: AGENT_METRICS.gpuSamplesTotal,
      help: 'GPU samples attempted.',
      labelNames: ['backend'],
      registers: r,
    });
    const failures = new Counter({
      name: AGENT_METRICS.gpuSampleFailuresTotal,
      help: 'GPU samples that failed, by category (timeout, spawn, parse, exit:N, ...).',
      labelNames: ['backend', 'category'],
      registers: r,
    });
    this.unsubscribe.push(
      gpu.subscribe((e) => {
        this.invalidate();
        if (e.type === 'up') return;
        const backend = gpu.backend;
        if (e.type === 'source') {
          samples.inc({ backend }, 0);
          return;
        }
        samples.inc({ backend });
        sampleDuration.observe({ backend }, e.durationMs / 1000);
        if (e.type === 'failure') failures.inc({ backend, category: e.failure.category });
      }),
    );
  }
}

/** `value` while fewer than `max` distinct values were seen (remembered in `seen`), `other` after. */
function boundedLabel(seen: Set<string>, value: string, max: number): string {
  if (seen.has(value)) return value;
  if (seen.size >= max) return 'other';
  seen.add(value);
  return value;
}
