import { createWriteStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';

/** An HTTP answer of ComfyUI that was not 2xx: its status and body (parsed when JSON). */
export class ComfyHttpError extends Error {
  constructor(
    readonly route: string,
    readonly status: number,
    readonly body: unknown,
  ) {
    super(`ComfyUI ${route} answered ${status}${bodyHint(body)}`);
    this.name = 'ComfyHttpError';
  }
}

/** ComfyUI did not answer at all (refused, reset, timed out). */
export class ComfyUnreachableError extends Error {
  constructor(
    readonly route: string,
    cause: unknown,
  ) {
    super(`ComfyUI ${route}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = 'ComfyUnreachableError';
  }
}

function bodyHint(body: unknown): string {
  if (body && typeof body === 'object') {
    const e = (body as { error?: unknown }).error;
    if (typeof e === 'string') return `: ${e}`;
    if (e && typeof e === 'object' && typeof (e as { message?: unknown }).message === 'string') {
      return `: ${(e as { message: string }).message}`;
    }
  }
  return typeof body === 'string' && body ? `: ${body.slice(0, 200)}` : '';
}

export interface SubmitResult {
  prompt_id: string;
  number?: number;
  node_errors?: unknown;
}

/**
 * ComfyUI's HTTP API, each call bounded by a timeout and the caller's signal. Routes as the server
 * defines them: `/prompt`, `/history/{id}`, `/queue`, `/interrupt`, `/view`, `/upload/image`,
 * `/system_stats`.
 */
export class ComfyClient {
  readonly baseUrl: string;

  constructor(
    baseUrl: string,
    private readonly timeoutMs: number,
  ) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
  }

  /** The websocket URL for a client id. */
  wsUrl(clientId: string): string {
    const u = new URL(`${this.baseUrl}/ws`);
    u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
    u.searchParams.set('clientId', clientId);
    return u.toString();
  }

  systemStats(signal?: AbortSignal): Promise<unknown> {
    return this.json('GET', '/system_stats', undefined, signal);
  }

  async submit(
    body: { prompt: unknown; client_id: string; prompt_id: string; extra_data?: unknown },
    signal?: AbortSignal,
  ): Promise<SubmitResult> {
    const r = (await this.json('POST', '/prompt', body, signal)) as Partial<SubmitResult> | undefined;
    return { ...r, prompt_id: typeof r?.prompt_id === 'string' ? r.prompt_id : body.prompt_id };
  }

  history(promptId: string, signal?: AbortSignal): Promise<unknown> {
    return this.json('GET', `/history/${encodeURIComponent(promptId)}`, undefined, signal);
  }

  deleteHistory(promptId: string, signal?: AbortSignal): Promise<unknown> {
    return this.json('POST', '/history', { delete: [promptId] }, signal);
  }

  queue(signal?: AbortSignal): Promise<unknown> {
    return this.json('GET', '/queue', undefined, signal);
  }

  /** Removes a prompt that has not started from ComfyUI's queue. */
  deleteQueued(promptId: string, signal?: AbortSignal): Promise<unknown> {
    return this.json('POST', '/queue', { delete: [promptId] }, signal);
  }

  /** Interrupts the prompt if it is the one running (ComfyUI ignores an id that is not running). */
  interrupt(promptId: string, signal?: AbortSignal): Promise<unknown> {
    return this.json('POST', '/interrupt', { prompt_id: promptId }, signal);
  }

  /** Uploads an input image (`job.data.images`); answers the name ComfyUI stored it under. */
  async uploadImage(name: string, bytes: Buffer, signal?: AbortSignal): Promise<{ name: string }> {
    const form = new FormData();
    form.append('image', new Blob([bytes]), name);
    form.append('overwrite', 'true');
    form.append('type', 'input');
    const r = (await this.request('POST', '/upload/image', form, signal)) as { name?: unknown } | undefined;
    return { name: typeof r?.name === 'string' ? r.name : name };
  }

  /** Streams a file ComfyUI lists in an output into `dest`. */
  async download(
    file: { filename: string; subfolder: string; type: string },
    dest: string,
    signal?: AbortSignal,
  ): Promise<{ contentType: string | undefined }> {
    const q = new URLSearchParams({ filename: file.filename, subfolder: file.subfolder, type: file.type });
    const route = `/view?${q.toString()}`;
    // Downloads may be large (video): only the connection is bounded by the timeout, not the body.
    const res = await this.fetchHeaders('GET', route, signal);
    if (!res.ok || !res.body) throw new ComfyHttpError('/view', res.status, await readBody(res));
    await pipeline(
      Readable.fromWeb(res.body as WebReadableStream<Uint8Array>, { signal }),
      createWriteStream(dest, { flags: 'wx' }),
    );
    return { contentType: res.headers.get('content-type') ?? undefined };
  }

  private async json(method: string, route: string, body: unknown, signal?: AbortSignal): Promise<unknown> {
    return this.request(method, route, body === undefined ? undefined : JSON.stringify(body), signal);
  }

  private async request(
    method: string,
    route: string,
    body: string | FormData | undefined,
    signal?: AbortSignal,
  ): Promise<unknown> {
    const timeout = AbortSignal.timeout(this.timeoutMs);
    const both = signal ? AbortSignal.any([timeout, signal]) : timeout;
    const name = route.split('?')[0] as string;
    try {
      const res = await this.fetch(method, route, body, both);
      const parsed = await readBody(res);
      if (!res.ok) throw new ComfyHttpError(name, res.status, parsed);
      return parsed;
    } catch (err) {
      if (err instanceof ComfyHttpError) throw err;
      if (signal?.aborted) throw signal.reason;
      throw new ComfyUnreachableError(name, err);
    }
  }

  /**
   * Answers once the headers are in. The timeout bounds only that: a download's body (a video) may take
   * longer, bounded by the caller's signal alone.
   */
  private async fetchHeaders(method: string, route: string, signal?: AbortSignal): Promise<Response> {
    const controller = new AbortController();
    const timer = setTimeout(
      () => controller.abort(new Error(`no answer within ${this.timeoutMs} ms`)),
      this.timeoutMs,
    );
    const onAbort = (): void => controller.abort(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const res = await this.fetch(method, route, undefined, controller.signal);
      // The body stays bound to the caller's signal through the controller.
      return res;
    } catch (err) {
      signal?.removeEventListener('abort', onAbort);
      if (signal?.aborted) throw signal.reason;
      throw new ComfyUnreachableError(route.split('?')[0] as string, err);
    } finally {
      clearTimeout(timer);
    }
  }

  private fetch(
    method: string,
    route: string,
    body: string | FormData | undefined,
    signal: AbortSignal,
  ): Promise<Response> {
    return fetch(`${this.baseUrl}${route}`, {
      method,
      body,
      headers: typeof body === 'string' ? { 'content-type': 'application/json' } : undefined,
      signal,
    });
  }
}

async function readBody(res: Response): Promise<unknown> {
  const text = await res.text().catch(() => '');
  if (!text) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}
