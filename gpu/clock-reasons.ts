/**
 * Clock event (throttle) reasons: NVML's bitmask values (nvmlClocksEventReason*, formerly
 * nvmlClocksThrottleReason*, same bits) and the snake_case names nvidia-smi uses in `-q -x` tags and
 * `clocks_event_reasons.*` query fields. Every backend reports reasons by these names.
 */
export const CLOCK_EVENT_REASONS: readonly { bit: number; name: string }[] = [
  { bit: 0x1, name: 'gpu_idle' },
  { bit: 0x2, name: 'applications_clocks_setting' },
  { bit: 0x4, name: 'sw_power_cap' },
  { bit: 0x8, name: 'hw_slowdown' },
  { bit: 0x10, name: 'sync_boost' },
  { bit: 0x20, name: 'sw_thermal_slowdown' },
  { bit: 0x40, name: 'hw_thermal_slowdown' },
  { bit: 0x80, name: 'hw_power_brake_slowdown' },
  { bit: 0x100, name: 'display_clock_setting' },
];

/** Names of the reasons set in `mask`; bits this table does not know are reported as `bit_0xN`. */
export function clockReasonNames(mask: bigint | number): string[] {
  const m = BigInt(mask);
  const names: string[] = [];
  let known = 0n;
  for (const r of CLOCK_EVENT_REASONS) {
    known |= BigInt(r.bit);
    if (m & BigInt(r.bit)) names.push(r.name);
  }
  for (let bit = 1n, rest = m & ~known; rest !== 0n; bit <<= 1n) {
    if (rest & bit) {
      names.push(`bit_0x${bit.toString(16)}`);
      rest &= ~bit;
    }
  }
  return names;
}
