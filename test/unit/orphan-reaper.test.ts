import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import {
  OrphanReaper,
  decodeWaitStatus,
  isSpawnedChild,
  parseProcStat,
} from '../../src/workload/orphan-reaper.js';

const stat = (pid: number, comm: string, state: string, ppid: number): string =>
  `${pid} (${comm}) ${state} ${ppid} ${pid} ${pid} 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0\n`;

describe('orphan reaper (PID 1 without an init)', function () {
  let dir: string;
  beforeEach(function () {
    dir = mkdtempSync(path.join(os.tmpdir(), 'gpa-proc-'));
  });
  afterEach(function () {
    rmSync(dir, { recursive: true, force: true });
  });

  const proc = (pid: number | 'self', text: string): void => {
    mkdirSync(path.join(dir, String(pid)), { recursive: true });
    writeFileSync(path.join(dir, String(pid), 'stat'), text);
  };

  it('parses a stat line whose command name holds spaces and parentheses', function () {
    assert.deepEqual(parseProcStat(stat(42, 'a b) Z 7 (c', 'Z', 1)), {
      pid: 42,
      comm: 'a b) Z 7 (c',
      state: 'Z',
      ppid: 1,
    });
    assert.equal(parseProcStat('garbage'), undefined);
  });

  it('decodes wait statuses', function () {
    assert.deepEqual(decodeWaitStatus(4 << 8), { exitCode: 4 });
    assert.deepEqual(decodeWaitStatus(9), { signal: 9 });
  });

  it('waits only for zombie children of its own that Node.js did not spawn', async function () {
    const calls: number[] = [];
    const reaper = new OrphanReaper({
      logger: pino({ level: 'silent' }),
      procRoot: dir,
      selfPid: 1,
      waitpid: (pid) => {
        calls.push(pid);
        return { result: pid, status: 3 << 8 };
      },
    });
    // A real child spawned once the reaper exists: one libuv waits for.
    const tracked = spawn('sleep', ['30'], { stdio: 'ignore' });
    const trackedExit = new Promise((resolve) => tracked.once('exit', resolve));
    try {
      assert.equal(isSpawnedChild(tracked.pid!), true);
      proc('self', stat(1, 'node', 'S', 0));
      proc(1, stat(1, 'node', 'S', 0));
      proc(100, stat(100, 'orphan', 'Z', 1)); // to reap
      proc(101, stat(101, 'running', 'S', 1)); // alive
      proc(102, stat(102, 'elsewhere', 'Z', 50)); // someone else's child
      proc(tracked.pid!, stat(tracked.pid!, 'sleep', 'Z', 1)); // libuv's: never
      assert.equal(await reaper.start(), true);
      assert.deepEqual(calls, [100]);
      assert.equal(reaper.reapedTotal, 1);
    } finally {
      reaper.stop();
      tracked.kill('SIGKILL');
      await trackedExit;
    }
    // Its exit reported, libuv reaped it: no longer counted as Node's.
    assert.equal(isSpawnedChild(tracked.pid!), false);
  });

  it('declines, with a warning, when /proc is not its own PID namespace', async function () {
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (l: string) => lines.push(l) });
    proc('self', stat(4242, 'node', 'S', 1));
    const reaper = new OrphanReaper({
      logger,
      procRoot: dir,
      selfPid: 1,
      waitpid: () => ({ result: -1, status: 0 }),
    });
    assert.equal(await reaper.start(), false);
    assert.match(lines.join(''), /another PID namespace/);
  });

  it("with libc's waitpid on the real /proc, children Node.js spawned still report their exit", async function () {
    const reaper = new OrphanReaper({ logger: pino({ level: 'silent' }), safetyIntervalMs: 5 });
    assert.equal(await reaper.start(), true);
    try {
      // Each child is a zombie of this process for a moment before libuv waits for it; the reaper
      // looks at every SIGCHLD and every 5 ms, and must leave all of them to libuv.
      const codes = await Promise.all(
        Array.from(
          { length: 20 },
          (_, i) =>
            new Promise<number | null>((resolve) =>
              spawn('sh', ['-c', `exit ${i + 1}`], { stdio: 'ignore' }).once('exit', resolve),
            ),
        ),
      );
      assert.deepEqual(
        codes,
        Array.from({ length: 20 }, (_, i) => i + 1),
      );
      assert.equal(reaper.reapedTotal, 0);
    } finally {
      reaper.stop();
    }
  });
});
