import assert from 'node:assert/strict';
import { WorkflowStore, displayNodeId } from '../../src/workflow/workflow-store.js';
import type { WorkflowEvent } from '../../src/workflow/workflow-store.js';

const GRAPH = [
  { id: '4', type: 'CheckpointLoaderSimple' },
  { id: '3', type: 'KSampler' },
  { id: '8', type: 'VAEDecode' },
  { id: '9', type: 'SaveImage' },
];

describe('WorkflowStore', function () {
  let t: number;
  let store: WorkflowStore;
  beforeEach(function () {
    t = 0;
    store = new WorkflowStore(2, () => t);
  });

  it('shows declared nodes as pending with <class_type>_<id> names', function () {
    const wf = store.begin('j', GRAPH);
    assert.equal(wf.nodesTotal, 4);
    assert.deepEqual(
      [...wf.nodes.values()].map((n) => [n.id, n.nodeId, n.status]),
      [
        ['CheckpointLoaderSimple_4', '4', 'pending'],
        ['KSampler_3', '3', 'pending'],
        ['VAEDecode_8', '8', 'pending'],
        ['SaveImage_9', '9', 'pending'],
      ],
    );
    assert.equal(displayNodeId('', '7'), '7');
  });

  it('runs nodes one at a time: starting a node completes the running one', function () {
    store.begin('j', GRAPH);
    t = 10;
    store.nodeStart('j', '4');
    t = 50;
    store.nodeStart('j', '3');
    const wf = store.get('j')!;
    const loader = wf.nodes.get('4')!;
    assert.equal(loader.status, 'completed');
    assert.equal(loader.startedAt, 10);
    assert.equal(loader.endedAt, 50);
    assert.equal(store.currentNode('j')?.id, 'KSampler_3');
  });

  it('weights the overall percent by steps, never lowers it, and reaches 100 only on completion', function () {
    store.begin('j', GRAPH);
    store.nodeStart('j', '4');
    store.nodeEnd('j', '4', 'completed');
    const p1 = store.get('j')!.progressPercent;
    assert.equal(p1, 25, 'one of four unit-weight nodes');
    store.nodeStart('j', '3');
    store.nodeProgress('j', '3', 1, 30);
    // The sampler now weighs 30: (1 + 1) / (1 + 30 + 1 + 1) is lower than 25 %, but the bar holds.
    assert.equal(store.get('j')!.progressPercent, 25);
    store.nodeProgress('j', '3', 15, 30);
    assert.equal(store.get('j')!.progressPercent, 48.5);
    store.nodeProgress('j', '3', 10, 30);
    assert.equal(store.get('j')!.nodes.get('3')!.step, 15, 'steps never go back');
    store.nodeEnd('j', '3', 'completed');
    store.nodeEnd('j', '8', 'completed');
    store.nodeEnd('j', '9', 'completed');
    assert.equal(store.get('j')!.progressPercent, 99.9);
    store.finish('j', 'completed');
    assert.equal(store.get('j')!.progressPercent, 100);
  });

  it('counts cached nodes as done', function () {
    store.begin('j', GRAPH);
    store.nodeEnd('j', '4', 'cached');
    store.nodeEnd('j', '3', 'cached');
    assert.equal(store.get('j')!.progressPercent, 50);
    assert.equal(store.get('j')!.nodes.get('4')!.status, 'cached');
  });

  it('adds nodes the graph did not declare and grows the total', function () {
    store.begin('j', [], 2);
    store.nodeStart('j', 'a', 'X');
    store.nodeStart('j', 'b', 'Y');
    store.nodeStart('j', 'c', 'Z');
    assert.equal(store.get('j')!.nodesTotal, 3);
  });

  it('marks running nodes failed or interrupted when the job ends badly, and ignores later events', function () {
    store.begin('j', GRAPH);
    store.nodeStart('j', '3');
    store.finish('j', 'canceled');
    assert.equal(store.get('j')!.nodes.get('3')!.status, 'interrupted');
    store.nodeStart('j', '8');
    assert.equal(store.get('j')!.nodes.get('8')!.status, 'pending');
    store.begin('k', GRAPH);
    store.nodeStart('k', '3');
    store.finish('k', 'failed');
    assert.equal(store.get('k')!.nodes.get('3')!.status, 'failed');
  });

  it('keeps a node error', function () {
    store.begin('j', GRAPH);
    store.nodeStart('j', '3');
    store.nodeEnd('j', '3', 'failed', {
      error: { message: 'CUDA out of memory', exceptionType: 'torch.OutOfMemoryError' },
    });
    assert.deepEqual(store.get('j')!.nodes.get('3')!.error, {
      message: 'CUDA out of memory',
      exceptionType: 'torch.OutOfMemoryError',
    });
  });

  it('keeps a bounded number of workflows', function () {
    for (const id of ['a', 'b', 'c', 'd', 'e']) store.begin(id);
    assert.equal(store.get('a'), undefined);
    assert.ok(store.get('e'));
  });

  it('emits node transitions and progress', function () {
    const seen: string[] = [];
    store.subscribe((e: WorkflowEvent) =>
      seen.push(
        e.type === 'node'
          ? `${e.node.id}:${e.from}->${e.node.status}`
          : e.type === 'progress'
            ? `${e.progressPercent}%`
            : 'step',
      ),
    );
    store.begin('j', [{ id: '1', type: 'A' }]);
    store.nodeStart('j', '1');
    store.nodeProgress('j', '1', 1, 2);
    store.nodeEnd('j', '1', 'completed');
    assert.deepEqual(seen, ['A_1:pending->running', 'step', '50%', 'A_1:running->completed', '99.9%']);
  });
});
