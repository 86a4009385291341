import type { Workflow, WorkflowNode } from '../workflow/workflow-store.js';
import { iso, orNull } from './gpu.js';

export function nodeView(n: WorkflowNode, now: number) {
  const end = n.endedAt ?? (n.status === 'running' ? now : undefined);
  return {
    id: n.id,
    node_id: n.nodeId,
    type: n.type,
    display_id: orNull(n.displayId),
    parent_id: orNull(n.parentId),
    status: n.status,
    progress: n.total !== undefined ? { steps: n.step ?? 0, total: n.total } : null,
    started_at: iso(n.startedAt),
    ended_at: iso(n.endedAt),
    duration_ms: n.startedAt !== undefined && end !== undefined ? end - n.startedAt : null,
    steps_per_second: stepsPerSecond(n, end),
    gpu_memory_peak_mb: mb(n.gpuMemoryPeakBytes),
    error: n.error
      ? {
          message: n.error.message,
          exception_type: orNull(n.error.exceptionType),
          traceback: orNull(n.error.traceback),
          details: orNull(n.error.details),
        }
      : null,
  };
}

/** `GET /debug/workflow`: one job's nodes in graph order. */
export function buildWorkflowView(
  wf: Workflow | undefined,
  jobId: string | null,
  jobState: string | null,
  now: number,
) {
  if (!wf) {
    return {
      job_id: jobId,
      state: jobState,
      nodes_total: 0,
      nodes_completed: 0,
      progress_percent: 0,
      current_node: null,
      gpu_memory_peak_mb: null,
      nodes: [],
    };
  }
  const nodes = [...wf.nodes.values()];
  const current = wf.currentNodeId === undefined ? undefined : wf.nodes.get(wf.currentNodeId);
  return {
    job_id: wf.jobId,
    state: jobState,
    nodes_total: wf.nodesTotal,
    nodes_completed: nodes.filter((n) => n.status === 'completed' || n.status === 'cached').length,
    progress_percent: wf.progressPercent,
    started_at: iso(wf.startedAt),
    finished_at: iso(wf.finishedAt),
    current_node: current ? current.id : null,
    gpu_memory_peak_mb: mb(wf.gpuMemoryPeakBytes),
    nodes: nodes.map((n) => nodeView(n, now)),
  };
}

function mb(bytes: number | undefined): number | null {
  return bytes === undefined ? null : Math.round(bytes / (1024 * 1024));
}

/** Steps a node ran per second: for samplers, the figure users compare between pods and models. */
export function stepsPerSecond(n: WorkflowNode, end: number | undefined): number | null {
  if (n.total === undefined || n.step === undefined || n.step === 0) return null;
  if (n.startedAt === undefined || end === undefined || end <= n.startedAt) return null;
  return Math.round((n.step / ((end - n.startedAt) / 1000)) * 100) / 100;
}
