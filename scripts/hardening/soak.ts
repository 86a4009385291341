/**
 * Soak suite: the agent supervises a workload that runs job after job (100 progress events/s, an
 * artifact each, log lines, a stream of new node types) while clients poll every debug route and scrape
 * /metrics, one holds /debug/events open and one opened it and stopped reading. RSS, heap, active
 * handles and open descriptors are sampled throughout; once every bounded store (log buffer, job and
 * artifact history, GPU history, node-type series, event buffer) has reached its cap, their trend must
 * stay within noise, and the stores must stay at their caps.
 *
 *   node dist/scripts/hardening/soak.js [--short] [--minutes N]
 *
 * Full form: 30 minutes with the default store sizes (the GPU history fills in its first 10 minutes),
 * sampled every 30 s as the agent runs, V8's collection cycles and all. Short form (`npm test` runs it):
 * 2 minutes with small store sizes, so every store is full after about 20 s, sampled every 5 s right after
 * a full collection, since two minutes hold only one or two of V8's cycles.
 */
import http from 'node:http';
import {
  WORKLOAD,
  argValue,
  collectGarbage,
  getJson,
  getText,
  isMain,
  isShort,
  mb,
  metricValue,
  openFds,
  printTable,
  rssBytes,
  runAsScript,
  sleep,
  startAgent,
  threads,
} from './common.js';
import type { RunningAgent, SuiteOutcome } from './common.js';

export interface SoakOptions {
  durationS: number;
  /** Seconds between samples. */
  sampleEveryS: number;
  /** Store sizes given to the agent; undefined keeps its defaults. */
  caps: { logLines?: number; jobHistory?: number; gpuHistory?: number; eventsBuffer?: number };
  /** Concurrent clients polling the debug routes. */
  pollers: number;
  /** Least growth of RSS and heap (MB) that counts as a trend; a short run sees more of GC's sawtooth. */
  noiseFloorMb: number;
  /**
   * Runs a full collection in the agent (through its inspector) before each sample, so the heap and RSS
   * sampled are what the agent retains. A run that holds only one or two of V8's collection cycles (one
   * every minute or two under this load) would otherwise fit a line to the sawtooth: a whole cycle's rise
   * (some 80 MB) when the run ends before its collection.
   */
  collectBeforeSample: boolean;
  print: boolean;
}

interface Caps {
  logLines: number;
  jobHistory: number;
  gpuHistory: number;
  nodeTypes: number;
  eventsBuffer: number;
}

export interface SoakSample {
  t: number;
  rss: number;
  heapUsed: number;
  heapTotal: number;
  handles: number;
  fds: number;
  threads: number;
  logRecords: number;
  gpuHistory: number;
  jobsKept: number;
  artifactJobsKept: number;
  nodeTypeSeries: number;
  series: number;
  jobsDone: number;
  /** `/debug/events` resumed from id 0: events the gap event says are gone, and events replayed. */
  eventsLost: number;
  eventsReplayed: number;
}

export interface Trend {
  name: string;
  unit: string;
  first: number;
  last: number;
  /** Fitted change over the analysed window. */
  growth: number;
  /** What counts as noise: twice the spread around the fit, at least `floor`. */
  noise: number;
  ok: boolean;
}

export interface SoakResult extends SuiteOutcome {
  samples: SoakSample[];
  /** When every store had reached its cap, s after the start; the trend is taken after it. */
  warmS: number;
  trends: Trend[];
  caps: Caps;
  requests: number;
  failedRequests: number;
  failedExamples: string[];
  /**
   * GPU samples taken, and the gaps between consecutive ones as the history showed them: `missed` counts
   * the samples that a gap of more than one interval left out (a gap of 2.6 s at a 1 s cadence: 2).
   */
  gpu: { elapsedS: number; samples: number; missed: number; longestGapMs: number; gapsSeen: number };
  errorRecords: number;
  /** The event stream a dashboard holds, and one whose client stopped reading. */
  streams: { events: number; reconnects: number; stuckDroppedAtS: number | null };
}

/** Node types past this share one `other` label (src/metrics: at most 200 node types). */
const NODE_TYPE_CAP = 200;
const DISTINCT_NODE_TYPES = 300;
/** The GPU cadence (scripts/hardening/common.ts starts the agent with GPU_POLL_INTERVAL_MS=1000). */
const GPU_INTERVAL_MS = 1000;
/** More events than the workload and poller publish in a second (about 250). */
const EVENTS_PER_S_BOUND = 500;

const POLLED = [
  '/debug/status',
  '/debug/workflow',
  '/debug/logs?lines=100',
  '/debug/logs?lines=1000&level=info',
  '/debug/queue',
  '/debug/memory',
  '/debug/gpu',
  '/debug/gpu?history=true',
  '/debug/artifacts',
  '/debug/workload',
  '/ready',
  '/health',
  '/metrics',
];

interface WorkloadView {
  pid: number | null;
}

interface StatusView {
  current_job: { job_id: string } | null;
}

/** How many consecutive jobs up to `latest`, newest first, `known(n)` still knows (binary search). */
async function keptCount(latest: number, known: (n: number) => Promise<boolean>): Promise<number> {
  if (latest < 1 || !(await known(latest))) return 0;
  let lo = latest;
  // Known ids are the newest ones, without gaps: find the oldest still known.
  let step = 1;
  while (lo - step >= 1 && (await known(lo - step))) {
    lo -= step;
    step *= 2;
  }
  let hi = Math.max(1, lo - step);
  if (hi === lo) return latest - lo + 1;
  if (await known(hi)) return latest - hi + 1;
  while (lo - hi > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (await known(mid)) lo = mid;
    else hi = mid;
  }
  return latest - lo + 1;
}

async function statusOf(url: string): Promise<number> {
  const res = await fetch(url);
  await res.arrayBuffer();
  return res.status;
}

/**
 * What `/debug/events` still holds: resumed from id 0 it first says how many events are gone (a `gap`
 * event), then replays what its buffer keeps, and goes on live. The replay is read for `ms`.
 */
async function eventBuffer(url: string, ms = 500): Promise<{ lost: number; replayed: number }> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), ms);
  let text = '';
  try {
    const res = await fetch(`${url}/debug/events?last_event_id=0&level=trace`, { signal: ac.signal });
    const reader = res.body?.getReader();
    const decoder = new TextDecoder();
    for (;;) {
      const chunk = await reader?.read();
      if (!chunk || chunk.done) break;
      text += decoder.decode(chunk.value as Uint8Array, { stream: true });
    }
  } catch {
    // The abort ends the read.
  } finally {
    clearTimeout(timer);
  }
  const lost = Number(/event: gap\ndata: \{"lost":(\d+)/.exec(text)?.[1] ?? 0);
  const ids = [...text.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]));
  // Replayed: the run of ids from the oldest kept one; live events carry on from it.
  return { lost, replayed: ids.length > 0 ? ids.at(-1)! - lost : 0 };
}

/** A client that holds `/debug/events` open, reconnecting with Last-Event-ID when the agent drops it. */
function streamClient(
  url: string,
  stopped: () => boolean,
): { events: () => number; reconnects: () => number; done: Promise<void> } {
  let events = 0;
  let reconnects = -1;
  let lastId = '';
  const done = (async () => {
    while (!stopped()) {
      reconnects++;
      await new Promise<void>((resolve) => {
        const req = http.get(
          `${url}/debug/events`,
          { headers: lastId ? { 'Last-Event-ID': lastId } : {} },
          (res) => {
            res.setEncoding('utf8');
            let buf = '';
            res.on('data', (chunk: string) => {
              buf += chunk;
              let end: number;
              while ((end = buf.indexOf('\n\n')) !== -1) {
                const m = /^id: (\d+)$/m.exec(buf.slice(0, end));
                if (m) {
                  events++;
                  lastId = m[1]!;
                }
                buf = buf.slice(end + 2);
              }
              if (stopped()) req.destroy();
            });
            res.on('close', resolve);
          },
        );
        req.on('error', () => resolve());
      });
      if (!stopped()) await sleep(200);
    }
  })();
  return { events: () => events, reconnects: () => Math.max(0, reconnects), done };
}

/** A client that opens `/debug/events` and never reads: the agent must drop it, not buffer for it. */
function stuckClient(url: string, start: number): { droppedAtS: () => number | null; close: () => void } {
  let dropped: number | null = null;
  const req = http.get(`${url}/debug/events?level=trace`, (res) => {
    res.pause();
    res.on('close', () => (dropped ??= (Date.now() - start) / 1000));
  });
  req.on('error', () => (dropped ??= (Date.now() - start) / 1000));
  return {
    droppedAtS: () => dropped,
    close: () => req.destroy(),
  };
}

/**
 * Gaps between consecutive GPU samples, keyed by the earlier one's time: taken within one history
 * reading, so a stretch no reading covered is never taken for a gap.
 */
type GpuGaps = Map<number, number>;

async function sample(
  agent: RunningAgent,
  t: number,
  workloadPid: number,
  collect: boolean,
  gpuGaps: GpuGaps,
): Promise<SoakSample> {
  if (collect) await collectGarbage(agent);
  const metrics = await getText(`${agent.url}/metrics`);
  const mem = await getJson<{ process: { heap_used_bytes: number; heap_total_bytes: number } }>(
    `${agent.url}/debug/memory`,
  );
  const logs = await getJson<{ count: number }>(`${agent.url}/debug/logs?lines=1000000`);
  const gpu = await getJson<{ history: { taken_at: string }[] }>(`${agent.url}/debug/gpu?history=true`);
  const taken = gpu.history.map((h) => Date.parse(h.taken_at));
  for (let i = 1; i < taken.length; i++) gpuGaps.set(taken[i - 1]!, taken[i]! - taken[i - 1]!);
  const status = await getJson<StatusView>(`${agent.url}/debug/status`);
  const prefix = `job-${workloadPid}-`;
  const current = status.current_job?.job_id;
  // The newest finished job: the one before the running job, or, between two jobs, the latest one.
  const newest = current ?? (await getJson<{ job_id: string | null }>(`${agent.url}/debug/workflow`)).job_id;
  const latest = newest?.startsWith(prefix) ? Number(newest.slice(prefix.length)) - (current ? 1 : 0) : 0;
  const jobsKept = await keptCount(
    latest,
    async (n) => (await statusOf(`${agent.url}/debug/workflow?job_id=${prefix}${n}`)) === 200,
  );
  const artifactJobsKept = await keptCount(
    latest,
    async (n) => (await statusOf(`${agent.url}/debug/artifacts?job_id=${prefix}${n}`)) === 200,
  );
  const buffer = await eventBuffer(agent.url);
  const nodeTypes = new Set(
    [...metrics.matchAll(/^workflow_node_duration_seconds_count\{[^}]*node_type="([^"]*)"/gm)].map(
      (m) => m[1],
    ),
  );
  return {
    t,
    rss: rssBytes(agent.pid),
    heapUsed: mem.process.heap_used_bytes,
    heapTotal: mem.process.heap_total_bytes,
    handles: metricValue(metrics, 'nodejs_active_handles') ?? NaN,
    fds: openFds(agent.pid),
    threads: threads(agent.pid),
    logRecords: logs.count,
    gpuHistory: gpu.history.length,
    jobsKept,
    artifactJobsKept,
    nodeTypeSeries: nodeTypes.size,
    series: metrics.split('\n').filter((l) => l !== '' && !l.startsWith('#')).length,
    jobsDone: latest,
    eventsLost: buffer.lost,
    eventsReplayed: buffer.replayed,
  };
}

/** Least-squares line through (t, v); returns the fitted change over the span and the residual spread. */
function fit(points: [number, number][]): { growth: number; spread: number } {
  const n = points.length;
  if (n < 3) return { growth: 0, spread: 0 };
  const mt = points.reduce((s, [t]) => s + t, 0) / n;
  const mv = points.reduce((s, [, v]) => s + v, 0) / n;
  const cov = points.reduce((s, [t, v]) => s + (t - mt) * (v - mv), 0);
  const vt = points.reduce((s, [t]) => s + (t - mt) ** 2, 0);
  const slope = vt === 0 ? 0 : cov / vt;
  const resid = points.map(([t, v]) => v - (mv + slope * (t - mt)));
  const spread = Math.sqrt(resid.reduce((s, r) => s + r * r, 0) / (n - 2));
  const span = points[n - 1]![0] - points[0]![0];
  return { growth: slope * span, spread };
}

function trend(name: string, unit: string, xs: [number, number][], floor: number): Trend {
  const { growth, spread } = fit(xs);
  const noise = Math.max(floor, 2 * spread);
  return {
    name,
    unit,
    first: xs[0]?.[1] ?? NaN,
    last: xs.at(-1)?.[1] ?? NaN,
    growth,
    noise,
    ok: growth <= noise,
  };
}

export async function runSoak(opts: SoakOptions): Promise<SoakResult> {
  const env: Record<string, string> = {
    MOCK_GPU_COUNT: '2',
    HARDENING_MODE: 'jobs',
    HARDENING_EVENTS_PER_S: '100',
    HARDENING_STEPS: '30',
    HARDENING_NODE_TYPES: String(DISTINCT_NODE_TYPES),
    HARDENING_EXTRA_NODES: '8',
    HARDENING_LOG_EVERY: '2',
  };
  if (opts.caps.logLines !== undefined) env.LOG_BUFFER_LINES = String(opts.caps.logLines);
  if (opts.caps.jobHistory !== undefined) env.JOB_HISTORY_SIZE = String(opts.caps.jobHistory);
  if (opts.caps.gpuHistory !== undefined) env.GPU_HISTORY_SIZE = String(opts.caps.gpuHistory);
  if (opts.caps.eventsBuffer !== undefined) env.EVENTS_BUFFER_SIZE = String(opts.caps.eventsBuffer);
  const agent = await startAgent({
    env,
    workload: [process.execPath, WORKLOAD],
    nodeArgs: opts.collectBeforeSample ? ['--inspect=127.0.0.1:0'] : [],
  });
  const caps: Caps = {
    logLines: opts.caps.logLines ?? 5000,
    jobHistory: opts.caps.jobHistory ?? 100,
    gpuHistory: opts.caps.gpuHistory ?? 600,
    nodeTypes: NODE_TYPE_CAP,
    eventsBuffer: opts.caps.eventsBuffer ?? 2000,
  };
  let requests = 0;
  let failedRequests = 0;
  const failedExamples: string[] = [];
  let stop = false;
  try {
    const wl = await getJson<WorkloadView>(`${agent.url}/debug/workload`);
    const workloadPid = wl.pid ?? 0;
    const gpu0 = await getJson<{ samples_total: number }>(`${agent.url}/debug/gpu`);
    const start = Date.now();

    // Clients as E2E tests and dashboards are: each walks the routes with a short pause, and downloads
    // an artifact whenever it lists them.
    const poller = async (k: number): Promise<void> => {
      let i = k;
      while (!stop) {
        const route = POLLED[i++ % POLLED.length]!;
        try {
          const res = await fetch(`${agent.url}${route}`);
          const body = await res.arrayBuffer();
          requests++;
          if (res.status !== 200) {
            failedRequests++;
            if (failedExamples.length < 10)
              failedExamples.push(`${route}: ${res.status} ${Buffer.from(body).toString().slice(0, 200)}`);
          }
          if (route === '/debug/artifacts') {
            const list = JSON.parse(Buffer.from(body).toString()) as { artifacts: { url: string }[] };
            const url = list.artifacts[0]?.url;
            if (url) {
              const file = await fetch(`${agent.url}${url}`);
              await file.arrayBuffer();
              requests++;
              // The job may have left the history between the list and the download.
              if (file.status !== 200 && file.status !== 404) {
                failedRequests++;
                if (failedExamples.length < 10) failedExamples.push(`${url}: ${file.status}`);
              }
            }
          }
        } catch (err) {
          failedRequests++;
          if (failedExamples.length < 10) failedExamples.push(`${route}: ${String(err)}`);
        }
        await sleep(100);
      }
    };
    const pollers = Array.from({ length: opts.pollers }, (_, k) => poller(k));
    const dashboard = streamClient(agent.url, () => stop);
    const stuck = stuckClient(agent.url, start);

    const samples: SoakSample[] = [];
    const gpuGaps: GpuGaps = new Map();
    const deadline = start + opts.durationS * 1000;
    for (let next = start + opts.sampleEveryS * 1000; ; next += opts.sampleEveryS * 1000) {
      await sleep(Math.max(0, next - Date.now()));
      if (!agent.alive()) break;
      samples.push(
        await sample(agent, (Date.now() - start) / 1000, workloadPid, opts.collectBeforeSample, gpuGaps),
      );
      if (opts.print) {
        const s = samples.at(-1)!;
        process.stdout.write(
          `  ${s.t.toFixed(0)} s: RSS ${mb(s.rss)} MB, heap ${mb(s.heapUsed)} MB, handles ${s.handles}, ` +
            `fds ${s.fds}, logs ${s.logRecords}, gpu history ${s.gpuHistory}, jobs kept ${s.jobsKept}\n`,
        );
      }
      if (next + opts.sampleEveryS * 1000 > deadline) break;
    }
    stop = true;
    await Promise.all(pollers);
    const stuckDroppedAtS = stuck.droppedAtS();
    stuck.close();
    await dashboard.done;
    const gpu1 = await getJson<{ samples_total: number }>(`${agent.url}/debug/gpu`);
    const elapsedS = (Date.now() - start) / 1000;

    const failures: string[] = [];
    if (!agent.alive()) failures.push(`the agent exited: ${agent.stderr().slice(0, 500)}`);
    const full = (s: SoakSample): boolean =>
      s.logRecords >= caps.logLines &&
      s.gpuHistory >= caps.gpuHistory &&
      s.jobsKept >= caps.jobHistory &&
      s.nodeTypeSeries >= caps.nodeTypes &&
      s.eventsLost > 0;
    const warmIndex = samples.findIndex(full);
    const warmS = warmIndex === -1 ? NaN : samples[warmIndex]!.t;
    const after = warmIndex === -1 ? [] : samples.slice(warmIndex);
    if (warmIndex === -1) failures.push('the bounded stores never all reached their caps');
    else if (after.length < 4)
      failures.push(`only ${after.length} samples after the stores filled; run longer`);

    // Caps hold from the moment they are reached to the end.
    for (const s of after) {
      const over: string[] = [];
      if (s.logRecords > caps.logLines) over.push(`log records ${s.logRecords} > ${caps.logLines}`);
      if (s.gpuHistory > caps.gpuHistory) over.push(`GPU history ${s.gpuHistory} > ${caps.gpuHistory}`);
      // Events published while the replay is read come on top of the buffer's; a second's worth is allowed.
      if (s.eventsReplayed > caps.eventsBuffer + EVENTS_PER_S_BOUND) {
        over.push(`events replayed ${s.eventsReplayed} > ${caps.eventsBuffer} + ${EVENTS_PER_S_BOUND}`);
      }
      if (s.eventsLost === 0) over.push('the event buffer lost nothing: is it bounded?');
      // The running job's record comes on top of the finished ones kept.
      if (s.jobsKept > caps.jobHistory + 1) over.push(`jobs kept ${s.jobsKept} > ${caps.jobHistory + 1}`);
      if (s.artifactJobsKept > caps.jobHistory + 1)
        over.push(`artifact lists kept ${s.artifactJobsKept} > ${caps.jobHistory + 1}`);
      // `other` joins the capped node types.
      if (s.nodeTypeSeries > caps.nodeTypes + 1)
        over.push(`node_type series ${s.nodeTypeSeries} > ${caps.nodeTypes + 1}`);
      if (s.logRecords < caps.logLines) over.push(`log records ${s.logRecords} < ${caps.logLines}`);
      if (s.gpuHistory < caps.gpuHistory) over.push(`GPU history ${s.gpuHistory} < ${caps.gpuHistory}`);
      // Jobs keep finishing while the ids are probed one request at a time, which can cut the count by
      // the jobs that finished meanwhile.
      if (s.jobsKept < caps.jobHistory - 2) over.push(`jobs kept ${s.jobsKept} < ${caps.jobHistory}`);
      if (over.length > 0) failures.push(`at ${s.t.toFixed(0)} s: ${over.join(', ')}`);
    }

    const series = (pick: (s: SoakSample) => number): [number, number][] => after.map((s) => [s.t, pick(s)]);
    const MiB = 1024 * 1024;
    const watched: [string, string, (s: SoakSample) => number, number][] = [
      ['RSS', 'MB', (s) => s.rss / MiB, opts.noiseFloorMb],
      ['heap used', 'MB', (s) => s.heapUsed / MiB, opts.noiseFloorMb],
      ['active handles', '', (s) => s.handles, 5],
      ['open fds', '', (s) => s.fds, 5],
      ['threads', '', (s) => s.threads, 1],
      // A label value seen for the first time (a new status code of a route) adds a whole histogram,
      // about 20 series at once: bounded, not a leak. More than two of those is a trend.
      ['metric series', '', (s) => s.series, 40],
    ];
    const trends = watched.map(([name, unit, pick, floor]) => trend(name, unit, series(pick), floor));
    for (const t of trends) {
      if (!t.ok)
        failures.push(
          `${t.name} grew ${t.growth.toFixed(1)} ${t.unit} after the stores filled (noise ${t.noise.toFixed(1)})`,
        );
    }
    const gpuSamples = gpu1.samples_total - gpu0.samples_total;
    // The poller waits an interval from each sample's start, so timer lateness (a busy loop, a full
    // collection) delays the samples after it without losing one: only a gap tells a sample was skipped.
    const gaps = [...gpuGaps.values()];
    const missed = gaps.reduce((n, g) => n + Math.max(0, Math.round(g / GPU_INTERVAL_MS) - 1), 0);
    const longestGapMs = Math.max(0, ...gaps);
    if (missed > 0)
      failures.push(`${missed} GPU samples missed (longest gap between two ${longestGapMs} ms)`);
    if (gaps.length < Math.floor(elapsedS) / 2)
      failures.push(`only ${gaps.length} gaps between GPU samples seen in ${elapsedS.toFixed(0)} s`);
    if (failedRequests > 0) failures.push(`${failedRequests} polling requests failed`);
    if (agent.errors.length > 0) failures.push(`${agent.errors.length} log records at error level or above`);
    if (dashboard.events() === 0) failures.push('the /debug/events client received no event');

    const result: SoakResult = {
      ok: failures.length === 0,
      failures,
      samples,
      warmS,
      trends,
      caps,
      requests,
      failedRequests,
      failedExamples,
      gpu: { elapsedS, samples: gpuSamples, missed, longestGapMs, gapsSeen: gaps.length },
      errorRecords: agent.errors.length,
      streams: { events: dashboard.events(), reconnects: dashboard.reconnects(), stuckDroppedAtS },
    };
    if (opts.print) printSoak(result, opts, agent);
    return result;
  } finally {
    stop = true;
    await agent.stop();
  }
}

function printSoak(r: SoakResult, opts: SoakOptions, agent: RunningAgent): void {
  console.log(
    `\nsoak: ${(opts.durationS / 60).toFixed(1)} min, jobs of 30 sampler steps at 100 progress events/s with an ` +
      `artifact each, ${DISTINCT_NODE_TYPES} node types, ${opts.pollers} clients polling ${POLLED.length} routes; ` +
      `caps: ${r.caps.logLines} log records, ${r.caps.jobHistory} jobs, ${r.caps.gpuHistory} GPU samples, ` +
      `${r.caps.nodeTypes} node types, ${r.caps.eventsBuffer} events; one client holding /debug/events, one ` +
      `that opened it and stopped reading`,
  );
  // One row a minute (the last sample of each), and the last sample.
  const rows = r.samples.filter(
    (s, i) =>
      i === r.samples.length - 1 || Math.floor(s.t / 60) !== Math.floor((r.samples[i + 1]?.t ?? 0) / 60),
  );
  printTable(
    'Samples',
    [
      't s',
      'RSS MB',
      'heap MB',
      'handles',
      'fds',
      'threads',
      'log records',
      'GPU history',
      'jobs kept',
      'artifact lists',
      'node types',
      'series',
      'jobs run',
      'events kept',
    ],
    rows.map((s) => [
      s.t.toFixed(0),
      mb(s.rss),
      mb(s.heapUsed),
      s.handles,
      s.fds,
      s.threads,
      s.logRecords,
      s.gpuHistory,
      s.jobsKept,
      s.artifactJobsKept,
      s.nodeTypeSeries,
      s.series,
      s.jobsDone,
      s.eventsReplayed,
    ]),
  );
  printTable(
    `Trend after every store was full (from ${Number.isFinite(r.warmS) ? r.warmS.toFixed(0) : '—'} s)`,
    ['figure', 'first', 'last', 'fitted growth', 'noise', 'ok'],
    r.trends.map((t) => [
      `${t.name}${t.unit ? ` (${t.unit})` : ''}`,
      t.first.toFixed(1),
      t.last.toFixed(1),
      t.growth.toFixed(1),
      t.noise.toFixed(1),
      t.ok ? 'yes' : 'NO',
    ]),
  );
  printTable(
    'Targets',
    ['figure', 'value', 'target'],
    [
      ['polling requests', r.requests, ''],
      ['polling requests failed', r.failedRequests, 0],
      ['GPU samples / seconds', `${r.gpu.samples} / ${r.gpu.elapsedS.toFixed(0)}`, ''],
      ['GPU samples missed (gaps over 1.5 intervals)', r.gpu.missed, 0],
      ['longest gap between GPU samples ms', r.gpu.longestGapMs, ''],
      ['log records at error level', r.errorRecords, 0],
      ['agent log lines', agent.lineCount(), ''],
      ['/debug/events: events to the dashboard client', r.streams.events, '> 0'],
      ['/debug/events: its reconnects', r.streams.reconnects, ''],
      [
        '/debug/events: client that stopped reading dropped at s',
        r.streams.stuckDroppedAtS === null ? 'not dropped' : r.streams.stuckDroppedAtS.toFixed(0),
        '',
      ],
    ],
  );
  for (const e of r.failedExamples) console.log(`- failed request: ${e}`);
}

export function soakOptionsFromArgs(argv: readonly string[] = process.argv): SoakOptions {
  const short = isShort(argv);
  const minutes = Number(argValue('minutes', argv) ?? (short ? 2 : 30));
  return {
    durationS: minutes * 60,
    sampleEveryS: short ? 5 : 30,
    caps: short ? { logLines: 1000, jobHistory: 20, gpuHistory: 20, eventsBuffer: 500 } : {},
    pollers: 4,
    noiseFloorMb: short ? 16 : 8,
    collectBeforeSample: short,
    print: true,
  };
}

if (isMain(import.meta.url)) runAsScript(() => runSoak(soakOptionsFromArgs()));
