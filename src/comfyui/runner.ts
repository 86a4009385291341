import { createHash, randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Artifact, ArtifactStore } from '../artifacts/artifact-store.js';
import { artifactUrl } from '../artifacts/artifact-store.js';
import { settlesWithin } from '../deadline.js';
import { JobRunFailure } from '../queue/runner.js';
import type { JobRunner, RunContext } from '../queue/runner.js';
import { collectOutputFile } from './artifacts.js';
import { ComfyClient, ComfyHttpError, ComfyUnreachableError } from './client.js';
import {
  executedOutputs,
  neededNodes,
  outputFiles,
  parentOf,
  parseHistory,
  parseJobData,
  queuePosition,
  toMessage,
} from './protocol.js';
import type { ApiNode, ComfyMessage, ExecutionError, HistoryEntry, OutputFile } from './protocol.js';
import { ComfySocket } from './socket.js';

export interface ComfyRunnerOptions {
  /** ComfyUI's base URL, e.g. http://127.0.0.1:8188. */
  url: string;
  artifacts: ArtifactStore;
  /** ComfyUI's base directory (output/, temp/, input/) when the agent can read it; else files come through `/view`. */
  comfyDir?: string;
  /** Bound on each HTTP call to ComfyUI. */
  requestTimeoutMs: number;
  /** With no event this long while a prompt runs, ComfyUI's `/history` and `/queue` are asked. */
  silenceMs: number;
  /** How long an interrupted prompt gets to stop before the job is let go anyway. @defaultValue 5000 */
  interruptWaitMs?: number;
  logger: Logger;
  /** The websocket's client id; ComfyUI sends a prompt's node events only to the client that submitted it. */
  clientId?: string;
}

/** How long, for how many prompts, and how many messages of each, unclaimed messages are kept. */
const UNCLAIMED_MS = 30_000;
const UNCLAIMED_PROMPTS = 16;
const UNCLAIMED_MESSAGES = 2000;

/** How a prompt ended, as the runner settles it. */
type Outcome =
  | { kind: 'success'; history?: HistoryEntry }
  | { kind: 'error'; error: ExecutionError }
  | { kind: 'interrupted'; nodeId?: string }
  | { kind: 'lost'; reason: string };

/**
 * Runs queue jobs on ComfyUI: submits the job's API-format workflow with the job id as prompt id,
 * follows its nodes and steps over the websocket into the workflow store, collects every output file
 * as an artifact, and ends the job on success, error or interrupt. A dropped socket or a silent one is
 * made up for from `/history` and `/queue`; cancel and drain interrupt the prompt.
 */
export class ComfyUIRunner implements JobRunner {
  readonly name = 'comfyui';
  readonly client: ComfyClient;
  readonly socket: ComfySocket;
  readonly clientId: string;
  private readonly runs = new Map<string, PromptRun>();
  private readonly readinessListeners = new Set<(ok: boolean) => void>();
  private readonly unclaimed = new Map<string, { at: number; messages: ComfyMessage[] }>();
  /** The prompt ComfyUI said it is executing, for messages that carry no prompt id. */
  private executingPrompt: string | undefined;
  private readonly stats = { submitted: 0, succeeded: 0, failed: 0, interrupted: 0, resyncs: 0 };
  private summaryTimer: NodeJS.Timeout | undefined;

  constructor(private readonly opts: ComfyRunnerOptions) {
    this.clientId = opts.clientId ?? `gpu-pod-agent-${randomUUID()}`;
    this.client = new ComfyClient(opts.url, opts.requestTimeoutMs);
    this.socket = new ComfySocket({
      url: this.client.wsUrl(this.clientId),
      logger: opts.logger,
      // A connection that went dead without closing is found within the silence a run tolerates.
      pingIntervalMs: Math.min(15_000, opts.silenceMs),
    });
    this.socket.subscribe({
      message: (m) => this.route(m),
      opened: () => this.readinessChanged(true),
      reopened: () => {
        for (const run of this.runs.values()) run.resync('the websocket reconnected');
      },
      down: () => this.readinessChanged(false),
    });
  }

  start(): void {
    this.socket.start();
    // One INFO line a minute says what the runner did, so a quiet runner is still visible.
    this.summaryTimer = setInterval(() => {
      this.opts.logger.info(
        { data: { ...this.stats, socket: { state: this.socket.state, ...this.socket.stats } } },
        'ComfyUI summary',
      );
    }, 60_000);
    this.summaryTimer.unref();
  }

  readiness(): { ok: boolean; reason?: string; starting?: boolean } {
    if (this.socket.state === 'open') return { ok: true };
    return {
      ok: false,
      starting: this.socket.stats.opened === 0,
      reason: `waiting for ComfyUI at ${this.opts.url}${this.socket.lastError ? `: ${this.socket.lastError}` : ''}`,
    };
  }

  onReadinessChange(listener: (ok: boolean) => void): () => void {
    this.readinessListeners.add(listener);
    return () => this.readinessListeners.delete(listener);
  }

  private readinessChanged(ok: boolean): void {
    for (const l of this.readinessListeners) l(ok);
  }

  /** `/debug/queue`'s view of the runner. */
  view(): Record<string, unknown> {
    return {
      url: this.opts.url,
      client_id: this.clientId,
      websocket: this.socket.state,
      websocket_opens: this.socket.stats.opened,
      websocket_drops: this.socket.stats.drops,
      last_error: this.socket.lastError ?? null,
      running_prompts: [...this.runs.keys()],
      ...this.stats,
    };
  }

  async close(): Promise<void> {
    clearInterval(this.summaryTimer);
    this.socket.close();
    return Promise.resolve();
  }

  async run(ctx: RunContext): Promise<unknown> {
    ctx.signal.throwIfAborted();
    let data;
    try {
      data = parseJobData(ctx.data);
    } catch (err) {
      throw new JobRunFailure({
        message: (err as Error).message,
        type: 'InvalidJobData',
        retryable: false,
      });
    }
    await this.socket.whenOpen(ctx.signal);
    const promptId = promptIdOf(ctx.jobId);
    const run = new PromptRun(promptId, ctx, data.workflow, this.opts, this.client, () => {
      this.stats.resyncs++;
    });
    this.runs.set(promptId, run);
    const submitStep = ctx.step('comfyui.submit', { 'gpu_pod_agent.comfyui.prompt_id': promptId });
    let submitFailed: { message: string; type?: string } | undefined;
    try {
      await this.clearEarlierAttempt(promptId, ctx);
      const prompt = await this.withImages(data.workflow, data.images, ctx);
      run.declare();
      try {
        // Not aborted midway: ComfyUI may have queued the prompt already; a cancel meanwhile interrupts
        // it once the answer is in.
        const answer = await this.client.submit({ prompt, client_id: this.clientId, prompt_id: promptId });
        if (answer.prompt_id !== promptId) {
          // An older ComfyUI does not take the client's prompt id.
          ctx.logger.info(
            { data: { asked: promptId, prompt_id: answer.prompt_id } },
            'ComfyUI chose its own prompt id',
          );
          this.rekey(run, answer.prompt_id);
        }
        // A 200 may still list node errors: ComfyUI drops the outputs that failed validation and runs the rest.
        const nodeErrors = answer.node_errors;
        if (nodeErrors && typeof nodeErrors === 'object' && Object.keys(nodeErrors).length > 0) {
          run.markInvalid(nodeErrors as NodeErrors);
          ctx.logger.warn(
            { data: { prompt_id: promptId, node_errors: nodeErrors } },
            'ComfyUI accepted the workflow but dropped outputs that failed validation',
          );
        }
      } catch (err) {
        const failure = submitFailure(err, run);
        submitFailed = { message: (failure as Error).message, type: (failure as Error).name };
        throw failure;
      } finally {
        run.submitted();
        submitStep.end(submitFailed);
      }
      this.stats.submitted++;
      ctx.logger.debug({ data: { prompt_id: promptId, client_id: this.clientId } }, 'prompt submitted');
      const result = await run.finished();
      this.stats.succeeded++;
      return result;
    } catch (err) {
      if (ctx.signal.aborted) this.stats.interrupted++;
      else this.stats.failed++;
      throw err;
    } finally {
      run.dispose();
      this.runs.delete(run.promptId);
    }
  }

  private route(m: ComfyMessage): void {
    if (m.type === 'status') return;
    const promptId = 'prompt_id' in m.data ? m.data.prompt_id : undefined;
    if (m.type === 'execution_start') this.executingPrompt = m.data.prompt_id;
    const id = promptId ?? this.executingPrompt;
    if (id === undefined) return;
    const run = this.runs.get(id);
    if (run) run.message(m);
    else this.keepUnclaimed(id, m);
  }

  /**
   * Messages of a prompt no run claims (yet): a ComfyUI that ignores the client's prompt id answers the
   * submit with its own, and its first messages may come before that answer. Kept briefly, bounded.
   */
  private keepUnclaimed(id: string, m: ComfyMessage): void {
    const now = Date.now();
    for (const [k, v] of this.unclaimed) if (now - v.at > UNCLAIMED_MS) this.unclaimed.delete(k);
    let entry = this.unclaimed.get(id);
    if (!entry) {
      if (this.unclaimed.size >= UNCLAIMED_PROMPTS) return;
      entry = { at: now, messages: [] };
      this.unclaimed.set(id, entry);
    }
    if (entry.messages.length < UNCLAIMED_MESSAGES) entry.messages.push(m);
  }

  /** ComfyUI runs the prompt under another id than the one asked for: the run follows that one. */
  private rekey(run: PromptRun, id: string): void {
    this.runs.delete(run.promptId);
    run.promptId = id;
    this.runs.set(id, run);
    const early = this.unclaimed.get(id);
    this.unclaimed.delete(id);
    for (const m of early?.messages ?? []) run.message(m);
  }

  /**
   * A retried job reuses its id as prompt id: an earlier attempt's prompt still queued or running in
   * ComfyUI is stopped, and its history entry removed so it cannot be taken for this attempt's.
   */
  private async clearEarlierAttempt(promptId: string, ctx: RunContext): Promise<void> {
    const [queue, history] = await Promise.all([
      this.client.queue(ctx.signal).catch(() => undefined),
      this.client.history(promptId, ctx.signal).catch(() => undefined),
    ]);
    const where = queuePosition(queue, promptId);
    if (where !== 'absent') {
      ctx.logger.warn(
        { data: { prompt_id: promptId, where } },
        'an earlier attempt of this job is still in ComfyUI; stopping it',
      );
      if (where === 'pending') await this.client.deleteQueued(promptId, ctx.signal).catch(() => undefined);
      else await this.client.interrupt(promptId, ctx.signal).catch(() => undefined);
      const deadline = Date.now() + (this.opts.interruptWaitMs ?? 5000);
      while (Date.now() < deadline) {
        const q = await this.client.queue(ctx.signal).catch(() => undefined);
        if (queuePosition(q, promptId) === 'absent') break;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    if (where !== 'absent' || parseHistory(history, promptId)) {
      await this.client.deleteHistory(promptId, ctx.signal).catch(() => undefined);
    }
  }

  /** Uploads the job's input images; the workflow refers to them by name. */
  private async withImages(
    workflow: Record<string, ApiNode>,
    images: { name: string; image: string }[],
    ctx: RunContext,
  ): Promise<Record<string, ApiNode>> {
    for (const img of images) {
      const b64 = img.image.replace(/^data:[^;,]*;base64,/, '');
      const bytes = Buffer.from(b64, 'base64');
      if (bytes.length === 0) {
        throw new JobRunFailure({
          message: `job image ${img.name} is empty or not base64`,
          type: 'InvalidJobData',
          retryable: false,
        });
      }
      try {
        await this.client.uploadImage(img.name, bytes, ctx.signal);
      } catch (err) {
        if (ctx.signal.aborted) throw ctx.signal.reason;
        throw new JobRunFailure({
          message: `uploading ${img.name} to ComfyUI: ${(err as Error).message}`,
          type: 'UploadFailed',
        });
      }
    }
    return workflow;
  }
}

type NodeErrors = Record<string, { errors?: { message?: string; details?: string }[]; class_type?: string }>;

/**
 * The job id is the prompt id, unless it could not serve as one in ComfyUI's `/history/{id}` route
 * (a `/`, spaces, very long): then a stable digest of it.
 */
export function promptIdOf(jobId: string): string {
  return /^[A-Za-z0-9._~:@-]{1,200}$/.test(jobId)
    ? jobId
    : `job-${createHash('sha256').update(jobId).digest('hex').slice(0, 32)}`;
}

/** A 400 from `/prompt` is the workflow's fault: kept whole, and not retried. */
function submitFailure(err: unknown, run: PromptRun): unknown {
  if (err instanceof ComfyHttpError && err.status === 400) {
    const body = (err.body && typeof err.body === 'object' ? err.body : {}) as {
      error?: { type?: string; message?: string; details?: string };
      node_errors?: Record<
        string,
        { errors?: { message?: string; details?: string }[]; class_type?: string }
      >;
    };
    const nodeErrors = body.node_errors ?? {};
    const lines = Object.entries(nodeErrors).flatMap(([id, ne]) =>
      (ne.errors ?? []).map(
        (e) => `${ne.class_type ?? '?'}_${id}: ${e.message ?? 'error'}${e.details ? ` (${e.details})` : ''}`,
      ),
    );
    run.markInvalid(nodeErrors);
    const head = body.error?.message ?? 'ComfyUI refused the workflow';
    return new JobRunFailure({
      message: lines.length
        ? `${head}: ${lines.join('; ')}`
        : `${head}${body.error?.details ? `: ${body.error.details}` : ''}`,
      type: body.error?.type ?? 'InvalidPrompt',
      details: err.body,
      retryable: false,
    });
  }
  if (err instanceof ComfyHttpError || err instanceof ComfyUnreachableError) {
    return new JobRunFailure({ message: err.message, type: err.name });
  }
  return err;
}

/** One prompt's run, from submit to its end. */
class PromptRun {
  private settle: ((o: Outcome) => void) | undefined;
  private readonly outcome: Promise<Outcome>;
  private lastEventAt = Date.now();
  private silenceTimer: NodeJS.Timeout | undefined;
  private resyncing: Promise<void> | undefined;
  private ended = false;
  /** Output files by node, as `executed` and the history list them. */
  private readonly outputs = new Map<string, Record<string, unknown>>();
  private readonly collecting = new Map<string, Promise<Artifact>>();
  private runningNode: string | undefined;
  /** What was reported of each node, so repeated states change nothing. */
  private readonly nodeStates = new Map<
    string,
    'running' | 'cached' | 'completed' | 'failed' | 'interrupted'
  >();
  private readonly onAbort: () => void;
  private inComfy = false;
  private succeeded = false;
  private endingWithHistory = false;
  private successTimer: NodeJS.Timeout | undefined;

  constructor(
    public promptId: string,
    private readonly ctx: RunContext,
    private readonly workflow: Record<string, ApiNode>,
    private readonly opts: ComfyRunnerOptions,
    private readonly client: ComfyClient,
    private readonly countResync: () => void,
  ) {
    this.outcome = new Promise<Outcome>((resolve) => (this.settle = resolve));
    this.onAbort = () => {
      if (this.inComfy) void this.interrupt();
    };
    ctx.signal.addEventListener('abort', this.onAbort, { once: true });
  }

  /** The graph's nodes, pending, so the overall percent knows what is ahead. */
  declare(): void {
    const nodes = Object.entries(this.workflow).map(([id, n]) => ({
      id,
      type: n.class_type,
      parent: parentOf(id),
    }));
    this.ctx.event({ type: 'job.start', job_id: this.ctx.jobId, nodes, nodes_total: nodes.length });
    this.armSilence();
  }

  /** The submit is answered: from now on a cancel interrupts the prompt in ComfyUI. */
  submitted(): void {
    this.inComfy = true;
    if (this.ctx.signal.aborted) void this.interrupt();
  }

  /** Waits for the prompt's end and turns it into the job's result or failure. */
  async finished(): Promise<unknown> {
    const { ctx } = this;
    const execute = ctx.step('comfyui.execute', { 'gpu_pod_agent.comfyui.prompt_id': this.promptId });
    const o = await this.outcome;
    execute.setAttribute('gpu_pod_agent.comfyui.outcome', o.kind);
    execute.end(o.kind === 'success' ? undefined : { message: o.kind, type: o.kind });
    if (o.kind === 'success') {
      if (o.history?.outputs)
        for (const [node, out] of Object.entries(o.history.outputs)) this.addOutput(node, out);
      const collect = ctx.step('comfyui.collect_artifacts', {
        'gpu_pod_agent.comfyui.files': this.collecting.size,
      });
      let artifacts: Artifact[];
      try {
        artifacts = await this.collectAll();
      } catch (err) {
        collect.end({ message: (err as Error).message, type: 'ArtifactCollectionFailed' });
        throw err;
      }
      collect.end();
      return {
        prompt_id: this.promptId,
        artifacts: artifacts.map((a) => ({
          name: a.name,
          content_type: a.contentType,
          size_bytes: a.sizeBytes,
          sha256: a.sha256,
          url: artifactUrl(a),
        })),
        outputs: Object.fromEntries(this.outputs),
      };
    }
    if (ctx.signal.aborted) throw ctx.signal.reason;
    if (o.kind === 'interrupted') {
      throw new JobRunFailure({
        message: 'the prompt was interrupted in ComfyUI',
        type: 'Interrupted',
        nodeId: o.nodeId,
      });
    }
    if (o.kind === 'lost')
      throw new JobRunFailure({ message: o.reason, type: 'PromptLost', retryable: true });
    const e = o.error;
    const nodeId = e.node_id ?? undefined;
    const traceback = Array.isArray(e.traceback) ? e.traceback.join('') : (e.traceback ?? undefined);
    throw new JobRunFailure({
      message: `${e.node_type ?? 'node'}_${nodeId ?? '?'}: ${e.exception_type ?? 'Error'}: ${e.exception_message ?? 'execution error'}`,
      type: e.exception_type ?? 'ExecutionError',
      nodeId,
      stack: traceback,
      details: boundedError(e),
    });
  }

  message(m: ComfyMessage): void {
    if (this.ended) return;
    this.lastEventAt = Date.now();
    const { ctx } = this;
    const job_id = ctx.jobId;
    switch (m.type) {
      case 'execution_start':
        ctx.logger.debug({ data: { prompt_id: this.promptId } }, 'ComfyUI started the prompt');
        return;
      case 'execution_cached':
        for (const node of m.data.nodes) this.nodeEnd(node, 'cached');
        return;
      case 'executing': {
        const node = m.data.node;
        if (node === null || node === undefined) {
          // The end of the prompt's execution, after execution_success (ComfyUI wrote its history by now).
          // Without a success message before it (an older ComfyUI, or an error), the history says.
          this.runningNode = undefined;
          if (this.succeeded) void this.endWithHistory();
          else {
            setTimeout(
              () => this.ended || this.resync('execution ended without an outcome message'),
              1000,
            ).unref();
          }
          return;
        }
        this.nodeStart(node, m.data.display_node ?? undefined);
        return;
      }
      case 'progress': {
        const node = m.data.node ?? this.runningNode;
        if (node === undefined || node === null) return;
        if (m.data.max > 0) {
          ctx.event({
            type: 'node.progress',
            job_id,
            node_id: node,
            node_type: this.typeOf(node),
            step: Math.max(0, m.data.value),
            total: m.data.max,
          });
        }
        return;
      }
      case 'progress_state':
        for (const [key, n] of Object.entries(m.data.nodes)) {
          const node = n.node_id ?? n.real_node_id ?? key;
          if (n.state === 'running') {
            if (this.runningNode !== node) this.nodeStart(node, n.display_node_id ?? undefined);
            if (n.max > 1) {
              ctx.event({
                type: 'node.progress',
                job_id,
                node_id: node,
                node_type: this.typeOf(node),
                step: Math.max(0, n.value),
                total: n.max,
              });
            }
          } else if (n.state === 'finished') {
            this.nodeEnd(node, 'completed');
          }
        }
        return;
      case 'executed':
        if (m.data.output) this.addOutput(m.data.node, m.data.output);
        this.nodeEnd(m.data.node, 'completed');
        return;
      case 'execution_success':
        if (this.runningNode !== undefined) this.nodeEnd(this.runningNode, 'completed');
        // ComfyUI writes the history after this message (then sends `executing` null): read it then, or
        // shortly after if that message does not come.
        this.succeeded = true;
        this.successTimer = setTimeout(() => void this.endWithHistory(), 1000);
        this.successTimer.unref();
        return;
      case 'execution_error': {
        const e = m.data;
        const nodeId = e.node_id ?? undefined;
        const traceback = Array.isArray(e.traceback) ? e.traceback : e.traceback ? [e.traceback] : undefined;
        if (nodeId !== undefined) {
          this.nodeEnd(nodeId, 'failed');
          ctx.event({
            type: 'node.end',
            job_id,
            node_id: nodeId,
            node_type: e.node_type ?? this.typeOf(nodeId),
            status: 'failed',
            error: {
              message: e.exception_message ?? 'execution error',
              exception_type: e.exception_type ?? undefined,
              traceback,
              details: boundedError(e),
            },
          });
        }
        ctx.logger.error(
          {
            node_id: nodeId,
            data: {
              prompt_id: this.promptId,
              node_type: e.node_type,
              exception_type: e.exception_type,
              traceback,
            },
          },
          `ComfyUI execution error: ${e.exception_message ?? 'unknown'}`,
        );
        this.end({ kind: 'error', error: e });
        return;
      }
      case 'execution_interrupted': {
        const nodeId = m.data.node_id ?? undefined;
        if (nodeId !== undefined) this.nodeEnd(nodeId, 'interrupted');
        this.end({ kind: 'interrupted', nodeId });
        return;
      }
      default:
        return;
    }
  }

  /** Rebuilds what was missed from `/history` (the prompt ended) or `/queue` (it is still on). */
  resync(why: string): void {
    if (this.ended || this.resyncing) return;
    this.countResync();
    this.resyncing = (async () => {
      const { signal, logger } = this.ctx;
      logger.debug({ data: { prompt_id: this.promptId, why } }, 'asking ComfyUI where the prompt is');
      try {
        const entry = parseHistory(await this.client.history(this.promptId, signal), this.promptId);
        if (entry && this.applyHistory(entry)) return;
        const where = queuePosition(await this.client.queue(signal), this.promptId);
        if (where !== 'absent') return;
        // It may have ended between the two reads.
        const again = parseHistory(await this.client.history(this.promptId, signal), this.promptId);
        if (again && this.applyHistory(again)) return;
        this.end({
          kind: 'lost',
          reason: 'ComfyUI no longer knows the prompt (restarted or cleared its queue)',
        });
      } catch (err) {
        if (!signal.aborted) logger.debug({ error: err }, 'ComfyUI resync failed; trying again later');
      } finally {
        this.resyncing = undefined;
        this.lastEventAt = Date.now();
      }
    })();
  }

  /** A 400 from `/prompt`: the nodes it names are marked failed with ComfyUI's errors. */
  markInvalid(
    nodeErrors: Record<string, { errors?: { message?: string; details?: string }[]; class_type?: string }>,
  ): void {
    for (const [id, ne] of Object.entries(nodeErrors)) {
      const first = ne.errors?.[0];
      if (!this.nodeEnd(id, 'failed')) continue;
      this.ctx.event({
        type: 'node.end',
        job_id: this.ctx.jobId,
        node_id: id,
        node_type: ne.class_type ?? this.typeOf(id),
        status: 'failed',
        error: {
          message: first
            ? `${first.message ?? 'invalid'}${first.details ? `: ${first.details}` : ''}`
            : 'invalid node',
          exception_type: 'ValidationError',
          details: ne,
        },
      });
    }
  }

  dispose(): void {
    this.ended = true;
    clearTimeout(this.silenceTimer);
    clearTimeout(this.successTimer);
    this.ctx.signal.removeEventListener('abort', this.onAbort);
  }

  private applyHistory(entry: HistoryEntry): boolean {
    const st = entry.status;
    const messages = st?.messages ?? [];
    for (const [type, data] of messages) {
      if (type === 'execution_cached' || type === 'execution_error' || type === 'execution_interrupted') {
        // The history keeps these messages in their websocket shape.
        const parsed = toMessage(type, data);
        if (parsed.kind === 'message') this.message(parsed.message);
        if (this.ended) return true;
      }
    }
    const done = st?.completed === true || st?.status_str === 'success';
    if (st?.status_str === 'error' && !this.ended) {
      this.end({
        kind: 'lost',
        reason: 'ComfyUI reports the prompt failed (no error details in its history)',
      });
      return true;
    }
    if (!done) return false;
    // Missed while the socket was away: every node the outputs needed ran (the cached ones were
    // reported above from the history's own messages).
    if (this.runningNode !== undefined) this.nodeEnd(this.runningNode, 'completed');
    for (const node of neededNodes(this.workflow, executedOutputs(entry))) {
      if (!this.nodeStates.has(node)) this.nodeEnd(node, 'completed');
    }
    this.end({ kind: 'success', history: entry });
    return true;
  }

  /** execution_success: the history has every output (also those `executed` did not carry). */
  private async endWithHistory(): Promise<void> {
    if (this.ended || this.endingWithHistory) return;
    this.endingWithHistory = true;
    clearTimeout(this.successTimer);
    let entry: HistoryEntry | undefined;
    // The history is written just after the success message; a few short tries cover the gap.
    for (let i = 0; i < 5 && !entry; i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, 100 * i));
      entry = await this.client
        .history(this.promptId, this.ctx.signal)
        .then((b) => parseHistory(b, this.promptId))
        .catch(() => undefined);
    }
    this.end({ kind: 'success', history: entry });
  }

  private end(o: Outcome): void {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.silenceTimer);
    this.settle?.(o);
  }

  private addOutput(nodeId: string, output: Record<string, unknown> | null): void {
    if (!output) return;
    this.outputs.set(nodeId, output);
    for (const f of outputFiles(nodeId, output)) {
      const key = `${f.type}/${f.subfolder ? `${f.subfolder}/` : ''}${f.filename}`;
      if (this.collecting.has(key)) continue;
      const p = this.collect(f);
      // Collected while the workflow goes on; failures are reported when the job ends.
      p.catch(() => undefined);
      this.collecting.set(key, p);
    }
  }

  private collect(f: OutputFile): Promise<Artifact> {
    return collectOutputFile(this.ctx.jobId, f, {
      client: this.client,
      artifacts: this.opts.artifacts,
      comfyDir: this.opts.comfyDir,
      signal: this.ctx.signal,
    }).then((a) => {
      this.ctx.logger.info(
        { data: { name: a.name, size_bytes: a.sizeBytes, sha256: a.sha256, kind: f.kind, node: f.nodeId } },
        'artifact recorded',
      );
      return a;
    });
  }

  /**
   * Every collected artifact. A job whose outputs cannot all be had fails (retryable): its producer
   * would otherwise take a result without its files. Previews (ComfyUI's `temp` folder, which it
   * empties at start) are only warned about.
   */
  private async collectAll(): Promise<Artifact[]> {
    const keys = [...this.collecting.keys()];
    const results = await Promise.allSettled(this.collecting.values());
    const failed: string[] = [];
    results.forEach((r, i) => {
      if (r.status === 'fulfilled') return;
      const key = keys[i] as string;
      const line = `${key}: ${(r.reason as Error).message}`;
      if (key.startsWith('temp/')) {
        this.ctx.logger.warn({ data: { file: key, error: line } }, 'a preview output could not be collected');
      } else failed.push(line);
    });
    if (failed.length) {
      throw new JobRunFailure({
        message: `ComfyUI finished, but ${failed.length} output file(s) could not be collected: ${failed.join('; ')}`,
        type: 'ArtifactCollectionFailed',
        details: { failed },
      });
    }
    return results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  }

  private nodeStart(node: string, display: string | undefined): void {
    // A node that ended does not start again: progress_state repeats every node's state.
    if (this.nodeStates.has(node) && this.nodeStates.get(node) !== 'running') return;
    if (this.runningNode !== undefined && this.runningNode !== node)
      this.nodeEnd(this.runningNode, 'completed');
    if (this.runningNode === node) return;
    this.runningNode = node;
    this.nodeStates.set(node, 'running');
    this.ctx.event({
      type: 'node.start',
      job_id: this.ctx.jobId,
      node_id: node,
      node_type: this.typeOf(node),
      display: display !== undefined && display !== node ? display : undefined,
      parent: parentOf(node),
    });
  }

  /** Reports a node's end once; a cached node stays cached when ComfyUI sends its old output again. */
  private nodeEnd(node: string, status: 'completed' | 'cached' | 'interrupted' | 'failed'): boolean {
    const known = this.nodeStates.get(node);
    if (known !== undefined && known !== 'running') return false;
    if (this.runningNode === node) this.runningNode = undefined;
    this.nodeStates.set(node, status);
    if (status === 'failed') return true;
    this.ctx.event({
      type: 'node.end',
      job_id: this.ctx.jobId,
      node_id: node,
      node_type: this.typeOf(node),
      status,
    });
    return true;
  }

  private typeOf(node: string): string | undefined {
    return this.workflow[node]?.class_type;
  }

  private armSilence(): void {
    const tick = (): void => {
      if (this.ended) return;
      if (Date.now() - this.lastEventAt >= this.opts.silenceMs)
        this.resync(`no event for ${this.opts.silenceMs} ms`);
      this.silenceTimer = setTimeout(tick, Math.max(100, this.opts.silenceMs / 2));
      this.silenceTimer.unref();
    };
    this.silenceTimer = setTimeout(tick, this.opts.silenceMs);
    this.silenceTimer.unref();
  }

  /** Cancel or drain: the prompt is taken out of ComfyUI's queue or interrupted, then let go. */
  private async interrupt(): Promise<void> {
    if (this.ended) return;
    const { logger } = this.ctx;
    const signal = AbortSignal.timeout(this.opts.interruptWaitMs ?? 5000);
    try {
      const where = queuePosition(await this.client.queue(signal), this.promptId);
      if (where === 'pending') await this.client.deleteQueued(this.promptId, signal);
      else if (where === 'running') await this.client.interrupt(this.promptId, signal);
      logger.info({ data: { prompt_id: this.promptId, where } }, 'ComfyUI prompt interrupted');
    } catch (err) {
      logger.warn(
        { error: err, data: { prompt_id: this.promptId } },
        'could not interrupt the ComfyUI prompt',
      );
    }
    // The interrupted message ends the run; if it does not come, the job is let go all the same.
    await settlesWithin(this.outcome, this.opts.interruptWaitMs ?? 5000);
    this.end({ kind: 'interrupted' });
  }
}

/** An execution error as kept in the job's failure: whole, but inputs cut to a sane size. */
function boundedError(e: ExecutionError): Record<string, unknown> {
  const out: Record<string, unknown> = { ...e };
  for (const k of ['current_inputs', 'current_outputs'] as const) {
    const v = out[k];
    if (v === undefined) continue;
    const text = JSON.stringify(v);
    if (text && text.length > 16_384) out[k] = { truncated: true, json_prefix: text.slice(0, 16_384) };
  }
  return out;
}
