/**
 * Helpers for the value strings nvidia-smi prints, in `-q -x` elements and in `--query-*` CSV cells.
 * A value nvidia-smi cannot give comes back as `undefined`, never 0, so "idle" and "unknown" stay apart.
 */

export const KIB = 1024;
export const MIB = 1024 * 1024;
export const GIB = 1024 * 1024 * 1024;

/**
 * nvidia-smi reports PCIe throughput in "KB/s" straight from NVML. NVIDIA's tools have long used K/M
 * for powers of two (memory was "MB" before it became "MiB"), so a PCIe "KB" is taken as 1024 bytes.
 */
export const PCIE_KB = 1024;

/**
 * The not-available wordings without brackets, lower-cased. The XML prints NVML's error strings bare
 * ("N/A", "Requested functionality has been deprecated"); the CSV wraps the same strings in brackets.
 */
const NOT_AVAILABLE = new Set(
  [
    'N/A',
    'NA',
    'Not Supported',
    'Not Available',
    'Requested functionality has been deprecated',
    'Unknown Error',
    'Insufficient Permissions',
    'No Permission',
    'GPU is lost',
    'Function Not Found',
    'Not Found',
    'No data',
    'Timeout',
    'Driver Not Loaded',
    'Uninitialized',
    'Invalid Argument',
    'Reset Required',
    'Memory Error',
    'Insufficient Size',
    'Insufficient Resources',
    'In use by another client',
    'Argument version mismatch',
    'Operation not supported',
  ].map((s) => s.toLowerCase()),
);

/**
 * True for every way nvidia-smi says it has no value: empty, any `[...]` cell (`[N/A]`,
 * `[Not Supported]`, `[Unknown Error]`, `[GPU is lost]`, `[Function Not Found]`, ...) and the same
 * wordings without brackets.
 */
export function isNotAvailable(raw: string): boolean {
  const s = raw.trim();
  if (s === '') return true;
  // A CSV cell is only ever bracketed when it carries an error or "not available" wording.
  if (s.startsWith('[') && s.endsWith(']')) return true;
  return NOT_AVAILABLE.has(s.toLowerCase());
}

/** The trimmed text, or undefined when there is none or it is a not-available form. */
export function cleanValue(raw: unknown): string | undefined {
  if (typeof raw !== 'string') return undefined;
  const s = raw.trim();
  return isNotAvailable(s) ? undefined : s;
}

export interface Quantity {
  value: number;
  /** The unit as printed (`MiB`, `W`, `KB/s`, `x`, ...); empty for a bare number (`nounits`). */
  unit: string;
}

const QUANTITY = /^([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*(\S.*)?$/;

/** A number with an optional unit after it, e.g. `81559 MiB`, `631.95 W`, `16x`, `7`. */
export function parseQuantity(raw: unknown): Quantity | undefined {
  const s = cleanValue(raw);
  if (s === undefined) return undefined;
  const m = QUANTITY.exec(s);
  if (!m) return undefined;
  const value = Number(m[1]);
  if (!Number.isFinite(value)) return undefined;
  return { value, unit: (m[2] ?? '').trim() };
}

/**
 * The value converted by the factor its unit has in `factors`; the `''` entry is the unit a bare
 * number is in. An unknown unit is undefined rather than a wrongly scaled number.
 */
function convert(raw: unknown, factors: Readonly<Record<string, number>>): number | undefined {
  const q = parseQuantity(raw);
  if (q === undefined) return undefined;
  const factor = Object.hasOwn(factors, q.unit) ? factors[q.unit] : undefined;
  return factor === undefined ? undefined : q.value * factor;
}

/** A plain number with no unit. */
export function parseNumber(raw: unknown): number | undefined {
  return convert(raw, { '': 1 });
}

/** A plain decimal integer (pid, index, count). */
export function parseInteger(raw: unknown): number | undefined {
  const s = cleanValue(raw);
  if (s === undefined || !/^[+-]?\d+$/.test(s)) return undefined;
  const n = Number(s);
  return Number.isSafeInteger(n) ? n : undefined;
}

const BYTE_FACTORS: Readonly<Record<string, number>> = {
  B: 1,
  KiB: KIB,
  MiB: MIB,
  GiB: GIB,
  TiB: GIB * 1024,
};

export type MemoryUnit = 'B' | 'KiB' | 'MiB' | 'GiB';

/**
 * A memory size in whole bytes. nvidia-smi prints memory in MiB (`81559 MiB`, or `81559` with
 * `nounits`), so that is what a bare number is taken to be unless `bareUnit` says otherwise.
 */
export function parseBytes(raw: unknown, bareUnit: MemoryUnit = 'MiB'): number | undefined {
  const v = convert(raw, { ...BYTE_FACTORS, '': BYTE_FACTORS[bareUnit] ?? MIB });
  return v === undefined ? undefined : Math.round(v);
}

/** A memory size in MiB, as nvidia-smi prints it. */
export function parseMiB(raw: unknown): number | undefined {
  const bytes = parseBytes(raw);
  return bytes === undefined ? undefined : bytes / MIB;
}

export function mibToBytes(mib: number): number {
  return Math.round(mib * MIB);
}

export function bytesToMiB(bytes: number): number {
  return bytes / MIB;
}

/** Power in watts (`631.95 W`). */
export function parseWatts(raw: unknown): number | undefined {
  return convert(raw, { '': 1, W: 1, mW: 1e-3, kW: 1e3 });
}

/** A clock in MHz (`1980 MHz`). */
export function parseMegahertz(raw: unknown): number | undefined {
  return convert(raw, { '': 1, MHz: 1, GHz: 1e3, kHz: 1e-3, Hz: 1e-6 });
}

/** A temperature in degrees Celsius (`59 C`). */
export function parseCelsius(raw: unknown): number | undefined {
  return convert(raw, { '': 1, C: 1, '°C': 1 });
}

/** A percentage (`100 %`), also used for utilization and fan speed. */
export function parsePercent(raw: unknown): number | undefined {
  return convert(raw, { '': 1, '%': 1 });
}

/** A duration in microseconds (`0 us`), as the clock event reason counters print it. */
export function parseMicroseconds(raw: unknown): number | undefined {
  return convert(raw, { '': 1, us: 1, ns: 1e-3, ms: 1e3, s: 1e6 });
}

/** A PCIe throughput (`1234 KB/s`) in bytes per second; see {@link PCIE_KB}. */
export function parseThroughputBytesPerSecond(raw: unknown): number | undefined {
  const v = convert(raw, {
    '': PCIE_KB,
    'KB/s': PCIE_KB,
    'MB/s': PCIE_KB * PCIE_KB,
    'GB/s': PCIE_KB * PCIE_KB * PCIE_KB,
    'B/s': 1,
  });
  return v === undefined ? undefined : Math.round(v);
}

/** A PCIe link width, printed `16x` in the XML and `16` in the CSV. */
export function parseLinkWidth(raw: unknown): number | undefined {
  const v = convert(raw, { '': 1, x: 1 });
  return v !== undefined && Number.isInteger(v) ? v : undefined;
}

/** A hex bitmask such as `0x0000000000000004`; a bigint because NVML masks are 64-bit. */
export function parseHexMask(raw: unknown): bigint | undefined {
  const s = cleanValue(raw);
  if (s === undefined || !/^0x[0-9a-f]+$/i.test(s)) return undefined;
  return BigInt(s);
}

/** `Enabled`/`Disabled` (also `Yes`/`No`) as a boolean. */
export function parseEnabled(raw: unknown): boolean | undefined {
  const s = cleanValue(raw)?.toLowerCase();
  if (s === 'enabled' || s === 'yes' || s === 'on') return true;
  if (s === 'disabled' || s === 'no' || s === 'off') return false;
  return undefined;
}

/** `Active`/`Not Active`, as clock event reasons are printed one by one. */
export function parseActive(raw: unknown): boolean | undefined {
  const s = cleanValue(raw)?.toLowerCase();
  if (s === 'active') return true;
  if (s === 'not active') return false;
  return undefined;
}
