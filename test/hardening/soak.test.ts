import assert from 'node:assert/strict';
import { runSoak, soakOptionsFromArgs } from '../../scripts/hardening/soak.js';
import { mb } from '../../scripts/hardening/common.js';

describe('hardening: soak (short form)', function () {
  it('2 minutes of jobs, polling and scraping: stores stay at their caps, no growth beyond noise', async function () {
    // Two minutes of load, the agent's start and its drain.
    this.timeout(300_000);
    const r = await runSoak({ ...soakOptionsFromArgs(['--short']), print: false });
    const last = r.samples.at(-1);
    console.log(
      `      ${r.samples.length} samples, stores full at ${r.warmS.toFixed(0)} s; last: RSS ${mb(last?.rss ?? NaN)} MB, ` +
        `heap ${mb(last?.heapUsed ?? NaN)} MB, handles ${last?.handles}, fds ${last?.fds}; ` +
        r.trends.map((t) => `${t.name} ${t.growth >= 0 ? '+' : ''}${t.growth.toFixed(1)}`).join(', '),
    );
    assert.deepEqual(r.failures, []);
  });
});
