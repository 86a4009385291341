import assert from 'node:assert/strict';
import { JobStore } from '../../src/jobs/job-store.js';
import type { JobEvent } from '../../src/jobs/job-store.js';

describe('JobStore', function () {
  let t: number;
  let store: JobStore;
  beforeEach(function () {
    t = 1000;
    store = new JobStore(3, () => t);
  });

  it('walks a job through queued → active → completed with timestamps', function () {
    store.upsert({ id: 'a', queue: 'q', source: 'test' });
    assert.equal(store.get('a')?.state, 'queued');
    assert.deepEqual(store.counts('q'), { queued: 1, active: 0, stalled: 0 });
    t = 2000;
    assert.ok(store.transition('a', 'active'));
    assert.equal(store.currentJob()?.id, 'a');
    assert.equal(store.get('a')?.attempts, 1);
    t = 5000;
    assert.ok(store.transition('a', 'completed', { result: { ok: true } }));
    const job = store.get('a')!;
    assert.equal(job.startedAt, 2000);
    assert.equal(job.finishedAt, 5000);
    assert.equal(job.progressPercent, 100);
    assert.deepEqual(job.result, { ok: true });
    assert.equal(store.currentJob(), undefined);
    assert.deepEqual(
      store.recent().map((j) => j.id),
      ['a'],
    );
  });

  it('refuses moves the state machine does not allow', function () {
    store.upsert({ id: 'a', queue: 'q', source: 'test', state: 'active' });
    store.transition('a', 'completed');
    assert.equal(store.transition('a', 'active'), false, 'completed is final');
    assert.equal(store.transition('a', 'failed'), false);
    assert.equal(store.transition('nope', 'active'), false);
    assert.equal(store.get('a')?.state, 'completed');
  });

  it('lets a failed or returned job come back for a retry, counting attempts', function () {
    store.upsert({ id: 'a', queue: 'q', source: 'test', state: 'active' });
    store.transition('a', 'failed', { failure: { message: 'boom' } });
    assert.equal(store.get('a')?.failure?.message, 'boom');
    assert.ok(store.transition('a', 'active'));
    const job = store.get('a')!;
    assert.equal(job.attempts, 2);
    assert.equal(job.failure, undefined, 'a retry starts clean');
    assert.equal(store.liveJobs().filter((j) => j.state === 'active').length, 1);
  });

  it('keeps progress monotonic and only for active jobs', function () {
    store.upsert({ id: 'a', queue: 'q', source: 'test', state: 'active' });
    assert.ok(store.setProgress('a', 40));
    assert.equal(store.setProgress('a', 30), false);
    assert.equal(store.setProgress('a', Number.NaN), false);
    assert.ok(store.setProgress('a', 140));
    assert.equal(store.get('a')?.progressPercent, 100);
    store.upsert({ id: 'b', queue: 'q', source: 'test' });
    assert.equal(store.setProgress('b', 10), false);
  });

  it('bounds the history of finished jobs, evicting the oldest', function () {
    for (const id of ['a', 'b', 'c', 'd', 'e']) {
      store.upsert({ id, queue: 'q', source: 'test', state: 'active' });
      store.transition(id, 'completed');
    }
    assert.deepEqual(
      store.recent().map((j) => j.id),
      ['e', 'd', 'c'],
    );
    assert.equal(store.get('a'), undefined);
  });

  it('refuses live jobs beyond its cap', function () {
    const small = new JobStore(3, () => t, 2);
    small.upsert({ id: 'a', queue: 'q', source: 'test' });
    small.upsert({ id: 'b', queue: 'q', source: 'test' });
    assert.throws(() => small.upsert({ id: 'c', queue: 'q', source: 'test' }), RangeError);
  });

  it('tells listeners about creations, transitions and progress, and survives a throwing one', function () {
    const seen: string[] = [];
    store.subscribe(() => {
      throw new Error('bad listener');
    });
    store.subscribe((e: JobEvent) => seen.push(e.type === 'transition' ? `${e.from}->${e.to}` : e.type));
    store.upsert({ id: 'a', queue: 'q', source: 'test' });
    store.transition('a', 'active');
    store.setProgress('a', 5);
    store.transition('a', 'returned');
    assert.deepEqual(seen, ['created', 'queued->active', 'progress', 'active->returned']);
  });
});
