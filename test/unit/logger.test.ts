import assert from 'node:assert/strict';
import { LogRing } from '../../src/logging/log-ring.js';
import { createLogger } from '../../src/logging/logger.js';

describe('createLogger', () => {
  const realNow = Date.now;
  afterEach(() => {
    Date.now = realNow;
  });

  it('stamps each record with its millisecond in ISO 8601, across seconds and padded milliseconds', () => {
    const lines: string[] = [];
    const logger = createLogger({
      level: 'info',
      service: 's',
      environment: 'test',
      podId: 'p',
      ring: new LogRing(100),
      out: { write: (l: string) => lines.push(l) },
    });
    const base = Date.parse('2026-11-22T18:51:59.000Z');
    const times = [0, 5, 5, 42, 999, 1000, 1007, 1080, 61_234, -1];
    for (const dt of times) {
      Date.now = () => base + dt;
      logger.info('tick');
    }
    assert.deepEqual(
      lines.map((l) => (JSON.parse(l) as { timestamp: string }).timestamp),
      times.map((dt) => new Date(base + dt).toISOString()),
    );
  });
});
