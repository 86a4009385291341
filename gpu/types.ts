/**
 * The data every GPU backend produces. Units live in names; a reading the device or driver does not
 * support is `undefined`, never 0, so consumers can tell "idle" from "unknown".
 */

export type BackendName = 'nvml' | 'nvidia-smi' | 'dcgm' | 'mock';

export interface GpuMemory {
  totalBytes: number;
  usedBytes: number;
  freeBytes: number;
  /** Memory the driver keeps for itself; NVML v2 reports it apart from `usedBytes`. */
  reservedBytes?: number;
}

export interface GpuUtilization {
  gpuPercent?: number;
  /** Memory-controller busy time, not memory occupancy. */
  memoryPercent?: number;
}

export interface GpuProcess {
  pid: number;
  name: string;
  /** Undefined when the driver hides it (WDDM on Windows, some MIG setups). */
  usedBytes?: number;
  /** `C` compute, `G` graphics, `C+G` both, as nvidia-smi reports it. */
  type?: string;
}

export interface MigInstance {
  gpuInstanceId: number;
  computeInstanceId?: number;
  /** Profile name such as `3g.40gb`, when the source gives it. */
  profile?: string;
  uuid?: string;
  /** Index of the MIG device within its parent GPU, as nvidia-smi numbers them. */
  index?: number;
  smCount?: number;
  memory?: { totalBytes: number; usedBytes: number; freeBytes?: number };
  /** Per-instance activity, from DCGM profiling fields. */
  profiling?: GpuProfiling;
}

/**
 * DCGM profiling metrics, as ratios 0–1. Under MIG these are the only utilization figures that mean
 * anything per instance.
 */
export interface GpuProfiling {
  grEngineActiveRatio?: number;
  smActiveRatio?: number;
  smOccupancyRatio?: number;
  tensorActiveRatio?: number;
  dramActiveRatio?: number;
  pcieTxBytesPerSecond?: number;
  pcieRxBytesPerSecond?: number;
}

export interface XidRecord {
  xid: number;
  /** Epoch milliseconds. */
  at: number;
}

export interface GpuDevice {
  index: number;
  uuid: string;
  name: string;
  pciBusId?: string;
  memory: GpuMemory;
  utilization: GpuUtilization;
  temperatureC?: number;
  powerW?: number;
  powerLimitW?: number;
  smClockMHz?: number;
  memClockMHz?: number;
  /** Active clock-event (throttle) reasons as short snake_case names, e.g. `sw_power_cap`. */
  throttleReasons?: string[];
  eccErrors?: { corrected?: number; uncorrected?: number };
  /** XID errors seen since the agent started, counted per code. */
  xidErrors?: { total: number; byXid: Record<string, number>; last?: XidRecord };
  mig?: { enabled: boolean; instances: MigInstance[] };
  processes: GpuProcess[];
  serial?: string;
  vbiosVersion?: string;
  /** `P0`–`P12`. */
  performanceState?: string;
  fanPercent?: number;
  memoryTemperatureC?: number;
  encoderPercent?: number;
  decoderPercent?: number;
  maxSmClockMHz?: number;
  maxMemClockMHz?: number;
  /** Energy since the driver loaded, in joules. */
  energyJoules?: number;
  pcie?: {
    linkGeneration?: number;
    linkWidth?: number;
    txBytesPerSecond?: number;
    rxBytesPerSecond?: number;
  };
  profiling?: GpuProfiling;
}

export interface GpuSample {
  /** Epoch milliseconds when the reading was taken. */
  takenAt: number;
  driverVersion?: string;
  cudaVersion?: string;
  devices: GpuDevice[];
  /**
   * The source's own full report when it has one (nvidia-smi `-q -x` as parsed JSON), for views that
   * show everything the driver said. Not used for figures.
   */
  detail?: { format: string; data: unknown };
}

/** One source of GPU readings. The poller around it owns timing, timeouts, backoff and up/down state. */
export interface GpuBackend {
  readonly name: BackendName;
  /** Takes one reading. Must stop work and reject when `signal` aborts. */
  sample(signal: AbortSignal): Promise<GpuSample>;
  close(): Promise<void>;
}

/** The smallest logger the GPU library needs; pino loggers satisfy it. */
export interface GpuLogger {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export const silentLogger: GpuLogger = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
};

/** Injected time, so tests and the agent share one code path. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    // A pending poll must never keep the process alive on its own.
    t.unref();
    return t;
  },
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};
