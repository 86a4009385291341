#!/usr/bin/env node
// A queue job's command for the tests: reads the job data as JSON on stdin and behaves as it says.
//   steps (3)        sampler steps to report, each after step_ms (20)
//   gate             a file path: the job waits at step 1 until this file exists
//   pid_file         a file path to write this process's pid to
//   fail             { code, message }: print message on stderr and exit with code
//   output_lines     lines to print on stdout (they go to the job log)
// The result echoes what the agent gave the command: JOB_ID, JOB_QUEUE, JOB_ATTEMPT, TRACEPARENT, data.
import { existsSync, writeFileSync } from 'node:fs';

const P = process.env.AGENT_PROGRESS_PREFIX ?? '::agent::';
const emit = (e) => process.stdout.write(`${P} ${JSON.stringify(e)}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let input = '';
for await (const chunk of process.stdin) input += chunk;
const data = JSON.parse(input || 'null') ?? {};
if (data.pid_file) writeFileSync(data.pid_file, String(process.pid));

const steps = data.steps ?? 3;
emit({
  type: 'job.start',
  nodes: [
    { id: '4', type: 'CheckpointLoaderSimple' },
    { id: '3', type: 'KSampler' },
  ],
});
emit({ type: 'node.start', node_id: '4', node_type: 'CheckpointLoaderSimple' });
emit({ type: 'node.end', node_id: '4' });
emit({ type: 'node.start', node_id: '3', node_type: 'KSampler' });
for (const line of data.output_lines ?? []) console.log(line);
for (let i = 1; i <= steps; i++) {
  emit({ type: 'node.progress', node_id: '3', step: i, total: steps });
  if (i === 1 && data.gate) while (!existsSync(data.gate)) await sleep(20);
  await sleep(data.step_ms ?? 20);
}
if (data.fail) {
  console.error('Traceback (most recent call last):');
  console.error(data.fail.message ?? 'RuntimeError: boom');
  process.exit(data.fail.code ?? 1);
}
emit({ type: 'node.end', node_id: '3' });
emit({
  type: 'job.end',
  result: {
    job_id: process.env.JOB_ID,
    queue: process.env.JOB_QUEUE,
    attempt: process.env.JOB_ATTEMPT,
    traceparent: process.env.TRACEPARENT ?? null,
    data,
  },
});
