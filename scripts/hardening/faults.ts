/**
 * Fault suite: each fault a pod meets is caused for real against the built agent, and what the agent
 * did about it is counted.
 *
 *   nvidia-smi hangs        the fake nvidia-smi hangs on every call: each run is killed at the sample
 *                           timeout; after N cycles no zombie, no nvidia-smi left running, no descriptor
 *                           leaked
 *   NVML call wedges        the fake libnvidia-ml blocks every query: the sampling thread is abandoned
 *                           and replaced, HTTP answers as before, sampling recovers when the driver does
 *   DCGM stream dies        the running `dcgmi dmon` is killed while the host engine is down: restarts
 *                           back off (doubling), and data flows again once dcgmi answers
 *   Redis killed for 10 s   a private redis-server (append-only, fsync always) is SIGKILLed with jobs
 *                           running: every job completes, none lost, none run or counted twice unseen
 *   workload crashes        entrypoint mode, the workload dies of SIGSEGV mid-job: the exit code shows
 *                           in /ready, /debug/status, the job, the logs and the agent's own exit code
 *   ComfyUI socket drops    the fake ComfyUI closes every websocket mid-node: each run is rebuilt from
 *                           /history and completes with its artifact
 *   artifacts disk full     ARTIFACTS_DIR on a full tmpfs: the job fails saying so, no partial file is
 *                           left, and the next job succeeds once there is room
 *
 *   node dist/scripts/hardening/faults.js [--short] [--only smi,nvml,dcgm,redis,crash,comfyui,disk]
 *
 * The short form (`npm test` runs it) does fewer cycles and jobs. Latencies are printed as figures; only
 * the full form holds them to a target.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Queue } from 'bullmq';
import { startFakeComfyUI } from '../../test/fakes/comfyui/fake-comfyui.js';
import { ROOT, eventually, http, startAgentProcess, tempDir } from '../../test/helpers/agent.js';
import type { AgentProcess } from '../../test/helpers/agent.js';
import { txt2img } from '../../test/helpers/comfyui.js';
import { FAKE_DCGMI } from '../../test/helpers/dcgm.js';
import {
  FAKE_NVML_STATE,
  NoCompilerError,
  buildFakeNvml,
  setFakeNvmlState,
} from '../../test/helpers/fake-nvml.js';
import { finishedJob } from '../../test/helpers/queue.js';
import { parseProcStat } from '../../src/workload/orphan-reaper.js';
import type { ProcStat } from '../../src/workload/orphan-reaper.js';
import {
  deletePrefix,
  redisClient,
  startRedisServer,
  testRedis,
  uniquePrefix,
} from '../../test/helpers/redis.js';
import {
  argValue,
  isMain,
  isShort,
  metricValue,
  openFds,
  printTable,
  runAsScript,
  sleep,
  threads,
} from './common.js';
import type { SuiteOutcome } from './common.js';

const FAKE_SMI = path.join(ROOT, 'test/fakes/nvidia-smi');

export const FAULTS = ['smi', 'nvml', 'dcgm', 'redis', 'crash', 'comfyui', 'disk'] as const;
export type FaultName = (typeof FAULTS)[number];

export interface FaultRow {
  name: FaultName;
  fault: string;
  /** What was done, with the counts. */
  done: string;
  /** What came of it. */
  figure: string;
  /** `skipped`: the machine cannot cause this fault (the reason is in `figure`). */
  outcome: 'met' | 'missed' | 'skipped';
  failures: string[];
}

export interface FaultsOptions {
  short: boolean;
  only?: readonly string[];
  print: boolean;
}

export interface FaultsResult extends SuiteOutcome {
  rows: FaultRow[];
}

// ---------------------------------------------------------------------------------------------------
// What /proc says

interface ProcInfo extends ProcStat {
  cmdline: string;
}

/** Every process on the machine, from /proc. */
function processes(): ProcInfo[] {
  const out: ProcInfo[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = parseProcStat(readFileSync(`/proc/${name}/stat`, 'utf8'));
      const cmdline = readFileSync(`/proc/${name}/cmdline`, 'utf8').replaceAll('\0', ' ').trim();
      if (stat) out.push({ ...stat, cmdline });
    } catch {
      // Gone while being read.
    }
  }
  return out;
}

/**
 * Zombie children of `pid` that stay zombies: a child that has just exited is one until the parent's
 * next event-loop turn reaps it, so a single look at a process that keeps spawning can catch one that is
 * not leaked. Only children still unreaped a while later count.
 */
async function zombiesOf(pid: number, laterMs = 300): Promise<number> {
  const zombies = (): Set<number> =>
    new Set(
      processes()
        .filter((p) => p.ppid === pid && p.state === 'Z')
        .map((p) => p.pid),
    );
  const first = zombies();
  if (first.size === 0) return 0;
  await sleep(laterMs);
  return [...zombies()].filter((z) => first.has(z)).length;
}

// ---------------------------------------------------------------------------------------------------
// Small measuring tools

/** Requests `url` one after another until stopped: latencies, and anything that was not a 200. */
function probe(url: string): { stop(): Promise<{ latencies: number[]; bad: string[] }> } {
  let running = true;
  const latencies: number[] = [];
  const bad: string[] = [];
  const loop = (async () => {
    while (running) {
      const t0 = performance.now();
      try {
        const res = await fetch(url);
        await res.arrayBuffer();
        latencies.push(performance.now() - t0);
        if (res.status !== 200 && bad.length < 20) bad.push(`${res.status}`);
      } catch (err) {
        if (bad.length < 20) bad.push((err as Error).message);
      }
      await sleep(20);
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return { latencies, bad };
    },
  };
}

function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] as number;
}

const ms = (x: number): string => (Number.isFinite(x) ? `${x.toFixed(1)} ms` : 'n/a');

async function metrics(agent: AgentProcess): Promise<string> {
  return (await fetch(`${agent.url}/metrics`)).text();
}

async function timeoutsCounted(agent: AgentProcess, backend: string): Promise<number> {
  return (
    metricValue(await metrics(agent), 'agent_gpu_sample_failures_total', { backend, category: 'timeout' }) ??
    0
  );
}

/** When the newest good sample was taken (ms since the epoch), 0 before the first. */
async function lastGoodSample(agent: AgentProcess, backend: string): Promise<number> {
  const s = metricValue(await metrics(agent), 'agent_gpu_last_sample_timestamp_seconds', { backend });
  return s === undefined ? 0 : s * 1000;
}

/** Resolves once a good sample taken after `after` (ms since the epoch) is in. */
async function goodSampleSince(
  agent: AgentProcess,
  backend: string,
  after: number,
  timeoutMs: number,
): Promise<void> {
  await eventually(
    async () => ((await lastGoodSample(agent, backend)) > after ? true : undefined),
    timeoutMs,
    `a good ${backend} sample`,
  );
}

interface Ready {
  status: string;
  checks: Record<string, { status: string; [k: string]: unknown }>;
}

async function readyOf(agent: AgentProcess): Promise<{ status: number; body: Ready }> {
  return http<Ready>(`${agent.url}/ready`);
}

function row(
  name: FaultName,
  fault: string,
  done: string,
  figure: string,
  failures: string[],
  skipped = false,
): FaultRow {
  return {
    name,
    fault,
    done,
    figure,
    failures,
    outcome: skipped ? 'skipped' : failures.length ? 'missed' : 'met',
  };
}

// ---------------------------------------------------------------------------------------------------
// nvidia-smi hangs

async function nvidiaSmiHangs(short: boolean): Promise<FaultRow> {
  const cycles = short ? 50 : 100;
  const dir = tempDir('gpa-faults-smi-');
  const modeFile = path.join(dir, 'mode');
  writeFileSync(modeFile, 'ok\n');
  const agent = await startAgentProcess({
    env: {
      MOCK_GPU: '',
      GPU_BACKEND: 'nvidia-smi',
      NVIDIA_SMI_PATH: FAKE_SMI,
      FAKE_NVIDIA_SMI_MODE_FILE: modeFile,
      GPU_POLL_INTERVAL_MS: '50',
      GPU_SAMPLE_TIMEOUT_MS: '150',
      LOG_LEVEL: 'info',
    },
  });
  const failures: string[] = [];
  try {
    const pid = agent.proc.pid as number;
    await goodSampleSince(agent, 'nvidia-smi', 0, 30_000);
    const fdsBefore = openFds(pid);
    const threadsBefore = threads(pid);
    const health = probe(`${agent.url}/health`);
    writeFileSync(modeFile, 'hang\n');
    const t0 = performance.now();
    const first = await timeoutsCounted(agent, 'nvidia-smi');
    let mostAlive = 0;
    /** Every run seen while the hang lasted: each must be killed at its timeout. */
    const hung = new Set<number>();
    await eventually(
      async () => {
        const runs = processes().filter((p) => p.cmdline.includes(FAKE_SMI));
        for (const r of runs) hung.add(r.pid);
        mostAlive = Math.max(mostAlive, runs.length);
        return (await timeoutsCounted(agent, 'nvidia-smi')) - first >= cycles ? true : undefined;
      },
      cycles * 2000,
      `${cycles} nvidia-smi timeouts`,
    );
    const cycleMs = (performance.now() - t0) / cycles;
    const during = await readyOf(agent);
    if (during.status !== 503 || during.body.checks.gpu?.status !== 'failing')
      failures.push(`/ready during the hang: ${during.status} gpu ${during.body.checks.gpu?.status}`);

    writeFileSync(modeFile, 'ok\n');
    await goodSampleSince(agent, 'nvidia-smi', Date.now(), 30_000);
    const { latencies, bad } = await health.stop();
    await sleep(500);
    const zombies = await zombiesOf(pid);
    const alive = new Set(processes().map((p) => p.pid));
    const leftOver = [...hung].filter((pid) => alive.has(pid)).length;
    const fdsAfter = openFds(pid);
    const threadsAfter = threads(pid);
    if (zombies > 0) failures.push(`${zombies} zombie children`);
    if (leftOver > 0) failures.push(`${leftOver} nvidia-smi runs never killed`);
    if (hung.size === 0) failures.push('no nvidia-smi run was seen hanging');
    if (fdsAfter - fdsBefore > 3) failures.push(`open descriptors ${fdsBefore} → ${fdsAfter}`);
    if (bad.length) failures.push(`/health answered ${bad.join(', ')}`);
    if ((await readyOf(agent)).status !== 200) failures.push('/ready not 200 after the hang cleared');
    return row(
      'smi',
      'nvidia-smi hangs',
      `${cycles} sample cycles with every nvidia-smi call hanging (timeout 150 ms)`,
      `each killed at the timeout (a cycle every ${cycleMs.toFixed(0)} ms, at most ${mostAlive} runs alive); ` +
        `zombies ${zombies}, ${hung.size} hung runs seen, ${leftOver} left, fds ${fdsBefore} → ${fdsAfter}, threads ${threadsBefore} → ${threadsAfter}; ` +
        `/health ${latencies.length} answers, p99 ${ms(percentile(latencies, 99))}; /ready 503 during, 200 after`,
      failures,
    );
  } finally {
    await agent.stop();
  }
}

// ---------------------------------------------------------------------------------------------------
// NVML wedges

async function nvmlWedges(short: boolean): Promise<FaultRow> {
  let lib: string;
  try {
    lib = buildFakeNvml('modern');
  } catch (err) {
    if (err instanceof NoCompilerError && !process.env.CI)
      return row('nvml', 'NVML call wedges', 'not run', err.message, [], true);
    throw err;
  }
  setFakeNvmlState({});
  const wedgeS = short ? 5 : 20;
  const agent = await startAgentProcess({
    env: {
      MOCK_GPU: '',
      GPU_BACKEND: 'nvml',
      NVML_LIBRARY_PATH: lib,
      FAKE_NVML_STATE,
      GPU_POLL_INTERVAL_MS: '100',
      GPU_SAMPLE_TIMEOUT_MS: '300',
      LOG_LEVEL: 'info',
    },
  });
  const failures: string[] = [];
  try {
    const pid = agent.proc.pid as number;
    await goodSampleSince(agent, 'nvml', 0, 30_000);
    const threadsBefore = threads(pid);
    let p = probe(`${agent.url}/debug/status`);
    await sleep(wedgeS * 1000);
    const before = await p.stop();

    setFakeNvmlState({ hang: 1 });
    const timeoutsAt = await timeoutsCounted(agent, 'nvml');
    p = probe(`${agent.url}/debug/status`);
    let mostThreads = threadsBefore;
    const until = Date.now() + wedgeS * 1000;
    while (Date.now() < until) {
      mostThreads = Math.max(mostThreads, threads(pid));
      await sleep(100);
    }
    const during = await p.stop();
    const timeouts = (await timeoutsCounted(agent, 'nvml')) - timeoutsAt;
    const ready = await readyOf(agent);
    if (ready.body.checks.gpu?.status !== 'failing')
      failures.push(`/ready gpu check ${ready.body.checks.gpu?.status}`);
    if (timeouts < 2) failures.push(`only ${timeouts} timeouts counted while wedged`);

    setFakeNvmlState({});
    const cleared = performance.now();
    await goodSampleSince(agent, 'nvml', Date.now(), 30_000);
    const recoveredMs = performance.now() - cleared;
    if ((await readyOf(agent)).status !== 200) failures.push('/ready not 200 once NVML answered');
    for (const [what, r] of [
      ['before', before],
      ['during', during],
    ] as const)
      if (r.bad.length) failures.push(`/debug/status ${what} the wedge answered ${r.bad.join(', ')}`);
    const p99Before = percentile(before.latencies, 99);
    const p99During = percentile(during.latencies, 99);
    if (!short && p99During > Math.max(2 * p99Before, p99Before + 20))
      failures.push(`/debug/status p99 ${ms(p99Before)} before, ${ms(p99During)} while wedged`);
    return row(
      'nvml',
      'NVML call wedges',
      `every NVML query blocked for ${wedgeS} s (sample timeout 300 ms)`,
      `${timeouts} samples abandoned at the timeout, threads ${threadsBefore} → at most ${mostThreads}; ` +
        `/debug/status p50/p99 ${ms(percentile(before.latencies, 50))}/${ms(p99Before)} before, ` +
        `${ms(percentile(during.latencies, 50))}/${ms(p99During)} wedged (${during.latencies.length} answers, all 200); ` +
        `sampling again ${(recoveredMs / 1000).toFixed(1)} s after the driver answered`,
      failures,
    );
  } finally {
    setFakeNvmlState({});
    await agent.stop();
  }
}

// ---------------------------------------------------------------------------------------------------
// DCGM stream dies

async function dcgmDies(short: boolean): Promise<FaultRow> {
  const outageS = short ? 6 : 20;
  const dir = tempDir('gpa-faults-dcgm-');
  const modeFile = path.join(dir, 'mode');
  writeFileSync(modeFile, 'normal\n');
  const agent = await startAgentProcess({
    env: {
      MOCK_GPU: '',
      GPU_BACKEND: 'dcgm',
      DCGMI_PATH: FAKE_DCGMI,
      FAKE_DCGMI_MODE_FILE: modeFile,
      GPU_POLL_INTERVAL_MS: '100',
      LOG_LEVEL: 'debug',
    },
  });
  const failures: string[] = [];
  try {
    const pid = agent.proc.pid as number;
    await goodSampleSince(agent, 'dcgm', 0, 30_000);
    const dmon = processes().filter((p) => p.ppid === pid && p.cmdline.includes('dmon'));
    if (dmon.length !== 1) failures.push(`${dmon.length} dcgmi dmon children before the fault`);
    const health = probe(`${agent.url}/health`);
    // The host engine goes away and the stream with it.
    writeFileSync(modeFile, 'exit\n');
    const killedAt = agent.records.length;
    for (const d of dmon) process.kill(d.pid, 'SIGKILL');
    await sleep(outageS * 1000);
    const ready = await readyOf(agent);
    writeFileSync(modeFile, 'normal\n');
    const back = performance.now();
    // Data flows again at the next restart, up to one backoff step (at most 30 s) later.
    await goodSampleSince(agent, 'dcgm', Date.now(), 90_000);
    const recoveredS = (performance.now() - back) / 1000;
    const { bad } = await health.stop();
    const later = agent.records.slice(killedAt);
    const failed = later.filter((r) => r.message === 'dcgmi dmon failed').length;
    const delays = later
      .filter((r) => r.message === 'dcgmi dmon restart scheduled')
      .map((r) => (r.data as { delay_ms: number }).delay_ms);
    const outageDelays = delays.slice(0, failed);
    const doubling = outageDelays.every((d, i) => i === 0 || d >= (outageDelays[i - 1] as number));
    if (failed < 2) failures.push(`${failed} failed restarts during a ${outageS} s outage`);
    if (
      !doubling ||
      (outageDelays.length > 1 && (outageDelays.at(-1) as number) <= (outageDelays[0] as number))
    )
      failures.push(`restart delays do not back off: ${outageDelays.join(', ')} ms`);
    if (ready.body.checks.gpu?.status !== 'failing')
      failures.push(`/ready gpu check ${ready.body.checks.gpu?.status} during the outage`);
    if (bad.length) failures.push(`/health answered ${bad.join(', ')}`);
    const children = processes().filter((p) => p.ppid === pid && p.cmdline.includes('dmon'));
    if (children.length !== 1)
      failures.push(
        `${children.length} dcgmi dmon children after recovery: ${JSON.stringify(processes().filter((p) => p.cmdline.includes('dcgmi')))}`,
      );
    if ((await zombiesOf(pid)) > 0) failures.push('zombie children');
    if ((await readyOf(agent)).status !== 200) failures.push('/ready not 200 after recovery');
    return row(
      'dcgm',
      'DCGM stream dies',
      `dcgmi dmon killed, host engine refusing for ${outageS} s`,
      `${failed} failures (the stream killed, then ${failed - 1} restarts refused), delays ${outageDelays.join(' → ')} ms; /ready 503 gpu failing meanwhile; ` +
        `fresh data ${recoveredS.toFixed(1)} s after dcgmi answered again (the next backoff step), one dmon child, no zombie`,
      failures,
    );
  } finally {
    await agent.stop();
  }
}

// ---------------------------------------------------------------------------------------------------
// Redis killed for 10 s with jobs running

/** A queue job's command that records each run of it in a ledger, then reports steps and a result. */
const LEDGER_JOB = `
import { appendFileSync } from 'node:fs';
let input = '';
for await (const c of process.stdin) input += c;
const data = JSON.parse(input || '{}');
appendFileSync(process.env.LEDGER, process.env.JOB_ID + ' ' + process.env.JOB_ATTEMPT + '\\n');
const emit = (e) => process.stdout.write('::agent:: ' + JSON.stringify(e) + '\\n');
emit({ type: 'job.start', nodes: [{ id: '3', type: 'KSampler' }] });
emit({ type: 'node.start', node_id: '3', node_type: 'KSampler' });
for (let i = 1; i <= data.steps; i++) {
  await new Promise((r) => setTimeout(r, data.step_ms));
  emit({ type: 'node.progress', node_id: '3', step: i, total: data.steps });
}
emit({ type: 'node.end', node_id: '3' });
emit({ type: 'job.end', result: { n: data.n } });
`;

async function redisKilled(short: boolean): Promise<FaultRow> {
  const jobs = short ? 24 : 100;
  const concurrency = 4;
  const downS = 10;
  const dir = tempDir('gpa-faults-redis-');
  const script = path.join(dir, 'ledger-job.mjs');
  const ledger = path.join(dir, 'ledger');
  writeFileSync(script, LEDGER_JOB);
  writeFileSync(ledger, '');
  const server = await startRedisServer({ persist: true });
  const prefix = uniquePrefix();
  const conn = redisClient(server.url);
  const queue = new Queue('jobs', { connection: conn, prefix });
  // Refused connections while Redis is away are expected; the figures say what came of them.
  queue.on('error', () => undefined);
  const agent = await startAgentProcess({
    env: {
      REDIS_URL: server.url,
      QUEUE_PREFIX: prefix,
      JOB_COMMAND: `${process.execPath} ${script}`,
      WORKER_CONCURRENCY: String(concurrency),
      QUEUE_REFRESH_INTERVAL_MS: '200',
      LEDGER: ledger,
      LOG_LEVEL: 'info',
    },
  });
  const failures: string[] = [];
  try {
    await queue.addBulk(
      Array.from({ length: jobs }, (_, n) => ({
        name: 'render',
        data: { n, steps: 10, step_ms: 100 },
        opts: { jobId: `j${n}`, attempts: 3, backoff: { type: 'fixed', delay: 500 } },
      })),
    );
    // Killed once the first jobs are done and a full set is running.
    await eventually(
      async () =>
        ((await queue.getJobCounts('completed')).completed ?? 0) >= concurrency ? true : undefined,
      60_000,
    );
    await eventually(
      async () => ((await queue.getJobCounts('active')).active === concurrency ? true : undefined),
      30_000,
    );
    const health = probe(`${agent.url}/health`);
    await server.kill();
    const killed = performance.now();
    await sleep(2000);
    const ready = await readyOf(agent);
    const view = await http<{ redis: { status: string } }>(`${agent.url}/debug/queue`);
    await sleep(downS * 1000 - 2000);
    await server.restart();
    const downFor = (performance.now() - killed) / 1000;
    const restarted = performance.now();
    await eventually(
      async () => ((await readyOf(agent)).status === 200 ? true : undefined),
      60_000,
      '/ready 200 after Redis came back',
    );
    const readyAfterS = (performance.now() - restarted) / 1000;
    await eventually(
      async () => {
        const c = await queue.getJobCounts('completed', 'failed');
        return (c.completed ?? 0) + (c.failed ?? 0) === jobs ? true : undefined;
      },
      jobs * 2000 + 60_000,
      'every job finished',
    );
    const { bad } = await health.stop();
    const counts = await queue.getJobCounts('completed', 'failed', 'active', 'wait', 'delayed');
    const runs = new Map<string, number>();
    for (const line of readFileSync(ledger, 'utf8').split('\n').filter(Boolean)) {
      const id = line.split(' ')[0] as string;
      runs.set(id, (runs.get(id) ?? 0) + 1);
    }
    let attemptsOver1 = 0;
    let totalAttempts = 0;
    for (let n = 0; n < jobs; n++) {
      const job = await queue.getJob(`j${n}`);
      const made = job?.attemptsMade ?? 0;
      totalAttempts += made;
      if (made > 1) attemptsOver1++;
    }
    const ranTwice = [...runs.values()].filter((v) => v > 1).length;
    const totalRuns = [...runs.values()].reduce((a, b) => a + b, 0);
    const text = await metrics(agent);
    const completedCounted =
      metricValue(text, 'jobs_completed_total', { queue: 'jobs', status: 'completed' }) ?? 0;
    const startedCounted = metricValue(text, 'jobs_started_total', { queue: 'jobs' }) ?? 0;
    const done = counts.completed ?? 0;
    const lost = jobs - done;
    if (lost !== 0) failures.push(`${lost} jobs not completed (${JSON.stringify(counts)})`);
    if (runs.size !== jobs) failures.push(`${jobs - runs.size} jobs never ran`);
    if (completedCounted !== jobs)
      failures.push(`jobs_completed_total{status="completed"} ${completedCounted}, ${jobs} jobs`);
    // A run the metrics or BullMQ did not see would be a job done twice behind everyone's back.
    if (startedCounted !== totalRuns)
      failures.push(`jobs_started_total ${startedCounted}, ${totalRuns} runs`);
    if (ranTwice > attemptsOver1)
      failures.push(`${ranTwice} jobs ran twice, ${attemptsOver1} show a second attempt`);
    if (ready.status !== 503) failures.push(`/ready ${ready.status} while Redis was down`);
    if (view.body.redis.status !== 'unreachable')
      failures.push(`/debug/queue redis ${view.body.redis.status} while down`);
    if (bad.length) failures.push(`/health answered ${bad.join(', ')}`);
    return row(
      'redis',
      'Redis killed for 10 s',
      `${jobs} jobs (${concurrency} at a time, 1 s each); redis-server SIGKILLed with ${concurrency} active, back after ${downFor.toFixed(1)} s`,
      `completed ${done}/${jobs}, lost ${lost}; runs ${totalRuns} (${ranTwice} jobs ran twice, ` +
        `${attemptsOver1} with a second attempt in BullMQ, ${totalAttempts} attempts); jobs_completed_total ${completedCounted}, ` +
        `jobs_started_total ${startedCounted}; /ready 503 and redis "${view.body.redis.status}" while down, 200 ${readyAfterS.toFixed(1)} s after; /health always 200`,
      failures,
    );
  } finally {
    await agent.stop();
    await queue.close();
    conn.disconnect();
    await server.stop();
  }
}

// ---------------------------------------------------------------------------------------------------
// The workload crashes (entrypoint mode)

const CRASHING_WORKLOAD = `
const emit = (e) => process.stdout.write('::agent:: ' + JSON.stringify(e) + '\\n');
emit({ type: 'job.start', job_id: 'render-1', nodes: [{ id: '3', type: 'KSampler' }] });
emit({ type: 'node.start', job_id: 'render-1', node_id: '3', node_type: 'KSampler' });
let step = 0;
setInterval(() => {
  emit({ type: 'node.progress', job_id: 'render-1', node_id: '3', step: ++step, total: 30 });
  if (step === 12) process.kill(process.pid, 'SIGSEGV');
}, 50);
`;

async function workloadCrashes(): Promise<FaultRow> {
  const agent = await startAgentProcess({
    env: { WORKLOAD_EXIT_LINGER_MS: '60000', LOG_LEVEL: 'info' },
    args: ['--', process.execPath, '-e', CRASHING_WORKLOAD],
  });
  const failures: string[] = [];
  try {
    await agent.waitForRecord(
      (r) => r.message === 'the workload exited; still answering before the agent exits',
      30_000,
    );
    const ready = await readyOf(agent);
    const status = await http<{
      status: string;
      workload: { exit_code: number | null; signal: string | null };
    }>(`${agent.url}/debug/status`);
    const wf = await http<{ state: string; failure?: { message: string } | null }>(
      `${agent.url}/debug/workflow?job_id=render-1`,
    );
    const logged = agent.records.find((r) => r.message === 'workload exited with a failure');
    const w = ready.body.checks.workload ?? { status: 'missing' };
    if (ready.status !== 503 || w.status !== 'failing' || w.exit_code !== 139 || w.signal !== 'SIGSEGV')
      failures.push(`/ready ${ready.status} ${JSON.stringify(w)}`);
    if (status.body.status !== 'degraded' || status.body.workload.exit_code !== 139)
      failures.push(`/debug/status ${status.body.status} exit ${status.body.workload.exit_code}`);
    if (wf.body.state !== 'failed') failures.push(`the job is ${wf.body.state}, not failed`);
    if ((logged?.data as { exit_code?: number } | undefined)?.exit_code !== 139)
      failures.push('no log record with the exit code');
    const exit = await agent.stop();
    if (exit.code !== 139) failures.push(`the agent exited ${exit.code}`);
    return row(
      'crash',
      'workload crashes',
      'entrypoint mode; the workload kills itself with SIGSEGV at step 12 of 30',
      `/ready 503 degraded, workload exit_code ${String(w.exit_code)} signal ${String(w.signal)}; /debug/status ${status.body.status}, ` +
        `exit_code ${status.body.workload.exit_code}; job ${wf.body.state}; log "${logged?.message ?? 'none'}" (${logged?.level ?? '-'}); agent exit code ${exit.code}`,
      failures,
    );
  } finally {
    await agent.stop();
  }
}

// ---------------------------------------------------------------------------------------------------
// ComfyUI drops its websocket mid-node

async function comfyuiDrops(short: boolean): Promise<FaultRow> {
  const runs = short ? 3 : 20;
  const { url, prefix } = await testRedis();
  const conn = redisClient(url);
  const queue = new Queue('jobs', { connection: conn, prefix });
  // Refused connections while Redis is away are expected; the figures say what came of them.
  queue.on('error', () => undefined);
  const comfy = await startFakeComfyUI({ baseDir: tempDir('gpa-faults-comfy-'), stepDelayMs: 20 });
  comfy.script('*', { dropSocketsAt: { node: '3', step: 3 } });
  const agent = await startAgentProcess({
    env: {
      REDIS_URL: url,
      QUEUE_PREFIX: prefix,
      JOB_RUNNER: 'comfyui',
      COMFYUI_URL: comfy.url,
      QUEUE_REFRESH_INTERVAL_MS: '200',
      LOG_LEVEL: 'info',
    },
  });
  const failures: string[] = [];
  try {
    let completed = 0;
    let artifacts = 0;
    let fullWorkflows = 0;
    for (let i = 0; i < runs; i++) {
      // Other step counts each time, so the sampler runs again instead of coming from ComfyUI's cache.
      const id = `drop-${i}`;
      await queue.add('txt2img', { workflow: txt2img(8 + i, `drop${i}`) }, { jobId: id });
      const job = await finishedJob(queue, id, 60_000);
      if ((await job.getState()) === 'completed') completed++;
      else failures.push(`${id}: ${job.failedReason}`);
      artifacts += (job.returnvalue as { artifacts?: unknown[] } | null)?.artifacts?.length ?? 0;
      const wf = await http<{ progress_percent: number; nodes: { status: string }[] }>(
        `${agent.url}/debug/workflow?job_id=${id}`,
      );
      if (
        wf.body.progress_percent === 100 &&
        wf.body.nodes.every((n) => n.status === 'completed' || n.status === 'cached')
      )
        fullWorkflows++;
    }
    const view = await http<{ comfyui: { resyncs: number } }>(`${agent.url}/debug/queue`);
    if (completed !== runs) failures.push(`${runs - completed} runs not completed`);
    if (artifacts !== runs) failures.push(`${artifacts} artifacts for ${runs} runs`);
    if (fullWorkflows !== runs)
      failures.push(`${runs - fullWorkflows} workflows left unfinished in /debug/workflow`);
    if (view.body.comfyui.resyncs < runs)
      failures.push(`${view.body.comfyui.resyncs} resyncs for ${runs} drops`);
    return row(
      'comfyui',
      'ComfyUI socket drops',
      `${runs} txt2img runs, every websocket closed by ComfyUI at KSampler step 3`,
      `completed ${completed}/${runs}, artifacts ${artifacts}, every node completed at 100 % in /debug/workflow ${fullWorkflows}/${runs}; ` +
        `${view.body.comfyui.resyncs} resyncs from /history`,
      failures,
    );
  } finally {
    await agent.stop();
    await comfy.close();
    await queue.close();
    conn.disconnect();
    await deletePrefix(url, prefix);
  }
}

// ---------------------------------------------------------------------------------------------------
// The artifacts disk fills up

function tryMount(dir: string, sizeKb: number): string | undefined {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeKb}k`, 'tmpfs', dir], { stdio: 'pipe' });
    return undefined;
  } catch (err) {
    return ((err as { stderr?: Buffer }).stderr?.toString().trim() || (err as Error).message).slice(0, 200);
  }
}

/** Fills the filesystem of `dir` with one file until the write fails for lack of room. */
function fill(dir: string): string {
  const file = path.join(dir, 'filler');
  const chunk = Buffer.alloc(4096, 1);
  const parts: Buffer[] = [];
  for (;;) {
    parts.push(chunk);
    try {
      writeFileSync(file, Buffer.concat(parts));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
      parts.pop();
      writeFileSync(file, Buffer.concat(parts));
      return file;
    }
  }
}

function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) out.push(...filesUnder(p));
    else out.push(p);
  }
  return out;
}

async function diskFull(): Promise<FaultRow> {
  const artifactsDir = tempDir('gpa-faults-disk-');
  const why = os.platform() === 'linux' ? tryMount(artifactsDir, 512) : 'not Linux';
  if (why !== undefined) {
    if (process.env.CI) throw new Error(`cannot mount a tmpfs for the artifacts: ${why}`);
    return row('disk', 'artifacts disk full', 'not run', `cannot mount a tmpfs: ${why}`, [], true);
  }
  const { url, prefix } = await testRedis();
  const conn = redisClient(url);
  const queue = new Queue('jobs', { connection: conn, prefix });
  // Refused connections while Redis is away are expected; the figures say what came of them.
  queue.on('error', () => undefined);
  const comfy = await startFakeComfyUI({ baseDir: tempDir('gpa-faults-comfy-'), stepDelayMs: 5 });
  let agent: AgentProcess | undefined;
  const failures: string[] = [];
  try {
    agent = await startAgentProcess({
      env: {
        REDIS_URL: url,
        QUEUE_PREFIX: prefix,
        JOB_RUNNER: 'comfyui',
        COMFYUI_URL: comfy.url,
        ARTIFACTS_DIR: artifactsDir,
        LOG_LEVEL: 'info',
      },
    });
    const filler = fill(artifactsDir);
    const health = probe(`${agent.url}/health`);
    await queue.add('txt2img', { workflow: txt2img(6, 'full') }, { jobId: 'full' });
    const failed = await finishedJob(queue, 'full', 60_000);
    const state = await failed.getState();
    const reason = failed.failedReason ?? '';
    const left = filesUnder(artifactsDir).filter((f) => f !== filler);
    const listed = await http<{ artifacts: unknown[] }>(`${agent.url}/debug/artifacts?job_id=full`);
    rmSync(filler);
    await queue.add('txt2img', { workflow: txt2img(7, 'room') }, { jobId: 'room' });
    const ok = await finishedJob(queue, 'room', 60_000);
    const okState = await ok.getState();
    const okListed = await http<{ artifacts: { size_bytes: number }[] }>(
      `${agent.url}/debug/artifacts?job_id=room`,
    );
    const { bad } = await health.stop();
    if (state !== 'failed') failures.push(`the job on a full disk is ${state}`);
    if (!/no space left/i.test(reason)) failures.push(`failure reason: ${reason.slice(0, 200)}`);
    if (left.length) failures.push(`partial files left: ${left.join(', ')}`);
    if (listed.status !== 200 && listed.status !== 404)
      failures.push(`/debug/artifacts answered ${listed.status}`);
    if (okState !== 'completed') failures.push(`the next job is ${okState}: ${ok.failedReason}`);
    if (okListed.body.artifacts?.length !== 1)
      failures.push(`the next job lists ${okListed.body.artifacts?.length} artifacts`);
    if (bad.length) failures.push(`/health answered ${bad.join(', ')}`);
    return row(
      'disk',
      'artifacts disk full',
      'ARTIFACTS_DIR on a 512 KiB tmpfs filled to the last block; one ComfyUI job, then room made and another',
      `job ${state}: "${reason.slice(0, 110)}"; partial files left ${left.length}; ` +
        `next job ${okState} with ${okListed.body.artifacts?.length ?? 0} artifact; /health always 200`,
      failures,
    );
  } finally {
    await agent?.stop();
    await comfy.close();
    await queue.close();
    conn.disconnect();
    await deletePrefix(url, prefix);
    try {
      execFileSync('umount', [artifactsDir], { stdio: 'pipe' });
    } catch {
      // Left mounted only if something still holds it; the directory goes with the process.
    }
  }
}

// ---------------------------------------------------------------------------------------------------

const RUNNERS: Record<FaultName, (short: boolean) => Promise<FaultRow>> = {
  smi: nvidiaSmiHangs,
  nvml: nvmlWedges,
  dcgm: dcgmDies,
  redis: redisKilled,
  crash: () => workloadCrashes(),
  comfyui: comfyuiDrops,
  disk: () => diskFull(),
};

export async function runFaults(opts: FaultsOptions): Promise<FaultsResult> {
  const rows: FaultRow[] = [];
  for (const name of FAULTS) {
    if (opts.only && !opts.only.includes(name)) continue;
    const t0 = performance.now();
    let r: FaultRow;
    try {
      r = await RUNNERS[name](opts.short);
    } catch (err) {
      r = row(name, name, 'did not finish', (err as Error).message.slice(0, 300), [
        `${name}: ${(err as Error).message}`,
      ]);
    }
    rows.push(r);
    if (opts.print)
      console.log(
        `${r.fault}: ${r.outcome} in ${((performance.now() - t0) / 1000).toFixed(0)} s\n  ${r.done}\n  ${r.figure}`,
      );
  }
  if (opts.print)
    printTable(
      `Faults${opts.short ? ' (short form)' : ''}`,
      ['fault', 'result'],
      rows.map((r) => [
        r.fault,
        r.outcome === 'met' ? 'targets met' : r.outcome === 'skipped' ? 'skipped' : 'MISSED',
      ]),
    );
  const failures = rows.flatMap((r) => r.failures.map((f) => `${r.fault}: ${f}`));
  return { ok: failures.length === 0, failures, rows };
}

export function faultsOptionsFromArgs(argv: readonly string[]): FaultsOptions {
  const only = argValue('only', argv)?.split(',');
  for (const o of only ?? [])
    if (!(FAULTS as readonly string[]).includes(o))
      throw new Error(`unknown fault "${o}"; one of ${FAULTS.join(', ')}`);
  return { short: isShort(argv), only, print: true };
}

if (isMain(import.meta.url)) runAsScript(() => runFaults(faultsOptionsFromArgs(process.argv)));
