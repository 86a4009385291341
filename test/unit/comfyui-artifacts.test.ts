import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, symlinkSync, writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { ArtifactStore } from '../../src/artifacts/artifact-store.js';
import { UnsafePathError } from '../../src/artifacts/safe-path.js';
import { collectOutputFile, jobDirName } from '../../src/comfyui/artifacts.js';
import { ComfyClient } from '../../src/comfyui/client.js';
import type { OutputFile } from '../../src/comfyui/protocol.js';
import { tempDir } from '../helpers/agent.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** A client whose every request fails: these tests read ComfyUI's folder, never its HTTP API. */
const offline = new ComfyClient('http://127.0.0.1:9', 200);

function setup() {
  const comfyDir = tempDir('gpa-comfy-');
  for (const d of ['output', 'temp', 'input']) mkdirSync(path.join(comfyDir, d), { recursive: true });
  const root = tempDir('gpa-artifacts-');
  const artifacts = new ArtifactStore(root, 10);
  return { comfyDir, root, artifacts };
}

const file = (f: Partial<OutputFile>): OutputFile => ({
  kind: 'images',
  filename: 'x.png',
  subfolder: '',
  type: 'output',
  nodeId: '9',
  ...f,
});

describe('ComfyUI output files as artifacts', function () {
  it("copies a file from ComfyUI's folder under the job's directory, with its sha256", async function () {
    const { comfyDir, root, artifacts } = setup();
    const bytes = Buffer.from('a video, in spirit');
    mkdirSync(path.join(comfyDir, 'output', 'clips'));
    writeFileSync(path.join(comfyDir, 'output', 'clips', 'v_00001.mp4'), bytes);
    const a = await collectOutputFile(
      'job/1',
      file({ kind: 'gifs', filename: 'v_00001.mp4', subfolder: 'clips' }),
      {
        client: offline,
        artifacts,
        comfyDir,
      },
    );
    assert.equal(a.name, 'job_1/clips/v_00001.mp4');
    assert.equal(a.sha256, sha(bytes));
    assert.equal(a.sizeBytes, bytes.length);
    assert.equal(a.contentType, 'video/mp4');
    assert.deepEqual(readFileSync(path.join(root, a.name)), bytes);
    // temp files keep their folder apart from outputs of the same name
    writeFileSync(path.join(comfyDir, 'temp', 'x.png'), 'preview');
    const t = await collectOutputFile('job/1', file({ type: 'temp' }), {
      client: offline,
      artifacts,
      comfyDir,
    });
    assert.equal(t.name, 'job_1/temp/x.png');
  });

  it("records a file in place when the artifacts directory is ComfyUI's output folder", async function () {
    const { comfyDir } = setup();
    const artifacts = new ArtifactStore(path.join(comfyDir, 'output'), 10);
    writeFileSync(path.join(comfyDir, 'output', 'ComfyUI_00001_.png'), 'png');
    const a = await collectOutputFile('j', file({ filename: 'ComfyUI_00001_.png' }), {
      client: offline,
      artifacts,
      comfyDir,
    });
    assert.equal(a.name, 'ComfyUI_00001_.png');
    assert.ok(!existsSync(path.join(comfyDir, 'output', 'j')), 'no copy was made');
  });

  it("refuses names that climb out, absolute names and symlinks out of ComfyUI's folder", async function () {
    const { comfyDir, root, artifacts } = setup();
    const outside = path.join(tempDir('gpa-outside-'), 'secret.txt');
    writeFileSync(outside, 'secret');
    symlinkSync(outside, path.join(comfyDir, 'output', 'link.png'));
    const opts = { client: offline, artifacts, comfyDir };
    const refused = async (f: OutputFile, reason: string): Promise<void> => {
      await assert.rejects(collectOutputFile('j', f, opts), (err: unknown) => {
        assert.ok(err instanceof UnsafePathError, String(err));
        assert.equal(err.reason, reason);
        return true;
      });
    };
    await refused(file({ filename: '../../secret.txt' }), 'traversal');
    await refused(file({ subfolder: '../..', filename: 'secret.txt' }), 'traversal');
    await refused(file({ type: '../output' }), 'traversal');
    await refused(file({ filename: '/etc/passwd' }), 'absolute');
    await refused(file({ filename: 'link.png' }), 'outside');
    assert.deepEqual(artifacts.list('j'), undefined, 'nothing was recorded');
    assert.ok(!existsSync(path.join(root, 'j')), 'nothing was written');
  });

  it('makes a safe directory name of any job id', function () {
    assert.equal(jobDirName('42'), '42');
    assert.equal(jobDirName('../..'), 'job_.._..');
    assert.equal(jobDirName('a/b c'), 'a_b_c');
    assert.equal(jobDirName(''), 'job_');
  });
});
