/**
 * NVML through koffi. Loaded only inside worker threads: every call here may block for as long as the
 * driver likes. Each export is probed before it is bound, so a library from an older (or newer) driver
 * that lacks a symbol gives a reading that is undefined instead of a crash, and the newest variant of a
 * versioned call is preferred over its predecessors.
 *
 * Layouts and signatures follow nvml.h as NVIDIA ships it (e.g. NVIDIA/go-nvml gen/nvml/nvml.h).
 */
import koffi from 'koffi';
import type { LibraryHandle, TypeObject } from 'koffi';

/** nvmlReturn_t values the backend acts on. */
export const NVML = {
  SUCCESS: 0,
  ERROR_UNINITIALIZED: 1,
  ERROR_INVALID_ARGUMENT: 2,
  ERROR_NOT_SUPPORTED: 3,
  ERROR_NO_PERMISSION: 4,
  ERROR_NOT_FOUND: 6,
  ERROR_INSUFFICIENT_SIZE: 7,
  ERROR_DRIVER_NOT_LOADED: 9,
  ERROR_TIMEOUT: 10,
  ERROR_LIBRARY_NOT_FOUND: 12,
  ERROR_FUNCTION_NOT_FOUND: 13,
  ERROR_GPU_IS_LOST: 15,
  ERROR_LIB_RM_VERSION_MISMATCH: 18,
  ERROR_UNKNOWN: 999,
} as const;

export const NVML_CLOCK_SM = 1;
export const NVML_CLOCK_MEM = 2;
export const NVML_MEMORY_ERROR_TYPE_CORRECTED = 0;
export const NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1;
export const NVML_AGGREGATE_ECC = 1;
export const NVML_PCIE_UTIL_TX_BYTES = 0;
export const NVML_PCIE_UTIL_RX_BYTES = 1;
export const NVML_TEMPERATURE_GPU = 0;
export const NVML_FI_DEV_MEMORY_TEMP = 82;
export const NVML_DEVICE_MIG_ENABLE = 1;
export const NVML_EVENT_TYPE_XID_CRITICAL_ERROR = 0x8n;
/** gpuInstanceId / computeInstanceId when the value does not apply (no MIG). */
export const NVML_INVALID_ID = 0xffffffff;
/** usedGpuMemory when the driver does not know it (WDDM, some MIG setups): NVML_VALUE_NOT_AVAILABLE. */
export const NVML_VALUE_NOT_AVAILABLE_ULL = 0xffffffffffffffffn;

/** Buffer sizes from nvml.h (the _V2 sizes where there are two: they are the larger). */
const NAME_BUFFER = 96;
const UUID_BUFFER = 96;
const SERIAL_BUFFER = 30;
const VBIOS_BUFFER = 32;
const DRIVER_VERSION_BUFFER = 80;
const PROCESS_NAME_BUFFER = 256;

/** Handles are opaque pointers; koffi 3 represents pointers as bigint. */
export type NvmlHandle = bigint;

export type NvmlResult<T> = { ok: true; value: T } | { ok: false; code: number };

export interface NvmlMemoryInfo {
  total: number;
  free: number;
  used: number;
  /** Only from nvmlDeviceGetMemoryInfo_v2; v1 counts this inside `used`. */
  reserved?: number;
}

export interface NvmlProcessInfo {
  pid: number;
  /** Undefined when NVML reports NVML_VALUE_NOT_AVAILABLE. */
  usedBytes?: number;
  gpuInstanceId?: number;
  computeInstanceId?: number;
}

export interface NvmlEvent {
  device: NvmlHandle;
  eventType: bigint;
  eventData: bigint;
  gpuInstanceId?: number;
}

/** Which export each capability is bound to, or null where the library has none. */
export type NvmlSymbolChoice = Record<string, string | null>;

/** The calls the readers use. Calls whose export is missing answer ERROR_FUNCTION_NOT_FOUND. */
export interface NvmlBindings {
  readonly symbols: NvmlSymbolChoice;
  readonly hasEvents: boolean;
  errorString(code: number): string;
  init(): number;
  shutdown(): number;
  driverVersion(): NvmlResult<string>;
  cudaDriverVersion(): NvmlResult<number>;
  processName(pid: number): NvmlResult<string>;
  deviceCount(): NvmlResult<number>;
  handleByIndex(index: number): NvmlResult<NvmlHandle>;
  name(h: NvmlHandle): NvmlResult<string>;
  uuid(h: NvmlHandle): NvmlResult<string>;
  serial(h: NvmlHandle): NvmlResult<string>;
  vbiosVersion(h: NvmlHandle): NvmlResult<string>;
  pciBusId(h: NvmlHandle): NvmlResult<string>;
  memory(h: NvmlHandle): NvmlResult<NvmlMemoryInfo>;
  utilization(h: NvmlHandle): NvmlResult<{ gpu: number; memory: number }>;
  encoderUtilization(h: NvmlHandle): NvmlResult<number>;
  decoderUtilization(h: NvmlHandle): NvmlResult<number>;
  temperature(h: NvmlHandle): NvmlResult<number>;
  memoryTemperature(h: NvmlHandle): NvmlResult<number>;
  /** Milliwatts. */
  powerUsage(h: NvmlHandle): NvmlResult<number>;
  /** Milliwatts. */
  enforcedPowerLimit(h: NvmlHandle): NvmlResult<number>;
  /** Millijoules since the driver loaded. */
  totalEnergy(h: NvmlHandle): NvmlResult<number>;
  clock(h: NvmlHandle, type: number): NvmlResult<number>;
  maxClock(h: NvmlHandle, type: number): NvmlResult<number>;
  clockReasons(h: NvmlHandle): NvmlResult<bigint>;
  totalEccErrors(h: NvmlHandle, errorType: number): NvmlResult<number>;
  performanceState(h: NvmlHandle): NvmlResult<number>;
  fanSpeed(h: NvmlHandle): NvmlResult<number>;
  pcieLinkGeneration(h: NvmlHandle): NvmlResult<number>;
  pcieLinkWidth(h: NvmlHandle): NvmlResult<number>;
  /** KB/s over NVML's 20 ms window. */
  pcieThroughput(h: NvmlHandle, counter: number): NvmlResult<number>;
  migMode(h: NvmlHandle): NvmlResult<number>;
  maxMigDeviceCount(h: NvmlHandle): NvmlResult<number>;
  migDeviceHandle(h: NvmlHandle, index: number): NvmlResult<NvmlHandle>;
  gpuInstanceId(h: NvmlHandle): NvmlResult<number>;
  computeInstanceId(h: NvmlHandle): NvmlResult<number>;
  computeProcesses(h: NvmlHandle): NvmlResult<NvmlProcessInfo[]>;
  eventSetCreate(): NvmlResult<bigint>;
  registerEvents(h: NvmlHandle, types: bigint, set: bigint): number;
  eventSetWait(set: bigint, timeoutMs: number): NvmlResult<NvmlEvent>;
  eventSetFree(set: bigint): number;
}

export class NvmlLoadError extends Error {
  override readonly name = 'NvmlLoadError';
}

// Types are module-level: each worker evaluates this module once, and koffi rejects a second
// definition of a named type.
const Device = koffi.pointer('nvmlDevice_t', koffi.opaque('nvmlDevice_st'));
const EventSet = koffi.pointer('nvmlEventSet_t', koffi.opaque('nvmlEventSet_st'));
const ULL = 'unsigned long long';

const PciInfo = koffi.struct('nvmlPciInfo_t', {
  busIdLegacy: koffi.array('char', 16, 'String'),
  domain: 'unsigned int',
  bus: 'unsigned int',
  device: 'unsigned int',
  pciDeviceId: 'unsigned int',
  pciSubSystemId: 'unsigned int',
  busId: koffi.array('char', 32, 'String'),
});
const Utilization = koffi.struct('nvmlUtilization_t', { gpu: 'unsigned int', memory: 'unsigned int' });
const Memory = koffi.struct('nvmlMemory_t', { total: ULL, free: ULL, used: ULL });
const MemoryV2 = koffi.struct('nvmlMemory_v2_t', {
  version: 'unsigned int',
  total: ULL,
  reserved: ULL,
  free: ULL,
  used: ULL,
});
const ProcessInfoV1 = koffi.struct('nvmlProcessInfo_v1_t', { pid: 'unsigned int', usedGpuMemory: ULL });
const ProcessInfoV2 = koffi.struct('nvmlProcessInfo_v2_t', {
  pid: 'unsigned int',
  usedGpuMemory: ULL,
  gpuInstanceId: 'unsigned int',
  computeInstanceId: 'unsigned int',
});
const TemperatureV1 = koffi.struct('nvmlTemperature_v1_t', {
  version: 'unsigned int',
  sensorType: 'int',
  temperature: 'int',
});
/**
 * nvmlFieldValue_t. Its last member is the nvmlValue_t union (8 bytes, 8-aligned); koffi cannot decode
 * an output union inside a struct, so the struct only gives the layout and a Buffer carries the data.
 */
const FieldValue = koffi.struct('nvmlFieldValue_t', {
  fieldId: 'unsigned int',
  scopeId: 'unsigned int',
  timestamp: 'long long',
  latencyUsec: 'long long',
  valueType: 'int',
  nvmlReturn: 'int',
  value: ULL,
});
/** nvmlEventSetWait (v1) filled only the first three members; the buffer is the v2 size either way. */
const EventData = koffi.struct('nvmlEventData_t', {
  device: Device,
  eventType: ULL,
  eventData: ULL,
  gpuInstanceId: 'unsigned int',
  computeInstanceId: 'unsigned int',
});

/** The struct types as declared to koffi, so their layout can be checked against nvml.h. */
export const NVML_STRUCTS = {
  PciInfo,
  Utilization,
  Memory,
  MemoryV2,
  ProcessInfoV1,
  ProcessInfoV2,
  TemperatureV1,
  FieldValue,
  EventData,
} as const;

/** NVML_STRUCT_VERSION(name, ver): the struct's size with the version in the top byte. */
export function structVersion(type: TypeObject, version: number): number {
  return (koffi.sizeof(type) | (version << 24)) >>> 0;
}

/** nvmlValueType_t → the C type of the nvmlValue_t member it selects. */
const FIELD_VALUE_TYPES: readonly string[] = [
  'double',
  'unsigned int',
  'unsigned long',
  'unsigned long long',
  'long long',
  'int',
  'unsigned short',
];

function toNumber(v: unknown): number {
  return typeof v === 'bigint' ? Number(v) : (v as number);
}

function cString(buf: Buffer): string {
  const end = buf.indexOf(0);
  return buf.toString('utf8', 0, end < 0 ? buf.length : end);
}

const fail = (code: number): { ok: false; code: number } => ({ ok: false, code });
const missing = fail(NVML.ERROR_FUNCTION_NOT_FOUND);

// koffi's bound functions are typed `(...args: any[]) => any`; each is narrowed to its C signature
// right where it is bound, so no `any` reaches the readers.
type Fn<A extends unknown[]> = (...args: A) => number;

/**
 * Loads the library and binds what it exports. Throws NvmlLoadError when the file cannot be loaded or
 * lacks the calls nothing works without (init, shutdown, enumeration).
 */
export function loadNvml(libraryPath: string): NvmlBindings {
  let lib: LibraryHandle;
  try {
    lib = koffi.load(libraryPath);
  } catch (err) {
    throw new NvmlLoadError(
      `cannot load ${libraryPath}: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  const symbols: NvmlSymbolChoice = {};

  /** The first of `names` the library exports, bound with the given signature; null if none is. */
  function bind<A extends unknown[]>(
    purpose: string,
    names: string[],
    result: string,
    args: (string | TypeObject | ReturnType<typeof koffi.out>)[],
  ): Fn<A> | null {
    for (const name of names) {
      try {
        const fn = lib.func(name, result, args) as unknown as Fn<A>;
        symbols[purpose] = name;
        return fn;
      } catch (err) {
        // Only an absent export is expected; a bad type declaration is a bug and must surface.
        if (!(err instanceof Error && /cannot find function/i.test(err.message))) throw err;
      }
    }
    symbols[purpose] = null;
    return null;
  }

  const outU32 = koffi.out(koffi.pointer('unsigned int'));
  const outI32 = koffi.out(koffi.pointer('int'));
  const outU64 = koffi.out(koffi.pointer(ULL));
  const outDevice = koffi.out(koffi.pointer(Device));

  const init = bind<[]>('init', ['nvmlInit_v2', 'nvmlInit'], 'int', []);
  const shutdown = bind<[]>('shutdown', ['nvmlShutdown'], 'int', []);
  const getCount = bind<[number[]]>('deviceCount', ['nvmlDeviceGetCount_v2', 'nvmlDeviceGetCount'], 'int', [
    outU32,
  ]);
  const getHandle = bind<[number, bigint[]]>(
    'handleByIndex',
    ['nvmlDeviceGetHandleByIndex_v2', 'nvmlDeviceGetHandleByIndex'],
    'int',
    ['unsigned int', outDevice],
  );
  if (!init || !shutdown || !getCount || !getHandle) {
    const absent = ['init', 'shutdown', 'deviceCount', 'handleByIndex'].filter((p) => symbols[p] === null);
    throw new NvmlLoadError(`${libraryPath} lacks required NVML calls: ${absent.join(', ')}`);
  }

  let errorStringFn: ((code: number) => string) | null = null;
  try {
    errorStringFn = lib.func('nvmlErrorString', 'const char *', ['int']);
  } catch {
    // Messages fall back to the bare code.
  }

  const strFn = (purpose: string, names: string[]) =>
    bind<[bigint, Buffer, number]>(purpose, names, 'int', [Device, 'char *', 'unsigned int']);
  const u32Fn = (purpose: string, names: string[]) =>
    bind<[bigint, number[]]>(purpose, names, 'int', [Device, outU32]);
  const u32ArgFn = (purpose: string, names: string[]) =>
    bind<[bigint, number, number[]]>(purpose, names, 'int', [Device, 'int', outU32]);

  const driverVersionFn = bind<[Buffer, number]>('driverVersion', ['nvmlSystemGetDriverVersion'], 'int', [
    'char *',
    'unsigned int',
  ]);
  const cudaVersionFn = bind<[number[]]>(
    'cudaDriverVersion',
    ['nvmlSystemGetCudaDriverVersion_v2', 'nvmlSystemGetCudaDriverVersion'],
    'int',
    [outI32],
  );
  const processNameFn = bind<[number, Buffer, number]>('processName', ['nvmlSystemGetProcessName'], 'int', [
    'unsigned int',
    'char *',
    'unsigned int',
  ]);
  const nameFn = strFn('name', ['nvmlDeviceGetName']);
  const uuidFn = strFn('uuid', ['nvmlDeviceGetUUID']);
  const serialFn = strFn('serial', ['nvmlDeviceGetSerial']);
  const vbiosFn = strFn('vbiosVersion', ['nvmlDeviceGetVbiosVersion']);
  const pciFn = bind<[bigint, Record<string, unknown>]>(
    'pciInfo',
    ['nvmlDeviceGetPciInfo_v3', 'nvmlDeviceGetPciInfo_v2', 'nvmlDeviceGetPciInfo'],
    'int',
    [Device, koffi.out(koffi.pointer(PciInfo))],
  );
  // v2 first: v1 counts the driver's reserved memory as used, which overstates what workloads hold.
  const memoryV2Fn = bind<[bigint, Record<string, unknown>]>(
    'memoryV2',
    ['nvmlDeviceGetMemoryInfo_v2'],
    'int',
    [Device, koffi.inout(koffi.pointer(MemoryV2))],
  );
  const memoryV1Fn = memoryV2Fn
    ? null
    : bind<[bigint, Record<string, unknown>]>('memoryV1', ['nvmlDeviceGetMemoryInfo'], 'int', [
        Device,
        koffi.out(koffi.pointer(Memory)),
      ]);
  symbols.memory = symbols.memoryV2 ?? symbols.memoryV1 ?? null;
  delete symbols.memoryV2;
  delete symbols.memoryV1;
  const utilizationFn = bind<[bigint, Record<string, unknown>]>(
    'utilization',
    ['nvmlDeviceGetUtilizationRates'],
    'int',
    [Device, koffi.out(koffi.pointer(Utilization))],
  );
  const encoderFn = bind<[bigint, number[], number[]]>(
    'encoderUtilization',
    ['nvmlDeviceGetEncoderUtilization'],
    'int',
    [Device, outU32, outU32],
  );
  const decoderFn = bind<[bigint, number[], number[]]>(
    'decoderUtilization',
    ['nvmlDeviceGetDecoderUtilization'],
    'int',
    [Device, outU32, outU32],
  );
  // nvmlDeviceGetTemperature is deprecated from CUDA 13 on; TemperatureV replaces it.
  const temperatureVFn = bind<[bigint, Record<string, unknown>]>(
    'temperatureV',
    ['nvmlDeviceGetTemperatureV'],
    'int',
    [Device, koffi.inout(koffi.pointer(TemperatureV1))],
  );
  const temperatureFn = temperatureVFn ? null : u32ArgFn('temperatureV1', ['nvmlDeviceGetTemperature']);
  symbols.temperature = symbols.temperatureV ?? symbols.temperatureV1 ?? null;
  delete symbols.temperatureV;
  delete symbols.temperatureV1;
  const fieldValuesFn = bind<[bigint, number, Buffer]>('fieldValues', ['nvmlDeviceGetFieldValues'], 'int', [
    Device,
    'int',
    'void *',
  ]);
  const powerFn = u32Fn('powerUsage', ['nvmlDeviceGetPowerUsage']);
  const powerLimitFn = u32Fn('enforcedPowerLimit', ['nvmlDeviceGetEnforcedPowerLimit']);
  const energyFn = bind<[bigint, unknown[]]>('totalEnergy', ['nvmlDeviceGetTotalEnergyConsumption'], 'int', [
    Device,
    outU64,
  ]);
  const clockFn = u32ArgFn('clock', ['nvmlDeviceGetClockInfo']);
  const maxClockFn = u32ArgFn('maxClock', ['nvmlDeviceGetMaxClockInfo']);
  // Same bits under both names; the "throttle" spelling is deprecated since driver 535.
  const reasonsFn = bind<[bigint, unknown[]]>(
    'clockReasons',
    ['nvmlDeviceGetCurrentClocksEventReasons', 'nvmlDeviceGetCurrentClocksThrottleReasons'],
    'int',
    [Device, outU64],
  );
  const eccFn = bind<[bigint, number, number, unknown[]]>(
    'totalEccErrors',
    ['nvmlDeviceGetTotalEccErrors'],
    'int',
    [Device, 'int', 'int', outU64],
  );
  const pstateFn = bind<[bigint, number[]]>('performanceState', ['nvmlDeviceGetPerformanceState'], 'int', [
    Device,
    outI32,
  ]);
  const fanFn = u32Fn('fanSpeed', ['nvmlDeviceGetFanSpeed']);
  const linkGenFn = u32Fn('pcieLinkGeneration', ['nvmlDeviceGetCurrPcieLinkGeneration']);
  const linkWidthFn = u32Fn('pcieLinkWidth', ['nvmlDeviceGetCurrPcieLinkWidth']);
  const throughputFn = u32ArgFn('pcieThroughput', ['nvmlDeviceGetPcieThroughput']);
  const migModeFn = bind<[bigint, number[], number[]]>('migMode', ['nvmlDeviceGetMigMode'], 'int', [
    Device,
    outU32,
    outU32,
  ]);
  const maxMigFn = u32Fn('maxMigDeviceCount', ['nvmlDeviceGetMaxMigDeviceCount']);
  const migHandleFn = bind<[bigint, number, bigint[]]>(
    'migDeviceHandle',
    ['nvmlDeviceGetMigDeviceHandleByIndex'],
    'int',
    [Device, 'unsigned int', outDevice],
  );
  const giFn = u32Fn('gpuInstanceId', ['nvmlDeviceGetGpuInstanceId']);
  const ciFn = u32Fn('computeInstanceId', ['nvmlDeviceGetComputeInstanceId']);
  // _v3 and _v2 share nvmlProcessInfo_v2_t (24 bytes); v1 entries are 16 bytes and lack instance ids.
  const processesFn = bind<[bigint, number[], Buffer | null]>(
    'computeProcesses',
    [
      'nvmlDeviceGetComputeRunningProcesses_v3',
      'nvmlDeviceGetComputeRunningProcesses_v2',
      'nvmlDeviceGetComputeRunningProcesses',
    ],
    'int',
    [Device, koffi.inout(koffi.pointer('unsigned int')), 'void *'],
  );
  const processEntry = symbols.computeProcesses?.endsWith('Processes') ? ProcessInfoV1 : ProcessInfoV2;

  const eventCreateFn = bind<[bigint[]]>('eventSetCreate', ['nvmlEventSetCreate'], 'int', [
    koffi.out(koffi.pointer(EventSet)),
  ]);
  const registerFn = bind<[bigint, bigint, bigint]>('registerEvents', ['nvmlDeviceRegisterEvents'], 'int', [
    Device,
    ULL,
    EventSet,
  ]);
  const waitFn = bind<[bigint, Record<string, unknown>, number]>(
    'eventSetWait',
    ['nvmlEventSetWait_v2', 'nvmlEventSetWait'],
    'int',
    [EventSet, koffi.out(koffi.pointer(EventData)), 'unsigned int'],
  );
  const waitIsV2 = symbols.eventSetWait === 'nvmlEventSetWait_v2';
  const eventFreeFn = bind<[bigint]>('eventSetFree', ['nvmlEventSetFree'], 'int', [EventSet]);

  function str(fn: Fn<[bigint, Buffer, number]> | null, h: bigint, size: number): NvmlResult<string> {
    if (!fn) return missing;
    const buf = Buffer.alloc(size);
    const r = fn(h, buf, size);
    return r === NVML.SUCCESS ? { ok: true, value: cString(buf) } : fail(r);
  }
  function u32(fn: Fn<[bigint, number[]]> | null, h: bigint): NvmlResult<number> {
    if (!fn) return missing;
    const out = [0];
    const r = fn(h, out);
    return r === NVML.SUCCESS ? { ok: true, value: out[0] ?? 0 } : fail(r);
  }
  function u32Arg(fn: Fn<[bigint, number, number[]]> | null, h: bigint, arg: number): NvmlResult<number> {
    if (!fn) return missing;
    const out = [0];
    const r = fn(h, arg, out);
    return r === NVML.SUCCESS ? { ok: true, value: out[0] ?? 0 } : fail(r);
  }
  function u64(fn: Fn<[bigint, unknown[]]> | null, h: bigint): NvmlResult<bigint> {
    if (!fn) return missing;
    const out: unknown[] = [0];
    const r = fn(h, out);
    return r === NVML.SUCCESS ? { ok: true, value: BigInt(out[0] as number | bigint) } : fail(r);
  }
  function util(fn: Fn<[bigint, number[], number[]]> | null, h: bigint): NvmlResult<number> {
    if (!fn) return missing;
    const value = [0];
    const period = [0];
    const r = fn(h, value, period);
    return r === NVML.SUCCESS ? { ok: true, value: value[0] ?? 0 } : fail(r);
  }

  function decodeProcesses(buf: Buffer, count: number): NvmlProcessInfo[] {
    const size = koffi.sizeof(processEntry);
    const out: NvmlProcessInfo[] = [];
    for (let i = 0; i < count; i++) {
      const e = koffi.decode(buf, i * size, processEntry) as {
        pid: number;
        usedGpuMemory: number | bigint;
        gpuInstanceId?: number;
        computeInstanceId?: number;
      };
      const used = BigInt(e.usedGpuMemory);
      out.push({
        pid: e.pid,
        usedBytes: used === NVML_VALUE_NOT_AVAILABLE_ULL ? undefined : Number(used),
        gpuInstanceId:
          e.gpuInstanceId === undefined || e.gpuInstanceId === NVML_INVALID_ID ? undefined : e.gpuInstanceId,
        computeInstanceId:
          e.computeInstanceId === undefined || e.computeInstanceId === NVML_INVALID_ID
            ? undefined
            : e.computeInstanceId,
      });
    }
    return out;
  }

  return {
    symbols,
    hasEvents: Boolean(eventCreateFn && registerFn && waitFn),
    errorString: (code) => {
      const s = errorStringFn?.(code);
      return s ? `${s} (${code})` : `NVML error ${code}`;
    },
    init: () => init(),
    shutdown: () => shutdown(),
    driverVersion: () => {
      if (!driverVersionFn) return missing;
      const buf = Buffer.alloc(DRIVER_VERSION_BUFFER);
      const r = driverVersionFn(buf, buf.length);
      return r === NVML.SUCCESS ? { ok: true, value: cString(buf) } : fail(r);
    },
    cudaDriverVersion: () => {
      if (!cudaVersionFn) return missing;
      const out = [0];
      const r = cudaVersionFn(out);
      return r === NVML.SUCCESS ? { ok: true, value: out[0] ?? 0 } : fail(r);
    },
    processName: (pid) => {
      if (!processNameFn) return missing;
      const buf = Buffer.alloc(PROCESS_NAME_BUFFER);
      const r = processNameFn(pid, buf, buf.length);
      return r === NVML.SUCCESS ? { ok: true, value: cString(buf) } : fail(r);
    },
    deviceCount: () => {
      const out = [0];
      const r = getCount(out);
      return r === NVML.SUCCESS ? { ok: true, value: out[0] ?? 0 } : fail(r);
    },
    handleByIndex: (index) => {
      const out = [0n];
      const r = getHandle(index, out);
      return r === NVML.SUCCESS ? { ok: true, value: BigInt(out[0] ?? 0n) } : fail(r);
    },
    name: (h) => str(nameFn, h, NAME_BUFFER),
    uuid: (h) => str(uuidFn, h, UUID_BUFFER),
    serial: (h) => str(serialFn, h, SERIAL_BUFFER),
    vbiosVersion: (h) => str(vbiosFn, h, VBIOS_BUFFER),
    pciBusId: (h) => {
      if (!pciFn) return missing;
      const out: Record<string, unknown> = {};
      const r = pciFn(h, out);
      return r === NVML.SUCCESS ? { ok: true, value: out.busId as string } : fail(r);
    },
    memory: (h) => {
      if (memoryV2Fn) {
        const m: Record<string, unknown> = { version: structVersion(MemoryV2, 2) };
        const r = memoryV2Fn(h, m);
        if (r !== NVML.SUCCESS) return fail(r);
        return {
          ok: true,
          value: {
            total: toNumber(m.total),
            free: toNumber(m.free),
            used: toNumber(m.used),
            reserved: toNumber(m.reserved),
          },
        };
      }
      if (!memoryV1Fn) return missing;
      const m: Record<string, unknown> = {};
      const r = memoryV1Fn(h, m);
      if (r !== NVML.SUCCESS) return fail(r);
      return {
        ok: true,
        value: { total: toNumber(m.total), free: toNumber(m.free), used: toNumber(m.used) },
      };
    },
    utilization: (h) => {
      if (!utilizationFn) return missing;
      const u: Record<string, unknown> = {};
      const r = utilizationFn(h, u);
      return r === NVML.SUCCESS
        ? { ok: true, value: { gpu: u.gpu as number, memory: u.memory as number } }
        : fail(r);
    },
    encoderUtilization: (h) => util(encoderFn, h),
    decoderUtilization: (h) => util(decoderFn, h),
    temperature: (h) => {
      if (temperatureVFn) {
        const t: Record<string, unknown> = {
          version: structVersion(TemperatureV1, 1),
          sensorType: NVML_TEMPERATURE_GPU,
          temperature: 0,
        };
        const r = temperatureVFn(h, t);
        return r === NVML.SUCCESS ? { ok: true, value: t.temperature as number } : fail(r);
      }
      return u32Arg(temperatureFn, h, NVML_TEMPERATURE_GPU);
    },
    memoryTemperature: (h) => {
      if (!fieldValuesFn) return missing;
      const buf = Buffer.alloc(koffi.sizeof(FieldValue));
      koffi.encode(buf, koffi.offsetof(FieldValue, 'fieldId'), 'unsigned int', NVML_FI_DEV_MEMORY_TEMP);
      const r = fieldValuesFn(h, 1, buf);
      if (r !== NVML.SUCCESS) return fail(r);
      const fieldReturn = koffi.decode(buf, koffi.offsetof(FieldValue, 'nvmlReturn'), 'int') as number;
      if (fieldReturn !== NVML.SUCCESS) return fail(fieldReturn);
      const valueType = koffi.decode(buf, koffi.offsetof(FieldValue, 'valueType'), 'int') as number;
      return { ok: true, value: fieldNumber(buf, koffi.offsetof(FieldValue, 'value'), valueType) };
    },
    powerUsage: (h) => u32(powerFn, h),
    enforcedPowerLimit: (h) => u32(powerLimitFn, h),
    totalEnergy: (h) => {
      const r = u64(energyFn, h);
      return r.ok ? { ok: true, value: Number(r.value) } : r;
    },
    clock: (h, type) => u32Arg(clockFn, h, type),
    maxClock: (h, type) => u32Arg(maxClockFn, h, type),
    clockReasons: (h) => u64(reasonsFn, h),
    totalEccErrors: (h, errorType) => {
      if (!eccFn) return missing;
      const out: unknown[] = [0];
      const r = eccFn(h, errorType, NVML_AGGREGATE_ECC, out);
      return r === NVML.SUCCESS ? { ok: true, value: toNumber(out[0]) } : fail(r);
    },
    performanceState: (h) => {
      if (!pstateFn) return missing;
      const out = [0];
      const r = pstateFn(h, out);
      return r === NVML.SUCCESS ? { ok: true, value: out[0] ?? 0 } : fail(r);
    },
    fanSpeed: (h) => u32(fanFn, h),
    pcieLinkGeneration: (h) => u32(linkGenFn, h),
    pcieLinkWidth: (h) => u32(linkWidthFn, h),
    pcieThroughput: (h, counter) => u32Arg(throughputFn, h, counter),
    migMode: (h) => {
      if (!migModeFn) return missing;
      const current = [0];
      const pending = [0];
      const r = migModeFn(h, current, pending);
      return r === NVML.SUCCESS ? { ok: true, value: current[0] ?? 0 } : fail(r);
    },
    maxMigDeviceCount: (h) => u32(maxMigFn, h),
    migDeviceHandle: (h, index) => {
      if (!migHandleFn) return missing;
      const out = [0n];
      const r = migHandleFn(h, index, out);
      return r === NVML.SUCCESS ? { ok: true, value: BigInt(out[0] ?? 0n) } : fail(r);
    },
    gpuInstanceId: (h) => u32(giFn, h),
    computeInstanceId: (h) => u32(ciFn, h),
    computeProcesses: (h) => {
      if (!processesFn) return missing;
      // Ask for the count, then fetch; processes can start in between, so retry with the new count.
      let capacity = 0;
      for (let attempt = 0; attempt < 4; attempt++) {
        const count = [capacity];
        const buf = capacity > 0 ? Buffer.alloc(capacity * koffi.sizeof(processEntry)) : null;
        const r = processesFn(h, count, buf);
        const n = count[0] ?? 0;
        if (r === NVML.SUCCESS) return { ok: true, value: buf ? decodeProcesses(buf, n) : [] };
        if (r !== NVML.ERROR_INSUFFICIENT_SIZE) return fail(r);
        capacity = n + 4;
      }
      return fail(NVML.ERROR_INSUFFICIENT_SIZE);
    },
    eventSetCreate: () => {
      if (!eventCreateFn) return missing;
      const out = [0n];
      const r = eventCreateFn(out);
      return r === NVML.SUCCESS ? { ok: true, value: BigInt(out[0] ?? 0n) } : fail(r);
    },
    registerEvents: (h, types, set) =>
      registerFn ? registerFn(h, types, set) : NVML.ERROR_FUNCTION_NOT_FOUND,
    eventSetWait: (set, timeoutMs) => {
      if (!waitFn) return missing;
      const e: Record<string, unknown> = {};
      const r = waitFn(set, e, timeoutMs);
      if (r !== NVML.SUCCESS) return fail(r);
      const gi = e.gpuInstanceId as number | undefined;
      return {
        ok: true,
        value: {
          device: BigInt(e.device as bigint | number),
          eventType: BigInt(e.eventType as bigint | number),
          eventData: BigInt(e.eventData as bigint | number),
          gpuInstanceId: waitIsV2 && gi !== undefined && gi !== NVML_INVALID_ID ? gi : undefined,
        },
      };
    },
    eventSetFree: (set) => (eventFreeFn ? eventFreeFn(set) : NVML.ERROR_FUNCTION_NOT_FOUND),
  };
}

/** Reads nvmlValue_t at `offset` as the member `valueType` names. */
function fieldNumber(buf: Buffer, offset: number, valueType: number): number {
  const type = FIELD_VALUE_TYPES[valueType] ?? 'unsigned int';
  return toNumber(koffi.decode(buf, offset, type));
}
