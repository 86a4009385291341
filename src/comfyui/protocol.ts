import { z } from 'zod';

/**
 * What ComfyUI says, as far as the agent reads it: the websocket messages of a prompt's run, the
 * `/history/{prompt_id}` entry and `/queue`. Parsing is lenient (unknown fields pass, unknown message
 * types are ignored) because ComfyUI adds fields between releases; only what the agent relies on is
 * checked.
 */

const nodeId = z.union([z.string(), z.number()]).transform(String);
const optionalNodeId = z.union([nodeId, z.null()]).optional();

const executionStart = z.looseObject({ prompt_id: z.string(), timestamp: z.number().optional() });
const executionCached = z.looseObject({
  prompt_id: z.string(),
  nodes: z.array(nodeId),
  timestamp: z.number().optional(),
});
const executing = z.looseObject({
  prompt_id: z.string().optional(),
  node: optionalNodeId,
  display_node: optionalNodeId,
});
const progress = z.looseObject({
  prompt_id: z.string().optional(),
  node: optionalNodeId,
  value: z.number(),
  max: z.number(),
});
const progressStateNode = z.looseObject({
  value: z.number(),
  max: z.number(),
  state: z.string(),
  node_id: optionalNodeId,
  display_node_id: optionalNodeId,
  parent_node_id: optionalNodeId,
  real_node_id: optionalNodeId,
});
const progressState = z.looseObject({
  prompt_id: z.string(),
  nodes: z.record(z.string(), progressStateNode),
});
const executed = z.looseObject({
  prompt_id: z.string().optional(),
  node: nodeId,
  display_node: optionalNodeId,
  output: z.record(z.string(), z.unknown()).nullable().optional(),
});
const executionSuccess = z.looseObject({ prompt_id: z.string(), timestamp: z.number().optional() });
const executionError = z.looseObject({
  prompt_id: z.string(),
  node_id: optionalNodeId,
  node_type: z.string().nullable().optional(),
  executed: z.array(nodeId).optional(),
  exception_message: z.string().nullable().optional(),
  exception_type: z.string().nullable().optional(),
  traceback: z
    .union([z.array(z.string()), z.string()])
    .nullable()
    .optional(),
  current_inputs: z.unknown().optional(),
  current_outputs: z.unknown().optional(),
  timestamp: z.number().optional(),
});
const executionInterrupted = z.looseObject({
  prompt_id: z.string(),
  node_id: optionalNodeId,
  node_type: z.string().nullable().optional(),
  executed: z.array(nodeId).optional(),
  timestamp: z.number().optional(),
});
const status = z.looseObject({
  status: z.looseObject({ exec_info: z.looseObject({ queue_remaining: z.number() }).optional() }).optional(),
  sid: z.string().optional(),
});

const schemas = {
  status,
  execution_start: executionStart,
  execution_cached: executionCached,
  executing,
  progress,
  progress_state: progressState,
  executed,
  execution_success: executionSuccess,
  execution_error: executionError,
  execution_interrupted: executionInterrupted,
} as const;

type Schemas = typeof schemas;
export type ComfyMessageType = keyof Schemas;

/** One websocket message the agent understands. */
export type ComfyMessage = {
  [K in ComfyMessageType]: { type: K; data: z.output<Schemas[K]> };
}[ComfyMessageType];

export type ExecutionError = z.output<typeof executionError>;
export type ProgressStateNode = z.output<typeof progressStateNode>;

export type ParsedMessage =
  | { kind: 'message'; message: ComfyMessage }
  /** A type the agent does not follow (crystools.monitor, previews' metadata, ...). */
  | { kind: 'ignored'; type: string }
  | { kind: 'invalid'; type?: string; error: string };

/** Parses one text frame of ComfyUI's websocket. */
export function parseMessage(text: string): ParsedMessage {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return { kind: 'invalid', error: 'not JSON' };
  }
  if (!raw || typeof raw !== 'object' || typeof (raw as { type?: unknown }).type !== 'string') {
    return { kind: 'invalid', error: 'no message type' };
  }
  const { type, data } = raw as { type: string; data?: unknown };
  return toMessage(type, data);
}

/** A message from its type and data (a websocket frame's, or one the history kept). */
export function toMessage(type: string, data: unknown): ParsedMessage {
  if (!Object.hasOwn(schemas, type)) return { kind: 'ignored', type };
  const r = schemas[type as ComfyMessageType].safeParse(data ?? {});
  if (!r.success) {
    const first = r.error.issues[0];
    return {
      kind: 'invalid',
      type,
      error: `${first?.path.join('.') || 'data'}: ${first?.message ?? 'invalid'}`,
    };
  }
  return { kind: 'message', message: { type, data: r.data } as ComfyMessage };
}

/** A file a node wrote, as ComfyUI lists it in an output (`images`, `gifs`, `audio`, `video`, ...). */
export interface OutputFile {
  /** The output key it was listed under. */
  kind: string;
  filename: string;
  subfolder: string;
  /** `output`, `temp` or `input`: the folder of ComfyUI it is in. */
  type: string;
  nodeId: string;
  format?: string;
}

/**
 * Every file an output lists, whatever the key: core nodes use `images` (also for animated WEBP and
 * video), `gifs` is what video nodes of the ecosystem use, `audio`, `video`, `3d` and custom keys
 * follow the same `{filename, subfolder, type}` shape. Values that are not file entries (`text`,
 * `animated`) are left out.
 */
export function outputFiles(
  nodeId: string,
  output: Record<string, unknown> | null | undefined,
): OutputFile[] {
  const files: OutputFile[] = [];
  if (!output) return files;
  for (const [kind, value] of Object.entries(output)) {
    if (!Array.isArray(value)) continue;
    for (const item of value as unknown[]) {
      if (!item || typeof item !== 'object') continue;
      const f = item as { filename?: unknown; subfolder?: unknown; type?: unknown; format?: unknown };
      if (typeof f.filename !== 'string' || f.filename === '') continue;
      files.push({
        kind,
        filename: f.filename,
        subfolder: typeof f.subfolder === 'string' ? f.subfolder : '',
        type: typeof f.type === 'string' ? f.type : 'output',
        nodeId,
        format: typeof f.format === 'string' ? f.format : undefined,
      });
    }
  }
  return files;
}

const historyEntry = z.looseObject({
  outputs: z.record(z.string(), z.record(z.string(), z.unknown()).nullable()).optional(),
  status: z
    .looseObject({
      status_str: z.string().optional(),
      completed: z.boolean().optional(),
      messages: z.array(z.tuple([z.string(), z.unknown()]).rest(z.unknown())).optional(),
    })
    .nullable()
    .optional(),
  meta: z.record(z.string(), z.unknown()).optional(),
});
export type HistoryEntry = z.output<typeof historyEntry>;

/** The entry of one prompt in a `/history/{prompt_id}` answer; undefined when there is none (yet). */
export function parseHistory(body: unknown, promptId: string): HistoryEntry | undefined {
  if (!body || typeof body !== 'object') return undefined;
  const entry = (body as Record<string, unknown>)[promptId];
  if (entry === undefined) return undefined;
  const r = historyEntry.safeParse(entry);
  return r.success ? r.data : undefined;
}

/** Where a prompt is in `/queue`: running, pending, or absent. */
export function queuePosition(body: unknown, promptId: string): 'running' | 'pending' | 'absent' {
  const has = (list: unknown): boolean =>
    Array.isArray(list) && list.some((item) => Array.isArray(item) && item[1] === promptId);
  if (!body || typeof body !== 'object') return 'absent';
  const q = body as { queue_running?: unknown; queue_pending?: unknown };
  if (has(q.queue_running)) return 'running';
  if (has(q.queue_pending)) return 'pending';
  return 'absent';
}

/** A node of an API-format workflow: `{class_type, inputs, _meta: {title}}`. */
export interface ApiNode {
  class_type: string;
  inputs?: Record<string, unknown>;
  _meta?: { title?: string };
}

const apiNode = z.looseObject({
  class_type: z.string().min(1).max(256),
  inputs: z.record(z.string(), z.unknown()).optional(),
  _meta: z.looseObject({ title: z.string().optional() }).optional(),
});
const apiWorkflow = z
  .record(z.string().min(1).max(256), apiNode)
  .refine((w) => Object.keys(w).length > 0, 'the workflow has no nodes')
  .refine((w) => Object.keys(w).length <= 10_000, 'more than 10000 nodes');

const jobImages = z
  .array(
    z.object({
      name: z
        .string()
        .min(1)
        .max(255)
        .regex(/^[^/\\\0]+$/, 'a file name without directories'),
      image: z.string().min(1),
    }),
  )
  .max(100);

/** What a `comfyui` job's data holds. */
export interface ComfyJobData {
  workflow: Record<string, ApiNode>;
  images: { name: string; image: string }[];
}

/**
 * Reads a job's data: `workflow` is the API-format graph (worker-comfyui's `input.workflow` is taken
 * too), `images` optional base64 uploads. Throws a readable message for anything else.
 */
export function parseJobData(data: unknown): ComfyJobData {
  const d = (data && typeof data === 'object' ? data : {}) as Record<string, unknown>;
  const input = d.input && typeof d.input === 'object' ? (d.input as Record<string, unknown>) : undefined;
  const workflow = d.workflow ?? input?.workflow;
  if (workflow === undefined) {
    throw new Error('job data has no `workflow` (the API-format graph to run)');
  }
  const w = apiWorkflow.safeParse(workflow);
  if (!w.success) {
    const first = w.error.issues[0];
    throw new Error(
      `job data \`workflow\` is not an API-format graph: ${first?.path.join('.') || 'workflow'}: ${first?.message ?? 'invalid'}`,
    );
  }
  const imgs = jobImages.safeParse(d.images ?? input?.images ?? []);
  if (!imgs.success) {
    const first = imgs.error.issues[0];
    throw new Error(
      `job data \`images\`: ${first?.path.join('.') || 'images'}: ${first?.message ?? 'invalid'}`,
    );
  }
  return { workflow: w.data, images: imgs.data };
}

/**
 * The node id a subgraph-expanded id belongs to: ComfyUI writes nodes inside a subgraph as
 * `<parent>:<child>` (nested: `a:b:c`).
 */
export function parentOf(id: string): string | undefined {
  const i = id.lastIndexOf(':');
  return i > 0 ? id.slice(0, i) : undefined;
}

/**
 * The nodes ComfyUI executes for a prompt: the output nodes and everything they depend on through
 * links (`[node_id, output_index]` inputs). Nodes outside that set never run.
 */
export function neededNodes(workflow: Record<string, ApiNode>, outputs: Iterable<string>): Set<string> {
  const needed = new Set<string>();
  const todo = [...outputs].filter((id) => workflow[id] !== undefined);
  while (todo.length > 0) {
    const id = todo.pop() as string;
    if (needed.has(id)) continue;
    needed.add(id);
    for (const v of Object.values(workflow[id]?.inputs ?? {})) {
      if (Array.isArray(v) && v.length === 2 && (typeof v[0] === 'string' || typeof v[0] === 'number')) {
        const dep = String(v[0]);
        if (workflow[dep] !== undefined && !needed.has(dep)) todo.push(dep);
      }
    }
  }
  return needed;
}

/** The output node ids a history entry says the prompt executed (`prompt[4]`), else those with outputs. */
export function executedOutputs(entry: HistoryEntry): string[] {
  const prompt = (entry as { prompt?: unknown }).prompt;
  const listed = Array.isArray(prompt) ? (prompt[4] as unknown) : undefined;
  if (Array.isArray(listed))
    return listed.filter((x) => typeof x === 'string' || typeof x === 'number').map(String);
  return Object.keys(entry.outputs ?? {});
}
