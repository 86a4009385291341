import { randomUUID } from 'node:crypto';
import http, { STATUS_CODES } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { RequestListener } from 'node:http';
import type { Logger } from 'pino';
import { errorBody } from './errors.js';
import { pacedListener } from './pacer.js';
import type { ErrorCode } from './error-codes.js';

/** Limits that keep slow or hostile clients from holding sockets or memory. */
export const SERVER_LIMITS = {
  /** Whole request headers must arrive within this (slowloris). */
  headersTimeoutMs: 10_000,
  /** The whole request must arrive within this. */
  requestTimeoutMs: 30_000,
  /** Idle keep-alive sockets close after this; above common proxy defaults of 60 s would pin sockets. */
  keepAliveTimeoutMs: 5_000,
  /** A socket with no traffic either way for this long is closed (a client that stopped reading). */
  socketTimeoutMs: 120_000,
  maxHeaderBytes: 16 * 1024,
  maxConnections: 1024,
} as const;

/** How long a closing connection stays open to drain what the client still sends (lingering close). */
const LINGER_MS = 2000;

/** Ends the write side now; the socket closes when the client closes its side, or after LINGER_MS. */
function lingerClose(socket: Socket): void {
  if (socket.writable) socket.end();
  if (socket.destroyed) return;
  const timer = setTimeout(() => socket.destroy(), LINGER_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
}

/** Creates the HTTP server around `app` with the limits above; malformed HTTP is answered in the error format. */
export function createServer(app: RequestListener, logger: Logger): http.Server {
  const refuse = (res: http.ServerResponse, status: number, code: ErrorCode, message: string): void => {
    const requestId = randomUUID();
    const body = JSON.stringify(errorBody(code, message, { requestId }));
    res.writeHead(status, {
      'Content-Type': 'application/json; charset=utf-8',
      'x-request-id': requestId,
      'Content-Length': Buffer.byteLength(body),
      Connection: 'close',
    });
    res.end(body);
  };
  const server = http.createServer(
    {
      maxHeaderSize: SERVER_LIMITS.maxHeaderBytes,
      requestTimeout: SERVER_LIMITS.requestTimeoutMs,
      headersTimeout: SERVER_LIMITS.headersTimeoutMs,
      keepAliveTimeout: SERVER_LIMITS.keepAliveTimeoutMs,
      // How often the header and request deadlines are checked; Node's 30 s default would let a slow
      // client hold a socket three times longer than headersTimeoutMs says.
      connectionsCheckingInterval: 1000,
      // Node would answer a request without Host with a bare 400; the routes need no Host.
      requireHostHeader: false,
    },
    pacedListener((req, res) => {
      // A target no URL parser takes (a broken absolute-form URI) would reach Express's own HTML 404.
      if (!URL.canParse(req.url ?? '', 'http://agent')) {
        refuse(res, 400, 'BAD_REQUEST', 'the request target is not a valid URL');
        return;
      }
      app(req, res);
    }),
  );
  // An Expect other than 100-continue: Node's own 417 has no body; this one is in the error format.
  server.on('checkExpectation', (_req: http.IncomingMessage, res: http.ServerResponse) =>
    refuse(res, 417, 'EXPECTATION_FAILED', 'only "Expect: 100-continue" is supported'),
  );
  // CONNECT (a proxy request) has no route here; without a handler Node would drop the socket silently.
  server.on('connect', (_req: http.IncomingMessage, socket: Socket) => {
    const requestId = randomUUID();
    const body = JSON.stringify(errorBody('METHOD_NOT_ALLOWED', 'CONNECT is not supported', { requestId }));
    socket.on('error', () => undefined);
    socket.end(
      `HTTP/1.1 405 Method Not Allowed\r\nContent-Type: application/json; charset=utf-8\r\n` +
        `x-request-id: ${requestId}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  });
  server.maxConnections = SERVER_LIMITS.maxConnections;
  server.setTimeout(SERVER_LIMITS.socketTimeoutMs, (socket: Socket) => socket.destroy());
  const answered = new WeakSet<Socket>();
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    // Already answered and lingering: what still arrives is read and dropped below.
    if (answered.has(socket)) return;
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    const [status, code, message]: [number, ErrorCode, string] =
      err.code === 'HPE_HEADER_OVERFLOW'
        ? [431, 'HEADERS_TOO_LARGE', 'request headers are too large']
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? [408, 'REQUEST_TIMEOUT', 'the request took too long to arrive']
          : [400, 'BAD_REQUEST', 'malformed HTTP request'];
    logger.debug({ data: { code: err.code, status } }, 'client error');
    const requestId = randomUUID();
    const body = JSON.stringify(errorBody(code, message, { requestId }));
    // What the client still sends after a parse error is dropped unparsed while the answer lingers.
    answered.add(socket);
    socket.removeAllListeners('data');
    socket.on('data', () => undefined);
    socket.resume();
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\n` +
        `x-request-id: ${requestId}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
    lingerClose(socket);
  });
  // Node closes a connection it answered with Connection: close as soon as the answer is written, even
  // while the request body is still arriving (a 1 MB body to a route that reads none). Closing with
  // unread data sends a reset, which makes the client drop the answer (RFC 9112 §9.6), so such a
  // connection lingers instead: the body is read and dropped until the client closes or LINGER_MS pass.
  server.on('connection', (socket: Socket & { destroySoon?: () => void }) => {
    if (typeof socket.destroySoon === 'function') socket.destroySoon = () => lingerClose(socket);
  });
  return server;
}

export function listen(server: http.Server, port: number, host: string): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve(server.address() as AddressInfo);
    });
  });
}

/**
 * Stops accepting connections, lets in-flight requests finish up to `graceMs`, then closes what is
 * left. Idempotent.
 */
export function closeServer(server: http.Server, graceMs: number): Promise<void> {
  if (!server.listening) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => server.closeAllConnections(), graceMs);
    timer.unref();
    server.close(() => {
      clearTimeout(timer);
      resolve();
    });
    server.closeIdleConnections();
  });
}
