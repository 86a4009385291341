import assert from 'node:assert/strict';
import { runFuzz } from '../../scripts/hardening/fuzz.js';
import { mb } from '../../scripts/hardening/common.js';

describe('hardening: bad input (fuzz, short form)', function () {
  it('10,000 malformed requests: no 5xx, no crash, every error in the error format, RSS back to baseline', async function () {
    this.timeout(180_000);
    const seed = Number(process.env.HARDENING_SEED ?? 1);
    const r = await runFuzz({
      requests: 10_000,
      seed,
      concurrency: 16,
      slowClients: 'headers',
      settleMs: 0,
      print: false,
    });
    const classes = Object.entries(r.byClass)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ');
    console.log(
      `      ${r.requests} requests (seed ${seed}, ${r.ratePerS.toFixed(0)}/s): ${classes}; RSS ` +
        `${mb(r.rss.baseline)} → peak ${mb(r.rss.peak)} → ${mb(r.rss.after)} MB`,
    );
    const examples = r.examples
      .map((e) => `\n  ${e.why} [${e.agent}]\n    request:  ${e.request}\n    response: ${e.response}`)
      .join('');
    assert.equal(r.crashed, false, 'an agent crashed');
    assert.equal(r.fiveXx, 0, `answers with a 5xx status:${examples}`);
    assert.equal(r.badFormat, 0, `error answers not in the error format:${examples}`);
    assert.equal(r.noAnswer, 0, `requests without a whole answer:${examples}`);
    assert.equal(r.errorRecords, 0, 'log records at error level');
    assert.deepEqual(r.slow.other, [], 'slow clients not answered 408');
    assert.ok(
      r.rss.after <= r.rss.baseline + Math.max(10 * 1024 * 1024, r.rss.baseline * 0.1),
      `RSS ${mb(r.rss.after)} MB after the run, baseline ${mb(r.rss.baseline)} MB`,
    );
  });
});
