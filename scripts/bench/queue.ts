/**
 * Jobs per second through the agent as a BullMQ worker with its no-op runner, as a ratio to a bare
 * BullMQ worker (scripts/bench/bare-worker.ts, a processor that returns at once) on the same Redis,
 * measured in the same run. Both workers run for the whole benchmark, each on its own queue, so start-up
 * is not measured; each round pauses the queue, adds the jobs, then times from resume to the last job's
 * completion (its `finishedOn`, the score in the completed set), the two workers one after the other in
 * alternating order.
 *
 *   npm run bench:queue                   (BENCH_ROUNDS=11 BENCH_JOBS=4000 BENCH_CONCURRENCY=1 by default;
 *                                          BENCH_WARMUP=1 unmeasured rounds first; BENCH_LOG_LEVEL=info is
 *                                          the agent's LOG_LEVEL; REDIS_URL, default redis://127.0.0.1:6379)
 */
import path from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { ROOT, cpuSeconds, median, pinCpus, startAgent, startScript } from './common.js';
import type { Child } from './common.js';

const rounds = Number(process.env.BENCH_ROUNDS ?? 11);
const jobsPerRound = Number(process.env.BENCH_JOBS ?? 4000);
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 1);
const warmup = Number(process.env.BENCH_WARMUP ?? 1);
const logLevel = process.env.BENCH_LOG_LEVEL ?? 'info';
const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
/** How often the completed count is polled; the timing itself comes from the jobs' `finishedOn`. */
const POLL_MS = 20;
/** A round taking longer than this means a worker is stuck. */
const ROUND_TIMEOUT_MS = 120_000;

type Who = 'agent' | 'baseline';

interface Run {
  jobsPerS: number;
  /** Worker process CPU time per job. */
  cpuUs: number;
  /** Redis server CPU time per job (from INFO, so it includes this script's polling, alike for both). */
  redisUs: number;
}

interface Target {
  queue: Queue;
  child: Child;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Redis's own CPU time in seconds (user + system), from INFO. */
async function redisCpu(redis: Redis): Promise<number> {
  const info = await redis.info('cpu');
  const field = (name: string): number =>
    Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1] ?? NaN);
  return field('used_cpu_user') + field('used_cpu_sys');
}

async function waitForWorker(queue: Queue): Promise<void> {
  const deadline = Date.now() + 30_000;
  while ((await queue.getWorkersCount()) < 1) {
    if (Date.now() > deadline) throw new Error(`no worker on queue ${queue.name} after 30 s`);
    await sleep(100);
  }
}

/** One round for one worker: fills its (paused) queue, resumes it and times until all jobs completed. */
async function measure(t: Target, redis: Redis): Promise<Run> {
  const { queue } = t;
  const pid = t.child.proc.pid as number;
  await queue.pause();
  await queue.addBulk(Array.from({ length: jobsPerRound }, (_, i) => ({ name: 'bench', data: { i } })));
  const cpu0 = cpuSeconds(pid);
  const redis0 = await redisCpu(redis);
  const t0 = Date.now();
  await queue.resume();
  const deadline = t0 + ROUND_TIMEOUT_MS;
  while ((await queue.getJobCounts('completed')).completed! < jobsPerRound) {
    if (Date.now() > deadline) throw new Error(`${queue.name}: jobs not completed in ${ROUND_TIMEOUT_MS} ms`);
    await sleep(POLL_MS);
  }
  // The completed set is scored by finishedOn (the worker's Date.now()): the exact end of the round.
  const last = await redis.zrange(queue.toKey('completed'), '-1', '-1', 'WITHSCORES');
  const wallS = Math.max(1, Number(last[1]) - t0) / 1000;
  const run = {
    jobsPerS: jobsPerRound / wallS,
    cpuUs: ((cpuSeconds(pid) - cpu0) / jobsPerRound) * 1e6,
    redisUs: (((await redisCpu(redis)) - redis0) / jobsPerRound) * 1e6,
  };
  await queue.clean(0, 0, 'completed');
  return run;
}

async function main(): Promise<void> {
  const pinning = pinCpus();
  const prefix = `bench-queue-${process.pid}-${Date.now()}`;
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const queues = {
    agent: new Queue('agent', { connection: redis, prefix }),
    baseline: new Queue('baseline', { connection: redis, prefix }),
  };
  const results: Record<Who, Run[]> = { agent: [], baseline: [] };
  const orders: string[] = [];
  let agentCompleted: unknown;
  let agent: Child | undefined;
  let baseline: Child | undefined;
  let stopping = false;
  try {
    agent = await startAgent({
      REDIS_URL: redisUrl,
      QUEUE_NAME: queues.agent.name,
      QUEUE_PREFIX: prefix,
      JOB_RUNNER: 'noop',
      WORKER_CONCURRENCY: String(concurrency),
      LOG_LEVEL: 'info',
    });
    baseline = await startScript(path.join(ROOT, 'dist/scripts/bench/bare-worker.js'), {
      REDIS_URL: redisUrl,
      QUEUE_NAME: queues.baseline.name,
      QUEUE_PREFIX: prefix,
      WORKER_CONCURRENCY: String(concurrency),
    });
    const targets: Record<Who, Target> = {
      agent: { queue: queues.agent, child: agent },
      baseline: { queue: queues.baseline, child: baseline },
    };
    // A worker that goes away mid-run (killed from outside) is reported, with the agent's last records.
    let agentTail: string[] = [];
    agent.proc.stdout?.on('data', (chunk: string) => {
      agentTail = [...agentTail, ...chunk.split('\n').filter(Boolean)].slice(-5);
    });
    for (const [who, t] of Object.entries(targets)) {
      t.child.proc.once('exit', (code, signal) => {
        if (stopping) return;
        console.error(`${who} exited during the run (code ${code}, signal ${signal})`);
        if (who === 'agent') console.error(`agent's last records:\n${agentTail.join('\n')}`);
      });
    }
    // The agent starts at info (startAgent reads its `listening` record); then takes the level asked for.
    if (logLevel !== 'info') {
      const r = await fetch(`http://127.0.0.1:${agent.port}/debug/log-level`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ level: logLevel }),
      });
      if (!r.ok) throw new Error(`POST /debug/log-level: ${r.status} ${await r.text()}`);
    }
    await waitForWorker(queues.agent);
    await waitForWorker(queues.baseline);
    for (let i = 0; i < warmup; i++) {
      await measure(targets.baseline, redis);
      await measure(targets.agent, redis);
    }
    for (let i = 0; i < rounds; i++) {
      // Alternate which goes first so drift on the machine hits both alike.
      const order: Who[] = i % 2 === 0 ? ['baseline', 'agent'] : ['agent', 'baseline'];
      orders.push(order[0] === 'agent' ? 'agent first' : 'bare first');
      for (const who of order) results[who].push(await measure(targets[who], redis));
    }
    const res = await fetch(`http://127.0.0.1:${agent.port}/debug/queue`);
    agentCompleted = ((await res.json()) as { this_pod?: { completed?: number } }).this_pod?.completed;
  } finally {
    stopping = true;
    await agent?.stop();
    await baseline?.stop();
    for (const q of Object.values(queues)) await q.obliterate({ force: true });
    // Anything else under the run's prefix (worker bookkeeping) goes too.
    const left = await redis.keys(`${prefix}:*`);
    if (left.length) await redis.del(...left);
    for (const q of Object.values(queues)) await q.close();
    redis.disconnect();
  }

  const expected = (warmup + rounds) * jobsPerRound;
  console.log(
    `Queue benchmark: ${rounds} rounds × ${jobsPerRound} jobs per worker (after ${warmup} warm-up), ` +
      `concurrency ${concurrency}, agent LOG_LEVEL=${logLevel}, ${pinning}`,
  );
  console.log(
    'Ratio: median over rounds of agent jobs/s ÷ bare BullMQ worker jobs/s, each pair measured back to ' +
      'back, so drift in the machine cancels out.',
  );
  console.log(
    'round  order         agent jobs/s  bare jobs/s  ratio  worker CPU µs/job agent/bare  Redis CPU µs/job agent/bare',
  );
  const row = (label: string, order: string, a: Run, b: Run, ratio: number): void => {
    console.log(
      `${label.padEnd(5)}  ${order.padEnd(12)}  ${a.jobsPerS.toFixed(0).padStart(12)}  ${b.jobsPerS.toFixed(0).padStart(11)}  ${ratio.toFixed(2).padStart(5)}  ${`${a.cpuUs.toFixed(0)}/${b.cpuUs.toFixed(0)}`.padStart(28)}  ${`${a.redisUs.toFixed(0)}/${b.redisUs.toFixed(0)}`.padStart(27)}`,
    );
  };
  const ratios = results.agent.map((a, i) => a.jobsPerS / results.baseline[i]!.jobsPerS);
  results.agent.forEach((a, i) => row(String(i + 1), orders[i]!, a, results.baseline[i]!, ratios[i]!));
  const med = (who: Who, k: keyof Run): number => median(results[who].map((r) => r[k]));
  const summary = (who: Who): Run => ({
    jobsPerS: med(who, 'jobsPerS'),
    cpuUs: med(who, 'cpuUs'),
    redisUs: med(who, 'redisUs'),
  });
  row('med', '', summary('agent'), summary('baseline'), median(ratios));
  console.log(
    `Agent /debug/queue this_pod.completed: ${String(agentCompleted)} (expected ${expected})` +
      (agentCompleted === expected ? '' : ' MISMATCH'),
  );
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
