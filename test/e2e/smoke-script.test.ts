import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { ROOT } from '../helpers/agent.js';

describe('scripts/smoke.sh', function () {
  it('passes every curl check against the agent running the demo workload', function () {
    const r = spawnSync('bash', [path.join(ROOT, 'scripts/smoke.sh')], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(r.status, 0, `smoke failed:\n${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /smoke: all checks passed/);
    assert.doesNotMatch(r.stdout, /^FAIL/m);
  });
});
