/**
 * Every metric name the agent exports, in one place. Base units (bytes, seconds, watts, hertz,
 * ratios); identity lives in `gpu_info`; no label ever carries unbounded values (job ids, pids, prompts).
 */
export const GPU_METRICS = {
  info: 'gpu_info',
  utilizationRatio: 'gpu_utilization_ratio',
  memoryUtilizationRatio: 'gpu_memory_utilization_ratio',
  memoryUsedBytes: 'gpu_memory_used_bytes',
  memoryTotalBytes: 'gpu_memory_total_bytes',
  memoryFreeBytes: 'gpu_memory_free_bytes',
  memoryReservedBytes: 'gpu_memory_reserved_bytes',
  temperatureCelsius: 'gpu_temperature_celsius',
  powerUsageWatts: 'gpu_power_usage_watts',
  powerLimitWatts: 'gpu_power_limit_watts',
  smClockHertz: 'gpu_sm_clock_hertz',
  memoryClockHertz: 'gpu_memory_clock_hertz',
  clocksEventReasonActive: 'gpu_clocks_event_reason_active',
  eccErrorsTotal: 'gpu_ecc_errors_total',
  xidErrorsTotal: 'gpu_xid_errors_total',
  xidLastTimestampSeconds: 'gpu_xid_last_timestamp_seconds',
  processes: 'gpu_processes',
  migEnabled: 'gpu_mig_enabled',
} as const;

export const JOB_METRICS = {
  startedTotal: 'jobs_started_total',
  completedTotal: 'jobs_completed_total',
  durationSeconds: 'job_duration_seconds',
  queuedCurrent: 'jobs_queued_current',
  processingCurrent: 'jobs_processing_current',
  nodeDurationSeconds: 'workflow_node_duration_seconds',
} as const;

export const API_METRICS = {
  requestsTotal: 'api_requests_total',
  requestDurationSeconds: 'api_request_duration_seconds',
} as const;

export const AGENT_METRICS = {
  buildInfo: 'agent_build_info',
  ready: 'agent_ready',
  gpuBackendUp: 'agent_gpu_backend_up',
  gpuSampleDurationSeconds: 'agent_gpu_sample_duration_seconds',
  gpuSamplesTotal: 'agent_gpu_samples_total',
  gpuSampleFailuresTotal: 'agent_gpu_sample_failures_total',
  gpuLastSuccessTimestampSeconds: 'agent_gpu_last_success_timestamp_seconds',
  gpuSampleAgeSeconds: 'agent_gpu_sample_age_seconds',
  workloadRunning: 'agent_workload_running',
  logRecordsDroppedTotal: 'agent_log_records_dropped_total',
} as const;

/** dcgm-exporter's names and labels, exported only with GPU_METRICS_DCGM_COMPAT. */
export const DCGM_METRICS = {
  gpuUtil: 'DCGM_FI_DEV_GPU_UTIL',
  memCopyUtil: 'DCGM_FI_DEV_MEM_COPY_UTIL',
  fbUsed: 'DCGM_FI_DEV_FB_USED',
  fbFree: 'DCGM_FI_DEV_FB_FREE',
  fbReserved: 'DCGM_FI_DEV_FB_RESERVED',
  gpuTemp: 'DCGM_FI_DEV_GPU_TEMP',
  powerUsage: 'DCGM_FI_DEV_POWER_USAGE',
  smClock: 'DCGM_FI_DEV_SM_CLOCK',
  memClock: 'DCGM_FI_DEV_MEM_CLOCK',
  xidErrors: 'DCGM_FI_DEV_XID_ERRORS',
} as const;

export const DCGM_LABELS = [
  'gpu',
  'UUID',
  'pci_bus_id',
  'device',
  'modelName',
  'Hostname',
  'DCGM_FI_DRIVER_VERSION',
] as const;

/** Distinct `node_type` label values kept before further ones are counted as `other`. */
export const MAX_NODE_TYPES = 200;
