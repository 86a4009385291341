import assert from 'node:assert/strict';
import type { JsonResponse } from './agent.js';

interface ErrorShape {
  error: {
    code: string;
    message: string;
    request_id: string | null;
    trace_id: string | null;
    details: unknown;
    help: string;
  };
}

/** The response is `status` with the documented error body carrying `code`. */
export function assertError(res: JsonResponse<unknown>, status: number, code: string): ErrorShape['error'] {
  assert.equal(res.status, status, `expected ${status}, got ${res.status}: ${JSON.stringify(res.body)}`);
  const body = res.body as ErrorShape;
  assert.ok(body && typeof body.error === 'object', 'body has an "error" object');
  const e = body.error;
  assert.deepEqual(Object.keys(e).sort(), ['code', 'details', 'help', 'message', 'request_id', 'trace_id']);
  assert.equal(e.code, code);
  assert.match(e.code, /^[A-Z][A-Z0-9_]*$/);
  assert.equal(typeof e.message, 'string');
  assert.ok(e.message.length > 0);
  assert.equal(typeof e.help, 'string');
  assert.equal(typeof e.request_id, 'string');
  const header = res.headers.get('x-request-id');
  if (header !== null) assert.equal(e.request_id, header, 'request_id matches the x-request-id header');
  return e;
}
