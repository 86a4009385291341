/**
 * Turns NVML calls into readings. Runs inside the sampler worker. Every optional reading goes through
 * `value()`: any non-success (NOT_SUPPORTED, NO_PERMISSION, a missing export) leaves the field
 * undefined, never 0. Only failing to enumerate the devices fails the sample.
 */
import { readFileSync } from 'node:fs';
import { clockReasonNames } from '../../clock-reasons.js';
import type { GpuProcess, MigInstance } from '../../types.js';
import {
  NVML,
  NVML_CLOCK_MEM,
  NVML_CLOCK_SM,
  NVML_DEVICE_MIG_ENABLE,
  NVML_MEMORY_ERROR_TYPE_CORRECTED,
  NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
  NVML_PCIE_UTIL_RX_BYTES,
  NVML_PCIE_UTIL_TX_BYTES,
} from './bindings.js';
import type { NvmlBindings, NvmlHandle, NvmlProcessInfo, NvmlResult } from './bindings.js';
import type { NvmlDeviceReading, NvmlReading } from './protocol.js';

/** A call the sample cannot do without failed; `code` is its nvmlReturn_t. */
export class NvmlCallError extends Error {
  override readonly name = 'NvmlCallError';
  constructor(
    readonly call: string,
    readonly code: number,
    description: string,
  ) {
    super(`${call} failed: ${description}`);
  }
}

/** Codes after which this nvmlInit is no good and the library must be initialised afresh. */
export const REINIT_CODES: ReadonlySet<number> = new Set([
  NVML.ERROR_UNINITIALIZED,
  NVML.ERROR_DRIVER_NOT_LOADED,
  NVML.ERROR_LIB_RM_VERSION_MISMATCH,
]);

// NVML's "KB" in PCIe throughput is 1024 bytes, as nvidia-smi's own conversion to MB/s assumes.
const KIB = 1024;

function value<T>(r: NvmlResult<T>): T | undefined {
  return r.ok ? r.value : undefined;
}

/** A process's name from procfs, for processes NVML will not name (other PID namespaces, permissions). */
export function procComm(pid: number): string | undefined {
  try {
    const name = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
    return name || undefined;
  } catch {
    return undefined;
  }
}

export interface ReadOptions {
  /** @defaultValue procComm */
  processNameFallback?: (pid: number) => string | undefined;
  /** @defaultValue true */
  pcieThroughput?: boolean;
}

export function readSample(b: NvmlBindings, options: ReadOptions = {}): NvmlReading {
  const count = b.deviceCount();
  if (!count.ok) {
    throw new NvmlCallError(
      b.symbols.deviceCount ?? 'nvmlDeviceGetCount',
      count.code,
      b.errorString(count.code),
    );
  }
  const handles: NvmlHandle[] = [];
  for (let i = 0; i < count.value; i++) {
    const h = b.handleByIndex(i);
    if (!h.ok) {
      const call = `${b.symbols.handleByIndex ?? 'nvmlDeviceGetHandleByIndex'}(${i})`;
      throw new NvmlCallError(call, h.code, b.errorString(h.code));
    }
    handles.push(h.value);
  }
  const names = new Map<number, string>();
  const nameOf = (pid: number): string => {
    let name = names.get(pid);
    if (name === undefined) {
      name = value(b.processName(pid)) || (options.processNameFallback ?? procComm)(pid) || '';
      names.set(pid, name);
    }
    return name;
  };
  const cuda = value(b.cudaDriverVersion());
  return {
    driverVersion: value(b.driverVersion()),
    // 12040 → "12.4", NVML_CUDA_DRIVER_VERSION_MAJOR/MINOR.
    cudaVersion:
      cuda === undefined ? undefined : `${Math.floor(cuda / 1000)}.${Math.floor((cuda % 1000) / 10)}`,
    devices: handles.map((h, index) => readDevice(b, index, h, nameOf, options.pcieThroughput ?? true)),
  };
}

function readDevice(
  b: NvmlBindings,
  index: number,
  h: NvmlHandle,
  nameOf: (pid: number) => string,
  pcieThroughput: boolean,
): NvmlDeviceReading {
  const memory = value(b.memory(h));
  const utilization = value(b.utilization(h));
  const mW = (r: NvmlResult<number>): number | undefined => {
    const v = value(r);
    return v === undefined ? undefined : v / 1000;
  };
  const reasons = value(b.clockReasons(h));
  const corrected = value(b.totalEccErrors(h, NVML_MEMORY_ERROR_TYPE_CORRECTED));
  const uncorrected = value(b.totalEccErrors(h, NVML_MEMORY_ERROR_TYPE_UNCORRECTED));
  const pstate = value(b.performanceState(h));
  const energyMj = value(b.totalEnergy(h));
  const tx = pcieThroughput ? value(b.pcieThroughput(h, NVML_PCIE_UTIL_TX_BYTES)) : undefined;
  const rx = pcieThroughput ? value(b.pcieThroughput(h, NVML_PCIE_UTIL_RX_BYTES)) : undefined;
  const pcie = {
    linkGeneration: value(b.pcieLinkGeneration(h)),
    linkWidth: value(b.pcieLinkWidth(h)),
    txBytesPerSecond: tx === undefined ? undefined : tx * KIB,
    rxBytesPerSecond: rx === undefined ? undefined : rx * KIB,
  };
  const migMode = value(b.migMode(h));
  const migEnabled = migMode === NVML_DEVICE_MIG_ENABLE;
  const migHandles = migEnabled ? listMigHandles(b, h) : [];
  const processes = readProcesses(b, h, migHandles, nameOf);

  return {
    index,
    uuid: value(b.uuid(h)) ?? '',
    name: value(b.name(h)) ?? '',
    pciBusId: value(b.pciBusId(h)),
    // The type requires figures; a device whose memory NVML cannot report (integrated GPUs) shows 0 of
    // 0, which no real GPU has, rather than a plausible-looking number.
    memory: memory
      ? {
          totalBytes: memory.total,
          usedBytes: memory.used,
          freeBytes: memory.free,
          reservedBytes: memory.reserved,
        }
      : { totalBytes: 0, usedBytes: 0, freeBytes: 0 },
    utilization: utilization ? { gpuPercent: utilization.gpu, memoryPercent: utilization.memory } : {},
    encoderPercent: value(b.encoderUtilization(h)),
    decoderPercent: value(b.decoderUtilization(h)),
    temperatureC: value(b.temperature(h)),
    memoryTemperatureC: value(b.memoryTemperature(h)),
    powerW: mW(b.powerUsage(h)),
    powerLimitW: mW(b.enforcedPowerLimit(h)),
    energyJoules: energyMj === undefined ? undefined : energyMj / 1000,
    smClockMHz: value(b.clock(h, NVML_CLOCK_SM)),
    memClockMHz: value(b.clock(h, NVML_CLOCK_MEM)),
    maxSmClockMHz: value(b.maxClock(h, NVML_CLOCK_SM)),
    maxMemClockMHz: value(b.maxClock(h, NVML_CLOCK_MEM)),
    throttleReasons: reasons === undefined ? undefined : clockReasonNames(reasons),
    eccErrors: corrected === undefined && uncorrected === undefined ? undefined : { corrected, uncorrected },
    // 0–15 are P0–P15; 32 is NVML_PSTATE_UNKNOWN.
    performanceState: pstate !== undefined && pstate >= 0 && pstate <= 15 ? `P${pstate}` : undefined,
    fanPercent: value(b.fanSpeed(h)),
    pcie: Object.values(pcie).some((v) => v !== undefined) ? pcie : undefined,
    serial: value(b.serial(h)),
    vbiosVersion: value(b.vbiosVersion(h)),
    mig: migMode === undefined ? undefined : { enabled: migEnabled, instances: readMig(b, migHandles) },
    processes,
  };
}

/** MIG device handles of a MIG-enabled GPU; indices without an instance are skipped. */
function listMigHandles(b: NvmlBindings, h: NvmlHandle): NvmlHandle[] {
  const max = value(b.maxMigDeviceCount(h)) ?? 0;
  const out: NvmlHandle[] = [];
  for (let i = 0; i < max; i++) {
    const mig = value(b.migDeviceHandle(h, i));
    if (mig !== undefined) out.push(mig);
  }
  return out;
}

function readMig(b: NvmlBindings, handles: NvmlHandle[]): MigInstance[] {
  const out: MigInstance[] = [];
  for (const [index, m] of handles.entries()) {
    const gi = value(b.gpuInstanceId(m));
    if (gi === undefined) continue;
    const memory = value(b.memory(m));
    out.push({
      gpuInstanceId: gi,
      computeInstanceId: value(b.computeInstanceId(m)),
      uuid: value(b.uuid(m)),
      index,
      memory: memory
        ? { totalBytes: memory.total, usedBytes: memory.used, freeBytes: memory.free }
        : undefined,
    });
  }
  return out;
}

/**
 * Compute processes. Under MIG the whole-GPU handle lists everything only with enough privilege, so the
 * MIG handles are asked too and the lists merged by pid.
 */
function readProcesses(
  b: NvmlBindings,
  h: NvmlHandle,
  migHandles: NvmlHandle[],
  nameOf: (pid: number) => string,
): GpuProcess[] {
  const byPid = new Map<number, NvmlProcessInfo>();
  for (const handle of [h, ...migHandles]) {
    for (const p of value(b.computeProcesses(handle)) ?? []) {
      if (!byPid.has(p.pid)) byPid.set(p.pid, p);
    }
  }
  return [...byPid.values()].map((p) => ({
    pid: p.pid,
    name: nameOf(p.pid),
    usedBytes: p.usedBytes,
    type: 'C',
  }));
}
