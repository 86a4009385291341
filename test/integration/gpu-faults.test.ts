import assert from 'node:assert/strict';
import { eventually, http, startAgentProcess } from '../helpers/agent.js';
import type { AgentProcess } from '../helpers/agent.js';
import { find, parseExposition } from '../helpers/prom.js';

interface Ready {
  status: string;
  checks: { gpu: { status: string; reason?: string; stale?: boolean } };
}

describe('GPU source faults', function () {
  describe('a backend that hangs from the start', function () {
    let agent: AgentProcess;
    before(async function () {
      agent = await startAgentProcess({ env: { MOCK_GPU_FAULT: 'hang', GPU_SAMPLE_TIMEOUT_MS: '100' } });
    });
    after(async function () {
      await agent?.stop();
    });

    it('is marked down and /ready is 503 degraded, while every endpoint still answers', async function () {
      const ready = await eventually(async () => {
        const r = await http<Ready>(`${agent.url}/ready`);
        return r.body.checks.gpu.status === 'failing' ? r : undefined;
      });
      assert.equal(ready.status, 503);
      assert.equal(ready.body.status, 'degraded');
      assert.match(ready.body.checks.gpu.reason ?? '', /longer than 100 ms/);
      const status = await http<{
        status: string;
        gpu: unknown;
        gpus: unknown[];
        sample_age_ms: unknown;
        stale: boolean;
      }>(`${agent.url}/debug/status`);
      assert.equal(status.status, 200);
      assert.equal(status.body.status, 'degraded');
      assert.equal(status.body.gpu, null);
      assert.deepEqual(status.body.gpus, []);
      assert.equal(status.body.sample_age_ms, null);
      assert.equal(status.body.stale, true);
      const metrics = await fetch(`${agent.url}/metrics`);
      assert.equal(metrics.status, 200);
      const s = parseExposition(await metrics.text());
      assert.equal(find(s, 'agent_gpu_backend_up', { backend: 'mock' })[0]?.value, 0);
      assert.ok(find(s, 'agent_gpu_sample_failures_total', { category: 'timeout' })[0]!.value >= 1);
      assert.equal(find(s, 'agent_ready')[0]?.value, 0);
      await agent.waitForRecord((r) => r.message === 'gpu backend is down' && r.level === 'warn');
      // A 503 from /ready is a state the probe reports, not a failed request.
      assert.ok(!agent.records.some((r) => r.level === 'error' && r.message === 'request failed'));
    });
  });

  describe('a backend that hangs after three good samples', function () {
    it('keeps the last reading, marks it stale, and says how old it is', async function () {
      const agent = await startAgentProcess({
        env: { MOCK_GPU_FAULT: 'hang@3', GPU_SAMPLE_TIMEOUT_MS: '100', GPU_STALE_AFTER_MS: '300' },
      });
      try {
        const status = await eventually(async () => {
          const r = await http<{
            status: string;
            stale: boolean;
            sample_age_ms: number;
            gpu: { name: string } | null;
          }>(`${agent.url}/debug/status`);
          return r.body.stale ? r.body : undefined;
        });
        assert.equal(status.status, 'degraded');
        assert.equal(status.gpu?.name, 'NVIDIA H100 80GB HBM3', 'the last good reading is still shown');
        assert.ok(status.sample_age_ms > 300);
        const ready = await http<Ready>(`${agent.url}/ready`);
        assert.equal(ready.status, 503);
        assert.equal(ready.body.checks.gpu.stale, true);
        // Prometheus must see a gap, not a frozen value; identity and freshness stay.
        const s = parseExposition(await (await fetch(`${agent.url}/metrics`)).text());
        for (const name of [
          'gpu_utilization_ratio',
          'gpu_memory_used_bytes',
          'gpu_temperature_celsius',
          'gpu_ecc_errors_total',
        ]) {
          assert.equal(find(s, name).length, 0, `${name} is dropped while stale`);
        }
        assert.equal(find(s, 'gpu_info').length, 1);
        const last = find(s, 'agent_gpu_last_sample_timestamp_seconds', { backend: 'mock' })[0]!.value;
        assert.ok(Date.now() / 1000 - last > 0.3);
      } finally {
        await agent.stop();
      }
    });
  });

  describe('a backend that fails', function () {
    it('counts the failures by category', async function () {
      const agent = await startAgentProcess({ env: { MOCK_GPU_FAULT: 'error' } });
      try {
        const s = await eventually(async () => {
          const samples = parseExposition(await (await fetch(`${agent.url}/metrics`)).text());
          const f = find(samples, 'agent_gpu_sample_failures_total', { category: 'injected' });
          return f[0] && f[0].value >= 1 ? samples : undefined;
        });
        assert.equal(find(s, 'gpu_info').length, 0, 'no reading, no GPU series');
      } finally {
        await agent.stop();
      }
    });
  });

  describe('no GPU on this machine', function () {
    const missing = {
      MOCK_GPU: '',
      NVML_LIBRARY_PATH: '/nonexistent/libnvidia-ml.so.1',
      NVIDIA_SMI_PATH: '/nonexistent/nvidia-smi',
      DCGMI_PATH: '/nonexistent/dcgmi',
    };

    it('auto-detection tries every backend, never the mock, and /ready says why', async function () {
      const agent = await startAgentProcess({ env: { ...missing, GPU_BACKEND: 'auto' } });
      try {
        const r = await eventually(async () => {
          const res = await http<Ready>(`${agent.url}/ready`);
          return res.body.checks.gpu.status === 'failing' ? res : undefined;
        });
        assert.equal(r.status, 503);
        assert.equal(r.body.status, 'degraded');
        assert.match(r.body.checks.gpu.reason ?? '', /nvml: .*; dcgm: .*; nvidia-smi: /);
        const gpu = await http<{ backend: string; unavailable_reason: string; devices: unknown[] }>(
          `${agent.url}/debug/gpu`,
        );
        assert.equal(gpu.body.backend, 'none');
        assert.deepEqual(gpu.body.devices, []);
        const tried = agent.records.filter((x) => x.message === 'gpu backend not available');
        assert.deepEqual(
          tried.map((x) => (x.data as { name: string }).name),
          ['nvml', 'dcgm', 'nvidia-smi'],
        );
        assert.ok(agent.records.some((x) => x.message === 'no GPU backend' && x.level === 'error'));
        const status = await http<{ gpu_backend: string; status: string }>(`${agent.url}/debug/status`);
        assert.equal(status.body.gpu_backend, 'none');
        assert.equal(status.body.status, 'degraded');
      } finally {
        await agent.stop();
      }
    });

    it('a backend named explicitly is used as asked, and its failures are reported', async function () {
      const agent = await startAgentProcess({ env: { ...missing, GPU_BACKEND: 'nvml' } });
      try {
        const r = await eventually(async () => {
          const res = await http<Ready>(`${agent.url}/ready`);
          return res.body.checks.gpu.status === 'failing' ? res : undefined;
        });
        assert.equal(r.status, 503);
        const gpu = await http<{ backend: string; last_failure: { category: string } | null }>(
          `${agent.url}/debug/gpu`,
        );
        assert.equal(gpu.body.backend, 'nvml');
        assert.equal(gpu.body.last_failure?.category, 'library');
      } finally {
        await agent.stop();
      }
    });
  });
});
