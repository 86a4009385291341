import assert from 'node:assert/strict';
import { MOCK_GPU_MODELS, MockBackend, findMockModel, loadProfileFor } from '../../gpu/index.js';
import type { GpuActivity, GpuSample } from '../../gpu/index.js';
import { FakeClock } from '../helpers/fake-clock.js';

const MIB = 1024 * 1024;
const signal = (): AbortSignal => new AbortController().signal;

async function run(backend: MockBackend, n: number): Promise<GpuSample[]> {
  const out: GpuSample[] = [];
  for (let i = 0; i < n; i++) out.push(await backend.sample(signal()));
  return out;
}

describe('MockBackend', function () {
  it('imitates N GPUs of the named model', async function () {
    const model = findMockModel('a100')!;
    const [s] = await run(new MockBackend({ count: 4, model, seed: 3 }), 1);
    assert.equal(s!.devices.length, 4);
    for (const [i, d] of s!.devices.entries()) {
      assert.equal(d.index, i);
      assert.equal(d.name, 'NVIDIA A100-SXM4-80GB');
      assert.equal(d.memory.totalBytes, 81920 * MIB);
      assert.equal(d.memory.reservedBytes, 912 * MIB);
      assert.equal(d.memory.totalBytes, d.memory.usedBytes + d.memory.freeBytes + d.memory.reservedBytes);
      assert.equal(d.powerLimitW, 400);
      assert.match(d.uuid, /^GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    }
    assert.equal(new Set(s!.devices.map((d) => d.uuid)).size, 4);
  });

  it('is deterministic under a seed', async function () {
    const activity = (n: number): GpuActivity =>
      n % 5 < 3 ? { jobActive: true, nodeType: 'KSampler' } : { jobActive: false };
    const make = (seed: number) => {
      let n = 0;
      return new MockBackend({ count: 2, seed, clock: new FakeClock(), activity: () => activity(n++) });
    };
    const a = await run(make(7), 20);
    const b = await run(make(7), 20);
    const c = await run(make(8), 20);
    assert.deepEqual(a, b);
    assert.notDeepEqual(a, c);
  });

  it('idles at 0–5 % without a job', async function () {
    const samples = await run(new MockBackend({ count: 2, seed: 1 }), 50);
    for (const s of samples) {
      for (const d of s.devices) {
        assert.ok(
          d.utilization.gpuPercent! >= 0 && d.utilization.gpuPercent! <= 5,
          `util ${d.utilization.gpuPercent}`,
        );
        assert.deepEqual(d.processes, []);
        assert.deepEqual(d.throttleReasons, ['gpu_idle']);
      }
    }
  });

  it('runs hot during a sampler node, memory climbing, and releases memory after the job', async function () {
    let activity: GpuActivity = {
      jobActive: true,
      nodeType: 'CheckpointLoaderSimple',
      processes: [{ pid: 4242, name: 'python3' }],
    };
    const backend = new MockBackend({ count: 2, seed: 1, activity: () => activity });
    const loading = await run(backend, 5);
    const used = loading.map((s) => s.devices[0]!.memory.usedBytes);
    assert.ok(
      used.every((u, i) => i === 0 || u >= used[i - 1]!),
      'memory rises while weights load',
    );
    assert.ok(loading.at(-1)!.devices[0]!.utilization.gpuPercent! < 40);

    activity = { ...activity, nodeType: 'KSampler' };
    const sampling = await run(backend, 10);
    for (const s of sampling.slice(2)) {
      const d = s.devices[0]!;
      assert.ok(d.utilization.gpuPercent! >= 90, `sampler util ${d.utilization.gpuPercent}`);
      assert.ok(d.powerW! > 500, `sampler power ${d.powerW}`);
      assert.equal(d.processes.length, 1);
      assert.equal(d.processes[0]!.pid, 4242);
      assert.ok(d.processes[0]!.usedBytes! > 40_000 * MIB);
      assert.equal(s.devices[1]!.processes.length, 0, 'GPU 1 stays idle');
      assert.ok(s.devices[1]!.utilization.gpuPercent! <= 5);
    }
    const peak = sampling.at(-1)!.devices[0]!.memory.usedBytes;
    assert.ok(peak > 0.5 * 81559 * MIB);

    activity = { jobActive: false };
    const after = await run(backend, 15);
    assert.ok(after.at(-1)!.devices[0]!.memory.usedBytes < 100 * MIB, 'memory released');
    assert.deepEqual(after.at(-1)!.devices[0]!.processes, []);
  });

  it('classifies node types by what they do', function () {
    assert.ok(loadProfileFor({ jobActive: true, nodeType: 'KSamplerAdvanced' }).gpuPercent > 90);
    assert.ok(loadProfileFor({ jobActive: true, nodeType: 'VAEDecode' }).gpuPercent > 50);
    assert.ok(loadProfileFor({ jobActive: true, nodeType: 'LoraLoader' }).gpuPercent < 30);
    assert.ok(loadProfileFor({ jobActive: true, nodeType: 'SaveImage' }).gpuPercent < 10);
    assert.ok(loadProfileFor({ jobActive: false, nodeType: 'KSampler' }).gpuPercent < 5);
  });

  it('injects a hang that ignores the abort signal until the fault is lifted', async function () {
    const backend = new MockBackend({ count: 1, fault: { kind: 'hang', afterSamples: 1 } });
    await backend.sample(signal());
    const ac = new AbortController();
    let settled = false;
    const p = backend.sample(ac.signal).finally(() => (settled = true));
    ac.abort();
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(settled, false, 'a wedged call does not answer its abort');
    backend.setFault({ kind: 'none' });
    await assert.rejects(p, /released/);
    assert.equal((await backend.sample(signal())).devices.length, 1);
  });

  it('injects errors and unsupported readings', async function () {
    await assert.rejects(
      new MockBackend({ count: 1, fault: { kind: 'error' } }).sample(signal()),
      (err: Error & { category?: string }) => {
        assert.equal(err.category, 'injected');
        return true;
      },
    );
    const [s] = await run(new MockBackend({ count: 1, fault: { kind: 'na' } }), 1);
    const d = s!.devices[0]!;
    assert.deepEqual(d.utilization, {});
    for (const v of [d.temperatureC, d.powerW, d.powerLimitW, d.smClockMHz, d.memClockMHz, d.throttleReasons])
      assert.equal(v, undefined);
    assert.ok(d.memory.totalBytes > 0, 'memory is always reported');
  });

  it('refuses a bad count and rejects after close', async function () {
    assert.throws(() => new MockBackend({ count: 0 }), RangeError);
    const b = new MockBackend({ count: 1 });
    await b.close();
    await assert.rejects(b.sample(signal()), /closed/);
  });

  it('has a model table with unique names and aliases', function () {
    const owner = new Map<string, string>();
    for (const m of MOCK_GPU_MODELS) {
      for (const n of [m.name, ...m.aliases]) {
        const key = n.toLowerCase().replace(/[^a-z0-9]/g, '');
        assert.ok(!owner.has(key) || owner.get(key) === m.name, `${n} names two models`);
        owner.set(key, m.name);
        assert.equal(findMockModel(n), m);
      }
    }
    assert.equal(findMockModel('H100'), MOCK_GPU_MODELS[0]);
    assert.equal(findMockModel('nope'), undefined);
  });
});
