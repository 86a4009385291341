import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import type http from 'node:http';
import { GpuStore } from '../../gpu/index.js';
import { ArtifactStore } from '../../src/artifacts/artifact-store.js';
import { createApp } from '../../src/http/app.js';
import { createServer } from '../../src/http/server.js';
import { JobStore } from '../../src/jobs/job-store.js';
import { Lifecycle } from '../../src/lifecycle.js';
import { LogRing } from '../../src/logging/log-ring.js';
import { createLogger } from '../../src/logging/logger.js';
import { AgentMetrics } from '../../src/metrics/registry.js';
import { disabledQueue } from '../../src/views/queue.js';
import { WorkflowStore } from '../../src/workflow/workflow-store.js';
import { http as request, tempDir } from '../helpers/agent.js';
import { assertError } from '../helpers/assertions.js';

describe('handler failures', function () {
  let server: http.Server;
  let url: string;
  const lines: string[] = [];

  before(async function () {
    const ring = new LogRing(100);
    const logger = createLogger({
      level: 'info',
      service: 's',
      environment: 'test',
      podId: 'p',
      ring,
      out: { write: (l: string) => lines.push(l) },
    });
    const gpu = new GpuStore({ backend: 'mock', staleAfterMs: 1000, historySize: 10 });
    const jobs = new JobStore(10);
    const workflows = new WorkflowStore(10);
    const metrics = new AgentMetrics({
      version: '0',
      hostname: 'h',
      gpu,
      jobs,
      workflows,
      logRing: ring,
      queues: [],
      ready: () => true,
      workloadRunning: () => undefined,
      dcgmCompat: false,
      now: Date.now,
    });
    // A render that fails, as a broken collector would.
    metrics.render = () => Promise.reject(new Error('collector exploded'));
    const app = createApp({
      podId: 'p',
      version: '0',
      startedAt: Date.now(),
      lifecycle: new Lifecycle(),
      gpu,
      jobs,
      workflows,
      queue: disabledQueue('none'),
      workload: () => ({ state: 'not_configured' }),
      now: Date.now,
      logger,
      logRing: ring,
      artifacts: new ArtifactStore(tempDir(), 10),
      host: () => ({ takenAt: 0, cgroup: null }),
      metrics,
      configView: () => {
        throw new TypeError('config view broke');
      },
      getLogLevel: () => 'info',
      setLogLevel: () => undefined,
      debugToken: undefined,
      production: false,
      requestIdFormat: 'uuid',
    });
    server = createServer(app, logger);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(function (done) {
    server.close(() => done());
  });

  it('turns a thrown error into a 500 in the error format and an error record with the request id', async function () {
    const r = await request(`${url}/debug/config`);
    const e = assertError(r, 500, 'INTERNAL_ERROR');
    assert.equal(e.message, 'internal error', 'internals are not leaked to the client');
    const rec = lines
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((x) => x.message === 'unhandled error in a request handler');
    assert.ok(rec);
    assert.equal(rec.level, 'error');
    assert.equal(rec.request_id, e.request_id);
    assert.match(JSON.stringify(rec.error), /config view broke/);
  });

  it('turns a rejected promise into a 500, and keeps serving', async function () {
    assertError(await request(`${url}/metrics`), 500, 'INTERNAL_ERROR');
    const health = await request(`${url}/health`);
    assert.equal(health.status, 200);
  });
});
