import assert from 'node:assert/strict';
import { BodyCache } from '../../src/http/body-cache.js';

describe('BodyCache', function () {
  it('serves a body only at the version it was built at', function () {
    const c = new BodyCache({ entries: 4, maxBytes: 100 });
    c.set('q', 7, Buffer.from('a'));
    assert.equal(c.get('q', 7)?.toString(), 'a');
    assert.equal(c.get('q', 8), undefined);
    assert.equal(c.get('other', 7), undefined);
    c.set('q', 8, Buffer.from('b'));
    assert.equal(c.get('q', 7), undefined);
    assert.equal(c.get('q', 8)?.toString(), 'b');
  });

  it('lets go of bodies built at an older version when a newer one is kept', function () {
    const c = new BodyCache({ entries: 4, maxBytes: 100 });
    c.set('a', 1, Buffer.from('a'));
    c.set('b', 1, Buffer.from('b'));
    c.set('c', 2, Buffer.from('c'));
    assert.equal(c.size, 1);
    assert.equal(c.get('c', 2)?.toString(), 'c');
  });

  it('keeps at most `entries` bodies, dropping the oldest kept', function () {
    const c = new BodyCache({ entries: 2, maxBytes: 100 });
    c.set('a', 1, Buffer.from('a'));
    c.set('b', 1, Buffer.from('b'));
    c.set('c', 1, Buffer.from('c'));
    assert.equal(c.get('a', 1), undefined);
    assert.equal(c.get('b', 1)?.toString(), 'b');
    assert.equal(c.get('c', 1)?.toString(), 'c');
  });

  it('keeps no body larger than maxBytes, and forgets the older one for that key', function () {
    const c = new BodyCache({ entries: 2, maxBytes: 3 });
    c.set('a', 1, Buffer.from('abc'));
    c.set('a', 2, Buffer.from('abcd'));
    assert.equal(c.get('a', 1), undefined);
    assert.equal(c.get('a', 2), undefined);
  });
});
