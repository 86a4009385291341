import assert from 'node:assert/strict';
import { runAuth } from '../../scripts/hardening/auth.js';

describe('hardening: debug token (short form)', function () {
  it('every /debug/* route refuses missing and wrong tokens, the token never shows, production switches routes off', async function () {
    this.timeout(120_000);
    const r = await runAuth({ timingRounds: 100, checkTiming: false, print: false });
    const requests = r.checks.reduce((s, c) => s + c.requests, 0);
    // Timing on a shared machine is printed, not asserted: the full form checks it.
    console.log(
      `      ${requests} requests checked; median response time by token: ` +
        r.timing.map((t) => `${t.name} ${t.medianUs.toFixed(0)} µs`).join(', '),
    );
    assert.deepEqual(r.leaks, [], 'the token showed up');
    assert.deepEqual(r.failures, []);
  });
});
