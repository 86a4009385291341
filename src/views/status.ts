import type { GpuSample, GpuStore } from '../../gpu/index.js';
import type { JobRecord, JobStore } from '../jobs/job-store.js';
import type { Lifecycle } from '../lifecycle.js';
import type { WorkflowStore } from '../workflow/workflow-store.js';
import type { WorkloadStatus } from '../workload/supervisor.js';
import { gpuSummary, iso, orNull } from './gpu.js';
import type { QueueView } from './queue.js';

export interface StatusDeps {
  podId: string;
  version: string;
  startedAt: number;
  lifecycle: Pick<Lifecycle, 'phase'>;
  gpu: GpuStore;
  jobs: JobStore;
  workflows: WorkflowStore;
  queue: QueueView;
  workload: () => WorkloadStatus;
  /** The queue runner, when it depends on something that can be down (ComfyUI). */
  runner?: { name: string; readiness(): { ok: boolean; reason?: string; starting?: boolean } };
}

export type CheckStatus = 'ok' | 'starting' | 'failing' | 'disabled' | 'not_configured';

export interface Readiness {
  status: 'ok' | 'starting' | 'degraded' | 'draining';
  checks: Record<string, { status: CheckStatus; [k: string]: unknown }>;
}

/** The readiness verdict and each check behind it. Only reads stores. */
export function readiness(d: StatusDeps, now: number): Readiness {
  const g = d.gpu.status(now);
  const gpuCheck = g.detecting
    ? { status: 'starting' as const, backend: g.backend, reason: 'detecting the GPU backend' }
    : g.backend === 'none'
      ? { status: 'failing' as const, backend: g.backend, reason: g.unavailableReason ?? 'no GPU backend' }
      : g.samplesTotal === 0
        ? { status: 'starting' as const, backend: g.backend }
        : g.up && !g.stale
          ? { status: 'ok' as const, backend: g.backend, sample_age_ms: orNull(g.sampleAgeMs) }
          : {
              status: 'failing' as const,
              backend: g.backend,
              reason: !g.up ? (g.lastFailure?.message ?? 'backend down') : 'GPU data is stale',
              stale: g.stale,
              sample_age_ms: orNull(g.sampleAgeMs),
            };
  const w = d.workload();
  const workloadCheck =
    w.state === 'not_configured'
      ? { status: 'not_configured' as const }
      : w.state === 'running'
        ? { status: 'ok' as const, pid: w.pid }
        : w.state === 'starting'
          ? { status: 'starting' as const }
          : {
              status: 'failing' as const,
              reason: w.spawnError ?? `workload exited with code ${w.exitCode}`,
              exit_code: orNull(w.exitCode),
              signal: orNull(w.signal),
            };
  const q = d.queue.readiness(now);
  const checks: Readiness['checks'] = { gpu: gpuCheck, workload: workloadCheck, queue: q };
  if (d.runner) {
    const r = d.runner.readiness();
    checks[d.runner.name] = r.ok
      ? { status: 'ok' }
      : { status: r.starting ? 'starting' : 'failing', reason: r.reason ?? `${d.runner.name} is not ready` };
  }
  const phase = d.lifecycle.phase;
  let status: Readiness['status'];
  if (phase === 'draining' || phase === 'stopped') status = 'draining';
  else if (Object.values(checks).some((c) => c.status === 'failing')) status = 'degraded';
  else if (phase === 'starting' || Object.values(checks).some((c) => c.status === 'starting'))
    status = 'starting';
  else status = 'ok';
  return { status, checks };
}

export function currentJobView(job: JobRecord | undefined, workflows: WorkflowStore, now: number) {
  if (!job) return null;
  const wf = workflows.get(job.id);
  const node = workflows.currentNode(job.id);
  let completed = 0;
  if (wf)
    for (const n of wf.nodes.values()) if (n.status === 'completed' || n.status === 'cached') completed++;
  return {
    job_id: job.id,
    queue: job.queue,
    state: job.state,
    progress_percent: job.progressPercent,
    started_at: iso(job.startedAt),
    elapsed_ms: job.startedAt === undefined ? null : now - job.startedAt,
    attempts: job.attempts,
    nodes_total: wf?.nodesTotal ?? 0,
    nodes_completed: completed,
    node: node
      ? {
          id: node.id,
          node_id: node.nodeId,
          type: node.type,
          step: orNull(node.step),
          total: orNull(node.total),
          progress_percent:
            node.step !== undefined && node.total ? Math.round((node.step / node.total) * 1000) / 10 : null,
          started_at: iso(node.startedAt),
        }
      : null,
  };
}

/** `GET /debug/status`. */
export function buildStatus(d: StatusDeps, now: number) {
  const r = readiness(d, now);
  const g = d.gpu.status(now);
  const sample = d.gpu.latest();
  const current = d.jobs.currentJob();
  const gpus = sample ? summariesOf(sample).list : [];
  const first = gpus[0];
  const status =
    r.status === 'draining'
      ? 'draining'
      : r.status === 'starting'
        ? 'starting'
        : r.status === 'degraded'
          ? 'degraded'
          : current
            ? 'processing'
            : 'idle';
  return {
    pod_id: d.podId,
    status,
    uptime_s: Math.floor((now - d.startedAt) / 1000),
    started_at: startedAtIso(d.startedAt),
    version: d.version,
    gpu: first
      ? {
          name: first.name,
          memory_used_mb: first.memory_used_mb,
          memory_total_mb: first.memory_total_mb,
          utilization_percent: first.utilization_percent,
          temperature_c: first.temperature_c,
          power_w: first.power_w,
        }
      : null,
    gpus,
    gpu_count: gpus.length,
    current_job: currentJobView(current, d.workflows, now),
    gpu_backend: g.backend,
    gpu_backend_up: g.up,
    sample_age_ms: orNull(g.sampleAgeMs),
    stale: g.stale,
    driver_version: orNull(sample?.driverVersion),
    workload: workloadView(d.workload()),
  };
}

export function workloadView(w: WorkloadStatus) {
  return {
    state: w.state,
    pid: orNull(w.pid),
    exit_code: orNull(w.exitCode),
    signal: orNull(w.signal),
    started_at: iso(w.startedAt),
    exited_at: iso(w.exitedAt),
  };
}

type GpuSummary = ReturnType<typeof gpuSummary>;
const summaries = new WeakMap<GpuSample, { list: GpuSummary[]; json: string }>();

/** Per-GPU summaries of a sample, built and serialized once per sample rather than per request. */
export function summariesOf(sample: GpuSample): { list: GpuSummary[]; json: string } {
  let s = summaries.get(sample);
  if (!s) {
    const list = sample.devices.map(gpuSummary);
    s = { list, json: JSON.stringify(list) };
    summaries.set(sample, s);
  }
  return s;
}

/**
 * `GET /debug/status` as JSON text. The per-GPU array, most of the body, changes only with a new
 * sample, so its serialized form is reused; the rest is encoded per request.
 */
export function statusJson(d: StatusDeps, now: number): string {
  const { gpus, ...rest } = buildStatus(d, now);
  const sample = d.gpu.latest();
  const gpusJson = sample ? summariesOf(sample).json : JSON.stringify(gpus);
  return `${JSON.stringify(rest).slice(0, -1)},"gpus":${gpusJson}}`;
}

let startedAtCache: { ms: number; iso: string } | undefined;
/** The agent's start time never changes; format it once. */
function startedAtIso(ms: number): string {
  if (startedAtCache?.ms !== ms) startedAtCache = { ms, iso: new Date(ms).toISOString() };
  return startedAtCache.iso;
}
