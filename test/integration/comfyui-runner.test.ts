import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Queue } from 'bullmq';
import type { Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { startFakeComfyUI } from '../fakes/comfyui/fake-comfyui.js';
import { encodePng } from '../fakes/comfyui/media.js';
import type { FakeComfyUI } from '../fakes/comfyui/fake-comfyui.js';
import { finishedJob } from '../helpers/queue.js';
import { txt2img } from '../helpers/comfyui.js';
import { eventually, http, startAgentProcess, tempDir } from '../helpers/agent.js';
import type { AgentProcess } from '../helpers/agent.js';
import { deletePrefix, freePort, redisClient, testRedis } from '../helpers/redis.js';

/** A graph whose outputs are a video and an audio file. */
function videoAndAudio(): Record<string, unknown> {
  const g = txt2img(4, 'clip');
  delete g['9'];
  return {
    ...g,
    '10': {
      class_type: 'SaveVideo',
      inputs: { filename_prefix: 'video/clip', format: 'mp4', codec: 'h264', video: ['12', 0] },
    },
    '12': { class_type: 'CreateVideo', inputs: { fps: 8, images: ['8', 0] } },
    '11': {
      class_type: 'SaveAudio',
      inputs: { filename_prefix: 'audio/voice', audio: ['14', 0] },
    },
    '13': { class_type: 'EmptyLatentAudio', inputs: { seconds: 1, batch_size: 1 } },
    '14': { class_type: 'VAEDecodeAudio', inputs: { samples: ['13', 0], vae: ['4', 2] } },
  };
}

interface WorkflowView {
  job_id: string;
  state: string;
  nodes_total: number;
  nodes_completed: number;
  progress_percent: number;
  current_node: string | null;
  gpu_memory_peak_mb: number | null;
  nodes: {
    id: string;
    node_id: string;
    type: string;
    status: string;
    progress: { steps: number; total: number } | null;
    steps_per_second: number | null;
    gpu_memory_peak_mb: number | null;
    error: {
      message: string;
      exception_type: string | null;
      traceback: string[] | null;
      details: unknown;
    } | null;
  }[];
}

interface Ctx {
  url: string;
  prefix: string;
  conn: Redis;
  queue: Queue;
  comfy?: FakeComfyUI;
  agent?: AgentProcess;
  artifactsDir: string;
}

/**
 * A TCP proxy to 127.0.0.1:`port` whose `blackhole()` makes every connection open at that moment stop
 * passing bytes either way without closing it; later connections pass normally.
 */
async function blackholeProxy(port: string): Promise<{ url: string; blackhole(): void; close(): void }> {
  const pairs = new Set<[net.Socket, net.Socket]>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(port), '127.0.0.1');
    const pair: [net.Socket, net.Socket] = [client, upstream];
    pairs.add(pair);
    client.pipe(upstream);
    upstream.pipe(client);
    const end = (): void => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const held: net.Socket[] = [];
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    blackhole() {
      for (const [client, upstream] of pairs) {
        client.unpipe(upstream);
        upstream.unpipe(client);
        client.pause();
        upstream.pause();
        held.push(client, upstream);
      }
      pairs.clear();
    },
    close() {
      for (const s of held) s.destroy();
      for (const [a, b] of pairs) {
        a.destroy();
        b.destroy();
      }
      server.close();
    },
  };
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

function finished(queue: Queue, id: string, timeoutMs = 30_000): Promise<Job> {
  return finishedJob(queue, id, timeoutMs);
}

describe('comfyui runner (fake ComfyUI over real HTTP and websocket, real Redis, the built agent)', function () {
  this.timeout(90_000);
  let c: Ctx;

  async function agent(env: Record<string, string> = {}): Promise<AgentProcess> {
    c.agent = await startAgentProcess({
      env: {
        REDIS_URL: c.url,
        QUEUE_PREFIX: c.prefix,
        JOB_RUNNER: 'comfyui',
        COMFYUI_URL: c.comfy?.url ?? 'http://127.0.0.1:9',
        ARTIFACTS_DIR: c.artifactsDir,
        QUEUE_REFRESH_INTERVAL_MS: '200',
        JOB_PROGRESS_INTERVAL_MS: '20',
        GPU_POLL_INTERVAL_MS: '100',
        ...env,
      },
    });
    return c.agent;
  }

  beforeEach(async () => {
    const { url, prefix } = await testRedis();
    const conn = redisClient(url);
    c = {
      url,
      prefix,
      conn,
      queue: new Queue('jobs', { connection: conn, prefix }),
      artifactsDir: tempDir('gpa-art-'),
    };
  });
  afterEach(async () => {
    await c.agent?.stop();
    await c.comfy?.close();
    await c.queue.close();
    c.conn.disconnect();
    await deletePrefix(c.url, c.prefix);
  });

  it('runs a workflow: every node and step in /debug/workflow, the percent never back, artifacts with sha256', async () => {
    c.comfy = await startFakeComfyUI({ baseDir: tempDir('gpa-comfy-'), stepDelayMs: 40 });
    const a = await agent();
    const added = await c.queue.add('txt2img', { workflow: txt2img(12) });
    const id = added.id as string;
    // Follow the run as an E2E test would: the percent never goes back, the sampler's steps show.
    const seen: WorkflowView[] = [];
    const done = finished(c.queue, id);
    let ended = false;
    void done.then(() => (ended = true));
    while (!ended) {
      const r = await http<WorkflowView>(`${a.url}/debug/workflow?job_id=${id}`);
      if (r.status === 200 && r.body.job_id === id) seen.push(r.body);
      await new Promise((res) => setTimeout(res, 15));
    }
    const job = await done;
    assert.equal(await job.getState(), 'completed', job.failedReason);
    const percents = seen.map((s) => s.progress_percent);
    for (let i = 1; i < percents.length; i++)
      assert.ok(percents[i]! >= percents[i - 1]!, `percent went back: ${percents.join(',')}`);
    const sampling = seen.filter((s) => s.current_node === 'KSampler_3');
    assert.ok(sampling.length > 0, 'the sampler was seen running');
    const steps = sampling.map((s) => s.nodes.find((n) => n.id === 'KSampler_3')!.progress?.steps ?? 0);
    assert.ok(new Set(steps).size > 2, `sampler steps advanced: ${steps.join(',')}`);

    const wf = (await http<WorkflowView>(`${a.url}/debug/workflow?job_id=${id}`)).body;
    assert.equal(wf.state, 'completed');
    assert.equal(wf.progress_percent, 100);
    assert.equal(wf.nodes_total, 7);
    assert.deepEqual(wf.nodes.map((n) => [n.id, n.status]).sort(), [
      ['CLIPTextEncode_6', 'completed'],
      ['CLIPTextEncode_7', 'completed'],
      ['CheckpointLoaderSimple_4', 'completed'],
      ['EmptyLatentImage_5', 'completed'],
      ['KSampler_3', 'completed'],
      ['SaveImage_9', 'completed'],
      ['VAEDecode_8', 'completed'],
    ]);
    const sampler = wf.nodes.find((n) => n.id === 'KSampler_3')!;
    assert.deepEqual(sampler.progress, { steps: 12, total: 12 });
    assert.ok(sampler.steps_per_second !== null && sampler.steps_per_second > 0);
    assert.ok(
      sampler.gpu_memory_peak_mb !== null && sampler.gpu_memory_peak_mb > 0,
      'GPU memory peak per node',
    );
    assert.ok(wf.gpu_memory_peak_mb !== null && wf.gpu_memory_peak_mb > 0, 'GPU memory peak per job');

    // The prompt went in under the job id, from the agent's own client.
    assert.equal(c.comfy.submitted[0]?.prompt_id, id);
    const result = job.returnvalue as {
      prompt_id: string;
      artifacts: { name: string; sha256: string; url: string; size_bytes: number; content_type: string }[];
    };
    assert.equal(result.prompt_id, id);
    assert.equal(result.artifacts.length, 1);
    const art = result.artifacts[0]!;
    assert.equal(art.content_type, 'image/png');
    const onDisk = readFileSync(path.join(c.comfy.baseDir, 'output', path.basename(art.name)));
    assert.equal(art.sha256, sha256(onDisk));
    const listed = await http<{ artifacts: { name: string; sha256: string; url: string }[] }>(
      `${a.url}/debug/artifacts?job_id=${id}`,
    );
    assert.deepEqual(
      listed.body.artifacts.map((x) => [x.name, x.sha256]),
      [[art.name, art.sha256]],
    );
    const download = await fetch(`${a.url}${art.url}`);
    assert.equal(download.status, 200);
    assert.equal(sha256(Buffer.from(await download.arrayBuffer())), art.sha256);
    // bull-board and producers saw where the job was
    assert.equal((job.progress as { progress: number }).progress, 100);
    const metrics = await eventually(async () => {
      const m = await (await fetch(`${a.url}/metrics`)).text();
      return /^jobs_completed_total\{queue="jobs",status="completed"\} 1$/m.test(m) ? m : undefined;
    });
    assert.match(metrics, /^workflow_node_steps_per_second_count\{node_type="KSampler"\} 1$/m);
    assert.match(metrics, /^workflow_node_duration_seconds_count\{node_type="KSampler"\} 1$/m);
    assert.match(metrics, /^job_queue_wait_seconds_count\{queue="jobs"\} 1$/m);
    assert.match(metrics, /^agent_draining 0$/m);
  });

  it('reports cached nodes of a repeated workflow and collects video and audio outputs', async () => {
    c.comfy = await startFakeComfyUI({ baseDir: tempDir('gpa-comfy-'), stepDelayMs: 2 });
    const a = await agent();
    const first = await c.queue.add('v', { workflow: videoAndAudio() });
    assert.equal(await (await finished(c.queue, first.id as string)).getState(), 'completed');
    const second = await c.queue.add('v', { workflow: videoAndAudio() });
    const job = await finished(c.queue, second.id as string);
    assert.equal(await job.getState(), 'completed', job.failedReason);
    const wf = (await http<WorkflowView>(`${a.url}/debug/workflow?job_id=${second.id}`)).body;
    const cached = wf.nodes.filter((n) => n.status === 'cached').map((n) => n.id);
    assert.ok(cached.includes('CheckpointLoaderSimple_4'), `cached: ${cached.join(',')}`);
    assert.equal(wf.nodes_completed, wf.nodes_total, JSON.stringify(wf.nodes.map((n) => [n.id, n.status])));
    const result = job.returnvalue as { artifacts: { name: string; content_type: string; sha256: string }[] };
    const types = result.artifacts.map((x) => x.content_type).sort();
    assert.ok(
      types.some((t) => t.startsWith('video/')),
      `a video: ${types.join(',')}`,
    );
    assert.ok(
      types.some((t) => t.startsWith('audio/')),
      `an audio file: ${types.join(',')}`,
    );
    for (const art of result.artifacts) {
      const bytes = readFileSync(path.join(c.artifactsDir, art.name));
      assert.equal(art.sha256, sha256(bytes), art.name);
    }
  });

  it('keeps an execution error whole: job failure, node error with traceback, log record', async () => {
    c.comfy = await startFakeComfyUI({ baseDir: tempDir('gpa-comfy-'), stepDelayMs: 2 });
    c.comfy.script('*', {
      error: { node: '3', atStep: 3, exceptionType: 'torch.OutOfMemoryError', message: 'CUDA out of memory' },
    });
    const a = await agent();
    const added = await c.queue.add('txt2img', { workflow: txt2img(8) }, { attempts: 1 });
    const id = added.id as string;
    const job = await finished(c.queue, id);
    assert.equal(await job.getState(), 'failed');
    assert.match(job.failedReason, /KSampler_3: torch.OutOfMemoryError: CUDA out of memory/);
    const wf = (await http<WorkflowView>(`${a.url}/debug/workflow?job_id=${id}`)).body;
    const sampler = wf.nodes.find((n) => n.id === 'KSampler_3')!;
    assert.equal(sampler.status, 'failed');
    // ComfyUI adds its advice to an out-of-memory message.
    assert.match(sampler.error?.message ?? '', /^CUDA out of memory/);
    assert.equal(sampler.error?.exception_type, 'torch.OutOfMemoryError');
    assert.ok((sampler.error?.traceback ?? []).length > 0, 'traceback kept');
    const q = await eventually(async () => {
      const r = await http<{
        recent: { job_id: string; failure: { type: string; details?: { node_type?: string } } | null }[];
      }>(`${a.url}/debug/queue`);
      return r.body.recent.find((j) => j.job_id === id);
    });
    assert.equal(q.failure?.type, 'torch.OutOfMemoryError');
    const logs = await http<{ records: { message: string; node_id?: string }[] }>(
      `${a.url}/debug/logs?job_id=${id}&level=error`,
    );
    assert.ok(logs.body.records.some((r) => r.node_id === '3' && /CUDA out of memory/.test(r.message)));
  });

  it('follows a ComfyUI that chooses its own prompt ids', async () => {
    c.comfy = await startFakeComfyUI({ baseDir: tempDir('gpa-comfy-'), stepDelayMs: 5, ownPromptIds: true });
    const a = await agent();
    const added = await c.queue.add('txt2img', { workflow: txt2img(6) });
    const job = await finished(c.queue, added.id as string);
    assert.equal(await job.getState(), 'completed', job.failedReason);
    const result = job.returnvalue as { prompt_id: string; artifacts: unknown[] };
    assert.notEqual(result.prompt_id, added.id);
    assert.equal(result.artifacts.length, 1);
    const wf = (await http<WorkflowView>(`${a.url}/debug/workflow?job_id=${added.id}`)).body;
    assert.equal(wf.nodes_completed, 7);
    assert.deepEqual(wf.nodes.find((n) => n.id === 'KSampler_3')?.progress, { steps: 6, total: 6 });
  });

  it("uploads the job's input images before the workflow that loads them", async () => {
    c.comfy = await startFakeComfyUI({ baseDir: tempDir('gpa-comfy-'), stepDelayMs: 2 });
    await agent();
    const png = encodePng(64, 64, [200, 30, 30]);
    const img2img = {
      ...txt2img(4, 'img2img'),
      '10': { class_type: 'LoadImage', inputs: { image: 'input-face.png' } },
      '11': { class_type: 'VAEEncode', inputs: { pixels: ['10', 0], vae: ['4', 2] } },
    } as Record<string, { class_type: string; inputs: Record<string, unknown> }>;
    img2img['3']!.inputs.latent_image = ['11', 0];
    delete img2img['5'];
    const added = await c.queue.add('img2img', {
      workflow: img2img,
      images: [{ name: 'input-face.png', image: `data:image/png;base64,${png.toString('base64')}` }],
    });
    const job = await finished(c.queue, added.id as string);
    assert.equal(await job.getState(), 'completed', job.failedReason);
    assert.deepEqual(readFileSync(path.join(c.comfy.baseDir, 'input', 'input-face.png')), png);
  });

  it('fails a workflow ComfyUI refuses (400 with node_errors) without retrying it', async () => {
    c.comfy = await startFakeComfyUI({ baseDir: tempDir('gpa-comfy-'), stepDelayMs: 2 });
    const a = await agent();
    const bad = txt2img(4) as Record<string, { class_type: string; inputs: Record<string, unknown> }>;
    delete bad['3']!.inputs.model;
    const added = await c.queue.add('bad', { workflow: bad }, { attempts: 3 });
    const job = await finished(c.queue, added.id as string);
    assert.equal(await job.getState(), 'failed');
    assert.equal(job.attemptsMade, 1, 'not retried');
    assert.match(job.failedReason, /KSampler_3/);
    const wf = (await http<WorkflowView>(`${a.url}/debug/workflow?job_id=${added.id}`)).body;
    assert.equal(wf.nodes.find((n) => n.id === 'KSampler_3')?.status, 'failed');
    // Bad job data never reaches ComfyUI.
    const nodata = await c.queue.add('nodata', { prompt: 'no workflow' }, { attempts: 3 });
    const j2 = await finished(c.queue, nodata.id as string);
    assert.match(j2.failedReason, /no `workflow`/);
    assert.equal(j2.attemptsMade, 1);
    assert.equal(c.comfy.submitted.length, 0);
  });

  it('interrupts the prompt in ComfyUI when the job is canceled', async () => {
    c.comfy = await startFakeComfyUI({ baseDir: tempDir('gpa-comfy-'), stepDelayMs: 2 });
    c.comfy.script('*', { hangAt: { node: '3', step: 2 } });
    const a = await agent();
    const added = await c.queue.add('txt2img', { workflow: txt2img(8) });
    const id = added.id as string;
    await eventually(async () => {
      const r = await http<WorkflowView>(`${a.url}/debug/workflow?job_id=${id}`);
      return r.body.current_node === 'KSampler_3' || undefined;
    });
    const cancel = await http(`${a.url}/debug/queue/jobs/${id}/cancel?reason=user`, { method: 'POST' });
    assert.equal(cancel.status, 202);
    const job = await finished(c.queue, id);
    assert.equal(await job.getState(), 'failed');
    assert.match(job.failedReason, /canceled: user/);
    assert.deepEqual(c.comfy.interrupts, [{ prompt_id: id }]);
    const wf = (await http<WorkflowView>(`${a.url}/debug/workflow?job_id=${id}`)).body;
    assert.equal(wf.nodes.find((n) => n.id === 'KSampler_3')?.status, 'interrupted');
  });

  it('rebuilds a run from /history after the socket drops mid-node, and after a silent socket', async () => {
    c.comfy = await startFakeComfyUI({ baseDir: tempDir('gpa-comfy-'), stepDelayMs: 20 });
    const a = await agent({ COMFYUI_SILENCE_MS: '500' });
    c.comfy.script('drop', { dropSocketsAt: { node: '3', step: 3 } });
    const dropped = await c.queue.add('txt2img', { workflow: txt2img(10) }, { jobId: 'drop' });
    const j1 = await finished(c.queue, dropped.id as string);
    assert.equal(await j1.getState(), 'completed', j1.failedReason);
    assert.equal((j1.returnvalue as { artifacts: unknown[] }).artifacts.length, 1);
    c.comfy.script('quiet', { silentAfter: { node: '3', step: 2 } });
    // Other steps than the first run, so the sampler runs again instead of being cached.
    const quiet = await c.queue.add('txt2img', { workflow: txt2img(11, 'quiet') }, { jobId: 'quiet' });
    const j2 = await finished(c.queue, quiet.id as string);
    assert.equal(await j2.getState(), 'completed', j2.failedReason);
    const wf = (await http<WorkflowView>(`${a.url}/debug/workflow?job_id=quiet`)).body;
    assert.equal(wf.progress_percent, 100);
    assert.equal(wf.nodes.find((n) => n.id === 'SaveImage_9')?.status, 'completed');
    const view = (await http<{ comfyui: { resyncs: number } }>(`${a.url}/debug/queue`)).body;
    assert.ok(view.comfyui.resyncs >= 2, `resyncs: ${view.comfyui.resyncs}`);
  });

  it('replaces a websocket that stopped answering without closing, and finishes the run', async () => {
    c.comfy = await startFakeComfyUI({ baseDir: tempDir('gpa-comfy-'), stepDelayMs: 40 });
    const proxy = await blackholeProxy(new URL(c.comfy.url).port);
    try {
      const a = await agent({ COMFYUI_URL: proxy.url, COMFYUI_SILENCE_MS: '400' });
      const added = await c.queue.add('txt2img', { workflow: txt2img(20) });
      const id = added.id as string;
      await eventually(async () => {
        const r = await http<WorkflowView>(`${a.url}/debug/workflow?job_id=${id}`);
        const steps = r.body.nodes.find((n) => n.id === 'KSampler_3')?.progress?.steps ?? 0;
        return steps >= 2 || undefined;
      });
      // Every connection open now goes quiet, as behind a NAT that forgot it; nothing is closed.
      proxy.blackhole();
      const job = await finished(c.queue, id);
      assert.equal(await job.getState(), 'completed', job.failedReason);
      const wf = (await http<WorkflowView>(`${a.url}/debug/workflow?job_id=${id}`)).body;
      assert.equal(wf.nodes_completed, 7);
      const view = (
        await http<{ comfyui: { websocket_opens: number; websocket: string } }>(`${a.url}/debug/queue`)
      ).body;
      assert.ok(view.comfyui.websocket_opens >= 2, `opens: ${view.comfyui.websocket_opens}`);
      assert.equal(view.comfyui.websocket, 'open');
    } finally {
      proxy.close();
    }
  });

  it('takes no job while ComfyUI is down (/ready says so), then runs it once ComfyUI is up', async () => {
    const port = await freePort();
    const a = await agent({ COMFYUI_URL: `http://127.0.0.1:${port}` });
    const ready = await eventually(async () => {
      const r = await http<{ status: string; checks: { comfyui?: { status: string; reason: string } } }>(
        `${a.url}/ready`,
      );
      return r.body.checks.comfyui ? r : undefined;
    });
    assert.equal(ready.status, 503);
    assert.equal(ready.body.checks.comfyui?.status, 'starting');
    assert.match(ready.body.checks.comfyui?.reason ?? '', /waiting for ComfyUI/);
    const added = await c.queue.add('txt2img', { workflow: txt2img(2) });
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(await added.getState(), 'waiting', 'left in the queue for pods that can run it');
    c.comfy = await startFakeComfyUI({ baseDir: tempDir('gpa-comfy-'), port, stepDelayMs: 2 });
    const job = await finished(c.queue, added.id as string);
    assert.equal(await job.getState(), 'completed', job.failedReason);
    const after = await http<{ checks: { comfyui: { status: string } } }>(`${a.url}/ready`);
    assert.equal(after.body.checks.comfyui.status, 'ok');
  });

  it('hands a running job back on SIGTERM after interrupting its prompt', async () => {
    c.comfy = await startFakeComfyUI({ baseDir: tempDir('gpa-comfy-'), stepDelayMs: 2 });
    c.comfy.script('*', { hangAt: { node: '3', step: 1 } });
    const a = await agent({ DRAIN_TIMEOUT_MS: '300' });
    const added = await c.queue.add('txt2img', { workflow: txt2img(8) }, { attempts: 2 });
    const id = added.id as string;
    await eventually(async () => {
      const r = await http<WorkflowView>(`${a.url}/debug/workflow?job_id=${id}`);
      return r.body.current_node === 'KSampler_3' || undefined;
    });
    const exit = await a.stop();
    c.agent = undefined;
    assert.equal(exit.code, 0);
    assert.deepEqual(c.comfy.interrupts, [{ prompt_id: id }]);
    const job = await c.queue.getJob(id);
    assert.equal(await job?.getState(), 'waiting');
    assert.equal(job?.attemptsMade, 0, 'no attempt spent');
  });
});
