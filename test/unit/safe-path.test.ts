import assert from 'node:assert/strict';
import { tempDir } from '../helpers/agent.js';
import { createHash } from 'node:crypto';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  UnsafePathError,
  checkRelativeName,
  relativeInside,
  resolveInside,
} from '../../src/artifacts/safe-path.js';
import { ArtifactStore, artifactUrl } from '../../src/artifacts/artifact-store.js';

function reason(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof UnsafePathError ? err.reason : 'other';
  }
  return undefined;
}

describe('artifact paths', function () {
  let root: string;
  let outside: string;
  before(function () {
    const base = tempDir('gpa-safe-');
    root = path.join(base, 'root');
    outside = path.join(base, 'outside');
    mkdirSync(path.join(root, 'job'), { recursive: true });
    mkdirSync(outside);
    writeFileSync(path.join(root, 'job', 'a.png'), 'png');
    writeFileSync(path.join(outside, 'secret.txt'), 'secret');
    symlinkSync(path.join(outside, 'secret.txt'), path.join(root, 'job', 'link.txt'));
    symlinkSync(outside, path.join(root, 'dirlink'));
  });

  it('accepts plain relative names', function () {
    assert.equal(checkRelativeName('job/a.png'), 'job/a.png');
  });

  it('refuses absolute names, traversal, control characters and odd segments', function () {
    assert.equal(
      reason(() => checkRelativeName('/etc/passwd')),
      'absolute',
    );
    assert.equal(
      reason(() => checkRelativeName('C:/x')),
      'absolute',
    );
    assert.equal(
      reason(() => checkRelativeName('../x')),
      'traversal',
    );
    assert.equal(
      reason(() => checkRelativeName('a/../../x')),
      'traversal',
    );
    assert.equal(
      reason(() => checkRelativeName('a\\..\\x')),
      'invalid',
    );
    assert.equal(
      reason(() => checkRelativeName('a\0b')),
      'invalid',
    );
    assert.equal(
      reason(() => checkRelativeName('a//b')),
      'invalid',
    );
    assert.equal(
      reason(() => checkRelativeName('./a')),
      'invalid',
    );
    assert.equal(
      reason(() => checkRelativeName('')),
      'invalid',
    );
  });

  it('follows symlinks and refuses those that lead out of the root', async function () {
    assert.equal(await resolveInside(root, 'job/a.png'), path.join(root, 'job', 'a.png'));
    await assert.rejects(resolveInside(root, 'job/link.txt'), (e: UnsafePathError) => e.reason === 'outside');
    await assert.rejects(
      resolveInside(root, 'dirlink/secret.txt'),
      (e: UnsafePathError) => e.reason === 'outside',
    );
    await assert.rejects(
      resolveInside(root, 'job/missing.png'),
      (e: UnsafePathError) => e.reason === 'missing',
    );
  });

  it('maps absolute paths inside the root to names', function () {
    assert.equal(relativeInside(root, path.join(root, 'job', 'a.png')), 'job/a.png');
    assert.equal(relativeInside(root, path.join(outside, 'secret.txt')), undefined);
    assert.equal(relativeInside(root, root), undefined);
  });

  it('records artifacts with size, type and sha256, and refuses those outside', async function () {
    const store = new ArtifactStore(root, 10, () => 42);
    const a = await store.add('j1', path.join(root, 'job', 'a.png'));
    assert.deepEqual(a, {
      jobId: 'j1',
      name: 'job/a.png',
      sizeBytes: 3,
      contentType: 'image/png',
      sha256: createHash('sha256').update('png').digest('hex'),
      createdAt: 42,
    });
    assert.deepEqual(store.list('j1'), [a]);
    assert.equal(store.find('j1', 'job/a.png'), a);
    assert.equal(artifactUrl({ jobId: 'j 1', name: 'job/a b.png' }), '/debug/artifacts/j%201/job/a%20b.png');
    await assert.rejects(store.add('j1', 'job/link.txt'), UnsafePathError);
    await assert.rejects(store.add('j1', path.join(outside, 'secret.txt')), UnsafePathError);
    await assert.rejects(store.add('j1', 'job'), UnsafePathError);
  });
});
