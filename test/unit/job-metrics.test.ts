import assert from 'node:assert/strict';
import { GpuStore } from '../../gpu/index.js';
import { JobStore } from '../../src/jobs/job-store.js';
import { LogRing } from '../../src/logging/log-ring.js';
import { AgentMetrics } from '../../src/metrics/registry.js';
import { WorkflowStore } from '../../src/workflow/workflow-store.js';

function setup(): { jobs: JobStore; metrics: AgentMetrics; clock: { t: number } } {
  const clock = { t: 1_000_000 };
  const jobs = new JobStore(10, () => clock.t);
  const metrics = new AgentMetrics({
    version: '0',
    hostname: 'h',
    gpu: new GpuStore({ backend: 'mock', staleAfterMs: 1000, historySize: 10 }),
    jobs,
    workflows: new WorkflowStore(10, () => clock.t),
    logRing: new LogRing(10),
    queues: ['jobs'],
    ready: () => true,
    workloadRunning: () => undefined,
    dcgmCompat: false,
    now: () => clock.t,
  });
  return { jobs, metrics, clock };
}

function value(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('job metrics', () => {
  it('count a job that starts and ends within one turn of the event loop, in a render right after', async () => {
    const { jobs, metrics, clock } = setup();
    jobs.upsert({
      id: '1',
      queue: 'jobs',
      source: 'queue-worker',
      state: 'active',
      enqueuedAt: clock.t - 3000,
    });
    clock.t += 2000;
    jobs.transition('1', 'completed');
    const text = (await metrics.render()).toString();
    assert.equal(value(text, 'jobs_started_total{queue="jobs"}'), 1);
    assert.equal(value(text, 'jobs_completed_total{queue="jobs",status="completed"}'), 1);
    // Recorded as the job was at each event, not as it is later.
    assert.equal(value(text, 'job_queue_wait_seconds_sum{queue="jobs"}'), 3);
    assert.equal(value(text, 'job_duration_seconds_sum{queue="jobs",status="completed"}'), 2);
    metrics.close();
  });

  it('apply them without a render once the turn is over', async () => {
    const { jobs, metrics } = setup();
    jobs.upsert({ id: '1', queue: 'jobs', source: 'queue-worker', state: 'active' });
    jobs.transition('1', 'failed', { failure: { message: 'boom' } });
    await new Promise((r) => setImmediate(r));
    const json = await metrics.registry.getSingleMetric('jobs_completed_total')?.get();
    const failed = json?.values.find((v) => v.labels.status === 'failed');
    assert.equal(failed?.value, 1);
    metrics.close();
  });

  describe('the last scrape at shutdown', () => {
    it('is not waited for when nobody scrapes, or the scraper has read every job count', async () => {
      const { jobs, metrics, clock } = setup();
      jobs.upsert({ id: '1', queue: 'jobs', source: 'queue-worker', state: 'active' });
      jobs.transition('1', 'completed');
      assert.equal(await metrics.finalScrape(60_000), 0, 'nobody scraped');
      await metrics.render();
      clock.t += 1000;
      await metrics.render();
      assert.equal(await metrics.finalScrape(60_000), 0, 'the scraper read the completed job');
      metrics.close();
    });

    it('is waited for when a scraper has not read the newest job counts, until its next scrape', async () => {
      const { jobs, metrics, clock } = setup();
      await metrics.render();
      clock.t += 1000;
      await metrics.render();
      jobs.upsert({ id: '1', queue: 'jobs', source: 'queue-worker', state: 'active' });
      jobs.transition('1', 'completed');
      let waited: number | undefined;
      const waiting = metrics.finalScrape(60_000).then((ms) => (waited = ms));
      await new Promise((r) => setImmediate(r));
      assert.equal(waited, undefined, 'still waiting for the scraper');
      clock.t += 700;
      const text = (await metrics.render()).toString();
      await waiting;
      assert.equal(waited, 700);
      assert.equal(value(text, 'jobs_completed_total{queue="jobs",status="completed"}'), 1);
      metrics.close();
    });
  });
});
