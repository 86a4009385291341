import assert from 'node:assert/strict';
import { LogRing } from '../../src/logging/log-ring.js';
import { createLogger } from '../../src/logging/logger.js';

describe('logs', function () {
  it('keeps the newest records up to capacity and counts the dropped ones', function () {
    const ring = new LogRing(3);
    for (let i = 0; i < 5; i++)
      ring.write(
        `${JSON.stringify({ level: 'info', message: `m${i}`, timestamp: new Date(i).toISOString() })}\n`,
      );
    assert.equal(ring.size, 3);
    assert.equal(ring.dropped, 2);
    const all = ring.query({ limit: 10, minLevel: 0 });
    assert.deepEqual(
      all.map((e) => (JSON.parse(e.line) as { message: string }).message),
      ['m2', 'm3', 'm4'],
    );
    assert.ok(!all[0]!.line.endsWith('\n'));
  });

  it('filters by level, job id, trace id and time', function () {
    const ring = new LogRing(100);
    const rec = (o: object): void => ring.write(JSON.stringify(o));
    rec({ level: 'debug', message: 'a', timestamp: '2026-01-01T00:00:00.000Z' });
    rec({ level: 'info', message: 'b', job_id: 'j1', timestamp: '2026-01-01T00:00:01.000Z' });
    rec({
      level: 'error',
      message: 'c',
      job_id: 'j1',
      trace_id: 't1',
      timestamp: '2026-01-01T00:00:02.000Z',
    });
    rec({ level: 'warn', message: 'd', job_id: 'j2', timestamp: '2026-01-01T00:00:03.000Z' });
    const msgs = (q: Parameters<LogRing['query']>[0]) =>
      ring.query(q).map((e) => (JSON.parse(e.line) as { message: string }).message);
    assert.deepEqual(msgs({ limit: 10, minLevel: 40 }), ['c', 'd']);
    assert.deepEqual(msgs({ limit: 10, minLevel: 0, jobId: 'j1' }), ['b', 'c']);
    assert.deepEqual(msgs({ limit: 10, minLevel: 0, traceId: 't1' }), ['c']);
    assert.deepEqual(msgs({ limit: 10, minLevel: 0, since: Date.parse('2026-01-01T00:00:02.000Z') }), [
      'c',
      'd',
    ]);
    assert.deepEqual(msgs({ limit: 1, minLevel: 0 }), ['d']);
  });

  it('keeps a line that is not JSON as an info record', function () {
    const ring = new LogRing(10);
    ring.write('plain text\n');
    const [e] = ring.query({ limit: 10, minLevel: 0 });
    assert.deepEqual(JSON.parse(e!.line), { level: 'info', message: 'plain text' });
  });

  it('writes the documented fields to stdout and the ring alike, with context ids', function () {
    const ring = new LogRing(10);
    const lines: string[] = [];
    const logger = createLogger({
      level: 'info',
      service: 'svc',
      environment: 'test',
      podId: 'pod-1',
      ring,
      out: { write: (l: string) => lines.push(l) },
    });
    logger.child({ request_id: 'r1', trace_id: 't1' }).info({ job_id: 'j1', data: { a: 1 } }, 'hello');
    logger.debug('not at info');
    assert.equal(lines.length, 1);
    const rec = JSON.parse(lines[0]!) as Record<string, unknown>;
    assert.equal(rec.level, 'info');
    assert.match(rec.timestamp as string, /^\d{4}-\d{2}-\d{2}T/);
    assert.equal(rec.message, 'hello');
    assert.equal(rec.service, 'svc');
    assert.equal(rec.environment, 'test');
    assert.equal(rec.pod_id, 'pod-1');
    assert.equal(rec.request_id, 'r1');
    assert.equal(rec.trace_id, 't1');
    assert.equal(rec.job_id, 'j1');
    assert.deepEqual(rec.data, { a: 1 });
    assert.equal(ring.query({ limit: 10, minLevel: 0 })[0]!.line, lines[0]!.trimEnd());
    logger.level = 'debug';
    logger.child({ source: 'x' }).debug('now at debug');
    assert.equal(lines.length, 2, 'children follow a runtime level change');
  });

  it("files the logger's records by level, time, job id and trace id without parsing them back", function () {
    const ring = new LogRing(10);
    const logger = createLogger({
      level: 'trace',
      service: 'svc',
      environment: 'test',
      podId: 'pod-1',
      ring,
      out: { write: () => true },
    });
    const before = Date.now();
    const job = logger.child({ job_id: 'bound', trace_id: 'tb' });
    job.warn('from a bound child');
    job.info({ job_id: 'own' }, 'own id wins, as in the line');
    logger.error({ trace_id: 'to' }, 'trace only');
    logger.debug({ job_id: 42 }, 'not a string id');
    const ids = (q: Partial<Parameters<LogRing['query']>[0]>) =>
      ring
        .query({ limit: 10, minLevel: 0, ...q })
        .map((e) => (JSON.parse(e.line) as { message: string }).message);
    assert.deepEqual(ids({ jobId: 'bound' }), ['from a bound child']);
    assert.deepEqual(ids({ jobId: 'own' }), ['own id wins, as in the line']);
    assert.deepEqual(ids({ traceId: 'tb' }), ['from a bound child', 'own id wins, as in the line']);
    assert.deepEqual(ids({ traceId: 'to' }), ['trace only']);
    assert.deepEqual(ids({ minLevel: 40 }), ['from a bound child', 'trace only']);
    for (const e of ring.query({ limit: 10, minLevel: 0 })) {
      const rec = JSON.parse(e.line) as { timestamp: string; job_id?: unknown };
      assert.equal(e.time, Date.parse(rec.timestamp), 'the entry time is the record timestamp');
      assert.ok(e.time >= before);
      // What the line says is what the entry is filed under (JSON readers take a repeated key's last value).
      assert.equal(e.jobId, typeof rec.job_id === 'string' ? rec.job_id : undefined);
    }
  });
});
