import { randomUUID } from 'node:crypto';
import http, { STATUS_CODES } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { RequestListener } from 'node:http';
import type { Logger } from 'pino';
import { errorBody } from './errors.js';
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

/** Creates the HTTP server around `app` with the limits above; malformed HTTP is answered in the error format. */
export function createServer(app: RequestListener, logger: Logger): http.Server {
  const server = http.createServer(
    {
      maxHeaderSize: SERVER_LIMITS.maxHeaderBytes,
      requestTimeout: SERVER_LIMITS.requestTimeoutMs,
      headersTimeout: SERVER_LIMITS.headersTimeoutMs,
      keepAliveTimeout: SERVER_LIMITS.keepAliveTimeoutMs,
      // How often the header and request deadlines are checked; Node's 30 s default would let a slow
      // client hold a socket three times longer than headersTimeoutMs says.
      connectionsCheckingInterval: 1000,
    },
    app,
  );
  server.maxConnections = SERVER_LIMITS.maxConnections;
  server.setTimeout(SERVER_LIMITS.socketTimeoutMs, (socket: Socket) => socket.destroy());
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
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
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\n` +
        `x-request-id: ${requestId}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
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
