import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { Queue, Worker } from 'bullmq';
import type { Job } from 'bullmq';
import { ROOT, eventually, http, startAgentProcess, tempDir } from '../helpers/agent.js';
import type { AgentProcess } from '../helpers/agent.js';
import { deletePrefix, redisClient, startRedisServer, testRedis, uniquePrefix } from '../helpers/redis.js';

const JOB = `${process.execPath} ${path.join(ROOT, 'test/workloads/queue-job.mjs')}`;

async function metric(agent: AgentProcess, re: RegExp): Promise<number | undefined> {
  const text = await (await fetch(`${agent.url}/metrics`)).text();
  const m = re.exec(text);
  return m ? Number(m[1]) : undefined;
}

/** A redis-server of the test's own, a queue on it, and an agent working that queue with the test job. */
async function agentOnOwnRedis(opts: { persist?: boolean; env?: Record<string, string> } = {}) {
  const server = await startRedisServer({ persist: opts.persist });
  const prefix = uniquePrefix();
  const conn = redisClient(server.url);
  const queue = new Queue('jobs', { connection: conn, prefix });
  const agent = await startAgentProcess({
    env: {
      REDIS_URL: server.url,
      QUEUE_PREFIX: prefix,
      JOB_COMMAND: JOB,
      QUEUE_REFRESH_INTERVAL_MS: '200',
      ...opts.env,
    },
  });
  const stop = async (): Promise<void> => {
    await agent.stop();
    await queue.close();
    conn.disconnect();
    await server.stop();
  };
  return { server, conn, queue, agent, stop };
}

describe('queue faults and observer mode (real Redis)', function () {
  this.timeout(90_000);

  it('survives Redis being killed and restarted mid-job: the job completes once, counted once', async () => {
    const { server, queue, agent, stop } = await agentOnOwnRedis({ persist: true });
    try {
      const dir = tempDir();
      const gate = path.join(dir, 'gate');
      const added = await queue.add('render', { gate });
      const id = added.id as string;
      await eventually(async () => ((await queue.getJob(id))?.progress ? true : undefined));

      await server.kill();
      const ready = await eventually(async () => {
        const r = await http<{ checks: { queue: { status: string } } }>(`${agent.url}/ready`);
        return r.body.checks.queue.status === 'failing' ? r : undefined;
      });
      assert.equal(ready.status, 503);
      const q = await http<{ redis: { status: string } }>(`${agent.url}/debug/queue`);
      assert.equal(q.body.redis.status, 'unreachable');
      assert.equal((await http(`${agent.url}/health`)).status, 200, 'HTTP keeps answering');
      // The job's command finishes while Redis is away; the outcome waits for Redis.
      writeFileSync(gate, '');
      await agent.waitForRecord((r) => r.message === 'job command exited' && r.job_id === id);

      await server.restart();
      const job = await eventually(
        async () => ((await queue.getJobState(id)) === 'completed' ? queue.getJob(id) : undefined),
        30_000,
        'job completed after Redis came back',
      );
      assert.equal(job.attemptsMade, 1);
      await eventually(async () => {
        const r = await http(`${agent.url}/ready`);
        return r.status === 200 ? true : undefined;
      }, 30_000);
      assert.equal(
        await metric(agent, /^jobs_completed_total\{queue="jobs",status="completed"\} (\d+)$/m),
        1,
      );
      assert.equal(await metric(agent, /^jobs_started_total\{queue="jobs"\} (\d+)$/m), 1);
      const view = await http<{ recent: { job_id: string; state: string }[] }>(`${agent.url}/debug/queue`);
      assert.deepEqual(
        view.body.recent.map((j) => [j.job_id, j.state]),
        [[id, 'completed']],
      );
    } finally {
      await stop();
    }
  });

  it('loses and repeats no job when its Redis connections are killed one at a time mid-run', async () => {
    const { server, conn, queue, agent, stop } = await agentOnOwnRedis({ env: { WORKER_CONCURRENCY: '2' } });
    const admin = redisClient(server.url);
    try {
      await agent.waitForRecord((r) => r.message === 'queue worker started');
      // Every other client of this Redis is the agent's: the worker's, its blocking one, the monitor's.
      const ours = new Set([String(await conn.client('ID')), String(await admin.client('ID'))]);
      const n = 40;
      await queue.addBulk(
        Array.from({ length: n }, (_, i) => ({ name: 'render', data: { i, steps: 2, step_ms: 25 } })),
      );
      const killed: string[] = [];
      while ((await queue.getJobCounts('completed')).completed! < n && killed.length < 12) {
        const theirs = [...String(await admin.client('LIST')).matchAll(/^id=(\d+) .*?name=(\S*)/gm)]
          .map(([, id, name]) => ({ id: id!, name: name || `id ${id}` }))
          .filter((c) => !ours.has(c.id));
        const victim = theirs[killed.length % Math.max(1, theirs.length)];
        if (victim) {
          await admin.client('KILL', 'ID', victim.id);
          killed.push(victim.name);
        }
        await new Promise((r) => setTimeout(r, 120));
      }
      assert.ok(killed.length >= 3, `connections killed mid-run: ${killed.join(', ')}`);
      await eventually(
        async () => ((await queue.getJobCounts('completed')).completed === n ? true : undefined),
        60_000,
        `all ${n} jobs completed after ${killed.length} connections were killed`,
      );
      const counts = await queue.getJobCounts('active', 'wait', 'failed', 'delayed', 'completed');
      assert.deepEqual(counts, { active: 0, wait: 0, failed: 0, delayed: 0, completed: n });
      const jobs = await queue.getJobs(['completed']);
      const extraAttempts = jobs.filter((j) => j.attemptsMade !== 1).map((j) => j.id);
      assert.deepEqual(extraAttempts, [], 'each job ran once');
      // Counted once each, as Redis has them; the view agrees with Redis.
      await eventually(async () => {
        const done = await metric(agent, /^jobs_completed_total\{queue="jobs",status="completed"\} (\d+)$/m);
        return done === n ? true : undefined;
      }, 10_000);
      assert.equal(await metric(agent, /^jobs_started_total\{queue="jobs"\} (\d+)$/m), n);
      const view = await eventually(async () => {
        const r = await http<{ counts: Record<string, number>; this_pod: { completed: number } }>(
          `${agent.url}/debug/queue`,
        );
        return r.body.counts?.completed === n ? r.body : undefined;
      }, 10_000);
      assert.equal(view.counts.active, 0);
      assert.equal(view.this_pod.completed, n);
      assert.equal(agent.proc.exitCode, null, 'the agent is still running');
    } finally {
      admin.disconnect();
      await stop();
    }
  });

  it('follows a queue worked on by another process (JOB_RUNNER=none)', async () => {
    const { url, prefix } = await testRedis();
    const conn = redisClient(url);
    const wconn = redisClient(url);
    const queue = new Queue('jobs', { connection: conn, prefix });
    const agent = await startAgentProcess({
      env: { REDIS_URL: url, QUEUE_PREFIX: prefix, QUEUE_REFRESH_INTERVAL_MS: '200' },
    });
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    const worker = new Worker(
      'jobs',
      async (job: Job) => {
        await job.updateProgress({ progress: 40, node: 'KSampler_3', step: 4, total: 10 });
        await released;
        return { images: 1 };
      },
      { connection: wconn, prefix },
    );
    try {
      await agent.waitForRecord((r) => r.message === 'following the queue');
      const q0 = await eventually(async () => {
        const r = await http<{ mode: string; workers: number | null }>(`${agent.url}/debug/queue`);
        return r.body.workers !== null ? r.body : undefined;
      });
      assert.equal(q0.mode, 'observer');
      const added = await queue.add('render', {});
      const status = await eventually(async () => {
        const r = await http<{
          current_job: {
            job_id: string;
            progress_percent: number;
            node: { id: string; step: number; total: number };
          };
        }>(`${agent.url}/debug/status`);
        return r.body.current_job?.node?.step === 4 ? r.body : undefined;
      });
      assert.equal(status.current_job.job_id, added.id);
      assert.equal(status.current_job.progress_percent, 40);
      assert.equal(status.current_job.node.id, 'KSampler_3');
      release();
      const q = await eventually(async () => {
        const r = await http<{ recent: { job_id: string; state: string }[] }>(`${agent.url}/debug/queue`);
        return r.body.recent.length ? r.body : undefined;
      });
      assert.deepEqual(
        q.recent.map((j) => [j.job_id, j.state]),
        [[added.id, 'completed']],
      );
      assert.equal(
        await metric(agent, /^jobs_completed_total\{queue="jobs",status="completed"\} (\d+)$/m),
        1,
      );
    } finally {
      await worker.close();
      await agent.stop();
      await queue.close();
      conn.disconnect();
      wconn.disconnect();
      await deletePrefix(url, prefix);
    }
  });
});
