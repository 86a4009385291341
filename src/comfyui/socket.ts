import WebSocket from 'ws';
import type { Logger } from 'pino';
import { parseMessage } from './protocol.js';
import type { ComfyMessage } from './protocol.js';

export interface ComfySocketOptions {
  url: string;
  logger: Logger;
  /** First reconnect delay; doubles up to `maxBackoffMs`, with jitter. @defaultValue 250 */
  minBackoffMs?: number;
  /** @defaultValue 10000 */
  maxBackoffMs?: number;
  /** How long opening the socket may take. @defaultValue 10000 */
  connectTimeoutMs?: number;
  /**
   * How often the socket is pinged; a socket that has not answered by the next ping is taken as dead and
   * replaced. ComfyUI sends no heartbeat of its own, so without this a half-open connection (a NAT or
   * proxy that dropped it) would look open forever. @defaultValue 15000
   */
  pingIntervalMs?: number;
}

export type SocketState = 'connecting' | 'open' | 'closed';

export interface SocketListener {
  message(m: ComfyMessage): void;
  /** The socket is open (first time or again). */
  opened?(): void;
  /** The socket is open again after being down: events in between were missed. */
  reopened?(): void;
  /** The socket went down. */
  down?(reason: string): void;
}

/** Longest text frame read; ComfyUI's largest (`executed` with many outputs) stays far below. */
const MAX_PAYLOAD = 64 * 1024 * 1024;

/**
 * The agent's one websocket to ComfyUI, kept open: reconnects with backoff whenever it drops, and
 * hands every understood message to the listeners. Binary frames (previews) are counted and dropped
 * without being decoded.
 */
export class ComfySocket {
  private ws: WebSocket | undefined;
  private timer: NodeJS.Timeout | undefined;
  private attempt = 0;
  private closed = false;
  private everOpened = false;
  private readonly listeners = new Set<SocketListener>();
  private waiters: { resolve: () => void; reject: (e: unknown) => void; signal?: AbortSignal }[] = [];
  state: SocketState = 'connecting';
  /** Why the socket is not open, while it is not. */
  lastError: string | undefined;
  readonly stats = { opened: 0, messages: 0, binary: 0, invalid: 0, drops: 0 };

  constructor(private readonly opts: ComfySocketOptions) {}

  start(): void {
    this.connect();
  }

  subscribe(l: SocketListener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  /** Resolves once the socket is open; rejects when `signal` aborts first or the socket is closed for good. */
  whenOpen(signal?: AbortSignal): Promise<void> {
    if (this.state === 'open') return Promise.resolve();
    if (this.closed) return Promise.reject(new Error('the ComfyUI connection is closed'));
    signal?.throwIfAborted();
    return new Promise<void>((resolve, reject) => {
      const w = { resolve, reject, signal };
      this.waiters.push(w);
      signal?.addEventListener(
        'abort',
        () => {
          this.waiters = this.waiters.filter((x) => x !== w);
          reject(signal.reason instanceof Error ? signal.reason : new Error(String(signal.reason)));
        },
        { once: true },
      );
    });
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.ws?.removeAllListeners();
    this.ws?.on('error', () => undefined);
    this.ws?.terminate();
    this.state = 'closed';
    for (const w of this.waiters) w.reject(new Error('the ComfyUI connection is closed'));
    this.waiters = [];
  }

  private connect(): void {
    if (this.closed) return;
    this.state = 'connecting';
    const ws = new WebSocket(this.opts.url, {
      handshakeTimeout: this.opts.connectTimeoutMs ?? 10_000,
      maxPayload: MAX_PAYLOAD,
      perMessageDeflate: false,
    });
    this.ws = ws;
    let alive = true;
    let pinger: NodeJS.Timeout | undefined;
    ws.on('pong', () => (alive = true));
    ws.on('open', () => {
      pinger = setInterval(() => {
        if (!alive) {
          this.lastError = 'no answer to a ping';
          ws.terminate();
          return;
        }
        alive = false;
        ws.ping();
      }, this.opts.pingIntervalMs ?? 15_000);
      pinger.unref();
      const reopened = this.everOpened;
      this.everOpened = true;
      this.attempt = 0;
      this.state = 'open';
      this.lastError = undefined;
      this.stats.opened++;
      this.opts.logger.info({ data: { url: this.opts.url, reconnect: reopened } }, 'ComfyUI websocket open');
      for (const w of this.waiters) w.resolve();
      this.waiters = [];
      this.each((l) => l.opened?.());
      if (reopened) this.each((l) => l.reopened?.());
    });
    ws.on('message', (raw: WebSocket.RawData, isBinary: boolean) => {
      if (isBinary) {
        this.stats.binary++;
        return;
      }
      const text = Buffer.isBuffer(raw)
        ? raw.toString('utf8')
        : Array.isArray(raw)
          ? Buffer.concat(raw).toString('utf8')
          : Buffer.from(raw).toString('utf8');
      const parsed = parseMessage(text);
      if (parsed.kind === 'message') {
        this.stats.messages++;
        this.each((l) => l.message(parsed.message));
      } else if (parsed.kind === 'invalid') {
        if (this.stats.invalid++ < 20) {
          this.opts.logger.warn(
            { data: { type: parsed.type, error: parsed.error } },
            'ComfyUI message not understood',
          );
        }
      }
    });
    ws.on('error', (err: Error) => {
      this.lastError = err.message;
    });
    ws.on('close', (code: number) => {
      clearInterval(pinger);
      if (this.ws !== ws) return;
      const wasOpen = this.state === 'open';
      this.state = 'connecting';
      if (this.closed) return;
      const reason = this.lastError ?? `closed with code ${code}`;
      this.lastError = reason;
      if (wasOpen) {
        this.stats.drops++;
        this.opts.logger.warn({ data: { reason } }, 'ComfyUI websocket dropped; reconnecting');
        this.each((l) => l.down?.(reason));
      } else if (this.attempt === 0 || this.attempt % 20 === 0) {
        this.opts.logger.info({ data: { reason, attempt: this.attempt } }, 'waiting for ComfyUI');
      }
      const delay = backoffMs(
        this.attempt++,
        this.opts.minBackoffMs ?? 250,
        this.opts.maxBackoffMs ?? 10_000,
      );
      this.timer = setTimeout(() => this.connect(), delay);
      this.timer.unref();
    });
  }

  private each(f: (l: SocketListener) => void): void {
    for (const l of this.listeners) {
      try {
        f(l);
      } catch (err) {
        this.opts.logger.error({ error: err }, 'ComfyUI message handler failed');
      }
    }
  }
}

/** Exponential backoff with ±20 % jitter, so a fleet does not reconnect in lockstep. */
export function backoffMs(attempt: number, min: number, max: number): number {
  const base = Math.min(max, min * 2 ** Math.min(attempt, 30));
  return Math.round(base * (0.8 + Math.random() * 0.4));
}
