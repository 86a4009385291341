import assert from 'node:assert/strict';
import { clockReasonNames } from '../../gpu/clock-reasons.js';

describe('clock event reasons', function () {
  it('names the bits NVML sets', function () {
    assert.deepEqual(clockReasonNames(0), []);
    assert.deepEqual(clockReasonNames(0x1), ['gpu_idle']);
    assert.deepEqual(clockReasonNames(0x4 | 0x40), ['sw_power_cap', 'hw_thermal_slowdown']);
    assert.deepEqual(clockReasonNames(0x1ffn), [
      'gpu_idle',
      'applications_clocks_setting',
      'sw_power_cap',
      'hw_slowdown',
      'sync_boost',
      'sw_thermal_slowdown',
      'hw_thermal_slowdown',
      'hw_power_brake_slowdown',
      'display_clock_setting',
    ]);
  });

  it('keeps bits it does not know instead of dropping them', function () {
    assert.deepEqual(clockReasonNames(0x1000n | 0x4n), ['sw_power_cap', 'bit_0x1000']);
  });
});
