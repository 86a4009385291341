import assert from 'node:assert/strict';
import { runFaults } from '../../scripts/hardening/faults.js';

describe('hardening: faults (short form)', function () {
  it('nvidia-smi hangs, NVML wedges, DCGM dies, Redis killed 10 s, workload crash, ComfyUI socket drop, disk full', async function () {
    // Seven faults, each with its own agent; the Redis one alone waits 10 s plus its jobs.
    this.timeout(600_000);
    const r = await runFaults({ short: true, print: false });
    for (const row of r.rows) console.log(`      ${row.fault} (${row.outcome}): ${row.figure}`);
    if (process.env.CI)
      assert.deepEqual(
        r.rows.filter((x) => x.outcome === 'skipped').map((x) => x.fault),
        [],
        'every fault runs under CI',
      );
    assert.equal(r.rows.length, 7);
    assert.deepEqual(r.failures, []);
  });
});
