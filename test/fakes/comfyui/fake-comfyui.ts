import { createHash, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer } from 'ws';
import type { RawData } from 'ws';
import {
  MODEL_FOLDERS,
  NODE_CLASSES,
  PyError,
  annotatedFilepath,
  isValue,
  modelList,
  previewJpeg,
  pyFloat,
  pyJsonDumps,
  pyStr,
} from './nodes.js';
import type { Env, NodeClass, Value } from './nodes.js';
import { validatePrompt } from './validation.js';

/**
 * A fake ComfyUI server for tests and demos. It speaks ComfyUI's HTTP API and websocket protocol as
 * the real server does (see PROTOCOL.md next to this file): it validates prompts with the real rules
 * and error shapes, queues them, runs one at a time in ComfyUI's node order with its caching, sends
 * the real message sequence to the submitting client, writes real (small) files and keeps /history.
 * Nodes do no real work: samplers take `stepDelayMs` per step, other nodes `nodeDelayMs`.
 */

export interface FakeComfyUIOptions {
  /** 0 (default) picks a free port. */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** ComfyUI's base directory; output/, input/, temp/ and models/ are made under it. */
  baseDir: string;
  /** Delay per sampler step (default 5 ms). */
  stepDelayMs?: number;
  /** Delay per non-sampler node (default 2 ms). */
  nodeDelayMs?: number;
  /**
   * Send a preview frame with every sampler step, as a server started with `--preview-method auto`
   * does (default true). A real server started without that flag sends none.
   */
  previews?: boolean;
  /** `--preview-size`: the largest side of preview frames (default 512). */
  previewSize?: number;
  /**
   * Choose every prompt id itself, ignoring the client's, as ComfyUI releases before client-chosen
   * prompt ids did (default false).
   */
  ownPromptIds?: boolean;
}

/** A point in a run: right after the `executing` of `node`, or right after the progress of `step`. */
export interface RunPoint {
  node: string;
  step?: number;
}

/** How the fake runs one prompt (all optional). */
export interface RunScript {
  /** Node ids reported in execution_cached (besides real caching) and not executed. */
  cached?: string[];
  /**
   * Fail `node` with execution_error: when it starts, or, for a node with a progress bar, while
   * computing step `atStep` (after the progress of step atStep-1). Defaults: RuntimeError, a fixed
   * message; an exception type containing `OutOfMemoryError` gets ComfyUI's OOM tips appended.
   */
  error?: { node: string; atStep?: number; exceptionType?: string; message?: string };
  /** Close every websocket at that point; execution goes on. */
  dropSocketsAt?: RunPoint;
  /** From that point on, send no websocket message of this run (history still updates). */
  silentAfter?: RunPoint;
  /** Stop advancing at that point until an interrupt (POST /interrupt that applies to this run). */
  hangAt?: RunPoint;
}

/** An accepted POST /prompt. */
export interface SubmittedPrompt {
  prompt_id: string;
  client_id?: string;
  /** The graph as sent, before validation converted any value. */
  prompt: Record<string, unknown>;
  extra_data?: unknown;
}

type Json = Record<string, unknown>;

interface QueueItem {
  number: number;
  promptId: string;
  /** The validated prompt (inputs converted as ComfyUI's validation converts them). */
  prompt: Json;
  /** `extra_data` with `client_id` added. */
  extraData: unknown;
  outputs: string[];
  /** Node ids in the order they were sent. */
  order: string[];
}

interface Replay {
  messages: (object | Buffer)[];
  delayMs: number;
  history?: object;
}

interface CachedUi {
  meta: Json;
  output: Json;
}

class Closed extends Error {}

const SENSITIVE_EXTRA_DATA_KEYS = ['auth_token_comfy_org', 'api_key_comfy_org'];
const SERVER_FEATURES = { supports_preview_metadata: true, max_upload_size: 104857600 };
const OOM_TIPS =
  'This error means you ran out of memory on your GPU.\n\nTIPS: If the workflow worked before you might have accidentally set the batch_size to a large number.';

const MIME: Record<string, string> = {
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.webp': 'image/webp',
  '.gif': 'image/gif',
  '.bmp': 'image/bmp',
  '.mp4': 'video/mp4',
  '.webm': 'video/webm',
  '.mov': 'video/quicktime',
  '.mkv': 'video/x-matroska',
  '.flac': 'audio/flac',
  '.mp3': 'audio/mpeg',
  '.wav': 'audio/x-wav',
  '.opus': 'audio/ogg',
  '.json': 'application/json',
  '.txt': 'text/plain',
  '.glb': 'model/gltf-binary',
};
const FORCED_DOWNLOAD = new Set(['.html', '.htm', '.xhtml', '.js', '.mjs', '.css']);

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isLink(v: unknown): v is [string, number] {
  return Array.isArray(v) && v.length === 2 && typeof v[0] === 'string' && typeof v[1] === 'number';
}

/** Python tuple order of queue items: (number, prompt_id). */
function before(a: QueueItem, b: QueueItem): boolean {
  return a.number < b.number || (a.number === b.number && a.promptId < b.promptId);
}

// heapq, as Python implements it, so /queue lists pending prompts in the same (heap) order.
function siftDown(heap: QueueItem[], start: number, pos: number): void {
  const item = heap[pos];
  if (!item) return;
  while (pos > start) {
    const parentPos = (pos - 1) >> 1;
    const parent = heap[parentPos];
    if (parent && before(item, parent)) {
      heap[pos] = parent;
      pos = parentPos;
      continue;
    }
    break;
  }
  heap[pos] = item;
}

function siftUp(heap: QueueItem[], pos: number): void {
  const end = heap.length;
  const start = pos;
  const item = heap[pos];
  if (!item) return;
  let child = 2 * pos + 1;
  while (child < end) {
    const right = child + 1;
    const c = heap[child];
    const r = heap[right];
    if (right < end && c && r && !before(c, r)) child = right;
    heap[pos] = heap[child] as QueueItem;
    pos = child;
    child = 2 * pos + 1;
  }
  heap[pos] = item;
  siftDown(heap, start, pos);
}

function heapPush(heap: QueueItem[], item: QueueItem): void {
  heap.push(item);
  siftDown(heap, 0, heap.length - 1);
}

function heapPop(heap: QueueItem[]): QueueItem | undefined {
  const last = heap.pop();
  if (heap.length === 0 || !last) return last;
  const top = heap[0];
  heap[0] = last;
  siftUp(heap, 0);
  return top;
}

function heapify(heap: QueueItem[]): void {
  for (let i = Math.floor(heap.length / 2) - 1; i >= 0; i--) siftUp(heap, i);
}

/**
 * The keys of the body's `prompt` object in the order sent. JSON.parse puts integer-like keys first;
 * ComfyUI (a Python dict) keeps the order sent, which decides the order of execution_cached.
 */
function promptKeyOrder(text: string): string[] | undefined {
  let i = 0;
  const ws = (): void => {
    while (i < text.length && ' \t\r\n'.includes(text[i] ?? '')) i++;
  };
  const str = (): string => {
    const start = i++;
    while (i < text.length) {
      const c = text[i];
      if (c === '\\') i += 2;
      else if (c === '"') {
        i++;
        break;
      } else i++;
    }
    return JSON.parse(text.slice(start, i)) as string;
  };
  const skip = (): void => {
    ws();
    const c = text[i];
    if (c === '"') {
      str();
      return;
    }
    if (c === '{' || c === '[') {
      const close = c === '{' ? '}' : ']';
      i++;
      ws();
      if (text[i] === close) {
        i++;
        return;
      }
      for (;;) {
        ws();
        if (c === '{') {
          str();
          ws();
          i++;
        }
        skip();
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        i++;
        return;
      }
    }
    while (i < text.length && !' \t\r\n,]}'.includes(text[i] ?? '')) i++;
  };
  const keysOf = (): string[] => {
    ws();
    const keys: string[] = [];
    if (text[i] !== '{') {
      skip();
      return keys;
    }
    i++;
    ws();
    if (text[i] === '}') {
      i++;
      return keys;
    }
    for (;;) {
      ws();
      keys.push(str());
      ws();
      i++;
      skip();
      ws();
      if (text[i] === ',') {
        i++;
        continue;
      }
      i++;
      return keys;
    }
  };
  try {
    ws();
    if (text[i] !== '{') return undefined;
    i++;
    let found: string[] | undefined;
    ws();
    if (text[i] === '}') return undefined;
    for (;;) {
      ws();
      const key = str();
      ws();
      i++;
      if (key === 'prompt') found = keysOf();
      else skip();
      ws();
      if (text[i] === ',') {
        i++;
        continue;
      }
      return found ? [...new Set(found)] : undefined;
    }
  } catch {
    return undefined;
  }
}

/** Python's `str(x)` of a client-chosen prompt_id: any JSON value is accepted and stringified. */
function promptIdOf(v: unknown): string {
  return pyStr(v);
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

function pyBasename(p: string): string {
  return p.slice(p.lastIndexOf('/') + 1);
}

function pyJoin(dir: string, p: string): string {
  return p.startsWith('/') ? p : path.join(dir, p);
}

function pySplitext(name: string): [string, string] {
  const base = pyBasename(name);
  const dot = base.lastIndexOf('.');
  if (dot <= 0 || /^\.+$/.test(base.slice(0, dot + 1))) return [name, ''];
  const cut = name.length - (base.length - dot);
  return [name.slice(0, cut), name.slice(cut)];
}

function isInside(dir: string, p: string): boolean {
  const rel = path.relative(dir, path.resolve(p));
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

interface Part {
  name: string;
  filename?: string;
  data: Buffer;
}

/** Enough of multipart/form-data for /upload/image. */
function parseMultipart(body: Buffer, contentType: string): Part[] | undefined {
  const m = /boundary=(?:"([^"]+)"|([^;]+))/i.exec(contentType);
  const boundary = m?.[1] ?? m?.[2];
  if (!boundary) return undefined;
  const delim = Buffer.from(`--${boundary}`);
  const parts: Part[] = [];
  let pos = body.indexOf(delim);
  while (pos >= 0) {
    pos += delim.length;
    if (body.subarray(pos, pos + 2).toString() === '--') break;
    if (body.subarray(pos, pos + 2).toString() === '\r\n') pos += 2;
    const headEnd = body.indexOf('\r\n\r\n', pos);
    if (headEnd < 0) break;
    const head = body.subarray(pos, headEnd).toString('utf8');
    const next = body.indexOf(delim, headEnd + 4);
    if (next < 0) break;
    const data = body.subarray(headEnd + 4, next - 2);
    const disp = /content-disposition:[^\r\n]*/i.exec(head)?.[0] ?? '';
    const name = /\bname="([^"]*)"/i.exec(disp)?.[1];
    const filename = /\bfilename="([^"]*)"/i.exec(disp)?.[1];
    if (name !== undefined) parts.push({ name, filename, data });
    pos = next;
  }
  return parts;
}

/** The state of one prompt's execution. */
interface Run {
  item: QueueItem;
  script: RunScript;
  /** `server.client_id` for this run: extra_data.client_id, or null. */
  clientId: unknown;
  extra: Json;
  messages: [string, Json][];
  executed: string[];
  signatures: Map<string, { key: string; hash: string }>;
  progress: Map<string, { state: string; value: number; max: number }>;
  /** Nodes the script says are cached. */
  scriptedCached: Set<string>;
}

type NodeResult =
  { kind: 'success' } | { kind: 'interrupted'; node: string } | { kind: 'error'; node: string; error: Json };

/** ComfyUI's ExecutionList: a topological dissolve that prefers output nodes and their feeders. */
class ExecutionList {
  private readonly pending = new Map<string, true>();
  private readonly blockCount = new Map<string, number>();
  private readonly blocking = new Map<string, Map<string, Set<number>>>();

  constructor(
    private readonly prompt: Json,
    private readonly isCached: (id: string) => boolean,
    private readonly isOutput: (id: string) => boolean,
  ) {}

  private inputsOf(id: string): Json {
    const n = this.prompt[id];
    return isObject(n) && isObject(n.inputs) ? n.inputs : {};
  }

  private addStrongLink(from: string, socket: number, to: string): void {
    if (this.isCached(from)) return;
    this.addNode(from);
    const b = this.blocking.get(from);
    if (!b) return;
    let sockets = b.get(to);
    if (!sockets) {
      sockets = new Set();
      b.set(to, sockets);
      this.blockCount.set(to, (this.blockCount.get(to) ?? 0) + 1);
    }
    sockets.add(socket);
  }

  addNode(id: string): void {
    const stack = [id];
    const links: [string, number, string][] = [];
    while (stack.length > 0) {
      const u = stack.pop() as string;
      if (this.pending.has(u)) continue;
      this.pending.set(u, true);
      this.blockCount.set(u, 0);
      this.blocking.set(u, new Map());
      for (const v of Object.values(this.inputsOf(u))) {
        if (isLink(v) && !this.isCached(v[0])) {
          stack.push(v[0]);
          links.push([v[0], v[1], u]);
        }
      }
    }
    for (const [from, socket, to] of links) this.addStrongLink(from, socket, to);
  }

  isEmpty(): boolean {
    return this.pending.size === 0;
  }

  /** The next node to run, or undefined when what is left only waits on itself (a cycle). */
  stage(): string | undefined {
    const ready = [...this.pending.keys()].filter((id) => this.blockCount.get(id) === 0);
    if (ready.length === 0) return undefined;
    for (const id of ready) if (this.isOutput(id)) return id;
    for (const id of ready)
      for (const b of this.blocking.get(id)?.keys() ?? []) if (this.isOutput(b)) return id;
    for (const id of ready) {
      for (const b of this.blocking.get(id)?.keys() ?? []) {
        for (const b1 of this.blocking.get(b)?.keys() ?? []) if (this.isOutput(b1)) return id;
      }
    }
    return ready[0];
  }

  complete(id: string): void {
    this.pending.delete(id);
    for (const b of this.blocking.get(id)?.keys() ?? [])
      this.blockCount.set(b, (this.blockCount.get(b) ?? 1) - 1);
    this.blocking.delete(id);
  }

  remaining(): string[] {
    return [...this.pending.keys()];
  }
}

function formatValue(v: unknown): unknown {
  if (v === null || v === undefined) return null;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'string') return v;
  if (isValue(v)) return v.repr;
  return pyStr(v);
}

const EXEC_FRAMES = [
  '  File "/ComfyUI/execution.py", line 496, in execute\n    output_data, output_ui, has_subgraph, has_pending_tasks = await get_output_data(prompt_id, unique_id, obj, input_data_all, execution_block_cb=execution_block_cb, pre_execute_cb=pre_execute_cb, hidden_inputs=hidden_inputs)\n                                                              ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n',
  '  File "/ComfyUI/execution.py", line 315, in get_output_data\n    return_values = await _async_map_node_over_list(prompt_id, unique_id, obj, input_data_all, obj.FUNCTION, allow_interrupt=True, execution_block_cb=execution_block_cb, pre_execute_cb=pre_execute_cb, hidden_inputs=hidden_inputs)\n                    ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n',
  '  File "/ComfyUI/execution.py", line 289, in _async_map_node_over_list\n    await process_inputs(input_dict, i)\n',
  '  File "/ComfyUI/execution.py", line 277, in process_inputs\n    result = f(**inputs)\n             ^^^^^^^^^^^\n',
];

const SAMPLER_FRAMES = [
  '  File "/ComfyUI/nodes.py", line 1525, in sample\n    return common_ksampler(model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, denoise=denoise)\n           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n',
  '  File "/ComfyUI/nodes.py", line 1492, in common_ksampler\n    samples = comfy.sample.sample(model, noise, steps, cfg, sampler_name, scheduler, positive, negative, latent_image,\n              ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n',
  '  File "/ComfyUI/comfy/sample.py", line 45, in sample\n    samples = sampler.sample(noise, positive, negative, cfg=cfg, latent_image=latent_image, start_step=start_step, last_step=last_step, force_full_denoise=force_full_denoise, denoise_mask=noise_mask, sigmas=sigmas, callback=callback, disable_pbar=disable_pbar, seed=seed)\n              ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n',
  '  File "/ComfyUI/comfy/samplers.py", line 1161, in sample\n    return sample(self.model, noise, positive, negative, cfg, self.device, sampler, sigmas, self.model_options, latent_image=latent_image, denoise_mask=denoise_mask, callback=callback, disable_pbar=disable_pbar, seed=seed)\n           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n',
  '  File "/ComfyUI/comfy/samplers.py", line 1051, in sample\n    return cfg_guider.sample(noise, latent_image, sampler, sigmas, denoise_mask, callback, disable_pbar, seed)\n           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n',
  '  File "/ComfyUI/comfy/samplers.py", line 1036, in sample\n    output = executor.execute(noise, latent_image, sampler, sigmas, denoise_mask, callback, disable_pbar, seed)\n             ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n',
  '  File "/ComfyUI/comfy/samplers.py", line 1004, in outer_sample\n    output = self.inner_sample(noise, latent_image, device, sampler, sigmas, denoise_mask, callback, disable_pbar, seed)\n             ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n',
  '  File "/ComfyUI/comfy/samplers.py", line 987, in inner_sample\n    samples = executor.execute(self, sigmas, extra_args, callback, noise, latent_image, denoise_mask, disable_pbar)\n              ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n',
  '  File "/ComfyUI/comfy/samplers.py", line 759, in sample\n    samples = self.sampler_function(model_k, noise, sigmas, extra_args=extra_args, callback=k_callback, disable=disable_pbar, **self.extra_options)\n              ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n',
  '  File "/usr/local/lib/python3.12/site-packages/torch/utils/_contextlib.py", line 120, in decorate_context\n    return func(*args, **kwargs)\n           ^^^^^^^^^^^^^^^^^^^^^\n',
  '  File "/ComfyUI/comfy/k_diffusion/sampling.py", line 199, in sample_euler\n    denoised = model(x, sigma_hat * s_in, **extra_args)\n               ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n',
];

/** The fake server. Start one with {@link startFakeComfyUI}. */
export class FakeComfyUI {
  /** http://HOST:PORT */
  readonly url: string;
  readonly baseDir: string;
  /** Every accepted POST /prompt body, in order. */
  readonly submitted: SubmittedPrompt[] = [];
  /** Every POST /interrupt body ({} when none). */
  readonly interrupts: Record<string, unknown>[] = [];

  private readonly env: Env;
  private readonly stepDelayMs: number;
  private readonly nodeDelayMs: number;
  private readonly previews: boolean;
  private readonly previewSize: number;

  private readonly sockets = new Map<string, WebSocket>();
  private readonly socketFlags = new Map<string, Json>();
  /** Sockets dropped by the fake: their close must not unregister a newer socket of the same sid. */
  private readonly detached = new WeakSet<WebSocket>();
  private readonly allSockets = new Set<WebSocket>();

  private readonly queue: QueueItem[] = [];
  private readonly running = new Map<number, QueueItem>();
  private readonly history = new Map<string, unknown>();
  private number = 0;
  private taskCounter = 0;

  private readonly outputsCache = new Map<string, unknown[]>();
  private readonly uiCache = new Map<string, CachedUi>();
  private readonly scripts = new Map<string, RunScript>();
  private readonly replays = new Map<string, Replay>();

  /** `server.client_id` / `server.last_node_id`: the current run's client and display node. */
  private currentClientId: unknown = null;
  private lastNodeId: string | null = null;
  private interruptFlag = false;
  private silenced = false;
  private freeMemory = false;

  private working = false;
  private closed = false;
  private readonly timers = new Set<{ timer: NodeJS.Timeout; resolve: () => void }>();
  private readonly hangers = new Set<() => void>();
  private readonly ownPromptIds: boolean;
  private readonly idleWaiters = new Set<() => void>();

  /** @internal use {@link startFakeComfyUI} */
  constructor(
    private readonly server: http.Server,
    private readonly wss: WebSocketServer,
    opts: FakeComfyUIOptions,
    url: string,
  ) {
    this.url = url;
    this.baseDir = path.resolve(opts.baseDir);
    this.env = {
      baseDir: this.baseDir,
      inputDir: path.join(this.baseDir, 'input'),
      outputDir: path.join(this.baseDir, 'output'),
      tempDir: path.join(this.baseDir, 'temp'),
      modelsDir: path.join(this.baseDir, 'models'),
    };
    this.stepDelayMs = opts.stepDelayMs ?? 5;
    this.nodeDelayMs = opts.nodeDelayMs ?? 2;
    this.previews = opts.previews ?? true;
    this.previewSize = opts.previewSize ?? 512;
    this.ownPromptIds = opts.ownPromptIds ?? false;
  }

  /** @internal */
  static dirsFor(baseDir: string): string[] {
    const b = path.resolve(baseDir);
    return [
      path.join(b, 'input'),
      path.join(b, 'output'),
      path.join(b, 'temp'),
      ...MODEL_FOLDERS.map((f) => path.join(b, 'models', f)),
    ];
  }

  /** Scripts the run of a prompt id; '*' applies to every prompt without its own script. */
  script(promptId: string, s: RunScript): void {
    this.scripts.set(promptId, s);
  }

  /**
   * Instead of executing prompt `promptId`, send exactly these websocket messages (JSON `{type,data}`
   * objects, Buffers as binary frames, or `{binary: base64}` as in the fixtures) to its client, with
   * `delayMs` between them, then record `history` (if given) as its /history entry. The prompt is
   * still validated and queued; the replay takes its turn in the queue and sends nothing else (no
   * status at its start or end, no `executing` null): the messages are the whole run.
   */
  replay(
    promptId: string,
    messages: (object | Buffer)[],
    opts: { delayMs?: number; history?: object } = {},
  ): void {
    this.replays.set(promptId, { messages, delayMs: opts.delayMs ?? 0, history: opts.history });
  }

  /** Closes every websocket now (abruptly, as a dropped connection: the client sees code 1006). */
  dropSockets(): void {
    for (const ws of this.allSockets) {
      this.detached.add(ws);
      ws.terminate();
    }
    this.allSockets.clear();
    this.sockets.clear();
    this.socketFlags.clear();
  }

  /** The client ids (`sid`s) with an open websocket. */
  connectedClients(): string[] {
    return [...this.sockets.keys()];
  }

  /** Forgets cached node results, as POST /free with `free_memory` does. */
  clearCache(): void {
    this.outputsCache.clear();
    this.uiCache.clear();
  }

  /** Resolves once nothing is queued or running. */
  idle(): Promise<void> {
    if (!this.working && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.add(resolve));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers) {
      clearTimeout(t.timer);
      t.resolve();
    }
    this.timers.clear();
    for (const h of this.hangers) h();
    this.hangers.clear();
    for (const ws of this.allSockets) {
      this.detached.add(ws);
      ws.terminate();
    }
    this.allSockets.clear();
    this.sockets.clear();
    for (const r of this.idleWaiters) r();
    this.idleWaiters.clear();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  // ------------------------------------------------------------------------------------- websocket

  /** @internal */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const url = new URL(req.url ?? '/', 'http://x');
    if (this.closed || (url.pathname !== '/ws' && url.pathname !== '/api/ws')) {
      socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) =>
      this.onConnection(ws, url.searchParams.get('clientId') ?? ''),
    );
  }

  private onConnection(ws: WebSocket, clientId: string): void {
    let sid = clientId;
    if (sid) this.sockets.delete(sid);
    else sid = randomUUID().replace(/-/g, '');
    this.sockets.set(sid, ws);
    this.socketFlags.set(sid, {});
    this.allSockets.add(ws);
    let first = true;
    ws.on('message', (data: RawData, isBinary: boolean) => {
      if (isBinary) return;
      let msg: unknown;
      try {
        msg = JSON.parse(
          Buffer.isBuffer(data) ? data.toString('utf8') : Buffer.concat(data as Buffer[]).toString('utf8'),
        );
      } catch {
        return;
      }
      if (first && isObject(msg) && msg.type === 'feature_flags') {
        this.socketFlags.set(sid, isObject(msg.data) ? msg.data : {});
        this.sendJson('feature_flags', { ...SERVER_FEATURES }, sid);
      }
      first = false;
    });
    ws.on('error', () => undefined);
    ws.on('close', () => {
      this.allSockets.delete(ws);
      if (this.detached.has(ws)) return;
      // ComfyUI pops the sid unconditionally, even when a newer socket took it over.
      this.sockets.delete(sid);
      this.socketFlags.delete(sid);
    });
    this.sendJson('status', { status: this.queueInfo(), sid }, sid);
    if (this.currentClientId === sid && this.lastNodeId !== null) {
      this.sendJson('executing', { node: this.lastNodeId }, sid);
    }
  }

  private targets(sid: unknown): WebSocket[] {
    if (sid === null || sid === undefined) return [...this.sockets.values()];
    const ws = typeof sid === 'string' ? this.sockets.get(sid) : undefined;
    return ws ? [ws] : [];
  }

  private sendJson(type: string, data: unknown, sid: unknown): void {
    const text = JSON.stringify({ type, data });
    for (const ws of this.targets(sid)) if (ws.readyState === WebSocket.OPEN) ws.send(text);
  }

  private sendBinary(buf: Buffer, sid: unknown): void {
    for (const ws of this.targets(sid)) if (ws.readyState === WebSocket.OPEN) ws.send(buf, { binary: true });
  }

  /** A message of a run: dropped once the run went silent. */
  private emit(type: string, data: unknown, sid: unknown): void {
    if (!this.silenced) this.sendJson(type, data, sid);
  }

  private emitBinary(buf: Buffer, sid: unknown): void {
    if (!this.silenced) this.sendBinary(buf, sid);
  }

  private queueInfo(): Json {
    return { exec_info: { queue_remaining: this.queue.length + this.running.size } };
  }

  private queueUpdated(fromRun: boolean): void {
    if (fromRun) this.emit('status', { status: this.queueInfo() }, null);
    else this.sendJson('status', { status: this.queueInfo() }, null);
  }

  // ------------------------------------------------------------------------------------------ HTTP

  /** @internal */
  handleRequest(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= 100 * 1024 * 1024) chunks.push(c);
    });
    req.on('error', () => undefined);
    req.on('end', () => {
      try {
        if (size > 100 * 1024 * 1024) return this.text(res, 413, '413: Request Entity Too Large');
        this.route(req, res, Buffer.concat(chunks));
      } catch (err) {
        this.internalError(res, err);
      }
    });
  }

  private json(res: ServerResponse, status: number, body: unknown): void {
    const text = JSON.stringify(body);
    res.writeHead(status, {
      'Content-Type': 'application/json; charset=utf-8',
      'Content-Length': Buffer.byteLength(text),
    });
    res.end(res.req.method === 'HEAD' ? undefined : text);
  }

  private text(res: ServerResponse, status: number, text: string): void {
    res.writeHead(status, {
      'Content-Type': 'text/plain; charset=utf-8',
      'Content-Length': Buffer.byteLength(text),
    });
    res.end(res.req.method === 'HEAD' ? undefined : text);
  }

  private empty(res: ServerResponse, status: number): void {
    res.writeHead(status, { 'Content-Type': 'application/octet-stream', 'Content-Length': 0 });
    res.end();
  }

  private internalError(res: ServerResponse, _err?: unknown): void {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    this.text(res, 500, '500 Internal Server Error\n\nServer got itself in trouble');
  }

  private parseJson(body: Buffer): { ok: true; value: unknown } | { ok: false } {
    try {
      return { ok: true, value: JSON.parse(body.toString('utf8')) as unknown };
    } catch {
      return { ok: false };
    }
  }

  private route(req: IncomingMessage, res: ServerResponse, body: Buffer): void {
    const url = new URL(req.url ?? '/', 'http://x');
    let p = url.pathname;
    if (p.startsWith('/api/')) p = p.slice(4);
    const method = req.method === 'HEAD' ? 'GET' : (req.method ?? 'GET');
    const get = method === 'GET';
    const post = method === 'POST';
    const q = url.searchParams;
    const notAllowed = (allow: string): void => {
      res.setHeader('Allow', allow);
      this.text(res, 405, '405: Method Not Allowed');
    };

    if (p === '/ws')
      return get
        ? this.text(res, 400, 'No WebSocket UPGRADE hdr: None\n Can "Upgrade" only to "WebSocket".')
        : notAllowed('GET');
    if (p === '/prompt')
      return get
        ? this.json(res, 200, this.queueInfo())
        : post
          ? this.postPrompt(res, body)
          : notAllowed('GET,POST');
    if (p === '/queue')
      return get ? this.getQueue(res) : post ? this.postQueue(res, body) : notAllowed('GET,POST');
    if (p === '/history')
      return get ? this.getHistory(res, q) : post ? this.postHistory(res, body) : notAllowed('GET,POST');
    // `/history/{prompt_id}`: one path segment, as aiohttp's route matches it.
    if (p.startsWith('/history/') && p.length > 9 && !p.slice(9).includes('/')) {
      if (!get) return notAllowed('GET');
      const id = safeDecode(p.slice(9));
      const entry = this.history.get(id);
      return this.json(res, 200, entry === undefined ? {} : { [id]: entry });
    }
    if (p === '/interrupt') return post ? this.postInterrupt(res, body) : notAllowed('POST');
    if (p === '/free') return post ? this.postFree(res, body) : notAllowed('POST');
    if (p === '/view') return get ? this.getView(res, q) : notAllowed('GET');
    if (p === '/upload/image') return post ? this.postUpload(req, res, body) : notAllowed('POST');
    if (p === '/system_stats') return get ? this.json(res, 200, this.systemStats()) : notAllowed('GET');
    if (p === '/features') return get ? this.json(res, 200, { ...SERVER_FEATURES }) : notAllowed('GET');
    if (p === '/object_info') {
      if (!get) return notAllowed('GET');
      return this.json(
        res,
        200,
        Object.fromEntries(Object.keys(NODE_CLASSES).map((n) => [n, this.nodeInfo(n)])),
      );
    }
    if (p.startsWith('/object_info/')) {
      if (!get) return notAllowed('GET');
      const name = safeDecode(p.slice(13));
      return this.json(res, 200, Object.hasOwn(NODE_CLASSES, name) ? { [name]: this.nodeInfo(name) } : {});
    }
    if (p === '/embeddings') return get ? this.json(res, 200, []) : notAllowed('GET');
    if (p === '/models') return get ? this.json(res, 200, MODEL_FOLDERS) : notAllowed('GET');
    if (p.startsWith('/models/')) {
      if (!get) return notAllowed('GET');
      const folder = safeDecode(p.slice(8));
      return MODEL_FOLDERS.includes(folder)
        ? this.json(res, 200, modelList(this.env, folder))
        : this.empty(res, 404);
    }
    this.text(res, 404, '404: Not Found');
  }

  private postPrompt(res: ServerResponse, body: Buffer): void {
    const parsed = this.parseJson(body);
    if (!parsed.ok) return this.internalError(res);
    const data = parsed.value;
    if (typeof data === 'number' || typeof data === 'boolean' || data === null)
      return this.internalError(res);
    const j: Json = isObject(data) ? data : {};
    let number: number;
    if ('number' in j) {
      try {
        number = pyFloat(j.number);
      } catch {
        return this.internalError(res);
      }
    } else {
      number = this.number;
      if ('front' in j && j.front) number = -number;
      this.number++;
    }
    if (!('prompt' in j)) {
      return this.json(res, 400, {
        error: {
          type: 'no_prompt',
          message: 'No prompt provided',
          details: 'No prompt provided',
          extra_info: {},
        },
        node_errors: {},
      });
    }
    const original = structuredClone(j.prompt);
    const prompt = j.prompt;
    const promptId = 'prompt_id' in j && !this.ownPromptIds ? promptIdOf(j.prompt_id) : randomUUID();
    const order = isObject(prompt) ? (promptKeyOrder(body.toString('utf8')) ?? Object.keys(prompt)) : [];
    const result = validatePrompt(
      prompt,
      order.filter((k) => isObject(prompt) && Object.hasOwn(prompt, k)),
      j.partial_execution_targets,
      this.env,
    );
    if (result.kind === 'crash') return this.internalError(res);
    let extraData: unknown = {};
    if ('extra_data' in j) extraData = j.extra_data;
    if ('client_id' in j) {
      if (!isObject(extraData)) return this.internalError(res);
      extraData = { ...extraData, client_id: j.client_id };
    }
    if (result.kind === 'invalid') {
      return this.json(res, 400, { error: result.error, node_errors: result.nodeErrors });
    }
    const item: QueueItem = {
      number,
      promptId,
      prompt: prompt as Json,
      extraData,
      outputs: result.outputs,
      order,
    };
    this.submitted.push({
      prompt_id: promptId,
      ...(typeof j.client_id === 'string' ? { client_id: j.client_id } : {}),
      prompt: original as Json,
      ...('extra_data' in j ? { extra_data: j.extra_data } : {}),
    });
    heapPush(this.queue, item);
    this.queueUpdated(false);
    setImmediate(() => void this.work());
    this.json(res, 200, { prompt_id: promptId, number, node_errors: result.nodeErrors });
  }

  private tuple(item: QueueItem): unknown[] {
    return [item.number, item.promptId, item.prompt, item.extraData, item.outputs];
  }

  private getQueue(res: ServerResponse): void {
    this.json(res, 200, {
      queue_running: [...this.running.values()].map((i) => this.tuple(i)),
      queue_pending: this.queue.map((i) => this.tuple(i)),
    });
  }

  private postQueue(res: ServerResponse, body: Buffer): void {
    const parsed = this.parseJson(body);
    if (!parsed.ok || !isObject(parsed.value)) return this.internalError(res);
    const j = parsed.value;
    if ('clear' in j && j.clear) {
      this.queue.length = 0;
      this.queueUpdated(false);
    }
    if ('delete' in j && Array.isArray(j.delete)) {
      for (const id of j.delete) {
        const x = this.queue.findIndex((i) => i.promptId === id);
        if (x < 0) continue;
        if (this.queue.length === 1) {
          this.queue.length = 0;
          this.queueUpdated(false);
        } else {
          this.queue.splice(x, 1);
          heapify(this.queue);
        }
        this.queueUpdated(false);
      }
    }
    this.empty(res, 200);
  }

  private getHistory(res: ServerResponse, q: URLSearchParams): void {
    const toInt = (s: string | null): number | undefined | 'bad' => {
      if (s === null) return undefined;
      return /^\s*[+-]?\d+\s*$/.test(s) ? Number(s) : 'bad';
    };
    const maxItems = toInt(q.get('max_items'));
    let offset = toInt(q.get('offset'));
    if (maxItems === 'bad' || offset === 'bad') return this.internalError(res);
    offset ??= -1;
    if (offset < 0 && maxItems !== undefined) offset = this.history.size - maxItems;
    const out: Json = {};
    let i = 0;
    for (const [k, v] of this.history) {
      if (i >= offset) {
        out[k] = v;
        if (maxItems !== undefined && Object.keys(out).length >= maxItems) break;
      }
      i++;
    }
    this.json(res, 200, out);
  }

  private postHistory(res: ServerResponse, body: Buffer): void {
    const parsed = this.parseJson(body);
    if (!parsed.ok || !isObject(parsed.value)) return this.internalError(res);
    const j = parsed.value;
    if ('clear' in j && j.clear) this.history.clear();
    if ('delete' in j && Array.isArray(j.delete))
      for (const id of j.delete) if (typeof id === 'string') this.history.delete(id);
    this.empty(res, 200);
  }

  private postInterrupt(res: ServerResponse, body: Buffer): void {
    const parsed = this.parseJson(body);
    const j = parsed.ok && isObject(parsed.value) ? parsed.value : {};
    this.interrupts.push(j);
    if (parsed.ok && !isObject(parsed.value)) return this.internalError(res);
    const promptId = j.prompt_id;
    if (
      promptId !== undefined &&
      promptId !== null &&
      promptId !== '' &&
      promptId !== 0 &&
      promptId !== false
    ) {
      if ([...this.running.values()].some((i) => i.promptId === promptId)) this.interrupt();
    } else {
      this.interrupt();
    }
    this.empty(res, 200);
  }

  private interrupt(): void {
    this.interruptFlag = true;
    for (const h of this.hangers) h();
    this.hangers.clear();
  }

  private postFree(res: ServerResponse, body: Buffer): void {
    const parsed = this.parseJson(body);
    if (!parsed.ok || !isObject(parsed.value)) return this.internalError(res);
    if (parsed.value.free_memory) {
      if (this.working) this.freeMemory = true;
      else this.clearCache();
    }
    this.empty(res, 200);
  }

  private dirByType(type: string): string | undefined {
    if (type === 'output') return this.env.outputDir;
    if (type === 'temp') return this.env.tempDir;
    if (type === 'input') return this.env.inputDir;
    return undefined;
  }

  private getView(res: ServerResponse, q: URLSearchParams): void {
    const raw = q.get('filename');
    if (raw === null) return this.empty(res, 404);
    const a = annotatedFilepath(raw, this.env);
    let filename = a.name;
    if (!filename) return this.empty(res, 400);
    if (filename.startsWith('/') || filename.includes('..')) return this.empty(res, 400);
    let dir = a.dir ?? this.dirByType(q.get('type') ?? 'output');
    if (dir === undefined) return this.empty(res, 400);
    const subfolder = q.get('subfolder');
    if (subfolder !== null) {
      const full = pyJoin(dir, subfolder);
      if (!isInside(dir, full)) return this.empty(res, 403);
      dir = full;
    }
    filename = pyBasename(filename);
    const file = path.join(dir, filename);
    if (!isFile(file)) return this.empty(res, 404);
    const ext = path.extname(filename).toLowerCase();
    const type = FORCED_DOWNLOAD.has(ext)
      ? 'application/octet-stream'
      : (MIME[ext] ?? 'application/octet-stream');
    const data = readFileSync(file);
    res.writeHead(200, {
      'Content-Type': type,
      'Content-Disposition': `filename="${filename}"`,
      'Content-Length': data.length,
    });
    res.end(res.req.method === 'HEAD' ? undefined : data);
  }

  private postUpload(req: IncomingMessage, res: ServerResponse, body: Buffer): void {
    const ct = req.headers['content-type'] ?? '';
    const fields = new Map<string, Part>();
    if (/^multipart\/form-data/i.test(ct)) {
      for (const part of parseMultipart(body, ct) ?? [])
        if (!fields.has(part.name)) fields.set(part.name, part);
    } else if (/^application\/x-www-form-urlencoded/i.test(ct)) {
      for (const [k, v] of new URLSearchParams(body.toString('utf8')))
        if (!fields.has(k)) fields.set(k, { name: k, data: Buffer.from(v) });
    }
    const field = (name: string): string | undefined => fields.get(name)?.data.toString('utf8');
    const typeField = field('type');
    const uploadType = typeField ?? 'input';
    const uploadDir = this.dirByType(uploadType);
    if (uploadDir === undefined) return this.internalError(res);
    const image = fields.get('image');
    if (!image) return this.empty(res, 400);
    if (image.filename === undefined) return this.internalError(res);
    let filename = image.filename;
    if (!filename) return this.empty(res, 400);
    const subfolder = field('subfolder') ?? '';
    const normSub = path.posix.normalize(subfolder === '' ? '.' : subfolder).replace(/\/+$/, '') || '/';
    const folder = pyJoin(uploadDir, normSub);
    let filepath = path.resolve(pyJoin(folder, filename));
    if (!isInside(uploadDir, filepath)) return this.empty(res, 400);
    mkdirSync(folder, { recursive: true });
    const overwrite = field('overwrite');
    let duplicate = false;
    if (overwrite !== 'true' && overwrite !== '1') {
      const [stem, ext] = pySplitext(filename);
      for (let i = 1; existsSync(filepath); i++) {
        if (isFile(filepath) && readFileSync(filepath).equals(image.data)) {
          duplicate = true;
          break;
        }
        filename = `${stem} (${i})${ext}`;
        filepath = path.join(folder, filename);
      }
    }
    if (!duplicate) writeFileSync(filepath, image.data);
    this.json(res, 200, { name: filename, subfolder, type: uploadType });
  }

  private systemStats(): Json {
    const vramTotal = 85045379072;
    const used = this.working ? 7_340_032_000 : 1_073_741_824;
    return {
      system: {
        os: 'posix',
        ram_total: os.totalmem(),
        ram_free: os.freemem(),
        comfyui_version: '0.3.64',
        required_frontend_version: '1.27.10',
        installed_templates_version: '0.1.95',
        required_templates_version: '0.1.95',
        python_version: '3.12.3 (main, Aug 14 2025, 17:47:21) [GCC 13.3.0]',
        pytorch_version: '2.8.0+cu128',
        embedded_python: false,
        argv: ['main.py', '--listen', '127.0.0.1', '--port', String(new URL(this.url).port)],
      },
      devices: [
        {
          name: 'cuda:0 NVIDIA H100 80GB HBM3 : cudaMallocAsync',
          type: 'cuda',
          index: 0,
          vram_total: vramTotal,
          vram_free: vramTotal - used,
          torch_vram_total: used,
          torch_vram_free: 0,
        },
      ],
    };
  }

  private nodeInfo(name: string): Json {
    const cls = NODE_CLASSES[name] as NodeClass;
    const input = cls.inputTypes(this.env);
    const info: Json = {
      input,
      input_order: Object.fromEntries(Object.entries(input).map(([k, v]) => [k, Object.keys(v as Json)])),
      output: cls.output,
      output_is_list: cls.output.map(() => false),
      output_name: cls.outputNames ?? cls.output,
      name,
      display_name: cls.displayName ?? name,
      description: cls.description ?? '',
      python_module: cls.pythonModule,
      category: cls.category,
      output_node: cls.outputNode === true,
    };
    return info;
  }

  // ------------------------------------------------------------------------------------- execution

  private wait(ms: number): Promise<void> {
    if (this.closed) return Promise.reject(new Closed());
    return new Promise((resolve, reject) => {
      const entry = {
        timer: setTimeout(() => {
          this.timers.delete(entry);
          if (this.closed) reject(new Closed());
          else resolve();
        }, ms),
        resolve: () => reject(new Closed()),
      };
      this.timers.add(entry);
    });
  }

  private async work(): Promise<void> {
    if (this.working || this.closed) return;
    this.working = true;
    try {
      for (;;) {
        if (this.closed) return;
        const item = heapPop(this.queue);
        if (!item) break;
        const task = this.taskCounter++;
        this.running.set(task, structuredClone(item));
        const replay = this.replays.get(item.promptId);
        try {
          if (replay) await this.runReplay(item, replay, task);
          else await this.runPrompt(item, task);
        } catch (err) {
          if (err instanceof Closed || this.closed) return;
          // A fault of the fake itself: drop the run rather than the process.
          this.running.delete(task);
          process.emitWarning(`fake ComfyUI: run of ${item.promptId} failed: ${String(err)}`);
        } finally {
          this.silenced = false;
        }
        if (this.freeMemory) {
          this.freeMemory = false;
          this.clearCache();
        }
      }
    } finally {
      this.working = false;
      if (this.queue.length === 0) {
        for (const r of this.idleWaiters) r();
        this.idleWaiters.clear();
      }
    }
  }

  private async runReplay(item: QueueItem, replay: Replay, task: number): Promise<void> {
    const extra = isObject(item.extraData) ? item.extraData : {};
    const sid = 'client_id' in extra ? extra.client_id : null;
    let first = true;
    for (const m of replay.messages) {
      if (!first && replay.delayMs > 0) await this.wait(replay.delayMs);
      first = false;
      if (Buffer.isBuffer(m)) this.sendBinary(m, sid);
      else if (isObject(m) && typeof m.binary === 'string' && !('type' in m))
        this.sendBinary(Buffer.from(m.binary, 'base64'), sid);
      else {
        const text = JSON.stringify(m);
        for (const ws of this.targets(sid)) if (ws.readyState === WebSocket.OPEN) ws.send(text);
      }
    }
    if (replay.delayMs > 0) await this.wait(replay.delayMs);
    if (replay.history) this.setHistory(item.promptId, replay.history);
    this.running.delete(task);
  }

  private setHistory(promptId: string, entry: unknown): void {
    if (this.history.size > 10000) {
      const firstKey = this.history.keys().next();
      if (!firstKey.done) this.history.delete(firstKey.value);
    }
    this.history.set(promptId, entry);
  }

  private addMessage(run: Run, event: string, data: Json, broadcast: boolean): void {
    const withTime = { ...data, timestamp: Date.now() };
    run.messages.push([event, withTime]);
    if (run.clientId !== null || broadcast) this.emit(event, withTime, run.clientId);
  }

  private node(run: Run, id: string): Json {
    const n = run.item.prompt[id];
    return isObject(n) ? n : {};
  }

  private classOf(run: Run, id: string): NodeClass | undefined {
    const t = this.node(run, id).class_type;
    return typeof t === 'string' && Object.hasOwn(NODE_CLASSES, t) ? NODE_CLASSES[t] : undefined;
  }

  /** The cache key of every node: class, IS_CHANGED, inputs, and the same of every ancestor. */
  private signatures(run: Run): Map<string, { key: string; hash: string }> {
    const prompt = run.item.prompt;
    const changed = new Map<string, unknown>();
    const isChanged = (id: string): unknown => {
      if (changed.has(id)) return changed.get(id);
      const cls = this.classOf(run, id);
      let v: unknown = false;
      if (cls?.isChanged) {
        try {
          v = cls.isChanged(
            isObject(this.node(run, id).inputs) ? (this.node(run, id).inputs as Json) : {},
            this.env,
          );
        } catch {
          v = `nan:${randomUUID()}`;
        }
      }
      changed.set(id, v);
      return v;
    };
    const immediate = (id: string, order: Map<string, number>): unknown[] => {
      if (!Object.hasOwn(prompt, id)) return [`nan:${randomUUID()}`];
      const node = this.node(run, id);
      const cls = this.classOf(run, id);
      const sig: unknown[] = [node.class_type, isChanged(id)];
      const hidden = cls?.inputTypes(this.env).hidden ?? {};
      if (Object.values(hidden).includes('UNIQUE_ID')) sig.push(id);
      const inputs = isObject(node.inputs) ? node.inputs : {};
      for (const key of Object.keys(inputs).sort()) {
        const v = inputs[key];
        sig.push(isLink(v) ? [key, ['ANCESTOR', order.get(v[0]), v[1]]] : [key, v]);
      }
      return sig;
    };
    const out = new Map<string, { key: string; hash: string }>();
    for (const id of run.item.order) {
      const ancestors: string[] = [];
      const order = new Map<string, number>();
      const walk = (n: string): void => {
        if (!Object.hasOwn(prompt, n)) return;
        const inputs = this.node(run, n).inputs;
        if (!isObject(inputs)) return;
        for (const key of Object.keys(inputs).sort()) {
          const v = inputs[key];
          if (isLink(v) && !order.has(v[0])) {
            ancestors.push(v[0]);
            order.set(v[0], ancestors.length - 1);
            walk(v[0]);
          }
        }
      };
      walk(id);
      const sig = [immediate(id, order), ...ancestors.map((a) => immediate(a, order))];
      const key = JSON.stringify(sig);
      out.set(id, { key, hash: createHash('sha256').update(key).digest('hex').slice(0, 16) });
    }
    return out;
  }

  private progressState(run: Run): void {
    const nodes: Json = {};
    for (const [id, s] of run.progress) {
      nodes[id] = {
        value: s.value,
        max: s.max,
        state: s.state,
        node_id: id,
        prompt_id: run.item.promptId,
        display_node_id: id,
        parent_node_id: null,
        real_node_id: id,
      };
    }
    this.emit('progress_state', { prompt_id: run.item.promptId, nodes }, run.clientId);
  }

  private setProgress(run: Run, id: string, state: string, value?: number, max?: number): void {
    const entry = run.progress.get(id) ?? { state: 'pending', value: 0, max: 1 };
    entry.state = state;
    if (state === 'running' && value === undefined) {
      entry.value = 0;
      entry.max = 1;
    } else if (state === 'finished') {
      entry.value = entry.max;
    } else {
      entry.value = value ?? entry.value;
      entry.max = max ?? entry.max;
    }
    run.progress.set(id, entry);
    this.progressState(run);
  }

  private async atPoint(run: Run, node: string, step: number | undefined): Promise<void> {
    const hit = (p: RunPoint | undefined): boolean => p !== undefined && p.node === node && p.step === step;
    if (hit(run.script.dropSocketsAt)) this.dropSockets();
    if (hit(run.script.silentAfter)) this.silenced = true;
    if (hit(run.script.hangAt) && !this.interruptFlag) {
      await new Promise<void>((resolve) => this.hangers.add(resolve));
      if (this.closed) throw new Closed();
    }
  }

  /** The value of output `index` of `id`, running a script-cached node that has none yet. */
  private valueOf(run: Run, id: string, index: number): unknown {
    const sig = run.signatures.get(id);
    if (!sig) return undefined;
    let outs = this.outputsCache.get(sig.key);
    if (!outs && run.scriptedCached.has(id)) {
      const cls = this.classOf(run, id);
      if (cls && !cls.outputNode) {
        try {
          outs = cls.run(this.runContext(run, id, this.resolveInputs(run, id))).outputs;
          this.outputsCache.set(sig.key, outs);
        } catch {
          outs = undefined;
        }
      }
    }
    return outs?.[index < 0 ? outs.length + index : index];
  }

  private resolveInputs(run: Run, id: string): Json {
    const inputs = this.node(run, id).inputs;
    const out: Json = {};
    if (!isObject(inputs)) return out;
    for (const [k, v] of Object.entries(inputs))
      out[k] = isLink(v) ? (this.valueOf(run, v[0], v[1]) ?? null) : v;
    return out;
  }

  private runContext(run: Run, id: string, inputs: Json): Parameters<NodeClass['run']>[0] {
    return {
      nodeId: id,
      inputs,
      hash: run.signatures.get(id)?.hash ?? id,
      env: this.env,
      prompt: run.item.prompt,
      extraData: run.extra,
    };
  }

  /** `input_data_all` as execution_error reports it in `current_inputs`. */
  private currentInputs(run: Run, id: string, cls: NodeClass, resolved: Json): Json {
    const declared = cls.inputTypes(this.env);
    const known = new Set([...Object.keys(declared.required ?? {}), ...Object.keys(declared.optional ?? {})]);
    const raw = this.node(run, id).inputs;
    const out: Json = {};
    for (const [k, v] of Object.entries(isObject(raw) ? raw : {})) {
      if (isLink(v) || known.has(k)) out[k] = [formatValue(resolved[k])];
    }
    if (!cls.v3) {
      for (const [k, kind] of Object.entries(declared.hidden ?? {})) {
        if (kind === 'PROMPT') out[k] = [pyStr(run.item.prompt)];
        if (kind === 'EXTRA_PNGINFO') out[k] = [formatValue(run.extra.extra_pnginfo)];
        if (kind === 'UNIQUE_ID') out[k] = [id];
      }
    }
    return out;
  }

  private failure(
    run: Run,
    id: string,
    cls: NodeClass,
    resolved: Json,
    pyType: string,
    message: string,
    sampler: boolean,
  ): NodeResult {
    const tips = pyType.includes('OutOfMemoryError') ? OOM_TIPS : '';
    const fn = sampler
      ? SAMPLER_FRAMES
      : [
          `  File "/ComfyUI/${cls.pythonModule.replace(/\./g, '/')}.py", line 1, in ${String(this.node(run, id).class_type)}\n`,
        ];
    return {
      kind: 'error',
      node: id,
      error: {
        exception_message: `${message}\n${tips}`,
        exception_type: pyType,
        traceback: [...EXEC_FRAMES, ...fn],
        current_inputs: this.currentInputs(run, id, cls, resolved),
      },
    };
  }

  private async executeNode(run: Run, id: string): Promise<NodeResult> {
    const promptId = run.item.promptId;
    const cls = this.classOf(run, id) as NodeClass;
    const sig = run.signatures.get(id) as { key: string; hash: string };
    if (this.outputsCache.has(sig.key) || run.scriptedCached.has(id)) {
      if (run.clientId !== null) {
        this.emit(
          'executed',
          {
            node: id,
            display_node: id,
            output: this.uiCache.get(sig.key)?.output ?? null,
            prompt_id: promptId,
          },
          run.clientId,
        );
      }
      this.setProgress(run, id, 'finished');
      return { kind: 'success' };
    }
    this.setProgress(run, id, 'running');
    const inputs = this.resolveInputs(run, id);
    if (run.clientId !== null) {
      this.lastNodeId = id;
      this.emit('executing', { node: id, display_node: id, prompt_id: promptId }, run.clientId);
    }
    await this.atPoint(run, id, undefined);
    if (this.interruptFlag) return { kind: 'interrupted', node: id };
    const err = run.script.error?.node === id ? run.script.error : undefined;
    const errType = err?.exceptionType ?? 'RuntimeError';
    const errMessage = err?.message ?? `fake ComfyUI: scripted failure of node ${id}`;
    const progress = cls.progress?.(inputs);
    if (err && (err.atStep === undefined || !progress))
      return this.failure(run, id, cls, inputs, errType, errMessage, false);
    if (progress) {
      const supportsMetadata =
        typeof run.clientId === 'string' &&
        this.socketFlags.get(run.clientId)?.supports_preview_metadata === true;
      for (let step = 1; step <= progress.steps; step++) {
        await this.wait(this.stepDelayMs);
        if (err && err.atStep === step)
          return this.failure(run, id, cls, inputs, errType, errMessage, progress.previews);
        if (this.interruptFlag) return { kind: 'interrupted', node: id };
        const preview =
          progress.previews && this.previews
            ? previewJpeg(sig.hash, inputs.latent_image, step, progress.steps, this.previewSize)
            : undefined;
        run.progress.set(id, { state: 'running', value: step, max: progress.steps });
        this.progressState(run);
        if (preview && supportsMetadata) {
          const meta = Buffer.from(
            pyJsonDumps({
              node_id: id,
              prompt_id: promptId,
              display_node_id: id,
              parent_node_id: null,
              real_node_id: id,
              image_type: 'image/jpeg',
            }),
          );
          const head = Buffer.alloc(8);
          head.writeUInt32BE(4, 0);
          head.writeUInt32BE(meta.length, 4);
          this.emitBinary(Buffer.concat([head, meta, preview]), run.clientId);
        }
        this.emit(
          'progress',
          { value: step, max: progress.steps, prompt_id: promptId, node: id },
          run.clientId,
        );
        if (preview && !supportsMetadata) {
          const head = Buffer.alloc(8);
          head.writeUInt32BE(1, 0); // PREVIEW_IMAGE
          head.writeUInt32BE(1, 4); // JPEG
          this.emitBinary(Buffer.concat([head, preview]), run.clientId);
        }
        await this.atPoint(run, id, step);
      }
      if (err) return this.failure(run, id, cls, inputs, errType, errMessage, progress.previews);
    } else {
      await this.wait(this.nodeDelayMs);
    }
    let result;
    try {
      result = cls.run(this.runContext(run, id, inputs));
    } catch (e) {
      const ex =
        e instanceof PyError ? e : new PyError('Exception', e instanceof Error ? e.message : String(e));
      return this.failure(run, id, cls, inputs, ex.pyType, ex.message, false);
    }
    if (result.ui && Object.keys(result.ui).length > 0) {
      this.uiCache.set(sig.key, {
        meta: { node_id: id, display_node: id, parent_node: null, real_node_id: id },
        output: result.ui,
      });
      if (run.clientId !== null) {
        this.emit(
          'executed',
          { node: id, display_node: id, output: result.ui, prompt_id: promptId },
          run.clientId,
        );
      }
    }
    this.outputsCache.set(sig.key, result.outputs);
    this.setProgress(run, id, 'finished');
    run.executed.push(id);
    return { kind: 'success' };
  }

  private async runPrompt(item: QueueItem, task: number): Promise<void> {
    this.queueUpdated(true);
    const extra = isObject(item.extraData) ? item.extraData : {};
    const script = this.scripts.get(item.promptId) ?? this.scripts.get('*') ?? {};
    const run: Run = {
      item,
      script,
      clientId: 'client_id' in extra ? extra.client_id : null,
      extra,
      messages: [],
      executed: [],
      signatures: new Map(),
      progress: new Map(),
      scriptedCached: new Set((script.cached ?? []).filter((id) => Object.hasOwn(item.prompt, id))),
    };
    this.interruptFlag = false;
    this.currentClientId = run.clientId;
    const promptId = item.promptId;
    this.addMessage(run, 'execution_start', { prompt_id: promptId }, false);

    run.signatures = this.signatures(run);
    const used = new Set([...run.signatures.values()].map((s) => s.key));
    for (const k of [...this.outputsCache.keys()]) if (!used.has(k)) this.outputsCache.delete(k);
    for (const k of [...this.uiCache.keys()]) if (!used.has(k)) this.uiCache.delete(k);
    const isCached = (id: string): boolean => {
      const s = run.signatures.get(id);
      return (s !== undefined && this.outputsCache.has(s.key)) || run.scriptedCached.has(id);
    };
    const cachedNodes = item.order.filter(isCached);
    this.addMessage(run, 'execution_cached', { nodes: cachedNodes, prompt_id: promptId }, false);

    const list = new ExecutionList(item.prompt, isCached, (id) => this.classOf(run, id)?.outputNode === true);
    for (const o of item.outputs) list.addNode(o);
    let success = true;
    while (!list.isEmpty()) {
      const id = list.stage();
      if (id === undefined) {
        const blamed = list.remaining()[0] ?? '';
        this.addMessage(
          run,
          'execution_error',
          {
            prompt_id: promptId,
            node_id: blamed,
            node_type: this.node(run, blamed).class_type,
            executed: [...run.executed],
            exception_message: 'Dependency cycle detected',
            exception_type: 'graph.DependencyCycleError',
            traceback: [],
            current_inputs: [],
            current_outputs: [...item.order],
          },
          false,
        );
        success = false;
        break;
      }
      const r = await this.executeNode(run, id);
      if (r.kind === 'success') {
        list.complete(id);
        continue;
      }
      success = false;
      const base = {
        prompt_id: promptId,
        node_id: r.node,
        node_type: this.node(run, r.node).class_type,
        executed: [...run.executed],
      };
      if (r.kind === 'interrupted') {
        this.addMessage(run, 'execution_interrupted', base, true);
      } else {
        this.addMessage(
          run,
          'execution_error',
          { ...base, ...r.error, current_outputs: [...item.order] },
          false,
        );
      }
      break;
    }
    if (success) this.addMessage(run, 'execution_success', { prompt_id: promptId }, false);

    const outputs: Json = {};
    const meta: Json = {};
    for (const id of item.order) {
      const sig = run.signatures.get(id);
      const ui = sig ? this.uiCache.get(sig.key) : undefined;
      if (ui) {
        outputs[id] = ui.output;
        meta[id] = ui.meta;
      }
    }
    this.lastNodeId = null;

    const extraForHistory: unknown = isObject(item.extraData)
      ? Object.fromEntries(
          Object.entries(item.extraData).filter(([k]) => !SENSITIVE_EXTRA_DATA_KEYS.includes(k)),
        )
      : item.extraData;
    this.running.delete(task);
    this.setHistory(promptId, {
      prompt: [item.number, promptId, item.prompt, extraForHistory, item.outputs],
      outputs,
      status: { status_str: success ? 'success' : 'error', completed: success, messages: run.messages },
      meta,
    });
    this.queueUpdated(true);
    if (run.clientId !== null) this.emit('executing', { node: null, prompt_id: promptId }, run.clientId);
  }
}

/** Starts a fake ComfyUI on `opts.port` (0: a free one) and resolves once it listens. */
export async function startFakeComfyUI(opts: FakeComfyUIOptions): Promise<FakeComfyUI> {
  for (const d of FakeComfyUI.dirsFor(opts.baseDir)) mkdirSync(d, { recursive: true });
  const host = opts.host ?? '127.0.0.1';
  const holder: { fake?: FakeComfyUI } = {};
  const server = http.createServer((req, res) => {
    if (holder.fake) holder.fake.handleRequest(req, res);
    else res.destroy();
  });
  const wss = new WebSocketServer({ noServer: true, maxPayload: 100 * 1024 * 1024 });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => undefined);
    if (holder.fake) holder.fake.handleUpgrade(req, socket, head);
    else socket.destroy();
  });
  server.on('clientError', (_err, socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : (opts.port ?? 0);
  const shownHost = host.includes(':') ? `[${host}]` : host;
  const fake = new FakeComfyUI(server, wss, opts, `http://${shownHost}:${port}`);
  holder.fake = fake;
  return fake;
}

export type { Value };
