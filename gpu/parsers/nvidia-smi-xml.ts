import { XMLParser } from 'fast-xml-parser';
import { CLOCK_EVENT_REASONS, clockReasonNames } from '../clock-reasons.js';
import { GpuError } from '../errors.js';
import type { GpuDevice, GpuMemory, GpuProcess, MigInstance } from '../types.js';
import {
  cleanValue,
  parseActive,
  parseBytes,
  parseCelsius,
  parseEnabled,
  parseInteger,
  parseLinkWidth,
  parseMegahertz,
  parsePercent,
  parseThroughputBytesPerSecond,
  parseWatts,
} from './values.js';
import { assertWellFormedXml, decodeXmlEntities, stripBom, wrongRoot } from './xml-document.js';

/** What one `nvidia-smi -q -x` run says. */
export interface NvidiaSmiXmlReport {
  driverVersion?: string;
  cudaVersion?: string;
  devices: GpuDevice[];
  /**
   * The whole document as plain JSON, for views that show everything the driver said: element
   * text as strings, attributes under `$`, `gpu`/`process_info`/`mig_device` always arrays.
   */
  raw: unknown;
}

const ROOT = 'nvidia_smi_log';
const WHAT = 'nvidia-smi -q -x';

/**
 * Elements that repeat. Kept as arrays even when there is one, so a one-GPU host and an eight-GPU
 * host give `raw` the same shape.
 */
const REPEATED = new Set([
  'gpu',
  'process_info',
  'accounted_process_info',
  'mig_device',
  'supported_mem_clock',
  'supported_graphics_clock',
]);

const OPTIONS = {
  ignoreAttributes: false,
  attributeNamePrefix: '',
  attributesGroupName: '$',
  textNodeName: '_',
  // Values stay strings: "0x4", "00000000:01:00.0" and "90.04.0B.00.8F" are not numbers.
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: true,
  processEntities: false,
  htmlEntities: false,
  ignoreDeclaration: true,
  ignorePiTags: true,
  // Only tag names are matched; path strings would cost time for nothing.
  jPath: false,
  isArray: (tagName: string, _path: unknown, _isLeafNode: boolean, isAttribute: boolean) =>
    !isAttribute && REPEATED.has(tagName),
  tagValueProcessor: (_tagName: string, value: string) => decodeXmlEntities(value),
  attributeValueProcessor: (_name: string, value: string) => decodeXmlEntities(value),
};

const fullParser = new XMLParser(OPTIONS);
/** Leaves `<supported_clocks>` unparsed: it is most of the text on recent GPUs and static. */
const lightParser = new XMLParser({ ...OPTIONS, stopNodes: ['..supported_clocks'] });

export interface ParseNvidiaSmiXmlOptions {
  /**
   * Parse each GPU's `<supported_clocks>` table into `raw`. The table is static and is most of the
   * document on recent GPUs (about 90% of a Blackwell's 120 KB), so a poller that runs often can
   * skip it: the text is still checked, the element is then left out of `raw`, and no device figure
   * comes from it.
   * @defaultValue true
   */
  supportedClocks?: boolean;
}

/**
 * Parses `nvidia-smi -q -x` output, from DTD v10 (driver 418) to v13 (590+), into devices. Tags that
 * drivers renamed are read under every name they have had; tags this parser does not know are kept
 * in `raw` and otherwise ignored. Throws `GpuError('parse')` when the text is not such a document.
 */
export function parseNvidiaSmiXml(text: string, options: ParseNvidiaSmiXmlOptions = {}): NvidiaSmiXmlReport {
  assertWellFormedXml(text, WHAT);
  const supportedClocks = options.supportedClocks ?? true;
  let doc: unknown;
  try {
    doc = (supportedClocks ? fullParser : lightParser).parse(stripBom(text)) as unknown;
  } catch (err) {
    throw new GpuError('parse', `${WHAT}: ${err instanceof Error ? err.message : String(err)}`, {
      cause: err,
    });
  }
  const roots = isRecord(doc) ? Object.keys(doc) : [];
  if (!isRecord(doc) || roots.length !== 1 || roots[0] !== ROOT || Array.isArray(doc[ROOT])) {
    throw wrongRoot(WHAT, ROOT, roots);
  }
  const log = doc[ROOT];
  if (!supportedClocks)
    for (const gpu of list(at(log, 'gpu'))) if (isRecord(gpu)) delete gpu['supported_clocks'];
  return dropUndefined({
    driverVersion: str(log, 'driver_version'),
    cudaVersion: str(log, 'cuda_version'),
    devices: list(at(log, 'gpu')).map(toDevice),
    raw: doc,
  });
}

type XmlObject = Record<string, unknown>;

function isRecord(v: unknown): v is XmlObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The node at `path`, or undefined when any step is missing or is text (e.g. `N/A`). */
function at(node: unknown, ...path: string[]): unknown {
  let cur = node;
  for (const key of path) {
    if (!isRecord(cur) || !Object.hasOwn(cur, key)) return undefined;
    cur = cur[key];
  }
  return cur;
}

/** The element text at `path`, with not-available forms as undefined. */
function str(node: unknown, ...path: string[]): string | undefined {
  const v = at(node, ...path);
  // An element with attributes keeps its text under `_`.
  return cleanValue(isRecord(v) ? v['_'] : v);
}

function list(v: unknown): unknown[] {
  if (Array.isArray(v)) return v as unknown[];
  return v === undefined ? [] : [v];
}

/** The first reading that is present, in the order the names are given. */
function first<T>(parse: (raw: unknown) => T | undefined, candidates: unknown[]): T | undefined {
  for (const c of candidates) {
    const v = parse(c);
    if (v !== undefined) return v;
  }
  return undefined;
}

function toDevice(gpu: unknown, index: number): GpuDevice {
  const device: GpuDevice = {
    // Position in the file, not minor_number: minor_number is N/A on Windows and vGPU guests, and
    // numbers /dev/nvidiaN, which need not follow the order nvidia-smi lists GPUs in (NVML's index).
    index,
    uuid: str(gpu, 'uuid') ?? '',
    name: str(gpu, 'product_name') ?? '',
    pciBusId: str(gpu, '$', 'id') ?? str(gpu, 'pci', 'pci_bus_id'),
    memory: memoryOf(at(gpu, 'fb_memory_usage')),
    utilization: dropUndefined({
      gpuPercent: parsePercent(at(gpu, 'utilization', 'gpu_util')),
      memoryPercent: parsePercent(at(gpu, 'utilization', 'memory_util')),
    }),
    temperatureC: parseCelsius(at(gpu, 'temperature', 'gpu_temp')),
    memoryTemperatureC: parseCelsius(at(gpu, 'temperature', 'memory_temp')),
    powerW: powerDraw(gpu),
    powerLimitW: powerLimit(gpu),
    smClockMHz: parseMegahertz(at(gpu, 'clocks', 'sm_clock')),
    memClockMHz: parseMegahertz(at(gpu, 'clocks', 'mem_clock')),
    maxSmClockMHz: parseMegahertz(at(gpu, 'max_clocks', 'sm_clock')),
    maxMemClockMHz: parseMegahertz(at(gpu, 'max_clocks', 'mem_clock')),
    encoderPercent: parsePercent(at(gpu, 'utilization', 'encoder_util')),
    decoderPercent: parsePercent(at(gpu, 'utilization', 'decoder_util')),
    throttleReasons: throttleReasons(gpu),
    eccErrors: eccErrors(gpu),
    mig: mig(gpu),
    processes: list(at(gpu, 'processes', 'process_info')).flatMap(toProcess),
    serial: str(gpu, 'serial'),
    vbiosVersion: str(gpu, 'vbios_version'),
    performanceState: str(gpu, 'performance_state'),
    fanPercent: parsePercent(at(gpu, 'fan_speed')),
    pcie: pcie(at(gpu, 'pci')),
  };
  if (str(gpu, 'gpu_virtualization_mode', 'virtualization_mode')?.toUpperCase() === 'VGPU')
    hideGuestZeros(device);
  return dropUndefined(device);
}

/**
 * A vGPU guest cannot read the physical GPU's sensors and clocks, yet prints them as `0 C` and
 * `0 MHz` where bare metal prints N/A. Zero there means "not available", so it becomes undefined;
 * a non-zero reading (a host that does pass it through) is kept.
 */
function hideGuestZeros(device: GpuDevice): void {
  for (const key of [
    'temperatureC',
    'smClockMHz',
    'memClockMHz',
    'maxSmClockMHz',
    'maxMemClockMHz',
  ] as const) {
    if (device[key] === 0) device[key] = undefined;
  }
}

/**
 * Framebuffer memory. Drivers since about 510 report `reserved` (driver and firmware) apart from
 * `used`, and total = reserved + used + free. Older drivers have no `reserved` tag and count the
 * driver's reservation inside `used` (total = used + free), so `reservedBytes` stays undefined and
 * `usedBytes` then means "not free" rather than "allocated by processes".
 * A reading the driver withholds is NaN: `GpuMemory` has no room for "unknown" and 0 would lie.
 */
function memoryOf(fb: unknown): GpuMemory {
  const memory: GpuMemory = {
    totalBytes: parseBytes(at(fb, 'total')) ?? Number.NaN,
    usedBytes: parseBytes(at(fb, 'used')) ?? Number.NaN,
    freeBytes: parseBytes(at(fb, 'free')) ?? Number.NaN,
  };
  const reserved = parseBytes(at(fb, 'reserved'));
  if (reserved !== undefined) memory.reservedBytes = reserved;
  return memory;
}

/**
 * `<power_readings>` up to the 525 drivers; `<gpu_power_readings>` from 535, beside
 * `<module_power_readings>`, which is for whole modules such as Grace Hopper.
 */
function powerReadings(gpu: unknown): unknown[] {
  return [at(gpu, 'gpu_power_readings'), at(gpu, 'power_readings')];
}

/**
 * Board power draw. `power_draw` until v12; v13 splits it into `average_power_draw` (1 s average,
 * what `power_draw` meant on Ampere and newer) and `instant_power_draw` (the only one Turing and
 * older have). The average is preferred so figures match across driver generations.
 */
function powerDraw(gpu: unknown): number | undefined {
  const readings = powerReadings(gpu);
  return first(
    parseWatts,
    ['power_draw', 'average_power_draw', 'instant_power_draw'].flatMap((tag) =>
      readings.map((r) => at(r, tag)),
    ),
  );
}

/**
 * The limit the driver enforces: `enforced_power_limit` up to 525, `current_power_limit` from 535;
 * `power_limit` (the requested one) only when neither is reported.
 */
function powerLimit(gpu: unknown): number | undefined {
  const readings = powerReadings(gpu);
  return first(
    parseWatts,
    ['enforced_power_limit', 'current_power_limit', 'power_limit'].flatMap((tag) =>
      readings.map((r) => at(r, tag)),
    ),
  );
}

const REASON_BITS = new Map(CLOCK_EVENT_REASONS.map((r) => [r.name, BigInt(r.bit)]));
/** Tag suffixes that differ from the names NVML's constants give the same bit. */
const REASON_TAG_ALIASES: Readonly<Record<string, string>> = {
  display_clocks_setting: 'display_clock_setting',
};

/**
 * Active clock event reasons by the shared names. `<clocks_throttle_reasons>` with
 * `clocks_throttle_reason_*` children up to 525, `<clocks_event_reasons>` with
 * `clocks_event_reason_*` from 535; a vGPU guest prints the element as plain `N/A`.
 */
function throttleReasons(gpu: unknown): string[] | undefined {
  const group = at(gpu, 'clocks_event_reasons') ?? at(gpu, 'clocks_throttle_reasons');
  if (!isRecord(group)) return undefined;
  let mask = 0n;
  let seen = false;
  const unknown: string[] = [];
  for (const [tag, value] of Object.entries(group)) {
    const m = /^clocks_(?:event|throttle)_reason_(.+)$/.exec(tag);
    const active = m ? parseActive(value) : undefined;
    if (!m?.[1] || active === undefined) continue;
    seen = true;
    if (!active) continue;
    const name = REASON_TAG_ALIASES[m[1]] ?? m[1];
    const bit = REASON_BITS.get(name);
    if (bit === undefined) unknown.push(name);
    else mask |= bit;
  }
  return seen ? [...clockReasonNames(mask), ...unknown] : undefined;
}

/**
 * Aggregate (lifetime) ECC error totals, only when ECC is on. Three layouts: per-location
 * `single_bit`/`double_bit` with a `total` (Pascal and older GPUs); `sram_*`/`dram_*` counters
 * (Turing and newer in the captures); v13 splits the uncorrectable SRAM count into `_parity` and
 * `_secded`.
 */
function eccErrors(gpu: unknown): GpuDevice['eccErrors'] {
  if (parseEnabled(at(gpu, 'ecc_mode', 'current_ecc')) !== true) return undefined;
  const agg = at(gpu, 'ecc_errors', 'aggregate');
  const count = (...path: string[]): number | undefined => parseInteger(at(agg, ...path));
  const sramUncorrectable =
    count('sram_uncorrectable') ??
    sum(count('sram_uncorrectable_parity'), count('sram_uncorrectable_secded'));
  const corrected = count('single_bit', 'total') ?? sum(count('sram_correctable'), count('dram_correctable'));
  const uncorrected = count('double_bit', 'total') ?? sum(sramUncorrectable, count('dram_uncorrectable'));
  if (corrected === undefined && uncorrected === undefined) return undefined;
  return dropUndefined({ corrected, uncorrected });
}

/** The sum of the counts that are present; undefined when none is. */
function sum(...values: (number | undefined)[]): number | undefined {
  const present = values.filter((v): v is number => v !== undefined);
  return present.length === 0 ? undefined : present.reduce((a, b) => a + b, 0);
}

/** MIG mode and instances; undefined on GPUs without MIG (`N/A`) and before DTD v11. */
function mig(gpu: unknown): GpuDevice['mig'] {
  const enabled = parseEnabled(at(gpu, 'mig_mode', 'current_mig'));
  if (enabled === undefined) return undefined;
  return { enabled, instances: list(at(gpu, 'mig_devices', 'mig_device')).map(toMigInstance) };
}

function toMigInstance(dev: unknown): MigInstance {
  const total = parseBytes(at(dev, 'fb_memory_usage', 'total'));
  const used = parseBytes(at(dev, 'fb_memory_usage', 'used'));
  const instance: MigInstance = {
    gpuInstanceId: parseInteger(at(dev, 'gpu_instance_id')) ?? Number.NaN,
    computeInstanceId: parseInteger(at(dev, 'compute_instance_id')),
    uuid: str(dev, 'uuid'),
    index: parseInteger(at(dev, 'index')),
    smCount: parseInteger(at(dev, 'device_attributes', 'shared', 'multiprocessor_count')),
    memory:
      total !== undefined && used !== undefined
        ? dropUndefined({
            totalBytes: total,
            usedBytes: used,
            freeBytes: parseBytes(at(dev, 'fb_memory_usage', 'free')),
          })
        : undefined,
  };
  return dropUndefined(instance);
}

/**
 * One `<process_info>`. `used_memory` is N/A under Windows WDDM, where the OS rather than the driver
 * manages memory; the name is empty for processes the caller may not inspect.
 */
function toProcess(p: unknown): GpuProcess[] {
  const pid = parseInteger(at(p, 'pid'));
  if (pid === undefined) return [];
  const process: GpuProcess = {
    pid,
    name: str(p, 'process_name') ?? '',
    usedBytes: parseBytes(at(p, 'used_memory')),
    type: str(p, 'type'),
  };
  return [dropUndefined(process)];
}

function pcie(pci: unknown): GpuDevice['pcie'] {
  const link = at(pci, 'pci_gpu_link_info');
  const out = dropUndefined({
    linkGeneration: parseInteger(at(link, 'pcie_gen', 'current_link_gen')),
    linkWidth: parseLinkWidth(at(link, 'link_widths', 'current_link_width')),
    txBytesPerSecond: parseThroughputBytesPerSecond(at(pci, 'tx_util')),
    rxBytesPerSecond: parseThroughputBytesPerSecond(at(pci, 'rx_util')),
  });
  return Object.keys(out).length === 0 ? undefined : out;
}

/** The object without its undefined members, so results compare and serialize cleanly. */
function dropUndefined<T extends object>(obj: T): T {
  for (const key of Object.keys(obj) as (keyof T)[]) {
    if (obj[key] === undefined) delete obj[key];
  }
  return obj;
}
