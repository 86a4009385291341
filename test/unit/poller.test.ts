import assert from 'node:assert/strict';
import { GpuError, GpuPoller, GpuStore, nextDelayMs } from '../../gpu/index.js';
import type { GpuBackend, GpuLogger, GpuSample } from '../../gpu/index.js';
import { FakeClock, settle } from '../helpers/fake-clock.js';

function sampleAt(t: number): GpuSample {
  return {
    takenAt: t,
    devices: [
      {
        index: 0,
        uuid: 'GPU-0',
        name: 'Test GPU',
        memory: { totalBytes: 100, usedBytes: 10, freeBytes: 90 },
        utilization: { gpuPercent: 5 },
        processes: [],
      },
    ],
  };
}

/** A backend whose every call is answered by the test. */
class ScriptedBackend implements GpuBackend {
  readonly name = 'mock' as const;
  calls = 0;
  concurrent = 0;
  maxConcurrent = 0;
  signals: AbortSignal[] = [];
  constructor(private readonly answer: (call: number, signal: AbortSignal) => Promise<GpuSample>) {}
  async sample(signal: AbortSignal): Promise<GpuSample> {
    this.calls++;
    this.signals.push(signal);
    this.concurrent++;
    this.maxConcurrent = Math.max(this.maxConcurrent, this.concurrent);
    try {
      return await this.answer(this.calls, signal);
    } finally {
      this.concurrent--;
    }
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

class MemoryLogger implements GpuLogger {
  records: { level: string; obj: object; msg: string }[] = [];
  debug = (obj: object, msg: string): void => void this.records.push({ level: 'debug', obj, msg });
  info = (obj: object, msg: string): void => void this.records.push({ level: 'info', obj, msg });
  warn = (obj: object, msg: string): void => void this.records.push({ level: 'warn', obj, msg });
  error = (obj: object, msg: string): void => void this.records.push({ level: 'error', obj, msg });
}

function setup(
  backend: GpuBackend,
  opts: { intervalMs?: number; timeoutMs?: number; maxBackoffMs?: number; staleAfterMs?: number } = {},
) {
  const clock = new FakeClock();
  const store = new GpuStore({
    backend: backend.name,
    staleAfterMs: opts.staleAfterMs ?? 3000,
    historySize: 10,
  });
  const logger = new MemoryLogger();
  const poller = new GpuPoller({
    backend,
    store,
    intervalMs: opts.intervalMs ?? 100,
    sampleTimeoutMs: opts.timeoutMs ?? 7,
    maxBackoffMs: opts.maxBackoffMs ?? 500,
    summaryIntervalMs: 60_000,
    clock,
    logger,
  });
  return { clock, store, logger, poller };
}

describe('GpuPoller', function () {
  it('samples on the interval and records each reading', async function () {
    const backend = new ScriptedBackend(() => Promise.resolve(sampleAt(1)));
    const { clock, store, poller } = setup(backend);
    poller.start();
    await clock.advance(0);
    assert.equal(backend.calls, 1);
    await clock.advance(99);
    assert.equal(backend.calls, 1);
    await clock.advance(1);
    assert.equal(backend.calls, 2);
    await clock.advance(300);
    assert.equal(backend.calls, 5);
    assert.equal(store.status(clock.now()).samplesTotal, 5);
    assert.equal(store.history().length, 5);
    assert.equal(store.status(clock.now()).up, true);
    await poller.stop();
  });

  it('never overlaps runs: a slow sample delays the next one', async function () {
    let release: (() => void) | undefined;
    const backend = new ScriptedBackend(
      () => new Promise<GpuSample>((resolve) => (release = () => resolve(sampleAt(1)))),
    );
    const { clock, poller } = setup(backend, { timeoutMs: 10_000 });
    poller.start();
    await clock.advance(1000);
    assert.equal(backend.calls, 1, 'no second call while the first runs');
    release?.();
    await settle();
    await clock.advance(0);
    assert.equal(backend.calls, 2, 'the next call starts at once when the interval has passed');
    assert.equal(backend.maxConcurrent, 1);
    release?.();
    await poller.stop();
  });

  it('aborts a sample at its deadline and counts a timeout, even if the backend ignores the signal', async function () {
    let release: ((s: GpuSample) => void) | undefined;
    const backend = new ScriptedBackend((call) =>
      call === 1 ? new Promise<GpuSample>((resolve) => (release = resolve)) : Promise.resolve(sampleAt(2)),
    );
    const { clock, store, poller, logger } = setup(backend, { timeoutMs: 50 });
    poller.start();
    await clock.advance(50);
    const s = store.status(clock.now());
    assert.equal(s.up, false);
    assert.equal(s.lastFailure?.category, 'timeout');
    assert.match(s.lastFailure?.message ?? '', /longer than 50 ms/);
    assert.equal(backend.signals[0]?.aborted, true, 'the signal was aborted');
    assert.ok(logger.records.some((r) => r.level === 'warn' && r.msg === 'gpu backend is down'));

    // While the abandoned call is still pending, the backend is not called again.
    await clock.advance(5_000);
    assert.equal(backend.calls, 1);
    assert.ok(store.status(clock.now()).failuresTotal >= 2);

    // Once it settles, sampling resumes and the backend is up again.
    release?.(sampleAt(1));
    await settle();
    await clock.advance(1_000);
    assert.ok(backend.calls >= 2);
    assert.equal(store.status(clock.now()).up, true);
    assert.ok(logger.records.some((r) => r.msg === 'gpu backend is up again'));
    await poller.stop();
  });

  it('backs off exponentially after failures, up to the cap, and returns to the interval on success', async function () {
    let fail = true;
    const backend = new ScriptedBackend(() =>
      fail
        ? Promise.reject(new GpuError('exit:9', 'nvidia-smi exited with 9'))
        : Promise.resolve(sampleAt(1)),
    );
    const { clock, store, poller } = setup(backend, { intervalMs: 100, timeoutMs: 7, maxBackoffMs: 500 });
    poller.start();
    await clock.advance(0 + 100 + 200 + 400 + 500 + 500);
    const loopDelays = clock.requested.filter((ms) => ms !== 7 && ms !== 60_000);
    assert.deepEqual(loopDelays, [0, 100, 200, 400, 500, 500, 500]);
    assert.equal(store.status(clock.now()).failuresByCategory['exit:9'], 6);
    fail = false;
    await clock.advance(500);
    assert.equal(store.status(clock.now()).up, true);
    assert.equal(clock.requested.filter((ms) => ms !== 7 && ms !== 60_000).at(-1), 100);
    await poller.stop();
  });

  it('computes delays from the interval, the time a sample took and the failure count', function () {
    assert.equal(nextDelayMs(0, 30, 100, 1000), 70);
    assert.equal(nextDelayMs(0, 130, 100, 1000), 0);
    assert.equal(nextDelayMs(1, 0, 100, 1000), 100);
    assert.equal(nextDelayMs(4, 0, 100, 1000), 800);
    assert.equal(nextDelayMs(40, 0, 100, 1000), 1000);
    assert.equal(nextDelayMs(3, 0, 5000, 1000), 5000, 'the cap never goes below the interval');
  });

  it('turns a backend that throws synchronously into a failure, not a crash', async function () {
    const backend: GpuBackend = {
      name: 'nvml',
      sample: () => {
        throw new GpuError('library', 'symbol missing');
      },
      close: () => Promise.resolve(),
    };
    const { clock, store, poller } = setup(backend);
    poller.start();
    await clock.advance(0);
    assert.equal(store.status(clock.now()).lastFailure?.category, 'library');
    await poller.stop();
  });

  it('reports staleness from the age of the newest good sample', async function () {
    let fail = false;
    const backend = new ScriptedBackend(() =>
      fail ? Promise.reject(new Error('boom')) : Promise.resolve(sampleAt(0)),
    );
    const { clock, store, poller } = setup(backend, { staleAfterMs: 1000 });
    assert.equal(store.status(clock.now()).stale, true, 'stale before the first sample');
    assert.equal(store.status(clock.now()).sampleAgeMs, undefined);
    // Samples carry the backend's own timestamp; make it follow the fake clock.
    (backend as unknown as { answer: () => Promise<GpuSample> }).answer = () =>
      fail ? Promise.reject(new Error('boom')) : Promise.resolve(sampleAt(clock.now()));
    poller.start();
    await clock.advance(0);
    assert.equal(store.status(clock.now()).stale, false);
    fail = true;
    await clock.advance(1001);
    const s = store.status(clock.now());
    assert.equal(s.stale, true);
    assert.equal(s.sampleAgeMs, 1001);
    assert.equal(s.lastFailure?.category, 'unknown');
    await poller.stop();
  });

  it('logs one INFO summary per window with samples, failures and devices', async function () {
    let n = 0;
    const backend = new ScriptedBackend(() =>
      ++n % 2 === 0 ? Promise.reject(new GpuError('parse', 'bad xml')) : Promise.resolve(sampleAt(1)),
    );
    const { clock, logger, poller } = setup(backend, { intervalMs: 10_000 });
    poller.start();
    await clock.advance(60_000);
    const summaries = logger.records.filter((r) => r.msg === 'gpu poller summary');
    assert.equal(summaries.length, 1);
    assert.equal(summaries[0]!.level, 'info');
    const data = (
      summaries[0]!.obj as { data: { samples: number; failures: Record<string, number>; devices: number } }
    ).data;
    assert.ok(data.samples >= 4);
    assert.ok((data.failures.parse ?? 0) >= 1);
    assert.equal(data.devices, 1);
    await poller.stop();
  });

  it('stops: no more samples, the in-flight one aborted', async function () {
    const backend = new ScriptedBackend(
      (_call, signal) =>
        new Promise<GpuSample>((_resolve, reject) =>
          signal.addEventListener('abort', () => reject(signal.reason as Error)),
        ),
    );
    const { clock, poller } = setup(backend, { timeoutMs: 10_000 });
    poller.start();
    await clock.advance(0);
    assert.equal(backend.calls, 1);
    await poller.stop();
    assert.equal(backend.signals[0]?.aborted, true);
    await clock.advance(100_000);
    assert.equal(backend.calls, 1);
    assert.equal(poller.isRunning, false);
  });
});
