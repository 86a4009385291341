import type { GpuStore } from '../../gpu/index.js';
import type { HostSnapshot } from '../host/host-store.js';
import { iso, orNull, toMiB } from './gpu.js';

/** `GET /debug/memory`: this process, the host, the container's cgroup and every GPU's memory. */
export function buildMemoryView(host: HostSnapshot, gpu: GpuStore, now: number) {
  const p = process.memoryUsage();
  const sample = gpu.latest();
  return {
    process: {
      rss_bytes: p.rss,
      heap_total_bytes: p.heapTotal,
      heap_used_bytes: p.heapUsed,
      external_bytes: p.external,
      array_buffers_bytes: p.arrayBuffers,
      max_rss_bytes: process.resourceUsage().maxRSS * 1024,
    },
    system: host.system
      ? {
          total_bytes: host.system.totalBytes,
          available_bytes: host.system.availableBytes,
          used_bytes: host.system.usedBytes,
          free_bytes: host.system.freeBytes,
          swap_total_bytes: host.system.swapTotalBytes,
          swap_used_bytes: host.system.swapUsedBytes,
        }
      : null,
    cgroup: host.cgroup
      ? {
          version: host.cgroup.version,
          limit_bytes: orNull(host.cgroup.limitBytes),
          usage_bytes: host.cgroup.usageBytes,
        }
      : null,
    host_sample_age_ms: host.takenAt ? now - host.takenAt : null,
    host_taken_at: host.takenAt ? iso(host.takenAt) : null,
    gpu_sample_age_ms: sample ? now - sample.takenAt : null,
    gpus: (sample?.devices ?? []).map((d) => ({
      index: d.index,
      uuid: d.uuid,
      name: d.name,
      memory: {
        total_mb: toMiB(d.memory.totalBytes),
        used_mb: toMiB(d.memory.usedBytes),
        free_mb: toMiB(d.memory.freeBytes),
        reserved_mb: toMiB(d.memory.reservedBytes),
      },
      processes: d.processes.map((pr) => ({ pid: pr.pid, name: pr.name, used_mb: toMiB(pr.usedBytes) })),
    })),
  };
}
