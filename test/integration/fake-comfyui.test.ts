import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { WebSocket } from 'ws';
import { startFakeComfyUI } from '../fakes/comfyui/fake-comfyui.js';
import type { FakeComfyUI } from '../fakes/comfyui/fake-comfyui.js';
import { tempDir } from '../helpers/agent.js';
import { FIXTURES } from '../helpers/fixtures.js';

type Msg = { type: string; data: Record<string, unknown> };
type Frame = Msg | Buffer;

/** A websocket client that keeps every frame it receives. */
class Client {
  readonly frames: Frame[] = [];
  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      this.frames.push(isBinary ? Buffer.from(data) : (JSON.parse(data.toString('utf8')) as Msg));
    });
  }

  static async connect(fake: FakeComfyUI, clientId?: string): Promise<Client> {
    const ws = new WebSocket(
      `${fake.url.replace('http', 'ws')}/ws${clientId ? `?clientId=${clientId}` : ''}`,
    );
    const c = new Client(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    return c;
  }

  get messages(): Msg[] {
    return this.frames.filter((f): f is Msg => !Buffer.isBuffer(f));
  }

  async until(pred: (m: Msg) => boolean, timeoutMs = 10_000): Promise<Msg> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.messages.find(pred);
      if (hit) return hit;
      if (Date.now() > deadline)
        throw new Error(`no such message; got ${this.messages.map((m) => m.type).join(',')}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  done(promptId: string): Promise<Msg> {
    return this.until((m) => m.type === 'executing' && m.data.node === null && m.data.prompt_id === promptId);
  }

  /** Frames of one run: from its execution_start up to its `executing` null. */
  run(promptId: string): Frame[] {
    const start = this.frames.findIndex(
      (f) => !Buffer.isBuffer(f) && f.type === 'execution_start' && f.data.prompt_id === promptId,
    );
    const end = this.frames.findIndex(
      (f) =>
        !Buffer.isBuffer(f) &&
        f.type === 'executing' &&
        f.data.node === null &&
        f.data.prompt_id === promptId,
    );
    return this.frames.slice(start, end + 1);
  }

  close(): void {
    this.ws.close();
  }
}

function txt2img(seed = 42, steps = 4): Record<string, unknown> {
  return {
    '3': {
      class_type: 'KSampler',
      inputs: {
        seed,
        steps,
        cfg: 8,
        sampler_name: 'euler',
        scheduler: 'normal',
        denoise: 1,
        model: ['4', 0],
        positive: ['6', 0],
        negative: ['7', 0],
        latent_image: ['5', 0],
      },
    },
    '4': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'v1-5-pruned-emaonly.safetensors' } },
    '5': { class_type: 'EmptyLatentImage', inputs: { width: 512, height: 512, batch_size: 1 } },
    '6': { class_type: 'CLIPTextEncode', inputs: { text: 'a lighthouse', clip: ['4', 1] } },
    '7': { class_type: 'CLIPTextEncode', inputs: { text: 'blurry', clip: ['4', 1] } },
    '8': { class_type: 'VAEDecode', inputs: { samples: ['3', 0], vae: ['4', 2] } },
    '9': { class_type: 'SaveImage', inputs: { filename_prefix: 'ComfyUI', images: ['8', 0] } },
  };
}

async function post(
  fake: FakeComfyUI,
  route: string,
  body: unknown,
): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`${fake.url}${route}`, { method: 'POST', body: JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as unknown) : undefined };
}

async function getJson<T>(fake: FakeComfyUI, route: string): Promise<T> {
  const res = await fetch(`${fake.url}${route}`);
  assert.equal(res.status, 200);
  return (await res.json()) as T;
}

const types = (frames: Frame[]): string[] =>
  frames.filter((f): f is Msg => !Buffer.isBuffer(f) && f.type !== 'progress_state').map((m) => m.type);

describe('fake ComfyUI', function () {
  let fake: FakeComfyUI;
  let client: Client;

  beforeEach(async function () {
    fake = await startFakeComfyUI({
      baseDir: tempDir('fake-comfyui-'),
      stepDelayMs: 2,
      nodeDelayMs: 1,
      previewSize: 64,
    });
    client = await Client.connect(fake, 'agent-test');
  });
  afterEach(async function () {
    client.close();
    await fake.close();
  });

  it('greets a socket with status carrying its sid', async function () {
    const first = await client.until((m) => m.type === 'status');
    assert.deepEqual(first, {
      type: 'status',
      data: { status: { exec_info: { queue_remaining: 0 } }, sid: 'agent-test' },
    });
    const anon = await Client.connect(fake);
    const hello = await anon.until((m) => m.type === 'status');
    assert.match(String(hello.data.sid), /^[0-9a-f]{32}$/);
    anon.close();
  });

  it('runs txt2img with the real message order and shapes, then keeps history and serves the file', async function () {
    const r = await post(fake, '/prompt', { prompt: txt2img(), client_id: 'agent-test', prompt_id: 'job-1' });
    assert.deepEqual(r, { status: 200, body: { prompt_id: 'job-1', number: 0, node_errors: {} } });
    await client.done('job-1');

    // greeting, the POST's queue_updated, the worker's pick-up, the end of the run
    const remaining = client.messages
      .filter((m) => m.type === 'status')
      .map((m) => (m.data.status as { exec_info: { queue_remaining: number } }).exec_info.queue_remaining);
    assert.deepEqual(remaining, [0, 1, 1, 0]);

    const run = client.run('job-1');
    const steps = ['progress', 'progress', 'progress', 'progress'];
    assert.deepEqual(types(run), [
      'execution_start',
      'execution_cached',
      'executing',
      'executing',
      'executing',
      'executing',
      'executing',
      ...steps,
      'executing',
      'executing',
      'executed',
      'execution_success',
      'status',
      'executing',
    ]);
    const executing = run
      .filter((f): f is Msg => !Buffer.isBuffer(f) && f.type === 'executing')
      .map((m) => m.data.node);
    assert.deepEqual(executing, ['4', '5', '7', '6', '3', '8', '9', null]);

    const start = run[0] as Msg;
    assert.equal(start.data.prompt_id, 'job-1');
    assert.ok(Number.isInteger(start.data.timestamp));
    assert.deepEqual((run[1] as Msg).data.nodes, []);

    // each node: progress_state (running) then executing {node, display_node, prompt_id}
    const iExec3 = run.findIndex((f) => !Buffer.isBuffer(f) && f.type === 'executing' && f.data.node === '3');
    const before = run[iExec3 - 1] as Msg;
    assert.equal(before.type, 'progress_state');
    const ps = before.data.nodes as Record<string, Record<string, unknown>>;
    assert.deepEqual(ps['3'], {
      value: 0,
      max: 1,
      state: 'running',
      node_id: '3',
      prompt_id: 'job-1',
      display_node_id: '3',
      parent_node_id: null,
      real_node_id: '3',
    });
    assert.deepEqual((run[iExec3] as Msg).data, { node: '3', display_node: '3', prompt_id: 'job-1' });

    // per step: progress_state, progress, binary preview [1][1][JPEG]
    const p1 = run.findIndex((f) => !Buffer.isBuffer(f) && f.type === 'progress');
    assert.equal((run[p1 - 1] as Msg).type, 'progress_state');
    assert.deepEqual((run[p1] as Msg).data, { value: 1, max: 4, prompt_id: 'job-1', node: '3' });
    const frame = run[p1 + 1];
    assert.ok(Buffer.isBuffer(frame));
    assert.equal(frame.readUInt32BE(0), 1);
    assert.equal(frame.readUInt32BE(4), 1);
    assert.deepEqual([...frame.subarray(8, 10)], [0xff, 0xd8]);
    assert.equal(run.filter((f) => Buffer.isBuffer(f)).length, 4);

    const executed = run.find((f): f is Msg => !Buffer.isBuffer(f) && f.type === 'executed');
    const image = { filename: 'ComfyUI_00001_.png', subfolder: '', type: 'output' };
    assert.deepEqual(executed?.data, {
      node: '9',
      display_node: '9',
      output: { images: [image] },
      prompt_id: 'job-1',
    });
    assert.deepEqual((run[run.length - 1] as Msg).data, { node: null, prompt_id: 'job-1' });

    const history = await getJson<Record<string, Record<string, unknown>>>(fake, '/history/job-1');
    const entry = history['job-1'];
    assert.ok(entry);
    assert.deepEqual(Object.keys(entry), ['prompt', 'outputs', 'status', 'meta']);
    const tuple = entry.prompt as unknown[];
    assert.equal(tuple[0], 0);
    assert.equal(tuple[1], 'job-1');
    assert.deepEqual(tuple[3], { client_id: 'agent-test' });
    assert.deepEqual(tuple[4], ['9']);
    assert.deepEqual(entry.outputs, { '9': { images: [image] } });
    assert.deepEqual(entry.meta, {
      '9': { node_id: '9', display_node: '9', parent_node: null, real_node_id: '9' },
    });
    const status = entry.status as {
      status_str: string;
      completed: boolean;
      messages: [string, Record<string, unknown>][];
    };
    assert.equal(status.status_str, 'success');
    assert.equal(status.completed, true);
    assert.deepEqual(
      status.messages.map(([t]) => t),
      ['execution_start', 'execution_cached', 'execution_success'],
    );
    assert.deepEqual(await getJson(fake, '/history/nope'), {});

    const onDisk = readFileSync(path.join(fake.baseDir, 'output', 'ComfyUI_00001_.png'));
    const res = await fetch(`${fake.url}/view?filename=ComfyUI_00001_.png&subfolder=&type=output`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'image/png');
    const served = Buffer.from(await res.arrayBuffer());
    const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
    assert.equal(sha(served), sha(onDisk));
    assert.equal((await fetch(`${fake.url}/view?filename=../output/ComfyUI_00001_.png`)).status, 400);
    // a subfolder may climb out and back in (as os.path.commonpath allows), but not out of the folder
    assert.equal(
      (await fetch(`${fake.url}/view?filename=ComfyUI_00001_.png&subfolder=../output`)).status,
      200,
    );
    assert.equal((await fetch(`${fake.url}/view?filename=ComfyUI_00001_.png&subfolder=../temp`)).status, 403);
    assert.equal((await fetch(`${fake.url}/view?filename=passwd&subfolder=/etc`)).status, 403);
    assert.equal((await fetch(`${fake.url}/view?filename=%2Fetc%2Fpasswd`)).status, 400);
    assert.equal((await fetch(`${fake.url}/view?filename=ComfyUI_00001_.png&type=bogus`)).status, 400);
    assert.equal((await fetch(`${fake.url}/view?filename=missing.png`)).status, 404);
    assert.equal((await fetch(`${fake.url}/api/view?filename=ComfyUI_00001_.png`)).status, 200);
  });

  it('reports cached nodes for an identical prompt and replays the cached output', async function () {
    await post(fake, '/prompt', { prompt: txt2img(), client_id: 'agent-test', prompt_id: 'first' });
    await client.done('first');
    await post(fake, '/prompt', { prompt: txt2img(), client_id: 'agent-test', prompt_id: 'second' });
    await client.done('second');
    const run = client.run('second');
    const cached = run.find((f): f is Msg => !Buffer.isBuffer(f) && f.type === 'execution_cached');
    assert.deepEqual(cached?.data.nodes, ['3', '4', '5', '6', '7', '8', '9']);
    assert.deepEqual(types(run), [
      'execution_start',
      'execution_cached',
      'executed',
      'execution_success',
      'status',
      'executing',
    ]);
    const executed = run.find((f): f is Msg => !Buffer.isBuffer(f) && f.type === 'executed');
    assert.deepEqual(executed?.data.output, {
      images: [{ filename: 'ComfyUI_00001_.png', subfolder: '', type: 'output' }],
    });
    assert.equal(existsSync(path.join(fake.baseDir, 'output', 'ComfyUI_00002_.png')), false);

    // a new seed re-runs the sampler and everything after it only
    await post(fake, '/prompt', { prompt: txt2img(7), client_id: 'agent-test', prompt_id: 'third' });
    await client.done('third');
    const third = client.run('third');
    assert.deepEqual((third[1] as Msg).data.nodes, ['4', '5', '6', '7']);
    const ran = third
      .filter((f): f is Msg => !Buffer.isBuffer(f) && f.type === 'executing')
      .map((m) => m.data.node);
    assert.deepEqual(ran, ['3', '8', '9', null]);
    assert.ok(existsSync(path.join(fake.baseDir, 'output', 'ComfyUI_00002_.png')));
  });

  it('answers 400 with error and node_errors as ComfyUI validates', async function () {
    const unknown = await post(fake, '/prompt', {
      prompt: { '1': { class_type: 'NoSuchNode', inputs: {} } },
      client_id: 'agent-test',
    });
    assert.deepEqual(unknown, {
      status: 400,
      body: {
        error: {
          type: 'invalid_prompt',
          message: 'Cannot execute because node NoSuchNode does not exist.',
          details: "Node ID '#1'",
          extra_info: {},
        },
        node_errors: {},
      },
    });

    const p = txt2img();
    delete (p['5'] as { inputs: Record<string, unknown> }).inputs.width;
    (p['3'] as { inputs: Record<string, unknown> }).inputs.sampler_name = 'nope';
    const missing = await post(fake, '/prompt', { prompt: p, client_id: 'agent-test' });
    assert.equal(missing.status, 400);
    const body = missing.body as {
      error: Record<string, unknown>;
      node_errors: Record<string, Record<string, unknown>>;
    };
    assert.equal(body.error.type, 'prompt_outputs_failed_validation');
    assert.equal(body.error.message, 'Prompt outputs failed validation');
    assert.deepEqual(Object.keys(body.node_errors).sort(), ['3', '5']);
    assert.deepEqual(body.node_errors['5'], {
      errors: [
        {
          type: 'required_input_missing',
          message: 'Required input is missing',
          details: 'width',
          extra_info: { input_name: 'width' },
        },
      ],
      dependent_outputs: ['9'],
      class_type: 'EmptyLatentImage',
    });
    const samplerErrors = body.node_errors['3']?.errors as Record<string, unknown>[];
    assert.equal(samplerErrors[0]?.type, 'value_not_in_list');
    assert.equal(samplerErrors[0]?.details, "sampler_name: 'nope' not in (list of length 42)");

    const badLink = txt2img();
    (badLink['9'] as { inputs: Record<string, unknown> }).inputs.images = ['99', 0];
    const linked = await post(fake, '/prompt', { prompt: badLink, client_id: 'agent-test' });
    assert.equal(linked.status, 400);
    const lb = linked.body as {
      error: Record<string, unknown>;
      node_errors: Record<string, { errors: Record<string, unknown>[] }>;
    };
    assert.equal(lb.error.details, "Exception when validating node: '99'");
    assert.equal(lb.node_errors['9']?.errors[0]?.type, 'exception_during_validation');

    assert.deepEqual((await post(fake, '/prompt', { client_id: 'x' })).body, {
      error: {
        type: 'no_prompt',
        message: 'No prompt provided',
        details: 'No prompt provided',
        extra_info: {},
      },
      node_errors: {},
    });
    const noOutputs = await post(fake, '/prompt', { prompt: { '4': txt2img()['4'] } });
    assert.equal((noOutputs.body as { error: { type: string } }).error.type, 'prompt_no_outputs');
    const garbage = await fetch(`${fake.url}/prompt`, { method: 'POST', body: '{not json' });
    assert.equal(garbage.status, 500);
    assert.equal(fake.submitted.length, 0);
    assert.deepEqual(await getJson(fake, '/queue'), { queue_running: [], queue_pending: [] });
  });

  it('interrupts the running prompt mid-sampler, and only that prompt', async function () {
    fake.script('job-1', { hangAt: { node: '3', step: 2 } });
    await post(fake, '/prompt', { prompt: txt2img(1, 10), client_id: 'agent-test', prompt_id: 'job-1' });
    await post(fake, '/prompt', { prompt: txt2img(2, 3), client_id: 'agent-test', prompt_id: 'job-2' });
    await client.until((m) => m.type === 'progress' && m.data.value === 2);

    const queue = await getJson<{ queue_running: unknown[][]; queue_pending: unknown[][] }>(fake, '/queue');
    assert.deepEqual(
      queue.queue_running.map((t) => t[1]),
      ['job-1'],
    );
    assert.deepEqual(
      queue.queue_pending.map((t) => t[1]),
      ['job-2'],
    );

    assert.equal((await post(fake, '/interrupt', { prompt_id: 'job-2' })).status, 200);
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(
      client.messages.some((m) => m.type === 'execution_interrupted'),
      false,
    );

    assert.equal((await post(fake, '/interrupt', { prompt_id: 'job-1' })).status, 200);
    await client.done('job-1');
    const run = client.run('job-1');
    const progress = run.filter((f): f is Msg => !Buffer.isBuffer(f) && f.type === 'progress');
    assert.equal(progress.length, 2);
    const interrupted = run.find((f): f is Msg => !Buffer.isBuffer(f) && f.type === 'execution_interrupted');
    assert.ok(interrupted);
    assert.deepEqual(
      { ...interrupted.data, timestamp: 0 },
      {
        prompt_id: 'job-1',
        node_id: '3',
        node_type: 'KSampler',
        executed: ['4', '5', '7', '6'],
        timestamp: 0,
      },
    );
    assert.equal(
      run.some((f) => !Buffer.isBuffer(f) && f.type === 'execution_success'),
      false,
    );
    assert.deepEqual(fake.interrupts, [{ prompt_id: 'job-2' }, { prompt_id: 'job-1' }]);

    const h = await getJson<
      Record<string, { status: { status_str: string; completed: boolean; messages: [string][] } }>
    >(fake, '/history/job-1');
    assert.equal(h['job-1']?.status.status_str, 'error');
    assert.equal(h['job-1']?.status.completed, false);
    assert.deepEqual(
      h['job-1']?.status.messages.map(([t]) => t),
      ['execution_start', 'execution_cached', 'execution_interrupted'],
    );

    // the next prompt runs normally: the interrupt flag is cleared when it starts
    await client.done('job-2');
    assert.ok(client.run('job-2').some((f) => !Buffer.isBuffer(f) && f.type === 'execution_success'));
  });

  it('reports a scripted sampler failure as execution_error', async function () {
    fake.script('*', {
      error: {
        node: '3',
        atStep: 3,
        exceptionType: 'torch.OutOfMemoryError',
        message: 'CUDA out of memory.',
      },
    });
    await post(fake, '/prompt', { prompt: txt2img(), client_id: 'agent-test', prompt_id: 'job-1' });
    await client.done('job-1');
    const err = client.messages.find((m) => m.type === 'execution_error');
    assert.ok(err);
    assert.deepEqual(Object.keys(err.data), [
      'prompt_id',
      'node_id',
      'node_type',
      'executed',
      'exception_message',
      'exception_type',
      'traceback',
      'current_inputs',
      'current_outputs',
      'timestamp',
    ]);
    assert.equal(err.data.node_id, '3');
    assert.equal(err.data.exception_type, 'torch.OutOfMemoryError');
    assert.match(
      String(err.data.exception_message),
      /^CUDA out of memory\.\nThis error means you ran out of memory/,
    );
    assert.ok(Array.isArray(err.data.traceback) && err.data.traceback.every((l) => typeof l === 'string'));
    assert.deepEqual((err.data.current_inputs as Record<string, unknown[]>).steps, [4]);
    assert.equal(client.messages.filter((m) => m.type === 'progress').length, 2);
  });

  it('replays a recorded sequence verbatim', async function () {
    const fixture = JSON.parse(
      readFileSync(path.join(FIXTURES, 'comfyui', 'txt2img-cached.json'), 'utf8'),
    ) as {
      prompt: Record<string, unknown>;
      messages: (Msg | { binary: string })[];
      history: Record<string, unknown>;
    };
    const expected: Frame[] = fixture.messages.map((m) =>
      'binary' in m ? Buffer.from(m.binary, 'base64') : m,
    );
    fake.replay('job-1', expected, { delayMs: 1, history: fixture.history });
    await post(fake, '/prompt', { prompt: fixture.prompt, client_id: 'agent-test', prompt_id: 'job-1' });
    await client.done('job-1');
    await fake.idle();
    // the greeting and the POST's own status come first; then the recorded run, frame for frame
    assert.deepEqual(client.frames.slice(2), expected);
    assert.deepEqual(await getJson(fake, '/history/job-1'), { 'job-1': fixture.history });
  });

  it('handles subgraph ids, uploads, video and audio outputs', async function () {
    const form = new FormData();
    // upload an image produced by a first run, then feed it to LoadImage inside a flattened subgraph
    await post(fake, '/prompt', { prompt: txt2img(), client_id: 'agent-test', prompt_id: 'make' });
    await client.done('make');
    const made = readFileSync(path.join(fake.baseDir, 'output', 'ComfyUI_00001_.png'));
    form.append('image', new Blob([made], { type: 'image/png' }), 'source.png');
    form.append('subfolder', 'uploads');
    form.append('type', 'input');
    const up = await fetch(`${fake.url}/upload/image`, { method: 'POST', body: form });
    assert.deepEqual(await up.json(), { name: 'source.png', subfolder: 'uploads', type: 'input' });

    const prompt = {
      '4': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'v1-5-pruned-emaonly.safetensors' } },
      '12:1': { class_type: 'LoadImage', inputs: { image: 'uploads/source.png' } },
      '12:2': { class_type: 'VAEEncode', inputs: { pixels: ['12:1', 0], vae: ['4', 2] } },
      '12:3': { class_type: 'VAEDecode', inputs: { samples: ['12:2', 0], vae: ['4', 2] } },
      '20': { class_type: 'CreateVideo', inputs: { images: ['12:3', 0], fps: 8 } },
      '21': {
        class_type: 'SaveVideo',
        inputs: { video: ['20', 0], filename_prefix: 'video/ComfyUI', format: 'auto', codec: 'auto' },
      },
      '30': { class_type: 'EmptyLatentAudio', inputs: { seconds: 2, batch_size: 1 } },
      '31': { class_type: 'VAEDecodeAudio', inputs: { samples: ['30', 0], vae: ['4', 2] } },
      '32': { class_type: 'SaveAudio', inputs: { audio: ['31', 0], filename_prefix: 'audio/ComfyUI' } },
    };
    const r = await post(fake, '/prompt', { prompt, client_id: 'agent-test', prompt_id: 'media' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    await client.done('media');
    const run = client.run('media');
    const exec = run.find(
      (f): f is Msg => !Buffer.isBuffer(f) && f.type === 'executing' && f.data.node === '12:2',
    );
    assert.deepEqual(exec?.data, { node: '12:2', display_node: '12:2', prompt_id: 'media' });
    const h = await getJson<Record<string, { outputs: Record<string, unknown> }>>(fake, '/history/media');
    assert.deepEqual(h.media?.outputs, {
      '21': {
        images: [{ filename: 'ComfyUI_00001_.mp4', subfolder: 'video', type: 'output' }],
        animated: [true],
      },
      '32': { audio: [{ filename: 'ComfyUI_00001_.flac', subfolder: 'audio', type: 'output' }] },
    });
    const flac = await fetch(`${fake.url}/view?filename=ComfyUI_00001_.flac&subfolder=audio&type=output`);
    assert.equal(flac.headers.get('content-type'), 'audio/flac');
    assert.equal(
      Buffer.from(await flac.arrayBuffer())
        .subarray(0, 4)
        .toString('latin1'),
      'fLaC',
    );
  });

  it('stringifies a client-chosen prompt_id and routes events by client_id only', async function () {
    const other = await Client.connect(fake, 'someone-else');
    const r = await post(fake, '/prompt', { prompt: txt2img(), client_id: 'agent-test', prompt_id: 12345 });
    assert.equal((r.body as { prompt_id: string }).prompt_id, '12345');
    await client.done('12345');
    assert.deepEqual([...new Set(other.messages.map((m) => m.type))], ['status']);
    other.close();
  });

  it('drops sockets mid-run; a client reconnecting with its clientId gets status and the running node', async function () {
    fake.script('job-1', { dropSocketsAt: { node: '3', step: 1 }, hangAt: { node: '3', step: 1 } });
    const closed = new Promise<number>((resolve) => client.ws.once('close', (code: number) => resolve(code)));
    await post(fake, '/prompt', { prompt: txt2img(), client_id: 'agent-test', prompt_id: 'job-1' });
    assert.equal(await closed, 1006);
    const again = await Client.connect(fake, 'agent-test');
    await again.until((m) => m.type === 'executing');
    assert.deepEqual(again.messages.slice(0, 2), [
      { type: 'status', data: { status: { exec_info: { queue_remaining: 1 } }, sid: 'agent-test' } },
      { type: 'executing', data: { node: '3' } },
    ]);
    await post(fake, '/interrupt', {});
    await again.done('job-1');
    assert.ok(again.messages.some((m) => m.type === 'execution_interrupted'));
    again.close();
  });

  it('goes silent on the socket but still finishes and records history', async function () {
    fake.script('job-1', { silentAfter: { node: '3' } });
    await post(fake, '/prompt', { prompt: txt2img(), client_id: 'agent-test', prompt_id: 'job-1' });
    await client.until((m) => m.type === 'executing' && m.data.node === '3');
    await fake.idle();
    const last = client.frames[client.frames.length - 1] as Msg;
    assert.deepEqual(last.data, { node: '3', display_node: '3', prompt_id: 'job-1' });
    const h = await getJson<Record<string, { status: { status_str: string } }>>(fake, '/history/job-1');
    assert.equal(h['job-1']?.status.status_str, 'success');
  });

  it('sends previews with metadata (event 4) to a client that announced supports_preview_metadata', async function () {
    const meta = await Client.connect(fake, 'meta');
    meta.ws.send(JSON.stringify({ type: 'feature_flags', data: { supports_preview_metadata: true } }));
    const flags = await meta.until((m) => m.type === 'feature_flags');
    assert.deepEqual(flags.data, { supports_preview_metadata: true, max_upload_size: 104857600 });
    await post(fake, '/prompt', { prompt: txt2img(1, 2), client_id: 'meta', prompt_id: 'job-1' });
    await meta.done('job-1');
    const run = meta.run('job-1');
    const i = run.findIndex((f) => Buffer.isBuffer(f));
    const frame = run[i] as Buffer;
    assert.equal(frame.readUInt32BE(0), 4);
    const len = frame.readUInt32BE(4);
    assert.deepEqual(JSON.parse(frame.subarray(8, 8 + len).toString('utf8')), {
      node_id: '3',
      prompt_id: 'job-1',
      display_node_id: '3',
      parent_node_id: null,
      real_node_id: '3',
      image_type: 'image/jpeg',
    });
    assert.deepEqual([...frame.subarray(8 + len, 10 + len)], [0xff, 0xd8]);
    assert.equal((run[i - 1] as Msg).type, 'progress_state');
    assert.equal((run[i + 1] as Msg).type, 'progress');
    meta.close();
  });

  it('without client_id broadcasts progress, progress_state, previews and status only', async function () {
    await post(fake, '/prompt', { prompt: txt2img(1, 2), prompt_id: 'anon' });
    await fake.idle();
    assert.deepEqual([...new Set(client.messages.map((m) => m.type))].sort(), [
      'progress',
      'progress_state',
      'status',
    ]);
    assert.equal(client.frames.filter((f) => Buffer.isBuffer(f)).length, 2);
    const h = await getJson<Record<string, { prompt: unknown[] }>>(fake, '/history/anon');
    assert.deepEqual(h.anon?.prompt[3], {});
  });
});
