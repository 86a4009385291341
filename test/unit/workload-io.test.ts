import assert from 'node:assert/strict';
import { LineSplitter } from '../../src/workload/line-splitter.js';
import { classifyWorkloadLine } from '../../src/workload/workload-lines.js';

describe('workload output', function () {
  it('splits chunks into lines across chunk borders, CRLF included', function () {
    const lines: string[] = [];
    const s = new LineSplitter((l) => lines.push(l));
    s.push(Buffer.from('one\r\ntw'));
    s.push(Buffer.from('o\nthree'));
    s.end();
    assert.deepEqual(lines, ['one', 'two', 'three']);
  });

  it('does not split a multi-byte character across chunks', function () {
    const lines: string[] = [];
    const s = new LineSplitter((l) => lines.push(l));
    const bytes = Buffer.from('héllo ✓\n');
    s.push(bytes.subarray(0, 2));
    s.push(bytes.subarray(2, 9));
    s.push(bytes.subarray(9));
    assert.deepEqual(lines, ['héllo ✓']);
  });

  it('cuts an endless line into bounded pieces', function () {
    const pieces: [number, boolean][] = [];
    const s = new LineSplitter((l, info) => pieces.push([l.length, info.truncated]), 10);
    s.push('x'.repeat(25));
    s.push('yy\n');
    assert.deepEqual(pieces, [
      [10, true],
      [10, true],
      [7, false],
    ]);
  });

  it('ends a line at a bare carriage return, marking it a redraw, and keeps CRLF whole', function () {
    const lines: [string, boolean][] = [];
    const s = new LineSplitter((l, info) => lines.push([l, info.redraw]));
    s.push(' 10%|#         | 3/30\r 20%|##        | 6/30\r');
    s.push('\n100%|##########| 30/30\r\ndone\r');
    s.push('\nnext');
    s.end();
    assert.deepEqual(lines, [
      [' 10%|#         | 3/30', true],
      // CR then LF, even across chunks, is one line end.
      [' 20%|##        | 6/30', false],
      ['100%|##########| 30/30', false],
      ['done', false],
      ['next', false],
    ]);
  });

  it('keeps JSON lines as data and honours their level and message', function () {
    assert.deepEqual(classifyWorkloadLine('{"level":"warning","msg":"low vram","free_mb":512}'), {
      level: 'warn',
      message: 'low vram',
      data: { level: 'warning', msg: 'low vram', free_mb: 512 },
    });
    assert.equal(classifyWorkloadLine('{"levelname":"ERROR","message":"x"}').level, 'error');
    assert.equal(classifyWorkloadLine('{"level":50,"msg":"pino style"}').level, 'error');
    assert.equal(classifyWorkloadLine('{"message":"no level"}').level, 'info');
  });

  it('reads a leading level word on plain lines', function () {
    assert.equal(classifyWorkloadLine('ERROR:root:CUDA out of memory').level, 'error');
    assert.equal(classifyWorkloadLine('[warning] disk').level, 'warn');
    assert.equal(classifyWorkloadLine('  DEBUG - x').level, 'debug');
    assert.equal(classifyWorkloadLine('CRITICAL failure').level, 'fatal');
    assert.equal(classifyWorkloadLine('Errors are fine here').level, 'info');
    assert.equal(classifyWorkloadLine('got prompt').level, 'info');
    assert.deepEqual(classifyWorkloadLine('{not json'), { level: 'info', message: '{not json' });
  });
});
