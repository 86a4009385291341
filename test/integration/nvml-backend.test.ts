/**
 * The NVML backend through its real koffi bindings and worker threads, against the fake libnvidia-ml
 * built from test/fakes/nvml/fake_nvml.c. No timing assertions: waits are on conditions, with
 * generous limits.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { GpuError, GpuPoller, GpuStore } from '../../gpu/index.js';
import type { GpuDevice, GpuSample } from '../../gpu/index.js';
import { NvmlBackend, probeNvml } from '../../gpu/backends/nvml/index.js';
import type { NvmlBackendOptions } from '../../gpu/backends/nvml/index.js';
import { FakeClock } from '../helpers/fake-clock.js';
import {
  HANG_MARKER,
  clearHungCalls,
  fakeNvmlOrSkip,
  hungCalls,
  setFakeNvmlState,
} from '../helpers/fake-nvml.js';
import type { FakeNvmlState, FakeNvmlVariant } from '../helpers/fake-nvml.js';

const GIB = 1024 ** 3;
const MIB = 1024 ** 2;

const never = (): AbortSignal => new AbortController().signal;

/** Resolves once `pred` holds; fails with `what` after `timeoutMs`. */
async function until(pred: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Samples until `pred` holds for a sample, and returns that sample. */
async function sampleUntil(
  b: NvmlBackend,
  pred: (s: GpuSample) => boolean,
  what: string,
  timeoutMs = 15_000,
): Promise<GpuSample> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const s = await b.sample(never());
    if (pred(s)) return s;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof Error, 'rejects with an Error');
    return err;
  }
  assert.fail('expected a rejection');
}

function device(s: GpuSample, i: number): GpuDevice {
  const d = s.devices[i];
  assert.ok(d, `device ${i} is in the sample`);
  return d;
}

/** An H100 and an L4 with every reading set to something distinct. */
const TWO_GPUS: FakeNvmlState = {
  device_count: 2,
  driver_version: '550.90.07',
  cuda_version: 12040,
  'gpu0.name': 'NVIDIA H100 80GB HBM3',
  'gpu0.uuid': 'GPU-5d7a3b0e-1c2f-4a6b-9e8d-7f6a5b4c3d2e',
  'gpu0.bus_id': '00000000:18:00.0',
  'gpu0.serial': '1654922000123',
  'gpu0.vbios': '96.00.99.00.01',
  'gpu0.memory_total': 81559 * MIB,
  'gpu0.memory_reserved': 568 * MIB,
  'gpu0.memory_used': 2 * GIB,
  'gpu0.util_gpu': 97,
  'gpu0.util_memory': 38,
  'gpu0.encoder': 3,
  'gpu0.decoder': 12,
  'gpu0.temperature': 64,
  'gpu0.memory_temperature': 71,
  'gpu0.power_mw': 612345,
  'gpu0.power_limit_mw': 700000,
  'gpu0.energy_mj': 123456789,
  'gpu0.clock_sm': 1755,
  'gpu0.clock_mem': 2619,
  'gpu0.max_clock_sm': 1980,
  'gpu0.max_clock_mem': 2619,
  'gpu0.clock_reasons': '0x404',
  'gpu0.ecc_corrected': 3,
  'gpu0.ecc_uncorrected': 1,
  'gpu0.pstate': 2,
  'gpu0.fan': 45,
  'gpu0.pcie_gen': 5,
  'gpu0.pcie_width': 16,
  'gpu0.pcie_tx_kbs': 2048,
  'gpu0.pcie_rx_kbs': 4096,
  'gpu1.name': 'NVIDIA L4',
  'gpu1.uuid': 'GPU-0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0',
  'gpu1.bus_id': '00000000:3B:00.0',
  'gpu1.memory_total': 23034 * MIB,
  'gpu1.memory_reserved': 310 * MIB,
  'gpu1.memory_used': 0,
  'gpu1.util_gpu': 0,
  'gpu1.util_memory': 0,
  'gpu1.temperature': 33,
  'gpu1.power_mw': 16000,
  'gpu1.power_limit_mw': 72000,
  'gpu1.clock_sm': 210,
  'gpu1.clock_mem': 405,
  'gpu1.clock_reasons': '0x1',
  'gpu1.pstate': 8,
  'gpu1.fan': 0,
};

describe('NvmlBackend against the fake libnvidia-ml', function () {
  this.timeout(60_000);
  let backends: NvmlBackend[] = [];

  function backend(ctx: Mocha.Context, variant: FakeNvmlVariant, opts: NvmlBackendOptions = {}): NvmlBackend {
    const b = new NvmlBackend({
      libraryPath: fakeNvmlOrSkip(ctx, variant),
      eventWaitTimeoutMs: 50,
      ...opts,
    });
    backends.push(b);
    return b;
  }

  afterEach(async function () {
    // A test that failed half-way may have left a call hanging in the fake; let it return.
    setFakeNvmlState({});
    await Promise.all(backends.map((b) => b.close()));
    for (const b of backends) await until(() => b.stats().abandonedWorkers === 0, 'abandoned workers to end');
    backends = [];
  });

  describe('a current driver', function () {
    it('maps every reading, in base units, for each GPU', async function () {
      setFakeNvmlState(TWO_GPUS);
      const b = backend(this, 'modern', { xidEvents: false });
      const s = await b.sample(never());

      assert.equal(s.driverVersion, '550.90.07');
      assert.equal(s.cudaVersion, '12.4');
      assert.equal(s.devices.length, 2);
      const h100 = device(s, 0);
      assert.deepEqual(
        { ...h100, processes: undefined },
        {
          index: 0,
          uuid: 'GPU-5d7a3b0e-1c2f-4a6b-9e8d-7f6a5b4c3d2e',
          name: 'NVIDIA H100 80GB HBM3',
          pciBusId: '00000000:18:00.0',
          serial: '1654922000123',
          vbiosVersion: '96.00.99.00.01',
          memory: {
            totalBytes: 81559 * MIB,
            usedBytes: 2 * GIB,
            freeBytes: 81559 * MIB - 2 * GIB - 568 * MIB,
            reservedBytes: 568 * MIB,
          },
          utilization: { gpuPercent: 97, memoryPercent: 38 },
          encoderPercent: 3,
          decoderPercent: 12,
          temperatureC: 64,
          memoryTemperatureC: 71,
          powerW: 612.345,
          powerLimitW: 700,
          energyJoules: 123456.789,
          smClockMHz: 1755,
          memClockMHz: 2619,
          maxSmClockMHz: 1980,
          maxMemClockMHz: 2619,
          throttleReasons: ['sw_power_cap', 'bit_0x400'],
          eccErrors: { corrected: 3, uncorrected: 1 },
          performanceState: 'P2',
          fanPercent: 45,
          pcie: {
            linkGeneration: 5,
            linkWidth: 16,
            txBytesPerSecond: 2048 * 1024,
            rxBytesPerSecond: 4096 * 1024,
          },
          mig: { enabled: false, instances: [] },
          processes: undefined,
        },
      );

      const l4 = device(s, 1);
      assert.equal(l4.index, 1);
      assert.equal(l4.name, 'NVIDIA L4');
      assert.equal(l4.uuid, 'GPU-0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0');
      assert.equal(l4.pciBusId, '00000000:3B:00.0');
      assert.equal(l4.memory.usedBytes, 0);
      assert.equal(l4.memory.reservedBytes, 310 * MIB);
      assert.deepEqual(
        l4.utilization,
        { gpuPercent: 0, memoryPercent: 0 },
        'an idle GPU reads 0, not undefined',
      );
      assert.equal(l4.fanPercent, 0);
      assert.equal(l4.powerW, 16);
      assert.equal(l4.performanceState, 'P8');
      assert.deepEqual(l4.throttleReasons, ['gpu_idle']);
      assert.equal(l4.xidErrors, undefined, 'no XID counts without event monitoring');
    });

    it('skips PCIe throughput, which costs 20 ms per direction inside NVML, when told to', async function () {
      setFakeNvmlState({ 'gpu0.pcie_tx_kbs': 100, 'gpu0.pcie_rx_kbs': 200 });
      const b = backend(this, 'modern', { xidEvents: false, pcieThroughput: false });
      const d = device(await b.sample(never()), 0);
      assert.deepEqual(d.pcie, {
        linkGeneration: 4,
        linkWidth: 16,
        txBytesPerSecond: undefined,
        rxBytesPerSecond: undefined,
      });
    });

    it('binds the newest variant of each versioned call', async function () {
      setFakeNvmlState({});
      const b = backend(this, 'modern', { xidEvents: false });
      await b.sample(never());
      const symbols = b.stats().symbols;
      assert.ok(symbols);
      assert.equal(symbols.init, 'nvmlInit_v2');
      assert.equal(symbols.deviceCount, 'nvmlDeviceGetCount_v2');
      assert.equal(symbols.handleByIndex, 'nvmlDeviceGetHandleByIndex_v2');
      assert.equal(symbols.memory, 'nvmlDeviceGetMemoryInfo_v2');
      assert.equal(symbols.computeProcesses, 'nvmlDeviceGetComputeRunningProcesses_v3');
      assert.equal(symbols.clockReasons, 'nvmlDeviceGetCurrentClocksEventReasons');
      assert.equal(symbols.temperature, 'nvmlDeviceGetTemperatureV');
      assert.equal(symbols.pciInfo, 'nvmlDeviceGetPciInfo_v3');
      assert.equal(symbols.eventSetWait, 'nvmlEventSetWait_v2');
    });

    it('leaves each reading the device does not support undefined, never 0', async function () {
      setFakeNvmlState({
        unsupported: 'driver_version,cuda_version',
        'gpu0.unsupported': [
          'serial',
          'vbios',
          'pci',
          'utilization',
          'encoder',
          'decoder',
          'temperature',
          'memory_temperature',
          'power',
          'power_limit',
          'energy',
          'clocks',
          'max_clocks',
          'clock_reasons',
          'ecc',
          'pstate',
          'fan',
          'pcie_link',
          'pcie_throughput',
          'mig',
          'processes',
        ].join(','),
      });
      const b = backend(this, 'modern', { xidEvents: false });
      const s = await b.sample(never());
      assert.equal(s.driverVersion, undefined);
      assert.equal(s.cudaVersion, undefined);
      const d = device(s, 0);
      assert.equal(d.name, 'Fake GPU');
      assert.ok(d.memory.totalBytes > 0);
      assert.deepEqual(d.utilization, {});
      for (const key of [
        'pciBusId',
        'serial',
        'vbiosVersion',
        'encoderPercent',
        'decoderPercent',
        'temperatureC',
        'memoryTemperatureC',
        'powerW',
        'powerLimitW',
        'energyJoules',
        'smClockMHz',
        'memClockMHz',
        'maxSmClockMHz',
        'maxMemClockMHz',
        'throttleReasons',
        'eccErrors',
        'performanceState',
        'fanPercent',
        'pcie',
        'mig',
      ] as const) {
        assert.equal(d[key], undefined, `${key} is undefined`);
      }
      assert.deepEqual(d.processes, []);
    });

    it('fails the sample only when the devices cannot be enumerated', async function () {
      setFakeNvmlState({ device_count: 2, 'gpu1.unsupported': 'handle' });
      const b = backend(this, 'modern', { xidEvents: false });
      const err = await rejection(b.sample(never()));
      assert.ok(err instanceof GpuError);
      assert.equal(err.category, 'library');
      assert.match(err.message, /nvmlDeviceGetHandleByIndex_v2\(1\) failed: GPU is lost/);
      setFakeNvmlState({ device_count: 2 });
      assert.equal((await b.sample(never())).devices.length, 2, 'the same worker answers the next sample');
    });
  });

  describe('an old driver', function () {
    it('falls back to v1 memory (reserved counted as used), v1 processes and throttle reasons', async function () {
      setFakeNvmlState({
        'gpu0.memory_total': 16 * GIB,
        'gpu0.memory_reserved': 256 * MIB,
        'gpu0.memory_used': 3 * GIB,
        'gpu0.clock_reasons': '0x24',
        'gpu0.temperature': 51,
        'gpu0.processes': `4242:${GIB},4343:${512 * MIB},4444:na`,
        process_names: '4242:python3,4343:comfyui,4444:torchrun',
      });
      const b = backend(this, 'legacy');
      const s = await b.sample(never());
      const d = device(s, 0);
      assert.equal(d.memory.totalBytes, 16 * GIB);
      assert.equal(d.memory.usedBytes, 3 * GIB + 256 * MIB, 'v1 includes the reserved memory in used');
      assert.equal(d.memory.freeBytes, 16 * GIB - 3 * GIB - 256 * MIB);
      assert.equal(d.memory.reservedBytes, undefined, 'v1 cannot tell reserved memory apart');
      assert.deepEqual(d.throttleReasons, ['sw_power_cap', 'sw_thermal_slowdown']);
      assert.equal(d.temperatureC, 51);
      assert.deepEqual(d.processes, [
        { pid: 4242, name: 'python3', usedBytes: GIB, type: 'C' },
        { pid: 4343, name: 'comfyui', usedBytes: 512 * MIB, type: 'C' },
        { pid: 4444, name: 'torchrun', usedBytes: undefined, type: 'C' },
      ]);
      assert.equal(d.mig, undefined, 'no MIG API, no MIG answer');
      const symbols = b.stats().symbols;
      assert.ok(symbols);
      assert.equal(symbols.init, 'nvmlInit');
      assert.equal(symbols.deviceCount, 'nvmlDeviceGetCount');
      assert.equal(symbols.memory, 'nvmlDeviceGetMemoryInfo');
      assert.equal(symbols.computeProcesses, 'nvmlDeviceGetComputeRunningProcesses');
      assert.equal(symbols.clockReasons, 'nvmlDeviceGetCurrentClocksThrottleReasons');
      assert.equal(symbols.temperature, 'nvmlDeviceGetTemperature');
      assert.equal(symbols.migMode, null);
    });

    it('counts XID errors through the v1 event wait', async function () {
      setFakeNvmlState({});
      const b = backend(this, 'legacy');
      await b.sample(never());
      await until(() => b.stats().xid.state === 'active', 'event monitoring');
      assert.equal(b.stats().symbols?.eventSetWait, 'nvmlEventSetWait');
      setFakeNvmlState({ xid_events: '0:31' });
      const s = await sampleUntil(b, (s) => device(s, 0).xidErrors?.total === 1, 'the XID to be counted');
      assert.deepEqual(device(s, 0).xidErrors?.byXid, { '31': 1 });
    });

    it('runs on a library with nothing but enumeration, name, uuid and memory', async function () {
      setFakeNvmlState({ 'gpu0.name': 'Bare GPU', 'gpu0.memory_used': GIB });
      const b = backend(this, 'minimal');
      const s = await b.sample(never());
      const d = device(s, 0);
      assert.equal(d.name, 'Bare GPU');
      assert.equal(d.memory.usedBytes, GIB + 256 * MIB);
      assert.deepEqual(d.utilization, {});
      assert.equal(d.temperatureC, undefined);
      assert.equal(d.pciBusId, undefined);
      assert.equal(d.throttleReasons, undefined);
      assert.deepEqual(d.processes, []);
      assert.equal(d.xidErrors, undefined);
      assert.equal(s.driverVersion, undefined);
      assert.equal(s.cudaVersion, undefined);
      assert.equal(b.stats().xid.state, 'unavailable');
      assert.equal(b.stats().symbols?.clockReasons, null);
    });
  });

  describe('MIG and processes', function () {
    it('lists MIG instances with their ids, memory and uuid, and processes per instance', async function () {
      setFakeNvmlState({
        'gpu0.name': 'NVIDIA A100-SXM4-40GB',
        'gpu0.mig_mode': 1,
        'gpu0.migs': [
          `1:0:${20 * GIB}:${5 * GIB}:MIG-4f1c0d7a-3e2b-5c6d-8e9f-0a1b2c3d4e5f`,
          `2:0:${10 * GIB}:${GIB}:MIG-a1b2c3d4-e5f6-5a7b-8c9d-0e1f2a3b4c5d`,
        ].join(','),
        'gpu0.processes': `5001:${4 * GIB}:1:0,5002:${GIB}:2:0`,
        process_names: '5001:python3,5002:vllm',
      });
      const b = backend(this, 'modern', { xidEvents: false });
      const d = device(await b.sample(never()), 0);
      assert.deepEqual(d.mig, {
        enabled: true,
        instances: [
          {
            index: 0,
            gpuInstanceId: 1,
            computeInstanceId: 0,
            uuid: 'MIG-4f1c0d7a-3e2b-5c6d-8e9f-0a1b2c3d4e5f',
            memory: { totalBytes: 20 * GIB, usedBytes: 5 * GIB, freeBytes: 15 * GIB },
          },
          {
            index: 1,
            gpuInstanceId: 2,
            computeInstanceId: 0,
            uuid: 'MIG-a1b2c3d4-e5f6-5a7b-8c9d-0e1f2a3b4c5d',
            memory: { totalBytes: 10 * GIB, usedBytes: GIB, freeBytes: 9 * GIB },
          },
        ],
      });
      assert.deepEqual(d.utilization, {}, 'whole-GPU utilization is not available under MIG');
      assert.deepEqual(
        d.processes.map((p) => [p.pid, p.name, p.usedBytes]),
        [
          [5001, 'python3', 4 * GIB],
          [5002, 'vllm', GIB],
        ],
      );
    });

    it('names processes NVML will not name from /proc, and lists more than fit a first guess', async function () {
      const pids = Array.from({ length: 12 }, (_, i) => 7000 + i);
      const self = process.pid;
      setFakeNvmlState({
        'gpu0.processes': [`${self}:${GIB}`, ...pids.map((p) => `${p}:${MIB}`)].join(','),
        process_names: pids.map((p) => `${p}:worker-${p}`).join(','),
      });
      const b = backend(this, 'modern', { xidEvents: false });
      const d = device(await b.sample(never()), 0);
      assert.equal(d.processes.length, 13);
      const comm = readFileSync(`/proc/${self}/comm`, 'utf8').trim();
      assert.deepEqual(d.processes[0], { pid: self, name: comm, usedBytes: GIB, type: 'C' });
      assert.deepEqual(
        d.processes.slice(1).map((p) => p.name),
        pids.map((p) => `worker-${p}`),
      );
    });
  });

  describe('XID events', function () {
    it('counts XIDs per device and per code, with the last one and when it was seen', async function () {
      setFakeNvmlState({ device_count: 3, 'gpu2.unsupported': 'events' });
      const b = backend(this, 'modern');
      const first = await b.sample(never());
      assert.equal(device(first, 0).xidErrors, undefined, 'absent until monitoring has started');
      await until(() => b.stats().xid.state === 'active', 'event monitoring');
      assert.deepEqual(b.stats().xid.monitored, [0, 1], 'the device without event support is left out');

      const before = Date.now();
      setFakeNvmlState({ device_count: 3, 'gpu2.unsupported': 'events', xid_events: '0:79,0:48,1:13,0:79' });
      let s = await sampleUntil(
        b,
        (s) => device(s, 0).xidErrors?.total === 3 && device(s, 1).xidErrors?.total === 1,
        'four XIDs to be counted',
      );
      const x0 = device(s, 0).xidErrors;
      assert.deepEqual(x0?.byXid, { '79': 2, '48': 1 });
      assert.equal(x0?.last?.xid, 79);
      assert.ok(x0.last.at >= before && x0.last.at <= Date.now());
      assert.deepEqual(device(s, 1).xidErrors?.byXid, { '13': 1 });
      assert.equal(device(s, 2).xidErrors, undefined);

      // Each queued event is delivered once: later samples keep the same counts.
      setFakeNvmlState({
        device_count: 3,
        'gpu2.unsupported': 'events',
        xid_events: '0:79,0:48,1:13,0:79,1:94',
      });
      s = await sampleUntil(b, (s) => device(s, 1).xidErrors?.total === 2, 'the appended XID');
      assert.equal(device(s, 0).xidErrors?.total, 3);
      assert.deepEqual(device(s, 1).xidErrors?.last?.xid, 94);
    });
  });

  describe('a call that hangs', function () {
    it('rejects at the deadline, abandons the thread, and recovers on a fresh one', async function () {
      setFakeNvmlState({});
      const b = backend(this, 'modern', { maxAbandonedWorkers: 2 });
      await b.sample(never());
      clearHungCalls();
      setFakeNvmlState({ hang: 1, hang_on: 'nvmlDeviceGetUtilizationRates', hang_marker: HANG_MARKER });

      const deadline = new AbortController();
      const pending = b.sample(deadline.signal);
      await until(() => hungCalls().length === 1, 'the call to hang');
      const reason = new GpuError('timeout', 'deadline');
      deadline.abort(reason);
      assert.equal(await rejection(pending), reason, 'rejects with the abort reason');
      assert.equal(b.stats().abandonedWorkers, 1);

      // A second one hangs on a fresh thread; past the bound, sample() fails fast without a new thread.
      const startedBefore = b.stats().workersStarted;
      const second = new AbortController();
      const p2 = b.sample(second.signal);
      await until(() => hungCalls().length === 2, 'the call to hang on a fresh thread');
      assert.equal(b.stats().workersStarted, startedBefore + 1);
      second.abort(new GpuError('timeout', 'deadline'));
      await rejection(p2);
      assert.equal(b.stats().abandonedWorkers, 2);
      const started = b.stats().workersStarted;
      for (let i = 0; i < 3; i++) {
        const err = await rejection(b.sample(never()));
        assert.ok(err instanceof GpuError);
        assert.equal(err.category, 'timeout');
        assert.match(err.message, /still stuck/);
      }
      assert.equal(b.stats().workersStarted, started, 'no thread started while the bound is reached');
      assert.ok(b.stats().liveWorkers <= 4, 'sampler threads are bounded (2 abandoned + events thread)');

      setFakeNvmlState({});
      await until(() => b.stats().abandonedWorkers === 0, 'the abandoned threads to come back and be ended');
      const s = await b.sample(never());
      assert.equal(s.devices.length, 1);
      assert.equal(b.stats().workersStarted, started + 1, 'the recovery ran on a new thread');
    });

    it('lets each caller leave at its own deadline while a hanging init is shared', async function () {
      clearHungCalls();
      setFakeNvmlState({ hang: 1, hang_on: 'nvmlDeviceGetCount', hang_marker: HANG_MARKER });
      const b = backend(this, 'modern', { xidEvents: false });
      const a = new AbortController();
      const c = new AbortController();
      const first = b.sample(a.signal);
      const second = b.sample(c.signal);
      await until(() => hungCalls().length === 1, 'init to hang');
      const reasonC = new GpuError('timeout', 'second deadline');
      c.abort(reasonC);
      assert.equal(await rejection(second), reasonC);
      assert.equal(b.stats().abandonedWorkers, 0, 'the first caller still waits on that thread');
      const reasonA = new GpuError('timeout', 'first deadline');
      a.abort(reasonA);
      assert.equal(await rejection(first), reasonA);
      assert.equal(b.stats().abandonedWorkers, 1);
      assert.equal(b.stats().initAttempts, 1, 'one init for both callers');
      setFakeNvmlState({});
      await until(() => b.stats().abandonedWorkers === 0, 'the abandoned thread to end');
      assert.equal((await b.sample(never())).devices.length, 1);
    });

    it('under the real poller: the store goes down on timeouts and up again once the driver answers', async function () {
      setFakeNvmlState({});
      const b = backend(this, 'modern', { maxAbandonedWorkers: 2 });
      const store = new GpuStore({ backend: 'nvml', staleAfterMs: 60_000, historySize: 100 });
      const poller = new GpuPoller({
        backend: b,
        store,
        intervalMs: 20,
        sampleTimeoutMs: 1000,
        maxBackoffMs: 100,
      });
      let maxLive = 0;
      const watch = setInterval(() => (maxLive = Math.max(maxLive, b.stats().liveWorkers)), 5);
      try {
        poller.start();
        await until(() => store.status(Date.now()).up, 'a first good sample');

        setFakeNvmlState({ hang: 1 });
        await until(
          () => (store.status(Date.now()).failuresByCategory.timeout ?? 0) >= 6,
          'six timeouts while the driver hangs',
        );
        const during = store.status(Date.now());
        assert.equal(during.up, false);
        assert.equal(during.lastFailure?.category, 'timeout');
        assert.equal(b.stats().abandonedWorkers, 2);

        setFakeNvmlState({});
        const clearedAt = Date.now();
        await until(
          () => store.status(Date.now()).up && (store.latest()?.takenAt ?? 0) >= clearedAt,
          'a good sample after the hang cleared',
        );
        await until(() => b.stats().abandonedWorkers === 0, 'abandoned threads to end');
        // One sampler, the event thread, and at most two abandoned samplers, at any moment.
        assert.ok(maxLive <= 4, `at most 4 worker threads were alive, saw ${maxLive}`);
        assert.equal(store.latest()?.devices.length, 1);
      } finally {
        clearInterval(watch);
        await poller.stop();
      }
    });
  });

  describe('initialisation', function () {
    it('rejects with `library` while the driver is not loaded, retries after a doubling backoff, then works', async function () {
      setFakeNvmlState({ init_error: 9 });
      const clock = new FakeClock();
      const b = backend(this, 'modern', {
        clock,
        initRetryMinMs: 1000,
        initRetryMaxMs: 3000,
        xidEvents: false,
      });

      const first = await rejection(b.sample(never()));
      assert.ok(first instanceof GpuError);
      assert.equal(first.category, 'library');
      assert.match(first.message, /Driver Not Loaded/);
      assert.equal(b.stats().initAttempts, 1);
      assert.equal(b.stats().nextInitAttemptAt, clock.now() + 1000);

      const early = await rejection(b.sample(never()));
      assert.ok(early instanceof GpuError);
      assert.equal(early.category, 'library');
      assert.match(early.message, /next attempt in 1000 ms/);
      assert.equal(b.stats().initAttempts, 1, 'no attempt before the backoff ran out');

      await clock.advance(1000);
      await rejection(b.sample(never()));
      assert.equal(b.stats().initAttempts, 2);
      assert.equal(b.stats().nextInitAttemptAt, clock.now() + 2000, 'the wait doubles');
      await clock.advance(2000);
      await rejection(b.sample(never()));
      assert.equal(b.stats().nextInitAttemptAt, clock.now() + 3000, 'and stops at the maximum');

      setFakeNvmlState({});
      await rejection(b.sample(never()));
      assert.equal(b.stats().initAttempts, 3, 'still waiting out the backoff');
      await clock.advance(3000);
      const s = await b.sample(never());
      assert.equal(s.devices.length, 1);
      assert.equal(b.stats().initAttempts, 4);
      assert.equal(b.stats().consecutiveInitFailures, 0);
    });

    it('starts NVML afresh, with backoff, when the driver goes away under a running worker', async function () {
      setFakeNvmlState({});
      const clock = new FakeClock();
      const b = backend(this, 'modern', { clock, initRetryMinMs: 1000, xidEvents: false });
      await b.sample(never());

      setFakeNvmlState({ query_error: 9 });
      const err = await rejection(b.sample(never()));
      assert.ok(err instanceof GpuError);
      assert.equal(err.category, 'library');
      assert.match(err.message, /nvmlDeviceGetCount_v2 failed: Driver Not Loaded/);
      assert.equal(b.stats().consecutiveInitFailures, 1);
      await until(() => b.stats().liveWorkers === 0, 'the retired worker to exit');

      setFakeNvmlState({});
      const early = await rejection(b.sample(never()));
      assert.match(early.message, /next attempt in 1000 ms/);
      await clock.advance(1000);
      assert.equal((await b.sample(never())).devices.length, 1);
      assert.equal(b.stats().initAttempts, 2);
    });

    it('rejects with `library` when the library cannot be loaded', async function () {
      const b = new NvmlBackend({ libraryPath: '/nonexistent/libnvidia-ml.so.1', xidEvents: false });
      backends.push(b);
      const err = await rejection(b.sample(never()));
      assert.ok(err instanceof GpuError);
      assert.equal(err.category, 'library');
      assert.match(err.message, /cannot load \/nonexistent\/libnvidia-ml\.so\.1/);
    });
  });

  describe('probeNvml', function () {
    it('says yes with the device count when NVML initialises', async function () {
      setFakeNvmlState({ device_count: 2, driver_version: '550.90.07' });
      const r = await probeNvml({ libraryPath: fakeNvmlOrSkip(this, 'modern') });
      assert.deepEqual(r, { ok: true, deviceCount: 2, driverVersion: '550.90.07' });
    });

    it('says no, with the reason, when init fails, there is no GPU, or the library is missing', async function () {
      const libraryPath = fakeNvmlOrSkip(this, 'modern');
      setFakeNvmlState({ init_error: 9 });
      const notLoaded = await probeNvml({ libraryPath });
      assert.equal(notLoaded.ok, false);
      assert.match(notLoaded.ok ? '' : notLoaded.reason, /Driver Not Loaded/);
      setFakeNvmlState({ device_count: 0 });
      const none = await probeNvml({ libraryPath });
      assert.equal(none.ok, false);
      assert.match(none.ok ? '' : none.reason, /no GPUs/);
      const missing = await probeNvml({ libraryPath: '/nonexistent/libnvidia-ml.so.1' });
      assert.equal(missing.ok, false);
      assert.match(missing.ok ? '' : missing.reason, /cannot load/);
    });

    it('gives up at its deadline when the driver hangs', async function () {
      const libraryPath = fakeNvmlOrSkip(this, 'modern');
      setFakeNvmlState({ hang: 1 });
      const r = await probeNvml({ libraryPath, timeoutMs: 200 });
      assert.deepEqual(r, { ok: false, reason: 'NVML did not initialise within 200 ms' });
    });
  });

  describe('close', function () {
    it('returns within its bound while a worker is stuck in the driver', async function () {
      clearHungCalls();
      setFakeNvmlState({ hang: 1, hang_on: 'nvmlDeviceGetCount', hang_marker: HANG_MARKER });
      const b = backend(this, 'modern', { closeTimeoutMs: 100, xidEvents: false });
      const pending = b.sample(never());
      await until(() => hungCalls().length === 1, 'init to hang');
      await b.close();
      const err = await rejection(pending);
      assert.ok(err instanceof GpuError);
      assert.equal(err.category, 'library');
    });

    it('shuts every worker down, is idempotent, and refuses samples after', async function () {
      setFakeNvmlState({});
      const b = backend(this, 'modern');
      await b.sample(never());
      await until(() => b.stats().xid.state === 'active', 'event monitoring');
      assert.equal(b.stats().liveWorkers, 2);
      await Promise.all([b.close(), b.close()]);
      await b.close();
      assert.equal(b.stats().liveWorkers, 0);
      const err = await rejection(b.sample(never()));
      assert.ok(err instanceof GpuError);
      assert.equal(err.category, 'library');
    });
  });
});
