import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { CLI, ROOT } from '../helpers/agent.js';

function run(env: Record<string, string>, args: string[] = []) {
  return spawnSync(process.execPath, [CLI, ...args], {
    env: { PATH: process.env.PATH ?? '', PORT: '0', ...env },
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 20_000,
  });
}

describe('configuration errors', function () {
  it('reports every invalid value at once and exits 2 before opening a port', function () {
    const r = run({
      PORT: 'abc',
      GPU_BACKEND: 'cuda',
      LOG_LEVEL: 'loud',
      GPU_POLL_INTERVAL_MS: '-5',
      MOCK_GPU_COUNT: '0',
      MOCK_GPU_MODEL: 'voodoo5',
      MOCK_GPU: 'maybe',
      DRAIN_TIMEOUT_MS: '1.5',
    });
    assert.equal(r.status, 2);
    for (const key of [
      'PORT',
      'GPU_BACKEND',
      'LOG_LEVEL',
      'GPU_POLL_INTERVAL_MS',
      'MOCK_GPU_COUNT',
      'MOCK_GPU_MODEL',
      'MOCK_GPU',
      'DRAIN_TIMEOUT_MS',
    ]) {
      assert.match(r.stderr, new RegExp(`^  - ${key}: `, 'm'), `${key} reported`);
    }
    assert.match(r.stderr, /invalid configuration \(8 problems\)/);
    assert.match(r.stderr, /GPU_BACKEND: must be one of auto, nvml, nvidia-smi, dcgm, mock \(got "cuda"\)/);
    assert.equal(r.stdout, '', 'nothing was started, so nothing was logged');
  });

  it('reports unknown flags, flag values and conflicts', function () {
    const r = run({ MOCK_GPU: '1' }, ['--nope', '--port', 'x', '--gpu-backend', 'nvml', 'stray']);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--nope: unknown flag/);
    assert.match(r.stderr, /PORT: must be a whole number \(got "x"\)/);
    assert.match(r.stderr, /MOCK_GPU: conflicts with GPU_BACKEND=nvml/);
    assert.match(r.stderr, /unexpected argument "stray": put the workload command after --/);
  });

  it('treats a blank variable as unset', function () {
    const r = run({ PORT: ' ', LOG_LEVEL: '' }, ['--help']);
    assert.equal(r.status, 0);
  });

  it('hides secrets in error messages', function () {
    const r = run({ DEBUG_TOKEN: 'has spaces in it' });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /DEBUG_TOKEN: .*\(got \(hidden\)\)/);
    assert.ok(!r.stderr.includes('has spaces in it'));
  });

  it('prints help with every setting, and the version', function () {
    const help = run({}, ['--help']);
    assert.equal(help.status, 0);
    for (const flag of [
      '--port',
      '--mock-gpu',
      '--gpu-backend',
      '--debug-token',
      '--drain-timeout-ms',
      '--artifacts-dir',
    ]) {
      assert.ok(help.stdout.includes(flag), flag);
    }
    const version = run({}, ['--version']);
    assert.equal(version.status, 0);
    assert.match(version.stdout.trim(), /^\d+\.\d+\.\d+$/);
  });
});
