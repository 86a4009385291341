/**
 * Every metric name the agent exports, in one place. Base units (bytes, seconds, watts, hertz,
 * ratios); identity lives in `gpu_info`; no label ever carries unbounded values (job ids, pids, prompts).
 */
export const GPU_METRICS = {
  info: 'gpu_info',
  utilizationRatio: 'gpu_utilization_ratio',
  memoryUtilizationRatio: 'gpu_memory_utilization_ratio',
  encoderUtilizationRatio: 'gpu_encoder_utilization_ratio',
  decoderUtilizationRatio: 'gpu_decoder_utilization_ratio',
  memoryUsedBytes: 'gpu_memory_used_bytes',
  memoryTotalBytes: 'gpu_memory_total_bytes',
  memoryFreeBytes: 'gpu_memory_free_bytes',
  memoryReservedBytes: 'gpu_memory_reserved_bytes',
  temperatureCelsius: 'gpu_temperature_celsius',
  memoryTemperatureCelsius: 'gpu_memory_temperature_celsius',
  powerUsageWatts: 'gpu_power_usage_watts',
  powerLimitWatts: 'gpu_power_limit_watts',
  energyJoulesTotal: 'gpu_energy_joules_total',
  smClockHertz: 'gpu_sm_clock_hertz',
  memoryClockHertz: 'gpu_memory_clock_hertz',
  smClockMaxHertz: 'gpu_sm_clock_max_hertz',
  memoryClockMaxHertz: 'gpu_memory_clock_max_hertz',
  fanSpeedRatio: 'gpu_fan_speed_ratio',
  performanceState: 'gpu_performance_state',
  clocksEventReasonActive: 'gpu_clocks_event_reason_active',
  eccErrorsTotal: 'gpu_ecc_errors_total',
  xidErrorsTotal: 'gpu_xid_errors_total',
  xidLastTimestampSeconds: 'gpu_xid_last_timestamp_seconds',
  processes: 'gpu_processes',
  processMemoryUsedBytes: 'gpu_process_memory_used_bytes',
  graphicsEngineActiveRatio: 'gpu_graphics_engine_active_ratio',
  smActiveRatio: 'gpu_sm_active_ratio',
  smOccupancyRatio: 'gpu_sm_occupancy_ratio',
  tensorActiveRatio: 'gpu_tensor_active_ratio',
  dramActiveRatio: 'gpu_dram_active_ratio',
  migEnabled: 'gpu_mig_enabled',
  migInstanceInfo: 'gpu_mig_instance_info',
  migMemoryUsedBytes: 'gpu_mig_memory_used_bytes',
  migMemoryTotalBytes: 'gpu_mig_memory_total_bytes',
  migGraphicsEngineActiveRatio: 'gpu_mig_graphics_engine_active_ratio',
} as const;

export const JOB_METRICS = {
  startedTotal: 'jobs_started_total',
  completedTotal: 'jobs_completed_total',
  durationSeconds: 'job_duration_seconds',
  queuedCurrent: 'jobs_queued_current',
  processingCurrent: 'jobs_processing_current',
  nodeDurationSeconds: 'workflow_node_duration_seconds',
  nodeStepsPerSecond: 'workflow_node_steps_per_second',
  queueWaitSeconds: 'job_queue_wait_seconds',
} as const;

/** The queue as Redis sees it, read by the queue monitor (`bullmq_job_count` is BullMQ's own name). */
export const QUEUE_METRICS = {
  bullmqJobCount: 'bullmq_job_count',
  workers: 'agent_queue_workers',
  redisUp: 'agent_queue_redis_up',
  redisLatencySeconds: 'agent_queue_redis_latency_seconds',
} as const;

export const API_METRICS = {
  requestsTotal: 'api_requests_total',
  requestDurationSeconds: 'api_request_duration_seconds',
} as const;

export const AGENT_METRICS = {
  buildInfo: 'agent_build_info',
  ready: 'agent_ready',
  draining: 'agent_draining',
  gpuBackendUp: 'agent_gpu_backend_up',
  gpuSampleDurationSeconds: 'agent_gpu_sample_duration_seconds',
  gpuSamplesTotal: 'agent_gpu_samples_total',
  gpuSampleFailuresTotal: 'agent_gpu_sample_failures_total',
  gpuLastSampleTimestampSeconds: 'agent_gpu_last_sample_timestamp_seconds',
  gpuSampleAgeSeconds: 'agent_gpu_sample_age_seconds',
  workloadRunning: 'agent_workload_running',
  logRecordsDroppedTotal: 'agent_log_records_dropped_total',
} as const;

/** dcgm-exporter's names and labels, exported only with GPU_METRICS_DCGM_COMPAT. */
export const DCGM_METRICS = {
  gpuUtil: 'DCGM_FI_DEV_GPU_UTIL',
  memCopyUtil: 'DCGM_FI_DEV_MEM_COPY_UTIL',
  encUtil: 'DCGM_FI_DEV_ENC_UTIL',
  decUtil: 'DCGM_FI_DEV_DEC_UTIL',
  fbUsed: 'DCGM_FI_DEV_FB_USED',
  fbFree: 'DCGM_FI_DEV_FB_FREE',
  fbReserved: 'DCGM_FI_DEV_FB_RESERVED',
  gpuTemp: 'DCGM_FI_DEV_GPU_TEMP',
  memoryTemp: 'DCGM_FI_DEV_MEMORY_TEMP',
  powerUsage: 'DCGM_FI_DEV_POWER_USAGE',
  smClock: 'DCGM_FI_DEV_SM_CLOCK',
  memClock: 'DCGM_FI_DEV_MEM_CLOCK',
  xidErrors: 'DCGM_FI_DEV_XID_ERRORS',
  grEngineActive: 'DCGM_FI_PROF_GR_ENGINE_ACTIVE',
  smActive: 'DCGM_FI_PROF_SM_ACTIVE',
  smOccupancy: 'DCGM_FI_PROF_SM_OCCUPANCY',
  tensorActive: 'DCGM_FI_PROF_PIPE_TENSOR_ACTIVE',
  dramActive: 'DCGM_FI_PROF_DRAM_ACTIVE',
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
/** Extra labels dcgm-exporter puts on the series of a MIG instance. */
export const DCGM_MIG_LABELS = ['GPU_I_PROFILE', 'GPU_I_ID'] as const;

/** Processes per GPU in gpu_process_memory_used_bytes (the largest by memory); the rest are left out. */
export const DEFAULT_MAX_PROCESS_SERIES = 10;

/** Distinct `queue` label values kept before further ones are counted as `other`. */
export const MAX_QUEUES = 50;

/** Distinct `node_type` label values kept before further ones are counted as `other`. */
export const MAX_NODE_TYPES = 200;
