// A workload that reports a four-node image workflow through the agent's progress protocol.
// It pauses at KSampler step 12/30 until $RELEASE_FILE exists, so a test can look at the agent while
// the job runs, then finishes, writes an artifact and exits with $EXIT_CODE.
// On SIGTERM it prints a line and exits with $SIGTERM_EXIT_CODE once $DRAIN_RELEASE_FILE exists
// (at once when unset); with IGNORE_SIGTERM=1 it ignores SIGTERM.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const prefix = process.env.AGENT_PROGRESS_PREFIX ?? '::agent::';
const emit = (event) => process.stdout.write(`${prefix} ${JSON.stringify(event)}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const waitForFile = async (file) => {
  while (file && !existsSync(file)) await sleep(20);
};

process.on('SIGTERM', async () => {
  if (process.env.IGNORE_SIGTERM === '1') {
    console.log('ignoring SIGTERM');
    return;
  }
  console.log('SIGTERM received, finishing up');
  await waitForFile(process.env.DRAIN_RELEASE_FILE);
  process.exit(Number(process.env.SIGTERM_EXIT_CODE ?? 0));
});

const jobId = process.env.JOB_ID_TO_REPORT ?? 'job-1';
console.log('workload booting');
console.error('WARNING: low disk space on /tmp');
console.log(JSON.stringify({ level: 'error', message: 'structured failure report', code: 42 }));

emit({
  type: 'job.start',
  job_id: jobId,
  nodes: [
    { id: '4', type: 'CheckpointLoaderSimple' },
    { id: '3', type: 'KSampler' },
    { id: '8', type: 'VAEDecode' },
    { id: '9', type: 'SaveImage' },
  ],
});
emit({ type: 'node.start', node_id: '4', node_type: 'CheckpointLoaderSimple' });
emit({ type: 'node.end', node_id: '4' });
emit({ type: 'node.start', node_id: '3', node_type: 'KSampler' });
for (let step = 1; step <= 12; step++) emit({ type: 'node.progress', node_id: '3', step, total: 30 });
console.log('sampling at step 12');
process.stdout.write(`${prefix} this is not json\n`);
process.stdout.write(`${prefix} {not json\n`);

await waitForFile(process.env.RELEASE_FILE);

for (let step = 13; step <= 30; step++) emit({ type: 'node.progress', node_id: '3', step, total: 30 });
emit({ type: 'node.end', node_id: '3' });
emit({ type: 'node.start', node_id: '8', node_type: 'VAEDecode' });
emit({ type: 'node.end', node_id: '8' });
emit({ type: 'node.start', node_id: '9', node_type: 'SaveImage' });
const dir = path.join(process.env.ARTIFACTS_DIR, jobId);
mkdirSync(dir, { recursive: true });
writeFileSync(path.join(dir, 'image_00001.png'), Buffer.from('89504e470d0a1a0a', 'hex'));
emit({ type: 'artifact', path: `${jobId}/image_00001.png` });
emit({ type: 'artifact', path: '../../etc/passwd' });
emit({ type: 'node.end', node_id: '9' });
emit({ type: 'job.end', status: 'completed', result: { images: 1 } });
console.log('done');
await sleep(Number(process.env.LINGER_MS ?? 0));
process.exit(Number(process.env.EXIT_CODE ?? 0));
