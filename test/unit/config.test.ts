import assert from 'node:assert/strict';
import os from 'node:os';
import path from 'node:path';
import { SETTINGS, loadConfig, redactedConfig, splitArgv } from '../../src/config.js';
import type { AgentConfig } from '../../src/config.js';

function ok(argv: string[], env: NodeJS.ProcessEnv = {}): AgentConfig {
  const r = loadConfig(argv, env, 'host-1');
  if (!r.ok) assert.fail(`unexpected errors: ${r.errors.join('; ')}`);
  return r.config;
}

function errors(argv: string[], env: NodeJS.ProcessEnv = {}): string[] {
  const r = loadConfig(argv, env, 'host-1');
  assert.equal(r.ok, false, 'expected the config to be refused');
  return r.ok ? [] : r.errors;
}

describe('config', function () {
  it('has documented defaults', function () {
    const c = ok([]);
    assert.equal(c.port, 8080);
    assert.equal(c.host, '0.0.0.0');
    assert.equal(c.podId, 'host-1');
    assert.equal(c.nodeEnv, 'development');
    assert.equal(c.production, false);
    assert.equal(c.gpuBackend, 'auto');
    assert.equal(c.mockGpu, false);
    assert.equal(c.gpuPollIntervalMs, 1000);
    assert.equal(c.gpuSampleTimeoutMs, 3000);
    assert.equal(c.gpuStaleAfterMs, 4000);
    assert.equal(c.mockGpuCount, 1);
    assert.equal(c.mockGpuModel, 'NVIDIA H100 80GB HBM3');
    assert.deepEqual(c.mockGpuFault, { kind: 'none' });
    assert.equal(c.logLevel, 'info');
    assert.equal(c.logBufferLines, 5000);
    assert.equal(c.debugToken, undefined);
    assert.equal(c.drainTimeoutMs, 25000);
    assert.equal(c.artifactsDir, path.join(os.tmpdir(), 'gpu-pod-agent', 'artifacts'));
    assert.deepEqual(c.workload, []);
  });

  it('takes POD_ID, then RUNPOD_POD_ID, then the hostname', function () {
    assert.equal(ok([], { POD_ID: 'a', RUNPOD_POD_ID: 'b' }).podId, 'a');
    assert.equal(ok([], { RUNPOD_POD_ID: 'b' }).podId, 'b');
    assert.equal(ok([], { POD_ID: '  ', RUNPOD_POD_ID: '' }).podId, 'host-1');
  });

  it('lets a flag win over the environment, and treats blank as unset', function () {
    assert.equal(ok(['--port', '9000'], { PORT: '7000' }).port, 9000);
    assert.equal(ok(['--port=9001']).port, 9001);
    assert.equal(ok([], { PORT: '' }).port, 8080);
    assert.equal(ok(['--mock-gpu']).gpuBackend, 'mock');
  });

  it('turns MOCK_GPU on into the mock backend', function () {
    for (const v of ['1', 'true', 'YES', 'on']) assert.equal(ok([], { MOCK_GPU: v }).gpuBackend, 'mock');
    for (const v of ['0', 'false', 'no', 'off']) assert.equal(ok([], { MOCK_GPU: v }).gpuBackend, 'auto');
    assert.equal(ok([], { MOCK_GPU: '1', GPU_BACKEND: 'mock' }).mockGpu, true);
  });

  it('resolves mock model aliases and parses fault injection', function () {
    assert.equal(ok([], { MOCK_GPU_MODEL: 'a100' }).mockGpuModel, 'NVIDIA A100-SXM4-80GB');
    assert.equal(ok([], { MOCK_GPU_MODEL: 'RTX 4090' }).mockGpuModel, 'NVIDIA GeForce RTX 4090');
    assert.equal(ok([], { MOCK_GPU_MODEL: 'NVIDIA L4' }).mockGpuModel, 'NVIDIA L4');
    assert.deepEqual(ok([], { MOCK_GPU_FAULT: 'hang@3' }).mockGpuFault, { kind: 'hang', afterSamples: 3 });
    assert.deepEqual(ok([], { MOCK_GPU_FAULT: 'NA' }).mockGpuFault, { kind: 'na' });
  });

  it('derives the stale threshold from interval and timeout unless given', function () {
    assert.equal(
      ok([], { GPU_POLL_INTERVAL_MS: '500', GPU_SAMPLE_TIMEOUT_MS: '2000' }).gpuStaleAfterMs,
      2500,
    );
    assert.equal(
      ok([], { GPU_POLL_INTERVAL_MS: '5000', GPU_SAMPLE_TIMEOUT_MS: '2000' }).gpuStaleAfterMs,
      15000,
    );
    assert.equal(ok([], { GPU_STALE_AFTER_MS: '9000' }).gpuStaleAfterMs, 9000);
  });

  it('splits the workload command at --', function () {
    assert.deepEqual(splitArgv(['--port', '1', '--', 'python', 'main.py', '--port', '2']), {
      agentArgs: ['--port', '1'],
      workload: ['python', 'main.py', '--port', '2'],
    });
    const c = ok(['--', 'python', 'main.py', '--port', '2']);
    assert.deepEqual(c.workload, ['python', 'main.py', '--port', '2']);
    assert.equal(c.port, 8080, 'flags after -- belong to the workload');
  });

  it('reports all problems together', function () {
    const e = errors(['--bogus'], {
      PORT: '70000',
      LOG_LEVEL: 'LOUD',
      MOCK_GPU_FAULT: 'explode',
      LOG_BUFFER_LINES: 'x',
    });
    assert.equal(e.length, 5);
    assert.ok(e.some((m) => m.startsWith('PORT: must be at most 65535 (got "70000")')));
    assert.ok(e.some((m) => m.startsWith('LOG_LEVEL: must be one of')));
    assert.ok(e.some((m) => m.startsWith('MOCK_GPU_FAULT: must be one of none, hang, error, na')));
    assert.ok(e.some((m) => m.startsWith('LOG_BUFFER_LINES: must be a whole number')));
    assert.ok(e.some((m) => m.startsWith('--bogus: unknown flag')));
  });

  it('refuses an empty workload, a valued switch and a valueless flag', function () {
    assert.ok(errors(['--']).some((m) => m.includes('no workload command')));
    assert.ok(errors(['--mock-gpu=1']).some((m) => m.includes('a switch takes no value')));
    assert.ok(errors(['--port']).some((m) => m.includes('needs a value')));
  });

  it('refuses a stale threshold shorter than the sample timeout', function () {
    assert.ok(
      errors([], { GPU_STALE_AFTER_MS: '500', GPU_SAMPLE_TIMEOUT_MS: '1000' }).some((m) =>
        m.startsWith('GPU_STALE_AFTER_MS'),
      ),
    );
  });

  it('redacts the debug token', function () {
    const view = redactedConfig(ok([], { DEBUG_TOKEN: 'sekrit-token' }));
    assert.equal(view.debug_token, '[redacted]');
    assert.ok(!JSON.stringify(view).includes('sekrit-token'));
    assert.equal(view.gpu_poll_interval_ms, 1000, 'keys are snake_case');
  });

  it('configures the queue: worker with JOB_COMMAND, observer without, defaults documented', function () {
    const w = ok([], { REDIS_URL: 'redis://:pw@redis:6379/2', JOB_COMMAND: 'python run.py' });
    assert.equal(w.jobRunner, 'command');
    assert.equal(w.queueName, 'jobs');
    assert.equal(w.queuePrefix, 'bull');
    assert.equal(w.workerConcurrency, 1);
    assert.equal(w.jobLockDurationMs, 30_000);
    assert.equal(w.jobStalledIntervalMs, 30_000, "BullMQ's default");
    assert.equal(w.jobMaxStalledCount, 1, "BullMQ's default");
    const s = ok(['--job-stalled-interval-ms', '5000'], {
      REDIS_URL: 'redis://r',
      JOB_MAX_STALLED_COUNT: '0',
    });
    assert.equal(s.jobStalledIntervalMs, 5000);
    assert.equal(s.jobMaxStalledCount, 0);
    const o = ok([], { REDIS_URL: 'redis://redis:6379' });
    assert.equal(o.jobRunner, 'none');
    assert.equal(ok([]).redisUrl, undefined);
    assert.equal(ok(['--job-runner', 'noop', '--redis-url', 'redis://r']).jobRunner, 'noop');
  });

  it('refuses queue settings that cannot work, without showing the Redis password', function () {
    assert.ok(errors([], { JOB_COMMAND: 'x' }).some((m) => m.startsWith('JOB_COMMAND: needs REDIS_URL')));
    assert.ok(errors([], { JOB_RUNNER: 'command' }).some((m) => m.startsWith('JOB_RUNNER: needs REDIS_URL')));
    assert.ok(
      errors([], { REDIS_URL: 'redis://r', JOB_RUNNER: 'command' }).some((m) =>
        m.includes('needs JOB_COMMAND'),
      ),
    );
    assert.ok(
      errors([], { REDIS_URL: 'redis://r', QUEUE_NAME: 'a:b' }).some((m) => m.startsWith('QUEUE_NAME')),
    );
    assert.ok(
      errors([], { REDIS_URL: 'redis://r', WORKER_CONCURRENCY: '0' }).some((m) =>
        m.startsWith('WORKER_CONCURRENCY'),
      ),
    );
    for (const [env, value] of [
      ['JOB_STALLED_INTERVAL_MS', '0'],
      ['JOB_STALLED_INTERVAL_MS', '2.5'],
      ['JOB_MAX_STALLED_COUNT', '-1'],
      ['JOB_MAX_STALLED_COUNT', 'x'],
    ] as const) {
      assert.ok(
        errors([], { REDIS_URL: 'redis://r', [env]: value }).some((m) => m.startsWith(env)),
        `${env}=${value}`,
      );
    }
    const bad = errors([], { REDIS_URL: 'http://user:hunter2@r' });
    assert.ok(bad.some((m) => m.startsWith('REDIS_URL: must be a redis://')));
    assert.ok(!bad.join('\n').includes('hunter2'));
  });

  it('redacts the Redis password in /debug/config', function () {
    const view = redactedConfig(ok([], { REDIS_URL: 'redis://default:hunter2@redis:6379/0' }));
    assert.equal(view.redis_url, 'redis://default:redacted@redis:6379/0');
    assert.ok(!JSON.stringify(view).includes('hunter2'));
  });

  it('has a flag and a README line for every setting', function () {
    const flags = new Set(SETTINGS.map((s) => s.flag));
    assert.equal(flags.size, SETTINGS.length);
    for (const s of SETTINGS) assert.equal(s.flag, s.env.toLowerCase().replace(/_/g, '-'));
  });
});
