import type { GpuDevice, GpuSample, GpuSourceStatus, GpuStore, NvidiaSmiDetail } from '../../gpu/index.js';

const MIB = 1024 * 1024;

/** Bytes to MiB, the unit nvidia-smi shows and `_mb` fields carry. */
export function toMiB(bytes: number | undefined): number | null {
  return bytes === undefined || !Number.isFinite(bytes) ? null : Math.round(bytes / MIB);
}

/** Undefined readings become JSON null (unsupported), never 0. */
export function orNull<T>(v: T | undefined): T | null {
  return v === undefined ? null : v;
}

export function iso(ms: number | undefined): string | null {
  return ms === undefined ? null : new Date(ms).toISOString();
}

/** One GPU as `/debug/status` lists it. */
export function gpuSummary(d: GpuDevice) {
  return {
    index: d.index,
    uuid: d.uuid,
    name: d.name,
    pci_bus_id: orNull(d.pciBusId),
    memory_used_mb: toMiB(d.memory.usedBytes),
    memory_total_mb: toMiB(d.memory.totalBytes),
    memory_free_mb: toMiB(d.memory.freeBytes),
    memory_reserved_mb: toMiB(d.memory.reservedBytes),
    utilization_percent: orNull(d.utilization.gpuPercent),
    memory_utilization_percent: orNull(d.utilization.memoryPercent),
    temperature_c: orNull(d.temperatureC),
    power_w: orNull(d.powerW),
    power_limit_w: orNull(d.powerLimitW),
    sm_clock_mhz: orNull(d.smClockMHz),
    mem_clock_mhz: orNull(d.memClockMHz),
    throttle_reasons: orNull(d.throttleReasons),
    xid_errors_total: d.xidErrors?.total ?? null,
    processes_count: d.processes.length,
  };
}

/** Every field a backend gave for one GPU, for `/debug/gpu`. */
export function gpuDetail(d: GpuDevice) {
  return {
    ...gpuSummary(d),
    memory: {
      total_bytes: d.memory.totalBytes,
      used_bytes: d.memory.usedBytes,
      free_bytes: d.memory.freeBytes,
      reserved_bytes: orNull(d.memory.reservedBytes),
    },
    ecc_errors: d.eccErrors
      ? { corrected: orNull(d.eccErrors.corrected), uncorrected: orNull(d.eccErrors.uncorrected) }
      : null,
    xid_errors: d.xidErrors
      ? {
          total: d.xidErrors.total,
          by_xid: d.xidErrors.byXid,
          last: d.xidErrors.last ? { xid: d.xidErrors.last.xid, at: iso(d.xidErrors.last.at) } : null,
        }
      : null,
    mig: d.mig
      ? {
          enabled: d.mig.enabled,
          instances: d.mig.instances.map((i) => ({
            gpu_instance_id: i.gpuInstanceId,
            compute_instance_id: orNull(i.computeInstanceId),
            profile: orNull(i.profile),
            uuid: orNull(i.uuid),
            memory_total_mb: toMiB(i.memory?.totalBytes),
            memory_used_mb: toMiB(i.memory?.usedBytes),
          })),
        }
      : null,
    processes: d.processes.map((p) => ({
      pid: p.pid,
      name: p.name,
      type: orNull(p.type),
      used_mb: toMiB(p.usedBytes),
    })),
  };
}

/** The source's health, as views show it. */
export function gpuSourceView(s: GpuSourceStatus) {
  return {
    backend: s.backend,
    up: s.up,
    stale: s.stale,
    sample_age_ms: orNull(s.sampleAgeMs),
    last_success_at: iso(s.lastSuccessAt),
    last_duration_ms: orNull(s.lastDurationMs),
    consecutive_failures: s.consecutiveFailures,
    samples_total: s.samplesTotal,
    failures_total: s.failuresTotal,
    failures_by_category: s.failuresByCategory,
    last_failure: s.lastFailure
      ? { category: s.lastFailure.category, message: s.lastFailure.message, at: iso(s.lastFailure.at) }
      : null,
    unavailable_reason: orNull(s.unavailableReason),
  };
}

/** The newest nvidia-smi `-q -x` report a sample carries, if its backend takes one. */
export function nvidiaSmiDetailOf(sample: GpuSample | undefined): NvidiaSmiDetail | undefined {
  const d = sample?.detail;
  if (d?.format !== 'nvidia-smi-xml' || typeof d.data !== 'object' || d.data === null) return undefined;
  return d.data as NvidiaSmiDetail;
}

/**
 * `GET /debug/gpu`: the full newest reading and the source's health, plus everything nvidia-smi's
 * own report said when the backend takes one (`nvidia_smi`).
 */
export function buildGpuView(gpu: GpuStore, now: number, history = false) {
  const sample = gpu.latest();
  const detail = nvidiaSmiDetailOf(sample);
  return {
    ...gpuSourceView(gpu.status(now)),
    taken_at: iso(sample?.takenAt),
    driver_version: orNull(sample?.driverVersion),
    cuda_version: orNull(sample?.cudaVersion),
    devices: sample?.devices.map(gpuDetail) ?? [],
    nvidia_smi: detail ? { taken_at: iso(detail.takenAt), report: detail.report.raw } : null,
    ...(history
      ? {
          history: gpu.history().map((h) => ({
            taken_at: iso(h.takenAt),
            devices: h.devices.map((p) => ({
              index: p.index,
              utilization_percent: orNull(p.gpuPercent),
              memory_used_mb: toMiB(p.memoryUsedBytes),
              power_w: orNull(p.powerW),
              temperature_c: orNull(p.temperatureC),
            })),
          })),
        }
      : {}),
  };
}
