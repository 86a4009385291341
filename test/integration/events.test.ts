import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { eventually, startAgentProcess } from '../helpers/agent.js';
import type { AgentProcess } from '../helpers/agent.js';

interface SseEvent {
  id?: number;
  event: string;
  data: string;
}

/** A `/debug/events` client over a real socket, parsing the stream as EventSource does. */
function openStream(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; events: SseEvent[]; body: string; close: () => void; ended: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers }, (res) => {
      const events: SseEvent[] = [];
      let buf = '';
      let body = '';
      res.setEncoding('utf8');
      const ended = new Promise<void>((r) => res.on('close', () => r()));
      res.on('data', (chunk: string) => {
        body += chunk;
        buf += chunk;
        let i: number;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const e: SseEvent = { event: 'message', data: '' };
          let any = false;
          for (const line of block.split('\n')) {
            if (line.startsWith('id: ')) e.id = Number(line.slice(4));
            else if (line.startsWith('event: ')) e.event = line.slice(7);
            else if (line.startsWith('data: ')) {
              e.data = line.slice(6);
              any = true;
            }
          }
          if (any) events.push(e);
        }
      });
      resolve({
        status: res.statusCode ?? 0,
        events,
        get body() {
          return body;
        },
        close: () => req.destroy(),
        ended,
      });
    });
    req.on('error', reject);
  });
}

/** A workload printing protocol events and log lines on a loop, so the stream always has news. */
const WORKLOAD = [
  'const P = process.env.AGENT_PROGRESS_PREFIX;',
  "const emit = (e) => console.log(P + ' ' + JSON.stringify(e));",
  'let n = 0;',
  'const run = () => {',
  '  const id = `job-${++n}`;',
  "  emit({ type: 'job.start', job_id: id, nodes: [{ id: '3', type: 'KSampler' }] });",
  "  emit({ type: 'node.start', job_id: id, node_id: '3', node_type: 'KSampler' });",
  "  for (let s = 1; s <= 3; s++) emit({ type: 'node.progress', job_id: id, node_id: '3', step: s, total: 3 });",
  "  emit({ type: 'node.end', job_id: id, node_id: '3' });",
  "  console.log('ERROR: something broke in ' + id);",
  "  console.log('all fine in ' + id);",
  "  emit({ type: 'job.end', job_id: id });",
  '};',
  'setInterval(run, 50);',
].join('\n');

describe('GET /debug/events (Server-Sent Events over a real socket)', function () {
  this.timeout(60_000);
  let agent: AgentProcess | undefined;
  afterEach(async () => {
    await agent?.stop();
    agent = undefined;
  });

  const start = async (env: Record<string, string> = {}): Promise<AgentProcess> => {
    agent = await startAgentProcess({
      env: { GPU_POLL_INTERVAL_MS: '100', ...env },
      args: ['--', process.execPath, '-e', WORKLOAD],
    });
    return agent;
  };

  it('streams job, node and progress events with increasing ids, and logs at the asked level', async () => {
    const a = await start();
    const s = await openStream(`${a.url}/debug/events?types=job,node,progress,log&level=warn`);
    assert.equal(s.status, 200);
    await eventually(() =>
      Promise.resolve(s.events.filter((e) => e.event === 'job').length >= 6 || undefined),
    );
    s.close();
    const ids = s.events.map((e) => e.id as number);
    for (let i = 1; i < ids.length; i++) assert.ok(ids[i]! > ids[i - 1]!, 'ids increase');
    const job = s.events
      .filter((e) => e.event === 'job')
      .map((e) => JSON.parse(e.data) as { job_id: string; state: string });
    const id = job.find((j) => j.state === 'active')!.job_id;
    assert.ok(
      job.some((j) => j.job_id === id && j.state === 'completed'),
      'the job ends in the stream',
    );
    const nodes = s.events
      .filter((e) => e.event === 'node')
      .map((e) => JSON.parse(e.data) as { job_id: string; node: { id: string; status: string } })
      .filter((n) => n.job_id === id);
    assert.deepEqual(
      nodes.map((n) => n.node.status),
      ['running', 'completed'],
    );
    assert.ok(
      s.events.some(
        (e) => e.event === 'progress' && (JSON.parse(e.data) as { node?: { step: number } }).node?.step === 3,
      ),
    );
    const logs = s.events
      .filter((e) => e.event === 'log')
      .map((e) => JSON.parse(e.data) as { level: string; message: string });
    assert.ok(logs.length > 0);
    assert.ok(
      logs.every((l) => l.level === 'warn' || l.level === 'error' || l.level === 'fatal'),
      'only warn and above',
    );
    assert.ok(logs.some((l) => /something broke/.test(l.message)));
    assert.equal(s.events.filter((e) => e.event === 'gpu').length, 0, 'types filters');
  });

  it('resumes after Last-Event-ID without losing or repeating an event, and says what was lost beyond the buffer', async () => {
    const a = await start({ EVENTS_BUFFER_SIZE: '200' });
    const first = await openStream(`${a.url}/debug/events?types=job,node,progress,log,ready,gpu&level=trace`);
    await eventually(() => Promise.resolve(first.events.length >= 20 || undefined));
    first.close();
    const lastSeen = first.events[first.events.length - 1]!.id as number;
    await new Promise((r) => setTimeout(r, 300));
    const again = await openStream(`${a.url}/debug/events?level=trace`, {
      'Last-Event-ID': String(lastSeen),
    });
    // Kept open until the first events have left the 200-event buffer.
    await eventually(() => Promise.resolve((again.events.at(-1)?.id ?? 0) > 600 || undefined));
    again.close();
    const ids = again.events.map((e) => e.id as number);
    assert.equal(ids[0], lastSeen + 1, 'the next event after the last one seen');
    for (let i = 1; i < ids.length; i++)
      assert.equal(ids[i], ids[i - 1]! + 1, 'no event missing, none twice');
    // Far behind: the buffer no longer has it, and the stream says how many are gone.
    const late = await openStream(`${a.url}/debug/events?last_event_id=1`);
    await eventually(() => Promise.resolve(late.events.length >= 1 || undefined));
    late.close();
    assert.equal(late.events[0]!.event, 'gap');
    assert.ok((JSON.parse(late.events[0]!.data) as { lost: number }).lost > 0);
  });

  it('gives 50 clients at once the same events, none lost, beside a client that does not read', async () => {
    const a = await start({ EVENTS_MAX_STREAMS: '64' });
    const port = Number(new URL(a.url).port);
    // A client that never reads, asking for every log record: it must not hold the others back.
    const stuck = net.connect(port, '127.0.0.1');
    stuck.on('error', () => undefined);
    await new Promise<void>((r) => stuck.once('connect', () => r()));
    stuck.write(`GET /debug/events?level=trace HTTP/1.1\r\nHost: x\r\n\r\n`);
    stuck.pause();
    const clients = await Promise.all(
      Array.from({ length: 50 }, () => openStream(`${a.url}/debug/events?types=job,node,progress`)),
    );
    assert.deepEqual(
      clients.map((c) => c.status),
      Array<number>(50).fill(200),
    );
    // Every client sees at least ten whole jobs.
    const completed = (c: { events: SseEvent[] }): number =>
      c.events.filter((e) => e.event === 'job' && e.data.includes('"state":"completed"')).length;
    await eventually(() => Promise.resolve(clients.every((c) => completed(c) >= 10) || undefined), 30_000);
    // One client reconnects with the last id it saw, and goes on with no gap.
    const leaving = clients[0]!;
    leaving.close();
    const lastSeen = leaving.events.at(-1)!.id as number;
    const back = await openStream(`${a.url}/debug/events?types=job,node,progress`, {
      'Last-Event-ID': String(lastSeen),
    });
    clients[0] = back;
    await eventually(() => Promise.resolve(completed(back) >= 3 || undefined), 30_000);
    for (const c of clients) c.close();
    stuck.destroy();

    // Over the window every client was open, all saw the same events in the same order.
    const from = Math.max(...clients.map((c) => c.events[0]!.id as number));
    const to = Math.min(...clients.map((c) => c.events.at(-1)!.id as number));
    assert.ok(to - from > 50, `an overlap of ${to - from} ids`);
    const window = (c: { events: SseEvent[] }): string[] =>
      c.events
        .filter((e) => (e.id as number) >= from && (e.id as number) <= to)
        .map((e) => `${e.id}:${e.data}`);
    const reference = window(clients[1]!);
    for (const c of clients) assert.deepEqual(window(c), reference);
    // The reconnected client lost nothing: its events go on from the last id it had seen.
    assert.ok((back.events[0]!.id as number) > lastSeen);
    const before = clients[1]!.events.filter((e) => (e.id as number) > lastSeen).map((e) => e.id);
    const after = back.events.map((e) => e.id);
    assert.deepEqual(after.slice(0, 20), before.slice(0, 20), 'resumed on the next event of these types');
    assert.equal(back.events.filter((e) => e.event === 'gap').length, 0);
  });

  it('refuses streams beyond EVENTS_MAX_STREAMS, and drops a client that does not read', async () => {
    // A workload writing 16 KiB log lines as fast as it can: megabytes of events a second.
    agent = await startAgentProcess({
      env: { EVENTS_MAX_STREAMS: '2' },
      args: [
        '--',
        process.execPath,
        '-e',
        "const l = 'x'.repeat(16384); setInterval(() => { for (let i = 0; i < 20; i++) console.log(l); }, 10);",
      ],
    });
    const a = agent;
    const one = await openStream(`${a.url}/debug/events`);
    const two = await openStream(`${a.url}/debug/events`);
    const three = await fetch(`${a.url}/debug/events`);
    assert.equal(three.status, 503);
    assert.equal(((await three.json()) as { error: { code: string } }).error.code, 'TOO_MANY_STREAMS');
    one.close();
    two.close();
    await Promise.all([one.ended, two.ended]);

    // A client that never reads: its stream fills up and the agent lets it go, freeing the slot.
    const port = Number(new URL(a.url).port);
    const stuck = net.connect(port, '127.0.0.1');
    stuck.on('error', () => undefined);
    await new Promise<void>((r) => stuck.once('connect', () => r()));
    stuck.write(`GET /debug/events?level=trace HTTP/1.1\r\nHost: x\r\n\r\n`);
    stuck.pause();
    const holder = await openStream(`${a.url}/debug/events?types=ready`);
    await eventually(
      async () => {
        const r = await fetch(`${a.url}/debug/events?types=ready`);
        if (r.status === 200) await r.body?.cancel();
        else await r.text();
        return r.status === 503 || undefined;
      },
      10_000,
      'the stuck client holds a slot',
    );
    // Both slots are taken now; the log lines fill the stuck client's socket, then its stream's buffer.
    await eventually(
      async () => {
        const r = await fetch(`${a.url}/debug/events?types=ready`);
        if (r.status === 200) {
          await r.body?.cancel();
          return true;
        }
        await r.text();
        return undefined;
      },
      45_000,
      'the slow client is dropped and its slot freed',
    );
    holder.close();
    stuck.destroy();
  });
});
