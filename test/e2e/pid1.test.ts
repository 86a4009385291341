import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CLI, ROOT, eventually, http, tempDir } from '../helpers/agent.js';
import type { LogRecord } from '../helpers/agent.js';

/**
 * The agent as PID 1 of a PID namespace of its own, with no init in front of it (as in a container
 * started without tini or `docker run --init`): `unshare --pid --fork --mount-proc node cli.js -- ...`.
 * Processes of the namespace are looked at from outside it, through this machine's /proc.
 */

/** Whether this machine lets us make a PID namespace (root, or user namespaces allowed). */
function unshareProbe(): { ok: boolean; why: string } {
  const r = spawnSync('unshare', ['--pid', '--fork', '--mount-proc', 'sh', '-c', 'echo $$'], {
    encoding: 'utf8',
    timeout: 10_000,
  });
  if (r.error) return { ok: false, why: r.error.message };
  if (r.status !== 0 || r.stdout.trim() !== '1')
    return { ok: false, why: `exit ${r.status}: ${r.stderr.trim() || r.stdout.trim()}` };
  return { ok: true, why: '' };
}

/** `eventually` for a check that needs no awaiting. */
function until<T>(check: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
  return eventually(() => Promise.resolve(check()), timeoutMs, what);
}

interface HostProc {
  /** Pid on this machine. */
  pid: number;
  /** Pid inside the agent's namespace. */
  nsPid: number;
  ppid: number;
  state: string;
  comm: string;
}

function readProc(pid: number): HostProc | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const close = stat.lastIndexOf(')');
    const [state, ppid] = stat
      .slice(close + 2)
      .split(' ')
      .map((s, i) => (i === 0 ? s : Number(s))) as [string, number];
    const nspid = /^NSpid:\s+(.*)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]?.split(/\s+/);
    return {
      pid,
      nsPid: Number(nspid?.at(-1) ?? pid),
      ppid,
      state,
      comm: stat.slice(stat.indexOf('(') + 1, close),
    };
  } catch {
    return undefined; // Gone meanwhile.
  }
}

function allPids(): number[] {
  return readdirSync('/proc')
    .filter((n) => /^\d+$/.test(n))
    .map(Number);
}

/** Every process in the PID namespace `agentPid` lives in. */
function namespaceProcs(agentPid: number): HostProc[] {
  const ns = readlinkSync(`/proc/${agentPid}/ns/pid`);
  const out: HostProc[] = [];
  for (const pid of allPids()) {
    try {
      if (readlinkSync(`/proc/${pid}/ns/pid`) !== ns) continue;
    } catch {
      continue;
    }
    const p = readProc(pid);
    if (p) out.push(p);
  }
  return out;
}

interface Pid1Agent {
  url: string;
  /** The agent's pid on this machine (1 inside its namespace). */
  pid: number;
  records: LogRecord[];
  /** The first record (printed or future) that matches. */
  record(pred: (r: LogRecord) => boolean, what: string): Promise<LogRecord>;
  /** Lines the workload printed. */
  workloadLines(): string[];
  /** How `unshare` exited: it passes the agent's exit status on. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  unshare: ChildProcess;
  stderr(): string;
}

async function startPid1Agent(script: string, env: Record<string, string>): Promise<Pid1Agent> {
  const unshare = spawn(
    'unshare',
    ['--pid', '--fork', '--mount-proc', process.execPath, CLI, '--', 'sh', script],
    {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? '/tmp',
        PORT: '0',
        HOST: '127.0.0.1',
        MOCK_GPU: '1',
        LOG_LEVEL: 'debug',
        ARTIFACTS_DIR: tempDir('gpa-artifacts-'),
        ...env,
      },
    },
  );
  const records: LogRecord[] = [];
  let buf = '';
  let err = '';
  unshare.stdout?.setEncoding('utf8');
  unshare.stdout?.on('data', (chunk: string) => {
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf('\n')) !== -1) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      try {
        records.push(JSON.parse(line) as LogRecord);
      } catch {
        records.push({ level: 'raw', message: line });
      }
    }
  });
  unshare.stderr?.setEncoding('utf8');
  unshare.stderr?.on('data', (c: string) => (err += c));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    unshare.once('exit', (code, signal) => resolve({ code, signal })),
  );
  let done = false;
  void exited.then(() => (done = true));
  const record = (pred: (r: LogRecord) => boolean, what: string): Promise<LogRecord> =>
    until(
      () => {
        const r = records.find(pred);
        if (r) return r;
        if (done) throw new Error(`the agent exited; stderr: ${err.slice(0, 2000)}`);
        return undefined;
      },
      20_000,
      what,
    );
  const listening = await record((r) => r.message === 'listening', 'the listening record');
  const port = (listening.data as { port: number }).port;
  // unshare's one child is the agent, PID 1 of the new namespace.
  const agentPid = await until(
    () => allPids().find((p) => readProc(p)?.ppid === unshare.pid && readProc(p)?.comm === 'node'),
    10_000,
    'the agent process',
  );
  return {
    url: `http://127.0.0.1:${port}`,
    pid: agentPid,
    records,
    record,
    workloadLines: () => records.filter((r) => r.source === 'workload').map((r) => r.message),
    exited,
    unshare,
    stderr: () => err,
  };
}

function stopPid1Agent(agent: Pid1Agent | undefined): Promise<unknown> | undefined {
  if (!agent || agent.unshare.exitCode !== null || agent.unshare.signalCode !== null) return undefined;
  // PID 1 exiting takes the whole namespace with it; unshare then exits too.
  try {
    process.kill(agent.pid, 'SIGKILL');
  } catch {
    agent.unshare.kill('SIGKILL');
  }
  return agent.exited;
}

/** A process that waits for the release file, then exits with code $1. */
const WAITER = `while [ ! -e "$RELEASE" ]; do sleep 0.1; done
exit "$1"
`;

describe('entrypoint mode as PID 1 without an init', function () {
  this.timeout(60_000);
  const probe = unshareProbe();

  before(function () {
    if (!probe.ok) {
      console.log(`      skipped: this machine does not permit unshare --pid (${probe.why})`);
      this.skip();
    }
  });

  describe('a workload that leaves an orphan and a double-forked daemon behind', function () {
    let agent: Pid1Agent | undefined;
    let release: string;

    before(async function () {
      if (!probe.ok) this.skip();
      const dir = tempDir();
      release = path.join(dir, 'release');
      const waiter = path.join(dir, 'waiter.sh');
      writeFileSync(waiter, WAITER);
      const workload = path.join(dir, 'workload.sh');
      writeFileSync(
        workload,
        `echo "pid=$$ ppid=$PPID"
# A child that starts a background process and exits without waiting for it: an orphan.
sh -c 'sh "$WAITER" 4 </dev/null >/dev/null 2>&1 & echo "orphan=$!"'
# A daemon: double-forked into a session of its own, out of reach of a signal to the workload's group.
setsid sh -c 'sh "$WAITER" 5 </dev/null >/dev/null 2>&1 & echo "daemon=$!"'
trap 'echo "workload got SIGTERM"; exit 7' TERM
while :; do sleep 0.2; done
`,
      );
      agent = await startPid1Agent(workload, { RELEASE: release, WAITER: waiter });
    });
    after(async function () {
      await stopPid1Agent(agent);
    });

    it('is PID 1 of its namespace, says so, and the workload is its child', async function () {
      const a = agent!;
      await a.record((r) => r.source === 'workload' && /^pid=\d+ ppid=1$/.test(r.message), 'ppid=1');
      assert.equal(readProc(a.pid)?.nsPid, 1);
      assert.ok(a.records.some((r) => r.message.startsWith('running as PID 1:')));
    });

    it('answers HTTP', async function () {
      const a = agent!;
      assert.equal((await http(`${a.url}/health`)).status, 200);
      const status = await http<{ workload: { state: string } }>(`${a.url}/debug/status`);
      assert.equal(status.status, 200);
      assert.equal(status.body.workload.state, 'running');
    });

    it('reaps the orphans handed to it: no zombie is left in the namespace', async function () {
      const a = agent!;
      const nsPidOf = async (name: string): Promise<number> => {
        const line = await a.record((r) => r.source === 'workload' && r.message.startsWith(`${name}=`), name);
        return Number(line.message.slice(name.length + 1));
      };
      const orphan = await nsPidOf('orphan');
      const daemon = await nsPidOf('daemon');
      // Both are alive and now the agent's children: their parents exited without waiting for them.
      await until(
        () => {
          const procs = namespaceProcs(a.pid);
          const adopted = [orphan, daemon].every((n) =>
            procs.some((p) => p.nsPid === n && p.ppid === a.pid && p.state !== 'Z'),
          );
          return adopted ? true : undefined;
        },
        15_000,
        'the orphan and the daemon reparented to the agent',
      );

      writeFileSync(release, '');
      await until(
        () => {
          const procs = namespaceProcs(a.pid);
          const left = procs.filter((p) => p.nsPid === orphan || p.nsPid === daemon || p.state === 'Z');
          return left.length === 0 ? true : undefined;
        },
        15_000,
        'no zombie in the namespace',
      );
      // Each reap is logged; the record may reach stdout a moment after the zombie is gone.
      const reapOf = async (n: number): Promise<number | undefined> => {
        const r = await a.record(
          (x) => x.message === 'orphaned process reaped' && (x.data as { pid?: number }).pid === n,
          `the reap of ${n} logged`,
        );
        return (r.data as { exit_code?: number }).exit_code;
      };
      assert.deepEqual([await reapOf(orphan), await reapOf(daemon)], [4, 5]);
      // Still serving, the workload still running.
      assert.equal((await http(`${a.url}/health`)).status, 200);
      const status = await http<{ workload: { state: string } }>(`${a.url}/debug/status`);
      assert.equal(status.body.workload.state, 'running');
    });

    it("forwards SIGTERM to the workload, drains and exits with the workload's code", async function () {
      const a = agent!;
      process.kill(a.pid, 'SIGTERM');
      await a.record((r) => r.source === 'workload' && r.message === 'workload got SIGTERM', 'SIGTERM seen');
      const exit = await a.exited;
      assert.deepEqual(exit, { code: 7, signal: null }, a.stderr());
      const stopped = a.records.find((r) => r.message === 'agent stopped');
      assert.equal((stopped?.data as { exit_code: number } | undefined)?.exit_code, 7);
      assert.equal(
        a.records.filter((r) => r.level === 'error' || r.level === 'fatal').length,
        0,
        JSON.stringify(a.records.filter((r) => r.level === 'error' || r.level === 'fatal')),
      );
    });
  });

  describe('a workload that ignores SIGTERM', function () {
    let agent: Pid1Agent | undefined;

    before(async function () {
      if (!probe.ok) this.skip();
      const workload = path.join(tempDir(), 'workload.sh');
      writeFileSync(
        workload,
        `trap '' TERM
trap 'echo "workload got SIGINT"' INT
echo "workload ready"
while :; do sleep 0.2; done
`,
      );
      // A drain longer than the test: only the second signal can end it.
      agent = await startPid1Agent(workload, { DRAIN_TIMEOUT_MS: '600000' });
    });
    after(async function () {
      await stopPid1Agent(agent);
    });

    it('forwards SIGINT, and a second signal exits at once', async function () {
      const a = agent!;
      await a.record((r) => r.source === 'workload' && r.message === 'workload ready', 'workload ready');
      process.kill(a.pid, 'SIGINT');
      await a.record((r) => r.source === 'workload' && r.message === 'workload got SIGINT', 'SIGINT seen');
      assert.equal((await http(`${a.url}/ready`)).status, 503);
      process.kill(a.pid, 'SIGTERM');
      const exit = await a.exited;
      // 128 + SIGTERM: the workload had not exited when the agent killed it.
      assert.deepEqual(exit, { code: 143, signal: null }, a.stderr());
      assert.ok(a.records.some((r) => r.message === 'second signal; exiting at once'));
    });
  });
});
