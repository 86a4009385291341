/**
 * Auth suite: every `/debug/*` route with no token, wrong tokens and the right one; attempts to get
 * around the check (case, encoding, slashes, absolute-form targets, other headers); the token never in a
 * response, the agent's logs, `/debug/config`, `/metrics` or the workload's environment; production mode
 * switching off `/debug/config`, `POST /debug/log-level` and the cancel route without a token; and the
 * response time of wrong tokens, which must not depend on how much of the token they get right.
 *
 *   node dist/scripts/hardening/auth.js [--short] [--timing-rounds N]
 */
import http from 'node:http';
import {
  WORKLOAD,
  argValue,
  errorFormatProblem,
  getJson,
  isMain,
  isShort,
  printTable,
  rawRequest,
  runAsScript,
  sleep,
  startAgent,
} from './common.js';
import type { RawResponse, RunningAgent, SuiteOutcome } from './common.js';

export interface AuthOptions {
  /** Interleaved rounds of the timing comparison (one request per token class each). */
  timingRounds: number;
  /** Whether a timing difference beyond noise misses a target (the mocha test only prints it). */
  checkTiming: boolean;
  print: boolean;
}

export interface TimingClass {
  name: string;
  medianUs: number;
  p10Us: number;
  p90Us: number;
}

export interface AuthResult extends SuiteOutcome {
  /** Requests checked, by agent and expectation. */
  checks: { agent: string; what: string; requests: number; failed: number }[];
  leaks: string[];
  timing: TimingClass[];
  /** Largest difference between the medians of the wrong same-length tokens, in µs. */
  timingSpreadUs: number;
}

/** Long enough that a prefix check would have many characters to go through. */
const TOKEN = 'dbg-7f3a9c2e5b8d1f4a6c0e9b2d5f8a1c4e7b0d3f6a9c2e5b8d';

interface DebugRoute {
  method: string;
  path: string;
  body?: string;
  /** Status with the right token. */
  ok: number;
}

function debugRoutes(artifact: string | undefined): DebugRoute[] {
  return [
    { method: 'GET', path: '/debug/status', ok: 200 },
    { method: 'GET', path: '/debug/gpu', ok: 200 },
    { method: 'GET', path: '/debug/gpu?history=true', ok: 200 },
    { method: 'GET', path: '/debug/workflow', ok: 200 },
    { method: 'GET', path: '/debug/logs?lines=10', ok: 200 },
    { method: 'GET', path: '/debug/events', ok: 200 },
    { method: 'GET', path: '/debug/events?types=job,log&level=warn', ok: 200 },
    { method: 'GET', path: '/debug/queue', ok: 200 },
    { method: 'GET', path: '/debug/memory', ok: 200 },
    { method: 'GET', path: '/debug/artifacts', ok: 200 },
    ...(artifact ? [{ method: 'GET', path: artifact, ok: 200 }] : []),
    { method: 'GET', path: '/debug/artifacts/no-such-job/x.png', ok: 404 },
    { method: 'GET', path: '/debug/workload', ok: 200 },
    { method: 'GET', path: '/debug/config', ok: 200 },
    { method: 'POST', path: '/debug/log-level', body: '{"level":"trace"}', ok: 200 },
    { method: 'POST', path: '/debug/queue/jobs/some-job/cancel', ok: 409 },
    { method: 'HEAD', path: '/debug/status', ok: 200 },
    { method: 'OPTIONS', path: '/debug/status', ok: 204 },
    { method: 'PUT', path: '/debug/config', ok: 405 },
    { method: 'GET', path: '/debug/no-such-route', ok: 404 },
  ];
}

const flip = (c: string): string => (c === 'a' ? 'b' : 'a');

/** Authorization headers (and other ways of sending a token) that must not be accepted. */
const WRONG: { name: string; headers: [string, string][]; query?: string; malformed?: boolean }[] = [
  { name: 'no header', headers: [] },
  { name: 'empty header', headers: [['Authorization', '']] },
  { name: '"Bearer"', headers: [['Authorization', 'Bearer']] },
  { name: '"Bearer "', headers: [['Authorization', 'Bearer ']] },
  { name: 'token + 1 char', headers: [['Authorization', `Bearer ${TOKEN}x`]] },
  { name: 'token - 1 char', headers: [['Authorization', `Bearer ${TOKEN.slice(0, -1)}`]] },
  {
    name: 'last char wrong',
    headers: [['Authorization', `Bearer ${TOKEN.slice(0, -1)}${flip(TOKEN.at(-1)!)}`]],
  },
  { name: 'first char wrong', headers: [['Authorization', `Bearer ${flip(TOKEN[0]!)}${TOKEN.slice(1)}`]] },
  { name: 'upper case', headers: [['Authorization', `Bearer ${TOKEN.toUpperCase()}`]] },
  { name: 'no scheme', headers: [['Authorization', TOKEN]] },
  {
    name: 'Basic scheme',
    headers: [['Authorization', `Basic ${Buffer.from(`:${TOKEN}`).toString('base64')}`]],
  },
  { name: 'Token scheme', headers: [['Authorization', `Token ${TOKEN}`]] },
  { name: 'token twice', headers: [['Authorization', `Bearer ${TOKEN} ${TOKEN}`]] },
  { name: 'token, comma', headers: [['Authorization', `Bearer ${TOKEN},`]] },
  { name: 'latin-1 space', headers: [['Authorization', `Bearer\u00a0${TOKEN}`]] },
  // Not valid HTTP: any refusal will do, as long as nothing of the route comes back.
  { name: 'NUL after the token', headers: [['Authorization', `Bearer ${TOKEN}\u0000`]], malformed: true },
  {
    name: 'wrong, then right header',
    headers: [
      ['Authorization', 'Bearer wrong'],
      ['Authorization', `Bearer ${TOKEN}`],
    ],
  },
  { name: 'X-Debug-Token header', headers: [['X-Debug-Token', TOKEN]] },
  { name: 'cookie', headers: [['Cookie', `token=${TOKEN}; debug_token=${TOKEN}`]] },
  { name: 'Proxy-Authorization', headers: [['Proxy-Authorization', `Bearer ${TOKEN}`]] },
  { name: '?token= query', headers: [], query: `token=${TOKEN}&access_token=${TOKEN}` },
];

/** Headers that carry the right token. */
const RIGHT: { name: string; value: string }[] = [
  { name: 'Bearer', value: `Bearer ${TOKEN}` },
  { name: 'lower-case scheme', value: `bearer ${TOKEN}` },
  { name: 'two spaces', value: `Bearer  ${TOKEN}` },
  { name: 'tab', value: `Bearer\t${TOKEN}` },
];

/** Paths that must not reach a debug route without the token. */
const BYPASS = [
  '/DEBUG/config',
  '/Debug/Status',
  '/debug/CONFIG',
  '/debug/config/',
  '/debug//config',
  '//debug/config',
  '/%64ebug/config',
  '/%64%65%62%75%67/%63%6f%6e%66%69%67',
  '/debug/%63onfig',
  '/debug%2Fconfig',
  '/debug/config%2F',
  '/debug/./config',
  '/debug/../debug/config',
  '/./debug/config',
  '/x/../debug/config',
  '/debug;/config',
  '/debug/config;x',
  '/debug\\config',
  '/debug/config%00',
  '/debug/config?x=1',
  '/debug/config#frag',
  'http://127.0.0.1/debug/config',
  'http://127.0.0.1//debug/config',
  '/debug/artifacts/%2e%2e/%2e%2e/config',
  '/health/../debug/config',
  '/metrics/../debug/config',
];

function request(method: string, target: string, headers: [string, string][], body?: string): Buffer {
  const lines = [`${method} ${target} HTTP/1.1`, 'Host: 127.0.0.1', 'Connection: close'];
  for (const [k, v] of headers) lines.push(`${k}: ${v}`);
  if (body !== undefined) {
    lines.push('Content-Type: application/json', `Content-Length: ${Buffer.byteLength(body)}`);
  }
  return Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), Buffer.from(body ?? '')]);
}

/** Everything each agent answered, to look for the token in afterwards. */
class Checker {
  readonly rows = new Map<string, { agent: string; what: string; requests: number; failed: number }>();
  readonly failures: string[] = [];
  readonly answers: string[] = [];

  async send(
    agent: { name: string; port: number },
    what: string,
    method: string,
    target: string,
    headers: [string, string][],
    expect: (r: RawResponse) => string | undefined,
    body?: string,
  ): Promise<RawResponse> {
    const r = await rawRequest(agent.port, request(method, target, headers, body), {
      head: method === 'HEAD',
    });
    this.answers.push(`${JSON.stringify(r.headers)}\n${r.body.toString('latin1')}`);
    const key = `${agent.name}\u0000${what}`;
    const row = this.rows.get(key) ?? { agent: agent.name, what, requests: 0, failed: 0 };
    this.rows.set(key, row);
    row.requests++;
    const problem = r.outcome === 'answered' ? expect(r) : `no answer (${r.outcome})`;
    if (problem) {
      row.failed++;
      if (this.failures.length < 50) {
        const shownHeaders = headers.map(([k, v]) => `${k}: ${v.replace(TOKEN, '<token>')}`).join(', ');
        this.failures.push(
          `${agent.name}: ${method} ${target} [${shownHeaders || 'no headers'}]: ${problem}`,
        );
      }
    }
    return r;
  }
}

function unauthorized(r: RawResponse, head: boolean): string | undefined {
  if (r.status !== 401) return `status ${r.status}, expected 401`;
  if (!/^Bearer /.test(r.headers['www-authenticate'] ?? '')) return 'no WWW-Authenticate: Bearer';
  if (head) return undefined;
  const problem = errorFormatProblem(r.headers['content-type'], r.body);
  if (problem) return `401 not in the error format: ${problem}`;
  const code = (JSON.parse(r.body.toString()) as { error: { code: string } }).error.code;
  return code === 'UNAUTHORIZED' ? undefined : `code ${code}`;
}

function status(expected: number, code?: string): (r: RawResponse) => string | undefined {
  return (r) => {
    if (r.status !== expected) return `status ${r.status}, expected ${expected}`;
    if (code === undefined) return undefined;
    const problem = errorFormatProblem(r.headers['content-type'], r.body);
    if (problem) return `not in the error format: ${problem}`;
    const got = (JSON.parse(r.body.toString()) as { error: { code: string } }).error.code;
    return got === code ? undefined : `code ${got}, expected ${code}`;
  };
}

/** Something a debug route answers that must never come back without the token. */
function leakedDebugData(r: RawResponse): string | undefined {
  if (r.status >= 200 && r.status < 300) return `status ${r.status} without the token`;
  const body = r.body.toString('latin1');
  if (/"(gpu_backend|pod_id|debug_token|records)"/.test(body)) return 'debug data in the answer';
  return undefined;
}

async function newestArtifact(agent: RunningAgent): Promise<string | undefined> {
  const auth = { authorization: `Bearer ${TOKEN}` };
  for (let i = 0; i < 50; i++) {
    const list = await getJson<{ job_id: string | null; artifacts: { url: string }[] }>(
      `${agent.url}/debug/artifacts`,
      auth,
    );
    if (list.artifacts[0]) return list.artifacts[0].url;
    await sleep(200);
  }
  return undefined;
}

/** Response times of wrong tokens, one request per class in turn over one keep-alive connection. */
async function timing(port: number, rounds: number): Promise<TimingClass[]> {
  const classes: [string, string | undefined][] = [
    ['no header', undefined],
    ['wrong first char', `Bearer ${flip(TOKEN[0]!)}${TOKEN.slice(1)}`],
    ['wrong last char', `Bearer ${TOKEN.slice(0, -1)}${flip(TOKEN.at(-1)!)}`],
    ['wrong, same length', `Bearer ${'z'.repeat(TOKEN.length)}`],
    ['wrong, 1 char', 'Bearer z'],
    ['wrong, 4 KiB', `Bearer ${'z'.repeat(4096)}`],
  ];
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const once = (auth: string | undefined): Promise<number> =>
    new Promise((resolve, reject) => {
      const t0 = process.hrtime.bigint();
      const req = http.request(
        {
          port,
          host: '127.0.0.1',
          path: '/debug/status',
          agent,
          headers: auth ? { authorization: auth } : {},
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve(Number(process.hrtime.bigint() - t0) / 1000));
        },
      );
      req.on('error', reject);
      req.end();
    });
  const samples = classes.map(() => [] as number[]);
  for (let i = 0; i < 100; i++) await once(classes[i % classes.length]![1]);
  for (let round = 0; round < rounds; round++) {
    // A different order each round, so drift and the previous request's wake-up hit every class alike.
    const order = classes.map((_, i) => i).sort(() => Math.random() - 0.5);
    for (const i of order) samples[i]!.push(await once(classes[i]![1]));
  }
  agent.destroy();
  const q = (xs: number[], p: number): number =>
    [...xs].sort((a, b) => a - b)[Math.floor(p * (xs.length - 1))]!;
  return classes.map(([name], i) => ({
    name,
    medianUs: q(samples[i]!, 0.5),
    p10Us: q(samples[i]!, 0.1),
    p90Us: q(samples[i]!, 0.9),
  }));
}

async function checkRoutes(c: Checker, agent: RunningAgent, name: string): Promise<void> {
  const target = { name, port: agent.port };
  const artifact = await newestArtifact(agent);
  if (!artifact) c.failures.push(`${name}: the workload's artifact never showed up`);
  for (const route of debugRoutes(artifact)) {
    const head = route.method === 'HEAD';
    for (const w of WRONG) {
      const path = w.query ? `${route.path}${route.path.includes('?') ? '&' : '?'}${w.query}` : route.path;
      await c.send(
        target,
        w.malformed ? `refused with ${w.name}` : `401 with ${w.name}`,
        route.method,
        path,
        w.headers,
        w.malformed ? leakedDebugData : (r) => unauthorized(r, head),
        route.body,
      );
    }
    for (const right of RIGHT) {
      await c.send(
        target,
        `answered with the token (${right.name})`,
        route.method,
        route.path,
        [['Authorization', right.value]],
        status(route.ok),
        route.body,
      );
    }
  }
  for (const path of BYPASS) {
    for (const method of ['GET', 'HEAD', 'OPTIONS']) {
      await c.send(target, 'no way around the token', method, path, [], leakedDebugData);
    }
  }
  await c.send(
    target,
    'no way around the token',
    'POST',
    '/DEBUG/log-level',
    [],
    leakedDebugData,
    '{"level":"silent"}',
  );
  // The /debug/ page loads without the token, as a browser opening it cannot send one. It must hold
  // nothing of the pod: the same bytes whatever token comes with it, and not the pod's id.
  const page = await c.send(
    target,
    'the /debug/ page: the same shell with any token or none',
    'GET',
    '/debug/',
    [['Authorization', `Bearer ${TOKEN}`]],
    status(200),
  );
  const podId = (
    await getJson<{ pod_id: string }>(`${agent.url}/debug/status`, { Authorization: `Bearer ${TOKEN}` })
  ).pod_id;
  for (const w of WRONG.filter((x) => !x.malformed)) {
    await c.send(
      target,
      'the /debug/ page: the same shell with any token or none',
      'GET',
      '/debug/',
      w.headers,
      (r) =>
        r.status !== 200
          ? `status ${r.status}`
          : !r.body.equals(page.body)
            ? 'differs from the page served with the token'
            : r.body.includes(podId)
              ? 'holds the pod id'
              : undefined,
    );
  }
  for (const open of ['/health', '/healthz', '/ready', '/readyz', '/metrics', '/']) {
    await c.send(target, 'probes and /metrics open without a token', 'GET', open, [], (r) =>
      r.status === 401 ? 'asked for a token' : undefined,
    );
  }
}

/** Lines and answers containing the token, its base64 form, or its first or last 20 characters. */
function findLeaks(where: string, texts: Iterable<string>): string[] {
  const needles = [TOKEN, Buffer.from(TOKEN).toString('base64'), TOKEN.slice(0, 20), TOKEN.slice(-20)];
  const out: string[] = [];
  for (const t of texts) {
    const hit = needles.find((n) => t.includes(n));
    if (hit !== undefined)
      out.push(`${where}: ${t.slice(Math.max(0, t.indexOf(hit) - 100), t.indexOf(hit) + 60)}`);
  }
  return out;
}

export async function runAuth(opts: AuthOptions): Promise<AuthResult> {
  const c = new Checker();
  const lines = new Map<string, string[]>();
  const keepLines = (name: string, agent: RunningAgent): void => {
    const kept: string[] = [];
    lines.set(name, kept);
    agent.onLine((l) => kept.push(l));
  };
  const workload = [process.execPath, WORKLOAD];
  const workloadEnv = {
    HARDENING_MODE: 'jobs',
    HARDENING_EVENTS_PER_S: '50',
    HARDENING_STEPS: '10',
    HARDENING_PRINT_ENV: '1',
    HARDENING_LOG_EVERY: '20',
    LOG_LEVEL: 'trace',
  };
  // The token as a variable in development, and as a flag in production.
  const dev = await startAgent({ env: { ...workloadEnv, DEBUG_TOKEN: TOKEN }, workload });
  keepLines('dev+token', dev);
  const prodToken = await startAgent({
    env: { ...workloadEnv, NODE_ENV: 'production' },
    args: ['--debug-token', TOKEN],
    workload,
  });
  keepLines('production+token', prodToken);
  const prodOpen = await startAgent({ env: { NODE_ENV: 'production', LOG_LEVEL: 'trace' } });
  keepLines('production, no token', prodOpen);
  let timingClasses: TimingClass[] | undefined;
  const leaks: string[] = [];
  try {
    await checkRoutes(c, dev, 'dev+token');
    await checkRoutes(c, prodToken, 'production+token');

    // Production without a token: the routes DESIGN.md and the README switch off answer 404.
    const open = { name: 'production, no token', port: prodOpen.port };
    for (const [method, path, body] of [
      ['GET', '/debug/config', undefined],
      ['HEAD', '/debug/config', undefined],
      ['OPTIONS', '/debug/config', undefined],
      ['POST', '/debug/config', '{}'],
      ['POST', '/debug/log-level', '{"level":"silent"}'],
      ['GET', '/debug/log-level', undefined],
      ['OPTIONS', '/debug/log-level', undefined],
      ['POST', '/debug/queue/jobs/some-job/cancel', undefined],
      ['OPTIONS', '/debug/queue/jobs/some-job/cancel', undefined],
    ] as const) {
      await c.send(
        open,
        'switched off (404)',
        method,
        path,
        [],
        method === 'HEAD' ? status(404) : status(404, 'NOT_FOUND'),
        body,
      );
    }
    for (const path of [
      '/debug/status',
      '/debug/gpu',
      '/debug/logs',
      '/debug/queue',
      '/debug/memory',
      '/debug/workflow',
      '/debug/artifacts',
      '/debug/workload',
      '/debug/events',
    ]) {
      await c.send(open, 'other debug routes answer', 'GET', path, [], status(200));
    }
    await c.send(open, 'index does not list the routes that are off', 'GET', '/', [], (r) =>
      /debug\/config|log-level|cancel/.test(r.body.toString()) ? 'lists a route that is off' : undefined,
    );
    const logs = await getJson<{ level: string; records: { message: string; level: string }[] }>(
      `${prodOpen.url}/debug/logs?lines=5000&level=trace`,
    );
    if (!logs.records.some((r) => r.level === 'warn' && /DEBUG_TOKEN/.test(r.message))) {
      c.failures.push('production, no token: no warning about the missing DEBUG_TOKEN at start');
    }

    // The token must not show anywhere an operator or a log pipeline can read.
    const auth = { authorization: `Bearer ${TOKEN}` };
    for (const [name, agent] of [
      ['dev+token', dev],
      ['production+token', prodToken],
    ] as const) {
      const cfg = await getJson<Record<string, unknown>>(`${agent.url}/debug/config`, auth);
      if (cfg.debug_token !== '[redacted]')
        c.failures.push(`${name}: /debug/config debug_token is ${String(cfg.debug_token)}`);
      leaks.push(...findLeaks(`${name} /debug/config`, [JSON.stringify(cfg)]));
      const all = await fetch(`${agent.url}/debug/logs?lines=100000&level=trace`, { headers: auth });
      leaks.push(...findLeaks(`${name} /debug/logs`, [await all.text()]));
      const metrics = await fetch(`${agent.url}/metrics`);
      leaks.push(...findLeaks(`${name} /metrics`, [await metrics.text()]));
      const wl = await getJson<Record<string, unknown>>(`${agent.url}/debug/workload`, auth);
      leaks.push(...findLeaks(`${name} /debug/workload`, [JSON.stringify(wl)]));
      const kept = lines.get(name) ?? [];
      if (!kept.some((l) => l.includes('workload environment'))) {
        c.failures.push(`${name}: the workload's environment line never reached the log`);
      }
    }
    leaks.push(...findLeaks('HTTP answer', c.answers));

    timingClasses = await timing(dev.port, opts.timingRounds);
  } finally {
    await Promise.all([dev.stop(), prodToken.stop(), prodOpen.stop()]);
  }
  // Lines printed while stopping count too.
  for (const [name, kept] of lines) leaks.push(...findLeaks(`${name} stdout`, kept));

  const timed = timingClasses ?? [];
  const sameLength = timed.filter((t) =>
    ['wrong first char', 'wrong last char', 'wrong, same length'].includes(t.name),
  );
  const medians = sameLength.map((t) => t.medianUs);
  const spread = medians.length > 0 ? Math.max(...medians) - Math.min(...medians) : 0;
  const base = Math.min(...medians);
  const failures = [...c.failures, ...leaks.map((l) => `token leaked: ${l}`)];
  // A comparison that stops at the first wrong character differs by nanoseconds; anything the network
  // path can show is tens of microseconds, so only a difference beyond that noise counts.
  if (opts.checkTiming && spread > Math.max(30, base * 0.1)) {
    failures.push(
      `wrong tokens of the same length differ by ${spread.toFixed(0)} µs in median response time`,
    );
  }
  const result: AuthResult = {
    ok: failures.length === 0,
    failures,
    checks: [...c.rows.values()],
    leaks,
    timing: timed,
    timingSpreadUs: spread,
  };
  if (opts.print) printAuth(result, opts);
  return result;
}

function printAuth(r: AuthResult, opts: AuthOptions): void {
  console.log(
    'auth: three agents (development + DEBUG_TOKEN, production + --debug-token, production without a token)',
  );
  printTable(
    'Checks',
    ['agent', 'expectation', 'requests', 'failed'],
    r.checks.map((c) => [c.agent, c.what, c.requests, c.failed]),
  );
  printTable(
    `Response time of GET /debug/status by token (${opts.timingRounds} interleaved rounds, µs)`,
    ['token', 'median', 'p10', 'p90'],
    r.timing.map((t) => [t.name, t.medianUs.toFixed(0), t.p10Us.toFixed(0), t.p90Us.toFixed(0)]),
  );
  console.log(`spread of the medians of wrong same-length tokens: ${r.timingSpreadUs.toFixed(0)} µs`);
  const total = r.checks.reduce((s, c) => s + c.requests, 0);
  const failed = r.checks.reduce((s, c) => s + c.failed, 0);
  printTable(
    'Targets',
    ['figure', 'value', 'target'],
    [
      ['requests checked', total, ''],
      ['answers not as expected', failed, 0],
      ['places the token showed up', r.leaks.length, 0],
      [
        'timing spread µs (same-length wrong tokens)',
        r.timingSpreadUs.toFixed(0),
        opts.checkTiming ? '≤ max(30 µs, 10 %)' : 'printed only',
      ],
    ],
  );
}

export function authOptionsFromArgs(argv: readonly string[] = process.argv): AuthOptions {
  const short = isShort(argv);
  return {
    timingRounds: Number(argValue('timing-rounds', argv) ?? (short ? 300 : 3000)),
    checkTiming: !short,
    print: true,
  };
}

if (isMain(import.meta.url)) runAsScript(() => runAuth(authOptionsFromArgs()));
