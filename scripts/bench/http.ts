/**
 * Requests per second of the agent's /debug/status and /metrics, as a ratio to a bare express route
 * that returns a constant body of the same size, measured in the same run with autocannon. The agent
 * runs with 8 mock GPUs polled every second, as in a busy pod.
 *
 *   npm run bench:http                    (BENCH_SECONDS=1 BENCH_ROUNDS=30 BENCH_CONNECTIONS=20 by default;
 *                                          BENCH_ROUTES=/metrics measures one route)
 */
import path from 'node:path';
import autocannon from 'autocannon';
import { ROOT, cpuSeconds, median, pinCpus, startAgent, startScript } from './common.js';

const seconds = Number(process.env.BENCH_SECONDS ?? 1);
const rounds = Number(process.env.BENCH_ROUNDS ?? 30);
const connections = Number(process.env.BENCH_CONNECTIONS ?? 20);

interface Run {
  rps: number;
  /** Server CPU time per request. */
  cpuUs: number;
  p50: number;
  p99: number;
  errors: number;
}

async function measure(url: string, pid: number): Promise<Run> {
  const cpu0 = cpuSeconds(pid);
  const r = await autocannon({ url, connections, duration: seconds, pipelining: 1 });
  return {
    rps: r.requests.average,
    cpuUs: ((cpuSeconds(pid) - cpu0) / Math.max(1, r.requests.total)) * 1e6,
    p50: r.latency.p50,
    p99: r.latency.p99,
    errors: r.errors + r.timeouts + r.non2xx,
  };
}

async function main(): Promise<void> {
  const pinning = pinCpus();
  const agent = await startAgent({ MOCK_GPU_COUNT: '8', GPU_POLL_INTERVAL_MS: '1000', LOG_LEVEL: 'info' });
  const base = `http://127.0.0.1:${agent.port}`;
  await new Promise((r) => setTimeout(r, 2000));
  const statusBytes = Buffer.byteLength(await (await fetch(`${base}/debug/status`)).text());
  const metricsBytes = Buffer.byteLength(await (await fetch(`${base}/metrics`)).text());
  const baseline = await startScript(path.join(ROOT, 'dist/scripts/bench/baseline-server.js'), {
    STATUS_BYTES: String(statusBytes),
    METRICS_BYTES: String(metricsBytes),
  });
  const bare = `http://127.0.0.1:${baseline.port}`;

  const only = process.env.BENCH_ROUTES?.split(',');
  const allRoutes = [
    { name: '/debug/status', agent: `${base}/debug/status`, baseline: `${bare}/status`, bytes: statusBytes },
    { name: '/metrics', agent: `${base}/metrics`, baseline: `${bare}/metrics`, bytes: metricsBytes },
  ];
  const routes = allRoutes.filter((r) => !only || only.includes(r.name));
  // Warm both servers up before measuring.
  for (const r of routes) {
    await autocannon({ url: r.agent, connections, duration: 3 });
    await autocannon({ url: r.baseline, connections, duration: 3 });
  }
  const results: Record<string, { agent: Run[]; baseline: Run[] }> = {};
  for (let i = 0; i < rounds; i++) {
    for (const r of routes) {
      results[r.name] ??= { agent: [], baseline: [] };
      // Alternate which goes first so drift on the machine hits both alike.
      const order = i % 2 === 0 ? (['baseline', 'agent'] as const) : (['agent', 'baseline'] as const);
      for (const who of order) {
        const target =
          who === 'agent'
            ? { url: r.agent, pid: agent.proc.pid! }
            : { url: r.baseline, pid: baseline.proc.pid! };
        results[r.name]![who].push(await measure(target.url, target.pid));
      }
    }
  }
  await agent.stop();
  await baseline.stop();

  console.log(
    `HTTP benchmark: ${rounds} rounds × ${seconds} s per server and route, ${connections} connections, ` +
      `8 mock GPUs polled at 1 s, ${pinning}`,
  );
  console.log(
    'Ratio: median over rounds of agent req/s ÷ baseline req/s, each pair measured back to back, so drift ' +
      'in the machine cancels out.',
  );
  console.log(
    'route            body B   agent req/s  baseline req/s  ratio  CPU µs/req agent/baseline  agent p50/p99 ms  errors',
  );
  for (const r of routes) {
    const res = results[r.name]!;
    const a = median(res.agent.map((x) => x.rps));
    const b = median(res.baseline.map((x) => x.rps));
    const ratio = median(res.agent.map((x, i) => x.rps / res.baseline[i]!.rps));
    const p50 = median(res.agent.map((x) => x.p50));
    const p99 = median(res.agent.map((x) => x.p99));
    const errors = res.agent.reduce((s, x) => s + x.errors, 0);
    const cpuA = median(res.agent.map((x) => x.cpuUs));
    const cpuB = median(res.baseline.map((x) => x.cpuUs));
    if (process.env.BENCH_VERBOSE) {
      const fmt = (runs: Run[]): string =>
        runs.map((x) => `${x.rps.toFixed(0)}@${x.cpuUs.toFixed(0)}µs`).join(' ');
      console.log(`  rounds: agent ${fmt(res.agent)} | baseline ${fmt(res.baseline)}`);
    }
    console.log(
      `${r.name.padEnd(16)} ${String(r.bytes).padStart(6)}  ${a.toFixed(0).padStart(11)}  ${b.toFixed(0).padStart(14)}  ${ratio.toFixed(2).padStart(5)}  ${`${cpuA.toFixed(0)}/${cpuB.toFixed(0)}`.padStart(25)}  ${`${p50}/${p99}`.padStart(16)}  ${String(errors).padStart(6)}`,
    );
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
