import assert from 'node:assert/strict';
import net from 'node:net';
import { eventually, http, startAgentProcess } from '../helpers/agent.js';
import type { AgentProcess, LogRecord } from '../helpers/agent.js';
import { assertError } from '../helpers/assertions.js';

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Sends raw bytes and returns what the server answered, for requests fetch() refuses to send. */
function rawRequest(port: number, payload: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write(payload));
    let data = '';
    socket.setEncoding('utf8');
    socket.on('data', (c: string) => (data += c));
    socket.on('end', () => resolve(data));
    socket.on('error', reject);
  });
}

function bodyOf(raw: string): Record<string, unknown> {
  return JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4)) as Record<string, unknown>;
}

describe('HTTP surface on MOCK_GPU=1', function () {
  let agent: AgentProcess;

  before(async function () {
    agent = await startAgentProcess({ env: { MOCK_GPU_COUNT: '2', MOCK_GPU_MODEL: 'a100' } });
    await eventually(async () => ((await http(`${agent.url}/ready`)).status === 200 ? true : undefined));
  });
  after(async function () {
    await agent?.stop();
  });

  describe('probes', function () {
    for (const path of ['/health', '/healthz']) {
      it(`GET ${path} answers liveness`, async function () {
        const r = await http<{ status: string; uptime_s: number; started_at: string; version: string }>(
          `${agent.url}${path}`,
        );
        assert.equal(r.status, 200);
        assert.equal(r.body.status, 'ok');
        assert.equal(typeof r.body.uptime_s, 'number');
        assert.match(r.body.started_at, ISO);
        assert.match(r.body.version, /^\d+\.\d+\.\d+/);
      });
    }

    for (const path of ['/ready', '/readyz']) {
      it(`GET ${path} is 200 with its checks once the GPU is sampled`, async function () {
        const r = await http<{ status: string; checks: Record<string, { status: string }>; version: string }>(
          `${agent.url}${path}`,
        );
        assert.equal(r.status, 200);
        assert.equal(r.body.status, 'ok');
        assert.equal(r.body.checks.gpu?.status, 'ok');
        assert.equal(r.body.checks.queue?.status, 'disabled');
        assert.equal(r.body.checks.workload?.status, 'not_configured');
        assert.equal(typeof r.body.version, 'string');
      });
    }

    it('HEAD /health answers without a body', async function () {
      const res = await fetch(`${agent.url}/health`, { method: 'HEAD' });
      assert.equal(res.status, 200);
      assert.equal(await res.text(), '');
    });
  });

  describe('GET /debug/status', function () {
    it('has the documented shape with every GPU', async function () {
      const r = await http<Record<string, unknown>>(`${agent.url}/debug/status`);
      assert.equal(r.status, 200);
      const b = r.body;
      assert.equal(typeof b.pod_id, 'string');
      assert.equal(b.status, 'idle');
      assert.equal(typeof b.uptime_s, 'number');
      assert.equal(b.gpu_backend, 'mock');
      assert.equal(b.current_job, null);
      assert.equal(typeof b.sample_age_ms, 'number');
      assert.equal(b.stale, false);
      const gpu = b.gpu as Record<string, unknown>;
      assert.deepEqual(Object.keys(gpu).sort(), [
        'memory_total_mb',
        'memory_used_mb',
        'name',
        'power_w',
        'temperature_c',
        'utilization_percent',
      ]);
      assert.equal(gpu.name, 'NVIDIA A100-SXM4-80GB');
      assert.equal(gpu.memory_total_mb, 81920);
      const util = gpu.utilization_percent as number;
      assert.ok(util >= 0 && util <= 5, `idle utilization ${util}`);
      const gpus = b.gpus as { index: number; uuid: string }[];
      assert.equal(gpus.length, 2);
      assert.deepEqual(
        gpus.map((g) => g.index),
        [0, 1],
      );
      assert.match(gpus[0]!.uuid, /^GPU-[0-9a-f-]{36}$/);
      assert.notEqual(gpus[0]!.uuid, gpus[1]!.uuid);
    });
  });

  describe('GET /debug/gpu', function () {
    it('gives the full reading and the source health', async function () {
      const r = await http<{
        backend: string;
        up: boolean;
        devices: { memory: { total_bytes: number; reserved_bytes: number }; processes: unknown[] }[];
      }>(`${agent.url}/debug/gpu`);
      assert.equal(r.status, 200);
      assert.equal(r.body.backend, 'mock');
      assert.equal(r.body.up, true);
      assert.equal(r.body.devices.length, 2);
      assert.equal(r.body.devices[0]!.memory.total_bytes, 81920 * 1024 * 1024);
      assert.ok(r.body.devices[0]!.memory.reserved_bytes > 0);
    });
  });

  describe('GET /debug/workflow', function () {
    it('answers an empty workflow while no job has run', async function () {
      const r = await http(`${agent.url}/debug/workflow`);
      assert.equal(r.status, 200);
      assert.deepEqual(
        {
          job_id: r.body.job_id,
          nodes_total: r.body.nodes_total,
          nodes_completed: r.body.nodes_completed,
          nodes: r.body.nodes,
        },
        { job_id: null, nodes_total: 0, nodes_completed: 0, nodes: [] },
      );
    });

    it('answers 404 JOB_NOT_FOUND for an unknown job id', async function () {
      assertError(await http(`${agent.url}/debug/workflow?job_id=nope`), 404, 'JOB_NOT_FOUND');
    });

    it('answers 400 for a repeated or empty job_id', async function () {
      assertError(await http(`${agent.url}/debug/workflow?job_id=a&job_id=b`), 400, 'INVALID_QUERY');
      assertError(await http(`${agent.url}/debug/workflow?job_id=`), 400, 'INVALID_QUERY');
    });
  });

  describe('GET /debug/logs', function () {
    it('returns structured records, oldest first, with the documented fields', async function () {
      const r = await http<{ count: number; limit: number; records: LogRecord[] }>(
        `${agent.url}/debug/logs?lines=50`,
      );
      assert.equal(r.status, 200);
      assert.ok(r.body.count > 0 && r.body.count <= 50);
      assert.equal(r.body.records.length, r.body.count);
      for (const rec of r.body.records) {
        assert.match(rec.timestamp as string, ISO);
        assert.equal(typeof rec.level, 'string');
        assert.equal(typeof rec.message, 'string');
        assert.equal(rec.service, 'gpu-pod-agent');
        assert.equal(rec.environment, 'development');
        assert.equal(typeof rec.pod_id, 'string');
      }
      const times = r.body.records.map((rec) => Date.parse(rec.timestamp as string));
      assert.deepEqual(
        times,
        [...times].sort((a, b) => a - b),
      );
    });

    it('returns at most `lines` records and only at `level` or above', async function () {
      const two = await http<{ records: LogRecord[] }>(`${agent.url}/debug/logs?lines=2`);
      assert.equal(two.body.records.length, 2);
      const info = await http<{ records: LogRecord[] }>(`${agent.url}/debug/logs?lines=1000&level=info`);
      assert.ok(info.body.records.length > 0);
      assert.ok(info.body.records.every((rec) => ['info', 'warn', 'error', 'fatal'].includes(rec.level)));
      const debug = await http<{ records: LogRecord[] }>(`${agent.url}/debug/logs?lines=1000&level=debug`);
      assert.ok(debug.body.records.some((rec) => rec.level === 'debug'));
    });

    it('caps huge line counts at the buffer size instead of obeying them', async function () {
      const r = await http<{ limit: number; max_lines: number }>(
        `${agent.url}/debug/logs?lines=99999999999999999999`,
      );
      assert.equal(r.status, 200);
      assert.equal(r.body.limit, r.body.max_lines);
      assert.equal(r.body.max_lines, 5000);
    });

    const bad: [string, string][] = [
      ['lines=abc', 'lines'],
      ['lines=-1', 'lines'],
      ['lines=0', 'lines'],
      ['lines=1.5', 'lines'],
      ['lines=1e3', 'lines'],
      ['lines=', 'lines'],
      ['lines=1&lines=2', 'lines'],
      ['level=loud', 'level'],
      ['level=', 'level'],
      ['since=yesterday', 'since'],
      ['job_id=', 'job_id'],
      ['trace_id=abc', 'trace_id'],
      ['trace_id=4BF92F3577B34DA6A3CE929D0E0E4736', 'trace_id'],
    ];
    for (const [query, parameter] of bad) {
      it(`answers 400 INVALID_QUERY for ?${query}`, async function () {
        const e = assertError(await http(`${agent.url}/debug/logs?${query}`), 400, 'INVALID_QUERY');
        assert.equal((e.details as { parameter: string }).parameter, parameter);
      });
    }

    it('shows a new record in the next answer to the same query', async function () {
      // The encoded answer is kept for repeated queries; a new record must not be hidden by it.
      const q = `${agent.url}/debug/logs?lines=3&level=warn`;
      const first = await http<{ records: LogRecord[] }>(q);
      const again = await http<{ records: LogRecord[] }>(q);
      assert.deepEqual(again.body, first.body);
      const set = await http(`${agent.url}/debug/log-level`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-request-id': '0b5e2c1a-7d4f-4c9e-9a51-3f6d8e2b7c10',
        },
        body: JSON.stringify({ level: 'debug' }),
      });
      assert.equal(set.status, 200);
      const after = await http<{ records: LogRecord[] }>(q);
      const newest = after.body.records.at(-1)!;
      assert.equal(newest.message, 'log level changed');
      assert.equal(newest.request_id, '0b5e2c1a-7d4f-4c9e-9a51-3f6d8e2b7c10');
    });

    it('filters by since', async function () {
      const future = new Date(Date.now() + 3_600_000).toISOString();
      const r = await http<{ count: number }>(`${agent.url}/debug/logs?since=${encodeURIComponent(future)}`);
      assert.equal(r.status, 200);
      assert.equal(r.body.count, 0);
      const past = await http<{ count: number }>(`${agent.url}/debug/logs?since=0`);
      assert.ok(past.body.count > 0);
    });
  });

  describe('GET /debug/queue', function () {
    it('says the queue is disabled and why', async function () {
      const r = await http(`${agent.url}/debug/queue`);
      assert.equal(r.status, 200);
      assert.equal(r.body.enabled, false);
      assert.match(r.body.reason as string, /REDIS_URL/);
    });
  });

  describe('GET /debug/memory', function () {
    it('reports process, system, cgroup and GPU memory', async function () {
      const r = await eventually(async () => {
        const res = await http<{
          process: Record<string, number>;
          system: Record<string, number> | null;
          cgroup: unknown;
          gpus: { index: number; memory: Record<string, number>; processes: unknown[] }[];
        }>(`${agent.url}/debug/memory`);
        return res.body.system ? res : undefined;
      });
      assert.equal(r.status, 200);
      assert.ok(r.body.process.rss_bytes! > 10_000_000);
      assert.ok(r.body.process.heap_used_bytes! > 0);
      assert.ok(r.body.system!.total_bytes! > 0);
      assert.ok(r.body.system!.available_bytes! > 0);
      assert.ok(r.body.cgroup === null || typeof r.body.cgroup === 'object');
      assert.equal(r.body.gpus.length, 2);
      const m = r.body.gpus[0]!.memory;
      assert.equal(m.total_mb, 81920);
      assert.equal(m.reserved_mb, 912);
      assert.equal(m.total_mb, m.used_mb! + m.free_mb! + m.reserved_mb);
    });
  });

  describe('GET /debug/artifacts', function () {
    it('answers an empty list while no job has run', async function () {
      const r = await http(`${agent.url}/debug/artifacts`);
      assert.equal(r.status, 200);
      assert.deepEqual(r.body, { job_id: null, artifacts: [] });
    });

    it('answers 404 for an unknown job', async function () {
      assertError(await http(`${agent.url}/debug/artifacts?job_id=nope`), 404, 'JOB_NOT_FOUND');
    });
  });

  describe('GET /debug/config', function () {
    it('shows the effective configuration', async function () {
      const r = await http(`${agent.url}/debug/config`);
      assert.equal(r.status, 200);
      assert.equal(r.body.gpu_backend, 'mock');
      assert.equal(r.body.mock_gpu_count, 2);
      assert.equal(r.body.debug_token, null);
    });
  });

  describe('POST /debug/log-level', function () {
    it('changes the level at runtime', async function () {
      const set = async (level: string) =>
        http(`${agent.url}/debug/log-level`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ level }),
        });
      const r = await set('warn');
      assert.equal(r.status, 200);
      assert.deepEqual(r.body, { level: 'warn', previous: 'debug' });
      const marker = new Date().toISOString();
      await http(`${agent.url}/debug/status`);
      const after = await http<{ records: LogRecord[] }>(
        `${agent.url}/debug/logs?level=trace&since=${encodeURIComponent(marker)}`,
      );
      assert.ok(
        after.body.records.every((rec) => rec.level !== 'debug'),
        'no debug records are written at level warn',
      );
      assert.deepEqual((await set('debug')).body, { level: 'debug', previous: 'warn' });
    });

    it('answers 400 INVALID_BODY for an unknown level, invalid JSON, a bare string or no body', async function () {
      const post = (body: string, type = 'application/json') =>
        http(`${agent.url}/debug/log-level`, { method: 'POST', headers: { 'content-type': type }, body });
      assertError(await post(JSON.stringify({ level: 'loud' })), 400, 'INVALID_BODY');
      assertError(await post('[]'), 400, 'INVALID_BODY');
      assertError(await post('{"level":'), 400, 'INVALID_BODY');
      assertError(await post('"debug"'), 400, 'INVALID_BODY');
      assertError(await post(''), 400, 'INVALID_BODY');
    });

    it('answers 415 for a body that is not JSON and 413 for a huge one', async function () {
      assertError(
        await http(`${agent.url}/debug/log-level`, {
          method: 'POST',
          headers: { 'content-type': 'text/plain' },
          body: 'level=info',
        }),
        415,
        'UNSUPPORTED_MEDIA_TYPE',
      );
      assertError(
        await http(`${agent.url}/debug/log-level`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ level: 'info', pad: 'x'.repeat(100_000) }),
        }),
        413,
        'PAYLOAD_TOO_LARGE',
      );
    });
  });

  describe('errors', function () {
    it('answers 404 NOT_FOUND in the error format for unknown routes', async function () {
      assertError(await http(`${agent.url}/nope`), 404, 'NOT_FOUND');
      assertError(await http(`${agent.url}/debug/nope`), 404, 'NOT_FOUND');
    });

    it('answers 405 for a wrong method on a known route written with a trailing slash', async function () {
      assertError(await http(`${agent.url}/debug/status/`, { method: 'POST' }), 405, 'METHOD_NOT_ALLOWED');
    });

    it('answers 405 with Allow for a wrong method on a known route', async function () {
      const r = await http(`${agent.url}/debug/status`, { method: 'DELETE' });
      assertError(r, 405, 'METHOD_NOT_ALLOWED');
      assert.equal(r.headers.get('allow'), 'GET, HEAD, OPTIONS');
      assertError(await http(`${agent.url}/debug/log-level`), 405, 'METHOD_NOT_ALLOWED');
    });

    it('answers malformed HTTP with 400 in the error format', async function () {
      const raw = await rawRequest(agent.port, 'GARBAGE / NOT-HTTP\r\n\r\n');
      assert.match(raw, /^HTTP\/1\.1 400 /);
      assert.match(raw, /\r\nx-request-id: [0-9a-f-]{36}\r\n/);
      assert.equal((bodyOf(raw).error as { code: string }).code, 'BAD_REQUEST');
    });

    it('answers oversized headers with 431 in the error format', async function () {
      const raw = await rawRequest(
        agent.port,
        `GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
      );
      assert.match(raw, /^HTTP\/1\.1 431 /);
      assert.equal((bodyOf(raw).error as { code: string }).code, 'HEADERS_TOO_LARGE');
    });

    /**
     * Sends `head` and 64 KiB, waits for the answer, then goes on sending 1 MB more as a client that does
     * not read while it writes does, and returns the answer and any socket error.
     */
    async function answerWhileSending(head: string): Promise<{ answer: string; error?: Error }> {
      const socket = net.connect(agent.port, '127.0.0.1');
      let error: Error | undefined;
      socket.on('error', (e) => (error = e));
      let answer = '';
      const answered = new Promise<void>((resolve) =>
        socket.on('data', (c: Buffer) => {
          answer += c.toString('latin1');
          resolve();
        }),
      );
      const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
      const write = (s: string): Promise<void> =>
        new Promise((resolve, reject) => socket.write(s, (e) => (e ? reject(e) : resolve())));
      await write(head + 'a'.repeat(64 * 1024));
      await answered;
      try {
        for (let i = 0; i < 16; i++) await write('a'.repeat(64 * 1024));
        socket.end();
      } catch (e) {
        error ??= e as Error;
      }
      await closed;
      return { answer, error };
    }

    it('keeps reading a client still sending a huge request line after the 431, so no reset loses the answer', async function () {
      const { answer, error } = await answerWhileSending('GET /health?q=');
      assert.equal(error, undefined, 'the connection was reset while the client was still sending');
      assert.match(answer, /^HTTP\/1\.1 431 /);
      assert.equal((bodyOf(answer).error as { code: string }).code, 'HEADERS_TOO_LARGE');
    });

    it('keeps reading a body no route reads after answering, before it closes the connection', async function () {
      const { answer, error } = await answerWhileSending(
        `POST /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: ${17 * 64 * 1024}\r\n\r\n`,
      );
      assert.equal(error, undefined, 'the connection was reset while the client was still sending');
      assert.match(answer, /^HTTP\/1\.1 404 /);
      assert.equal((bodyOf(answer).error as { code: string }).code, 'NOT_FOUND');
    });
  });

  describe('request ids and trace context', function () {
    it('assigns a UUID when the caller sends none', async function () {
      const r = await http(`${agent.url}/health`);
      assert.match(r.headers.get('x-request-id') ?? '', UUID);
    });

    it('keeps and echoes a valid x-request-id, and puts it on the error and the log record', async function () {
      const id = '0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9';
      const r = await http(`${agent.url}/nope`, { headers: { 'x-request-id': id } });
      assert.equal(r.headers.get('x-request-id'), id);
      assert.equal(assertError(r, 404, 'NOT_FOUND').request_id, id);
      const rec = await agent.waitForRecord((rec) => rec.request_id === id && rec.message === 'request');
      assert.equal((rec.data as { status: number }).status, 404);
    });

    it('accepts the 32-hex form proxies send', async function () {
      const id = '0f1e2d3c4b5a49788695a4b3c2d1e0f9';
      const r = await http(`${agent.url}/health`, { headers: { 'x-request-id': id } });
      assert.equal(r.status, 200);
      assert.equal(r.headers.get('x-request-id'), id);
    });

    for (const [label, value] of [
      ['not a UUID', 'my-request-1'],
      ['too long', 'a'.repeat(300)],
      ['with spaces', 'a b c'],
    ]) {
      it(`answers 400 INVALID_REQUEST_ID for one ${label}`, async function () {
        const r = await http(`${agent.url}/debug/status`, { headers: { 'x-request-id': value! } });
        const e = assertError(r, 400, 'INVALID_REQUEST_ID');
        assert.notEqual(e.request_id, value, 'the bad id is not echoed as the request id');
      });
    }

    it('takes an empty x-request-id as none', async function () {
      const r = await http(`${agent.url}/health`, { headers: { 'x-request-id': '' } });
      assert.equal(r.status, 200);
      assert.match(r.headers.get('x-request-id') ?? '', UUID);
    });

    it('answers 400 for a non-printable x-request-id', async function () {
      const raw = await rawRequest(
        agent.port,
        'GET /health HTTP/1.1\r\nHost: x\r\nx-request-id: abc\x01def\r\nConnection: close\r\n\r\n',
      );
      assert.match(raw, /^HTTP\/1\.1 400 /);
      const body = bodyOf(raw) as { error: { code: string } };
      assert.ok(['INVALID_REQUEST_ID', 'BAD_REQUEST'].includes(body.error.code));
    });

    it('takes trace_id from a valid traceparent for errors and log records', async function () {
      const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
      const r = await http(`${agent.url}/nope`, {
        headers: { traceparent: `00-${traceId}-00f067aa0ba902b7-01` },
      });
      assert.equal(assertError(r, 404, 'NOT_FOUND').trace_id, traceId);
      const logs = await eventually(async () => {
        const res = await http<{ records: LogRecord[] }>(`${agent.url}/debug/logs?trace_id=${traceId}`);
        return res.body.records.length > 0 ? res.body.records : undefined;
      });
      assert.ok(logs.every((rec) => rec.trace_id === traceId));
    });

    it('ignores an invalid traceparent and starts a new trace', async function () {
      const zero = '00000000000000000000000000000000';
      const r = await http(`${agent.url}/nope`, {
        headers: { traceparent: `00-${zero}-00f067aa0ba902b7-01` },
      });
      const e = assertError(r, 404, 'NOT_FOUND');
      assert.match(e.trace_id ?? '', /^[0-9a-f]{32}$/);
      assert.notEqual(e.trace_id, zero);
    });
  });
});
