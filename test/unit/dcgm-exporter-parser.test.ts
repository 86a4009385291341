import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseDcgmExporterMetrics } from '../../gpu/parsers/dcgm-exporter.js';
import type { DcgmMigInstance } from '../../gpu/parsers/dcgm-exporter.js';
import { parsePrometheusText } from '../../gpu/parsers/prometheus-text.js';
import { ROOT } from '../helpers/agent.js';

const REAL = path.join(ROOT, 'test/fixtures/real');
const read = (name: string): string => readFileSync(path.join(REAL, name), 'utf8');
const MIB = 1024 * 1024;
const T = 1_700_000_000_000;

const L4 = read('dcgm-exporter_metrics_l4_driver-580.105.08.prom');
const A800 = read('dcgm-exporter_metrics_8x-a800-sxm4-80gb_gpu0-mig_driver-535.129.03_EXCERPT.prom');
const A800_UUIDS = [
  'GPU-1f027ee8-6e1e-2b8c-0108-3d370e5f0418',
  'GPU-9e5b8fec-61bf-5124-a0a9-079af1b65cc6',
  'GPU-5022ce43-b44a-987b-71c3-dee05378a618',
  'GPU-f22db14d-1597-8eb1-78dc-d93765918c73',
  'GPU-a878a9f3-cf6d-b94c-38ba-892ed140c7ee',
  'GPU-a1dd6923-de62-e22b-c882-4d6f7e1ec5ce',
  'GPU-c07eb90d-74b0-d3b4-e6ce-f18687564243',
  'GPU-4e75c9ab-0ed7-8a57-75f5-23761b9f053f',
];

/** One exporter series line with the L4 file's identity labels. */
function l4Series(name: string, value: string, extra = ''): string {
  return (
    `${name}{gpu="0",UUID="GPU-c2f76b33-7953-256e-8f33-1343419b1a1c",pci_bus_id="00000000:31:00.0",` +
    `device="nvidia0",modelName="NVIDIA L4",Hostname="i-030791dc5a37cd257",` +
    `DCGM_FI_DRIVER_VERSION="580.105.08"${extra}} ${value}`
  );
}

describe('dcgm-exporter parser', function () {
  it('reads the real L4 page', function () {
    const r = parseDcgmExporterMetrics(L4, T);
    assert.deepEqual(r.errors, []);
    assert.equal(r.nonNumeric, 0);
    assert.equal(r.sample.takenAt, T);
    assert.equal(r.sample.driverVersion, '580.105.08');
    assert.equal(r.sample.devices.length, 1);
    const d = r.sample.devices[0]!;
    assert.equal(d.index, 0);
    assert.equal(d.uuid, 'GPU-c2f76b33-7953-256e-8f33-1343419b1a1c');
    assert.equal(d.name, 'NVIDIA L4');
    assert.equal(d.pciBusId, '00000000:31:00.0');
    assert.deepEqual(d.utilization, { gpuPercent: 0, memoryPercent: 0 });
    assert.equal(d.encoderPercent, 0);
    assert.equal(d.decoderPercent, 0);
    assert.equal(d.smClockMHz, 210);
    assert.equal(d.memClockMHz, 405);
    assert.equal(d.temperatureC, 31);
    // The L4 has no memory sensor; DCGM says 0 (NVIDIA/DCGM#311) where nvidia-smi says N/A.
    assert.equal(d.memoryTemperatureC, undefined);
    assert.equal(d.powerW, 16.365);
    assert.equal(d.energyJoules, 4742.776);
    // Default counters carry free, used and reserved; the total is their sum.
    assert.deepEqual(d.memory, {
      totalBytes: 23033 * MIB,
      usedBytes: 0,
      freeBytes: 22563 * MIB,
      reservedBytes: 470 * MIB,
    });
    assert.deepEqual(d.profiling, {
      grEngineActiveRatio: 0,
      tensorActiveRatio: 0,
      dramActiveRatio: 0,
      pcieTxBytesPerSecond: 112603,
      pcieRxBytesPerSecond: 17544,
    });
    assert.equal(d.xidErrors, undefined);
    assert.equal(d.mig, undefined);
    assert.deepEqual(d.processes, []);
  });

  it('reads the real 8× A800 page: MIG instances on GPU 0, unconvertible values skipped', function () {
    const r = parseDcgmExporterMetrics(A800, T);
    assert.deepEqual(r.errors, []);
    // The ten DCGM_FI_DEV_VGPU_PER_PROCESS_UTILIZATION samples read "ERROR - FAILED TO CONVERT TO STRING".
    assert.equal(r.nonNumeric, 10);
    assert.equal(r.sample.driverVersion, '535.129.03');
    const devices = r.sample.devices;
    assert.deepEqual(
      devices.map((d) => d.index),
      [0, 1, 2, 3, 4, 5, 6, 7],
    );
    assert.deepEqual(
      devices.map((d) => d.uuid),
      A800_UUIDS,
    );
    for (const d of devices) {
      assert.equal(d.name, 'NVIDIA A800-SXM4-80GB');
      assert.equal(d.pciBusId, undefined, 'this exporter version has no pci_bus_id label');
      assert.ok(Number.isNaN(d.memory.usedBytes), 'no framebuffer series: memory unknown, not 0');
    }

    const gpu0 = devices[0]!;
    assert.equal(gpu0.profiling, undefined, 'all of GPU 0 series are per MIG instance');
    assert.equal(gpu0.mig?.enabled, true);
    const instances = gpu0.mig.instances as DcgmMigInstance[];
    assert.deepEqual(instances, [
      { gpuInstanceId: 3, profile: '2g.20gb', profiling: { grEngineActiveRatio: 0 } },
      { gpuInstanceId: 5, profile: '2g.20gb', profiling: { grEngineActiveRatio: 0 } },
      { gpuInstanceId: 6, profile: '2g.20gb', profiling: { grEngineActiveRatio: 0 } },
    ]);
    for (const d of devices.slice(1)) {
      assert.equal(d.mig, undefined);
      assert.deepEqual(d.profiling, { grEngineActiveRatio: 0 });
    }
  });

  it('keeps the newest XID code without inventing counts', function () {
    const page = [
      l4Series('DCGM_FI_DEV_XID_ERRORS', '79', ',err_code="79",err_msg="GPU has fallen off the bus"'),
    ];
    const d = parseDcgmExporterMetrics(page.join('\n'), T).sample.devices[0]!;
    assert.deepEqual(d.xidErrors, { total: 0, byXid: {}, last: { xid: 79, at: T } });
    const none = parseDcgmExporterMetrics(l4Series('DCGM_FI_DEV_XID_ERRORS', '0'), T).sample.devices[0]!;
    assert.equal(none.xidErrors, undefined);
  });

  it('puts MIG framebuffer figures on the instance and whole-GPU figures on the GPU', function () {
    const mig = (gi: number, name: string, value: string): string =>
      `${name}{gpu="0",UUID="GPU-265c9814-6156-355b-e589-ff2064894f16",device="nvidia0",modelName="NVIDIA A30",` +
      `GPU_I_PROFILE="1g.6gb",GPU_I_ID="${gi}",Hostname="node"} ${value}`;
    const page = [
      mig(3, 'DCGM_FI_DEV_MEMORY_TEMP', '35'),
      mig(4, 'DCGM_FI_DEV_MEMORY_TEMP', '35'),
      mig(3, 'DCGM_FI_DEV_FB_USED', '1024'),
      mig(3, 'DCGM_FI_DEV_FB_FREE', '4840'),
      mig(4, 'DCGM_FI_DEV_FB_USED', '0'),
      mig(4, 'DCGM_FI_DEV_FB_FREE', '5864'),
      mig(3, 'DCGM_FI_PROF_SM_ACTIVE', '0.25'),
      mig(4, 'DCGM_FI_DEV_XID_ERRORS', '43'),
      mig(3, 'DCGM_FI_DEV_XID_ERRORS', '0'),
    ].join('\n');
    const d = parseDcgmExporterMetrics(page, T).sample.devices[0]!;
    assert.equal(d.memoryTemperatureC, 35);
    assert.equal(d.xidErrors?.last?.xid, 43);
    assert.ok(Number.isNaN(d.memory.totalBytes));
    assert.deepEqual(d.mig?.instances, [
      {
        gpuInstanceId: 3,
        profile: '1g.6gb',
        memory: { totalBytes: 5864 * MIB, usedBytes: 1024 * MIB, freeBytes: 4840 * MIB },
        profiling: { smActiveRatio: 0.25 },
      },
      {
        gpuInstanceId: 4,
        profile: '1g.6gb',
        memory: { totalBytes: 5864 * MIB, usedBytes: 0, freeBytes: 5864 * MIB },
      },
    ]);
  });

  it('tolerates what real exporters print: string values, odd labels, sentinels, broken lines', function () {
    const page = [
      '# HELP DCGM_FI_DEV_GPU_TEMP GPU temperature (in C).',
      '# TYPE DCGM_FI_DEV_GPU_TEMP gauge',
      // dcgm-exporter#488: a MIG value that is a name, and labels holding the conversion error.
      'DCGM_FI_DEV_CUDA_VISIBLE_DEVICES_STR{gpu="0",UUID="GPU-66068b5a-84f7-e3c9-bc10-e21eae988090",' +
        'pci_bus_id="00000000:09:00.0",device="nvidia0",modelName="NVIDIA H20",GPU_I_PROFILE="2g.24gb",GPU_I_ID="3",' +
        'Hostname="10-60-57-149",DCGM_FI_DEV_MIG_CI_INFO="ERROR - FAILED TO CONVERT TO STRING",' +
        'DCGM_FI_DEV_MIG_GI_INFO="ERROR - FAILED TO CONVERT TO STRING"} MIG-GPU-66068b5a-84f7-e3c9-bc10-e21eae988090/3',
      // gpu-monitoring-tools#97: a blank sentinel printed as a number.
      'DCGM_FI_DEV_GPU_TEMP{gpu="0",UUID="GPU-66068b5a-84f7-e3c9-bc10-e21eae988090",modelName="NVIDIA H20"} 9223372036854776000',
      'DCGM_FI_DEV_POWER_USAGE{gpu="0",modelName="NVIDIA H20",note="say \\"hi\\"\\\\",} 120.5 1700000000000',
      'DCGM_FI_DEV_SM_CLOCK{gpu="0"} NaN',
      'DCGM_FI_DEV_MEM_CLOCK{gpu="0",broken="} 1',
      'DCGM_FI_DEV_MEM_CLOCK{gpu="1",uuid="GPU-lower-case-label",modelName="NVIDIA H20"} 1593',
      'DCGM_FI_DEV_FB_USED{nvswitch="2"} 5',
    ].join('\n');
    const r = parseDcgmExporterMetrics(page, T);
    assert.equal(r.nonNumeric, 1);
    assert.equal(r.errors.length, 1);
    assert.equal(r.errors[0]!.line, 7);
    const [d0, d1] = r.sample.devices;
    assert.equal(r.sample.devices.length, 2, 'the NvSwitch series has no gpu label');
    assert.equal(d0!.uuid, 'GPU-66068b5a-84f7-e3c9-bc10-e21eae988090');
    assert.equal(d0!.pciBusId, '00000000:09:00.0');
    assert.equal(d0!.temperatureC, undefined);
    assert.equal(d0!.powerW, 120.5);
    assert.equal(d0!.smClockMHz, undefined, 'NaN is no reading');
    assert.deepEqual(d0!.mig?.instances, [{ gpuInstanceId: 3, profile: '2g.24gb' }]);
    assert.equal(d1!.uuid, 'GPU-lower-case-label');
    assert.equal(d1!.memClockMHz, 1593);
  });

  it('finds no device in a page without GPU series', function () {
    assert.deepEqual(parseDcgmExporterMetrics('# HELP up x\nup 1\n', T).sample.devices, []);
  });
});

describe('Prometheus text parser', function () {
  it('reads names, escaped labels, values and timestamps', function () {
    const r = parsePrometheusText(
      [
        '# TYPE a counter',
        'a 1',
        'b{x="1", y = "two words" } -2.5e3',
        'c{q="\\"\\\\\\n"} +Inf 123',
        'd{} -Inf',
        'e NaN',
        '',
        '# just a comment',
      ].join('\n'),
    );
    assert.deepEqual(r.errors, []);
    assert.equal(r.types.get('a'), 'counter');
    assert.deepEqual(
      r.samples.map((s) => [s.name, s.labels, s.value, s.timestampMs]),
      [
        ['a', {}, 1, undefined],
        ['b', { x: '1', y: 'two words' }, -2500, undefined],
        ['c', { q: '"\\\n' }, Infinity, 123],
        ['d', {}, -Infinity, undefined],
        ['e', {}, NaN, undefined],
      ],
    );
  });

  it('keeps a sample whose value is text, and reports lines it cannot read', function () {
    const r = parsePrometheusText(
      [
        'ok{a="b"} ERROR - FAILED TO CONVERT TO STRING',
        'x{a=b} 1',
        'y{a="b" c="d"} 1',
        '{a="b"} 1',
        'z{a="1",a="2"} 1',
        'w 0x1F',
      ].join('\n'),
    );
    assert.deepEqual(
      r.samples.map((s) => [s.name, s.value, s.rawValue]),
      [
        ['ok', undefined, 'ERROR - FAILED TO CONVERT TO STRING'],
        ['w', undefined, '0x1F'],
      ],
    );
    assert.deepEqual(
      r.errors.map((e) => e.line),
      [2, 3, 4, 5],
    );
  });
});
