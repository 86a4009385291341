import type { ErrorCode } from './error-codes.js';
import { ERROR_CODES } from './error-codes.js';

/** Thrown by handlers; the error middleware turns it into the documented error body. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: ErrorCode,
    message: string,
    readonly details: unknown = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

export interface ErrorBody {
  error: {
    code: ErrorCode;
    message: string;
    request_id: string | null;
    trace_id: string | null;
    details: unknown;
    help: string;
  };
}

export function errorBody(
  code: ErrorCode,
  message: string,
  ids: { requestId?: string; traceId?: string },
  details: unknown = null,
): ErrorBody {
  return {
    error: {
      code,
      message,
      request_id: ids.requestId ?? null,
      trace_id: ids.traceId ?? null,
      details,
      help: ERROR_CODES[code],
    },
  };
}
