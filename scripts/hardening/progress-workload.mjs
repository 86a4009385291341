#!/usr/bin/env node
// A workload for the hardening suites: prints progress-protocol events at a steady rate for the agent
// that supervises it (`node dist/src/cli.js -- node scripts/hardening/progress-workload.mjs`).
//
// HARDENING_EVENTS_PER_S   protocol lines per second, kept on average even when a tick runs late (100)
// HARDENING_MODE           `long`: one job whose sampler never ends, so progress flows the whole run;
//                          `jobs`: short jobs one after another, each with an artifact (long)
// HARDENING_STEPS          sampler steps per job in `jobs` mode (50)
// HARDENING_NODE_TYPES     distinct extra node types to cycle through in `jobs` mode, 0 for none (0)
// HARDENING_EXTRA_NODES    extra nodes per job in `jobs` mode, each of the next of those types (1)
// HARDENING_LOG_EVERY      also print a plain log line every N events, 0 for none (0)
// HARDENING_PREFILL_LINES  plain log lines printed at start, to fill the agent's log buffer (0)
// HARDENING_PRINT_ENV      1: print the environment the workload got, as one JSON line (0)
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const prefix = process.env.AGENT_PROGRESS_PREFIX ?? '::agent::';
const rate = Number(process.env.HARDENING_EVENTS_PER_S ?? 100);
const mode = process.env.HARDENING_MODE ?? 'long';
const steps = Number(process.env.HARDENING_STEPS ?? 50);
const nodeTypes = Number(process.env.HARDENING_NODE_TYPES ?? 0);
const extraNodes = Number(process.env.HARDENING_EXTRA_NODES ?? 1);
const logEvery = Number(process.env.HARDENING_LOG_EVERY ?? 0);
const prefill = Number(process.env.HARDENING_PREFILL_LINES ?? 0);
const artifactsDir = process.env.ARTIFACTS_DIR;

const out = [];
const emit = (event) => out.push(`${prefix} ${JSON.stringify(event)}`);
const flush = () => {
  if (out.length > 0) process.stdout.write(`${out.join('\n')}\n`);
  out.length = 0;
};

process.on('SIGTERM', () => {
  flush();
  process.exit(0);
});

if (process.env.HARDENING_PRINT_ENV === '1') {
  process.stdout.write(`${JSON.stringify({ message: 'workload environment', env: process.env })}\n`);
}
for (let i = 0; i < prefill; i++) {
  out.push(`prefill line ${i}: ${'x'.repeat(200)}`);
  if (out.length >= 500) flush();
}
flush();

// Each call yields the next protocol event; `jobs` mode walks through whole jobs.
const events = mode === 'jobs' ? jobEvents() : longJobEvents();

function* longJobEvents() {
  const jobId = `long-${process.pid}`;
  const total = rate * 24 * 3600;
  yield { type: 'job.start', job_id: jobId, nodes: [{ id: '3', type: 'KSampler' }] };
  yield { type: 'node.start', node_id: '3', node_type: 'KSampler' };
  for (let step = 1; ; step++) yield { type: 'node.progress', node_id: '3', step, total };
}

function* jobEvents() {
  let typeIndex = 0;
  for (let n = 1; ; n++) {
    const jobId = `job-${process.pid}-${n}`;
    const extras = Array.from({ length: extraNodes }, (_, k) => ({
      id: String(10 + k),
      type: nodeTypes > 0 ? `Custom_${typeIndex++ % nodeTypes}` : 'VAEDecode',
    }));
    yield {
      type: 'job.start',
      job_id: jobId,
      nodes: [
        { id: '4', type: 'CheckpointLoaderSimple' },
        { id: '3', type: 'KSampler' },
        ...extras,
        { id: '9', type: 'SaveImage' },
      ],
    };
    yield { type: 'node.start', node_id: '4', node_type: 'CheckpointLoaderSimple' };
    yield { type: 'node.end', node_id: '4' };
    yield { type: 'node.start', node_id: '3', node_type: 'KSampler' };
    for (let step = 1; step <= steps; step++)
      yield { type: 'node.progress', node_id: '3', step, total: steps };
    yield { type: 'node.end', node_id: '3' };
    for (const e of extras) {
      yield { type: 'node.start', node_id: e.id, node_type: e.type };
      yield { type: 'node.end', node_id: e.id };
    }
    yield { type: 'node.start', node_id: '9', node_type: 'SaveImage' };
    if (artifactsDir) {
      const name = `${jobId}/out_${n}.png`;
      mkdirSync(path.join(artifactsDir, jobId), { recursive: true });
      writeFileSync(path.join(artifactsDir, name), Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex'));
      yield { type: 'artifact', path: name, content_type: 'image/png' };
    }
    yield { type: 'node.end', node_id: '9' };
    yield { type: 'job.end', status: 'completed', result: { images: 1 } };
  }
}

const started = performance.now();
let emitted = 0;
const tick = () => {
  const due = Math.floor(((performance.now() - started) / 1000) * rate);
  while (emitted < due) {
    emit(events.next().value);
    emitted++;
    if (logEvery > 0 && emitted % logEvery === 0) out.push(`workload log line after ${emitted} events`);
  }
  flush();
};
setInterval(tick, 10);
