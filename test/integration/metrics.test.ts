import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT, eventually, http, startAgentProcess, tempDir } from '../helpers/agent.js';
import type { AgentProcess } from '../helpers/agent.js';
import { find, parseExposition } from '../helpers/prom.js';
import { findPromtool, promtoolCheck } from '../helpers/promtool.js';

const WORKLOAD = path.join(ROOT, 'test/workloads/progress-workload.mjs');

async function scrape(agent: AgentProcess): Promise<{ text: string; contentType: string | null }> {
  const res = await fetch(`${agent.url}/metrics`);
  assert.equal(res.status, 200);
  return { text: await res.text(), contentType: res.headers.get('content-type') };
}

describe('GET /metrics', function () {
  describe('with a workload that ran a job', function () {
    let agent: AgentProcess;
    before(async function () {
      const release = path.join(tempDir(), 'release');
      writeFileSync(release, '');
      agent = await startAgentProcess({
        env: { RELEASE_FILE: release, LINGER_MS: '60000', MOCK_GPU_COUNT: '2' },
        args: ['--', process.execPath, WORKLOAD],
      });
      await agent.waitForRecord((r) => r.message === 'job completed');
      await http(`${agent.url}/debug/status`);
      await http(`${agent.url}/debug/workflow?job_id=secret-job-id-123`);
      await http(`${agent.url}/nope/raw-url-456`);
    });
    after(async function () {
      await agent?.stop();
    });

    it('passes promtool check metrics', async function () {
      const promtool = findPromtool();
      if (!promtool) {
        if (process.env.CI) assert.fail('promtool is required in CI (.ci/run installs it)');
        this.skip();
      }
      const { text, contentType } = await scrape(agent);
      assert.match(contentType ?? '', /^text\/plain; version=0\.0\.4/);
      const r = promtoolCheck(promtool, text);
      assert.equal(r.output.trim(), '', `promtool found problems:\n${r.output}`);
      assert.equal(r.status, 0);
    });

    it('exports GPU gauges in base units with identity in gpu_info', async function () {
      const s = parseExposition((await scrape(agent)).text);
      const info = find(s, 'gpu_info');
      assert.equal(info.length, 2);
      assert.deepEqual(Object.keys(info[0]!.labels).sort(), [
        'driver_version',
        'gpu',
        'name',
        'pci_bus_id',
        'uuid',
      ]);
      assert.equal(info[0]!.labels.name, 'NVIDIA H100 80GB HBM3');
      assert.equal(info[0]!.value, 1);
      const total = find(s, 'gpu_memory_total_bytes', { gpu: '0' });
      assert.equal(total[0]?.value, 81559 * 1024 * 1024);
      assert.deepEqual(Object.keys(total[0].labels).sort(), ['gpu', 'uuid']);
      for (const u of find(s, 'gpu_utilization_ratio')) assert.ok(u.value >= 0 && u.value <= 1);
      assert.equal(find(s, 'gpu_temperature_celsius').length, 2);
      assert.equal(find(s, 'gpu_power_usage_watts').length, 2);
      assert.ok(find(s, 'gpu_sm_clock_hertz', { gpu: '0' })[0]!.value >= 100e6);
      assert.equal(find(s, 'gpu_ecc_errors_total', { gpu: '0', type: 'uncorrected' })[0]?.value, 0);
    });

    it('exports its own health', async function () {
      const s = parseExposition((await scrape(agent)).text);
      assert.equal(find(s, 'agent_gpu_backend_up', { backend: 'mock' })[0]?.value, 1);
      assert.ok(find(s, 'agent_gpu_samples_total', { backend: 'mock' })[0]!.value > 0);
      assert.ok(find(s, 'agent_gpu_sample_duration_seconds_count', { backend: 'mock' })[0]!.value > 0);
      assert.equal(find(s, 'agent_build_info')[0]?.labels.node_version, process.version);
      assert.equal(find(s, 'agent_workload_running')[0]?.value, 1);
      assert.ok(find(s, 'process_resident_memory_bytes').length === 1);
      assert.ok(find(s, 'nodejs_heap_size_used_bytes').length === 1);
    });

    it('counts the job and its nodes', async function () {
      const s = parseExposition((await scrape(agent)).text);
      assert.equal(find(s, 'jobs_started_total', { queue: 'workload' })[0]?.value, 1);
      assert.equal(find(s, 'jobs_completed_total', { queue: 'workload', status: 'completed' })[0]?.value, 1);
      assert.equal(
        find(s, 'job_duration_seconds_count', { queue: 'workload', status: 'completed' })[0]?.value,
        1,
      );
      assert.equal(find(s, 'jobs_processing_current', { queue: 'workload' })[0]?.value, 0);
      assert.equal(find(s, 'jobs_queued_current', { queue: 'workload' })[0]?.value, 0);
      for (const type of ['CheckpointLoaderSimple', 'KSampler', 'VAEDecode', 'SaveImage']) {
        assert.equal(find(s, 'workflow_node_duration_seconds_count', { node_type: type })[0]?.value, 1, type);
      }
    });

    it('labels API requests by templated route, never by raw URL or id', async function () {
      const { text } = await scrape(agent);
      const s = parseExposition(text);
      assert.ok(
        find(s, 'api_requests_total', { endpoint: '/debug/status', method: 'GET', status: '200' })[0]!
          .value >= 1,
      );
      assert.ok(find(s, 'api_requests_total', { endpoint: 'unmatched', status: '404' })[0]!.value >= 1);
      assert.ok(!text.includes('secret-job-id-123'));
      assert.ok(!text.includes('raw-url-456'));
      const endpoints = new Set(find(s, 'api_requests_total').map((x) => x.labels.endpoint));
      for (const e of endpoints) assert.ok(e === 'unmatched' || e!.startsWith('/'), e);
    });
  });

  describe('with unsupported readings (MOCK_GPU_FAULT=na)', function () {
    it('leaves those series out instead of reporting 0', async function () {
      const agent = await startAgentProcess({ env: { MOCK_GPU_FAULT: 'na' } });
      try {
        await eventually(async () => ((await http(`${agent.url}/ready`)).status === 200 ? true : undefined));
        const s = parseExposition((await scrape(agent)).text);
        assert.equal(find(s, 'gpu_memory_used_bytes').length, 1);
        for (const name of [
          'gpu_temperature_celsius',
          'gpu_power_usage_watts',
          'gpu_utilization_ratio',
          'gpu_sm_clock_hertz',
        ]) {
          assert.equal(find(s, name).length, 0, `${name} must be absent`);
        }
        const status = await http<{ gpu: Record<string, unknown> }>(`${agent.url}/debug/status`);
        assert.equal(status.body.gpu.utilization_percent, null);
        assert.equal(status.body.gpu.temperature_c, null);
        assert.equal(status.body.gpu.power_w, null);
      } finally {
        await agent.stop();
      }
    });
  });

  describe('with GPU_METRICS_DCGM_COMPAT=1', function () {
    it("also exports dcgm-exporter's names and labels", async function () {
      const agent = await startAgentProcess({ env: { GPU_METRICS_DCGM_COMPAT: '1', MOCK_GPU_COUNT: '2' } });
      try {
        await eventually(async () => ((await http(`${agent.url}/ready`)).status === 200 ? true : undefined));
        const s = parseExposition((await scrape(agent)).text);
        const util = find(s, 'DCGM_FI_DEV_GPU_UTIL');
        assert.equal(util.length, 2);
        assert.deepEqual(Object.keys(util[0]!.labels).sort(), [
          'DCGM_FI_DRIVER_VERSION',
          'Hostname',
          'UUID',
          'device',
          'gpu',
          'modelName',
          'pci_bus_id',
        ]);
        assert.equal(util[0]!.labels.device, 'nvidia0');
        const fb = find(s, 'DCGM_FI_DEV_FB_USED', { gpu: '0' })[0]!;
        const bytes = find(s, 'gpu_memory_used_bytes', { gpu: '0' })[0]!;
        assert.equal(fb.value, Math.round(bytes.value / 1024 / 1024));
      } finally {
        await agent.stop();
      }
    });
  });
});
