import assert from 'node:assert/strict';
import { tempDir } from '../helpers/agent.js';
import pino from 'pino';
import { ArtifactStore } from '../../src/artifacts/artifact-store.js';
import { JobStore } from '../../src/jobs/job-store.js';
import { WorkflowStore } from '../../src/workflow/workflow-store.js';
import { ProgressApplier } from '../../src/workload/progress-applier.js';

function setup() {
  const jobs = new JobStore(10);
  const workflows = new WorkflowStore(10);
  const artifacts = new ArtifactStore(tempDir('gpa-applier-'), 10);
  let n = 0;
  const applier = new ProgressApplier({
    jobs,
    workflows,
    artifacts,
    logger: pino({ level: 'silent' }),
    defaultQueue: 'workload',
    source: 'workload',
    newJobId: () => `gen-${++n}`,
  });
  return { jobs, workflows, applier };
}

describe('ProgressApplier', function () {
  it('starts an implicit job for node events that come without one', function () {
    const { jobs, workflows, applier } = setup();
    applier.apply({ type: 'node.start', node_id: '1', node_type: 'KSampler' });
    assert.equal(applier.jobId, 'gen-1');
    assert.equal(jobs.get('gen-1')?.state, 'active');
    assert.equal(jobs.get('gen-1')?.queue, 'workload');
    assert.equal(workflows.currentNode('gen-1')?.id, 'KSampler_1');
  });

  it('mirrors the workflow percent into the job', function () {
    const { jobs, applier } = setup();
    applier.apply({
      type: 'job.start',
      job_id: 'j',
      nodes: [
        { id: '1', type: 'A' },
        { id: '2', type: 'B' },
      ],
    });
    applier.apply({ type: 'node.start', node_id: '1' });
    applier.apply({ type: 'node.end', node_id: '1', status: 'completed' });
    assert.equal(jobs.get('j')?.progressPercent, 50);
    applier.apply({ type: 'job.progress', progress_percent: 80 });
    assert.equal(jobs.get('j')?.progressPercent, 80);
  });

  it('fails the job with the reported error, and keeps an error event on the node', function () {
    const { jobs, workflows, applier } = setup();
    applier.apply({
      type: 'job.start',
      job_id: 'j',
      traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    });
    assert.equal(jobs.get('j')?.traceId, '4bf92f3577b34da6a3ce929d0e0e4736');
    applier.apply({ type: 'node.start', node_id: '3', node_type: 'KSampler' });
    applier.apply({
      type: 'error',
      node_id: '3',
      message: 'CUDA out of memory',
      exception_type: 'OutOfMemoryError',
      traceback: 'a\nb',
    });
    const node = workflows.get('j')!.nodes.get('3')!;
    assert.equal(node.status, 'failed');
    assert.deepEqual(node.error, {
      message: 'CUDA out of memory',
      exceptionType: 'OutOfMemoryError',
      traceback: ['a', 'b'],
    });
    applier.apply({ type: 'job.end', status: 'failed' });
    const job = jobs.get('j')!;
    assert.equal(job.state, 'failed');
    assert.equal(job.failure?.message, 'CUDA out of memory');
    assert.equal(job.failure?.nodeId, '3');
    assert.equal(applier.jobId, undefined);
  });

  it('fails the running job when the workload goes away', function () {
    const { jobs, applier } = setup();
    applier.apply({ type: 'job.start', job_id: 'j' });
    applier.abandon({ message: 'workload exited with code 1' });
    assert.equal(jobs.get('j')?.state, 'failed');
    assert.equal(jobs.get('j')?.failure?.message, 'workload exited with code 1');
  });

  it('ignores progress for a job it does not know', function () {
    const { jobs, applier } = setup();
    applier.apply({ type: 'job.progress', job_id: 'ghost', progress_percent: 10 });
    applier.apply({ type: 'job.end', job_id: 'ghost', status: 'completed' });
    assert.equal(jobs.get('ghost'), undefined);
  });
});
