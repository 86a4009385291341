import assert from 'node:assert/strict';
import { bar, duration, fit, renderStatus, visibleLength } from '../../src/status/render.js';
import type { StatusView } from '../../src/status/render.js';

const VIEW: StatusView = {
  url: 'http://127.0.0.1:8080',
  ready: { status: 'ok', checks: { gpu: { status: 'ok' } } },
  status: {
    pod_id: 'pod-1',
    status: 'processing',
    uptime_s: 3725,
    version: '1.2.3',
    gpu_backend: 'nvml',
    gpu_backend_up: true,
    stale: false,
    sample_age_ms: 300,
    current_job: {
      job_id: 'job-42',
      queue: 'jobs',
      state: 'active',
      progress_percent: 50,
      elapsed_ms: 12_500,
      nodes_total: 7,
      nodes_completed: 4,
      node: { id: 'KSampler_3', step: 12, total: 30, progress_percent: 40 },
    },
    gpus: [
      {
        index: 0,
        name: 'NVIDIA H100 80GB HBM3',
        memory_used_mb: 40960,
        memory_total_mb: 81920,
        utilization_percent: 100,
        temperature_c: 61,
        power_w: 612.4,
        power_limit_w: 700,
      },
    ],
  },
  queue: {
    enabled: true,
    queue: 'jobs',
    counts: { waiting: 3, active: 1, completed: 10, failed: 0, delayed: 0, paused: 0 },
    workers: 2,
    redis: { status: 'ready', latency_ms: 0.4 },
  },
};

describe('status view rendering', function () {
  it('draws bars of the asked size, full at 100 % and empty without a value', function () {
    assert.equal(bar(100, 10, false), '██████████');
    assert.equal(bar(50, 10, false), '█████░░░░░');
    assert.equal(bar(0, 4, false), '░░░░');
    assert.equal(bar(null, 4, false), '····');
    assert.equal(bar(250, 4, false), '████', 'capped');
  });

  it('renders every part, as plain text without color', function () {
    const text = renderStatus(VIEW, { width: 100, color: false });
    assert.deepEqual(text.split('\n'), [
      'gpu-pod-agent pod-1 v1.2.3 · ready · processing · up 1h02m · nvml',
      '[0] H100 80GB HBM3  61°C  612 W util ███████████████████ 100 % mem ██████████░░░░░░░░░ 40.0/80.0 GiB',
      'job job-42 active · 12.5s · 4/7 nodes ███████████████░░░░░░░░░░░░░░░ 50.0 %',
      '  node KSampler_3 step 12/30 ████████████░░░░░░░░░░░░░░░░░░ 40.0 %',
      'queue jobs: waiting 3 · active 1 · completed 10 · failed 0 · workers 2 · redis ready 0.4 ms',
    ]);
  });

  it('never writes a line wider than the terminal, and closes colors it cuts', function () {
    for (const width of [40, 60, 80, 120]) {
      for (const color of [false, true]) {
        for (const line of renderStatus(VIEW, { width, color }).split('\n')) {
          assert.ok(visibleLength(line) <= width, `${width}: ${line}`);
        }
      }
    }
    const cut = fit('\u001b[31mabcdef\u001b[0m', 3);
    assert.equal(cut, '\u001b[31mabc\u001b[0m');
  });

  it('says why the pod is not ready, and marks stale GPU data', function () {
    const text = renderStatus(
      {
        ...VIEW,
        ready: { status: 'degraded', checks: { gpu: { status: 'failing', reason: 'nvml: driver gone' } } },
        status: { ...VIEW.status, stale: true, sample_age_ms: 65_000, current_job: null },
        queue: { enabled: false, reason: 'no queue is configured' },
      },
      { width: 120, color: false },
    );
    assert.match(text, /not ready \(degraded\)/);
    assert.match(text, /^ {2}gpu failing: nvml: driver gone$/m);
    assert.match(text, /stale \(1m05s old\)/);
    assert.match(text, /^no job running$/m);
    assert.match(text, /^queue: no queue is configured$/m);
  });

  it('writes durations a person reads at a glance', function () {
    assert.equal(duration(900), '0.9s');
    assert.equal(duration(125_000), '2m05s');
    assert.equal(duration(3 * 3600_000 + 60_000), '3h01m');
    assert.equal(duration(50 * 3600_000), '2d2h');
    assert.equal(duration(null), '–');
  });
});
