import assert from 'node:assert/strict';
import { PROTOCOL_PREFIX, parseProtocolLine } from '../../src/workload/progress-protocol.js';

const line = (obj: unknown): string => `${PROTOCOL_PREFIX} ${JSON.stringify(obj)}`;

describe('progress protocol', function () {
  it('leaves ordinary output alone', function () {
    assert.deepEqual(parseProtocolLine('hello'), { kind: 'text' });
    assert.deepEqual(parseProtocolLine('the prefix ::agent:: in the middle'), { kind: 'text' });
    assert.deepEqual(parseProtocolLine(''), { kind: 'text' });
  });

  it('parses every event type', function () {
    const events = [
      { type: 'job.start', job_id: 'j1', queue: 'q', nodes: [{ id: 3, type: 'KSampler' }], nodes_total: 4 },
      { type: 'job.progress', progress_percent: 42.5 },
      {
        type: 'job.end',
        status: 'failed',
        error: { message: 'boom', exception_type: 'RuntimeError', traceback: ['a', 'b'] },
      },
      { type: 'node.start', node_id: '3', node_type: 'KSampler', display: '3', parent: '10' },
      { type: 'node.progress', node_id: 3, step: 12, total: 30 },
      { type: 'node.end', node_id: '3', status: 'cached' },
      { type: 'artifact', path: 'out/a.png', content_type: 'image/png' },
      { type: 'error', message: 'CUDA out of memory', node_id: '3', traceback: 'line1\nline2' },
    ];
    for (const e of events) {
      const r = parseProtocolLine(line(e));
      assert.equal(r.kind, 'event', JSON.stringify(r));
      if (r.kind === 'event') assert.equal(r.event.type, e.type);
    }
  });

  it('normalises ids to strings and fills defaults', function () {
    const r = parseProtocolLine(line({ type: 'node.progress', node_id: 3, step: 1, total: 2 }));
    assert.ok(r.kind === 'event' && r.event.type === 'node.progress');
    assert.equal(r.event.node_id, '3');
    const end = parseProtocolLine(line({ type: 'job.end' }));
    assert.ok(end.kind === 'event' && end.event.type === 'job.end');
    assert.equal(end.event.status, 'completed');
    const err = parseProtocolLine(line({ type: 'job.end', status: 'failed', error: 'plain message' }));
    assert.ok(err.kind === 'event' && err.event.type === 'job.end');
    assert.deepEqual(err.event.error, { message: 'plain message' });
  });

  it('tolerates leading whitespace and CR', function () {
    assert.equal(
      parseProtocolLine(`   ${line({ type: 'job.progress', progress_percent: 1 })}\r`).kind,
      'event',
    );
  });

  it('says what is wrong with a malformed line', function () {
    assert.deepEqual(parseProtocolLine(`${PROTOCOL_PREFIX} {nope`), {
      kind: 'invalid',
      error: 'not valid JSON after the prefix',
    });
    const unknown = parseProtocolLine(line({ type: 'job.explode' }));
    assert.equal(unknown.kind, 'invalid');
    const bad = parseProtocolLine(line({ type: 'node.progress', node_id: '1', step: 1, total: 0 }));
    assert.ok(bad.kind === 'invalid' && bad.error.startsWith('total:'), JSON.stringify(bad));
    const pct = parseProtocolLine(line({ type: 'job.progress', progress_percent: 101 }));
    assert.equal(pct.kind, 'invalid');
    assert.equal(parseProtocolLine(line('a string')).kind, 'invalid');
  });
});
