import { clockReasonNames } from '../clock-reasons.js';
import type { GpuDevice, GpuProfiling } from '../types.js';

const MIB = 1024 * 1024;

/** Where a DCGM field lands in a `GpuDevice`. */
export type DcgmFieldTarget =
  | 'utilization.gpuPercent'
  | 'utilization.memoryPercent'
  | 'memory.totalBytes'
  | 'memory.freeBytes'
  | 'memory.usedBytes'
  | 'memory.reservedBytes'
  | 'temperatureC'
  | 'memoryTemperatureC'
  | 'powerW'
  | 'powerLimitW'
  | 'enforcedPowerLimitW'
  | 'energyJoules'
  | 'smClockMHz'
  | 'memClockMHz'
  | 'maxSmClockMHz'
  | 'maxMemClockMHz'
  | 'throttleReasons'
  | 'performanceState'
  | 'fanPercent'
  | 'encoderPercent'
  | 'decoderPercent'
  | 'xid'
  | 'eccErrors.corrected'
  | 'eccErrors.uncorrected'
  | 'mig.enabled'
  | 'pcie.txBytesPerSecond'
  | 'pcie.rxBytesPerSecond'
  | 'pcie.linkGeneration'
  | 'pcie.linkWidth'
  | 'profiling.grEngineActiveRatio'
  | 'profiling.smActiveRatio'
  | 'profiling.smOccupancyRatio'
  | 'profiling.tensorActiveRatio'
  | 'profiling.dramActiveRatio'
  | 'profiling.pcieTxBytesPerSecond'
  | 'profiling.pcieRxBytesPerSecond';

export interface DcgmField {
  /** The numeric field id `dcgmi dmon -e` takes. */
  readonly id: number;
  /** The `dcgm_fields.h` macro, which dcgm-exporter also uses as the metric name. */
  readonly name: string;
  /** Names DCGM 4.6 gave the same id; the old macros stay as aliases there. */
  readonly aliases?: readonly string[];
  /** Column title in `dcgmi dmon` output. */
  readonly shortName: string;
  /** Unit DCGM reports the value in. */
  readonly unit: string;
  readonly target: DcgmFieldTarget;
  /** Factor from DCGM's unit to the `GpuDevice` unit. @defaultValue 1 */
  readonly scale?: number;
  /**
   * Under MIG, DCGM reports `instance` fields per GPU or compute instance (their figures are the
   * instance's own), and `gpu` fields once more for each instance with the whole GPU's value.
   * From the entity level in `dcgm_fields.cpp`. @defaultValue 'gpu'
   */
  readonly level?: 'gpu' | 'instance';
  /**
   * DCGM reports 0 where the GPU has no such sensor instead of a blank (NVIDIA/DCGM PR #311: memory
   * temperature on L4 and other GDDR boards, whose nvidia-smi says N/A).
   */
  readonly zeroMeansUnsupported?: boolean;
}

/**
 * The DCGM fields this library maps, checked against `dcgmlib/dcgm_fields.h` (ids) and
 * `dcgmlib/src/dcgm_fields.cpp` (dmon short names), which agree between DCGM 3.3.5 and 4.6.
 */
export const DCGM_FIELDS: readonly DcgmField[] = [
  { id: 67, name: 'DCGM_FI_DEV_MIG_MODE', shortName: 'MGMOD', unit: 'bool', target: 'mig.enabled' },
  { id: 100, name: 'DCGM_FI_DEV_SM_CLOCK', shortName: 'SMCLK', unit: 'MHz', target: 'smClockMHz' },
  { id: 101, name: 'DCGM_FI_DEV_MEM_CLOCK', shortName: 'MMCLK', unit: 'MHz', target: 'memClockMHz' },
  {
    id: 112,
    name: 'DCGM_FI_DEV_CLOCK_THROTTLE_REASONS',
    aliases: ['DCGM_FI_DEV_CLOCKS_EVENT_REASONS'],
    shortName: 'DVCCTR',
    unit: 'bitmask',
    target: 'throttleReasons',
  },
  { id: 113, name: 'DCGM_FI_DEV_MAX_SM_CLOCK', shortName: 'SMMAX', unit: 'MHz', target: 'maxSmClockMHz' },
  { id: 114, name: 'DCGM_FI_DEV_MAX_MEM_CLOCK', shortName: 'MMMAX', unit: 'MHz', target: 'maxMemClockMHz' },
  {
    id: 140,
    name: 'DCGM_FI_DEV_MEMORY_TEMP',
    aliases: ['DCGM_FI_DEV_MEMORY_TEMP_CELSIUS'],
    shortName: 'MMTMP',
    unit: 'C',
    target: 'memoryTemperatureC',
    zeroMeansUnsupported: true,
  },
  {
    id: 150,
    name: 'DCGM_FI_DEV_GPU_TEMP',
    aliases: ['DCGM_FI_DEV_GPU_TEMP_CELSIUS'],
    shortName: 'TMPTR',
    unit: 'C',
    target: 'temperatureC',
  },
  {
    id: 155,
    name: 'DCGM_FI_DEV_POWER_USAGE',
    aliases: ['DCGM_FI_DEV_BOARD_POWER_WATTS'],
    shortName: 'POWER',
    unit: 'W',
    target: 'powerW',
  },
  {
    id: 156,
    name: 'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION',
    shortName: 'TOTEC',
    unit: 'mJ',
    target: 'energyJoules',
    scale: 1e-3,
  },
  {
    id: 160,
    name: 'DCGM_FI_DEV_POWER_MGMT_LIMIT',
    aliases: ['DCGM_FI_DEV_BOARD_POWER_LIMIT_REQUESTED_WATTS'],
    shortName: 'PMLMT',
    unit: 'W',
    target: 'powerLimitW',
  },
  {
    id: 164,
    name: 'DCGM_FI_DEV_ENFORCED_POWER_LIMIT',
    aliases: ['DCGM_FI_DEV_BOARD_POWER_LIMIT_ENFORCED_WATTS'],
    shortName: 'EPLMT',
    unit: 'W',
    target: 'enforcedPowerLimitW',
  },
  {
    id: 190,
    name: 'DCGM_FI_DEV_PSTATE',
    aliases: ['DCGM_FI_DEV_GPU_PSTATE'],
    shortName: 'PSTAT',
    unit: 'P-state',
    target: 'performanceState',
  },
  { id: 191, name: 'DCGM_FI_DEV_FAN_SPEED', shortName: 'FANSP', unit: '%', target: 'fanPercent' },
  // NVML's PCIe throughput counters are KB/s with KB = 1024 bytes.
  {
    id: 200,
    name: 'DCGM_FI_DEV_PCIE_TX_THROUGHPUT',
    shortName: 'TXTPT',
    unit: 'KB/s',
    target: 'pcie.txBytesPerSecond',
    scale: 1024,
  },
  {
    id: 201,
    name: 'DCGM_FI_DEV_PCIE_RX_THROUGHPUT',
    shortName: 'RXTPT',
    unit: 'KB/s',
    target: 'pcie.rxBytesPerSecond',
    scale: 1024,
  },
  {
    id: 203,
    name: 'DCGM_FI_DEV_GPU_UTIL',
    aliases: ['DCGM_FI_DEV_GPU_UTIL_RATIO'],
    shortName: 'GPUTL',
    unit: '%',
    target: 'utilization.gpuPercent',
  },
  {
    id: 204,
    name: 'DCGM_FI_DEV_MEM_COPY_UTIL',
    shortName: 'MCUTL',
    unit: '%',
    target: 'utilization.memoryPercent',
  },
  { id: 206, name: 'DCGM_FI_DEV_ENC_UTIL', shortName: 'ECUTL', unit: '%', target: 'encoderPercent' },
  { id: 207, name: 'DCGM_FI_DEV_DEC_UTIL', shortName: 'DCUTL', unit: '%', target: 'decoderPercent' },
  // DCGM files XIDs under compute instances, but an XID is the whole GPU's event; MigInstance has no
  // room for one, so under MIG it goes to the parent GPU.
  {
    id: 230,
    name: 'DCGM_FI_DEV_XID_ERRORS',
    aliases: ['DCGM_FI_DEV_XID_ERROR'],
    shortName: 'XIDER',
    unit: 'xid',
    target: 'xid',
  },
  {
    id: 237,
    name: 'DCGM_FI_DEV_PCIE_LINK_GEN',
    shortName: 'PCILG',
    unit: 'gen',
    target: 'pcie.linkGeneration',
  },
  {
    id: 238,
    name: 'DCGM_FI_DEV_PCIE_LINK_WIDTH',
    shortName: 'PCILW',
    unit: 'lanes',
    target: 'pcie.linkWidth',
  },
  // DCGM's framebuffer fields say MB; they are MiB, like nvidia-smi's.
  {
    id: 250,
    name: 'DCGM_FI_DEV_FB_TOTAL',
    shortName: 'FBTTL',
    unit: 'MiB',
    target: 'memory.totalBytes',
    level: 'instance',
    scale: MIB,
  },
  {
    id: 251,
    name: 'DCGM_FI_DEV_FB_FREE',
    shortName: 'FBFRE',
    unit: 'MiB',
    target: 'memory.freeBytes',
    level: 'instance',
    scale: MIB,
  },
  {
    id: 252,
    name: 'DCGM_FI_DEV_FB_USED',
    shortName: 'FBUSD',
    unit: 'MiB',
    target: 'memory.usedBytes',
    level: 'instance',
    scale: MIB,
  },
  {
    id: 253,
    name: 'DCGM_FI_DEV_FB_RESERVED',
    shortName: 'FBRSV',
    unit: 'MiB',
    target: 'memory.reservedBytes',
    level: 'instance',
    scale: MIB,
  },
  {
    id: 310,
    name: 'DCGM_FI_DEV_ECC_SBE_VOL_TOTAL',
    shortName: 'ESVTL',
    unit: 'errors',
    target: 'eccErrors.corrected',
  },
  {
    id: 311,
    name: 'DCGM_FI_DEV_ECC_DBE_VOL_TOTAL',
    shortName: 'EDVTL',
    unit: 'errors',
    target: 'eccErrors.uncorrected',
  },
  {
    id: 1001,
    name: 'DCGM_FI_PROF_GR_ENGINE_ACTIVE',
    aliases: ['DCGM_FI_PROF_GR_ENGINE_UTIL_RATIO'],
    shortName: 'GRACT',
    unit: 'ratio',
    target: 'profiling.grEngineActiveRatio',
    level: 'instance',
  },
  {
    id: 1002,
    name: 'DCGM_FI_PROF_SM_ACTIVE',
    aliases: ['DCGM_FI_PROF_SM_UTIL_RATIO'],
    shortName: 'SMACT',
    unit: 'ratio',
    target: 'profiling.smActiveRatio',
    level: 'instance',
  },
  {
    id: 1003,
    name: 'DCGM_FI_PROF_SM_OCCUPANCY',
    aliases: ['DCGM_FI_PROF_SM_OCCUPANCY_RATIO'],
    shortName: 'SMOCC',
    unit: 'ratio',
    target: 'profiling.smOccupancyRatio',
    level: 'instance',
  },
  {
    id: 1004,
    name: 'DCGM_FI_PROF_PIPE_TENSOR_ACTIVE',
    aliases: ['DCGM_FI_PROF_TENSOR_UTIL_RATIO'],
    shortName: 'TENSO',
    unit: 'ratio',
    target: 'profiling.tensorActiveRatio',
    level: 'instance',
  },
  {
    id: 1005,
    name: 'DCGM_FI_PROF_DRAM_ACTIVE',
    aliases: ['DCGM_FI_PROF_DRAM_UTIL_RATIO'],
    shortName: 'DRAMA',
    unit: 'ratio',
    target: 'profiling.dramActiveRatio',
    level: 'instance',
  },
  {
    id: 1009,
    name: 'DCGM_FI_PROF_PCIE_TX_BYTES',
    shortName: 'PCITX',
    unit: 'B/s',
    target: 'profiling.pcieTxBytesPerSecond',
  },
  {
    id: 1010,
    name: 'DCGM_FI_PROF_PCIE_RX_BYTES',
    shortName: 'PCIRX',
    unit: 'B/s',
    target: 'profiling.pcieRxBytesPerSecond',
  },
];

export const DCGM_FIELDS_BY_ID: ReadonlyMap<number, DcgmField> = new Map(DCGM_FIELDS.map((f) => [f.id, f]));

export const DCGM_FIELDS_BY_NAME: ReadonlyMap<string, DcgmField> = new Map(
  DCGM_FIELDS.flatMap((f) => [f.name, ...(f.aliases ?? [])].map((n) => [n, f] as const)),
);

export const DCGM_FIELDS_BY_SHORT_NAME: ReadonlyMap<string, DcgmField> = new Map(
  DCGM_FIELDS.map((f) => [f.shortName, f]),
);

/** Profiling (DCP) field ids. A GPU without profiling support makes `dcgmi dmon` refuse the whole list. */
export const DCGM_PROFILING_FIELD_IDS: readonly number[] = DCGM_FIELDS.filter((f) =>
  f.target.startsWith('profiling.'),
).map((f) => f.id);

/**
 * What `dcgmi dmon` watches unless told otherwise: the readings the agent shows and exports. Each field
 * is one more watch in the host engine, so the rarely used ones in the table stay opt-in.
 */
export const DEFAULT_DMON_FIELD_IDS: readonly number[] = [
  203, 204, 250, 251, 252, 253, 150, 140, 155, 160, 100, 101, 156, 230, 112, 190, 310, 311, 1001, 1002, 1003,
  1004, 1005, 1009, 1010,
];

/**
 * DCGM marks missing values with sentinels at the top of each type's range (DCGM_FP64_BLANK = 2^47 and
 * above, the int64 ones far higher); every real reading mapped here is far below.
 */
const DCGM_FP64_BLANK = 140737488355328;

/** A DCGM number as a reading, or undefined for DCGM's blank/not-supported sentinels. */
export function dcgmNumber(value: number | undefined): number | undefined {
  if (value === undefined || !Number.isFinite(value) || value >= DCGM_FP64_BLANK) return undefined;
  return value;
}

/** DCGM prints `<<<NULL>>>`, `<<<NOT_SUPPORTED>>>` and the like for blank strings. */
export function dcgmString(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  if (v === '' || v === 'N/A' || /^<<<[A-Z_]+>>>$/.test(v)) return undefined;
  return v;
}

/** Who a set of values belongs to. Unknown name or UUID stay empty strings: the type requires strings. */
export interface DcgmDeviceIdentity {
  index: number;
  uuid?: string;
  name?: string;
  pciBusId?: string;
}

/** DCGM values keyed by field id, in DCGM's units. */
export type DcgmValues = ReadonlyMap<number, number>;

/** Readings keyed by where they go, already in `GpuDevice` units; fields this table lacks are dropped. */
export type DcgmReadings = Partial<Record<DcgmFieldTarget, number>>;

export function dcgmReadings(values: DcgmValues): DcgmReadings {
  const out: DcgmReadings = {};
  for (const [id, raw] of values) {
    const field = DCGM_FIELDS_BY_ID.get(id);
    const v = dcgmNumber(raw);
    if (!field || v === undefined || (v === 0 && field.zeroMeansUnsupported)) continue;
    out[field.target] = v * (field.scale ?? 1);
  }
  return out;
}

/** `obj` without its undefined properties, or undefined when none is left. */
function defined<T extends object>(obj: T): T | undefined {
  const entries = Object.entries(obj).filter(([, v]) => v !== undefined);
  return entries.length ? (Object.fromEntries(entries) as T) : undefined;
}

export function dcgmProfiling(r: DcgmReadings): GpuProfiling | undefined {
  return defined<GpuProfiling>({
    grEngineActiveRatio: r['profiling.grEngineActiveRatio'],
    smActiveRatio: r['profiling.smActiveRatio'],
    smOccupancyRatio: r['profiling.smOccupancyRatio'],
    tensorActiveRatio: r['profiling.tensorActiveRatio'],
    dramActiveRatio: r['profiling.dramActiveRatio'],
    pcieTxBytesPerSecond: r['profiling.pcieTxBytesPerSecond'],
    pcieRxBytesPerSecond: r['profiling.pcieRxBytesPerSecond'],
  });
}

/**
 * Memory from DCGM's framebuffer fields. dcgm-exporter's default counters carry free/used/reserved but
 * not total, so a missing figure is derived from the other three. The type has no room for "unknown";
 * NaN is the honest stand-in (JSON writes it as null, the metrics registry skips non-finite values).
 */
export function dcgmMemory(r: DcgmReadings): GpuDevice['memory'] {
  const reservedBytes = r['memory.reservedBytes'];
  const reserved = reservedBytes ?? 0;
  let totalBytes = r['memory.totalBytes'];
  let usedBytes = r['memory.usedBytes'];
  let freeBytes = r['memory.freeBytes'];
  if (totalBytes === undefined && usedBytes !== undefined && freeBytes !== undefined) {
    totalBytes = usedBytes + freeBytes + reserved;
  }
  if (usedBytes === undefined && totalBytes !== undefined && freeBytes !== undefined) {
    usedBytes = Math.max(0, totalBytes - freeBytes - reserved);
  }
  if (freeBytes === undefined && totalBytes !== undefined && usedBytes !== undefined) {
    freeBytes = Math.max(0, totalBytes - usedBytes - reserved);
  }
  return {
    totalBytes: totalBytes ?? NaN,
    usedBytes: usedBytes ?? NaN,
    freeBytes: freeBytes ?? NaN,
    ...(reservedBytes !== undefined ? { reservedBytes } : {}),
  };
}

type ScalarKey =
  | 'temperatureC'
  | 'memoryTemperatureC'
  | 'powerW'
  | 'energyJoules'
  | 'smClockMHz'
  | 'memClockMHz'
  | 'maxSmClockMHz'
  | 'maxMemClockMHz'
  | 'fanPercent'
  | 'encoderPercent'
  | 'decoderPercent';

const SCALARS: readonly ScalarKey[] = [
  'temperatureC',
  'memoryTemperatureC',
  'powerW',
  'energyJoules',
  'smClockMHz',
  'memClockMHz',
  'maxSmClockMHz',
  'maxMemClockMHz',
  'fanPercent',
  'encoderPercent',
  'decoderPercent',
];

/**
 * One `GpuDevice` from DCGM values. `seenAt` stamps an XID code, since DCGM gives the code but not
 * when it happened.
 */
export function dcgmDevice(identity: DcgmDeviceIdentity, values: DcgmValues, seenAt: number): GpuDevice {
  const r = dcgmReadings(values);
  const device: GpuDevice = {
    index: identity.index,
    uuid: identity.uuid ?? '',
    name: identity.name ?? '',
    memory: dcgmMemory(r),
    utilization:
      defined({ gpuPercent: r['utilization.gpuPercent'], memoryPercent: r['utilization.memoryPercent'] }) ??
      {},
    processes: [],
  };
  if (identity.pciBusId !== undefined) device.pciBusId = identity.pciBusId;
  for (const key of SCALARS) {
    const v = r[key];
    if (v !== undefined) device[key] = v;
  }
  const powerLimitW = r.powerLimitW ?? r.enforcedPowerLimitW;
  if (powerLimitW !== undefined) device.powerLimitW = powerLimitW;
  const reasons = r.throttleReasons;
  if (reasons !== undefined && Number.isSafeInteger(reasons))
    device.throttleReasons = clockReasonNames(reasons);
  const pstate = r.performanceState;
  // NVML uses 32 for "unknown"; real P-states are 0–15.
  if (pstate !== undefined && Number.isInteger(pstate) && pstate >= 0 && pstate <= 15) {
    device.performanceState = `P${pstate}`;
  }
  const ecc = defined({ corrected: r['eccErrors.corrected'], uncorrected: r['eccErrors.uncorrected'] });
  if (ecc) device.eccErrors = ecc;
  const pcie = defined({
    linkGeneration: r['pcie.linkGeneration'],
    linkWidth: r['pcie.linkWidth'],
    txBytesPerSecond: r['pcie.txBytesPerSecond'],
    rxBytesPerSecond: r['pcie.rxBytesPerSecond'],
  });
  if (pcie) device.pcie = pcie;
  const migMode = r['mig.enabled'];
  if (migMode !== undefined) device.mig = { enabled: migMode === 1, instances: [] };
  const xid = r.xid;
  // DCGM keeps only the newest XID code, never how many happened: counts stay empty rather than guessed.
  if (xid !== undefined && xid > 0) device.xidErrors = { total: 0, byXid: {}, last: { xid, at: seenAt } };
  const profiling = dcgmProfiling(r);
  if (profiling) device.profiling = profiling;
  return device;
}
