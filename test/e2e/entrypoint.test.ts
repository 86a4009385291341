import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { CLI, ROOT, eventually, http, startAgentProcess, tempDir } from '../helpers/agent.js';
import type { AgentProcess, LogRecord } from '../helpers/agent.js';
import { assertError } from '../helpers/assertions.js';
import { find, parseExposition } from '../helpers/prom.js';

const WORKLOAD = path.join(ROOT, 'test/workloads/progress-workload.mjs');

interface Status {
  status: string;
  current_job: null | {
    job_id: string;
    progress_percent: number;
    nodes_total: number;
    nodes_completed: number;
    node: null | { id: string; node_id: string; type: string; step: number | null; total: number | null };
  };
  gpu: { utilization_percent: number; memory_used_mb: number };
  workload: { state: string; pid: number | null; exit_code: number | null };
}

interface Workflow {
  job_id: string;
  state: string;
  nodes_total: number;
  nodes_completed: number;
  progress_percent: number;
  current_node: string | null;
  nodes: {
    id: string;
    node_id: string;
    type: string;
    status: string;
    progress: { steps: number; total: number } | null;
    started_at: string | null;
    duration_ms: number | null;
  }[];
}

describe('entrypoint mode: the agent supervises a workload', function () {
  let agent: AgentProcess;
  let release: string;
  let drainRelease: string;

  describe('a workload that reports a multi-node workflow and exits 3', function () {
    before(async function () {
      const dir = tempDir();
      release = path.join(dir, 'release');
      agent = await startAgentProcess({
        env: { RELEASE_FILE: release, EXIT_CODE: '3', MOCK_GPU_COUNT: '2' },
        args: ['--', process.execPath, WORKLOAD],
      });
    });
    after(async function () {
      await agent?.stop();
    });

    it('shows the running node and its step while the workload runs', async function () {
      const status = await eventually(async () => {
        const r = await http<Status>(`${agent.url}/debug/status`);
        return r.body.current_job?.node?.step === 12 ? r.body : undefined;
      });
      assert.equal(status.status, 'processing');
      const job = status.current_job!;
      assert.equal(job.job_id, 'job-1');
      assert.deepEqual(
        {
          id: job.node!.id,
          node_id: job.node!.node_id,
          type: job.node!.type,
          step: job.node!.step,
          total: job.node!.total,
        },
        { id: 'KSampler_3', node_id: '3', type: 'KSampler', step: 12, total: 30 },
      );
      assert.equal(job.nodes_total, 4);
      assert.equal(job.nodes_completed, 1);
      // Loader (weight 1) done, 12 of 30 sampler steps, two nodes unseen: (1 + 12) / (1 + 30 + 1 + 1).
      assert.equal(job.progress_percent, 39.4);
      assert.equal(status.workload.state, 'running');
      assert.equal(typeof status.workload.pid, 'number');
    });

    it('lists every node of the workflow with its state', async function () {
      const r = await http<Workflow>(`${agent.url}/debug/workflow`);
      assert.equal(r.status, 200);
      assert.equal(r.body.job_id, 'job-1');
      assert.equal(r.body.state, 'active');
      assert.equal(r.body.nodes_total, 4);
      assert.equal(r.body.current_node, 'KSampler_3');
      assert.deepEqual(
        r.body.nodes.map((n) => [n.id, n.status, n.progress]),
        [
          ['CheckpointLoaderSimple_4', 'completed', null],
          ['KSampler_3', 'running', { steps: 12, total: 30 }],
          ['VAEDecode_8', 'pending', null],
          ['SaveImage_9', 'pending', null],
        ],
      );
      const sampler = r.body.nodes[1]!;
      assert.equal(typeof sampler.started_at, 'string');
      assert.equal(typeof sampler.duration_ms, 'number');
    });

    it('drives the mock GPU: busy sampler, workload process holding memory', async function () {
      const gpu = await eventually(async () => {
        const r = await http<{
          gpus: {
            index: number;
            memory: { used_mb: number };
            processes: { pid: number; name: string; used_mb: number | null }[];
          }[];
        }>(`${agent.url}/debug/memory`);
        const g0 = r.body.gpus[0];
        return g0 && g0.processes.length === 1 && g0.memory.used_mb > 20_000 ? r.body : undefined;
      });
      assert.equal(gpu.gpus[0]!.processes[0]!.name, path.basename(process.execPath));
      assert.equal(gpu.gpus[1]!.processes.length, 0, 'the job runs on GPU 0 only');
      const status = await http<Status>(`${agent.url}/debug/status`);
      assert.ok(
        status.body.gpu.utilization_percent >= 85,
        `sampler utilization ${status.body.gpu.utilization_percent}`,
      );
    });

    it('exports the workload process and its GPU memory to Prometheus', async function () {
      const status = await http<Status>(`${agent.url}/debug/status`);
      const pid = String(status.body.workload.pid);
      const s = parseExposition(await (await fetch(`${agent.url}/metrics`)).text());
      const series = find(s, 'gpu_process_memory_used_bytes', { gpu: '0', pid });
      assert.equal(series.length, 1);
      assert.equal(series[0]!.labels.process_name, path.basename(process.execPath));
      assert.ok(series[0]!.value > 1e9);
      assert.equal(find(s, 'gpu_process_memory_used_bytes', { gpu: '1' }).length, 0);
    });

    it('turns workload output into log records, JSON lines kept as data', async function () {
      const r = await http<{ records: LogRecord[] }>(`${agent.url}/debug/logs?lines=1000`);
      const workload = r.body.records.filter((rec) => rec.source === 'workload');
      const boot = workload.find((rec) => rec.message === 'workload booting');
      assert.ok(boot, 'plain stdout line recorded');
      assert.equal(boot.level, 'info');
      assert.equal(boot.stream, 'stdout');
      const warn = workload.find((rec) => rec.message === 'WARNING: low disk space on /tmp');
      assert.ok(warn);
      assert.equal(warn.level, 'warn');
      assert.equal(warn.stream, 'stderr');
      const structured = workload.find((rec) => rec.message === 'structured failure report');
      assert.ok(structured);
      assert.equal(structured.level, 'error');
      assert.deepEqual(structured.data, { level: 'error', message: 'structured failure report', code: 42 });
      const sampling = workload.find((rec) => rec.message === 'sampling at step 12');
      assert.equal(sampling?.job_id, 'job-1', 'lines printed during a job carry its id');
      assert.equal(sampling?.node_id, 'KSampler_3');
      const invalid = r.body.records.filter((rec) => rec.message === 'invalid progress line');
      assert.equal(invalid.length, 2);
      assert.equal(invalid[0]!.level, 'warn');
    });

    it('filters the job log by job id and level', async function () {
      const r = await http<{ records: LogRecord[] }>(
        `${agent.url}/debug/logs?job_id=job-1&level=info&lines=1000`,
      );
      assert.ok(r.body.records.length > 0);
      for (const rec of r.body.records) {
        assert.equal(rec.job_id, 'job-1');
        assert.ok(['info', 'warn', 'error', 'fatal'].includes(rec.level));
      }
    });

    it('completes the job, records its artifact, refuses one outside the root, and exits 3', async function () {
      writeFileSync(release, '');
      const exit = await agent.exited;
      assert.equal(exit.code, 3);
      const find = (message: string): LogRecord | undefined =>
        agent.records.find((rec) => rec.message === message);
      assert.equal(find('job completed')?.job_id, 'job-1');
      assert.equal((find('artifact recorded')?.data as { name: string }).name, 'job-1/image_00001.png');
      assert.equal((find('artifact refused')?.data as { path: string }).path, '../../etc/passwd');
      assert.equal((find('workload exited with a failure')?.data as { exit_code: number }).exit_code, 3);
      assert.equal((find('agent stopped')?.data as { exit_code: number }).exit_code, 3);
    });
  });

  describe('artifacts of a finished job stay listed and downloadable', function () {
    before(async function () {
      const dir = tempDir();
      release = path.join(dir, 'release');
      writeFileSync(release, '');
      agent = await startAgentProcess({
        env: { RELEASE_FILE: release, EXIT_CODE: '0', LINGER_MS: '60000' },
        args: ['--', process.execPath, WORKLOAD],
      });
      await agent.waitForRecord((rec) => rec.message === 'artifact recorded');
      await agent.waitForRecord((rec) => rec.message === 'job completed');
    });
    after(async function () {
      await agent?.stop();
    });

    it('keeps the finished workflow: every node completed, 100 percent', async function () {
      const r = await http<Workflow>(`${agent.url}/debug/workflow?job_id=job-1`);
      assert.equal(r.status, 200);
      assert.equal(r.body.state, 'completed');
      assert.equal(r.body.progress_percent, 100);
      assert.equal(r.body.nodes_completed, 4);
      assert.equal(r.body.current_node, null);
      assert.deepEqual(
        r.body.nodes.map((n) => [n.id, n.status, n.progress]),
        [
          ['CheckpointLoaderSimple_4', 'completed', null],
          ['KSampler_3', 'completed', { steps: 30, total: 30 }],
          ['VAEDecode_8', 'completed', null],
          ['SaveImage_9', 'completed', null],
        ],
      );
      const status = await http<Status>(`${agent.url}/debug/status`);
      assert.equal(status.body.current_job, null);
      assert.equal(status.body.status, 'idle');
    });

    it('lists the artifact with size, type, sha256 and a URL that downloads it', async function () {
      const r = await http<{
        job_id: string;
        artifacts: {
          name: string;
          size_bytes: number;
          content_type: string;
          sha256: string;
          created_at: string;
          url: string;
        }[];
      }>(`${agent.url}/debug/artifacts?job_id=job-1`);
      assert.equal(r.status, 200);
      assert.equal(r.body.job_id, 'job-1');
      assert.equal(r.body.artifacts.length, 1);
      const a = r.body.artifacts[0]!;
      const bytes = Buffer.from('89504e470d0a1a0a', 'hex');
      assert.equal(a.name, 'job-1/image_00001.png');
      assert.equal(a.size_bytes, bytes.length);
      assert.equal(a.content_type, 'image/png');
      assert.equal(a.sha256, createHash('sha256').update(bytes).digest('hex'));
      const dl = await fetch(`${agent.url}${a.url}`);
      assert.equal(dl.status, 200);
      assert.equal(dl.headers.get('content-type'), 'image/png');
      assert.deepEqual(Buffer.from(await dl.arrayBuffer()), bytes);
    });

    it('answers a Range past the end with 416 in the error format, not as the file', async function () {
      const r = await http(`${agent.url}/debug/artifacts/job-1/job-1/image_00001.png`, {
        headers: { Range: 'bytes=999999999-' },
      });
      assertError(r, 416, 'RANGE_NOT_SATISFIABLE');
      assert.match(r.headers.get('content-type') ?? '', /^application\/json/);
      assert.equal(r.headers.get('content-range'), 'bytes */8');
      assert.equal(r.headers.get('content-disposition'), null);
    });

    it('answers 404 for an unknown artifact and 400 for names that try to leave the root', async function () {
      assertError(await http(`${agent.url}/debug/artifacts/job-1/job-1/nope.png`), 404, 'ARTIFACT_NOT_FOUND');
      for (const bad of [
        'job-1/..%2F..%2Fetc%2Fpasswd',
        '..%2Fetc%2Fpasswd',
        '%2Fetc%2Fpasswd',
        'a%5Cb',
        'x%00y',
      ]) {
        assertError(await http(`${agent.url}/debug/artifacts/job-1/${bad}`), 400, 'INVALID_ARTIFACT_PATH');
      }
    });
  });

  describe('SIGTERM while the workload runs', function () {
    before(async function () {
      const dir = tempDir();
      release = path.join(dir, 'release');
      drainRelease = path.join(dir, 'drain-release');
      agent = await startAgentProcess({
        env: { RELEASE_FILE: release, DRAIN_RELEASE_FILE: drainRelease, SIGTERM_EXIT_CODE: '7' },
        args: ['--', process.execPath, WORKLOAD],
      });
      await eventually(async () => {
        const r = await http<Status>(`${agent.url}/debug/status`);
        return r.body.current_job?.node?.step === 12 ? true : undefined;
      });
    });
    after(async function () {
      await agent?.stop();
    });

    it('turns /ready to 503 draining, forwards the signal, and exits with the workload code', async function () {
      agent.proc.kill('SIGTERM');
      await agent.waitForRecord((rec) => rec.message === 'SIGTERM received, finishing up');
      const ready = await http<{ status: string }>(`${agent.url}/ready`);
      assert.equal(ready.status, 503);
      assert.equal(ready.body.status, 'draining');
      const status = await http<Status>(`${agent.url}/debug/status`);
      assert.equal(status.body.status, 'draining');
      writeFileSync(drainRelease, '');
      const exit = await agent.exited;
      assert.equal(exit.code, 7);
      const failed = agent.records.find((rec) => rec.message === 'job failed');
      assert.equal(failed?.job_id, 'job-1', 'the job the workload left running is failed, not left active');
    });
  });

  describe('a workload that ignores SIGTERM', function () {
    it('is killed at the drain deadline and the agent exits 137', async function () {
      const dir = tempDir();
      agent = await startAgentProcess({
        env: { RELEASE_FILE: path.join(dir, 'never'), IGNORE_SIGTERM: '1', DRAIN_TIMEOUT_MS: '300' },
        args: ['--', process.execPath, WORKLOAD],
      });
      await agent.waitForRecord((rec) => rec.message === 'sampling at step 12');
      agent.proc.kill('SIGTERM');
      await agent.waitForRecord((rec) => rec.message === 'ignoring SIGTERM');
      const exit = await agent.exited;
      assert.equal(exit.code, 137);
      assert.ok(agent.records.some((rec) => rec.message === 'workload did not stop in time; killing it'));
    });

    it('exits at once on a second signal', async function () {
      const dir = tempDir();
      agent = await startAgentProcess({
        env: { RELEASE_FILE: path.join(dir, 'never'), IGNORE_SIGTERM: '1', DRAIN_TIMEOUT_MS: '600000' },
        args: ['--', process.execPath, WORKLOAD],
      });
      await agent.waitForRecord((rec) => rec.message === 'sampling at step 12');
      agent.proc.kill('SIGTERM');
      await agent.waitForRecord((rec) => rec.message === 'ignoring SIGTERM');
      agent.proc.kill('SIGTERM');
      const exit = await agent.exited;
      assert.equal(exit.code, 143);
      assert.ok(agent.records.some((rec) => rec.message === 'second signal; exiting at once'));
    });
  });

  describe('workload edge cases', function () {
    it('ends when the workload exits, even if a background child keeps its output open', async function () {
      agent = await startAgentProcess({
        args: ['--', 'bash', '-c', 'sleep 600 & echo started-in-background; exit 3'],
      });
      const exit = await agent.exited;
      assert.equal(exit.code, 3);
      assert.ok(agent.records.some((r) => r.message === 'started-in-background'));
    });

    it('keeps about one progress-bar redraw per second, not every one', async function () {
      const script =
        "for (let i = 1; i <= 500; i++) process.stderr.write(`\\r${i}/500`); process.stderr.write('\\n');";
      agent = await startAgentProcess({ args: ['--', process.execPath, '-e', script] });
      await agent.exited;
      const bars = agent.records.filter((r) => r.source === 'workload' && /^\d+\/500$/.test(r.message));
      assert.ok(bars.length >= 1 && bars.length <= 3, `${bars.length} redraw records`);
      assert.ok(
        bars.some((r) => r.message === '500/500'),
        'the finished bar is kept',
      );
    });

    it('writes each field once per record, and keeps the debug token from the workload', async function () {
      const script =
        "console.log('token=' + (process.env.DEBUG_TOKEN ?? 'none')); console.log(JSON.stringify({ level: 'warn', message: 'structured' }));";
      agent = await startAgentProcess({
        env: { DEBUG_TOKEN: 'tok-abcdef0123456789' },
        args: ['--', process.execPath, '-e', script],
      });
      await agent.exited;
      assert.ok(agent.records.some((r) => r.message === 'token=none'));
      for (const line of agent.lines) {
        for (const key of ['source', 'level', 'message', 'job_id', 'pod_id']) {
          const n = line.split(`"${key}":`).length - 1;
          // `data` may repeat a key inside it (a JSON line's own "level"); the record's own appears once.
          const inData = line.includes('"data":{')
            ? line.slice(line.indexOf('"data":{')).split(`"${key}":`).length - 1
            : 0;
          assert.ok(n - inData <= 1, `"${key}" appears ${n - inData} times in ${line.slice(0, 200)}`);
        }
      }
      const agentRecords = agent.records.filter((r) =>
        ['agent starting', 'listening', 'workload started', 'agent stopped'].includes(r.message),
      );
      assert.equal(agentRecords.length, 4);
      assert.ok(agentRecords.every((r) => r.source === 'agent'));
    });

    it('still exits with the workload code when nobody reads its stdout any more', async function () {
      const child = spawn(process.execPath, [CLI, '--', 'bash', '-c', 'sleep 1; exit 4'], {
        env: { PATH: process.env.PATH ?? '', MOCK_GPU: '1', PORT: '0', HOST: '127.0.0.1' },
        stdio: ['ignore', 'pipe', 'ignore'],
      });
      // Read one chunk, then close the pipe, as `| head -c 10` does.
      await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
      child.stdout.destroy();
      const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
      assert.equal(code, 4);
    });
  });

  describe('a workload that crashes, with WORKLOAD_EXIT_LINGER_MS', function () {
    it('keeps answering with the exit code in /ready and /debug/status, then exits with it', async function () {
      agent = await startAgentProcess({
        env: { WORKLOAD_EXIT_LINGER_MS: '60000' },
        args: ['--', 'bash', '-c', 'echo about to crash; exit 7'],
      });
      await agent.waitForRecord(
        (r) => r.message === 'the workload exited; still answering before the agent exits',
      );
      const ready = await http<{ status: string; checks: { workload: Record<string, unknown> } }>(
        `${agent.url}/ready`,
      );
      assert.equal(ready.status, 503);
      assert.equal(ready.body.status, 'degraded');
      assert.equal(ready.body.checks.workload.status, 'failing');
      assert.equal(ready.body.checks.workload.exit_code, 7);
      assert.equal(ready.body.checks.workload.reason, 'workload exited with code 7');
      const status = await http<Status>(`${agent.url}/debug/status`);
      assert.equal(status.body.status, 'degraded');
      assert.equal(status.body.workload.state, 'exited');
      assert.equal(status.body.workload.exit_code, 7);
      const failure = agent.records.find((r) => r.message === 'workload exited with a failure');
      assert.equal((failure?.data as { exit_code: number }).exit_code, 7);
      // The agent is still up, well inside its minute; a signal ends the wait with the workload's code.
      assert.equal(agent.proc.exitCode, null);
      const exit = await agent.stop();
      assert.equal(exit.code, 7);
    });

    it('exits with the code by itself once the time is up', async function () {
      agent = await startAgentProcess({
        env: { WORKLOAD_EXIT_LINGER_MS: '500' },
        args: ['--', 'bash', '-c', 'exit 5'],
      });
      const exit = await agent.exited;
      assert.equal(exit.code, 5);
      assert.ok(
        agent.records.some(
          (r) => r.message === 'the workload exited; still answering before the agent exits',
        ),
      );
    });
  });

  describe('a workload command that cannot start', function () {
    it('exits 127 and says why', async function () {
      agent = await startAgentProcess({ args: ['--', '/nonexistent/workload-binary'] });
      const exit = await agent.exited;
      assert.equal(exit.code, 127);
      const rec = agent.records.find((r) => r.message === 'workload could not be started');
      assert.ok(rec);
      assert.equal(rec.level, 'error');
    });
  });
});
