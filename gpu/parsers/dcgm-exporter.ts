import type { GpuDevice, GpuProfiling, GpuSample, MigInstance } from '../types.js';
import { DCGM_FIELDS_BY_NAME, dcgmDevice, dcgmMemory, dcgmProfiling, dcgmReadings } from './dcgm-fields.js';
import { parsePrometheusText } from './prometheus-text.js';
import type { PromParseError } from './prometheus-text.js';

/** A MIG instance as dcgm-exporter describes it; DCGM's profiling ratios are its only utilization. */
export interface DcgmMigInstance extends MigInstance {
  profiling?: GpuProfiling;
}

export interface DcgmExporterReading {
  sample: GpuSample;
  /** Series whose value was not a number (`ERROR - FAILED TO CONVERT TO STRING`, MIG names). */
  nonNumeric: number;
  /** Lines that were not valid exposition format, skipped. */
  errors: PromParseError[];
}

interface InstanceDraft {
  profile?: string;
  values: Map<number, number>;
}

interface DeviceDraft {
  index: number;
  uuid?: string;
  name?: string;
  pciBusId?: string;
  /** The device's own series (no `GPU_I_ID`). */
  values: Map<number, number>;
  /** Whole-GPU fields DCGM repeats on each MIG instance's series. */
  fromInstances: Map<number, number>;
  instances: Map<number, InstanceDraft>;
}

function nonNegativeInt(text: string | undefined): number | undefined {
  return text !== undefined && /^\d+$/.test(text) ? Number(text) : undefined;
}

function firstSet<T>(current: T | undefined, next: T | undefined): T | undefined {
  return current !== undefined && current !== '' ? current : next;
}

/**
 * Maps a dcgm-exporter `/metrics` page to a `GpuSample`. Series are grouped by their `gpu` label
 * (identity from `UUID`, `modelName`, `pci_bus_id`, the driver from the `DCGM_FI_DRIVER_VERSION`
 * label); series that also carry `GPU_I_ID` belong to that MIG GPU instance, named by `GPU_I_PROFILE`.
 * Series without a `gpu` label (NvSwitch, CPU) and fields the table does not know are ignored, but
 * any series with a `gpu` label makes its GPU known. `takenAt` stamps the sample and any XID code.
 */
export function parseDcgmExporterMetrics(text: string, takenAt: number): DcgmExporterReading {
  const parsed = parsePrometheusText(text);
  const devices = new Map<number, DeviceDraft>();
  let driverVersion: string | undefined;
  let nonNumeric = 0;

  for (const s of parsed.samples) {
    const index = nonNegativeInt(s.labels.gpu);
    if (index === undefined) continue;
    let d = devices.get(index);
    if (!d) {
      d = { index, values: new Map(), fromInstances: new Map(), instances: new Map() };
      devices.set(index, d);
    }
    // Older exporters and some configurations spell the label in lower case.
    d.uuid = firstSet(d.uuid, s.labels.UUID ?? s.labels.uuid);
    d.name = firstSet(d.name, s.labels.modelName);
    d.pciBusId = firstSet(d.pciBusId, s.labels.pci_bus_id);
    driverVersion = firstSet(driverVersion, s.labels.DCGM_FI_DRIVER_VERSION);

    const gi = nonNegativeInt(s.labels.GPU_I_ID);
    let instance: InstanceDraft | undefined;
    if (gi !== undefined) {
      instance = d.instances.get(gi);
      if (!instance) {
        instance = { values: new Map() };
        d.instances.set(gi, instance);
      }
      instance.profile = firstSet(instance.profile, s.labels.GPU_I_PROFILE);
    }

    if (s.value === undefined) {
      nonNumeric++;
      continue;
    }
    const field = DCGM_FIELDS_BY_NAME.get(s.name);
    if (!field) continue;
    let target: Map<number, number>;
    if (!instance) target = d.values;
    else if ((field.level ?? 'gpu') === 'instance') target = instance.values;
    else target = d.fromInstances;
    // The same series can appear more than once (one per pod using the GPU); the first one stands,
    // except that an XID code on any MIG instance is the GPU's newest XID.
    const xidOnInstance = instance !== undefined && field.id === 230 && s.value > 0;
    if (!target.has(field.id) || xidOnInstance) target.set(field.id, s.value);
  }

  const out: GpuDevice[] = [...devices.values()]
    .sort((a, b) => a.index - b.index)
    .map((d) => {
      const values = new Map([...d.fromInstances, ...d.values]);
      const device = dcgmDevice(d, values, takenAt);
      if (d.instances.size > 0) {
        device.mig = {
          enabled: true,
          instances: [...d.instances.entries()]
            .sort(([a], [b]) => a - b)
            .map(([gpuInstanceId, inst]) => migInstance(gpuInstanceId, inst)),
        };
      }
      return device;
    });

  const sample: GpuSample = { takenAt, devices: out };
  if (driverVersion !== undefined) sample.driverVersion = driverVersion;
  return { sample, nonNumeric, errors: parsed.errors };
}

function migInstance(gpuInstanceId: number, draft: InstanceDraft): DcgmMigInstance {
  const r = dcgmReadings(draft.values);
  const instance: DcgmMigInstance = { gpuInstanceId };
  if (draft.profile) instance.profile = draft.profile;
  const memory = dcgmMemory(r);
  if (Number.isFinite(memory.totalBytes) && Number.isFinite(memory.usedBytes)) {
    instance.memory = { totalBytes: memory.totalBytes, usedBytes: memory.usedBytes };
    if (Number.isFinite(memory.freeBytes)) instance.memory.freeBytes = memory.freeBytes;
  }
  const profiling = dcgmProfiling(r);
  if (profiling) instance.profiling = profiling;
  return instance;
}
