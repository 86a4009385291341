import assert from 'node:assert/strict';
import { EventHub, RESUME_GRACE_MS } from '../../src/events/event-hub.js';
import type { HubEvent } from '../../src/events/event-hub.js';

describe('EventHub', function () {
  it('numbers events from 1 and gives listeners and late readers the same JSON', function () {
    const hub = new EventHub(10);
    const seen: HubEvent[] = [];
    hub.subscribe((e) => seen.push(e));
    hub.publish('job', { job_id: 'a', state: 'active' });
    hub.publishJson('log', '{"level":"info","message":"m"}', 30);
    assert.deepEqual(
      seen.map((e) => [e.id, e.type, e.data, e.level]),
      [
        [1, 'job', '{"job_id":"a","state":"active"}', undefined],
        [2, 'log', '{"level":"info","message":"m"}', 30],
      ],
    );
    const { events, lost } = hub.since(0);
    assert.equal(lost, 0);
    assert.equal(events[0]!.data, seen[0]!.data);
  });

  it('serializes an event once, however many streams read it', function () {
    const hub = new EventHub(10);
    hub.subscribe(() => undefined);
    let calls = 0;
    hub.publish('node', {
      toJSON() {
        calls++;
        return { id: 'KSampler_3' };
      },
    });
    assert.equal(calls, 0, 'nothing is serialized before a reader asks');
    const [e] = hub.since(0).events;
    assert.equal(e!.data, '{"id":"KSampler_3"}');
    assert.equal(e!.data, '{"id":"KSampler_3"}');
    assert.equal(calls, 1);
  });

  it('says how many events fell out of the buffer', function () {
    const hub = new EventHub(3);
    hub.subscribe(() => undefined);
    for (let i = 0; i < 10; i++) hub.publish('progress', { i });
    const { events, lost } = hub.since(2);
    assert.deepEqual(
      events.map((e) => e.id),
      [8, 9, 10],
    );
    assert.equal(lost, 5);
  });

  it('keeps nothing while no stream was ever open, but still numbers the events', function () {
    const hub = new EventHub(10);
    hub.publish('job', { job_id: 'a' });
    hub.publishJson('log', '{}', 30);
    assert.equal(hub.keeping, false);
    assert.equal(hub.lastId, 2);
    const { events, lost } = hub.since(0);
    assert.deepEqual(events, []);
    assert.equal(lost, 2, 'a client asking for them is told they are gone');
  });

  it('keeps events for RESUME_GRACE_MS after the last stream closed, then lets them go', function () {
    let now = 1_000_000;
    const hub = new EventHub(10, () => now);
    const off = hub.subscribe(() => undefined);
    hub.publish('job', { n: 1 });
    off();
    now += RESUME_GRACE_MS - 1;
    hub.publish('job', { n: 2 });
    assert.deepEqual(
      hub.since(0).events.map((e) => e.id),
      [1, 2],
      'a client reconnecting within the grace resumes',
    );
    now += 1;
    hub.publish('job', { n: 3 });
    assert.equal(hub.keeping, false);
    assert.deepEqual(hub.since(0), { events: [], lost: 3 });
    // A new stream starts keeping again.
    hub.subscribe(() => undefined);
    hub.publish('job', { n: 4 });
    assert.deepEqual(
      hub.since(3).events.map((e) => e.id),
      [4],
    );
  });
});
