import assert from 'node:assert/strict';
import { GpuError } from '../../gpu/errors.js';
import { parseNvidiaSmiXml } from '../../gpu/parsers/nvidia-smi-xml.js';
import type { GpuDevice } from '../../gpu/types.js';
import { realFixture, realFixtureNames } from '../helpers/fixtures.js';

const MIB = 1024 * 1024;

/** The readings a test compares, memory in MiB and PCIe in KB/s as the files print them. */
interface Summary {
  uuid: string;
  name: string;
  pciBusId: string | undefined;
  /** total, used, free, reserved */
  mib: [number, number, number, number | undefined];
  /** gpu, memory, encoder, decoder */
  util: [number | undefined, number | undefined, number | undefined, number | undefined];
  tempC: number | undefined;
  memTempC: number | undefined;
  powerW: number | undefined;
  powerLimitW: number | undefined;
  /** sm, mem, max sm, max mem */
  clocks: [number | undefined, number | undefined, number | undefined, number | undefined];
  reasons: string[] | undefined;
  ecc: { corrected?: number; uncorrected?: number } | undefined;
  fan: number | undefined;
  pstate: string | undefined;
  /** generation, width, tx KB/s, rx KB/s; undefined when the file has none of them */
  pcie: [number | undefined, number | undefined, number | undefined, number | undefined] | undefined;
  serial: string | undefined;
  vbios: string | undefined;
  mig: boolean | undefined;
  procs: number;
}

interface ProcExpect {
  pid: number;
  name: string;
  type: string;
  usedMiB: number | undefined;
}

interface FixtureExpect {
  file: string;
  driver: string;
  cuda: string;
  gpus: (Summary & { proc?: ProcExpect })[];
}

function summarize(d: GpuDevice): Summary {
  const mib = (b: number | undefined): number | undefined => (b === undefined ? undefined : b / MIB);
  const kb = (b: number | undefined): number | undefined => (b === undefined ? undefined : b / 1024);
  return {
    uuid: d.uuid,
    name: d.name,
    pciBusId: d.pciBusId,
    mib: [
      d.memory.totalBytes / MIB,
      d.memory.usedBytes / MIB,
      d.memory.freeBytes / MIB,
      mib(d.memory.reservedBytes),
    ],
    util: [d.utilization.gpuPercent, d.utilization.memoryPercent, d.encoderPercent, d.decoderPercent],
    tempC: d.temperatureC,
    memTempC: d.memoryTemperatureC,
    powerW: d.powerW,
    powerLimitW: d.powerLimitW,
    clocks: [d.smClockMHz, d.memClockMHz, d.maxSmClockMHz, d.maxMemClockMHz],
    reasons: d.throttleReasons,
    ecc: d.eccErrors,
    fan: d.fanPercent,
    pstate: d.performanceState,
    pcie: d.pcie && [
      d.pcie.linkGeneration,
      d.pcie.linkWidth,
      kb(d.pcie.txBytesPerSecond),
      kb(d.pcie.rxBytesPerSecond),
    ],
    serial: d.serial,
    vbios: d.vbiosVersion,
    mig: d.mig?.enabled,
    procs: d.processes.length,
  };
}

const U = undefined;
const IDLE = ['gpu_idle'];
const REDACTED_UUID = 'GPU-12345678-aaaa-bbbb-cccc-0123456789ab';
const LLAMA = '/root/src/llama.cpp/build/bin/llama-server';

/** Read off each file by hand. */
const EXPECTED: FixtureExpect[] = [
  {
    file: 'nvidia-smi-q-x_2x-rtx-2080_driver-590.44.01_dtd-v13.xml',
    driver: '590.44.01',
    cuda: '13.1',
    gpus: [
      {
        uuid: REDACTED_UUID,
        name: 'NVIDIA GeForce RTX 2080',
        pciBusId: '00000000:01:00.0',
        mib: [8192, 1, 7786, 406],
        util: [0, 0, 0, 0],
        tempC: 15,
        memTempC: U,
        // Turing: average_power_draw is N/A, instant_power_draw is the reading.
        powerW: 1,
        powerLimitW: 215,
        clocks: [300, 405, 2160, 7000],
        reasons: IDLE,
        ecc: U,
        fan: 31,
        pstate: 'P8',
        pcie: [1, 8, 341, 341],
        serial: U,
        vbios: '90.04.0B.00.8F',
        mig: U,
        procs: 0,
      },
      {
        uuid: REDACTED_UUID,
        name: 'NVIDIA GeForce RTX 2080',
        pciBusId: '00000000:02:00.0',
        mib: [8192, 1, 7786, 406],
        util: [0, 0, 0, 0],
        tempC: 15,
        memTempC: U,
        powerW: 1.62,
        powerLimitW: 215,
        clocks: [300, 405, 2160, 7000],
        reasons: IDLE,
        ecc: U,
        fan: 32,
        pstate: 'P8',
        pcie: [1, 8, 341, 341],
        serial: U,
        vbios: '90.04.0B.00.8F',
        mig: U,
        procs: 0,
      },
    ],
  },
  {
    file: 'nvidia-smi-q-x_2x-rtx-a5000_driver-590.44.01_dtd-v13_procs.xml',
    driver: '590.44.01',
    cuda: '13.1',
    gpus: [
      {
        uuid: 'GPU-12345678-aaaa-bbbb-cccc-0123456789ab',
        name: 'NVIDIA RTX A5000',
        pciBusId: '00000000:81:00.0',
        mib: [24564, 22437, 1678, 450],
        util: [0, 0, 0, 0],
        tempC: 13,
        memTempC: U,
        powerW: 6.41,
        powerLimitW: 230,
        clocks: [210, 405, 2100, 8001],
        reasons: IDLE,
        ecc: U,
        fan: 30,
        pstate: 'P8',
        pcie: [1, 16, 488, 439],
        serial: '0123456789012',
        vbios: '94.02.6D.00.0D',
        mig: U,
        procs: 1,
        proc: { pid: 100477, name: LLAMA, type: 'C', usedMiB: 22430 },
      },
      {
        uuid: 'GPU-12345678-aaaa-bbbb-cccc-0123456789cd',
        name: 'NVIDIA RTX A5000',
        pciBusId: '00000000:C1:00.0',
        mib: [24564, 17253, 6862, 450],
        util: [0, 0, 0, 0],
        tempC: 15,
        memTempC: U,
        powerW: 13.6,
        powerLimitW: 230,
        clocks: [210, 405, 2100, 8001],
        reasons: IDLE,
        ecc: U,
        fan: 30,
        pstate: 'P8',
        pcie: [1, 16, 439, 488],
        serial: '1234567890123',
        vbios: '94.02.6D.00.0D',
        mig: U,
        procs: 1,
        proc: { pid: 100477, name: LLAMA, type: 'C', usedMiB: 17246 },
      },
    ],
  },
  {
    file: 'nvidia-smi-q-x_a100-sxm4-40gb_mig-enabled_driver-510.47.03_dtd-v11.xml',
    driver: '510.47.03',
    cuda: '11.6',
    gpus: [
      {
        uuid: 'GPU-27b94a00-ed54-5c24-b1fd-1054085de32a',
        name: 'NVIDIA A100-SXM4-40GB',
        pciBusId: '00000000:00:04.0',
        mib: [40960, 38, 40315, 605],
        // Under MIG the whole-GPU utilization is N/A.
        util: [U, U, U, U],
        tempC: 36,
        memTempC: 44,
        powerW: 66.92,
        powerLimitW: 400,
        clocks: [1410, 1215, 1410, 1215],
        reasons: [],
        ecc: { corrected: 0, uncorrected: 0 },
        fan: U,
        pstate: 'P0',
        pcie: [4, 16, 0, 0],
        serial: '1324321002473',
        vbios: '92.00.45.00.03',
        mig: true,
        procs: 0,
      },
    ],
  },
  {
    file: 'nvidia-smi-q-x_a10g_driver-515.105.01_dtd-v11_procs.xml',
    driver: '515.105.01',
    cuda: '11.7',
    gpus: [
      {
        uuid: 'GPU-9a9a6c50-2a47-2f51-a902-b82c3b127e94',
        name: 'NVIDIA A10G',
        pciBusId: '00000000:00:1E.0',
        mib: [23028, 22, 22569, 435],
        util: [0, 0, 0, 0],
        tempC: 17,
        memTempC: U,
        powerW: 25.58,
        powerLimitW: 300,
        clocks: [210, 405, 1710, 6251],
        reasons: IDLE,
        ecc: { corrected: 0, uncorrected: 0 },
        fan: 0,
        pstate: 'P8',
        pcie: [1, 8, 0, 0],
        serial: '0000000000000',
        vbios: '94.02.75.00.01',
        mig: U,
        procs: 1,
        proc: { pid: 725, name: '/usr/lib/xorg/Xorg', type: 'G', usedMiB: 22 },
      },
    ],
  },
  {
    file: 'nvidia-smi-q-x_grid-p4-1q-vgpu_windows_driver-513.46_dtd-v11_13procs.xml',
    driver: '513.46',
    cuda: '11.6',
    gpus: [
      {
        uuid: 'GPU-1b1ea7c7-1c4b-ed49-1c72-26c65f2dd207',
        name: 'GRID P4-1Q',
        pciBusId: '00000000:00:0B.0',
        mib: [1024, 807, 106, 110],
        util: [0, 0, 0, 0],
        // The guest prints "0 C" and "0 MHz" for sensors it cannot see.
        tempC: U,
        memTempC: U,
        powerW: U,
        powerLimitW: U,
        clocks: [U, U, U, U],
        // <clocks_throttle_reasons>N/A</clocks_throttle_reasons>
        reasons: U,
        ecc: U,
        fan: U,
        pstate: 'P8',
        pcie: U,
        serial: U,
        vbios: '00.00.00.00.00',
        mig: U,
        procs: 13,
        proc: { pid: 15104, name: 'C:\\Windows\\explorer.exe', type: 'C+G', usedMiB: U },
      },
    ],
  },
  {
    file: 'nvidia-smi-q-x_gt-1030_driver-470.74_dtd-v11_10procs.xml',
    driver: '470.74',
    cuda: '11.4',
    gpus: [
      {
        uuid: 'GPU-857c6374-f681-cf3a-f99f-9063a87b8ac0',
        name: 'NVIDIA GeForce GT 1030',
        pciBusId: '00000000:2D:00.0',
        // No <reserved>: used includes the driver's share, used + free = total.
        mib: [1998, 875, 1123, U],
        util: [0, 3, U, 0],
        tempC: 36,
        memTempC: U,
        powerW: U,
        powerLimitW: 30,
        clocks: [1265, 3003, 1949, 3004],
        reasons: IDLE,
        ecc: U,
        fan: 35,
        pstate: 'P0',
        pcie: [3, 4, 53000, 1000],
        serial: U,
        vbios: '86.08.24.00.23',
        mig: U,
        procs: 10,
        // "0 MiB" is a reading, not N/A.
        proc: { pid: 746, name: '/usr/bin/kded5', type: 'G', usedMiB: 0 },
      },
    ],
  },
  {
    file: 'nvidia-smi-q-x_quadro-p400_driver-418.43_dtd-v10-era_no-doctype.xml',
    driver: '418.43',
    cuda: '10.1',
    gpus: [
      {
        uuid: 'GPU-8f750be4-dfbc-23b9-b33f-da729a536494',
        name: 'Quadro P400',
        pciBusId: '00000000:43:00.0',
        mib: [1998, 0, 1998, U],
        util: [0, 3, 0, 0],
        tempC: 33,
        memTempC: U,
        powerW: U,
        powerLimitW: U,
        clocks: [139, 405, 1252, 2005],
        reasons: IDLE,
        ecc: U,
        fan: 34,
        pstate: 'P8',
        pcie: [1, 16, 0, 0],
        serial: '0424418054852',
        vbios: '86.07.3B.00.4A',
        // No <mig_mode> at all in this schema.
        mig: U,
        procs: 0,
      },
    ],
  },
  {
    file: 'nvidia-smi-q-x_rtx-3080_windows_driver-536.40_dtd-v12_procs.xml',
    driver: '536.40',
    cuda: '12.2',
    gpus: [
      {
        uuid: 'GPU-19d6d965-2acc-f646-00f8-4c76979aabb4',
        name: 'NVIDIA GeForce RTX 3080',
        pciBusId: '00000000:04:00.0',
        mib: [10240, 1128, 8938, 173],
        util: [0, 37, 0, 0],
        tempC: 31,
        memTempC: U,
        powerW: 22.78,
        // <current_power_limit>, the v12 name of the enforced limit.
        powerLimitW: 336,
        clocks: [210, 405, 2100, 9501],
        reasons: IDLE,
        ecc: U,
        fan: 0,
        pstate: 'P8',
        pcie: [4, 16, 1000, 6000],
        serial: U,
        vbios: '94.02.71.40.72',
        mig: U,
        procs: 5,
        proc: { pid: 4044, name: '/usr/lib/firefox/firefox', type: 'G', usedMiB: 541 },
      },
    ],
  },
  {
    file: 'nvidia-smi-q-x_rtx-3090_driver-525.147.05_dtd-v12.xml',
    driver: '525.147.05',
    cuda: '12.0',
    gpus: [
      {
        uuid: REDACTED_UUID,
        name: 'NVIDIA GeForce RTX 3090',
        pciBusId: '00000000:00:10.0',
        mib: [24576, 1, 24258, 316],
        util: [0, 0, 0, 0],
        tempC: 37,
        memTempC: U,
        powerW: 27.23,
        // enforced_power_limit (200), not the 350 W default.
        powerLimitW: 200,
        // Bare metal at idle really reports a 0 MHz SM clock; only vGPU guests' zeros are hidden.
        clocks: [0, 405, 2100, 9751],
        reasons: IDLE,
        ecc: U,
        fan: 0,
        pstate: 'P8',
        pcie: [1, 16, 0, 0],
        serial: U,
        vbios: '94.02.71.40.72',
        mig: U,
        procs: 0,
      },
    ],
  },
  {
    file: 'nvidia-smi-q-x_rtx-3090_driver-590.44.01_dtd-v13.xml',
    driver: '590.44.01',
    cuda: '13.1',
    gpus: [
      {
        uuid: REDACTED_UUID,
        name: 'NVIDIA GeForce RTX 3090',
        pciBusId: '00000000:09:00.0',
        mib: [24576, 7, 24120, 450],
        util: [0, 1, 0, 0],
        tempC: 32,
        memTempC: U,
        // average_power_draw (instant is 35.15).
        powerW: 35.06,
        powerLimitW: 350,
        clocks: [210, 405, 2100, 9751],
        reasons: ['sw_power_cap'],
        ecc: U,
        fan: 0,
        pstate: 'P8',
        pcie: [1, 16, 488, 439],
        serial: U,
        vbios: '94.02.26.48.1B',
        mig: U,
        procs: 0,
      },
    ],
  },
  {
    file: 'nvidia-smi-q-x_rtx-4000-sff-ada_driver-595.84_dtd-v13_procs.xml',
    driver: '595.84',
    cuda: '13.2',
    gpus: [
      {
        uuid: 'GPU-37037c3f-65c8-ec4d-24a9-420204ad8026',
        name: 'NVIDIA RTX 4000 SFF Ada Generation',
        pciBusId: '00000000:06:00.0',
        mib: [20475, 3534, 16482, 460],
        util: [0, 37, 0, 0],
        tempC: 38,
        memTempC: U,
        powerW: 8.81,
        powerLimitW: 70,
        clocks: [210, 405, 3105, 7001],
        reasons: IDLE,
        ecc: U,
        fan: 30,
        pstate: 'P8',
        pcie: [1, 16, 830, 439],
        serial: 'REDACTED',
        vbios: '95.04.53.00.01',
        mig: U,
        procs: 4,
        proc: { pid: 4937, name: 'python', type: 'C', usedMiB: 160 },
      },
    ],
  },
  {
    file: 'nvidia-smi-q-x_rtx-4090_driver-535.86.05_dtd-v12.xml',
    driver: '535.86.05',
    cuda: '12.2',
    gpus: [
      {
        uuid: 'GPU-71d1acc2-662d-2166-bf9f-65272d2fc437',
        name: 'NVIDIA GeForce RTX 4090',
        pciBusId: '00000000:84:00.0',
        mib: [24564, 2, 24214, 346],
        util: [0, 0, 0, 0],
        tempC: 40,
        memTempC: U,
        powerW: 26.84,
        powerLimitW: 450,
        clocks: [210, 405, 3120, 10501],
        reasons: IDLE,
        ecc: U,
        fan: 0,
        pstate: 'P8',
        pcie: [1, 16, 0, 0],
        serial: U,
        vbios: '95.02.18.80.5F',
        mig: U,
        procs: 0,
      },
    ],
  },
  {
    file: 'nvidia-smi-q-x_rtx-pro-6000-blackwell-maxq_driver-590.44.01_dtd-v13_procs.xml',
    driver: '590.44.01',
    cuda: '13.1',
    gpus: [
      {
        uuid: REDACTED_UUID,
        name: 'NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition',
        pciBusId: '00000000:61:00.0',
        mib: [97887, 65720, 31531, 637],
        util: [0, 0, 0, 0],
        tempC: 24,
        memTempC: U,
        powerW: 3.97,
        powerLimitW: 300,
        clocks: [180, 405, 3090, 14001],
        reasons: [],
        ecc: U,
        fan: 30,
        pstate: 'P8',
        pcie: [1, 16, 528, 485],
        serial: '0123456789012',
        vbios: '98.02.6A.00.03',
        mig: U,
        procs: 1,
        proc: { pid: 116860, name: LLAMA, type: 'C', usedMiB: 65710 },
      },
    ],
  },
  {
    file: 'nvidia-smi-q-x_tesla-p100-pcie-16gb_driver-510.47.03_dtd-v11.xml',
    driver: '510.47.03',
    cuda: '11.6',
    gpus: [
      {
        uuid: 'GPU-d3da8716-eaab-75db-efc1-60e88e1cd55e',
        name: 'Tesla P100-PCIE-16GB',
        pciBusId: '00000000:00:04.0',
        mib: [16384, 0, 16280, 103],
        util: [0, 0, 0, 0],
        tempC: 38,
        memTempC: U,
        powerW: 26.16,
        powerLimitW: 250,
        clocks: [405, 715, 1328, 715],
        reasons: IDLE,
        // Pascal layout: single_bit/total 3, double_bit/total 0.
        ecc: { corrected: 3, uncorrected: 0 },
        fan: U,
        pstate: 'P0',
        pcie: [3, 16, 0, 0],
        serial: '0324217145110',
        vbios: '86.00.52.00.02',
        mig: U,
        procs: 0,
      },
    ],
  },
  {
    file: 'nvidia-smi-q-x_tesla-t4_driver-515.105.01_dtd-v11_procs.xml',
    driver: '515.105.01',
    cuda: '11.7',
    gpus: [
      {
        uuid: 'GPU-d37e67a5-91dd-3774-a5cb-99096249601a',
        name: 'Tesla T4',
        pciBusId: '00000000:00:1E.0',
        mib: [15360, 1032, 13939, 388],
        util: [0, 0, 0, 0],
        tempC: 40,
        memTempC: U,
        powerW: 26.78,
        powerLimitW: 70,
        clocks: [585, 5000, 1590, 5001],
        reasons: [],
        ecc: { corrected: 0, uncorrected: 0 },
        fan: U,
        pstate: 'P0',
        pcie: [3, 8, 0, 0],
        serial: '0000000000000',
        vbios: '90.04.84.00.06',
        mig: U,
        procs: 2,
        proc: { pid: 5762, name: 'python', type: 'C', usedMiB: 1005 },
      },
    ],
  },
  {
    file: 'nvidia-smi-q-x_tesla-t4_windows_driver-512.78_dtd-v11_15procs.xml',
    driver: '512.78',
    cuda: '11.6',
    gpus: [
      {
        uuid: 'GPU-f6e826dc-c9d7-ac58-6d5d-9048c9e1c124',
        name: 'Tesla T4',
        pciBusId: '00000000:01:00.0',
        mib: [15360, 276, 14882, 201],
        util: [0, 0, 0, 0],
        tempC: 31,
        memTempC: U,
        powerW: 13.08,
        powerLimitW: 70,
        clocks: [22, 56, 1590, 5001],
        reasons: IDLE,
        ecc: { corrected: 0, uncorrected: 0 },
        fan: U,
        pstate: 'P8',
        pcie: [3, 16, 0, 0],
        serial: '1562520014486',
        vbios: '90.04.38.00.03',
        mig: U,
        procs: 15,
        // WDDM: the OS manages GPU memory, so used_memory is N/A.
        proc: {
          pid: 10380,
          name: 'C:\\Windows\\SystemApps\\Microsoft.Windows.Search_cw5n1h2txyewy\\SearchApp.exe',
          type: 'C+G',
          usedMiB: U,
        },
      },
    ],
  },
];

function parseError(fn: () => unknown): void {
  assert.throws(fn, (err: unknown) => err instanceof GpuError && err.category === 'parse');
}

describe('parseNvidiaSmiXml', function () {
  it('has an expectation for every -q -x capture', function () {
    assert.deepEqual(
      EXPECTED.map((e) => e.file),
      realFixtureNames(/^nvidia-smi-q-x_.*\.xml$/),
    );
  });

  for (const expected of EXPECTED) {
    it(`reads ${expected.file}`, function () {
      const report = parseNvidiaSmiXml(realFixture(expected.file));
      assert.equal(report.driverVersion, expected.driver);
      assert.equal(report.cudaVersion, expected.cuda);
      assert.equal(report.devices.length, expected.gpus.length);
      expected.gpus.forEach(({ proc, ...gpu }, i) => {
        const device = report.devices[i]!;
        assert.equal(device.index, i);
        assert.deepStrictEqual(summarize(device), gpu, `GPU ${i}`);
        if (proc) {
          const p = device.processes.find((x) => x.pid === proc.pid);
          assert.ok(p, `process ${proc.pid}`);
          assert.deepStrictEqual(
            {
              pid: p.pid,
              name: p.name,
              type: p.type,
              usedMiB: p.usedBytes === undefined ? U : p.usedBytes / MIB,
            },
            proc,
          );
        }
      });
    });
  }

  it('numbers GPUs by their place in the file, not by minor_number', function () {
    // In this capture the first <gpu> has minor_number 1 and the second 0.
    const xml = realFixture('nvidia-smi-q-x_2x-rtx-a5000_driver-590.44.01_dtd-v13_procs.xml');
    assert.match(xml, /<minor_number>1<\/minor_number>[\s\S]*<minor_number>0<\/minor_number>/);
    const { devices } = parseNvidiaSmiXml(xml);
    assert.deepEqual(
      devices.map((d) => [d.index, d.pciBusId]),
      [
        [0, '00000000:81:00.0'],
        [1, '00000000:C1:00.0'],
      ],
    );
  });

  it('reads MIG instances with their ids, SM count and memory', function () {
    const { devices } = parseNvidiaSmiXml(
      realFixture('nvidia-smi-q-x_a100-sxm4-40gb_mig-enabled_driver-510.47.03_dtd-v11.xml'),
    );
    const mem = { totalBytes: 19968 * MIB, usedBytes: 19 * MIB, freeBytes: 19948 * MIB };
    assert.deepStrictEqual(devices[0]!.mig, {
      enabled: true,
      instances: [
        { gpuInstanceId: 1, computeInstanceId: 0, index: 0, smCount: 42, memory: mem },
        { gpuInstanceId: 2, computeInstanceId: 0, index: 1, smCount: 42, memory: mem },
      ],
    });
  });

  it('keeps reserved memory apart from used where the driver reports it', function () {
    const { devices } = parseNvidiaSmiXml(
      realFixture('nvidia-smi-q-x_rtx-pro-6000-blackwell-maxq_driver-590.44.01_dtd-v13_procs.xml'),
    );
    const m = devices[0]!.memory;
    // 637 + 65720 + 31531 = 97888: the driver rounds each figure to the MiB.
    assert.ok(Math.abs(m.totalBytes - (m.reservedBytes! + m.usedBytes + m.freeBytes)) <= MIB);
  });

  it('gives raw as plain JSON with repeated elements always as arrays', function () {
    const single = parseNvidiaSmiXml(realFixture('nvidia-smi-q-x_a10g_driver-515.105.01_dtd-v11_procs.xml'));
    const raw = single.raw as { nvidia_smi_log: { gpu: Record<string, unknown>[] } };
    assert.equal(Array.isArray(raw.nvidia_smi_log.gpu), true);
    const gpu = raw.nvidia_smi_log.gpu[0]!;
    assert.deepEqual(gpu['$'], { id: '00000000:00:1E.0' });
    assert.deepEqual(gpu['processes'], {
      process_info: [
        {
          gpu_instance_id: 'N/A',
          compute_instance_id: 'N/A',
          pid: '725',
          type: 'G',
          process_name: '/usr/lib/xorg/Xorg',
          used_memory: '22 MiB',
        },
      ],
    });
    assert.deepEqual(JSON.parse(JSON.stringify(single.raw)), single.raw);
    const mig = parseNvidiaSmiXml(
      realFixture('nvidia-smi-q-x_a100-sxm4-40gb_mig-enabled_driver-510.47.03_dtd-v11.xml'),
    );
    const migRaw = mig.raw as { nvidia_smi_log: { gpu: { mig_devices: { mig_device: unknown[] } }[] } };
    assert.equal(migRaw.nvidia_smi_log.gpu[0]!.mig_devices.mig_device.length, 2);
  });

  it('gives the same devices when the supported clocks table is skipped', function () {
    for (const file of EXPECTED.map((e) => e.file)) {
      const xml = realFixture(file);
      const full = parseNvidiaSmiXml(xml);
      const light = parseNvidiaSmiXml(xml, { supportedClocks: false });
      assert.deepStrictEqual(light.devices, full.devices, file);
      const gpus = (light.raw as { nvidia_smi_log: { gpu: Record<string, unknown>[] } }).nvidia_smi_log.gpu;
      assert.ok(
        gpus.every((g) => !('supported_clocks' in g)),
        file,
      );
    }
    const blackwell = parseNvidiaSmiXml(
      realFixture('nvidia-smi-q-x_rtx-pro-6000-blackwell-maxq_driver-590.44.01_dtd-v13_procs.xml'),
    );
    const [gpu] = (
      blackwell.raw as { nvidia_smi_log: { gpu: { supported_clocks: { supported_mem_clock: unknown[] } }[] } }
    ).nvidia_smi_log.gpu;
    assert.ok(gpu!.supported_clocks.supported_mem_clock.length > 1);
  });

  it('parses a minimal document with self-closing and unknown elements', function () {
    const xml = `<?xml version="1.0" ?>
<nvidia_smi_log>
  <driver_version>999.1</driver_version>
  <some_future_section><nested attr="1">x</nested></some_future_section>
  <gpu id="00000000:3B:00.0">
    <product_name>Future &amp; Co GPU</product_name>
    <uuid>GPU-abc</uuid>
    <new_tag/>
    <fb_memory_usage><total>1000 MiB</total><used>10 MiB</used><free>990 MiB</free><unheard_of>3</unheard_of></fb_memory_usage>
    <mig_mode><current_mig>Disabled</current_mig><pending_mig>Disabled</pending_mig></mig_mode>
    <mig_devices/>
    <clocks_event_reasons>
      <clocks_event_reason_gpu_idle>Not Active</clocks_event_reason_gpu_idle>
      <clocks_event_reason_sw_thermal_slowdown>Active</clocks_event_reason_sw_thermal_slowdown>
      <clocks_event_reason_brand_new_reason>Active</clocks_event_reason_brand_new_reason>
    </clocks_event_reasons>
    <processes/>
  </gpu>
</nvidia_smi_log>`;
    const { driverVersion, cudaVersion, devices } = parseNvidiaSmiXml(xml);
    assert.equal(driverVersion, '999.1');
    assert.equal(cudaVersion, undefined);
    assert.deepStrictEqual(devices, [
      {
        index: 0,
        uuid: 'GPU-abc',
        name: 'Future & Co GPU',
        pciBusId: '00000000:3B:00.0',
        memory: { totalBytes: 1000 * MIB, usedBytes: 10 * MIB, freeBytes: 990 * MIB },
        utilization: {},
        throttleReasons: ['sw_thermal_slowdown', 'brand_new_reason'],
        mig: { enabled: false, instances: [] },
        processes: [],
      },
    ]);
  });

  it('adds up the ECC counters of each layout, and only when ECC is on', function () {
    const doc = (ecc: string, aggregate: string): string =>
      `<nvidia_smi_log><gpu><ecc_mode><current_ecc>${ecc}</current_ecc></ecc_mode>` +
      `<ecc_errors><aggregate>${aggregate}</aggregate></ecc_errors></gpu></nvidia_smi_log>`;
    const v13 =
      '<sram_correctable>2</sram_correctable><sram_uncorrectable_parity>1</sram_uncorrectable_parity>' +
      '<sram_uncorrectable_secded>2</sram_uncorrectable_secded><dram_correctable>5</dram_correctable>' +
      '<dram_uncorrectable>3</dram_uncorrectable><sram_threshold_exceeded>No</sram_threshold_exceeded>';
    const v11 =
      '<sram_correctable>4</sram_correctable><sram_uncorrectable>1</sram_uncorrectable>' +
      '<dram_correctable>N/A</dram_correctable><dram_uncorrectable>N/A</dram_uncorrectable>';
    const pascal =
      '<single_bit><device_memory>3</device_memory><l1_cache>N/A</l1_cache><total>3</total></single_bit>' +
      '<double_bit><device_memory>1</device_memory><total>1</total></double_bit>';
    const ecc = (xml: string) => parseNvidiaSmiXml(xml).devices[0]!.eccErrors;
    assert.deepStrictEqual(ecc(doc('Enabled', v13)), { corrected: 7, uncorrected: 6 });
    assert.deepStrictEqual(ecc(doc('Enabled', v11)), { corrected: 4, uncorrected: 1 });
    assert.deepStrictEqual(ecc(doc('Enabled', pascal)), { corrected: 3, uncorrected: 1 });
    assert.equal(ecc(doc('Disabled', v13)), undefined);
    assert.equal(ecc(doc('N/A', v13)), undefined);
  });

  it('parses a document with no GPUs, a BOM and CRLF line ends', function () {
    const xml =
      '\uFEFF<?xml version="1.0" ?>\r\n<nvidia_smi_log>\r\n\t<attached_gpus>0</attached_gpus>\r\n</nvidia_smi_log>\r\n';
    assert.deepEqual(parseNvidiaSmiXml(xml).devices, []);
  });

  it('parses a capture with CRLF line ends the same as with LF', function () {
    const lf = realFixture('nvidia-smi-q-x_tesla-t4_windows_driver-512.78_dtd-v11_15procs.xml');
    assert.deepStrictEqual(
      parseNvidiaSmiXml(lf.replace(/\n/g, '\r\n')).devices,
      parseNvidiaSmiXml(lf).devices,
    );
  });

  it('does not expand entities a DOCTYPE declares', function () {
    const xml = `<!DOCTYPE nvidia_smi_log [
  <!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">
  <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
  <!ENTITY leak "injected">
]>
<nvidia_smi_log><gpu><product_name>&leak;&b;</product_name><uuid>&#71;PU-&#x31;</uuid></gpu></nvidia_smi_log>`;
    const [device] = parseNvidiaSmiXml(xml).devices;
    assert.equal(device!.name, '&leak;&b;');
    assert.equal(device!.uuid, 'GPU-1');
  });

  it('throws a parse error for anything that is not an nvidia-smi XML report', function () {
    const half = realFixture('nvidia-smi-q-x_a10g_driver-515.105.01_dtd-v11_procs.xml');
    for (const text of [
      '',
      'garbage',
      "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
      half.slice(0, half.length / 2),
      '{"nvidia_smi_log": {}}',
      '<html><body>502 Bad Gateway</body></html>',
      '<nvidia_smi_log></nvidia_smi_log><nvidia_smi_log></nvidia_smi_log>',
      '<nvidia_smi_log/><extra/>',
      '<nvidia_smi_log><gpu><__proto__><uuid>x</uuid></__proto__></gpu></nvidia_smi_log>',
    ]) {
      parseError(() => parseNvidiaSmiXml(text));
    }
    parseError(() => parseNvidiaSmiXml(undefined as unknown as string));
  });

  it('says what came back when the output is not XML', function () {
    assert.throws(
      () =>
        parseNvidiaSmiXml('NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.'),
      /not well-formed XML.*NVIDIA-SMI has failed/,
    );
  });
});
