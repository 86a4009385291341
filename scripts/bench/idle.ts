/**
 * The agent's footprint while idle: RSS and CPU over a window (60 s by default) with 8 mock GPUs
 * polled every second, no requests, no workload.
 *
 *   npm run bench:idle                    (IDLE_SECONDS=60 IDLE_GPUS=8)
 */
import { cpuSeconds, rssBytes, startAgent } from './common.js';

const seconds = Number(process.env.IDLE_SECONDS ?? 60);
const gpus = process.env.IDLE_GPUS ?? '8';

async function main(): Promise<void> {
  const agent = await startAgent({ MOCK_GPU_COUNT: gpus, GPU_POLL_INTERVAL_MS: '1000', LOG_LEVEL: 'info' });
  const pid = agent.proc.pid as number;
  // Let start-up work (module loading, first samples, JIT) settle before measuring.
  await new Promise((r) => setTimeout(r, 5000));
  const cpu0 = cpuSeconds(pid);
  const t0 = process.hrtime.bigint();
  const rss: number[] = [];
  const ticker = setInterval(() => rss.push(rssBytes(pid)), 1000);
  await new Promise((r) => setTimeout(r, seconds * 1000));
  clearInterval(ticker);
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = cpuSeconds(pid) - cpu0;
  const res = await fetch(`http://127.0.0.1:${agent.port}/debug/status`);
  const status = (await res.json()) as { gpu_count: number };
  await agent.stop();
  const mb = (b: number): string => (b / 1024 / 1024).toFixed(1);
  console.log(`Idle footprint: ${status.gpu_count} mock GPUs polled at 1 s, ${wall.toFixed(0)} s window`);
  console.log(
    `RSS: mean ${mb(rss.reduce((s, x) => s + x, 0) / rss.length)} MB, max ${mb(Math.max(...rss))} MB`,
  );
  console.log(
    `CPU: ${((cpu / wall) * 100).toFixed(2)} % of one core (${cpu.toFixed(2)} s in ${wall.toFixed(0)} s)`,
  );
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
