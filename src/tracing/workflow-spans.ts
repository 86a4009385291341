import type { Span } from '@opentelemetry/api';
import type { WorkflowEvent, WorkflowStore } from '../workflow/workflow-store.js';
import { ATTR, EVENT, SPAN } from './attributes.js';
import { SpanStatusCode } from './otel.js';
import type { Tracing } from './otel.js';

/**
 * A span per workflow node, child of its job's span: started when the node runs, ended with its status;
 * sampler steps are events on it. Cached nodes get an instant span so the trace lists every node.
 * Only jobs whose span was registered (`begin`) are traced.
 */
export class WorkflowSpans {
  private readonly jobs = new Map<string, Span>();
  private readonly nodes = new Map<string, Span>();
  private readonly unsubscribe: () => void;

  constructor(
    private readonly tracing: Tracing,
    workflows: WorkflowStore,
  ) {
    this.unsubscribe = workflows.subscribe((e) => this.on(e));
  }

  begin(jobId: string, span: Span): void {
    this.jobs.set(jobId, span);
  }

  /** The job is over: nodes still open end with it. */
  end(jobId: string): void {
    this.jobs.delete(jobId);
    const prefix = `${jobId}\0`;
    for (const [key, span] of this.nodes) {
      if (!key.startsWith(prefix)) continue;
      span.setAttribute(ATTR.nodeStatus, 'unfinished');
      span.end();
      this.nodes.delete(key);
    }
  }

  close(): void {
    this.unsubscribe();
    for (const id of [...this.jobs.keys()]) this.end(id);
  }

  private on(e: WorkflowEvent): void {
    const job = this.jobs.get(e.jobId);
    if (!job) return;
    if (e.type === 'progress') return;
    const key = `${e.jobId}\0${e.node.nodeId}`;
    if (e.type === 'node_progress') {
      this.nodes.get(key)?.addEvent(EVENT.step, {
        [ATTR.nodeStep]: e.node.step ?? 0,
        [ATTR.nodeTotal]: e.node.total ?? 0,
      });
      return;
    }
    const n = e.node;
    const attrs = {
      [ATTR.nodeId]: n.id,
      [ATTR.nodeRawId]: n.nodeId,
      [ATTR.nodeType]: n.type,
      [ATTR.jobId]: e.jobId,
    };
    if (n.status === 'running') {
      this.nodes.get(key)?.end();
      this.nodes.set(key, this.tracing.startChild(SPAN.node(n.id), job, attrs));
      return;
    }
    if (n.status === 'pending') return;
    let span = this.nodes.get(key);
    this.nodes.delete(key);
    // A node that ended without running here (cached, or settled from ComfyUI's history) gets an instant span.
    span ??= this.tracing.startChild(SPAN.node(n.id), job, attrs);
    span.setAttribute(ATTR.nodeStatus, n.status);
    if (n.total !== undefined) {
      span.setAttribute(ATTR.nodeStep, n.step ?? 0);
      span.setAttribute(ATTR.nodeTotal, n.total);
    }
    if (n.status === 'failed' || n.status === 'interrupted') {
      span.setStatus({ code: SpanStatusCode.ERROR, message: n.error?.message ?? n.status });
      if (n.error?.exceptionType) span.setAttribute('error.type', n.error.exceptionType);
    }
    span.end();
  }
}
