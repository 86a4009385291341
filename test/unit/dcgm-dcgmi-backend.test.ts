import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { DcgmiBackend } from '../../gpu/backends/dcgm.js';
import type { DcgmiBackendOptions } from '../../gpu/backends/dcgm.js';
import { defaultSpawn, runProcess } from '../../gpu/process.js';
import type { SpawnFn } from '../../gpu/process.js';
import { GpuError } from '../../gpu/errors.js';
import { GpuPoller } from '../../gpu/poller.js';
import { parseDcgmiDmon } from '../../gpu/parsers/dcgmi-dmon.js';
import { GpuStore } from '../../gpu/store.js';
import type { GpuSample } from '../../gpu/types.js';
import { ROOT, eventually, tempDir } from '../helpers/agent.js';
import { FAKE_DCGMI, RecordingLogger, isRunning } from '../helpers/dcgm.js';

const MIB = 1024 * 1024;
const signal = (ms = 5000): AbortSignal => AbortSignal.timeout(ms);

interface Harness {
  backend: DcgmiBackend;
  logger: RecordingLogger;
  /** Every process the backend started (dmon and discovery), with its arguments. */
  spawned: { args: readonly string[]; pid: number | undefined }[];
}

const open: DcgmiBackend[] = [];

/** A backend running the fake dcgmi with short intervals, so restarts happen within a test. */
function harness(env: Record<string, string>, options: Partial<DcgmiBackendOptions> = {}): Harness {
  const logger = new RecordingLogger();
  const spawned: Harness['spawned'] = [];
  const spawn: SpawnFn = (command, args, o) => {
    const child = defaultSpawn(command, args, o);
    spawned.push({ args, pid: child.pid });
    return child;
  };
  const backend = new DcgmiBackend({
    binary: FAKE_DCGMI,
    intervalMs: 50,
    maxReadingAgeMs: 1000,
    // Generous, so a slow CI machine starting node is not taken for a hung dcgmi.
    silenceTimeoutMs: 5000,
    restartBackoffMs: 50,
    maxRestartBackoffMs: 400,
    killGraceMs: 1000,
    env: { ...process.env, ...env },
    spawn,
    logger,
    ...options,
  });
  open.push(backend);
  return { backend, logger, spawned };
}

/** The first sample that succeeds (the child needs a moment to print its first rows). */
function firstReading(
  backend: DcgmiBackend,
  accept: (s: GpuSample) => boolean = () => true,
): Promise<GpuSample> {
  return eventually(
    async () => {
      const s = await backend.sample(signal()).catch(() => undefined);
      return s && accept(s) ? s : undefined;
    },
    20_000,
    'a reading from dcgmi dmon',
  );
}

function until(what: string, pred: () => boolean): Promise<true> {
  return eventually(async () => Promise.resolve(pred() ? true : undefined), 20_000, what);
}

function isGpuError(category: string, message?: RegExp): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof GpuError, `a GpuError, got ${String(err)}`);
    assert.equal(err.category, category, err.message);
    if (message) assert.match(err.message, message);
    return true;
  };
}

describe('the fake dcgmi', function () {
  this.timeout(30_000);

  it('prints the real capture again for its command line, byte for byte but trailing spaces', async function () {
    const capture = readFileSync(
      path.join(ROOT, 'test/fixtures/real/dcgmi-dmon_rtx-2080-ti_driver-590.48.01_dcgm-3.3.5.txt'),
      'utf8',
    );
    const r = await runProcess(
      FAKE_DCGMI,
      ['dmon', '-e', '203,204,155,150,310,311,252', '-c', '5', '-d', '1'],
      {
        timeoutMs: 10_000,
      },
    );
    assert.equal(r.code, 0);
    assert.equal(r.stdout.replace(/ +$/gm, ''), capture);
  });

  it('prints the header again every 14 intervals after the first 15, as dcgmi does', async function () {
    const r = await runProcess(FAKE_DCGMI, ['dmon', '-e', '203,140', '-c', '31', '-d', '1'], {
      timeoutMs: 10_000,
    });
    const { lines, rows } = parseDcgmiDmon(r.stdout, [203, 140]);
    const headers = lines.flatMap((l, i) => (l.kind === 'header' ? [i] : []));
    assert.deepEqual(headers, [0, 17, 33]);
    assert.equal(rows.length, 31);
    assert.ok(rows.every((row) => row.values.get(203) === 0 && !row.values.has(140)));
  });
});

describe('DcgmiBackend against the fake dcgmi', function () {
  this.timeout(60_000);

  afterEach(async function () {
    await Promise.all(open.splice(0).map((b) => b.close()));
  });

  it('reads the rows of one long-lived dmon child, named by discovery -l', async function () {
    const { backend, spawned } = harness({ FAKE_DCGMI_GPUS: '2' });
    await firstReading(backend);
    await until('discovery', () => backend.stats().discoveredGpus === 2);
    const s = await firstReading(backend, (x) => x.devices[0]?.name !== '');
    assert.ok(s.takenAt <= Date.now());
    assert.equal(s.driverVersion, undefined, 'dmon does not say');
    assert.equal(s.devices.length, 2);
    for (const [i, d] of s.devices.entries()) {
      assert.equal(d.index, i);
      assert.equal(d.name, 'NVIDIA GeForce RTX 2080 Ti');
      assert.equal(d.uuid, `GPU-2080e1a0-100${i}-4c3d-8b2a-5f000000000${i}`);
      assert.equal(d.pciBusId, i === 0 ? '00000000:1A:00.0' : '00000000:2A:00.0');
      // From the real capture.
      assert.deepEqual(d.utilization, { gpuPercent: 0, memoryPercent: 0 });
      assert.equal(d.temperatureC, 22);
      assert.ok(d.powerW === 20.891 || d.powerW === 20.986, `power ${d.powerW}`);
      assert.deepEqual(d.eccErrors, { corrected: 0, uncorrected: 0 });
      assert.equal(d.memory.usedBytes, 0);
      // The fake's fixed values for fields the capture lacks.
      assert.deepEqual(d.memory, {
        totalBytes: 11264 * MIB,
        usedBytes: 0,
        freeBytes: 11044 * MIB,
        reservedBytes: 220 * MIB,
      });
      assert.equal(d.memoryTemperatureC, undefined, 'N/A stays unknown');
      assert.equal(d.powerLimitW, 250);
      assert.equal(d.smClockMHz, 300);
      assert.equal(d.memClockMHz, 405);
      assert.ok(d.energyJoules! > 1e6);
      assert.deepEqual(d.throttleReasons, ['gpu_idle']);
      assert.equal(d.performanceState, 'P8');
      assert.equal(d.xidErrors, undefined);
      assert.deepEqual(d.profiling, {
        grEngineActiveRatio: 0,
        smActiveRatio: 0,
        smOccupancyRatio: 0,
        tensorActiveRatio: 0,
        dramActiveRatio: 0,
        pcieTxBytesPerSecond: 20480 + i,
        pcieRxBytesPerSecond: 8192 + i,
      });
    }
    const stats = backend.stats();
    assert.equal(stats.starts, 1, 'one child serves every sample');
    assert.deepEqual(stats.failures, {});
    assert.equal(spawned.filter((p) => p.args[0] === 'dmon').length, 1);
    assert.deepEqual(spawned.find((p) => p.args[0] === 'dmon')?.args.slice(0, 5), [
      'dmon',
      '-e',
      '203,204,250,251,252,253,150,140,155,160,100,101,156,230,112,190,310,311,1001,1002,1003,1004,1005,1009,1010',
      '-d',
      '50',
    ]);
  });

  it('samples through the poller into the store', async function () {
    const { backend } = harness({});
    const store = new GpuStore({ backend: 'dcgm', staleAfterMs: 10_000, historySize: 10 });
    const poller = new GpuPoller({ backend, store, intervalMs: 100, sampleTimeoutMs: 3000 });
    poller.start();
    try {
      await until('a stored sample', () => store.latest()?.devices.length === 1);
      assert.equal(store.latest()!.devices[0]!.temperatureC, 22);
    } finally {
      await poller.stop();
    }
  });

  it('rejects with timeout while dmon hangs, restarts it with backoff, and reads again once it answers', async function () {
    const modeFile = path.join(tempDir('fake-dcgmi-'), 'mode');
    writeFileSync(modeFile, 'hang');
    const { backend, logger, spawned } = harness(
      { FAKE_DCGMI_MODE_FILE: modeFile },
      { maxReadingAgeMs: 300, silenceTimeoutMs: 300 },
    );
    await assert.rejects(backend.sample(signal()), isGpuError('timeout', /no reading from dcgmi dmon/));
    await until('four dmon starts', () => backend.stats().starts >= 4);
    assert.ok(backend.stats().failures.timeout! >= 3);
    const delays = logger.find('dcgmi dmon restart scheduled').map((e) => e.data.delay_ms);
    assert.deepEqual(delays.slice(0, 3), [50, 100, 200], 'the wait doubles per failure');
    const dmonPids = spawned.filter((p) => p.args[0] === 'dmon').map((p) => p.pid);
    assert.equal(new Set(dmonPids).size, dmonPids.length, 'each restart is a new child');
    for (const pid of dmonPids.slice(0, -1))
      assert.equal(isRunning(pid!), false, `hung child ${pid} is gone`);

    writeFileSync(modeFile, 'normal');
    const s = await firstReading(backend);
    assert.equal(s.devices[0]!.temperatureC, 22);
  });

  it('restarts a child that dies and serves newer values from the next one', async function () {
    const { backend } = harness({ FAKE_DCGMI_MODE: 'die-after=3' });
    const before = await firstReading(backend);
    await until('two deaths', () => (backend.stats().failures['exit:235'] ?? 0) >= 2);
    const starts = backend.stats().starts;
    assert.ok(starts >= 2);
    const after = await firstReading(
      backend,
      (s) => backend.stats().starts > starts && s.takenAt > before.takenAt,
    );
    assert.ok(after.devices[0]!.energyJoules! > before.devices[0]!.energyJoules!, 'energy moved on');
  });

  it('counts junk lines as parse failures without crashing, and restarts a child that prints only junk', async function () {
    const { backend } = harness({ FAKE_DCGMI_MODE: 'garbage' }, { silenceTimeoutMs: 600 });
    await assert.rejects(backend.sample(signal()), isGpuError('timeout'));
    await until('parse failures', () => (backend.stats().failures.parse ?? 0) >= 5);
    await until('a restart', () => backend.stats().starts >= 2);
    assert.ok((backend.stats().failures.timeout ?? 0) >= 1);
    assert.equal(backend.stats().readings, 0);
  });

  it('counts a child that exits at once by its status and logs what it said', async function () {
    const { backend, logger } = harness({ FAKE_DCGMI_MODE: 'exit' });
    await assert.rejects(backend.sample(signal()), isGpuError('timeout', /exit:1/));
    await until('two exits', () => (backend.stats().failures['exit:1'] ?? 0) >= 2);
    const said = logger.find('dcgmi dmon says').map((e) => String(e.data.line));
    assert.ok(
      said.some((l) => l.includes('Unable to connect to host engine')),
      said.join('\n'),
    );
  });

  it('rejects with spawn when dcgmi cannot be started', async function () {
    const { backend } = harness({}, { binary: path.join(tempDir('no-dcgmi-'), 'dcgmi') });
    await eventually(
      async () =>
        backend.sample(signal()).then(
          () => undefined,
          (err: unknown) => (err instanceof GpuError && err.category === 'spawn' ? err : undefined),
        ),
      20_000,
      'a spawn failure',
    );
    assert.ok(backend.stats().failures.spawn! >= 1);
  });

  it('watches the other fields when the GPU refuses profiling ones', async function () {
    const { backend, logger } = harness({ FAKE_DCGMI_PROFILING: 'unsupported' });
    const s = await firstReading(backend);
    const stats = backend.stats();
    assert.equal(stats.profilingDisabled, true);
    assert.equal(stats.failures['exit:220'], 1);
    assert.ok(!stats.fieldIds.some((id) => id >= 1001 && id <= 1010));
    assert.equal(s.devices[0]!.profiling, undefined);
    assert.equal(s.devices[0]!.temperatureC, 22);
    assert.equal(logger.find('dcgmi refused the profiling fields; watching the others only').length, 1);
  });

  it('reports the newest XID code with the time it was first seen', async function () {
    const { backend } = harness({ FAKE_DCGMI_XID: '79' });
    const first = await firstReading(backend);
    const xid = first.devices[0]!.xidErrors;
    assert.deepEqual(xid, { total: 0, byXid: {}, last: { xid: 79, at: first.takenAt } });
    const later = await firstReading(backend, (s) => s.takenAt > first.takenAt);
    assert.equal(later.devices[0]!.xidErrors?.last?.at, first.takenAt);
  });

  it('stops on abort', async function () {
    const { backend } = harness({ FAKE_DCGMI_MODE: 'hang' }, { maxReadingAgeMs: 30_000 });
    const abort = new AbortController();
    const pending = backend.sample(abort.signal);
    abort.abort(new GpuError('timeout', 'sample took longer than 100 ms'));
    await assert.rejects(pending, isGpuError('timeout', /took longer than 100 ms/));
  });

  it('leaves no process behind on close, wrapper grandchildren included', async function () {
    const pidFile = path.join(tempDir('fake-dcgmi-'), 'grandchild.pid');
    const { backend, spawned } = harness({ FAKE_DCGMI_GRANDCHILD_PIDFILE: pidFile });
    await firstReading(backend);
    const pid = backend.pid!;
    const grandchild = Number(readFileSync(pidFile, 'utf8'));
    assert.ok(isRunning(pid) && isRunning(grandchild));
    await backend.close();
    await backend.close();
    assert.equal(backend.pid, undefined);
    await until('the child and its grandchild gone', () => !isRunning(pid) && !isRunning(grandchild));
    for (const p of spawned) assert.equal(isRunning(p.pid!), false, `${p.args.join(' ')} (${p.pid})`);
    await assert.rejects(backend.sample(signal()), isGpuError('library'));
  });

  it('kills a child that ignores SIGTERM once the grace period is over', async function () {
    const { backend } = harness({ FAKE_DCGMI_IGNORE_SIGTERM: '1' }, { killGraceMs: 300 });
    await firstReading(backend);
    const pid = backend.pid!;
    await backend.close();
    await until('the child gone', () => !isRunning(pid));
  });
});
