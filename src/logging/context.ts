import { AsyncLocalStorage } from 'node:async_hooks';

/** Correlation fields that every record written inside a request (or job step) carries. */
export interface LogContext {
  request_id?: string;
  trace_id?: string;
  span_id?: string;
  job_id?: string;
  node_id?: string;
}

export const logContext = new AsyncLocalStorage<LogContext>();

export function withLogContext<T>(ctx: LogContext, fn: () => T): T {
  const parent = logContext.getStore();
  return logContext.run(parent ? { ...parent, ...ctx } : ctx, fn);
}
