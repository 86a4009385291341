import assert from 'node:assert/strict';
import {
  executedOutputs,
  neededNodes,
  outputFiles,
  parentOf,
  parseHistory,
  parseJobData,
  parseMessage,
  queuePosition,
} from '../../src/comfyui/protocol.js';

describe('ComfyUI protocol', function () {
  it('parses the messages of a run and leaves unknown types alone', function () {
    const m = parseMessage(
      JSON.stringify({ type: 'progress', data: { value: 3, max: 20, prompt_id: 'p', node: '3' } }),
    );
    assert.equal(m.kind, 'message');
    assert.deepEqual(m.kind === 'message' && m.message, {
      type: 'progress',
      data: { value: 3, max: 20, prompt_id: 'p', node: '3' },
    });
    // Numeric node ids (older servers) read as strings.
    const cached = parseMessage(
      JSON.stringify({ type: 'execution_cached', data: { nodes: [4, '7:3'], prompt_id: 'p' } }),
    );
    assert.deepEqual(cached.kind === 'message' && cached.message.data, {
      nodes: ['4', '7:3'],
      prompt_id: 'p',
    });
    const end = parseMessage(JSON.stringify({ type: 'executing', data: { node: null, prompt_id: 'p' } }));
    assert.equal(end.kind === 'message' && end.message.type === 'executing' && end.message.data.node, null);
    assert.deepEqual(parseMessage(JSON.stringify({ type: 'crystools.monitor', data: {} })), {
      kind: 'ignored',
      type: 'crystools.monitor',
    });
    assert.equal(parseMessage('{oops').kind, 'invalid');
    assert.equal(parseMessage(JSON.stringify({ data: {} })).kind, 'invalid');
    const bad = parseMessage(JSON.stringify({ type: 'progress', data: { value: 'x', max: 2 } }));
    assert.equal(bad.kind, 'invalid');
    assert.match(bad.kind === 'invalid' ? bad.error : '', /value/);
  });

  it('lists every output file whatever its key, and nothing that is not a file', function () {
    const files = outputFiles('9', {
      images: [{ filename: 'a_00001_.png', subfolder: '', type: 'output' }],
      gifs: [{ filename: 'v_00001.mp4', subfolder: 'vid', type: 'output', format: 'video/h264-mp4' }],
      audio: [{ filename: 'a.flac', subfolder: '', type: 'temp' }],
      animated: [true],
      text: ['hello'],
      weird: [{ subfolder: 'x' }, null, 'y'],
    });
    assert.deepEqual(
      files.map((f) => [f.kind, f.filename, f.subfolder, f.type, f.nodeId]),
      [
        ['images', 'a_00001_.png', '', 'output', '9'],
        ['gifs', 'v_00001.mp4', 'vid', 'output', '9'],
        ['audio', 'a.flac', '', 'temp', '9'],
      ],
    );
    assert.equal(files[1]?.format, 'video/h264-mp4');
    assert.deepEqual(outputFiles('1', null), []);
  });

  it('reads a history entry and where a prompt is in the queue', function () {
    const body = {
      p1: {
        prompt: [0, 'p1', {}, {}, ['9']],
        outputs: { '9': { images: [] } },
        status: {
          status_str: 'success',
          completed: true,
          messages: [['execution_start', { prompt_id: 'p1' }]],
        },
        meta: {},
      },
    };
    assert.equal(parseHistory(body, 'p1')?.status?.status_str, 'success');
    assert.equal(parseHistory(body, 'p2'), undefined);
    assert.equal(parseHistory({}, 'p1'), undefined);
    const q = { queue_running: [[3, 'run', {}, {}, []]], queue_pending: [[4, 'wait', {}, {}, []]] };
    assert.equal(queuePosition(q, 'run'), 'running');
    assert.equal(queuePosition(q, 'wait'), 'pending');
    assert.equal(queuePosition(q, 'gone'), 'absent');
    assert.equal(queuePosition(undefined, 'run'), 'absent');
  });

  it("takes a job's workflow and images, and says what is wrong with bad ones", function () {
    const workflow = { '3': { class_type: 'KSampler', inputs: { steps: 20 } } };
    assert.deepEqual(parseJobData({ workflow }).workflow, workflow);
    // worker-comfyui's shape
    assert.deepEqual(
      parseJobData({ input: { workflow, images: [{ name: 'a.png', image: 'AAAA' }] } }).images,
      [{ name: 'a.png', image: 'AAAA' }],
    );
    assert.throws(() => parseJobData({}), /no `workflow`/);
    assert.throws(() => parseJobData({ workflow: {} }), /no nodes/);
    assert.throws(() => parseJobData({ workflow: { '3': { inputs: {} } } }), /3\.class_type/);
    assert.throws(
      () => parseJobData({ workflow, images: [{ name: '../evil.png', image: 'AAAA' }] }),
      /without directories/,
    );
  });

  it('knows which nodes ComfyUI runs: the outputs and what they need', function () {
    const w = {
      '1': { class_type: 'Loader', inputs: {} },
      '2': { class_type: 'Encode', inputs: { clip: ['1', 1] } },
      '3': { class_type: 'Save', inputs: { images: ['2', 0], prefix: 'x' } },
      '4': { class_type: 'Unused', inputs: { model: ['1', 0] } },
      '5:1': { class_type: 'Inner', inputs: { a: [2, 0] } },
    };
    assert.deepEqual([...neededNodes(w, ['3'])].sort(), ['1', '2', '3']);
    assert.deepEqual([...neededNodes(w, ['5:1', 'missing'])].sort(), ['1', '2', '5:1']);
    assert.deepEqual(executedOutputs({ prompt: [0, 'p', {}, {}, ['3', 9]], outputs: {} }), ['3', '9']);
    assert.deepEqual(executedOutputs({ outputs: { '7': {} } }), ['7']);
  });

  it('finds the node a subgraph node belongs to', function () {
    assert.equal(parentOf('7:3'), '7');
    assert.equal(parentOf('7:3:12'), '7:3');
    assert.equal(parentOf('12'), undefined);
  });
});
