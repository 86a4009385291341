/**
 * The baseline for the queue benchmark: a bare BullMQ worker whose processor returns at once, with
 * nothing else in the process. It takes REDIS_URL, QUEUE_NAME, QUEUE_PREFIX and WORKER_CONCURRENCY
 * like the agent, prints `0` on stdout once connected (startScript reads a port; there is none) and
 * closes on SIGTERM.
 */
import { Worker } from 'bullmq';
import { Redis } from 'ioredis';

// bullmq's ESM build cannot load ioredis from connection options: hand it an instance.
const connection = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', {
  maxRetriesPerRequest: null,
});
const worker = new Worker(
  process.env.QUEUE_NAME ?? 'bench',
  // Three parameters, as the agent's processor declares: BullMQ then gives each job an AbortSignal.
  // eslint-disable-next-line @typescript-eslint/require-await
  async (_job, _token, _signal) => null,
  {
    connection,
    prefix: process.env.QUEUE_PREFIX ?? 'bull',
    concurrency: Number(process.env.WORKER_CONCURRENCY ?? 1),
  },
);
worker.on('error', (err) => console.error('bare worker error:', err));

async function main(): Promise<void> {
  await worker.waitUntilReady();
  process.stdout.write('0\n');
}

process.on('SIGTERM', () => {
  void worker.close().finally(() => {
    connection.disconnect();
    process.exit(0);
  });
});

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
