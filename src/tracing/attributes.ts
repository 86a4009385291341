/**
 * Span names and attribute keys the agent writes, in one place, under one prefix (`gpu_pod_agent.`) for
 * what OpenTelemetry's semantic conventions do not name. Names are data: dashboards and queries depend
 * on them.
 */
export const ATTR_PREFIX = 'gpu_pod_agent';

export const ATTR = {
  podId: `${ATTR_PREFIX}.pod.id`,
  gpuModel: `${ATTR_PREFIX}.gpu.model`,
  gpuCount: `${ATTR_PREFIX}.gpu.count`,
  requestId: `${ATTR_PREFIX}.request.id`,
  jobId: `${ATTR_PREFIX}.job.id`,
  jobName: `${ATTR_PREFIX}.job.name`,
  jobQueue: `${ATTR_PREFIX}.job.queue`,
  jobAttempt: `${ATTR_PREFIX}.job.attempt`,
  jobRunner: `${ATTR_PREFIX}.job.runner`,
  jobStatus: `${ATTR_PREFIX}.job.status`,
  nodeId: `${ATTR_PREFIX}.node.id`,
  nodeRawId: `${ATTR_PREFIX}.node.raw_id`,
  nodeType: `${ATTR_PREFIX}.node.type`,
  nodeStatus: `${ATTR_PREFIX}.node.status`,
  nodeStep: `${ATTR_PREFIX}.node.step`,
  nodeTotal: `${ATTR_PREFIX}.node.total`,
  gpuBackend: `${ATTR_PREFIX}.gpu.backend`,
  failureCategory: `${ATTR_PREFIX}.failure.category`,
} as const;

export const SPAN = {
  job: (queue: string): string => `job ${queue}`,
  node: (displayId: string): string => `node ${displayId}`,
  gpuSample: 'gpu.sample',
} as const;

/** Event names on spans. */
export const EVENT = {
  step: 'step',
} as const;
