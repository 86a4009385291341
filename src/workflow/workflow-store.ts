export const NODE_STATUSES = ['pending', 'running', 'cached', 'completed', 'failed', 'interrupted'] as const;
export type NodeStatus = (typeof NODE_STATUSES)[number];

const DONE: ReadonlySet<NodeStatus> = new Set(['cached', 'completed', 'failed', 'interrupted']);

export interface NodeError {
  message: string;
  exceptionType?: string;
  traceback?: string[];
  details?: unknown;
}

export interface WorkflowNode {
  /** Shown id, `<class_type>_<id>` such as `KSampler_3`. */
  id: string;
  /** The id as the graph has it. */
  nodeId: string;
  type: string;
  displayId?: string;
  parentId?: string;
  status: NodeStatus;
  step?: number;
  total?: number;
  startedAt?: number;
  endedAt?: number;
  error?: NodeError;
  /** Highest GPU memory in use (all GPUs together) seen while the node ran, bytes. */
  gpuMemoryPeakBytes?: number;
}

export interface Workflow {
  jobId: string;
  nodes: Map<string, WorkflowNode>;
  /** From the submitted graph; grows if more nodes run than were declared. */
  nodesTotal: number;
  /** Monotonic while running; 100 once completed. */
  progressPercent: number;
  startedAt: number;
  finishedAt?: number;
  currentNodeId?: string;
  /** Highest GPU memory in use (all GPUs together) seen while the job ran, bytes. */
  gpuMemoryPeakBytes?: number;
}

export interface GraphNode {
  id: string;
  type: string;
  display?: string;
  parent?: string;
}

export type WorkflowEvent =
  | { type: 'node'; jobId: string; node: WorkflowNode; from: NodeStatus }
  | { type: 'node_progress'; jobId: string; node: WorkflowNode }
  | { type: 'progress'; jobId: string; progressPercent: number };

/** `<class_type>_<id>`, the name users see in logs and views. */
export function displayNodeId(type: string, nodeId: string): string {
  return type ? `${type}_${nodeId}` : nodeId;
}

const MAX_NODES_PER_WORKFLOW = 10_000;

/**
 * The nodes of each job's workflow as state machines, with step progress and an overall percent.
 * Bounded: workflows of finished jobs are kept up to `historySize`, nodes per workflow are capped.
 */
export class WorkflowStore {
  private readonly workflows = new Map<string, Workflow>();
  /** Workflows not finished yet, for the GPU readings (few, however long the history). */
  private readonly live = new Set<Workflow>();
  private readonly listeners = new Set<(e: WorkflowEvent) => void>();

  constructor(
    private readonly historySize: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Starts (or restarts) a job's workflow; `graph` declares the nodes so they show as pending. */
  begin(jobId: string, graph: GraphNode[] = [], nodesTotal?: number): Workflow {
    const wf: Workflow = {
      jobId,
      nodes: new Map(),
      nodesTotal: 0,
      progressPercent: 0,
      startedAt: this.now(),
    };
    for (const g of graph.slice(0, MAX_NODES_PER_WORKFLOW)) {
      wf.nodes.set(g.id, this.newNode(g.id, g.type, g.display, g.parent));
    }
    wf.nodesTotal = Math.max(wf.nodes.size, nodesTotal ?? 0);
    const earlier = this.workflows.get(jobId);
    if (earlier) this.live.delete(earlier);
    this.workflows.delete(jobId);
    this.workflows.set(jobId, wf);
    this.live.add(wf);
    while (this.workflows.size > this.historySize + 1) {
      const oldest = this.workflows.keys().next().value as string;
      const evicted = this.workflows.get(oldest);
      if (evicted) this.live.delete(evicted);
      this.workflows.delete(oldest);
    }
    return wf;
  }

  get(jobId: string): Workflow | undefined {
    return this.workflows.get(jobId);
  }

  /** A node starts running. Any other running node of the job is taken as completed (nodes run one at a time). */
  nodeStart(
    jobId: string,
    nodeId: string,
    type?: string,
    meta: { display?: string; parent?: string } = {},
  ): void {
    const wf = this.workflows.get(jobId) ?? this.begin(jobId);
    if (wf.finishedAt !== undefined) return;
    for (const other of wf.nodes.values()) {
      if (other.status === 'running' && other.nodeId !== nodeId) this.setStatus(wf, other, 'completed');
    }
    const node = this.node(wf, nodeId, type, meta);
    if (!node) return;
    if (node.status !== 'running') {
      node.startedAt = this.now();
      node.endedAt = undefined;
      node.step = undefined;
      node.error = undefined;
      this.setStatus(wf, node, 'running');
    }
    wf.currentNodeId = nodeId;
    this.recompute(wf);
  }

  nodeProgress(jobId: string, nodeId: string, step: number, total: number): void {
    const wf = this.workflows.get(jobId);
    if (!wf || wf.finishedAt !== undefined) return;
    let node = wf.nodes.get(nodeId);
    if (!node || node.status !== 'running') {
      this.nodeStart(jobId, nodeId, node?.type);
      node = wf.nodes.get(nodeId);
      if (!node) return;
    }
    node.total = Math.max(1, Math.floor(total));
    node.step = Math.min(node.total, Math.max(node.step ?? 0, Math.floor(step)));
    this.emit({ type: 'node_progress', jobId, node });
    this.recompute(wf);
  }

  nodeEnd(
    jobId: string,
    nodeId: string,
    status: 'completed' | 'cached' | 'failed' | 'interrupted',
    extra: { type?: string; error?: NodeError } = {},
  ): void {
    const wf = this.workflows.get(jobId) ?? this.begin(jobId);
    if (wf.finishedAt !== undefined) return;
    const node = this.node(wf, nodeId, extra.type);
    if (!node) return;
    if (status === 'cached') node.startedAt ??= this.now();
    if (extra.error) node.error = extra.error;
    if (status === 'completed' && node.total !== undefined) node.step = node.total;
    this.setStatus(wf, node, status);
    if (wf.currentNodeId === nodeId) wf.currentNodeId = undefined;
    this.recompute(wf);
  }

  /** Ends the workflow with its job; running nodes become failed or interrupted. */
  finish(jobId: string, outcome: 'completed' | 'failed' | 'canceled' | 'returned'): void {
    const wf = this.workflows.get(jobId);
    if (!wf || wf.finishedAt !== undefined) return;
    for (const node of wf.nodes.values()) {
      if (node.status !== 'running') continue;
      this.setStatus(
        wf,
        node,
        outcome === 'completed' ? 'completed' : outcome === 'failed' ? 'failed' : 'interrupted',
      );
    }
    wf.currentNodeId = undefined;
    wf.finishedAt = this.now();
    this.live.delete(wf);
    if (outcome === 'completed' && wf.progressPercent < 100) {
      wf.progressPercent = 100;
      this.emit({ type: 'progress', jobId, progressPercent: 100 });
    }
  }

  /**
   * A GPU reading: the memory in use (all GPUs together) raises the peak of every running workflow and
   * of its running node. Workflows run at the same time share the GPUs, so each sees the pod's total.
   */
  recordGpuMemory(usedBytes: number): void {
    if (!Number.isFinite(usedBytes)) return;
    for (const wf of this.live) {
      if (wf.finishedAt !== undefined) {
        this.live.delete(wf);
        continue;
      }
      if (usedBytes > (wf.gpuMemoryPeakBytes ?? -1)) wf.gpuMemoryPeakBytes = usedBytes;
      for (const n of wf.nodes.values()) {
        if (n.status === 'running' && usedBytes > (n.gpuMemoryPeakBytes ?? -1))
          n.gpuMemoryPeakBytes = usedBytes;
      }
    }
  }

  currentNode(jobId: string): WorkflowNode | undefined {
    const wf = this.workflows.get(jobId);
    return wf?.currentNodeId === undefined ? undefined : wf.nodes.get(wf.currentNodeId);
  }

  subscribe(listener: (e: WorkflowEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private node(
    wf: Workflow,
    nodeId: string,
    type: string | undefined,
    meta: { display?: string; parent?: string } = {},
  ): WorkflowNode | undefined {
    let node = wf.nodes.get(nodeId);
    if (!node) {
      if (wf.nodes.size >= MAX_NODES_PER_WORKFLOW) return undefined;
      node = this.newNode(nodeId, type ?? '', meta.display, meta.parent);
      wf.nodes.set(nodeId, node);
      wf.nodesTotal = Math.max(wf.nodesTotal, wf.nodes.size);
    } else if (type && !node.type) {
      node.type = type;
      node.id = displayNodeId(type, nodeId);
    }
    if (meta.display) node.displayId = meta.display;
    if (meta.parent) node.parentId = meta.parent;
    return node;
  }

  private newNode(nodeId: string, type: string, display?: string, parent?: string): WorkflowNode {
    return {
      id: displayNodeId(type, nodeId),
      nodeId,
      type,
      displayId: display,
      parentId: parent,
      status: 'pending',
    };
  }

  private setStatus(wf: Workflow, node: WorkflowNode, status: NodeStatus): void {
    const from = node.status;
    if (from === status) return;
    node.status = status;
    if (DONE.has(status)) node.endedAt = this.now();
    this.emit({ type: 'node', jobId: wf.jobId, node, from });
  }

  /**
   * Overall percent: a node weighs its step count when it has steps (a 30-step sampler outweighs a
   * loader), 1 otherwise; nodes not yet seen weigh 1 each. Held below 100 until the job completes and
   * never lowered, so a node revealing a large step count cannot move the bar backwards.
   */
  private recompute(wf: Workflow): void {
    let total = 0;
    let done = 0;
    for (const n of wf.nodes.values()) {
      const w = n.total ?? 1;
      total += w;
      if (DONE.has(n.status)) done += w;
      else if (n.status === 'running' && n.total) done += Math.min(n.step ?? 0, n.total);
    }
    total += Math.max(0, wf.nodesTotal - wf.nodes.size);
    if (total === 0) return;
    const pct = Math.min(99.9, Math.round((done / total) * 1000) / 10);
    if (pct > wf.progressPercent) {
      wf.progressPercent = pct;
      this.emit({ type: 'progress', jobId: wf.jobId, progressPercent: pct });
    }
  }

  private emit(e: WorkflowEvent): void {
    for (const l of this.listeners) {
      try {
        l(e);
      } catch {
        // Views and metrics must never break the state machine.
      }
    }
  }
}
