import assert from 'node:assert/strict';
import pino from 'pino';
import { JobReporter } from '../../src/queue/job-reporter.js';
import type { ProgressPayload } from '../../src/queue/job-reporter.js';

/** A write the test completes by hand, like a Redis round trip that takes its time. */
function gatedWriter<T>() {
  const written: T[] = [];
  const gates: (() => void)[] = [];
  return {
    written,
    write: (v: T): Promise<void> => {
      written.push(v);
      return new Promise<void>((r) => gates.push(r));
    },
    releaseAll(): void {
      while (gates.length) gates.shift()?.();
    },
  };
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));
const p = (progress: number, step: number | null = null): ProgressPayload => ({
  progress,
  node: step === null ? null : 'KSampler_3',
  step,
  total: step === null ? null : 20,
});

describe('JobReporter', function () {
  const logger = pino({ level: 'silent' });

  it('writes one progress at a time, then only the newest, never a lower percent', async function () {
    const progress = gatedWriter<ProgressPayload>();
    const r = new JobReporter({
      writeProgress: progress.write,
      writeLog: () => Promise.resolve(),
      progressIntervalMs: 0,
      keepLogs: 10,
      logger,
    });
    r.progress(p(10, 1));
    r.progress(p(20, 2));
    r.progress(p(15, 3));
    r.progress(p(30, 4));
    await tick();
    assert.deepEqual(progress.written, [p(10, 1)], 'one write in flight');
    progress.releaseAll();
    await tick();
    assert.deepEqual(progress.written, [p(10, 1), p(30, 4)], 'the newest value, skipping the ones between');
    r.progress(p(25, 5));
    progress.releaseAll();
    await tick();
    assert.equal(progress.written[2]?.progress, 30, 'a lower percent is raised to the one already written');
    assert.equal(progress.written[2]?.step, 5);
    progress.releaseAll();
    await r.close(100);
  });

  it('sends the last value on close and then takes no more', async function () {
    const progress = gatedWriter<ProgressPayload>();
    const r = new JobReporter({
      writeProgress: progress.write,
      writeLog: () => Promise.resolve(),
      progressIntervalMs: 60_000,
      keepLogs: 10,
      logger,
    });
    assert.equal(r.reported, false);
    r.progress(p(10));
    r.progress(p(90));
    assert.equal(r.reported, true);
    const closing = r.close(1000);
    progress.releaseAll();
    await tick();
    progress.releaseAll();
    await closing;
    assert.deepEqual(
      progress.written.map((w) => w.progress),
      [10, 90],
    );
    r.progress(p(100));
    await tick();
    assert.equal(progress.written.length, 2);
  });

  it('gives up waiting on close after the timeout when the queue does not answer', async function () {
    const r = new JobReporter({
      writeProgress: () => new Promise(() => undefined),
      writeLog: () => Promise.resolve(),
      progressIntervalMs: 0,
      keepLogs: 10,
      logger,
    });
    r.progress(p(10));
    const t0 = Date.now();
    await r.close(50);
    assert.ok(Date.now() - t0 < 5000, 'close returned');
  });

  it('keeps the log backlog bounded and says how many lines it dropped', async function () {
    const log = gatedWriter<string>();
    const r = new JobReporter({
      writeProgress: () => Promise.resolve(),
      writeLog: log.write,
      progressIntervalMs: 0,
      keepLogs: 10,
      logger,
    });
    for (let i = 0; i < 1500; i++) r.line(`line ${i}`);
    for (let i = 0; i < 2000 && log.written.length < 1002; i++) {
      log.releaseAll();
      await tick();
    }
    assert.equal(log.written[0], 'line 0');
    assert.equal(log.written[1], '[499 lines dropped: the job printed faster than Redis took them]');
    assert.equal(log.written[2], 'line 500');
    assert.equal(log.written.at(-1), 'line 1499');
    assert.equal(log.written.length, 1002);
  });

  it('writes no log with keepLogs 0', async function () {
    const log = gatedWriter<string>();
    const r = new JobReporter({
      writeProgress: () => Promise.resolve(),
      writeLog: log.write,
      progressIntervalMs: 0,
      keepLogs: 0,
      logger,
    });
    r.line('hello');
    await tick();
    assert.equal(log.written.length, 0);
  });
});
