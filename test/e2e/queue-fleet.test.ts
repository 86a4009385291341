import assert from 'node:assert/strict';
import { Queue } from 'bullmq';
import { eventually, http, startAgentProcess } from '../helpers/agent.js';
import type { AgentProcess } from '../helpers/agent.js';
import { deletePrefix, redisClient, testRedis } from '../helpers/redis.js';

type QueueView = {
  counts: Record<string, number> | null;
  counts_at: string | null;
  this_pod: { completed: number; processed: number; returned: number };
};

async function completedMetric(agent: AgentProcess): Promise<number> {
  const text = await (await fetch(`${agent.url}/metrics`)).text();
  return Number(/^jobs_completed_total\{queue="jobs",status="completed"\} (\d+)$/m.exec(text)?.[1] ?? 0);
}

describe('a fleet of agents on one queue (real Redis)', function () {
  this.timeout(120_000);

  it('completes 300 jobs exactly once across three agents, one of them stopped mid-run', async () => {
    const { url, prefix } = await testRedis();
    const conn = redisClient(url);
    const queue = new Queue('jobs', { connection: conn, prefix });
    queue.on('error', () => undefined);
    const env = {
      REDIS_URL: url,
      QUEUE_PREFIX: prefix,
      JOB_COMMAND: 'cat > /dev/null',
      WORKER_CONCURRENCY: '2',
      QUEUE_REFRESH_INTERVAL_MS: '200',
      LOG_LEVEL: 'info',
      DRAIN_TIMEOUT_MS: '5000',
    };
    const agents = await Promise.all([0, 1, 2].map(() => startAgentProcess({ env })));
    try {
      const jobs = await queue.addBulk(
        Array.from({ length: 300 }, (_, i) => ({ name: 'render', data: { i }, opts: { attempts: 3 } })),
      );
      // One agent leaves mid-run, as a pod scaled down would.
      await eventually(
        async () => (((await queue.getJobCounts('completed')).completed ?? 0) >= 60 ? true : undefined),
        60_000,
      );
      const leaving = agents[0] as AgentProcess;
      const exit = await leaving.stop('SIGTERM');
      assert.equal(exit.code, 0);
      const stopped = leaving.records.find((r) => r.message === 'queue worker stopped');
      const leftCompleted = (stopped?.data as { completed?: number } | undefined)?.completed ?? NaN;
      assert.ok(Number.isFinite(leftCompleted), 'the stopped agent reported what it completed');

      const counts = await eventually(
        async () => {
          const c = await queue.getJobCounts('completed', 'failed', 'active', 'waiting', 'delayed');
          return c.completed === 300 ? c : undefined;
        },
        90_000,
        'all 300 jobs completed',
      );
      assert.deepEqual(counts, { completed: 300, failed: 0, active: 0, waiting: 0, delayed: 0 });
      for (const j of jobs) {
        const job = await queue.getJob(j.id as string);
        assert.ok(job?.finishedOn);
        assert.equal(job?.attemptsMade, 1, `job ${j.id} completed in one attempt`);
      }

      // Counted once across the fleet: what each agent counts adds up to the queue's total.
      const running = agents.slice(1);
      const perAgent = await Promise.all(running.map(completedMetric));
      assert.equal(perAgent.reduce((a, b) => a + b, 0) + leftCompleted, 300);

      // Every agent's /debug/queue agrees with Redis once it has refreshed after the run.
      const endedAt = Date.now();
      const redisCounts = await queue.getJobCounts('waiting', 'active', 'delayed', 'completed', 'failed');
      for (const a of running) {
        const view = await eventually(async () => {
          const r = await http<QueueView>(`${a.url}/debug/queue`);
          return r.body.counts_at && Date.parse(r.body.counts_at) > endedAt ? r.body : undefined;
        });
        const c = view.counts as Record<string, number>;
        assert.deepEqual(
          {
            waiting: c.waiting,
            active: c.active,
            delayed: c.delayed,
            completed: c.completed,
            failed: c.failed,
          },
          redisCounts,
        );
      }
    } finally {
      await Promise.all(agents.map((a) => a.stop()));
      await queue.close();
      conn.disconnect();
      await deletePrefix(url, prefix);
    }
  });
});
