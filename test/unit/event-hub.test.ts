import assert from 'node:assert/strict';
import { EventHub } from '../../src/events/event-hub.js';
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
    for (let i = 0; i < 10; i++) hub.publish('progress', { i });
    const { events, lost } = hub.since(2);
    assert.deepEqual(
      events.map((e) => e.id),
      [8, 9, 10],
    );
    assert.equal(lost, 5);
  });
});
