import { GpuError } from '../errors.js';
import { createRandom } from '../prng.js';
import { systemClock } from '../types.js';
import type { Clock, GpuBackend, GpuDevice, GpuProcess, GpuSample } from '../types.js';
import { MOCK_GPU_MODELS } from './mock-models.js';
import type { MockGpuModel } from './mock-models.js';

const MIB = 1024 * 1024;

/** What the pod is doing right now; the mock GPUs follow it. */
export interface GpuActivity {
  jobActive: boolean;
  /** Class type of the workflow node running now, e.g. `KSampler`. */
  nodeType?: string;
  /** Processes that hold GPU memory while the job runs (the workload). */
  processes?: { pid: number; name: string }[];
}

export type ActivitySource = () => GpuActivity;

/**
 * Faults the mock can inject: `hang` never answers (and ignores the abort signal, like a wedged driver
 * call), `error` rejects, `na` answers with every optional reading unsupported.
 */
export type MockFaultKind = 'none' | 'hang' | 'error' | 'na';

export interface MockFault {
  kind: MockFaultKind;
  /** Good samples to give before the fault starts. @defaultValue 0 */
  afterSamples?: number;
}

export interface MockBackendOptions {
  count: number;
  model?: MockGpuModel;
  /** Same seed and same activity sequence give the same readings. */
  seed?: number;
  activity?: ActivitySource;
  fault?: MockFault;
  driverVersion?: string;
  clock?: Clock;
}

interface DeviceState {
  gpuPercent: number;
  usedMiB: number;
  tempC: number;
  powerW: number;
  energyJ: number;
  lastAt?: number;
}

interface LoadProfile {
  gpuPercent: number;
  memPercent: number;
  /** Share of total memory the job holds when this profile settles. */
  memoryShare: number;
}

/** Load a node class puts on the GPU, by what its name says it does. */
export function loadProfileFor(activity: GpuActivity): LoadProfile {
  if (!activity.jobActive) return { gpuPercent: 2, memPercent: 0, memoryShare: 0 };
  const t = activity.nodeType ?? '';
  if (/sampl|denois|diffus|unet|infer|generat|train|step/i.test(t)) {
    return { gpuPercent: 97, memPercent: 38, memoryShare: 0.62 };
  }
  if (/vae|decode|encode|upscal/i.test(t)) return { gpuPercent: 74, memPercent: 55, memoryShare: 0.7 };
  if (/load|checkpoint|model|clip|lora/i.test(t)) return { gpuPercent: 18, memPercent: 6, memoryShare: 0.38 };
  if (/save|preview|image|write|output/i.test(t)) return { gpuPercent: 6, memPercent: 2, memoryShare: 0.38 };
  return { gpuPercent: 40, memPercent: 12, memoryShare: 0.4 };
}

/**
 * Simulated GPUs of a named model whose readings follow the pod's current job and node: near idle
 * without a job, high while a sampler runs, memory rising while a job runs and released after. Noise is
 * small and seeded. Only GPU 0 runs the job; the others stay idle, as in a single-job pod.
 */
export class MockBackend implements GpuBackend {
  readonly name = 'mock' as const;
  private readonly model: MockGpuModel;
  private readonly random: () => number;
  private readonly clock: Clock;
  private readonly states: DeviceState[];
  private readonly uuids: string[];
  private fault: MockFault;
  private samplesGiven = 0;
  private readonly hung = new Set<(err: Error) => void>();
  private closed = false;

  constructor(private readonly options: MockBackendOptions) {
    if (!Number.isInteger(options.count) || options.count < 1) {
      throw new RangeError(`mock GPU count must be a positive integer, got ${options.count}`);
    }
    this.model = options.model ?? (MOCK_GPU_MODELS[0] as MockGpuModel);
    const seed = options.seed ?? 1;
    this.random = createRandom(seed);
    this.clock = options.clock ?? systemClock;
    this.fault = options.fault ?? { kind: 'none' };
    const idleMiB = Math.round(this.model.memoryMiB * 0.0006) + 1;
    this.states = Array.from({ length: options.count }, () => ({
      gpuPercent: 0,
      usedMiB: idleMiB,
      tempC: this.model.idleTempC,
      powerW: this.model.idlePowerW,
      energyJ: 0,
    }));
    const idRandom = createRandom(seed ^ 0x9e3779b9);
    this.uuids = Array.from({ length: options.count }, () => mockUuid(idRandom));
  }

  /** Changes the injected fault; calls hung by a previous `hang` fault are released with an error. */
  setFault(fault: MockFault): void {
    this.fault = fault;
    this.samplesGiven = 0;
    this.releaseHung(new GpuError('injected', 'mock hang released'));
  }

  async sample(signal: AbortSignal): Promise<GpuSample> {
    if (this.closed) throw new GpuError('library', 'mock backend is closed');
    signal.throwIfAborted();
    const faultActive = this.fault.kind !== 'none' && this.samplesGiven >= (this.fault.afterSamples ?? 0);
    if (faultActive && this.fault.kind === 'hang') {
      // Deliberately ignores `signal`: the poller must cope with a backend that never answers.
      return new Promise<GpuSample>((_, reject) => {
        const release = (err: Error): void => {
          this.hung.delete(release);
          reject(err);
        };
        this.hung.add(release);
      });
    }
    if (faultActive && this.fault.kind === 'error') {
      throw new GpuError('injected', 'mock GPU backend: injected failure');
    }
    this.samplesGiven++;
    const activity = this.options.activity?.() ?? { jobActive: false };
    const devices = this.states.map((state, index) =>
      this.readDevice(index, state, index === 0 ? activity : { jobActive: false }, faultActive),
    );
    await Promise.resolve();
    return {
      takenAt: this.clock.now(),
      driverVersion: this.options.driverVersion ?? '550.127.05',
      cudaVersion: '12.4',
      devices,
    };
  }

  close(): Promise<void> {
    this.closed = true;
    this.releaseHung(new GpuError('library', 'mock backend closed'));
    return Promise.resolve();
  }

  private releaseHung(err: Error): void {
    for (const release of [...this.hung]) release(err);
  }

  private noise(amplitude: number): number {
    return (this.random() * 2 - 1) * amplitude;
  }

  private readDevice(index: number, s: DeviceState, activity: GpuActivity, na: boolean): GpuDevice {
    const m = this.model;
    const profile = loadProfileFor(activity);
    const idleMiB = Math.round(m.memoryMiB * 0.0006) + 1;
    const jobMiB = Math.round((m.memoryMiB - m.reservedMiB) * profile.memoryShare);
    // Memory climbs over a few samples as weights load, and is released faster than it was taken.
    const targetMiB = Math.max(idleMiB, jobMiB, activity.jobActive ? s.usedMiB : 0);
    const rate = targetMiB >= s.usedMiB ? 0.35 : 0.7;
    s.usedMiB = Math.round(s.usedMiB + (targetMiB - s.usedMiB) * rate);
    if (!activity.jobActive && s.usedMiB - idleMiB < 4) s.usedMiB = idleMiB;

    s.gpuPercent = clamp(Math.round(profile.gpuPercent + this.noise(activity.jobActive ? 2.5 : 2)), 0, 100);
    const load = s.gpuPercent / 100;
    const targetPower = m.idlePowerW + (m.powerLimitW - m.idlePowerW) * load * 0.9;
    s.powerW = clamp(
      s.powerW + (targetPower - s.powerW) * 0.6 + this.noise(m.powerLimitW * 0.01),
      1,
      m.powerLimitW,
    );
    const at = this.clock.now();
    // Energy integrates power over the time between samples, as the driver's counter does.
    if (s.lastAt !== undefined) s.energyJ += (s.powerW * Math.max(0, at - s.lastAt)) / 1000;
    s.lastAt = at;
    const targetTemp =
      m.idleTempC + (m.maxTempC - m.idleTempC) * ((s.powerW - m.idlePowerW) / (m.powerLimitW - m.idlePowerW));
    s.tempC = s.tempC + (targetTemp - s.tempC) * 0.15;

    const usedBytes = s.usedMiB * MIB;
    const totalBytes = m.memoryMiB * MIB;
    const reservedBytes = m.reservedMiB * MIB;
    const processes: GpuProcess[] = [];
    const procs = activity.jobActive ? (activity.processes ?? []) : [];
    const jobBytes = Math.max(0, usedBytes - idleMiB * MIB);
    for (const p of procs) {
      processes.push({
        pid: p.pid,
        name: p.name,
        type: 'C',
        usedBytes: na ? undefined : Math.floor(jobBytes / procs.length / MIB) * MIB,
      });
    }

    const busy = s.gpuPercent > 5;
    const throttleReasons: string[] = [];
    if (!busy) throttleReasons.push('gpu_idle');
    else if (s.powerW > m.powerLimitW * 0.97) throttleReasons.push('sw_power_cap');

    return {
      index,
      uuid: this.uuids[index] as string,
      name: m.name,
      pciBusId: `00000000:${(0x18 + index * 0x10).toString(16).toUpperCase().padStart(2, '0')}:00.0`,
      memory: {
        totalBytes,
        usedBytes,
        freeBytes: totalBytes - reservedBytes - usedBytes,
        reservedBytes,
      },
      utilization: na
        ? {}
        : { gpuPercent: s.gpuPercent, memoryPercent: Math.round(profile.memPercent * load) },
      temperatureC: na ? undefined : Math.round(s.tempC),
      powerW: na ? undefined : Math.round(s.powerW * 100) / 100,
      powerLimitW: na ? undefined : m.powerLimitW,
      smClockMHz: na ? undefined : busy ? m.maxSmClockMHz : m.idleSmClockMHz,
      memClockMHz: na ? undefined : m.memClockMHz,
      throttleReasons: na ? undefined : throttleReasons,
      eccErrors: na ? undefined : { corrected: 0, uncorrected: 0 },
      xidErrors: { total: 0, byXid: {} },
      mig: { enabled: false, instances: [] },
      processes,
      performanceState: busy ? 'P0' : 'P8',
      maxSmClockMHz: m.maxSmClockMHz,
      maxMemClockMHz: m.memClockMHz,
      encoderPercent: na ? undefined : 0,
      decoderPercent: na ? undefined : 0,
      energyJoules: na ? undefined : Math.round(s.energyJ * 1000) / 1000,
    };
  }
}

function clamp(v: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, v));
}

function mockUuid(random: () => number): string {
  const hex = (n: number): string =>
    Array.from({ length: n }, () => Math.floor(random() * 16).toString(16)).join('');
  return `GPU-${hex(8)}-${hex(4)}-${hex(4)}-${hex(4)}-${hex(12)}`;
}
