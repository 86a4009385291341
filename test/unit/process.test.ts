import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { GpuError } from '../../gpu/errors.js';
import { runCommand } from '../../gpu/process.js';
import { tempDir } from '../helpers/agent.js';

function category(err: unknown): string | undefined {
  return err instanceof GpuError ? err.category : undefined;
}

async function waitGone(pid: number): Promise<boolean> {
  for (let i = 0; i < 200; i++) {
    if (!existsSync(`/proc/${pid}`) || /^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8')))
      return true;
    await new Promise((r) => setTimeout(r, 10));
  }
  return false;
}

describe('runCommand', function () {
  it('returns stdout and stderr of a successful run; stderr alone is no failure', async function () {
    const r = await runCommand('bash', ['-c', 'echo out; echo warn >&2'], { timeoutMs: 5000 });
    assert.equal(r.stdout, 'out\n');
    assert.equal(r.stderr, 'warn\n');
  });

  it('fails with exit:N and the last stderr lines', async function () {
    await assert.rejects(
      runCommand('bash', ['-c', 'echo "NVIDIA-SMI has failed" >&2; exit 9'], { timeoutMs: 5000 }),
      (err) => {
        assert.equal(category(err), 'exit:9');
        assert.match((err as Error).message, /NVIDIA-SMI has failed/);
        return true;
      },
    );
  });

  it('fails with spawn when the command does not exist', async function () {
    await assert.rejects(
      runCommand('/nonexistent/nvidia-smi', [], { timeoutMs: 5000 }),
      (err) => category(err) === 'spawn',
    );
  });

  it('kills the whole process group at the deadline, grandchildren included', async function () {
    const pidFile = path.join(tempDir(), 'pid');
    await assert.rejects(
      runCommand('bash', ['-c', `sleep 300 & echo $! > ${pidFile}; wait`], { timeoutMs: 300 }),
      (err) => category(err) === 'timeout',
    );
    const grandchild = Number(readFileSync(pidFile, 'utf8'));
    assert.ok(await waitGone(grandchild), 'the grandchild was killed too');
  });

  it('kills the child when the caller aborts', async function () {
    const ac = new AbortController();
    const run = runCommand('sleep', ['300'], { timeoutMs: 60_000, signal: ac.signal });
    setTimeout(() => ac.abort(new GpuError('timeout', 'poller deadline')), 50);
    await assert.rejects(run, /poller deadline/);
  });

  it('refuses endless output', async function () {
    await assert.rejects(
      runCommand('yes', [], { timeoutMs: 10_000, maxOutputBytes: 100_000 }),
      (err) => category(err) === 'parse',
    );
  });

  it('leaves no file descriptors behind over many runs, failures included', async function () {
    const fds = (): number => readdirSync('/proc/self/fd').length;
    await runCommand('true', [], { timeoutMs: 5000 });
    const before = fds();
    for (let i = 0; i < 50; i++) {
      await runCommand('true', [], { timeoutMs: 5000 });
      await runCommand('sleep', ['5'], { timeoutMs: 20 }).catch(() => undefined);
    }
    assert.equal(fds(), before);
  });
});
