/**
 * What tracing costs an HTTP route: requests per second of /debug/status on an agent exporting a span
 * per request (OTLP/HTTP to a sink in this process that answers 200 and discards) as a ratio to an
 * agent with tracing off, measured in the same run, in alternating rounds, with autocannon.
 *
 *   npm run bench:tracing                 (BENCH_SECONDS=1 BENCH_ROUNDS=20 BENCH_CONNECTIONS=20,
 *                                          BENCH_ROUTE=/debug/status by default)
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import autocannon from 'autocannon';
import { cpuSeconds, median, pinCpus, startAgent } from './common.js';
import type { Child } from './common.js';

const seconds = Number(process.env.BENCH_SECONDS ?? 1);
const rounds = Number(process.env.BENCH_ROUNDS ?? 20);
const connections = Number(process.env.BENCH_CONNECTIONS ?? 20);
const route = process.env.BENCH_ROUTE ?? '/debug/status';

interface Run {
  rps: number;
  cpuUs: number;
  p99: number;
  errors: number;
}

async function measure(agent: Child): Promise<Run> {
  const pid = agent.proc.pid as number;
  const cpu0 = cpuSeconds(pid);
  const r = await autocannon({
    url: `http://127.0.0.1:${agent.port}${route}`,
    connections,
    duration: seconds,
  });
  return {
    rps: r.requests.average,
    cpuUs: ((cpuSeconds(pid) - cpu0) / Math.max(1, r.requests.total)) * 1e6,
    p99: r.latency.p99,
    errors: r.errors + r.timeouts + r.non2xx,
  };
}

async function main(): Promise<void> {
  const pinning = pinCpus();
  let spans = 0;
  const sink = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      spans++;
      res.writeHead(200, { 'content-type': 'application/x-protobuf' });
      res.end();
    });
  });
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
  const base = { MOCK_GPU_COUNT: '8', GPU_POLL_INTERVAL_MS: '1000', LOG_LEVEL: 'info' };
  const off = await startAgent(base);
  const on = await startAgent({
    ...base,
    OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${(sink.address() as AddressInfo).port}`,
  });
  const results = { on: [] as Run[], off: [] as Run[] };
  try {
    // One unmeasured round each warms both up.
    await measure(off);
    await measure(on);
    for (let i = 0; i < rounds; i++) {
      const order = i % 2 === 0 ? (['off', 'on'] as const) : (['on', 'off'] as const);
      for (const who of order) results[who].push(await measure(who === 'on' ? on : off));
    }
  } finally {
    await on.stop();
    await off.stop();
    sink.close();
  }
  const med = (who: 'on' | 'off', k: keyof Run): number => median(results[who].map((r) => r[k]));
  const ratios = results.on.map((r, i) => r.rps / results.off[i]!.rps);
  console.log(
    `Tracing benchmark: GET ${route}, ${rounds} rounds × ${seconds}s, ${connections} connections, ${pinning}`,
  );
  console.log('tracing  req/s (median)  CPU µs/req  p99 ms  errors');
  for (const who of ['off', 'on'] as const) {
    const errors = results[who].reduce((n, r) => n + r.errors, 0);
    console.log(
      `${who.padEnd(7)}  ${med(who, 'rps').toFixed(0).padStart(14)}  ${med(who, 'cpuUs').toFixed(0).padStart(10)}  ${med(who, 'p99').toFixed(1).padStart(6)}  ${String(errors).padStart(6)}`,
    );
  }
  console.log(
    `Ratio on/off: ${median(ratios).toFixed(2)} (median of rounds, ${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}); OTLP export requests received: ${spans}`,
  );
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
