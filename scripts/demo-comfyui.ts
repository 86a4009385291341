/**
 * A whole pod on a laptop: Redis (the one on 127.0.0.1:6379, else a redis-server of its own), the fake
 * ComfyUI of the tests, the agent as a `comfyui` worker on MOCK_GPU=1, and a few jobs to watch: a
 * text-to-image run, a repeated one (cached nodes), a video and audio one, and one that fails in the
 * sampler. Ctrl-C stops everything.
 *
 *   npm run demo:comfyui            (DEMO_PORT=8080 DEMO_STEP_DELAY_MS=150 by default)
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import path from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { startFakeComfyUI } from '../test/fakes/comfyui/fake-comfyui.js';
import { tempDir } from '../test/helpers/agent.js';
import { txt2img } from '../test/helpers/comfyui.js';
import { testRedis } from '../test/helpers/redis.js';
import { ROOT } from './bench/common.js';

const port = Number(process.env.DEMO_PORT ?? 8080);
const stepDelayMs = Number(process.env.DEMO_STEP_DELAY_MS ?? 150);

async function main(): Promise<void> {
  const redis = await testRedis();
  const comfy = await startFakeComfyUI({ baseDir: tempDir('gpa-demo-comfy-'), stepDelayMs });
  comfy.script('demo-error', {
    error: { node: '3', atStep: 5, exceptionType: 'torch.OutOfMemoryError', message: 'CUDA out of memory' },
  });
  const agent: ChildProcess = spawn(process.execPath, [path.join(ROOT, 'dist/src/cli.js')], {
    env: {
      ...process.env,
      MOCK_GPU: '1',
      MOCK_GPU_COUNT: '2',
      PORT: String(port),
      REDIS_URL: redis.url,
      QUEUE_PREFIX: redis.prefix,
      JOB_RUNNER: 'comfyui',
      COMFYUI_URL: comfy.url,
      ARTIFACTS_DIR: tempDir('gpa-demo-artifacts-'),
    },
    stdio: ['ignore', 'inherit', 'inherit'],
    // Its own process group: Ctrl-C reaches the demo only, which then stops the agent with one SIGTERM
    // (a second signal would make it exit at once).
    detached: true,
  });
  process.on('exit', () => agent.kill('SIGKILL'));
  const conn = new Redis(redis.url, { maxRetriesPerRequest: null });
  const queue = new Queue('jobs', { connection: conn, prefix: redis.prefix });
  await queue.add('txt2img', { workflow: txt2img(30, 'lighthouse') }, { jobId: 'demo-txt2img' });
  await queue.add('txt2img', { workflow: txt2img(30, 'lighthouse') }, { jobId: 'demo-cached' });
  await queue.add('txt2img', { workflow: txt2img(20, 'oom') }, { jobId: 'demo-error' });
  await queue.add('txt2img', { workflow: txt2img(40, 'long') }, { jobId: 'demo-long' });
  const base = `http://127.0.0.1:${port}`;
  console.error(
    [
      '',
      `Agent on ${base}, ComfyUI (fake) on ${comfy.url}, Redis ${redis.url} (prefix ${redis.prefix}).`,
      `  curl -s ${base}/debug/status | jq .current_job`,
      `  curl -s ${base}/debug/workflow | jq '.nodes[] | [.id, .status, .progress]'`,
      `  curl -s ${base}/debug/queue | jq .recent`,
      `  curl -s ${base}/debug/artifacts?job_id=demo-txt2img`,
      'Ctrl-C stops the demo.',
      '',
    ].join('\n'),
  );
  const stop = async (): Promise<void> => {
    agent.kill('SIGTERM');
    await new Promise((r) => agent.once('exit', r));
    await queue.obliterate({ force: true }).catch(() => undefined);
    await queue.close();
    conn.disconnect();
    await comfy.close();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
