import { clockReasonNames } from '../clock-reasons.js';
import { GpuError } from '../errors.js';
import type { GpuDevice, GpuProcess } from '../types.js';
import {
  cleanValue,
  parseBytes,
  parseCelsius,
  parseEnabled,
  parseHexMask,
  parseInteger,
  parseLinkWidth,
  parseMegahertz,
  parsePercent,
  parseWatts,
} from './values.js';

/**
 * The `--query-gpu` fields the fast path asks for, by the names a current driver prints in the CSV
 * header (590/595/610 captures). Older drivers know some of them by another name or not at all:
 * {@link chooseQueryFields} picks what the driver at hand supports.
 */
export const QUERY_GPU_FIELDS: readonly string[] = [
  'index',
  'uuid',
  'name',
  'pci.bus_id',
  'memory.total',
  'memory.reserved',
  'memory.used',
  'memory.free',
  'utilization.gpu',
  'utilization.memory',
  'utilization.encoder',
  'utilization.decoder',
  'temperature.gpu',
  'temperature.memory',
  'power.draw',
  'enforced.power.limit',
  'clocks.current.sm',
  'clocks.current.memory',
  'clocks.max.sm',
  'clocks.max.memory',
  'clocks_event_reasons.active',
  'ecc.mode.current',
  'ecc.errors.corrected.aggregate.total',
  'ecc.errors.uncorrected.aggregate.total',
  'mig.mode.current',
  'pstate',
  'fan.speed',
  'pcie.link.gen.current',
  'pcie.link.width.current',
  'serial',
  'vbios_version',
  'driver_version',
];

/**
 * Other names of a {@link QUERY_GPU_FIELDS} field, best first, from `--help-query-gpu` (`"a" or "b"`)
 * and older drivers: `clocks_throttle_reasons.*` became `clocks_event_reasons.*` in driver 535;
 * `pcie.link.gen.current` is deprecated for `pcie.link.gen.gpucurrent` since 590; drivers without
 * `enforced.power.limit` only have the requested `power.limit`.
 */
export const QUERY_GPU_FIELD_ALIASES: Readonly<Record<string, readonly string[]>> = {
  uuid: ['gpu_uuid'],
  name: ['gpu_name'],
  'pci.bus_id': ['gpu_bus_id'],
  serial: ['gpu_serial'],
  'power.draw': [
    'power.draw.average',
    'gpu.power.draw.average',
    'power.draw.instant',
    'gpu.power.draw.instant',
  ],
  'enforced.power.limit': ['gpu.power.current_limit', 'power.limit', 'gpu.power.requested_limit'],
  'clocks.current.sm': ['clocks.sm'],
  'clocks.current.memory': ['clocks.mem'],
  'clocks.max.memory': ['clocks.max.mem'],
  'clocks_event_reasons.active': ['clocks_throttle_reasons.active'],
  'pcie.link.gen.current': ['pcie.link.gen.gpucurrent'],
};

/**
 * The fields to request from a driver that supports `supported` (as {@link parseHelpQueryGpu}
 * reads them): each {@link QUERY_GPU_FIELDS} entry under the first name the driver knows, and
 * left out when it knows none, because a single unknown field makes nvidia-smi reject the query.
 */
export function chooseQueryFields(supported: ReadonlySet<string>): string[] {
  const chosen: string[] = [];
  for (const field of QUERY_GPU_FIELDS) {
    const name = [field, ...(QUERY_GPU_FIELD_ALIASES[field] ?? [])].find((n) => supported.has(n));
    if (name !== undefined) chosen.push(name);
  }
  return chosen;
}

/** One property `--help-query-*` lists: its name and the other names it answers to. */
export interface HelpQueryField {
  name: string;
  aliases: string[];
}

/** A property line: `"name"` or `"name" or "alias"`, alone on its line. */
const HELP_FIELD_LINE = /^"([\w.]+)"((?:\s+or\s+"[\w.]+")*)\s*$/;

/**
 * The properties listed by `nvidia-smi --help-query-gpu` (and the other `--help-query-*` switches).
 * Each property is a line of quoted names after a blank line, followed by description lines; a
 * description line may also start with a quote (`"0: Default" means ...`), which the blank-line rule
 * and the whole-line pattern keep out.
 */
export function parseHelpQuery(text: string): HelpQueryField[] {
  const fields: HelpQueryField[] = [];
  let previousBlank = true;
  for (const line of text.split(/\r?\n/)) {
    const trimmed = line.trim();
    const m = previousBlank ? HELP_FIELD_LINE.exec(trimmed) : null;
    if (m?.[1] !== undefined) {
      const aliases = [...(m[2] ?? '').matchAll(/"([\w.]+)"/g)].flatMap((a) =>
        a[1] === undefined ? [] : [a[1]],
      );
      fields.push({ name: m[1], aliases: aliases.filter((a) => a !== m[1]) });
    }
    previousBlank = trimmed === '';
  }
  return fields;
}

/** Every name `--help-query-gpu` accepts, aliases included: the input {@link chooseQueryFields} wants. */
export function parseHelpQueryGpu(text: string): Set<string> {
  return new Set(parseHelpQuery(text).flatMap((f) => [f.name, ...f.aliases]));
}

/** How the CSV was asked for, i.e. the `--format=` options. */
export interface CsvFormat {
  /** The first line is the header (`--format=csv` without `noheader`). @defaultValue false */
  header?: boolean;
  /**
   * Values carry units (`--format=csv` without `nounits`). Parsing reads each value the same way
   * either way, because a unit is checked and converted when present and some fields
   * (`temperature.gpu`) never print one; the header keeps its `[unit]` suffixes even with `nounits`.
   * @defaultValue false
   */
  units?: boolean;
}

export interface QueryGpuResult {
  driverVersion?: string;
  devices: GpuDevice[];
}

type Cells = (name: string) => string | undefined;

interface Reading {
  apply(device: GpuDevice, cells: Cells): void;
}

/** A device reading taken from the first of `names` whose cell has a value. */
function reading<T>(
  names: readonly string[],
  parse: (cell: string) => T | undefined,
  put: (d: GpuDevice, v: T) => void,
): Reading {
  return {
    apply(device, cells) {
      for (const name of names) {
        const cell = cells(name);
        const value = cell === undefined ? undefined : parse(cell);
        if (value !== undefined) {
          put(device, value);
          return;
        }
      }
    },
  };
}

function names(field: string): string[] {
  return [field, ...(QUERY_GPU_FIELD_ALIASES[field] ?? [])];
}

function pcieOf(d: GpuDevice): NonNullable<GpuDevice['pcie']> {
  d.pcie ??= {};
  return d.pcie;
}

const READINGS: readonly Reading[] = [
  reading(names('index'), parseInteger, (d, v) => (d.index = v)),
  reading(names('uuid'), cleanValue, (d, v) => (d.uuid = v)),
  reading(names('name'), cleanValue, (d, v) => (d.name = v)),
  reading(names('pci.bus_id'), cleanValue, (d, v) => (d.pciBusId = v)),
  reading(names('memory.total'), parseBytes, (d, v) => (d.memory.totalBytes = v)),
  reading(names('memory.used'), parseBytes, (d, v) => (d.memory.usedBytes = v)),
  reading(names('memory.free'), parseBytes, (d, v) => (d.memory.freeBytes = v)),
  reading(names('memory.reserved'), parseBytes, (d, v) => (d.memory.reservedBytes = v)),
  reading(names('utilization.gpu'), parsePercent, (d, v) => (d.utilization.gpuPercent = v)),
  reading(names('utilization.memory'), parsePercent, (d, v) => (d.utilization.memoryPercent = v)),
  reading(names('utilization.encoder'), parsePercent, (d, v) => (d.encoderPercent = v)),
  reading(names('utilization.decoder'), parsePercent, (d, v) => (d.decoderPercent = v)),
  reading(names('temperature.gpu'), parseCelsius, (d, v) => (d.temperatureC = v)),
  reading(names('temperature.memory'), parseCelsius, (d, v) => (d.memoryTemperatureC = v)),
  reading(names('power.draw'), parseWatts, (d, v) => (d.powerW = v)),
  reading(names('enforced.power.limit'), parseWatts, (d, v) => (d.powerLimitW = v)),
  reading(names('clocks.current.sm'), parseMegahertz, (d, v) => (d.smClockMHz = v)),
  reading(names('clocks.current.memory'), parseMegahertz, (d, v) => (d.memClockMHz = v)),
  reading(names('clocks.max.sm'), parseMegahertz, (d, v) => (d.maxSmClockMHz = v)),
  reading(names('clocks.max.memory'), parseMegahertz, (d, v) => (d.maxMemClockMHz = v)),
  reading(
    names('clocks_event_reasons.active'),
    parseHexMask,
    (d, v) => (d.throttleReasons = clockReasonNames(v)),
  ),
  reading(names('mig.mode.current'), parseEnabled, (d, v) => (d.mig = { enabled: v, instances: [] })),
  reading(names('pstate'), cleanValue, (d, v) => (d.performanceState = v)),
  reading(names('fan.speed'), parsePercent, (d, v) => (d.fanPercent = v)),
  reading(names('pcie.link.gen.current'), parseInteger, (d, v) => (pcieOf(d).linkGeneration = v)),
  reading(names('pcie.link.width.current'), parseLinkWidth, (d, v) => (pcieOf(d).linkWidth = v)),
  reading(names('serial'), cleanValue, (d, v) => (d.serial = v)),
  reading(names('vbios_version'), cleanValue, (d, v) => (d.vbiosVersion = v)),
];

/** Aggregate ECC totals, unless the row says ECC is off (the counters then read 0 or N/A). */
function eccErrors(cells: Cells): GpuDevice['eccErrors'] {
  const mode = cells('ecc.mode.current');
  if (mode !== undefined && parseEnabled(mode) !== true) return undefined;
  const corrected = parseInteger(cells('ecc.errors.corrected.aggregate.total'));
  const uncorrected = parseInteger(cells('ecc.errors.uncorrected.aggregate.total'));
  if (corrected === undefined && uncorrected === undefined) return undefined;
  const ecc: NonNullable<GpuDevice['eccErrors']> = {};
  if (corrected !== undefined) ecc.corrected = corrected;
  if (uncorrected !== undefined) ecc.uncorrected = uncorrected;
  return ecc;
}

/**
 * Parses `nvidia-smi --query-gpu=<fields> --format=csv[,noheader][,nounits]`, one device per line.
 * `fields` are the names asked for, in order (aliases are understood); with a header the header's
 * names are used instead. Fields the query did not include stay undefined; the memory figures,
 * which `GpuMemory` requires, are NaN when not asked for or not available. A line with a different
 * number of values than fields throws `GpuError('parse')`: the columns would be misread otherwise.
 * `processes` is empty: nvidia-smi lists them apart (see {@link parseComputeAppsCsv}). Likewise
 * `mig.instances` is empty even when MIG is on: `--query-gpu` has no per-instance fields, only
 * `nvidia-smi -q -x` (or NVML) lists the instances.
 */
export function parseQueryGpuCsv(
  text: string,
  fields: readonly string[],
  format: CsvFormat = {},
): QueryGpuResult {
  const { columns, rows } = readCsv(text, fields, format, 'nvidia-smi --query-gpu');
  let driverVersion: string | undefined;
  const devices = rows.map((row, position) => {
    const cells = cellLookup(columns, row);
    const device: GpuDevice = {
      // nvidia-smi lists GPUs in index order, so the line number stands in when `index` was not asked for.
      index: position,
      uuid: '',
      name: '',
      memory: { totalBytes: Number.NaN, usedBytes: Number.NaN, freeBytes: Number.NaN },
      utilization: {},
      processes: [],
    };
    for (const r of READINGS) r.apply(device, cells);
    const ecc = eccErrors(cells);
    if (ecc !== undefined) device.eccErrors = ecc;
    driverVersion ??= cleanValue(cells('driver_version'));
    return device;
  });
  return driverVersion === undefined ? { devices } : { driverVersion, devices };
}

/**
 * The `--query-compute-apps` fields the fast path asks for. `process_name` comes last because
 * nvidia-smi does not quote values: a name containing ", " then only spills into its own column.
 */
export const COMPUTE_APPS_FIELDS: readonly string[] = ['gpu_uuid', 'pid', 'used_gpu_memory', 'process_name'];

export interface ComputeApp {
  /** UUID of the GPU the process holds memory on. */
  gpuUuid: string;
  process: GpuProcess;
}

const PROCESS_NAME_COLUMNS = ['process_name', 'name'];

/**
 * Parses `nvidia-smi --query-compute-apps=<fields> --format=csv[,noheader][,nounits]`: one line per
 * process and GPU. `used_gpu_memory` is `[N/A]` under Windows WDDM, where the OS manages GPU memory;
 * it is then undefined. A process name containing ", " is put back together. Lines whose pid is not
 * a number are skipped.
 */
export function parseComputeAppsCsv(
  text: string,
  fields: readonly string[],
  format: CsvFormat = {},
): ComputeApp[] {
  const { columns, rows } = readCsv(
    text,
    fields,
    format,
    'nvidia-smi --query-compute-apps',
    PROCESS_NAME_COLUMNS,
  );
  return rows.flatMap((row) => {
    const cells = cellLookup(columns, row);
    const pid = parseInteger(cells('pid'));
    if (pid === undefined) return [];
    const process: GpuProcess = { pid, name: cleanValue(cells('process_name') ?? cells('name')) ?? '' };
    const used = parseBytes(cells('used_gpu_memory') ?? cells('used_memory'));
    if (used !== undefined) process.usedBytes = used;
    return [{ gpuUuid: cleanValue(cells('gpu_uuid')) ?? '', process }];
  });
}

/** The devices with their `processes` filled from compute apps, matched by GPU UUID. */
export function withComputeApps(devices: readonly GpuDevice[], apps: readonly ComputeApp[]): GpuDevice[] {
  return devices.map((d) => ({
    ...d,
    processes: apps.filter((a) => a.gpuUuid === d.uuid).map((a) => a.process),
  }));
}

/** A header cell without its unit: `memory.used [MiB]` → `memory.used`. */
function columnName(headerCell: string): string {
  return headerCell.replace(/\s*\[[^\]]*\]\s*$/, '').trim();
}

function cellLookup(columns: readonly string[], row: readonly string[]): Cells {
  const byName = new Map<string, string>();
  columns.forEach((c, i) => {
    // The first column of a name wins, as the order a query lists them in is its preference.
    if (!byName.has(c)) byName.set(c, row[i] ?? '');
  });
  return (name) => byName.get(name);
}

/**
 * Splits nvidia-smi CSV into column names and rows of trimmed cells. nvidia-smi separates values
 * with ", " and never quotes, so a comma inside a value (a Chromium command line) is only ambiguous
 * when followed by a space; surplus cells are then joined back into the free-text column, if any.
 */
function readCsv(
  text: string,
  fields: readonly string[],
  format: CsvFormat,
  what: string,
  freeTextColumns: readonly string[] = [],
): { columns: string[]; rows: string[][] } {
  if (typeof text !== 'string') throw new GpuError('parse', `${what}: expected text, got ${typeof text}`);
  const lines = text
    .replace(/^\uFEFF/, '')
    .split(/\r?\n/)
    .filter((l) => l.trim() !== '');
  let columns = [...fields];
  if (format.header) {
    const header = lines.shift();
    if (header === undefined) return { columns, rows: [] };
    columns = header.split(',').map(columnName);
    if (fields.length > 0 && columns.length !== fields.length) {
      throw new GpuError(
        'parse',
        `${what}: header has ${columns.length} columns, ${fields.length} fields were asked for`,
      );
    }
  }
  if (columns.length === 0) throw new GpuError('parse', `${what}: no fields to read the values by`);
  const free = columns.findIndex((c) => freeTextColumns.includes(c));
  const rows = lines.map((line, n) => splitRow(line, columns.length, free, () => `${what}: line ${n + 1}`));
  return { columns, rows };
}

function splitRow(line: string, expected: number, freeText: number, where: () => string): string[] {
  let cells = line.split(', ');
  if (cells.length > expected && freeText >= 0) {
    const surplus = cells.length - expected;
    cells = [
      ...cells.slice(0, freeText),
      cells.slice(freeText, freeText + surplus + 1).join(', '),
      ...cells.slice(freeText + surplus + 1),
    ];
  }
  if (cells.length !== expected) {
    // Output written by something other than nvidia-smi may separate with a bare comma.
    const bare = line.split(',');
    if (bare.length !== expected) {
      throw new GpuError(
        'parse',
        `${where()} has ${cells.length} values, expected ${expected}: "${line.slice(0, 120)}"`,
      );
    }
    cells = bare;
  }
  return cells.map((c) => c.trim());
}
