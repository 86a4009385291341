import assert from 'node:assert/strict';
import {
  DCGM_FIELDS,
  DCGM_FIELDS_BY_NAME,
  DCGM_PROFILING_FIELD_IDS,
  DEFAULT_DMON_FIELD_IDS,
  dcgmDevice,
  dcgmNumber,
  dcgmString,
} from '../../gpu/parsers/dcgm-fields.js';

const MIB = 1024 * 1024;

describe('DCGM field table', function () {
  it('uses the ids dcgm_fields.h gives these names (DCGM 4.6, same in 3.3.5)', function () {
    // Read off NVIDIA/DCGM dcgmlib/dcgm_fields.h at the DCGM 4.6.0 commit 72fa3fe.
    const header: Record<string, number> = {
      DCGM_FI_DEV_MIG_MODE: 67,
      DCGM_FI_DEV_SM_CLOCK: 100,
      DCGM_FI_DEV_MEM_CLOCK: 101,
      DCGM_FI_DEV_CLOCK_THROTTLE_REASONS: 112,
      DCGM_FI_DEV_MAX_SM_CLOCK: 113,
      DCGM_FI_DEV_MAX_MEM_CLOCK: 114,
      DCGM_FI_DEV_MEMORY_TEMP: 140,
      DCGM_FI_DEV_GPU_TEMP: 150,
      DCGM_FI_DEV_POWER_USAGE: 155,
      DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION: 156,
      DCGM_FI_DEV_POWER_MGMT_LIMIT: 160,
      DCGM_FI_DEV_ENFORCED_POWER_LIMIT: 164,
      DCGM_FI_DEV_PSTATE: 190,
      DCGM_FI_DEV_FAN_SPEED: 191,
      DCGM_FI_DEV_PCIE_TX_THROUGHPUT: 200,
      DCGM_FI_DEV_PCIE_RX_THROUGHPUT: 201,
      DCGM_FI_DEV_GPU_UTIL: 203,
      DCGM_FI_DEV_MEM_COPY_UTIL: 204,
      DCGM_FI_DEV_ENC_UTIL: 206,
      DCGM_FI_DEV_DEC_UTIL: 207,
      DCGM_FI_DEV_XID_ERRORS: 230,
      DCGM_FI_DEV_PCIE_LINK_GEN: 237,
      DCGM_FI_DEV_PCIE_LINK_WIDTH: 238,
      DCGM_FI_DEV_FB_TOTAL: 250,
      DCGM_FI_DEV_FB_FREE: 251,
      DCGM_FI_DEV_FB_USED: 252,
      DCGM_FI_DEV_FB_RESERVED: 253,
      DCGM_FI_DEV_ECC_SBE_VOL_TOTAL: 310,
      DCGM_FI_DEV_ECC_DBE_VOL_TOTAL: 311,
      DCGM_FI_PROF_GR_ENGINE_ACTIVE: 1001,
      DCGM_FI_PROF_SM_ACTIVE: 1002,
      DCGM_FI_PROF_SM_OCCUPANCY: 1003,
      DCGM_FI_PROF_PIPE_TENSOR_ACTIVE: 1004,
      DCGM_FI_PROF_DRAM_ACTIVE: 1005,
      DCGM_FI_PROF_PCIE_TX_BYTES: 1009,
      DCGM_FI_PROF_PCIE_RX_BYTES: 1010,
      // DCGM 4.6 names for the same ids.
      DCGM_FI_DEV_GPU_UTIL_RATIO: 203,
      DCGM_FI_DEV_BOARD_POWER_WATTS: 155,
      DCGM_FI_DEV_GPU_TEMP_CELSIUS: 150,
      DCGM_FI_DEV_XID_ERROR: 230,
      DCGM_FI_PROF_SM_UTIL_RATIO: 1002,
    };
    for (const [name, id] of Object.entries(header)) {
      assert.equal(DCGM_FIELDS_BY_NAME.get(name)?.id, id, name);
    }
    assert.equal(DCGM_FIELDS.length, new Set(DCGM_FIELDS.map((f) => f.id)).size, 'ids are unique');
    assert.equal(
      DCGM_FIELDS.length,
      new Set(DCGM_FIELDS.map((f) => f.shortName)).size,
      'short names are unique',
    );
    for (const id of DEFAULT_DMON_FIELD_IDS)
      assert.ok(
        DCGM_FIELDS.some((f) => f.id === id),
        `field ${id}`,
      );
    assert.deepEqual(DCGM_PROFILING_FIELD_IDS, [1001, 1002, 1003, 1004, 1005, 1009, 1010]);
  });

  it('converts units: MiB to bytes, mJ to J, KB/s to B/s, bitmask to names, P-state', function () {
    const values = new Map<number, number>([
      [250, 81920],
      [252, 1024],
      [253, 912],
      [156, 123456789],
      [200, 2],
      [112, 0x4 | 0x1],
      [190, 0],
      [160, 400],
      [164, 350],
    ]);
    const d = dcgmDevice({ index: 2, uuid: 'GPU-x', name: 'NVIDIA A100-SXM4-80GB' }, values, 5);
    assert.deepEqual(d.memory, {
      totalBytes: 81920 * MIB,
      usedBytes: 1024 * MIB,
      freeBytes: (81920 - 1024 - 912) * MIB,
      reservedBytes: 912 * MIB,
    });
    assert.equal(d.energyJoules, 123456.789);
    assert.deepEqual(d.pcie, { txBytesPerSecond: 2048 });
    assert.deepEqual(d.throttleReasons, ['gpu_idle', 'sw_power_cap']);
    assert.equal(d.performanceState, 'P0');
    assert.equal(d.powerLimitW, 400, 'the requested limit wins over the enforced one');
    const unknownPstate = dcgmDevice({ index: 0 }, new Map([[190, 32]]), 0);
    assert.equal(unknownPstate.performanceState, undefined);
  });

  it('treats DCGM blanks as missing', function () {
    assert.equal(dcgmNumber(Number('9223372036854775792')), undefined);
    assert.equal(dcgmNumber(140737488355328), undefined);
    assert.equal(dcgmNumber(NaN), undefined);
    assert.equal(dcgmNumber(0), 0);
    assert.equal(dcgmString('<<<NULL>>>'), undefined);
    assert.equal(dcgmString('<<<NOT_SUPPORTED>>>'), undefined);
    assert.equal(dcgmString(' N/A '), undefined);
    assert.equal(dcgmString(' NVIDIA L4 '), 'NVIDIA L4');
  });
});
