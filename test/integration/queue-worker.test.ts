import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Queue } from 'bullmq';
import type { Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { finishedJob } from '../helpers/queue.js';
import { ROOT, eventually, http, startAgentProcess, tempDir } from '../helpers/agent.js';
import type { AgentProcess } from '../helpers/agent.js';
import { deletePrefix, redisClient, testRedis } from '../helpers/redis.js';

const JOB = `${process.execPath} ${path.join(ROOT, 'test/workloads/queue-job.mjs')}`;
const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

interface Ctx {
  url: string;
  prefix: string;
  conn: Redis;
  queue: Queue;
  agent?: AgentProcess;
}

async function setup(): Promise<Ctx> {
  const { url, prefix } = await testRedis();
  const conn = redisClient(url);
  const queue = new Queue('jobs', { connection: conn, prefix });
  return { url, prefix, conn, queue };
}

async function teardown(c: Ctx): Promise<void> {
  await c.agent?.stop();
  await c.queue.close();
  c.conn.disconnect();
  await deletePrefix(c.url, c.prefix);
}

function worker(c: Ctx, env: Record<string, string> = {}): Promise<AgentProcess> {
  return startAgentProcess({
    env: {
      REDIS_URL: c.url,
      QUEUE_PREFIX: c.prefix,
      JOB_COMMAND: JOB,
      QUEUE_REFRESH_INTERVAL_MS: '200',
      JOB_PROGRESS_INTERVAL_MS: '50',
      ...env,
    },
  });
}

function finished(queue: Queue, id: string, timeoutMs = 20_000): Promise<Job> {
  return finishedJob(queue, id, timeoutMs);
}

type QueueView = {
  mode: string;
  counts: Record<string, number> | null;
  counts_at: string | null;
  workers: number | null;
  active_jobs: { job_id: string; progress_percent: number }[];
  recent: { job_id: string; state: string; attempts: number; failure: { message: string } | null }[];
  redis: { status: string; latency_ms: number | null };
  this_pod?: Record<string, number | boolean | string>;
};

describe('queue worker (real Redis, the built agent as a child process)', function () {
  this.timeout(60_000);
  let c: Ctx;
  beforeEach(async () => {
    c = await setup();
  });
  afterEach(async () => {
    await teardown(c);
  });

  it('runs a job through JOB_COMMAND: data on stdin, env, result, progress and log in BullMQ', async () => {
    c.agent = await worker(c);
    const added = await c.queue.add('render', {
      prompt: 'a cat',
      traceparent: TRACEPARENT,
      output_lines: ['loading model', 'sampling'],
    });
    const job = await finished(c.queue, added.id as string);
    assert.equal(await job.getState(), 'completed');
    const result = job.returnvalue as Record<string, unknown>;
    assert.equal(result.job_id, added.id);
    assert.equal(result.queue, 'jobs');
    assert.equal(result.attempt, '1');
    assert.equal(result.traceparent, TRACEPARENT);
    assert.equal((result.data as { prompt: string }).prompt, 'a cat');
    // The last write says the job is done; no node runs any more.
    assert.deepEqual(job.progress, { progress: 100, node: null, step: null, total: null });
    const logs = await c.queue.getJobLogs(added.id as string);
    assert.deepEqual(logs.logs, ['loading model', 'sampling']);

    const q = await eventually(async () => {
      const r = await http<QueueView>(`${c.agent!.url}/debug/queue`);
      return r.body.recent.length === 1 && r.body.counts?.completed === 1 ? r.body : undefined;
    });
    assert.equal(q.mode, 'worker');
    assert.equal(q.recent[0]?.job_id, added.id);
    assert.equal(q.recent[0]?.state, 'completed');
    assert.equal(q.workers, 1);
    assert.equal(q.redis.status, 'ready');
    const wf = await http<{ job_id: string; nodes: { id: string; status: string }[] }>(
      `${c.agent.url}/debug/workflow?job_id=${added.id}`,
    );
    assert.deepEqual(
      wf.body.nodes.map((n) => [n.id, n.status]),
      [
        ['CheckpointLoaderSimple_4', 'completed'],
        ['KSampler_3', 'completed'],
      ],
    );
    const logsView = await http<{ records: { source: string; message: string }[] }>(
      `${c.agent.url}/debug/logs?job_id=${added.id}&lines=100`,
    );
    assert.ok(logsView.body.records.some((r) => r.source === 'job' && r.message === 'sampling'));
    assert.ok(logsView.body.records.some((r) => r.message === 'job completed'));
    const metrics = await (await fetch(`${c.agent.url}/metrics`)).text();
    assert.match(metrics, /^jobs_started_total\{queue="jobs"\} 1$/m);
    assert.match(metrics, /^jobs_completed_total\{queue="jobs",status="completed"\} 1$/m);
  });

  it('fails a job whose command exits non-zero with the last stderr line, and retries it as BullMQ says', async () => {
    c.agent = await worker(c);
    const added = await c.queue.add(
      'render',
      { fail: { code: 3, message: 'RuntimeError: CUDA out of memory' } },
      { attempts: 2 },
    );
    const job = await finished(c.queue, added.id as string);
    assert.equal(await job.getState(), 'failed');
    assert.equal(job.attemptsMade, 2);
    assert.match(job.failedReason, /exited with code 3: RuntimeError: CUDA out of memory/);
    assert.match(job.stacktrace?.[0] ?? '', /Traceback/);
    const metrics = await eventually(async () => {
      const m = await (await fetch(`${c.agent!.url}/metrics`)).text();
      return /jobs_completed_total\{queue="jobs",status="failed"\} 2/.test(m) ? m : undefined;
    });
    assert.match(metrics, /^jobs_started_total\{queue="jobs"\} 2$/m);
    const q = await http<QueueView>(`${c.agent.url}/debug/queue`);
    assert.equal(q.body.recent[0]?.state, 'failed');
    assert.equal(q.body.recent[0]?.attempts, 2);
    assert.match(q.body.recent[0]?.failure?.message ?? '', /CUDA out of memory/);
  });

  it('shows a running job in /debug/status and /debug/workflow, and cancels it through the API', async () => {
    c.agent = await worker(c);
    const dir = tempDir();
    const pidFile = path.join(dir, 'pid');
    const added = await c.queue.add(
      'render',
      { gate: path.join(dir, 'never'), pid_file: pidFile, steps: 5 },
      { attempts: 3 },
    );
    const id = added.id as string;
    const status = await eventually(async () => {
      const r = await http<{
        status: string;
        current_job: { job_id: string; node: { id: string; step: number } };
      }>(`${c.agent!.url}/debug/status`);
      return r.body.current_job?.node?.step === 1 ? r.body : undefined;
    });
    assert.equal(status.status, 'processing');
    assert.equal(status.current_job.job_id, id);
    assert.equal(status.current_job.node.id, 'KSampler_3');
    const wf = await http<{ job_id: string; current_node: string; state: string }>(
      `${c.agent.url}/debug/workflow`,
    );
    assert.equal(wf.body.job_id, id);
    assert.equal(wf.body.current_node, 'KSampler_3');
    const progress = await eventually(async () => {
      const j = await c.queue.getJob(id);
      return (j?.progress as { node?: string })?.node === 'KSampler_3' ? j?.progress : undefined;
    });
    assert.equal((progress as { step: number }).step, 1);

    const missing = await http(`${c.agent.url}/debug/queue/jobs/nope/cancel`, { method: 'POST' });
    assert.equal(missing.status, 404);
    assert.equal((missing.body.error as { code: string }).code, 'JOB_NOT_RUNNING');
    const cancel = await http(`${c.agent.url}/debug/queue/jobs/${id}/cancel?reason=user%20asked`, {
      method: 'POST',
    });
    assert.equal(cancel.status, 202);
    const job = await finished(c.queue, id);
    assert.equal(await job.getState(), 'failed');
    assert.equal(job.attemptsMade, 1, 'a canceled job is not retried');
    assert.match(job.failedReason, /canceled: user asked/);
    const pid = Number(readFileSync(pidFile, 'utf8'));
    await eventually(() => Promise.resolve(alive(pid) ? undefined : true), 10_000, 'job command killed');
    const q = await eventually(async () => {
      const r = await http<QueueView>(`${c.agent!.url}/debug/queue`);
      return r.body.recent[0]?.state === 'canceled' ? r.body : undefined;
    });
    assert.equal(q.active_jobs.length, 0);
  });

  it('on SIGTERM stops taking jobs, lets the running one finish within the drain, and hands back one that cannot', async () => {
    c.agent = await worker(c, { DRAIN_TIMEOUT_MS: '1500' });
    const dir = tempDir();
    const gate = path.join(dir, 'gate');
    const short = await c.queue.add('render', { gate });
    await eventually(async () => ((await c.queue.getJob(short.id as string))?.progress ? true : undefined));
    // A second job waits in the queue: a draining pod must not take it.
    const waiting = await c.queue.add('render', {});
    c.agent.proc.kill('SIGTERM');
    const ready = await eventually(async () => {
      const r = await http(`${c.agent!.url}/ready`);
      return r.status === 503 ? r.body : undefined;
    });
    assert.equal(ready.status, 'draining');
    writeFileSync(gate, '');
    const done = await finished(c.queue, short.id as string);
    assert.equal(await done.getState(), 'completed', 'the running job finishes during the drain');
    const exit = await c.agent.exited;
    assert.equal(exit.code, 0);
    assert.equal(await (await c.queue.getJob(waiting.id as string))?.getState(), 'waiting');
    assert.ok(
      !c.agent.records.some((r) => r.message.startsWith('drain deadline reached')),
      'a job that finished within the drain is not taken for one to hand back',
    );

    // Now a job that outlives the drain: handed back to wait, no attempt spent, not left locked.
    c.agent = await worker(c, { DRAIN_TIMEOUT_MS: '500' });
    await finished(c.queue, waiting.id as string);
    const long = await c.queue.add('render', { gate: path.join(dir, 'never') }, { attempts: 1 });
    await eventually(async () => ((await c.queue.getJob(long.id as string))?.progress ? true : undefined));
    const stopped = await c.agent.stop('SIGTERM');
    assert.equal(stopped.code, 0);
    const back = await c.queue.getJob(long.id as string);
    assert.equal(await back?.getState(), 'waiting');
    assert.equal(back?.attemptsMade, 0);
    assert.ok(c.agent.records.some((r) => r.message === 'job handed back to the queue'));
    assert.ok(!(await c.conn.exists(`${c.prefix}:jobs:${long.id}:lock`)), 'no lock left behind');
    // Its command was stopped on purpose: a routine record, not a failure.
    const commandStopped = c.agent.records.find((r) => r.message === 'job command stopped');
    assert.equal(commandStopped?.level, 'debug');
    assert.ok(!c.agent.records.some((r) => r.message === 'job command exited with a failure'));
  });

  it('on SIGTERM lets a scraper read the counts of the jobs the drain finished before the port closes', async () => {
    c.agent = await worker(c, { DRAIN_TIMEOUT_MS: '10000' });
    const url = c.agent.url;
    const gate = path.join(tempDir(), 'gate');
    const job = await c.queue.add('render', { gate });
    await eventually(async () => ((await c.queue.getJob(job.id as string))?.progress ? true : undefined));
    // A scraper every 200 ms until the port closes; the last answer it got is what it knows.
    let last = '';
    let scrapes = 0;
    const scraping = (async () => {
      for (;;) {
        try {
          last = await (await fetch(`${url}/metrics`)).text();
          scrapes++;
        } catch {
          return;
        }
        await new Promise((r) => setTimeout(r, 200));
      }
    })();
    await eventually(() => Promise.resolve(scrapes >= 2 ? true : undefined));
    c.agent.proc.kill('SIGTERM');
    await c.agent.waitForRecord((r) => r.message.startsWith('signal received; draining'));
    writeFileSync(gate, '');
    assert.equal((await c.agent.exited).code, 0);
    await scraping;
    assert.match(last, /^jobs_completed_total\{queue="jobs",status="completed"\} 1$/m);
  });

  it('on a second SIGTERM exits at once, kills the running job command and hands its job back', async () => {
    const pidFile = path.join(tempDir(), 'pid');
    c.agent = await worker(c, {
      JOB_COMMAND: `echo $$ > ${pidFile}; exec sleep 60`,
      DRAIN_TIMEOUT_MS: '30000',
    });
    const job = await c.queue.add('render', {});
    const pid = await eventually(() => Promise.resolve(pidIn(pidFile)));
    assert.ok(running(pid), 'the job command runs');
    c.agent.proc.kill('SIGTERM');
    await c.agent.waitForRecord((r) => r.message.startsWith('signal received; draining'));
    c.agent.proc.kill('SIGTERM');
    const exit = await c.agent.exited;
    assert.equal(exit.code, 143, 'the exit code of a SIGTERM');
    await eventually(() => Promise.resolve(running(pid) ? undefined : true), 5000, 'the job command killed');
    const back = await c.queue.getJob(job.id as string);
    assert.equal(await back?.getState(), 'waiting', 'back in the queue for another pod, not failed');
    assert.equal(back?.attemptsMade, 0);
    assert.ok(!(await c.conn.exists(`${c.prefix}:jobs:${job.id}:lock`)), 'no lock left behind');
    assert.ok(c.agent.records.some((r) => r.message === 'job handed back to the queue'));
    const returned = c.agent.records.find((r) => r.message === 'job returned');
    assert.match(
      (returned?.data as { failure: { message: string } }).failure.message,
      /^preempted: the agent is exiting; handed back/,
    );
  });

  it('gives the job of a pod killed outright to another once its lock expired and a stall check ran', async () => {
    const pidFile = path.join(tempDir(), 'pid');
    const stall = { JOB_LOCK_DURATION_MS: '2000', JOB_STALLED_INTERVAL_MS: '1000' };
    c.agent = await worker(c, { ...stall, JOB_COMMAND: `echo $$ > ${pidFile}; exec sleep 60` });
    const job = await c.queue.add('render', {}, { attempts: 1 });
    const pid = await eventually(() => Promise.resolve(pidIn(pidFile)));
    // The pod dies with everything in it, as a container does.
    c.agent.proc.kill('SIGKILL');
    process.kill(pid, 'SIGKILL');
    await c.agent.exited;
    c.agent = await worker(c, stall);
    const done = await finished(c.queue, job.id as string);
    assert.equal(await done.getState(), 'completed', 'run by the other pod');
    assert.equal(done.stalledCounter, 1, 'counted as a stall');
    assert.ok(
      c.agent.records.some((r) => r.message === 'job completed' && r.job_id === job.id),
      'the other pod ran it',
    );
  });

  it('keeps serving when Redis is unreachable at start, and says so in /ready and /debug/queue', async () => {
    c.agent = await startAgentProcess({
      env: {
        REDIS_URL: 'redis://127.0.0.1:1',
        QUEUE_PREFIX: c.prefix,
        JOB_COMMAND: JOB,
        QUEUE_REFRESH_INTERVAL_MS: '200',
      },
    });
    assert.equal((await http(`${c.agent.url}/health`)).status, 200);
    const ready = await eventually(async () => {
      const r = await http<{ status: string; checks: { queue: { status: string; reason: string } } }>(
        `${c.agent!.url}/ready`,
      );
      return r.body.checks.queue.status === 'failing' ? r : undefined;
    });
    assert.equal(ready.status, 503);
    assert.match(ready.body.checks.queue.reason, /Redis/);
    const q = await http<QueueView>(`${c.agent.url}/debug/queue`);
    assert.equal(q.body.redis.status, 'unreachable');
    assert.equal(q.body.counts, null);
    const metrics = await (await fetch(`${c.agent.url}/metrics`)).text();
    assert.match(metrics, /^agent_queue_redis_up\{queue="jobs"\} 0$/m);
    const exit = await c.agent.stop();
    assert.equal(exit.code, 0);
  });
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Whether `pid` is a process that has not exited (a zombie waiting to be reaped has). */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** The pid a job command wrote to `file`, once it has. */
function pidIn(file: string): number | undefined {
  try {
    return Number(readFileSync(file, 'utf8')) || undefined;
  } catch {
    return undefined;
  }
}
