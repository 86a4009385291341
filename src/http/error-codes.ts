/**
 * Every error code the HTTP API answers with, and the hint sent along as `help`. Codes are stable:
 * E2E tests match on them.
 */
export const ERROR_CODES = {
  NOT_FOUND:
    'No route answers this path. Routes: /health, /ready, /metrics, /debug/{status,gpu,workflow,logs,events,queue,memory,artifacts,config}.',
  METHOD_NOT_ALLOWED: 'This route does not take this method; the Allow header lists those it takes.',
  INVALID_QUERY: 'A query parameter is malformed; `details` names it and says what is expected.',
  INVALID_REQUEST_ID:
    'x-request-id must be a UUID (or, with REQUEST_ID_FORMAT=token, 1–128 visible ASCII characters); omit it to get one assigned.',
  INVALID_BODY: 'The body must be JSON of the documented shape; `details` says what is wrong.',
  UNSUPPORTED_MEDIA_TYPE: 'Send the body as application/json.',
  PAYLOAD_TOO_LARGE: 'The body is larger than this route accepts.',
  UNAUTHORIZED: 'Send the debug token as `Authorization: Bearer <DEBUG_TOKEN>`.',
  JOB_NOT_FOUND: 'No job with this id is running or in the recent history (JOB_HISTORY_SIZE bounds it).',
  JOB_NOT_RUNNING: 'Only a job running on this pod can be canceled here; /debug/queue lists them.',
  NOT_A_WORKER: 'This pod takes no jobs from the queue, so it has none to cancel.',
  ARTIFACT_NOT_FOUND: 'The job has no artifact of this name.',
  DETAIL_NOT_AVAILABLE:
    'Only the nvidia-smi backend takes nvidia-smi reports; the agent never runs a tool for a request.',
  RANGE_NOT_SATISFIABLE:
    'The Range header asks for bytes past the end of the file; Content-Range gives its size.',
  INVALID_ARTIFACT_PATH:
    'Artifact names are relative paths inside the job; absolute paths, "..", and links out are refused.',
  BAD_REQUEST: 'The request is not valid HTTP.',
  HEADERS_TOO_LARGE: 'Request headers are larger than the server accepts (16 KiB).',
  REQUEST_TIMEOUT: 'The request was not received in time.',
  EXPECTATION_FAILED: 'The server takes only "Expect: 100-continue"; send the request without Expect.',
  TOO_MANY_STREAMS:
    'Every /debug/events stream slot is taken (EVENTS_MAX_STREAMS); retry later, or close a stream you hold.',
  INTERNAL_ERROR: 'The agent failed to answer; the log record with this request_id has the cause.',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;
