#!/usr/bin/env node
// A stand-in for a ComfyUI-style workload: runs text-to-image jobs one after another and reports
// every node and sampler step through the agent's progress protocol. Use it to see the agent work:
//
//   MOCK_GPU=1 node dist/src/cli.js -- node scripts/demo-workload.mjs
//
// DEMO_JOBS limits the number of jobs (default: run forever); DEMO_SPEED scales the pace (2 = twice as fast).
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const prefix = process.env.AGENT_PROGRESS_PREFIX ?? '::agent::';
const speed = Number(process.env.DEMO_SPEED ?? 1) || 1;
const jobs = Number(process.env.DEMO_JOBS ?? Infinity);
const artifacts = process.env.ARTIFACTS_DIR ?? path.join(process.cwd(), 'artifacts');
const emit = (event) => process.stdout.write(`${prefix} ${JSON.stringify(event)}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms / speed));

let stopping = false;
process.on('SIGTERM', () => {
  console.log('SIGTERM: finishing the current job, then exiting');
  stopping = true;
});

const graph = [
  { id: '4', type: 'CheckpointLoaderSimple', ms: 1500 },
  { id: '6', type: 'CLIPTextEncode', ms: 300 },
  { id: '7', type: 'CLIPTextEncode', ms: 300 },
  { id: '5', type: 'EmptyLatentImage', ms: 100 },
  { id: '3', type: 'KSampler', steps: 30, ms: 120 },
  { id: '8', type: 'VAEDecode', ms: 800 },
  { id: '9', type: 'SaveImage', ms: 200 },
];

for (let n = 1; n <= jobs && !stopping; n++) {
  const jobId = `demo-${Date.now().toString(36)}-${n}`;
  console.log(`got prompt ${jobId}`);
  emit({ type: 'job.start', job_id: jobId, nodes: graph.map(({ id, type }) => ({ id, type })) });
  for (const node of graph) {
    // The checkpoint stays loaded after the first job, as ComfyUI caches it.
    if (n > 1 && node.type === 'CheckpointLoaderSimple') {
      emit({ type: 'node.end', node_id: node.id, node_type: node.type, status: 'cached' });
      continue;
    }
    emit({ type: 'node.start', node_id: node.id, node_type: node.type });
    if (node.steps) {
      for (let step = 1; step <= node.steps; step++) {
        await sleep(node.ms);
        emit({ type: 'node.progress', node_id: node.id, step, total: node.steps });
      }
    } else {
      await sleep(node.ms);
    }
    if (node.type === 'SaveImage') {
      const dir = path.join(artifacts, jobId);
      mkdirSync(dir, { recursive: true });
      writeFileSync(
        path.join(dir, 'ComfyUI_00001_.png'),
        Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex'),
      );
      emit({ type: 'artifact', path: `${jobId}/ComfyUI_00001_.png` });
    }
    emit({ type: 'node.end', node_id: node.id });
  }
  emit({ type: 'job.end', status: 'completed', result: { images: 1 } });
  console.log(
    `Prompt executed in ${(graph.reduce((s, g) => s + g.ms * (g.steps ?? 1), 0) / 1000 / speed).toFixed(2)} seconds`,
  );
  await sleep(2000);
}
process.exit(0);
