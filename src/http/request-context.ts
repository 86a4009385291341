import { randomUUID } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';
import { logContext } from '../logging/context.js';
import { parseTraceparent } from '../tracing/traceparent.js';

export interface RequestContext {
  requestId: string;
  traceId: string;
  /** The caller's x-request-id was present but malformed; the guard answers 400. */
  invalidRequestId?: string;
  startedAt: bigint;
}

declare module 'express-serve-static-core' {
  interface Request {
    ctx: RequestContext;
  }
}

// Hyphenated, or 32 hex digits as nginx's $request_id and other proxies send it.
const UUID = /^(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32})$/i;
const TOKEN = /^[\x21-\x7e]{1,128}$/;

/** Whether a caller's request id is acceptable under the configured format. */
export function isValidRequestId(id: string, format: 'uuid' | 'token'): boolean {
  if (format === 'token') return TOKEN.test(id);
  return UUID.test(id);
}

/**
 * Gives every request its ids before anything else runs: the caller's `x-request-id` when valid (a new
 * UUID otherwise), and the `traceparent` trace id when valid (a new one otherwise). Both go on every
 * log record written while the request is handled, and the request id is echoed back.
 */
export function requestContext(format: 'uuid' | 'token') {
  return (req: Request, res: Response, next: NextFunction): void => {
    const given = req.headers['x-request-id'];
    let requestId: string = randomUUID();
    let invalid: string | undefined;
    if (given !== undefined) {
      const value = Array.isArray(given) ? given.join(', ') : given;
      if (isValidRequestId(value, format)) requestId = value;
      else invalid = value;
    }
    const tp = parseTraceparent(
      typeof req.headers.traceparent === 'string' ? req.headers.traceparent : undefined,
    );
    const traceId = tp?.traceId ?? randomUUID().replace(/-/g, '');
    req.ctx = { requestId, traceId, invalidRequestId: invalid, startedAt: process.hrtime.bigint() };
    res.setHeader('x-request-id', requestId);
    res.setHeader('x-trace-id', traceId);
    logContext.run({ request_id: requestId, trace_id: traceId }, next);
  };
}
