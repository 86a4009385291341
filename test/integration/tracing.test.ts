import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { startFakeComfyUI } from '../fakes/comfyui/fake-comfyui.js';
import { ROOT, eventually, http, startAgentProcess, tempDir } from '../helpers/agent.js';
import type { AgentProcess } from '../helpers/agent.js';
import { startOtlpReceiver } from '../helpers/otlp.js';
import type { ReceivedSpan } from '../helpers/otlp.js';
import { finishedJob } from '../helpers/queue.js';
import { deletePrefix, redisClient, testRedis } from '../helpers/redis.js';
import { txt2img } from '../helpers/comfyui.js';

const JOB = `${process.execPath} ${path.join(ROOT, 'test/workloads/queue-job.mjs')}`;
const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const PRODUCER_SPAN = '00f067aa0ba902b7';
const CALLER_TRACE = '0af7651916cd43dd8448eb211c80319c';
const CALLER_SPAN = 'b7ad6b7169203331';
/** OTLP's SpanKind numbers. */
const KIND = { server: 2, consumer: 5 } as const;

interface LogsView {
  records: { message: string; job_id?: string; trace_id?: string; span_id?: string; source?: string }[];
}

describe('traces and correlated logs (OTLP/HTTP to an in-process receiver, real Redis)', function () {
  this.timeout(60_000);
  let redis: { url: string; prefix: string };
  let conn: Redis;
  let queue: Queue;
  let agent: AgentProcess | undefined;

  beforeEach(async () => {
    redis = await testRedis();
    conn = redisClient(redis.url);
    queue = new Queue('jobs', { connection: conn, prefix: redis.prefix });
  });
  afterEach(async () => {
    await agent?.stop();
    agent = undefined;
    await queue.close();
    conn.disconnect();
    await deletePrefix(redis.url, redis.prefix);
  });

  it('carries one trace from the producer through the job to its nodes, with the logs findable by it', async () => {
    const receiver = await startOtlpReceiver();
    try {
      agent = await startAgentProcess({
        env: {
          REDIS_URL: redis.url,
          QUEUE_PREFIX: redis.prefix,
          JOB_COMMAND: JOB,
          OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
          OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
          OTEL_BSP_SCHEDULE_DELAY: '100',
          OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=test',
        },
      });
      const a = agent;
      const added = await queue.add('render', {
        traceparent: `00-${TRACE_ID}-${PRODUCER_SPAN}-01`,
        steps: 4,
        output_lines: ['loading model'],
      });
      const job = await finishedJob(queue, added.id as string);
      assert.equal(await job.getState(), 'completed', job.failedReason);

      // A request continuing a caller's trace, and an error answer carrying that trace id.
      const traced = { traceparent: `00-${CALLER_TRACE}-${CALLER_SPAN}-01` };
      assert.equal((await http(`${a.url}/debug/status`, { headers: traced })).status, 200);
      const missing = await http<{ error: { trace_id: string } }>(`${a.url}/debug/nope`, { headers: traced });
      assert.equal(missing.status, 404);
      assert.equal(missing.body.error.trace_id, CALLER_TRACE);

      // Every record of the job, the command's own lines included, is found by the trace id.
      const logs = await eventually(async () => {
        const r = await http<LogsView>(`${a.url}/debug/logs?trace_id=${TRACE_ID}`);
        return r.body.records.some((x) => x.message === 'job completed') ? r.body : undefined;
      });
      const jobSpans = () => receiver.spans.filter((s) => s.name === 'job jobs');
      const output = logs.records.find((x) => x.message === 'loading model');
      assert.ok(output, 'the command output line carries the trace id');
      assert.equal(output.job_id, added.id);

      // OpenMetrics, when asked for, carries trace ids as exemplars: the job's and the request's.
      const om = await fetch(`${a.url}/metrics`, {
        headers: { accept: 'application/openmetrics-text; version=1.0.0' },
      });
      assert.match(om.headers.get('content-type') ?? '', /^application\/openmetrics-text/);
      const omText = await om.text();
      assert.ok(omText.endsWith('# EOF\n'));
      assert.match(
        omText,
        new RegExp(`^job_duration_seconds_bucket\\{[^}]*\\} 1 # \\{trace_id="${TRACE_ID}"\\}`, 'm'),
      );
      assert.match(
        omText,
        new RegExp(
          `^api_request_duration_seconds_bucket\\{[^}]*endpoint="/debug/status"[^}]*\\} \\d+ # \\{trace_id="${CALLER_TRACE}"\\}`,
          'm',
        ),
      );
      assert.match(omText, /^jobs_started_total\{queue="jobs"\} 1$/m);
      // The text format after it: counters keep their names, no exemplars.
      const text = await (await fetch(`${a.url}/metrics`)).text();
      assert.match(text, /^# TYPE jobs_started_total counter$/m);
      assert.match(text, /^jobs_started_total\{queue="jobs"\} 1$/m);
      assert.doesNotMatch(text, /# \{trace_id=/);

      agent = undefined;
      await a.stop();
      const jobSpan = await eventually(() => Promise.resolve(jobSpans()[0]));
      assert.equal(jobSpan.traceId, TRACE_ID);
      assert.equal(jobSpan.parentSpanId, PRODUCER_SPAN, 'the job continues the producer span');
      assert.equal(jobSpan.kind, KIND.consumer);
      assert.equal(jobSpan.attributes['gpu_pod_agent.job.id'], added.id);
      assert.equal(jobSpan.attributes['gpu_pod_agent.job.status'], 'completed');
      assert.equal(output.span_id, jobSpan.spanId, 'output lines are in the job span');
      // The command continued the job span (TRACEPARENT).
      const result = job.returnvalue as { traceparent: string };
      assert.equal(result.traceparent, `00-${TRACE_ID}-${jobSpan.spanId}-01`);

      const command = receiver.spans.find((s) => s.name === 'command.run');
      assert.ok(command, 'the runner step is a span');
      assert.equal(command.parentSpanId, jobSpan.spanId);
      assert.equal(command.attributes['process.exit.code'], 0);
      const nodes = receiver.spans.filter((s) => s.name.startsWith('node '));
      assert.deepEqual(nodes.map((n) => n.name).sort(), ['node CheckpointLoaderSimple_4', 'node KSampler_3']);
      for (const n of nodes) {
        assert.equal(n.traceId, TRACE_ID);
        assert.equal(n.parentSpanId, jobSpan.spanId, `${n.name} is a child of the job`);
      }
      const sampler = nodes.find((n) => n.name === 'node KSampler_3') as ReceivedSpan;
      assert.equal(sampler.events.filter((e) => e.name === 'step').length, 4, 'steps as events');
      assert.equal(sampler.attributes['gpu_pod_agent.node.status'], 'completed');

      const request = receiver.spans.find((s) => s.name === 'GET /debug/status');
      assert.ok(request, receiver.spans.map((s) => s.name).join(','));
      assert.equal(request.traceId, CALLER_TRACE);
      assert.equal(request.parentSpanId, CALLER_SPAN);
      assert.equal(request.kind, KIND.server);
      assert.equal(request.attributes['http.response.status_code'], 200);

      const resource = jobSpan.resource;
      assert.equal(resource['service.name'], 'gpu-pod-agent');
      assert.match(String(resource['service.version']), /^\d+\.\d+\.\d+/);
      assert.ok(resource['host.name']);
      assert.ok(resource['gpu_pod_agent.pod.id']);
      assert.match(String(resource['gpu_pod_agent.gpu.model']), /NVIDIA/);
      assert.equal(resource['deployment.environment.name'], 'test', 'OTEL_RESOURCE_ATTRIBUTES is honoured');
    } finally {
      await receiver.close();
    }
  });

  it('traces a ComfyUI job: its steps, every node, and a failed node with its error', async () => {
    const receiver = await startOtlpReceiver();
    const comfy = await startFakeComfyUI({ baseDir: tempDir('gpa-comfy-'), stepDelayMs: 2 });
    try {
      comfy.script('bad', {
        error: { node: '3', atStep: 2, exceptionType: 'RuntimeError', message: 'boom' },
      });
      agent = await startAgentProcess({
        env: {
          REDIS_URL: redis.url,
          QUEUE_PREFIX: redis.prefix,
          JOB_RUNNER: 'comfyui',
          COMFYUI_URL: comfy.url,
          ARTIFACTS_DIR: tempDir('gpa-art-'),
          OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
          OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
          OTEL_BSP_SCHEDULE_DELAY: '100',
        },
      });
      const tp = `00-${TRACE_ID}-${PRODUCER_SPAN}-01`;
      const ok = await queue.add('txt2img', { workflow: txt2img(3), traceparent: tp }, { jobId: 'good' });
      assert.equal(await (await finishedJob(queue, ok.id as string)).getState(), 'completed');
      const bad = await queue.add(
        'txt2img',
        { workflow: txt2img(4), traceparent: tp },
        { jobId: 'bad', attempts: 1 },
      );
      assert.equal(await (await finishedJob(queue, bad.id as string)).getState(), 'failed');
      const a = agent;
      agent = undefined;
      await a.stop();
      const jobSpan = (id: string): ReceivedSpan => {
        const s = receiver.spans.find(
          (x) => x.name === 'job jobs' && x.attributes['gpu_pod_agent.job.id'] === id,
        );
        assert.ok(s, `span of job ${id}`);
        return s;
      };
      const good = jobSpan('good');
      const children = receiver.spans.filter((s) => s.parentSpanId === good.spanId).map((s) => s.name);
      for (const name of [
        'comfyui.submit',
        'comfyui.execute',
        'comfyui.collect_artifacts',
        'node KSampler_3',
        'node SaveImage_9',
      ]) {
        assert.ok(children.includes(name), `${name} under the job: ${children.join(',')}`);
      }
      const failed = jobSpan('bad');
      assert.equal(failed.status.code, 2, 'the failed job is an error span');
      const node = receiver.spans.find(
        (s) => s.parentSpanId === failed.spanId && s.name === 'node KSampler_3',
      );
      assert.equal(node?.status.code, 2);
      assert.equal(node?.attributes['error.type'], 'RuntimeError');
      assert.equal(node?.attributes['gpu_pod_agent.node.status'], 'failed');
    } finally {
      await comfy.close();
      await receiver.close();
    }
  });

  it('traces the jobs a supervised workload reports, and its lines carry their ids', async () => {
    const receiver = await startOtlpReceiver();
    try {
      const script = [
        'const P = process.env.AGENT_PROGRESS_PREFIX;',
        "const emit = (e) => console.log(P + ' ' + JSON.stringify(e));",
        `emit({ type: 'job.start', job_id: 'w1', traceparent: '00-${TRACE_ID}-${PRODUCER_SPAN}-01', nodes: [{ id: '3', type: 'KSampler' }] });`,
        "emit({ type: 'node.start', node_id: '3', node_type: 'KSampler' });",
        "console.log('sampling now');",
        "emit({ type: 'node.progress', node_id: '3', step: 1, total: 2 });",
        "emit({ type: 'node.progress', node_id: '3', step: 2, total: 2 });",
        "emit({ type: 'node.end', node_id: '3' });",
        "emit({ type: 'job.end', job_id: 'w1' });",
        'setInterval(() => {}, 1000);',
      ].join('\n');
      agent = await startAgentProcess({
        env: {
          OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
          OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
          OTEL_BSP_SCHEDULE_DELAY: '100',
        },
        args: ['--', process.execPath, '-e', script],
      });
      const a = agent;
      const line = await eventually(async () => {
        const r = await http<LogsView>(`${a.url}/debug/logs?trace_id=${TRACE_ID}`);
        return r.body.records.find((x) => x.message === 'sampling now');
      });
      assert.equal(line.job_id, 'w1');
      const jobSpan = await eventually(() =>
        Promise.resolve(receiver.spans.find((s) => s.name === 'job workload')),
      );
      assert.equal(jobSpan.traceId, TRACE_ID);
      assert.equal(jobSpan.parentSpanId, PRODUCER_SPAN);
      assert.equal(line.span_id, jobSpan.spanId);
      const node = await eventually(() =>
        Promise.resolve(receiver.spans.find((s) => s.name === 'node KSampler_3')),
      );
      assert.equal(node.parentSpanId, jobSpan.spanId);
      assert.equal(node.events.filter((e) => e.name === 'step').length, 2);
    } finally {
      await receiver.close();
    }
  });

  it('makes a span of every failed GPU sample', async () => {
    const receiver = await startOtlpReceiver();
    try {
      agent = await startAgentProcess({
        env: {
          MOCK_GPU_FAULT: 'error@1',
          GPU_POLL_INTERVAL_MS: '100',
          OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
          OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
          OTEL_BSP_SCHEDULE_DELAY: '100',
        },
      });
      const failures = await eventually(async () => {
        const spans = receiver.spans.filter((s) => s.name === 'gpu.sample');
        return Promise.resolve(spans.length >= 2 ? spans : undefined);
      });
      for (const s of failures) {
        assert.equal(s.status.code, 2);
        assert.equal(s.attributes['gpu_pod_agent.gpu.backend'], 'mock');
        assert.ok(s.attributes['gpu_pod_agent.failure.category']);
      }
    } finally {
      await receiver.close();
    }
  });

  it('exports nothing with tracing off, and still files the job logs under the producer trace id', async () => {
    const receiver = await startOtlpReceiver();
    try {
      agent = await startAgentProcess({
        env: {
          REDIS_URL: redis.url,
          QUEUE_PREFIX: redis.prefix,
          JOB_COMMAND: JOB,
          // Names the receiver, but no exporter is set up: the SDK is off.
          OTEL_SDK_DISABLED: 'true',
          OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
          OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
        },
      });
      const a = agent;
      const added = await queue.add('render', {
        traceparent: `00-${TRACE_ID}-${PRODUCER_SPAN}-01`,
        steps: 2,
      });
      const job = await finishedJob(queue, added.id as string);
      assert.equal(await job.getState(), 'completed', job.failedReason);
      assert.equal(
        (job.returnvalue as { traceparent: string }).traceparent,
        `00-${TRACE_ID}-${PRODUCER_SPAN}-01`,
      );
      const logs = await eventually(async () => {
        const r = await http<LogsView>(`${a.url}/debug/logs?trace_id=${TRACE_ID}`);
        return r.body.records.some((x) => x.message === 'job completed') ? r.body : undefined;
      });
      assert.ok(logs.records.every((x) => x.trace_id === TRACE_ID));
      const withCaller = await http(`${a.url}/debug/nope`, {
        headers: { traceparent: `00-${CALLER_TRACE}-${CALLER_SPAN}-01` },
      });
      assert.equal((withCaller.body.error as { trace_id: string }).trace_id, CALLER_TRACE);
      agent = undefined;
      await a.stop();
      assert.equal(receiver.requests, 0);
    } finally {
      await receiver.close();
    }
  });
});

describe('tracing setup', function () {
  this.timeout(30_000);

  /** Which packages a fresh process has loaded after setting tracing up on or off. */
  const loadedAfterStart = (on: boolean): { enabled: boolean; sdkParts: string[] } => {
    const script = `
      import { createRequire } from 'node:module';
      const { Tracing } = await import(${JSON.stringify(path.join(ROOT, 'dist/src/tracing/otel.js'))});
      const t = await Tracing.start({ enabled: ${on}, serviceVersion: '0', podId: 'p', gpuModel: Promise.resolve(undefined) });
      const loaded = Object.keys(createRequire(process.cwd() + '/').cache);
      console.log(JSON.stringify({
        enabled: t.enabled,
        // The SDK's own packages load as ES modules, which no cache lists; these CommonJS ones come with it.
        sdkParts: ['/@grpc/grpc-js/', '/require-in-the-middle/', '/import-in-the-middle/'].filter((p) =>
          loaded.some((f) => f.includes(p)),
        ),
      }));
      await t.shutdown(1000);`;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
      env: { PATH: process.env.PATH ?? '', OTEL_TRACES_EXPORTER: 'none' },
      encoding: 'utf8',
    });
    return JSON.parse(out.trim().split('\n').pop() as string) as { enabled: boolean; sdkParts: string[] };
  };

  it('loads the OpenTelemetry SDK and its exporters only when tracing is on', function () {
    assert.deepEqual(loadedAfterStart(false), { enabled: false, sdkParts: [] });
    assert.deepEqual(loadedAfterStart(true), {
      enabled: true,
      sdkParts: ['/@grpc/grpc-js/', '/require-in-the-middle/', '/import-in-the-middle/'],
    });
  });
});
