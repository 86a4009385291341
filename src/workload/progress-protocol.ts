import { z } from 'zod';

/**
 * The progress protocol: a workload in any language reports job and node progress by printing one line
 * `::agent:: {json}` per event on stdout. The README documents every event; this schema is the contract.
 */
export const PROTOCOL_PREFIX = '::agent::';

const id = z.union([z.string().min(1).max(256), z.number().int().nonnegative()]).transform(String);
const text = (max: number) => z.string().max(max);
const errorInfo = z.union([
  text(10_000).transform((message) => ({ message })),
  z.object({
    message: text(10_000),
    exception_type: text(256).optional(),
    traceback: z.union([text(100_000), z.array(text(10_000)).max(1000)]).optional(),
    details: z.unknown().optional(),
  }),
]);

const jobId = id.optional();

export const protocolEventSchema = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('job.start'),
    job_id: jobId,
    queue: text(256).optional(),
    name: text(256).optional(),
    nodes_total: z.number().int().nonnegative().max(100_000).optional(),
    nodes: z
      .array(z.object({ id, type: text(256), display: text(256).optional(), parent: id.optional() }))
      .max(10_000)
      .optional(),
    traceparent: text(55).optional(),
  }),
  z.object({
    type: z.literal('job.progress'),
    job_id: jobId,
    progress_percent: z.number().min(0).max(100),
    message: text(1000).optional(),
  }),
  z.object({
    type: z.literal('job.end'),
    job_id: jobId,
    status: z.enum(['completed', 'failed', 'canceled']).default('completed'),
    result: z.unknown().optional(),
    error: errorInfo.optional(),
  }),
  z.object({
    type: z.literal('node.start'),
    job_id: jobId,
    node_id: id,
    node_type: text(256).optional(),
    display: text(256).optional(),
    parent: id.optional(),
  }),
  z.object({
    type: z.literal('node.progress'),
    job_id: jobId,
    node_id: id,
    node_type: text(256).optional(),
    step: z.number().nonnegative(),
    total: z.number().positive(),
  }),
  z.object({
    type: z.literal('node.end'),
    job_id: jobId,
    node_id: id,
    node_type: text(256).optional(),
    status: z.enum(['completed', 'cached', 'failed', 'interrupted']).default('completed'),
    error: errorInfo.optional(),
  }),
  z.object({
    type: z.literal('artifact'),
    job_id: jobId,
    path: text(4096).min(1),
    content_type: text(256).optional(),
  }),
  z.object({
    type: z.literal('error'),
    job_id: jobId,
    node_id: id.optional(),
    message: text(10_000),
    exception_type: text(256).optional(),
    traceback: z.union([text(100_000), z.array(text(10_000)).max(1000)]).optional(),
  }),
]);

export type ProtocolEvent = z.output<typeof protocolEventSchema>;
export type ProtocolEventType = ProtocolEvent['type'];

export type ParsedLine =
  { kind: 'text' } | { kind: 'event'; event: ProtocolEvent } | { kind: 'invalid'; error: string };

/** Classifies one output line: ordinary text, a protocol event, or a protocol line that is malformed. */
export function parseProtocolLine(line: string): ParsedLine {
  const start = line.indexOf(PROTOCOL_PREFIX);
  // Only at the start (after optional whitespace), so ordinary output quoting the prefix is left alone.
  if (start === -1 || line.slice(0, start).trim() !== '') return { kind: 'text' };
  const body = line.slice(start + PROTOCOL_PREFIX.length).trim();
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    return { kind: 'invalid', error: 'not valid JSON after the prefix' };
  }
  const r = protocolEventSchema.safeParse(json);
  if (!r.success) {
    const first = r.error.issues[0];
    const where = first?.path.length ? `${first.path.join('.')}: ` : '';
    return { kind: 'invalid', error: `${where}${first?.message ?? 'invalid event'}` };
  }
  return { kind: 'event', event: r.data };
}

/** Turns a traceback given as one string or as lines into lines. */
export function tracebackLines(tb: string | string[] | undefined): string[] | undefined {
  if (tb === undefined) return undefined;
  return Array.isArray(tb) ? tb : tb.split('\n');
}
