/**
 * The agent with each real GPU backend, against fakes at the hardware edge: the fake nvidia-smi
 * replaying real captures, the fake libnvidia-ml built from C, the fake dcgmi. What the captures hold
 * must come out of /debug/status, /debug/memory, /debug/gpu and /metrics, with N/A fields absent.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseNvidiaSmiXml } from '../../gpu/index.js';
import type { GpuDevice } from '../../gpu/index.js';
import { ROOT, eventually, http, startAgentProcess, tempDir } from '../helpers/agent.js';
import type { AgentProcess } from '../helpers/agent.js';
import { assertError } from '../helpers/assertions.js';
import { FAKE_NVML_STATE, fakeNvmlOrSkip, setFakeNvmlState } from '../helpers/fake-nvml.js';
import { FIXTURES, realFixture, realFixtureNames } from '../helpers/fixtures.js';
import { find, parseExposition } from '../helpers/prom.js';
import type { PromSample } from '../helpers/prom.js';

const FAKE_NVIDIA_SMI = path.join(ROOT, 'test/fakes/nvidia-smi');
const FAKE_DCGMI = path.join(ROOT, 'test/fakes/dcgmi');
const MIB = 1024 * 1024;

interface StatusGpu {
  index: number;
  uuid: string;
  name: string;
  memory_used_mb: number | null;
  memory_total_mb: number | null;
  utilization_percent: number | null;
  temperature_c: number | null;
  power_w: number | null;
}
interface Status {
  status: string;
  gpu_backend: string;
  gpu_count: number;
  stale: boolean;
  sample_age_ms: number | null;
  gpus: StatusGpu[];
}
interface MemoryView {
  gpus: {
    index: number;
    memory: { used_mb: number | null; total_mb: number | null };
    processes: { pid: number; name: string; used_mb: number | null }[];
  }[];
}

const mib = (b: number | undefined): number | null =>
  b === undefined || !Number.isFinite(b) ? null : Math.round(b / MIB);
const orNull = <T>(v: T | undefined): T | null => (v === undefined ? null : v);

async function metrics(agent: AgentProcess): Promise<PromSample[]> {
  return parseExposition(await (await fetch(`${agent.url}/metrics`)).text());
}

/** Waits for the first good sample and returns /debug/status then. */
async function firstSample(agent: AgentProcess): Promise<Status> {
  return eventually(async () => {
    const r = await http<Status>(`${agent.url}/debug/status`);
    return r.body.gpu_count > 0 && !r.body.stale ? r.body : undefined;
  });
}

/** Asserts every view shows device `d` as the capture has it. */
function assertDeviceViews(
  d: GpuDevice,
  status: StatusGpu,
  memory: MemoryView['gpus'][number],
  s: PromSample[],
  where: string,
): void {
  const at = `${where} GPU ${d.index}`;
  assert.equal(status.uuid, d.uuid, at);
  assert.equal(status.name, d.name, at);
  assert.equal(status.memory_used_mb, mib(d.memory.usedBytes), `${at} memory used`);
  assert.equal(status.memory_total_mb, mib(d.memory.totalBytes), `${at} memory total`);
  assert.equal(status.utilization_percent, orNull(d.utilization.gpuPercent), `${at} utilization`);
  assert.equal(status.temperature_c, orNull(d.temperatureC), `${at} temperature`);
  assert.equal(status.power_w, orNull(d.powerW), `${at} power`);
  assert.equal(memory.memory.used_mb, mib(d.memory.usedBytes), `${at} /debug/memory used`);
  assert.deepEqual(
    memory.processes.map((p) => [p.pid, p.used_mb]),
    d.processes.map((p) => [p.pid, mib(p.usedBytes)]),
    `${at} processes`,
  );
  const one = (name: string): number | undefined => find(s, name, { gpu: String(d.index) })[0]?.value;
  const expectSeries = (name: string, value: number | undefined): void => {
    if (value === undefined || !Number.isFinite(value))
      assert.equal(one(name), undefined, `${at} ${name} must be absent`);
    else assert.equal(one(name), value, `${at} ${name}`);
  };
  expectSeries('gpu_memory_used_bytes', d.memory.usedBytes);
  expectSeries('gpu_memory_total_bytes', d.memory.totalBytes);
  expectSeries('gpu_memory_reserved_bytes', d.memory.reservedBytes);
  expectSeries(
    'gpu_utilization_ratio',
    d.utilization.gpuPercent === undefined ? undefined : d.utilization.gpuPercent / 100,
  );
  expectSeries('gpu_temperature_celsius', d.temperatureC);
  expectSeries('gpu_power_usage_watts', d.powerW);
  expectSeries('gpu_fan_speed_ratio', d.fanPercent === undefined ? undefined : d.fanPercent / 100);
  expectSeries('gpu_processes', d.processes.length);
  const migs = find(s, 'gpu_mig_instance_info', { gpu: String(d.index) });
  assert.equal(migs.length, d.mig?.enabled ? d.mig.instances.length : 0, `${at} MIG instances`);
}

describe('real GPU backends through the agent', function () {
  describe('nvidia-smi, reading -q -x captures', function () {
    for (const name of realFixtureNames(/^nvidia-smi-q-x_.*\.xml$/)) {
      it(`${name}: every view holds the capture's values`, async function () {
        const report = parseNvidiaSmiXml(realFixture(name));
        const agent = await startAgentProcess({
          env: {
            MOCK_GPU: '',
            GPU_BACKEND: 'nvidia-smi',
            NVIDIA_SMI_PATH: FAKE_NVIDIA_SMI,
            FAKE_NVIDIA_SMI_MODE: 'xml-only',
            FAKE_NVIDIA_SMI_XML: path.join(FIXTURES, 'real', name),
            GPU_POLL_INTERVAL_MS: '500',
          },
        });
        try {
          const status = await firstSample(agent);
          assert.equal(status.gpu_backend, 'nvidia-smi');
          assert.equal(status.gpu_count, report.devices.length);
          const memory = (await http<MemoryView>(`${agent.url}/debug/memory`)).body;
          const s = await metrics(agent);
          for (const d of report.devices) {
            assertDeviceViews(d, status.gpus[d.index]!, memory.gpus[d.index]!, s, name);
          }
          assert.equal(find(s, 'gpu_info').length, report.devices.length);
          assert.equal(find(s, 'gpu_info')[0]!.labels.driver_version, report.driverVersion ?? '');
        } finally {
          await agent.stop();
        }
      });
    }

    it('matches hand-read values of three captures', async function () {
      const cases: [string, (st: Status, mem: MemoryView, s: PromSample[]) => void][] = [
        [
          'nvidia-smi-q-x_rtx-4090_driver-535.86.05_dtd-v12.xml',
          (st, _mem, s) => {
            assert.deepEqual(
              [
                st.gpus[0]!.memory_total_mb,
                st.gpus[0]!.memory_used_mb,
                st.gpus[0]!.temperature_c,
                st.gpus[0]!.power_w,
              ],
              [24564, 2, 40, 26.84],
            );
            assert.equal(find(s, 'gpu_memory_reserved_bytes')[0]?.value, 346 * MIB);
          },
        ],
        [
          'nvidia-smi-q-x_a100-sxm4-40gb_mig-enabled_driver-510.47.03_dtd-v11.xml',
          (st, _mem, s) => {
            assert.equal(st.gpus[0]!.memory_total_mb, 40960);
            assert.equal(st.gpus[0]!.memory_used_mb, 38);
            assert.equal(find(s, 'gpu_mig_enabled')[0]?.value, 1);
            const used = find(s, 'gpu_mig_memory_used_bytes').map((x) => x.value);
            assert.deepEqual(used, [19 * MIB, 19 * MIB]);
            assert.deepEqual(
              find(s, 'gpu_mig_memory_total_bytes').map((x) => x.value),
              [19968 * MIB, 19968 * MIB],
            );
          },
        ],
        [
          'nvidia-smi-q-x_tesla-t4_windows_driver-512.78_dtd-v11_15procs.xml',
          (st, mem, s) => {
            assert.deepEqual(
              [st.gpus[0]!.memory_used_mb, st.gpus[0]!.temperature_c, st.gpus[0]!.power_w],
              [276, 31, 13.08],
            );
            assert.equal(mem.gpus[0]!.processes.length, 15);
            assert.ok(
              mem.gpus[0]!.processes.every((p) => p.used_mb === null),
              'WDDM hides process memory: null, not 0',
            );
            assert.equal(find(s, 'gpu_process_memory_used_bytes').length, 0);
            assert.equal(find(s, 'gpu_processes')[0]?.value, 15);
          },
        ],
      ];
      for (const [name, check] of cases) {
        const agent = await startAgentProcess({
          env: {
            MOCK_GPU: '',
            GPU_BACKEND: 'nvidia-smi',
            NVIDIA_SMI_PATH: FAKE_NVIDIA_SMI,
            FAKE_NVIDIA_SMI_MODE: 'xml-only',
            FAKE_NVIDIA_SMI_XML: path.join(FIXTURES, 'real', name),
          },
        });
        try {
          const st = await firstSample(agent);
          check(st, (await http<MemoryView>(`${agent.url}/debug/memory`)).body, await metrics(agent));
        } finally {
          await agent.stop();
        }
      }
    });
  });

  describe('nvidia-smi, CSV fast path', function () {
    let agent: AgentProcess;
    before(async function () {
      agent = await startAgentProcess({
        env: {
          MOCK_GPU: '',
          GPU_BACKEND: 'auto',
          NVML_LIBRARY_PATH: '/nonexistent/libnvidia-ml.so.1',
          DCGMI_PATH: '/nonexistent/dcgmi',
          NVIDIA_SMI_PATH: FAKE_NVIDIA_SMI,
          FAKE_NVIDIA_SMI_GPUS: '8',
          FAKE_NVIDIA_SMI_APPS: path.join(
            FIXTURES,
            'real',
            'query-compute-apps_csv_rtx-4080-super_driver-595.71.05_load.csv',
          ),
          FAKE_NVIDIA_SMI_XML: path.join(
            FIXTURES,
            'real',
            'nvidia-smi-q-x_2x-rtx-a5000_driver-590.44.01_dtd-v13_procs.xml',
          ),
        },
      });
    });
    after(async function () {
      await agent?.stop();
    });

    it('is what auto-detection picks when NVML and DCGM are missing, with the H100 capture on 8 GPUs', async function () {
      const st = await firstSample(agent);
      assert.equal(st.gpu_backend, 'nvidia-smi');
      assert.equal(st.gpu_count, 8);
      for (const g of st.gpus) {
        assert.deepEqual(
          [g.name, g.memory_total_mb, g.memory_used_mb, g.utilization_percent, g.temperature_c, g.power_w],
          ['NVIDIA H100 80GB HBM3', 81559, 19818, 100, 59, 631.95],
        );
      }
      assert.equal(new Set(st.gpus.map((g) => g.uuid)).size, 8);
      const s = await metrics(agent);
      assert.equal(find(s, 'gpu_memory_reserved_bytes', { gpu: '3' })[0]?.value, 479 * MIB);
      assert.equal(find(s, 'gpu_fan_speed_ratio').length, 0, 'fan.speed is [N/A] on the H100: no series');
      assert.equal(find(s, 'gpu_sm_clock_hertz', { gpu: '0' })[0]?.value, 1980e6);
    });

    it('offers the -q -x report in /debug/gpu and as node-nvidia-smi JSON, without running nvidia-smi per request', async function () {
      const gpu = await eventually(async () => {
        const r = await http<{ nvidia_smi: { report: { nvidia_smi_log: unknown } } | null }>(
          `${agent.url}/debug/gpu`,
        );
        return r.body.nvidia_smi ? r.body : undefined;
      });
      assert.ok(gpu.nvidia_smi?.report.nvidia_smi_log);
      const n = await http<{ nvidia_smi_log: { driver_version: string; gpu: { $: { id: string } }[] } }>(
        `${agent.url}/debug/gpu?format=node-nvidia-smi`,
      );
      assert.equal(n.status, 200);
      assert.equal(n.body.nvidia_smi_log.driver_version, '590.44.01');
      assert.equal(n.body.nvidia_smi_log.gpu.length, 2);
      assert.equal(typeof n.body.nvidia_smi_log.gpu[0]!.$.id, 'string');
      assertError(await http(`${agent.url}/debug/gpu?format=xml`), 400, 'INVALID_QUERY');
    });
  });

  describe('nvidia-smi that hangs', function () {
    it('keeps every endpoint answering, marks data stale and /ready degraded, and recovers when it answers again', async function () {
      const modeFile = path.join(tempDir(), 'mode');
      writeFileSync(modeFile, 'ok');
      const agent = await startAgentProcess({
        env: {
          MOCK_GPU: '',
          GPU_BACKEND: 'nvidia-smi',
          NVIDIA_SMI_PATH: FAKE_NVIDIA_SMI,
          FAKE_NVIDIA_SMI_MODE_FILE: modeFile,
          GPU_POLL_INTERVAL_MS: '300',
          GPU_SAMPLE_TIMEOUT_MS: '600',
          GPU_STALE_AFTER_MS: '1000',
        },
      });
      try {
        await firstSample(agent);
        writeFileSync(modeFile, 'hang');
        const stale = await eventually(async () => {
          const r = await http<Status>(`${agent.url}/debug/status`);
          return r.body.stale ? r.body : undefined;
        });
        assert.equal(stale.status, 'degraded');
        assert.ok((stale.sample_age_ms ?? 0) > 1000);
        const ready = await http<{ status: string }>(`${agent.url}/ready`);
        assert.equal(ready.status, 503);
        assert.equal(ready.body.status, 'degraded');
        const s = await metrics(agent);
        assert.equal(find(s, 'agent_gpu_backend_up', { backend: 'nvidia-smi' })[0]?.value, 0);
        assert.ok(find(s, 'agent_gpu_sample_failures_total', { category: 'timeout' })[0]!.value >= 1);
        assert.equal(find(s, 'gpu_memory_used_bytes').length, 0, 'stale series are dropped');
        writeFileSync(modeFile, 'ok');
        const back = await eventually(async () => {
          const r = await http<Status>(`${agent.url}/debug/status`);
          return !r.body.stale && r.body.status !== 'degraded' ? r.body : undefined;
        });
        assert.equal(back.gpu_count, 1);
        assert.equal((await http(`${agent.url}/ready`)).status, 200);
      } finally {
        await agent.stop();
      }
    });
  });

  describe('NVML through the fake libnvidia-ml', function () {
    it('is picked first by auto-detection and reports what the library says', async function () {
      const lib = fakeNvmlOrSkip(this, 'modern');
      setFakeNvmlState({
        device_count: 2,
        driver_version: '550.90.07',
        cuda_version: 12040,
        'gpu0.name': 'NVIDIA H100 80GB HBM3',
        'gpu0.uuid': 'GPU-5d7a3b0e-1c2f-4a6b-9e8d-7f6a5b4c3d2e',
        'gpu0.memory_total': 81559 * MIB,
        'gpu0.memory_reserved': 568 * MIB,
        'gpu0.memory_used': 2048 * MIB,
        'gpu0.util_gpu': 87,
        'gpu0.temperature': 61,
        'gpu0.power_mw': 612_345,
        'gpu0.processes': `4242:${1024 * MIB}`,
        'gpu1.name': 'NVIDIA L4',
        'gpu1.uuid': 'GPU-0a1b2c3d-4e5f-6789-abcd-ef0123456789',
        'gpu1.unsupported': 'temperature,power',
        process_names: '4242:python3',
        xid_events: '0:79',
      });
      const agent = await startAgentProcess({
        env: {
          MOCK_GPU: '',
          GPU_BACKEND: 'auto',
          NVML_LIBRARY_PATH: lib,
          FAKE_NVML_STATE,
          GPU_POLL_INTERVAL_MS: '300',
        },
      });
      try {
        const st = await firstSample(agent);
        assert.equal(st.gpu_backend, 'nvml');
        assert.deepEqual(
          [
            st.gpus[0]!.memory_used_mb,
            st.gpus[0]!.memory_total_mb,
            st.gpus[0]!.utilization_percent,
            st.gpus[0]!.temperature_c,
            st.gpus[0]!.power_w,
          ],
          [2048, 81559, 87, 61, 612.345],
        );
        assert.equal(st.gpus[1]!.temperature_c, null, 'NOT_SUPPORTED is null, not 0');
        assert.equal(st.gpus[1]!.power_w, null);
        const mem = (await http<MemoryView>(`${agent.url}/debug/memory`)).body;
        assert.deepEqual(mem.gpus[0]!.processes, [{ pid: 4242, name: 'python3', used_mb: 1024 }]);
        const s = await eventually(async () => {
          const m = await metrics(agent);
          return find(m, 'gpu_xid_errors_total', { xid: '79' }).length ? m : undefined;
        });
        assert.equal(find(s, 'gpu_xid_errors_total', { gpu: '0', xid: '79' })[0]?.value, 1);
        assert.equal(find(s, 'gpu_memory_reserved_bytes', { gpu: '0' })[0]?.value, 568 * MIB);
        assert.equal(find(s, 'gpu_temperature_celsius', { gpu: '1' }).length, 0);
        assert.equal(
          find(s, 'gpu_process_memory_used_bytes', { gpu: '0', pid: '4242', process_name: 'python3' })[0]
            ?.value,
          1024 * MIB,
        );
      } finally {
        await agent.stop();
      }
    });
  });

  describe('DCGM through the fake dcgmi', function () {
    it('follows one long-lived dcgmi dmon and reports its values', async function () {
      const agent = await startAgentProcess({
        env: {
          MOCK_GPU: '',
          GPU_BACKEND: 'dcgm',
          DCGMI_PATH: FAKE_DCGMI,
          FAKE_DCGMI_GPUS: '2',
          GPU_POLL_INTERVAL_MS: '300',
        },
      });
      try {
        const st = await firstSample(agent);
        assert.equal(st.gpu_backend, 'dcgm');
        assert.equal(st.gpu_count, 2);
        // The RTX 2080 Ti capture: 22 C, about 21 W, idle.
        assert.equal(st.gpus[0]!.temperature_c, 22);
        assert.ok(st.gpus[0]!.power_w! > 20 && st.gpus[0]!.power_w! < 22);
        assert.equal(st.gpus[0]!.utilization_percent, 0);
      } finally {
        const exit = await agent.stop();
        assert.equal(exit.code, 0);
      }
    });
  });
});
