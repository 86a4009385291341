import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Queue } from 'bullmq';
import type { Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { startFakeComfyUI } from '../fakes/comfyui/fake-comfyui.js';
import type { FakeComfyUI } from '../fakes/comfyui/fake-comfyui.js';
import { ROOT, eventually, http, startAgentProcess, tempDir } from '../helpers/agent.js';
import type { AgentProcess } from '../helpers/agent.js';
import { deletePrefix, redisClient, testRedis } from '../helpers/redis.js';

/**
 * Recorded ComfyUI runs (test/fixtures/comfyui: the messages ComfyUI's own code paths send, in order)
 * replayed at the agent over a real websocket. What `/debug/workflow` must end with is worked out from
 * the messages themselves, so any other recorded run can be dropped into the folder.
 */
const FIXTURES = path.join(ROOT, 'test/fixtures/comfyui');

interface Fixture {
  description: string;
  prompt: Record<string, { class_type: string }>;
  messages: ({ type: string; data: Record<string, unknown> } | { binary: string })[];
  history?: Record<string, unknown>;
}

interface NodeView {
  id: string;
  node_id: string;
  type: string;
  status: string;
  progress: { steps: number; total: number } | null;
  error: { message: string; traceback: string[] | null } | null;
}
interface WorkflowView {
  job_id: string;
  state: string;
  progress_percent: number;
  nodes: NodeView[];
}

/** The output files a run lists, in `executed` messages and its history. */
function outputsOf(f: Fixture): { filename: string; subfolder: string; type: string }[] {
  const found = new Map<string, { filename: string; subfolder: string; type: string }>();
  const scan = (output: unknown): void => {
    if (!output || typeof output !== 'object') return;
    for (const list of Object.values(output)) {
      if (!Array.isArray(list)) continue;
      for (const item of list as unknown[]) {
        const x = item as { filename?: unknown; subfolder?: unknown; type?: unknown };
        if (item && typeof item === 'object' && typeof x.filename === 'string') {
          const o = {
            filename: x.filename,
            subfolder: typeof x.subfolder === 'string' ? x.subfolder : '',
            type: typeof x.type === 'string' ? x.type : 'output',
          };
          found.set(`${o.type}/${o.subfolder}/${o.filename}`, o);
        }
      }
    }
  };
  for (const m of f.messages) if ('type' in m && m.type === 'executed') scan(m.data.output);
  const outputs = (f.history as { outputs?: Record<string, unknown> } | undefined)?.outputs ?? {};
  for (const o of Object.values(outputs)) scan(o);
  return [...found.values()];
}

/** A node id as ComfyUI writes it: a string, or a number in older servers. */
function idOf(v: unknown): string {
  return typeof v === 'string' || typeof v === 'number' ? String(v) : '';
}

/** Each node's last state and its steps, as the messages tell them. */
function expected(f: Fixture): {
  outcome: 'completed' | 'failed';
  nodes: Map<string, { status: string; steps?: number; total?: number }>;
} {
  const nodes = new Map<string, { status: string; steps?: number; total?: number }>();
  const touch = (id: string, status = 'completed'): void => {
    const n = nodes.get(id);
    if (!n) nodes.set(id, { status });
    else if (n.status === 'completed' || status !== 'completed') n.status = status;
  };
  let outcome: 'completed' | 'failed' = 'completed';
  for (const m of f.messages) {
    if (!('type' in m)) continue;
    const d = m.data;
    switch (m.type) {
      case 'execution_cached':
        for (const id of d.nodes as unknown[]) nodes.set(idOf(id), { status: 'cached' });
        break;
      case 'executing':
        if (d.node !== null && d.node !== undefined) touch(idOf(d.node));
        break;
      case 'progress': {
        const id = idOf(d.node);
        touch(id);
        const n = nodes.get(id)!;
        n.steps = Math.max(n.steps ?? 0, d.value as number);
        n.total = d.max as number;
        break;
      }
      case 'execution_error':
        touch(idOf(d.node_id), 'failed');
        outcome = 'failed';
        break;
      case 'execution_interrupted':
        touch(idOf(d.node_id), 'interrupted');
        outcome = 'failed';
        break;
    }
  }
  return { outcome, nodes };
}

describe('recorded ComfyUI runs replayed at the agent', function () {
  this.timeout(60_000);
  const files = readdirSync(FIXTURES).filter((f) => f.endsWith('.json'));
  let comfy: FakeComfyUI | undefined;
  let agent: AgentProcess | undefined;
  let conn: Redis | undefined;
  let queue: Queue | undefined;
  let redis: { url: string; prefix: string } | undefined;

  afterEach(async () => {
    await agent?.stop();
    await comfy?.close();
    await queue?.close();
    conn?.disconnect();
    if (redis) await deletePrefix(redis.url, redis.prefix);
  });

  it('has recordings to replay', () => {
    assert.ok(files.length >= 5, files.join(','));
  });

  for (const file of files) {
    it(`tracks every node and step of ${file}, the percent never going back`, async () => {
      const f = JSON.parse(readFileSync(path.join(FIXTURES, file), 'utf8')) as Fixture;
      const start = f.messages.find((m) => 'type' in m && m.type === 'execution_start');
      assert.ok(start && 'type' in start, 'the run has an execution_start');
      const promptId = String(start.data.prompt_id);
      redis = await testRedis();
      conn = redisClient(redis.url);
      queue = new Queue('jobs', { connection: conn, prefix: redis.prefix });
      comfy = await startFakeComfyUI({ baseDir: tempDir('gpa-comfy-') });
      // The files the run lists, in ComfyUI's folders, as its nodes would have written them.
      const files = new Map<string, Buffer>();
      for (const out of outputsOf(f)) {
        const rel = path.join(out.type, out.subfolder, out.filename);
        const bytes = Buffer.from(`${file}:${rel}`);
        mkdirSync(path.dirname(path.join(comfy.baseDir, rel)), { recursive: true });
        writeFileSync(path.join(comfy.baseDir, rel), bytes);
        files.set(out.filename, bytes);
      }
      const messages = f.messages.map((m) => ('binary' in m ? Buffer.from(m.binary, 'base64') : m));
      comfy.replay(promptId, messages, { delayMs: 15, history: f.history });
      agent = await startAgentProcess({
        env: {
          REDIS_URL: redis.url,
          QUEUE_PREFIX: redis.prefix,
          JOB_RUNNER: 'comfyui',
          COMFYUI_URL: comfy.url,
          ARTIFACTS_DIR: tempDir('gpa-art-'),
        },
      });
      const a = agent;
      await queue.add('replay', { workflow: f.prompt }, { jobId: promptId, attempts: 1 });
      const seen: number[] = [];
      let job: Job | undefined;
      while (!job) {
        const r = await http<WorkflowView>(`${a.url}/debug/workflow?job_id=${promptId}`);
        if (r.status === 200 && r.body.job_id === promptId) seen.push(r.body.progress_percent);
        // The state first, then the job: a job read before its move lacks its result.
        const state = await queue.getJobState(promptId);
        if (state === 'completed' || state === 'failed') job = await queue.getJob(promptId);
        else await new Promise((res) => setTimeout(res, 10));
      }
      for (let i = 1; i < seen.length; i++) {
        assert.ok(seen[i]! >= seen[i - 1]!, `percent went back: ${seen.join(',')}`);
      }
      assert.ok(new Set(seen).size > 3, `the percent moved while it ran: ${seen.join(',')}`);

      const want = expected(f);
      assert.equal(await job.getState(), want.outcome, job.failedReason);
      const wf = await eventually(async () => {
        const r = await http<WorkflowView>(`${a.url}/debug/workflow?job_id=${promptId}`);
        return r.body.state === want.outcome ? r.body : undefined;
      });
      const byId = new Map(wf.nodes.map((n) => [n.node_id, n]));
      for (const id of Object.keys(f.prompt)) {
        const n = byId.get(id);
        assert.ok(n, `node ${id} listed`);
        assert.equal(n.id, `${f.prompt[id]!.class_type}_${id}`);
        const w = want.nodes.get(id);
        assert.equal(n.status, w?.status ?? 'pending', `status of ${n.id}`);
        if (w?.total !== undefined) {
          const steps = w.status === 'completed' ? w.total : w.steps;
          assert.deepEqual(n.progress, { steps, total: w.total }, `steps of ${n.id}`);
        }
      }
      if (want.outcome === 'completed') assert.equal(wf.progress_percent, 100);
      if (want.outcome === 'completed') {
        // Every output file, whatever its kind, with the sha256 of its bytes.
        const result = job.returnvalue as {
          artifacts: { name: string; sha256: string; size_bytes: number }[];
        };
        assert.deepEqual(result.artifacts.map((x) => path.basename(x.name)).sort(), [...files.keys()].sort());
        for (const x of result.artifacts) {
          const bytes = files.get(path.basename(x.name))!;
          assert.equal(x.sha256, createHash('sha256').update(bytes).digest('hex'), x.name);
          assert.equal(x.size_bytes, bytes.length);
        }
      }
      const failed = [...want.nodes].find(([, n]) => n.status === 'failed');
      if (failed) {
        const n = byId.get(failed[0])!;
        assert.ok(n.error?.message, 'the error message is kept');
        assert.ok((n.error?.traceback ?? []).length > 0, 'the traceback is kept');
      }
    });
  }
});
