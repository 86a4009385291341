import assert from 'node:assert/strict';
import { bearerChecker } from '../../src/http/auth.js';
import { isValidRequestId } from '../../src/http/request-context.js';
import { parseTraceparent } from '../../src/tracing/traceparent.js';
import { cgroupV1MemoryPath, cgroupV2Path, parseCgroupMemory } from '../../src/host/host-store.js';

describe('HTTP helpers', function () {
  it('parses W3C traceparent and ignores invalid ones', function () {
    assert.deepEqual(parseTraceparent('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'), {
      version: '00',
      traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
      parentId: '00f067aa0ba902b7',
      flags: '01',
    });
    for (const bad of [
      undefined,
      '',
      'garbage',
      '00-00000000000000000000000000000000-00f067aa0ba902b7-01',
      '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01',
      'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
      '00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01',
      '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra',
    ]) {
      assert.equal(parseTraceparent(bad), undefined, String(bad));
    }
    assert.equal(
      parseTraceparent('01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future')?.version,
      '01',
    );
  });

  it('validates request ids by the configured format', function () {
    assert.ok(isValidRequestId('0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9', 'uuid'));
    assert.ok(isValidRequestId('0F1E2D3C4B5A49788695A4B3C2D1E0F9', 'uuid'));
    assert.ok(!isValidRequestId('0f1e2d3c4b5a-4978-8695-a4b3c2d1e0f9', 'uuid'));
    assert.ok(!isValidRequestId('req-1', 'uuid'));
    assert.ok(isValidRequestId('req-1', 'token'));
    assert.ok(!isValidRequestId('has space', 'token'));
    assert.ok(!isValidRequestId('x'.repeat(129), 'token'));
    assert.ok(!isValidRequestId('é', 'token'));
  });

  it('checks bearer tokens', function () {
    const check = bearerChecker('s3cret-token');
    assert.ok(check('Bearer s3cret-token'));
    assert.ok(check('bearer s3cret-token'));
    assert.ok(!check('Bearer s3cret-tokenx'));
    assert.ok(!check('Bearer'));
    assert.ok(!check(undefined));
    assert.ok(!check('s3cret-token'));
  });

  it('parses cgroup memory files, v1 and v2, limited or not', function () {
    assert.deepEqual(parseCgroupMemory(2, 'max\n', '123\n'), {
      version: 2,
      limitBytes: undefined,
      usageBytes: 123,
    });
    assert.deepEqual(parseCgroupMemory(2, '1073741824\n', '5\n'), {
      version: 2,
      limitBytes: 1073741824,
      usageBytes: 5,
    });
    assert.deepEqual(parseCgroupMemory(1, '9223372036854771712\n', '7\n'), {
      version: 1,
      limitBytes: undefined,
      usageBytes: 7,
    });
    assert.equal(parseCgroupMemory(2, 'max', 'garbage'), null);
  });

  it("finds this process's own cgroup, v2 and v1", function () {
    assert.equal(cgroupV2Path('0::/kubepods/burstable/pod1/abc\n'), '/kubepods/burstable/pod1/abc');
    assert.equal(cgroupV2Path('0::/\n'), '/');
    assert.equal(cgroupV2Path('4:memory:/x\n'), undefined);
    assert.equal(cgroupV1MemoryPath('5:cpu,cpuacct:/a\n4:memory:/docker/123\n0::/\n'), '/docker/123');
    assert.equal(cgroupV1MemoryPath('4:hugetlb,memory:/k\n'), '/k');
    assert.equal(cgroupV1MemoryPath('0::/\n'), undefined);
  });
});
