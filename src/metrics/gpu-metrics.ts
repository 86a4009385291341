import { Counter, Gauge } from 'prom-client';
import type { Registry, RegistryContentType } from 'prom-client';
import type { GpuDevice, GpuProfiling, GpuSample, GpuStore, MigInstance } from '../../gpu/index.js';
import { DCGM_LABELS, DCGM_METRICS, DCGM_MIG_LABELS, GPU_METRICS } from './names.js';

const MIB = 1024 * 1024;
const GPU_LABELS = ['gpu', 'uuid'] as const;

interface Reading {
  labels: Record<string, string>;
  value: number | undefined;
}

export interface GpuMetricsOptions {
  registry: Registry<RegistryContentType>;
  gpu: GpuStore;
  now: () => number;
  /** Processes per GPU in the per-process family, the largest by memory. */
  maxProcessSeries: number;
}

const ratio = (percent: number | undefined): number | undefined =>
  percent === undefined ? undefined : percent / 100;
const hertz = (mhz: number | undefined): number | undefined => (mhz === undefined ? undefined : mhz * 1e6);

/**
 * The GPU families. Every value is read from the newest sample at scrape time. When the sample is
 * stale (the backend has not answered within GPU_STALE_AFTER_MS) value series are dropped, so
 * Prometheus sees the gap instead of a frozen number; `gpu_info` stays, as identity does not go stale.
 * A reading the device does not support has no series at all.
 */
export function defineGpuMetrics(opts: GpuMetricsOptions): void {
  const { registry, gpu, now } = opts;
  const fresh = (): GpuDevice[] => (gpu.status(now()).stale ? [] : (gpu.latest()?.devices ?? []));
  const base = (d: GpuDevice): Record<string, string> => ({ gpu: String(d.index), uuid: d.uuid });

  const gauge = (name: string, help: string, extra: string[], read: (d: GpuDevice) => Reading[]): void => {
    new Gauge({
      name,
      help,
      labelNames: [...GPU_LABELS, ...extra],
      registers: [registry],
      collect() {
        this.reset();
        for (const d of fresh()) {
          for (const r of read(d)) {
            if (r.value !== undefined && Number.isFinite(r.value))
              this.set({ ...base(d), ...r.labels }, r.value);
          }
        }
      },
    });
  };
  const simple = (name: string, help: string, read: (d: GpuDevice) => number | undefined): void =>
    gauge(name, help, [], (d) => [{ labels: {}, value: read(d) }]);
  const profiling = (name: string, help: string, key: keyof GpuProfiling): void =>
    simple(name, help, (d) => d.profiling?.[key]);

  new Gauge({
    name: GPU_METRICS.info,
    help: 'Identity of each GPU; always 1.',
    labelNames: ['gpu', 'uuid', 'name', 'driver_version', 'pci_bus_id'],
    registers: [registry],
    collect() {
      this.reset();
      const s = gpu.latest();
      for (const d of s?.devices ?? []) {
        this.set(
          { ...base(d), name: d.name, driver_version: s?.driverVersion ?? '', pci_bus_id: d.pciBusId ?? '' },
          1,
        );
      }
    },
  });

  simple(GPU_METRICS.utilizationRatio, 'Share of time a kernel ran on the GPU (0–1).', (d) =>
    ratio(d.utilization.gpuPercent),
  );
  simple(GPU_METRICS.memoryUtilizationRatio, 'Share of time device memory was read or written (0–1).', (d) =>
    ratio(d.utilization.memoryPercent),
  );
  simple(GPU_METRICS.encoderUtilizationRatio, 'Video encoder utilization (0–1).', (d) =>
    ratio(d.encoderPercent),
  );
  simple(GPU_METRICS.decoderUtilizationRatio, 'Video decoder utilization (0–1).', (d) =>
    ratio(d.decoderPercent),
  );
  simple(
    GPU_METRICS.memoryUsedBytes,
    'Device memory in use, reserved memory excluded where the driver tells them apart.',
    (d) => d.memory.usedBytes,
  );
  simple(GPU_METRICS.memoryTotalBytes, 'Total device memory.', (d) => d.memory.totalBytes);
  simple(GPU_METRICS.memoryFreeBytes, 'Device memory free for allocation.', (d) => d.memory.freeBytes);
  simple(
    GPU_METRICS.memoryReservedBytes,
    'Device memory the driver reserves for itself.',
    (d) => d.memory.reservedBytes,
  );
  simple(GPU_METRICS.temperatureCelsius, 'GPU core temperature.', (d) => d.temperatureC);
  simple(GPU_METRICS.memoryTemperatureCelsius, 'GPU memory (HBM) temperature.', (d) => d.memoryTemperatureC);
  simple(GPU_METRICS.powerUsageWatts, 'Power draw of the board.', (d) => d.powerW);
  simple(GPU_METRICS.powerLimitWatts, 'Enforced power limit.', (d) => d.powerLimitW);
  simple(GPU_METRICS.smClockHertz, 'Current SM clock.', (d) => hertz(d.smClockMHz));
  simple(GPU_METRICS.memoryClockHertz, 'Current memory clock.', (d) => hertz(d.memClockMHz));
  simple(GPU_METRICS.smClockMaxHertz, 'Highest SM clock the GPU allows.', (d) => hertz(d.maxSmClockMHz));
  simple(GPU_METRICS.memoryClockMaxHertz, 'Highest memory clock the GPU allows.', (d) =>
    hertz(d.maxMemClockMHz),
  );
  simple(GPU_METRICS.fanSpeedRatio, 'Fan speed as a share of its maximum (0–1).', (d) => ratio(d.fanPercent));
  simple(GPU_METRICS.performanceState, 'Performance state: 0 (P0, fastest) to 15 (P15, slowest).', (d) => {
    const m = d.performanceState ? /^P(\d+)$/.exec(d.performanceState) : null;
    return m ? Number(m[1]) : undefined;
  });
  simple(GPU_METRICS.processes, 'Processes holding a context on the GPU.', (d) => d.processes.length);
  simple(GPU_METRICS.migEnabled, '1 when MIG mode is on.', (d) =>
    d.mig ? Number(d.mig.enabled) : undefined,
  );
  simple(
    GPU_METRICS.xidLastTimestampSeconds,
    'When the newest XID error on the GPU was seen (Unix seconds).',
    (d) => (d.xidErrors?.last ? d.xidErrors.last.at / 1000 : undefined),
  );
  profiling(
    GPU_METRICS.graphicsEngineActiveRatio,
    'Share of time the graphics engine was active (DCGM profiling, 0–1).',
    'grEngineActiveRatio',
  );
  profiling(
    GPU_METRICS.smActiveRatio,
    'Share of time at least one warp ran on an SM, averaged over SMs (DCGM profiling, 0–1).',
    'smActiveRatio',
  );
  profiling(
    GPU_METRICS.smOccupancyRatio,
    'Resident warps as a share of the maximum, averaged over SMs (DCGM profiling, 0–1).',
    'smOccupancyRatio',
  );
  profiling(
    GPU_METRICS.tensorActiveRatio,
    'Share of cycles the tensor pipes were active (DCGM profiling, 0–1).',
    'tensorActiveRatio',
  );
  profiling(
    GPU_METRICS.dramActiveRatio,
    'Share of cycles device memory was busy (DCGM profiling, 0–1).',
    'dramActiveRatio',
  );

  gauge(
    GPU_METRICS.clocksEventReasonActive,
    'Active clock event (throttle) reasons, one series per active reason.',
    ['reason'],
    (d) => (d.throttleReasons ?? []).map((reason) => ({ labels: { reason }, value: 1 })),
  );
  gauge(
    GPU_METRICS.processMemoryUsedBytes,
    `GPU memory of the processes using the most of it (at most ${opts.maxProcessSeries} per GPU); a process that exits loses its series.`,
    ['pid', 'process_name'],
    (d) =>
      d.processes
        .filter((p) => p.usedBytes !== undefined)
        .sort((a, b) => (b.usedBytes ?? 0) - (a.usedBytes ?? 0))
        .slice(0, opts.maxProcessSeries)
        .map((p) => ({ labels: { pid: String(p.pid), process_name: p.name }, value: p.usedBytes })),
  );

  const migLabels = ['gpu_instance_id', 'compute_instance_id'];
  const migId = (i: MigInstance): Record<string, string> => ({
    gpu_instance_id: String(i.gpuInstanceId),
    compute_instance_id: i.computeInstanceId === undefined ? '' : String(i.computeInstanceId),
  });
  const perMig = (read: (i: MigInstance) => number | undefined) => (d: GpuDevice) =>
    (d.mig?.enabled ? d.mig.instances : []).map((i) => ({ labels: migId(i), value: read(i) }));
  gauge(
    GPU_METRICS.migInstanceInfo,
    'Identity of each MIG instance; always 1.',
    [...migLabels, 'profile', 'mig_uuid'],
    (d) =>
      (d.mig?.enabled ? d.mig.instances : []).map((i) => ({
        labels: { ...migId(i), profile: i.profile ?? '', mig_uuid: i.uuid ?? '' },
        value: 1,
      })),
  );
  gauge(
    GPU_METRICS.migMemoryUsedBytes,
    'Memory in use in a MIG instance.',
    migLabels,
    perMig((i) => i.memory?.usedBytes),
  );
  gauge(
    GPU_METRICS.migMemoryTotalBytes,
    'Memory of a MIG instance.',
    migLabels,
    perMig((i) => i.memory?.totalBytes),
  );
  gauge(
    GPU_METRICS.migGraphicsEngineActiveRatio,
    'Share of time the graphics engine of a MIG instance was active (DCGM profiling, 0–1): the utilization that means something under MIG.',
    migLabels,
    perMig((i) => i.profiling?.grEngineActiveRatio),
  );

  const cumulative = (
    name: string,
    help: string,
    extra: string[],
    read: (d: GpuDevice) => Reading[],
  ): void => {
    new Counter({
      name,
      help,
      labelNames: [...GPU_LABELS, ...extra],
      registers: [registry],
      collect() {
        // The driver keeps the running totals; the counter mirrors them.
        this.reset();
        for (const d of fresh()) {
          for (const r of read(d)) {
            if (r.value !== undefined && Number.isFinite(r.value) && r.value >= 0)
              this.inc({ ...base(d), ...r.labels }, r.value);
          }
        }
      },
    });
  };
  cumulative(GPU_METRICS.eccErrorsTotal, 'ECC errors reported by the driver (aggregate).', ['type'], (d) => [
    { labels: { type: 'corrected' }, value: d.eccErrors?.corrected },
    { labels: { type: 'uncorrected' }, value: d.eccErrors?.uncorrected },
  ]);
  cumulative(
    GPU_METRICS.xidErrorsTotal,
    'XID errors seen since the agent started, by XID code.',
    ['xid'],
    (d) => Object.entries(d.xidErrors?.byXid ?? {}).map(([xid, value]) => ({ labels: { xid }, value })),
  );
  cumulative(GPU_METRICS.energyJoulesTotal, 'Energy the GPU used since the driver loaded.', [], (d) => [
    { labels: {}, value: d.energyJoules },
  ]);
}

/**
 * dcgm-exporter's names and labels, so NVIDIA's Grafana dashboard works unchanged. Units are DCGM's
 * (percent, MiB, MHz). MIG instances get their own series with `GPU_I_PROFILE` and `GPU_I_ID`, as
 * dcgm-exporter labels them, for the profiling fields.
 */
export function defineDcgmCompatMetrics(
  registry: Registry<RegistryContentType>,
  gpu: GpuStore,
  hostname: string,
  now: () => number,
): void {
  const labelsOf = (s: GpuSample, d: GpuDevice): Record<string, string> => ({
    gpu: String(d.index),
    UUID: d.uuid,
    pci_bus_id: d.pciBusId ?? '',
    device: `nvidia${d.index}`,
    modelName: d.name,
    Hostname: hostname,
    DCGM_FI_DRIVER_VERSION: s.driverVersion ?? '',
  });
  const def = (
    name: string,
    help: string,
    read: (d: GpuDevice) => number | undefined,
    readMig?: (i: MigInstance) => number | undefined,
  ): void => {
    new Gauge({
      name,
      help,
      labelNames: [...DCGM_LABELS, ...DCGM_MIG_LABELS],
      registers: [registry],
      collect() {
        this.reset();
        const s = gpu.latest();
        if (!s || gpu.status(now()).stale) return;
        for (const d of s.devices) {
          const v = read(d);
          if (v !== undefined && Number.isFinite(v)) this.set(labelsOf(s, d), v);
          if (!readMig || !d.mig?.enabled) continue;
          for (const i of d.mig.instances) {
            const mv = readMig(i);
            if (mv === undefined || !Number.isFinite(mv)) continue;
            this.set(
              { ...labelsOf(s, d), GPU_I_PROFILE: i.profile ?? '', GPU_I_ID: String(i.gpuInstanceId) },
              mv,
            );
          }
        }
      },
    });
  };
  const mib = (b: number | undefined): number | undefined =>
    b === undefined ? undefined : Math.round(b / MIB);
  def(DCGM_METRICS.gpuUtil, 'GPU utilization (in %).', (d) => d.utilization.gpuPercent);
  def(DCGM_METRICS.memCopyUtil, 'Memory utilization (in %).', (d) => d.utilization.memoryPercent);
  def(DCGM_METRICS.encUtil, 'Encoder utilization (in %).', (d) => d.encoderPercent);
  def(DCGM_METRICS.decUtil, 'Decoder utilization (in %).', (d) => d.decoderPercent);
  def(
    DCGM_METRICS.fbUsed,
    'Framebuffer memory used (in MiB).',
    (d) => mib(d.memory.usedBytes),
    (i) => mib(i.memory?.usedBytes),
  );
  def(
    DCGM_METRICS.fbFree,
    'Framebuffer memory free (in MiB).',
    (d) => mib(d.memory.freeBytes),
    (i) => mib(i.memory?.freeBytes),
  );
  def(DCGM_METRICS.fbReserved, 'Framebuffer memory reserved (in MiB).', (d) => mib(d.memory.reservedBytes));
  def(DCGM_METRICS.gpuTemp, 'GPU temperature (in C).', (d) => d.temperatureC);
  def(DCGM_METRICS.memoryTemp, 'Memory temperature (in C).', (d) => d.memoryTemperatureC);
  def(DCGM_METRICS.powerUsage, 'Power draw (in W).', (d) => d.powerW);
  def(DCGM_METRICS.smClock, 'SM clock frequency (in MHz).', (d) => d.smClockMHz);
  def(DCGM_METRICS.memClock, 'Memory clock frequency (in MHz).', (d) => d.memClockMHz);
  def(DCGM_METRICS.xidErrors, 'Value of the last XID error encountered.', (d) => d.xidErrors?.last?.xid ?? 0);
  def(
    DCGM_METRICS.grEngineActive,
    'Ratio of time the graphics engine is active.',
    (d) => d.profiling?.grEngineActiveRatio,
    (i) => i.profiling?.grEngineActiveRatio,
  );
  def(
    DCGM_METRICS.smActive,
    'The ratio of cycles an SM has at least 1 warp assigned.',
    (d) => d.profiling?.smActiveRatio,
    (i) => i.profiling?.smActiveRatio,
  );
  def(
    DCGM_METRICS.smOccupancy,
    'The ratio of number of warps resident on an SM.',
    (d) => d.profiling?.smOccupancyRatio,
    (i) => i.profiling?.smOccupancyRatio,
  );
  def(
    DCGM_METRICS.tensorActive,
    'Ratio of cycles the tensor (HMMA) pipe is active.',
    (d) => d.profiling?.tensorActiveRatio,
    (i) => i.profiling?.tensorActiveRatio,
  );
  def(
    DCGM_METRICS.dramActive,
    'Ratio of cycles the device memory interface is active sending or receiving data.',
    (d) => d.profiling?.dramActiveRatio,
    (i) => i.profiling?.dramActiveRatio,
  );
}
