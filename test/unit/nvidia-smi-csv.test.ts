import assert from 'node:assert/strict';
import { GpuError } from '../../gpu/errors.js';
import {
  COMPUTE_APPS_FIELDS,
  QUERY_GPU_FIELDS,
  chooseQueryFields,
  parseComputeAppsCsv,
  parseHelpQuery,
  parseHelpQueryGpu,
  parseQueryGpuCsv,
  withComputeApps,
} from '../../gpu/parsers/nvidia-smi-csv.js';
import type { GpuDevice } from '../../gpu/types.js';
import { realFixture, realFixtureNames } from '../helpers/fixtures.js';

const MIB = 1024 * 1024;
const U = undefined;
const MASKED_UUID = 'GPU-00000000-0000-0000-0000-000000000000';

const ALLFIELDS = {
  h100: 'query-gpu_csv_header-units_allfields_h100-80gb-hbm3_driver-590.48.01_load.csv',
  rtx4080s: 'query-gpu_csv_header-units_allfields_rtx-4080-super_driver-595.71.05_load.csv',
  rtx2080sWindows: 'query-gpu_csv_header-units_allfields_rtx-2080-super_windows_driver-610.62_load.csv',
};
const HELP = {
  h100: 'nvidia-smi-help-query-gpu_h100-80gb-hbm3_driver-590.48.01.txt',
  rtx4080s: 'nvidia-smi-help-query-gpu_rtx-4080-super_driver-595.71.05.txt',
  rtx2080sWindows: 'nvidia-smi-help-query-gpu_rtx-2080-super_windows_driver-610.62.txt',
};

/** The header row's field names, units dropped. */
function headerNames(csv: string): string[] {
  return csv
    .split('\n')[0]!
    .split(', ')
    .map((h) => h.replace(/ \[.*\]$/, ''));
}

/** The readings a test compares, memory in MiB as the files print it. */
function summarize(d: GpuDevice) {
  return {
    index: d.index,
    uuid: d.uuid,
    name: d.name,
    pciBusId: d.pciBusId,
    mib: [
      d.memory.totalBytes / MIB,
      d.memory.usedBytes / MIB,
      d.memory.freeBytes / MIB,
      d.memory.reservedBytes === undefined ? U : d.memory.reservedBytes / MIB,
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
    pcie: d.pcie,
    serial: d.serial,
    vbios: d.vbiosVersion,
    mig: d.mig,
    procs: d.processes.length,
  };
}

function parseError(fn: () => unknown): void {
  assert.throws(fn, (err: unknown) => err instanceof GpuError && err.category === 'parse');
}

/**
 * A `--help-query-gpu` excerpt in the shape a driver before 535 prints: the format of the 590 capture
 * in test/fixtures/real, with the clock event reasons under their earlier clocks_throttle_reasons
 * names and wording ("Bitmask of active clock throttle reasons", as 2020-era output quoted in public
 * scripts reads), and with memory.reserved, utilization.encoder/decoder, the gpu.power.* aliases and
 * pcie.link.gen.gpucurrent left out to show how fields a driver lacks are dropped. Reconstructed,
 * not captured: no capture of an older driver's help text was found.
 */
const OLDER_DRIVER_HELP = `List of valid properties to query for the switch "--query-gpu":

"driver_version"
The version of the installed NVIDIA display driver. This is an alphanumeric string.

"name" or "gpu_name"
The official product name of the GPU. This is an alphanumeric string. For all products.

"serial" or "gpu_serial"
This number matches the serial number physically printed on each board. It is a globally unique immutable alphanumeric value.

"uuid" or "gpu_uuid"
This value is the globally unique immutable alphanumeric identifier of the GPU. It does not correspond to any physical label on the board.

"pci.bus_id" or "gpu_bus_id"
PCI bus id as "domain:bus:device.function", in hex.

"pcie.link.gen.current"
The current PCI-E link generation. These may be reduced when the GPU is not in use.

"pcie.link.width.current"
The current PCI-E link width. These may be reduced when the GPU is not in use.

"index"
Zero based index of the GPU. Can change at each boot.

"vbios_version"
The BIOS of the GPU board.

"fan.speed"
The fan speed value is the percent of the product's maximum noise tolerance fan speed that the device's fan is currently intended to run at.

"pstate"
The current performance state for the GPU. States range from P0 (maximum performance) to P12 (minimum performance).

Section about clocks_throttle_reasons properties
Retrieves information about factors that are reducing the frequency of clocks. If all throttle reasons are returned as "Not Active" it means that clocks are running as high as possible.

"clocks_throttle_reasons.supported"
Bitmask of supported clock throttle reasons. See nvml.h for more details.

"clocks_throttle_reasons.active"
Bitmask of active clock throttle reasons. See nvml.h for more details.

Section about memory properties
On-board memory information. Reported total memory is affected by ECC state. If ECC is enabled the total available memory is decreased by several percent, due to the requisite parity bits. The driver may also reserve a small amount of memory for internal use, even without active work on the GPU.

"memory.total"
Total installed GPU memory.

"memory.used"
Total memory allocated by active contexts.

"memory.free"
Total free memory.

"compute_mode"
The compute mode flag indicates whether individual or multiple compute applications may run on the GPU.
"0: Default" means multiple contexts are allowed per device.
"1: Exclusive_Thread", deprecated, use Exclusive_Process instead
"2: Prohibited" means no contexts are allowed per device (no compute apps).

Section about utilization properties
Utilization rates report how busy each GPU is over time, and can be used to determine how much an application is using the GPUs in the system.

"utilization.gpu"
Percent of time over the past sample period during which one or more kernels was executing on the GPU.

"utilization.memory"
Percent of time over the past sample period during which global (device) memory was being read or written.

Section about ecc.mode properties
A flag that indicates whether ECC support is enabled. May be either "Enabled" or "Disabled". Changes to ECC mode require a reboot. Requires Inforom ECC object version 1.0 or higher.

"ecc.mode.current"
The ECC mode that the GPU is currently operating under.

"ecc.errors.corrected.aggregate.total"
Total errors detected across entire chip. Sum of device_memory, register_file, l1_cache, l2_cache and texture_memory.

"ecc.errors.uncorrected.aggregate.total"
Total errors detected across entire chip. Sum of device_memory, register_file, l1_cache, l2_cache and texture_memory.

"temperature.gpu"
 Core GPU temperature. in degrees C.

"temperature.memory"
 HBM memory temperature. in degrees C.

"power.draw"
The last measured power draw for the entire board, in watts. Only available if power management is supported. This reading is accurate to within +/- 5 watts.

"power.limit"
The software power limit in watts. Set by software like nvidia-smi. On Kepler devices Power Limit can be adjusted using [-pl | --power-limit=] switches.

"enforced.power.limit"
The power management algorithm's power ceiling, in watts. Total board power draw is manipulated by the power management algorithm such that it stays under this value. This value is the minimum of various power limiters.

"clocks.current.sm" or "clocks.sm"
Current frequency of SM (Streaming Multiprocessor) clock.

"clocks.current.memory" or "clocks.mem"
Current frequency of memory clock.

"clocks.max.sm" or "clocks.max.sm"
Maximum frequency of SM (Streaming Multiprocessor) clock.

"clocks.max.memory" or "clocks.max.mem"
Maximum frequency of memory clock.

Section about mig.mode properties
A flag that indicates whether MIG mode is enabled. May be either "Enabled" or "Disabled". Changes to MIG mode require a GPU reset.

"mig.mode.current"
The MIG mode that the GPU is currently operating under.

`;

describe('nvidia-smi --query-gpu fields', function () {
  it('asks for fields by the names current drivers print in the CSV header', function () {
    for (const file of Object.values(ALLFIELDS)) {
      const header = new Set(headerNames(realFixture(file)));
      for (const field of QUERY_GPU_FIELDS) assert.ok(header.has(field), `${field} in ${file}`);
    }
  });

  it('lists the properties of each captured --help-query-gpu, in the order the header shows them', function () {
    // The captures queried exactly the fields their own help listed, so the header is the answer.
    for (const key of ['h100', 'rtx4080s', 'rtx2080sWindows'] as const) {
      const fields = parseHelpQuery(realFixture(HELP[key]));
      assert.deepEqual(
        fields.map((f) => f.name),
        headerNames(realFixture(ALLFIELDS[key])),
        key,
      );
    }
    assert.equal(parseHelpQuery(realFixture(HELP.h100)).length, 212);
    assert.equal(parseHelpQuery(realFixture(HELP.rtx4080s)).length, 202);
    assert.equal(parseHelpQuery(realFixture(HELP.rtx2080sWindows)).length, 239);
  });

  it('reads the other names a property answers to', function () {
    const fields = parseHelpQuery(realFixture(HELP.h100));
    assert.deepEqual(
      fields.find((f) => f.name === 'clocks_event_reasons.active'),
      { name: 'clocks_event_reasons.active', aliases: ['clocks_throttle_reasons.active'] },
    );
    assert.deepEqual(
      fields.find((f) => f.name === 'enforced.power.limit'),
      { name: 'enforced.power.limit', aliases: ['gpu.power.current_limit'] },
    );
    // "clocks.max.sm" or "clocks.max.sm": the same name twice is not an alias.
    assert.deepEqual(
      fields.find((f) => f.name === 'clocks.max.sm'),
      { name: 'clocks.max.sm', aliases: [] },
    );
    const names = parseHelpQueryGpu(realFixture(HELP.h100));
    for (const n of [
      'uuid',
      'gpu_uuid',
      'clocks.sm',
      'clocks.mem',
      'clocks.max.mem',
      'clocks_throttle_reasons.active',
    ]) {
      assert.ok(names.has(n), n);
    }
  });

  it('skips description lines, even ones that start with a quote', function () {
    const names = parseHelpQueryGpu(OLDER_DRIVER_HELP);
    assert.ok(names.has('compute_mode'));
    assert.equal(
      [...names].some((n) => /Default|Exclusive|Prohibited|Enabled/.test(n)),
      false,
    );
    assert.deepEqual(
      parseHelpQuery(OLDER_DRIVER_HELP.replace(/\n/g, '\r\n')),
      parseHelpQuery(OLDER_DRIVER_HELP),
    );
  });

  it('chooses every fast-path field on the captured drivers', function () {
    for (const file of Object.values(HELP)) {
      assert.deepEqual(chooseQueryFields(parseHelpQueryGpu(realFixture(file))), QUERY_GPU_FIELDS, file);
    }
  });

  it('falls back to older names and leaves out fields an older driver does not know', function () {
    const chosen = chooseQueryFields(parseHelpQueryGpu(OLDER_DRIVER_HELP));
    assert.ok(chosen.includes('clocks_throttle_reasons.active'));
    assert.ok(!chosen.includes('clocks_event_reasons.active'));
    for (const missing of ['memory.reserved', 'utilization.encoder', 'utilization.decoder']) {
      assert.ok(!chosen.includes(missing), missing);
    }
    assert.ok(chosen.includes('enforced.power.limit'));
    assert.equal(chosen.length, QUERY_GPU_FIELDS.length - 3);
    // A driver with only the requested limit gets that one.
    const noEnforced = parseHelpQueryGpu(
      OLDER_DRIVER_HELP.replace('"enforced.power.limit"', '"something.else"'),
    );
    assert.ok(chooseQueryFields(noEnforced).includes('power.limit'));
    assert.deepEqual(chooseQueryFields(new Set()), []);
  });
});

describe('parseQueryGpuCsv', function () {
  it('reads the H100 capture with header and units (every field a current driver has)', function () {
    const { driverVersion, devices } = parseQueryGpuCsv(realFixture(ALLFIELDS.h100), [], {
      header: true,
      units: true,
    });
    assert.equal(driverVersion, '590.48.01');
    assert.equal(devices.length, 1);
    assert.deepStrictEqual(summarize(devices[0]!), {
      index: 0,
      uuid: MASKED_UUID,
      name: 'NVIDIA H100 80GB HBM3',
      pciBusId: '00000000:00:09.0',
      mib: [81559, 19818, 61263, 479],
      util: [100, 11, 0, 0],
      tempC: 59,
      memTempC: 54,
      powerW: 631.95,
      powerLimitW: 700,
      clocks: [1980, 2619, 1980, 2619],
      reasons: [],
      ecc: { corrected: 0, uncorrected: 0 },
      fan: U,
      pstate: 'P0',
      pcie: { linkGeneration: 5, linkWidth: 16 },
      serial: '0000000000000',
      vbios: '96.00.A5.00.01',
      mig: { enabled: false, instances: [] },
      procs: 0,
    });
  });

  it('reads the RTX 4080 SUPER capture', function () {
    const { driverVersion, devices } = parseQueryGpuCsv(realFixture(ALLFIELDS.rtx4080s), [], {
      header: true,
      units: true,
    });
    assert.equal(driverVersion, '595.71.05');
    assert.deepStrictEqual(summarize(devices[0]!), {
      index: 0,
      uuid: MASKED_UUID,
      name: 'NVIDIA GeForce RTX 4080 SUPER',
      pciBusId: '00000000:01:00.0',
      mib: [16376, 1474, 14470, 434],
      util: [7, 2, 72, 0],
      tempC: 46,
      // A bare "N/A", not "[N/A]", in this column.
      memTempC: U,
      powerW: 84.24,
      powerLimitW: 320,
      clocks: [2805, 11251, 3165, 11501],
      reasons: [],
      ecc: U,
      fan: 0,
      pstate: 'P2',
      pcie: { linkGeneration: 4, linkWidth: 16 },
      serial: U,
      vbios: '95.03.44.00.B2',
      mig: U,
      procs: 0,
    });
  });

  it('reads the Windows RTX 2080 SUPER capture', function () {
    const { driverVersion, devices } = parseQueryGpuCsv(realFixture(ALLFIELDS.rtx2080sWindows), [], {
      header: true,
      units: true,
    });
    assert.equal(driverVersion, '610.62');
    assert.deepStrictEqual(summarize(devices[0]!), {
      index: 0,
      uuid: MASKED_UUID,
      name: 'NVIDIA GeForce RTX 2080 SUPER',
      pciBusId: '00000000:0C:00.0',
      mib: [8192, 1366, 6622, 205],
      util: [7, 3, 99, 0],
      tempC: 44,
      memTempC: U,
      // power.draw; power.draw.average is [N/A] on Turing.
      powerW: 97.99,
      powerLimitW: 250,
      clocks: [2040, 7500, 2145, 7751],
      reasons: [],
      ecc: U,
      fan: 38,
      pstate: 'P2',
      pcie: { linkGeneration: 3, linkWidth: 16 },
      serial: U,
      vbios: '90.04.7a.40.73',
      mig: U,
      procs: 0,
    });
  });

  it('reads the P100 capture (nounits, header kept) and leaves what it did not ask for undefined', function () {
    const { driverVersion, devices } = parseQueryGpuCsv(
      realFixture('query-gpu_csv_nounits_with-header_tesla-p100_driver-510.47.03.csv'),
      [],
      { header: true },
    );
    assert.equal(driverVersion, U);
    const d = devices[0]!;
    assert.deepStrictEqual(summarize(d), {
      index: 0,
      uuid: 'GPU-ef1b2c9b-38d8-2090-2bd1-f567a3eb42a6',
      name: 'Tesla P100-PCIE-16GB',
      pciBusId: U,
      // memory.total was not in this query.
      mib: [Number.NaN, 0, 16280, 103],
      util: [0, 0, U, U],
      tempC: 37,
      memTempC: U,
      powerW: 28.16,
      powerLimitW: U,
      clocks: [405, 715, U, U],
      reasons: U,
      ecc: U,
      // [N/A]: the P100 is passively cooled.
      fan: U,
      pstate: 'P0',
      pcie: U,
      serial: U,
      vbios: U,
      mig: U,
      procs: 0,
    });
  });

  it('reads the GTX 1060 line (noheader,nounits) by the fields that were asked for', function () {
    const fields =
      'fan.speed,memory.total,memory.used,memory.free,pstate,temperature.gpu,name,uuid,compute_mode,utilization.gpu,utilization.memory,index,power.draw,pcie.link.gen.current,pcie.link.width.current,encoder.stats.sessionCount,encoder.stats.averageFps,encoder.stats.averageLatency,clocks.current.graphics,clocks.current.sm,clocks.current.memory,clocks.current.video'.split(
        ',',
      );
    const { devices } = parseQueryGpuCsv(
      realFixture('query-gpu_csv_noheader_nounits_gtx-1060-3gb_windows_issue-telegraf-6106.csv'),
      fields,
    );
    const d = devices[0]!;
    assert.deepStrictEqual(summarize(d), {
      index: 0,
      uuid: 'GPU-647d1415-d8d5-e1b9-7251-0ad2bee4efe0',
      name: 'GeForce GTX 1060 3GB',
      pciBusId: U,
      mib: [3072, 1279, 1793, U],
      util: [2, 10, U, U],
      tempC: 47,
      memTempC: U,
      powerW: 10.08,
      powerLimitW: U,
      clocks: [607, 405, U, U],
      reasons: U,
      ecc: U,
      fan: 8,
      pstate: 'P8',
      pcie: { linkGeneration: 1, linkWidth: 16 },
      serial: U,
      vbios: U,
      mig: U,
      procs: 0,
    });
  });

  it('reads the RTX 2080 line whose query used aliases and the requested power limit', function () {
    const fields =
      'power.limit,power.min_limit,power.max_limit,memory.total,vbios_version,driver_version,name,gpu_uuid,power.draw,temperature.gpu,temperature.memory,clocks.current.graphics,clocks.sm,clocks.mem,utilization.gpu,utilization.memory,fan.speed,pcie.link.width.current,pstate'.split(
        ',',
      );
    const { driverVersion, devices } = parseQueryGpuCsv(
      realFixture('query-gpu_csv_noheader_nounits_rtx-2080_driver-440.64_issue-gpu-utils-83.csv'),
      fields,
      { header: false, units: false },
    );
    assert.equal(driverVersion, '440.64');
    assert.deepStrictEqual(summarize(devices[0]!), {
      index: 0,
      uuid: 'GPU-22b2c6ac-2d49-4863-197c-9c469071178a',
      name: 'GeForce RTX 2080',
      pciBusId: U,
      mib: [7979, Number.NaN, Number.NaN, U],
      util: [86, 55, U, U],
      tempC: 45,
      // Bare N/A from a 440 driver.
      memTempC: U,
      powerW: 176.98,
      powerLimitW: 200,
      clocks: [1965, 7199, U, U],
      reasons: U,
      ecc: U,
      fan: 100,
      pstate: 'P2',
      pcie: { linkWidth: 8 },
      serial: U,
      vbios: '90.04.23.00.5F',
      mig: U,
      procs: 0,
    });
  });

  it('reads the one-field fan.speed captures as not available', function () {
    for (const file of realFixtureNames(/^query-gpu_fan-speed_/)) {
      const { devices } = parseQueryGpuCsv(realFixture(file), ['fan.speed']);
      assert.equal(devices.length, 1, file);
      assert.equal(devices[0]!.fanPercent, U, file);
      assert.equal(devices[0]!.uuid, '', file);
    }
  });

  it('has a test for every query-gpu capture', function () {
    const tested = [
      ...Object.values(ALLFIELDS),
      'query-gpu_csv_nounits_with-header_tesla-p100_driver-510.47.03.csv',
      'query-gpu_csv_noheader_nounits_gtx-1060-3gb_windows_issue-telegraf-6106.csv',
      'query-gpu_csv_noheader_nounits_rtx-2080_driver-440.64_issue-gpu-utils-83.csv',
      ...realFixtureNames(/^query-gpu_fan-speed_/),
    ].sort();
    assert.deepEqual(tested, realFixtureNames(/^query-gpu_/));
  });

  it('reads the fast path (csv,noheader,nounits) the same as the full capture', function () {
    // The H100 capture's own values for the fast-path fields, units stripped as nounits prints them.
    const csv = realFixture(ALLFIELDS.h100);
    const header = headerNames(csv);
    const row = csv.split('\n')[1]!.split(', ');
    const line = QUERY_GPU_FIELDS.map((f) => row[header.indexOf(f)]!.replace(/ (MiB|%|W|MHz)$/, '')).join(
      ', ',
    );
    assert.match(
      line,
      /^0, GPU-0+-0000-0000-0000-0+, NVIDIA H100 80GB HBM3, 00000000:00:09.0, 81559, 479, 19818, /,
    );
    const fast = parseQueryGpuCsv(`${line}\n`, QUERY_GPU_FIELDS);
    const full = parseQueryGpuCsv(csv, [], { header: true, units: true });
    assert.deepStrictEqual(fast, full);
  });

  it('reads two GPUs, CRLF line ends and trailing spaces', function () {
    const fields = ['index', 'uuid', 'memory.used', 'utilization.gpu', 'fan.speed'];
    const text = '0, GPU-a, 100, 5, [N/A]   \r\n1, GPU-b, 200, 97, 40  \r\n';
    const { devices } = parseQueryGpuCsv(text, fields);
    assert.deepEqual(
      devices.map((d) => [d.index, d.uuid, d.memory.usedBytes / MIB, d.utilization.gpuPercent, d.fanPercent]),
      [
        [0, 'GPU-a', 100, 5, U],
        [1, 'GPU-b', 200, 97, 40],
      ],
    );
  });

  it('names active clock event reasons from the hex mask', function () {
    const { devices } = parseQueryGpuCsv('0x0000000000000005\n', ['clocks_throttle_reasons.active']);
    assert.deepEqual(devices[0]!.throttleReasons, ['gpu_idle', 'sw_power_cap']);
  });

  it('leaves ECC counts out when ECC is off', function () {
    const fields = [
      'ecc.mode.current',
      'ecc.errors.corrected.aggregate.total',
      'ecc.errors.uncorrected.aggregate.total',
    ];
    assert.equal(parseQueryGpuCsv('Disabled, 0, 0\n', fields).devices[0]!.eccErrors, U);
    assert.deepEqual(parseQueryGpuCsv('Enabled, 12, 1\n', fields).devices[0]!.eccErrors, {
      corrected: 12,
      uncorrected: 1,
    });
  });

  it('throws a parse error when values and fields do not line up', function () {
    parseError(() => parseQueryGpuCsv('0, GPU-a, 100\n', ['index', 'uuid']));
    parseError(() => parseQueryGpuCsv('0, GPU-a\n', ['index', 'uuid', 'memory.used']));
    parseError(() => parseQueryGpuCsv('index, uuid\n0, GPU-a\n', ['index'], { header: true }));
    parseError(() => parseQueryGpuCsv('0\n', []));
    parseError(() => parseQueryGpuCsv('Field "bogus" is not a valid field to query.\n', QUERY_GPU_FIELDS));
  });

  it('gives no devices for empty output', function () {
    assert.deepEqual(parseQueryGpuCsv('', QUERY_GPU_FIELDS), { devices: [] });
    assert.deepEqual(parseQueryGpuCsv('', [], { header: true }), { devices: [] });
  });
});

describe('parseComputeAppsCsv', function () {
  const CAPTURE_FIELDS = [
    'timestamp',
    'gpu_name',
    'gpu_bus_id',
    'gpu_serial',
    'gpu_uuid',
    'pid',
    'process_name',
    'used_gpu_memory',
  ];

  it('asks for fields every captured driver knows', function () {
    for (const file of realFixtureNames(/^query-compute-apps_/)) {
      const header = new Set(headerNames(realFixture(file)));
      for (const f of COMPUTE_APPS_FIELDS) assert.ok(header.has(f), `${f} in ${file}`);
    }
  });

  it('reads an idle GPU as no processes', function () {
    const text = realFixture('query-compute-apps_csv_h100-80gb-hbm3_driver-590.48.01_idle-empty.csv');
    assert.deepEqual(parseComputeAppsCsv(text, CAPTURE_FIELDS, { header: true, units: true }), []);
  });

  it('reads processes with their memory on Linux', function () {
    const apps = parseComputeAppsCsv(
      realFixture('query-compute-apps_csv_rtx-4080-super_driver-595.71.05_load.csv'),
      CAPTURE_FIELDS,
      { header: true, units: true },
    );
    assert.deepStrictEqual(apps, [
      { gpuUuid: MASKED_UUID, process: { pid: 2165, name: '/usr/bin/kwin_wayland', usedBytes: 25 * MIB } },
      { gpuUuid: MASKED_UUID, process: { pid: 5022, name: 'ffmpeg', usedBytes: 503 * MIB } },
      { gpuUuid: MASKED_UUID, process: { pid: 5021, name: 'ffmpeg', usedBytes: 360 * MIB } },
    ]);
  });

  it('reads processes without memory under Windows WDDM', function () {
    const apps = parseComputeAppsCsv(
      realFixture('query-compute-apps_csv_rtx-2080-super_windows_driver-610.62_load.csv'),
      CAPTURE_FIELDS,
      { header: true, units: true },
    );
    assert.equal(apps.length, 21);
    assert.ok(apps.every((a) => a.gpuUuid === MASKED_UUID && a.process.usedBytes === U));
    assert.deepStrictEqual(apps[0], {
      gpuUuid: MASKED_UUID,
      process: { pid: 2140, name: 'C:\\Windows\\System32\\dwm.exe' },
    });
    assert.deepStrictEqual(apps.find((a) => a.process.pid === 17840)?.process, {
      pid: 17840,
      name: 'C:\\Program Files (x86)\\Microsoft\\EdgeWebView\\Application\\149.0.4022.80\\msedgewebview2.exe',
    });
  });

  it('puts a process name containing ", " back together', function () {
    const name =
      '/usr/lib/chromium/chromium --type=gpu-process --enable-crash-reporter=, Arch Linux --shared-files';
    const fast = parseComputeAppsCsv(`GPU-a, 1264, 130, ${name}\n`, COMPUTE_APPS_FIELDS);
    assert.deepStrictEqual(fast, [{ gpuUuid: 'GPU-a', process: { pid: 1264, name, usedBytes: 130 * MIB } }]);
    const capture = parseComputeAppsCsv(
      `t, GPU X, 00000000:01:00.0, [N/A], GPU-a, 1264, ${name}, 130 MiB\n`,
      CAPTURE_FIELDS,
    );
    assert.deepStrictEqual(capture, fast);
  });

  it('fills devices with their processes by GPU UUID', function () {
    const { devices } = parseQueryGpuCsv('0, GPU-a\n1, GPU-b\n', ['index', 'uuid']);
    const apps = parseComputeAppsCsv('GPU-b, 7, 10, python\nGPU-b, 8, [N/A], worker\n', COMPUTE_APPS_FIELDS);
    const filled = withComputeApps(devices, apps);
    assert.deepEqual(
      filled.map((d) => d.processes),
      [
        [],
        [
          { pid: 7, name: 'python', usedBytes: 10 * MIB },
          { pid: 8, name: 'worker' },
        ],
      ],
    );
    assert.deepEqual(devices[1]!.processes, []);
  });
});
