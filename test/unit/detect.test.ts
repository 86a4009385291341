import assert from 'node:assert/strict';
import { MockBackend, detectBackend } from '../../gpu/index.js';
import type { BackendCandidate, BackendName, ProbeResult } from '../../gpu/index.js';

function candidate(
  name: BackendName,
  probe: (signal: AbortSignal) => Promise<ProbeResult>,
  created: string[],
): BackendCandidate {
  return {
    name,
    probe,
    create: () => {
      created.push(name);
      return new MockBackend({ count: 1 });
    },
  };
}

describe('detectBackend', function () {
  it('takes the first candidate whose probe passes, in order', async function () {
    const created: string[] = [];
    const r = await detectBackend(
      [
        candidate(
          'nvml',
          () => Promise.resolve({ ok: false, reason: 'libnvidia-ml.so.1: cannot open shared object file' }),
          created,
        ),
        candidate('dcgm', () => Promise.resolve({ ok: true, detail: 'dcgmi answered' }), created),
        candidate('nvidia-smi', () => Promise.resolve({ ok: true }), created),
      ],
      { probeTimeoutMs: 1000 },
    );
    assert.ok(r.backend);
    assert.deepEqual(created, ['dcgm']);
    assert.deepEqual(
      r.attempts.map((a) => [a.name, a.ok]),
      [
        ['nvml', false],
        ['dcgm', true],
      ],
    );
  });

  it('bounds a probe that hangs and one that throws, and says why nothing was chosen', async function () {
    const created: string[] = [];
    const r = await detectBackend(
      [
        candidate('nvml', () => new Promise<ProbeResult>(() => undefined), created),
        candidate('nvidia-smi', () => Promise.reject(new Error('spawn nvidia-smi ENOENT')), created),
      ],
      { probeTimeoutMs: 50 },
    );
    assert.equal(r.backend, undefined);
    assert.deepEqual(created, []);
    assert.ok(
      !r.backend && /nvml: no answer within 50 ms; nvidia-smi: spawn nvidia-smi ENOENT/.test(r.reason),
    );
  });

  it('never falls back to simulated GPUs', async function () {
    const r = await detectBackend([], { probeTimeoutMs: 10 });
    assert.equal(r.backend, undefined);
  });
});
