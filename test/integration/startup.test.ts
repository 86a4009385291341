import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { startAgentProcess, tempDir } from '../helpers/agent.js';
import { deletePrefix, testRedis } from '../helpers/redis.js';

/** Libraries the agent needs only for some configurations. */
const OPTIONAL = ['bullmq', 'ioredis', '@grpc/grpc-js'];

/**
 * Runs the agent with `env` until it listens, stops it, and returns which of OPTIONAL it had loaded
 * (CommonJS packages, as a preloaded script sees them in the module cache at exit).
 */
async function optionalLibrariesLoaded(env: Record<string, string>): Promise<string[]> {
  const dir = tempDir('gpa-startup-');
  const out = path.join(dir, 'loaded.json');
  const preload = path.join(dir, 'preload.cjs');
  writeFileSync(
    preload,
    `process.on('exit', () => {
      const names = new Set();
      for (const f of Object.keys(require.cache)) {
        const m = /node_modules\\/((@[^/]+\\/)?[^/]+)\\//.exec(f);
        if (m) names.add(m[1]);
      }
      require('node:fs').writeFileSync(${JSON.stringify(out)}, JSON.stringify([...names]));
    });`,
  );
  const agent = await startAgentProcess({ env: { ...env, NODE_OPTIONS: `--require ${preload}` } });
  await agent.stop();
  const names = JSON.parse(readFileSync(out, 'utf8')) as string[];
  return OPTIONAL.filter((n) => names.includes(n));
}

describe('start-up', function () {
  this.timeout(30_000);

  it('loads neither the queue libraries nor the trace exporters when nothing asks for them', async () => {
    assert.deepEqual(await optionalLibrariesLoaded({}), []);
  });

  it('loads the queue libraries for a pod with a queue', async () => {
    const redis = await testRedis();
    try {
      const loaded = await optionalLibrariesLoaded({
        REDIS_URL: redis.url,
        QUEUE_PREFIX: redis.prefix,
        JOB_RUNNER: 'noop',
      });
      assert.deepEqual(loaded, ['bullmq', 'ioredis']);
    } finally {
      await deletePrefix(redis.url, redis.prefix);
    }
  });
});
