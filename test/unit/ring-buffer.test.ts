import assert from 'node:assert/strict';
import { RingBuffer } from '../../gpu/index.js';

describe('RingBuffer', function () {
  it('keeps the newest items up to capacity, oldest first', function () {
    const r = new RingBuffer<number>(3);
    for (let i = 1; i <= 5; i++) r.push(i);
    assert.deepEqual(r.toArray(), [3, 4, 5]);
    assert.equal(r.size, 3);
    assert.equal(r.totalPushed, 5);
    assert.equal(r.dropped, 2);
    assert.equal(r.at(0), 3);
    assert.equal(r.newest(), 5);
    assert.equal(r.at(3), undefined);
  });

  it('returns the newest matching items, oldest first, stopping at the limit', function () {
    const r = new RingBuffer<number>(10);
    for (let i = 1; i <= 10; i++) r.push(i);
    assert.deepEqual(
      r.newestMatching(3, (n) => n % 2 === 0),
      [6, 8, 10],
    );
    assert.deepEqual(
      r.newestMatching(100, (n) => n > 8),
      [9, 10],
    );
  });

  it('refuses a capacity that is not a positive integer', function () {
    assert.throws(() => new RingBuffer(0), RangeError);
    assert.throws(() => new RingBuffer(1.5), RangeError);
  });

  it('clears', function () {
    const r = new RingBuffer<number>(2);
    r.push(1);
    r.clear();
    assert.deepEqual(r.toArray(), []);
  });
});
