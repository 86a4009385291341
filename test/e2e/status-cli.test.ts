import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { CLI, ROOT, eventually, http, startAgentProcess } from '../helpers/agent.js';
import type { AgentProcess } from '../helpers/agent.js';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the real `gpu-pod-agent status` as a child process, with no terminal: plain text, 80 columns. */
function status(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [CLI, 'status', ...args], {
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    proc.once('error', reject);
    proc.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

describe('gpu-pod-agent status (the real CLI against a real agent)', function () {
  this.timeout(60_000);

  describe('a ready pod running a workflow', function () {
    let agent: AgentProcess;
    before(async function () {
      agent = await startAgentProcess({
        env: { MOCK_GPU_COUNT: '2' },
        args: ['--', process.execPath, path.join(ROOT, 'scripts/demo-workload.mjs')],
      });
      await eventually(async () => ((await http(`${agent.url}/ready`)).status === 200 ? true : undefined));
    });
    after(async function () {
      await agent?.stop();
    });

    it('shows a line per GPU with bars, the job and its running node, and exits 0', async function () {
      const r = await eventually(async () => {
        const run = await status(['--url', agent.url]);
        return /^ {2}node KSampler_3 step \d+\/30 /m.test(run.stdout) ? run : undefined;
      }, 30_000);
      assert.equal(r.code, 0, r.stderr);
      const lines = r.stdout.trimEnd().split('\n');
      assert.match(lines[0]!, /^gpu-pod-agent \S+ v\S+ · ready · processing · up /);
      const gpus = lines.filter((l) => /^\[\d\] /.test(l));
      assert.equal(gpus.length, 2);
      for (const g of gpus) {
        assert.match(
          g,
          /^\[\d\] H100 80GB HBM3 +\d+°C +\d+ W util [█░]+ +\d+ % mem [█░]+ [\d.]+\/79\.6 GiB$/,
        );
      }
      assert.match(r.stdout, /^job demo-\S+ active · [\d.]+s · \d\/7 nodes [█░]+ [\d.]+ %$/m);
      assert.match(r.stdout, /^queue: no queue is configured/m);
      for (const l of lines) assert.ok([...l].length <= 80, `at most 80 columns: ${l}`);
      assert.ok(!r.stdout.includes('\u001b['), 'no color codes when the output is not a terminal');
    });

    it('prints the answers as JSON with --json', async function () {
      const r = await status(['--url', agent.url, '--json']);
      assert.equal(r.code, 0, r.stderr);
      const v = JSON.parse(r.stdout) as {
        url: string;
        ready: { status: string };
        status: { gpus: unknown[]; current_job: { job_id: string } | null };
        queue: { enabled: boolean };
      };
      assert.equal(v.url, agent.url);
      assert.equal(v.ready.status, 'ok');
      assert.equal(v.status.gpus.length, 2);
      assert.equal(v.queue.enabled, false);
    });

    it('takes the URL from GPU_POD_AGENT_URL, and refreshes with --watch until interrupted', async function () {
      const proc = spawn(process.execPath, [CLI, 'status', '--watch', '0.2', '--json'], {
        env: { PATH: process.env.PATH ?? '', GPU_POD_AGENT_URL: agent.url },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      proc.stdout.on('data', (c: Buffer) => (out += c.toString()));
      await eventually(() => Promise.resolve(out.split('\n').filter(Boolean).length >= 3 || undefined));
      const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
      proc.kill('SIGINT');
      assert.equal(await exited, 0, 'the status of the last refresh');
      const lines = out.split('\n').filter(Boolean);
      for (const l of lines) assert.equal((JSON.parse(l) as { url: string }).url, agent.url);
    });
  });

  it('exits 1 with the reason when the pod answers but is not ready', async function () {
    const agent = await startAgentProcess({ env: { MOCK_GPU_FAULT: 'error' } });
    try {
      await eventually(async () => ((await http(`${agent.url}/ready`)).status === 503 ? true : undefined));
      const r = await status(['--url', agent.url]);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stdout.split('\n')[0]!, /not ready \(degraded\)/);
      assert.match(r.stdout, /^ {2}gpu failing/m);
    } finally {
      await agent.stop();
    }
  });

  it('exits 3 with a message when nothing answers', async function () {
    const port = await closedPort();
    const r = await status(['--url', `http://127.0.0.1:${port}`]);
    assert.equal(r.code, 3);
    assert.equal(r.stdout, '');
    assert.match(
      r.stderr,
      new RegExp(`cannot reach the agent at http://127\\.0\\.0\\.1:${port}: ECONNREFUSED`),
    );
  });

  it('sends the debug token, and exits 3 saying so when it is missing or wrong', async function () {
    const token = 'status-cli-token-8e2f';
    const agent = await startAgentProcess({ env: { DEBUG_TOKEN: token } });
    try {
      const none = await status(['--url', agent.url]);
      assert.equal(none.code, 3);
      assert.match(none.stderr, /pass --token or set DEBUG_TOKEN/);
      const wrong = await status(['--url', agent.url, '--token', 'nope']);
      assert.equal(wrong.code, 3);
      assert.match(wrong.stderr, /refused the token \(401\)/);
      assert.equal((await status(['--url', agent.url, '--token', token])).code, 0);
      assert.equal((await status(['--url', agent.url], { DEBUG_TOKEN: token })).code, 0);
      assert.ok(!none.stderr.includes(token) && !wrong.stderr.includes(token));
    } finally {
      await agent.stop();
    }
  });

  it('exits 2 with the usage for a bad flag or URL, and prints the usage with --help', async function () {
    for (const args of [
      ['--bogus'],
      ['--url', 'not a url'],
      ['--url', 'ftp://x'],
      ['--watch', '-1'],
      ['extra'],
    ]) {
      const r = await status(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^gpu-pod-agent status: /);
      assert.match(r.stderr, /Usage: gpu-pod-agent status/);
    }
    const help = await status(['--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /Exit status: 0 the pod is ready, 1 /);
  });
});
