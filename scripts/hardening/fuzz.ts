/**
 * Bad-input suite: sends malformed requests to the running agent over raw sockets (random and
 * adversarial paths, query values, headers, bodies and request lines, to every route) and checks that
 * none gets a 5xx, the agent never crashes, every error is answered in the documented error format, and
 * RSS returns to its baseline afterwards.
 *
 *   node dist/scripts/hardening/fuzz.js [--short] [--requests N] [--seed N] [--concurrency N]
 *
 * Two agents take the requests: one in entrypoint mode with a workload running jobs (so the workflow and
 * artifact routes have data), and one with NODE_ENV=production, a DEBUG_TOKEN and token request ids,
 * which gets the right token, a wrong one or none.
 */
import net from 'node:net';
import {
  Random,
  argValue,
  collectGarbage,
  errorFormatProblem,
  getJson,
  isMain,
  isShort,
  mb,
  printTable,
  rawRequest,
  rssBytes,
  runAsScript,
  sleep,
  startAgent,
  WORKLOAD,
} from './common.js';
import type { RawResponse, RunningAgent, SuiteOutcome } from './common.js';

export interface FuzzOptions {
  /** Requests counted in the figures (a warm-up of a twentieth as many, at least 500, comes first). */
  requests: number;
  seed: number;
  concurrency: number;
  /**
   * Sockets that send half a request and stop, to see them answered 408: `headers` stops inside the
   * headers (10 s limit), `all` also inside a body (30 s limit, so the run takes at least 31 s).
   */
  slowClients: 'none' | 'headers' | 'all';
  /** How long RSS is watched coming back by itself after the run, before the full GC; 0 skips it. */
  settleMs: number;
  /** Print the tables. */
  print: boolean;
}

export interface FuzzFailure {
  why: string;
  agent: 'dev' | 'prod';
  request: string;
  response: string;
}

export interface FuzzResult extends SuiteOutcome {
  requests: number;
  byClass: Record<string, number>;
  byStatus: Record<string, number>;
  byRoute: Record<string, Record<string, number>>;
  byKind: Record<string, Record<string, number>>;
  /** Error answers not in the error format. */
  badFormat: number;
  fiveXx: number;
  noAnswer: number;
  missingRequestId: number;
  examples: FuzzFailure[];
  crashed: boolean;
  errorRecords: number;
  /** Log records at error level, with the request that caused each (matched by request id). */
  errorExamples: { record: string; request: string }[];
  /**
   * Bytes. `baseline` and `after`: after a full GC, before and after the run; `natural`: the last reading
   * before that GC; `settle`: readings by seconds after the run until back within the tolerance.
   */
  rss: {
    baseline: number;
    peak: number;
    natural: number;
    after: number;
    settledMs: number;
    settle: [number, number][];
  };
  heapUsed: { baseline: number; after: number };
  slow: { sent: number; answered408: number; other: string[] };
  /** Requests whose client closed the connection at once (every route, ABANDON_ROUNDS times). */
  abandoned: number;
  durationMs: number;
  ratePerS: number;
}

const TOKEN = 'fuzz-token-9c1e4b7a2d5f8e3c6a0b';

interface Route {
  method: 'GET' | 'POST';
  path: string;
  params: string[];
}

const ROUTES: Route[] = [
  { method: 'GET', path: '/', params: [] },
  { method: 'GET', path: '/health', params: [] },
  { method: 'GET', path: '/healthz', params: [] },
  { method: 'GET', path: '/ready', params: [] },
  { method: 'GET', path: '/readyz', params: [] },
  { method: 'GET', path: '/metrics', params: [] },
  { method: 'GET', path: '/debug/status', params: [] },
  { method: 'GET', path: '/debug/gpu', params: ['format', 'history'] },
  { method: 'GET', path: '/debug/workflow', params: ['job_id'] },
  { method: 'GET', path: '/debug/logs', params: ['lines', 'level', 'job_id', 'trace_id', 'since'] },
  { method: 'GET', path: '/debug/events', params: ['types', 'level', 'gpu_interval_ms', 'last_event_id'] },
  { method: 'GET', path: '/debug/queue', params: [] },
  { method: 'GET', path: '/debug/memory', params: [] },
  { method: 'GET', path: '/debug/artifacts', params: ['job_id'] },
  { method: 'GET', path: '/debug/artifacts/{job}/{name}', params: [] },
  { method: 'GET', path: '/debug/workload', params: [] },
  { method: 'GET', path: '/debug/config', params: [] },
  { method: 'POST', path: '/debug/log-level', params: [] },
  { method: 'POST', path: '/debug/queue/jobs/{job}/cancel', params: ['reason'] },
];

/** Values as they appear on the wire (percent-encoded or deliberately not). */
const BAD_VALUES = [
  '',
  '0',
  '-1',
  '-0',
  '+0',
  '1.5',
  '1e3',
  '1e309',
  '-1e309',
  '9'.repeat(30),
  '9'.repeat(400),
  '0x10',
  '0b11',
  '+5',
  '%205',
  '5%20',
  '%095',
  'NaN',
  'Infinity',
  '-Infinity',
  '9007199254740993',
  '00001',
  '1_000',
  '1,000',
  'true',
  'false',
  'null',
  'undefined',
  '%5B%5D',
  '%7B%7D',
  '[1,2]',
  '%7B%22a%22%3A1%7D',
  '%22%22',
  '%F0%9F%98%80',
  '%E2%80%AE',
  '%E2%80%8B',
  '%ED%A0%80',
  '%C0%AF',
  '%FF',
  '%EF%BC%91',
  '%EF%BB%BF1',
  '\u00e9',
  '%00',
  '%0a',
  '%0d%0a',
  '%7f',
  '%1b%5B31m',
  '%',
  '%z',
  '%%',
  '%2',
  '%u0041',
  '__proto__',
  'constructor',
  'prototype',
  'toString',
  'hasOwnProperty',
  '..%2F..%2Fetc%2Fpasswd',
  '%2Fetc%2Fpasswd',
  '%5C..%5C',
  '2024-13-45',
  '2024-01-01T25:00:00Z',
  '0000-00-00',
  '9999-99-99T99:99:99Z',
  '275760-09-13T00:00:00.001Z',
  '%2B275760-09-13',
  '1970-01-01T00:00:00.000Z',
  '2024-02-30',
  '2024-01-01T00:00:00%2B99:99',
  '9999999999999999',
  '99999999999999999',
  '0'.repeat(32),
  'A'.repeat(32),
  'g'.repeat(32),
  'f'.repeat(31),
  'f'.repeat(33),
  'TRACE',
  'Debug%20',
  'verbose',
  '%EF%BC%A9nfo',
  '%C4%B0NFO',
  'info%00',
  'AGENT',
  'node-nvidia-smi%20',
  'yes',
  '2',
];

const GOOD_VALUES: Record<string, string[]> = {
  lines: ['1', '10', '1000', '100000'],
  level: ['info', 'debug', 'warn', 'trace'],
  trace_id: ['4bf92f3577b34da6a3ce929d0e0e4736'],
  since: ['2024-01-01T00:00:00Z', '1700000000000'],
  format: ['agent', 'node-nvidia-smi'],
  history: ['true', '0'],
  reason: ['fuzz'],
  types: ['gpu,job', 'log', 'progress,node,ready'],
  gpu_interval_ms: ['0', '1000'],
  last_event_id: ['0', '1', '999999999999999'],
};

const METHODS_ODD = [
  'PUT',
  'DELETE',
  'PATCH',
  'TRACE',
  'PROPFIND',
  'MKCOL',
  'M-SEARCH',
  'PURGE',
  'SEARCH',
  'LINK',
  'QUERY',
];
const METHODS_INVALID = ['get', 'FOO', 'G ET', 'GET\t', '', 'GETT', 'POST\u0000', '\u00c9T'];

const BAD_REQUEST_IDS = [
  'x',
  'not-a-uuid',
  '123e4567-e89b-12d3-a456-42661417400',
  '123e4567-e89b-12d3-a456-4266141740000',
  '{123e4567-e89b-12d3-a456-426614174000}',
  'g23e4567-e89b-12d3-a456-426614174000',
  '123e4567e89b12d3a456426614174000a',
  ' ',
  '\t',
  'a'.repeat(129),
  'a'.repeat(5000),
  '\u00ff\u00fe',
  'id with spaces',
  '"quoted"',
  '../../etc',
  '%00',
  'null',
];

const BAD_TRACEPARENTS = [
  '',
  'x',
  '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331',
  '00-00000000000000000000000000000000-b7ad6b7169203331-01',
  '00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01',
  'ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
  '00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01',
  '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra',
  '01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra',
  '00-0af7651916cd43dd8448eb211c8031-b7ad6b7169203331-01',
  '00_0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331_01',
  '00-zzf7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
  '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-zz',
  `00-${'a'.repeat(4000)}`,
  '\u00ff'.repeat(55),
];

const CONTENT_TYPES = [
  'text/plain',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  'application/json; charset=utf-16',
  'application/json; charset=latin1',
  'application/json; charset=nonsense',
  'application/json;;;',
  'application/json; charset=',
  'application/jsonx',
  'application/problem+json',
  'json',
  '*/*',
  '',
  'application/json'.repeat(100),
  '\u00e9/\u00e9',
];

const BODIES = [
  '{',
  '{"level":}',
  "{'level':'info'}",
  'level=info',
  '\u0000',
  'NaN',
  '{"level":"info",}',
  'null',
  '[]',
  '"info"',
  '123',
  '{"level":["info"]}',
  '{"level":{"toString":"info"}}',
  '{"__proto__":{"level":"info"}}',
  '{"constructor":{"prototype":{"level":"x"}}}',
  '{"level":"INFO"}',
  '{"level":"info\\u0000"}',
  '{"level":"verbose"}',
  '{"level":null}',
  '{"level":1}',
  '\ufeff{"level":"info"}',
  '{"level":"info"}{"level":"info"}',
  `${'['.repeat(2000)}${']'.repeat(2000)}`,
  `${'{"a":'.repeat(800)}1${'}'.repeat(800)}`,
  '{"level":"\ud800"}',
];

/** One request to send: its bytes, which agent takes it, and labels for the figures. */
interface FuzzCase {
  agent: 'dev' | 'prod';
  route: string;
  kind: string;
  head: boolean;
  bytes: Buffer;
}

interface Known {
  jobIds: string[];
  artifacts: { job: string; name: string }[];
}

interface Draft {
  method: string;
  path: string;
  query: string[];
  version: string;
  headers: [string, string][];
  body?: Buffer;
  /** Set when a mutation writes Content-Length / Transfer-Encoding itself. */
  framing?: boolean;
  eol: string;
  /** Raw bytes appended after the request (pipelined data). */
  trailer?: string;
}

const enc = (s: string): string => encodeURIComponent(s);

/** Generates the requests of one run; the first ones are fixed adversarial cases, the rest random. */
class Generator {
  private fixed: (() => FuzzCase)[];
  constructor(
    private readonly rnd: Random,
    private readonly known: Known,
  ) {
    this.fixed = this.fixedCases();
  }

  next(): FuzzCase {
    const f = this.fixed.shift();
    if (f) return f();
    return this.random();
  }

  private randomString(min: number, max: number, alphabet?: string): string {
    const n = this.rnd.int(min, max);
    let s = '';
    for (let i = 0; i < n; i++) {
      s += alphabet
        ? alphabet[this.rnd.int(0, alphabet.length - 1)]
        : String.fromCharCode(this.rnd.int(0, 255));
    }
    return s;
  }

  private badValue(): string {
    const r = this.rnd.next();
    if (r < 0.75) return this.rnd.pick(BAD_VALUES);
    if (r < 0.85) return 'a'.repeat(this.rnd.int(257, 9000));
    if (r < 0.95) return enc(this.randomString(1, 40));
    return this.randomString(1, 20, 'abc<>"{}|\\^`[] #%?&=;');
  }

  private jobId(): string {
    return this.known.jobIds.length > 0 && this.rnd.chance(0.5)
      ? this.rnd.pick(this.known.jobIds)
      : this.rnd.pick(['x', '__proto__', 'constructor', '..', '%2e%2e', 'a'.repeat(300), enc('\u{1f600}')]);
  }

  private concretePath(route: Route): string {
    if (route.path === '/debug/artifacts/{job}/{name}') {
      const a = this.known.artifacts.length > 0 ? this.rnd.pick(this.known.artifacts) : undefined;
      const job = a && this.rnd.chance(0.7) ? enc(a.job) : this.jobId();
      const name = a && this.rnd.chance(0.4) ? a.name.split('/').map(enc).join('/') : this.badName();
      return `/debug/artifacts/${job}/${name}`;
    }
    return route.path.replace('{job}', this.jobId());
  }

  private badName(): string {
    return this.rnd.pick([
      '..',
      '../../etc/passwd',
      '..%2F..%2Fetc%2Fpasswd',
      '%2e%2e/%2e%2e/etc/passwd',
      '%2Fetc%2Fpasswd',
      '/etc/passwd',
      'a%00b',
      'a%5Cb',
      '%5C%5Cserver%5Cshare',
      'C:%5Cwindows',
      '.',
      'a/./b',
      'a//b',
      '%E0%A4%A',
      '%ZZ',
      enc('\u{1f600}.png'),
      'x'.repeat(this.rnd.int(256, 5000)),
      '.hidden',
      '~root',
      '%252e%252e',
      'a/'.repeat(200),
    ]);
  }

  private draft(route: Route, agent: 'dev' | 'prod'): Draft {
    const d: Draft = {
      method: route.method,
      path: this.concretePath(route),
      query: [],
      version: 'HTTP/1.1',
      headers: [
        ['Host', '127.0.0.1'],
        ['Connection', 'close'],
      ],
      eol: '\r\n',
    };
    for (const p of route.params) {
      if (this.rnd.chance(0.3)) {
        const good = p === 'job_id' ? [this.jobId()] : (GOOD_VALUES[p] ?? ['1']);
        d.query.push(`${p}=${this.rnd.pick(good)}`);
      }
    }
    if (route.path === '/debug/log-level') {
      d.headers.push(['Content-Type', 'application/json']);
      d.body = Buffer.from('{"level":"info"}');
    }
    if (agent === 'prod') {
      const r = this.rnd.next();
      if (r < 0.4) d.headers.push(['Authorization', `Bearer ${TOKEN}`]);
      else if (r < 0.7) d.headers.push(['Authorization', `Bearer ${TOKEN.slice(0, -1)}x`]);
    }
    return d;
  }

  private readonly mutations: [string, number, (d: Draft, route: Route) => void][] = [
    ['path.suffix', 3, (d) => (d.path += `/${this.badValue()}`)],
    [
      'path.case',
      1,
      (d) =>
        (d.path = [...d.path]
          .map((c) => (this.rnd.chance(0.5) ? c.toUpperCase() : c.toLowerCase()))
          .join('')),
    ],
    [
      'path.slashes',
      2,
      (d) =>
        (d.path = this.rnd.pick([
          `/${d.path}`,
          `${d.path}/`,
          `${d.path}//`,
          d.path.replace(/\//g, '//'),
          d.path.replace('/', '/./'),
          d.path.replace(/^\/(\w+)/, '/$1/../$1'),
          `/..${d.path}`,
          d.path.replace(/\//g, '%2F'),
          d.path.replace(/\//g, '\\'),
          `${d.path};jsessionid=1`,
          `${d.path}%00`,
          `${d.path}#frag`,
        ])),
    ],
    [
      'path.encode',
      2,
      (d) =>
        (d.path = [...d.path]
          .map((c) =>
            c !== '/' && this.rnd.chance(0.3)
              ? this.rnd.pick([
                  `%${c.charCodeAt(0).toString(16)}`,
                  `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
                  '%',
                  '%G1',
                  `%25${c.charCodeAt(0).toString(16)}`,
                ])
              : c,
          )
          .join('')),
    ],
    [
      'path.unicode',
      1,
      (d) =>
        (d.path += this.rnd.pick([
          '/\u00e9',
          '/%C3%A9',
          '/\u{1f600}',
          '/%F0%9F%98%80',
          '/%ED%A0%80',
          '/\u202e',
        ])),
    ],
    [
      'path.long',
      1,
      (d) =>
        (d.path += `/${'a'.repeat(this.rnd.chance(0.7) ? this.rnd.int(1000, 15000) : this.rnd.int(17000, 70000))}`),
    ],
    [
      'path.random',
      2,
      (d) =>
        (d.path = `/${this.randomString(0, 60, "abcdefghijklmnopqrstuvwxyz0123456789/.-_~%!$&'()*+,;=:@")}`),
    ],
    [
      'path.form',
      1,
      (d) =>
        (d.path = this.rnd.pick([
          `http://127.0.0.1${d.path}`,
          `https://evil.example${d.path}`,
          `http://[::1]:1${d.path}`,
          `http://[::1:80${d.path}`,
          `http://%zz${d.path}`,
          `http://a:b@x:99999${d.path}`,
          `http:///${d.path}`,
          `file:///etc/passwd`,
          `javascript:alert(1)`,
          '*',
          `127.0.0.1${d.path}`,
          d.path.slice(1),
          `//${d.path}`,
        ])),
    ],
    [
      'query.value',
      6,
      (d, route) => {
        const key =
          route.params.length > 0 && this.rnd.chance(0.8)
            ? this.rnd.pick(route.params)
            : this.rnd.pick(['lines', 'level', 'x', 'format', 'job_id', '', '%00', '__proto__']);
        d.query = d.query.filter((q) => !q.startsWith(`${key}=`));
        d.query.push(`${key}=${this.badValue()}`);
      },
    ],
    [
      'query.repeat',
      2,
      (d, route) => {
        const key = route.params.length > 0 ? this.rnd.pick(route.params) : 'lines';
        const n = this.rnd.chance(0.8) ? 2 : this.rnd.int(3, 200);
        for (let i = 0; i < n; i++)
          d.query.push(`${key}=${this.rnd.chance(0.5) ? (GOOD_VALUES[key]?.[0] ?? '1') : this.badValue()}`);
      },
    ],
    [
      'query.array',
      2,
      (d, route) => {
        const key = route.params.length > 0 ? this.rnd.pick(route.params) : 'lines';
        d.query.push(
          this.rnd.pick([
            `${key}[]=1`,
            `${key}[0]=1&${key}[1]=2`,
            `${key}[a]=1`,
            `${key}[a][b]=1`,
            `${key}.a=1`,
            `${key}[__proto__]=1`,
            `${key}%5B%5D=1`,
            `${key}`,
            `${key}=`,
            `=${key}`,
          ]),
        );
      },
    ],
    [
      'query.many',
      1,
      (d) => {
        const n = this.rnd.int(500, 3000);
        for (let i = 0; i < n; i++) d.query.push(`k${i}=${i}`);
      },
    ],
    [
      'query.raw',
      1,
      (d) =>
        d.query.push(
          this.rnd.pick([
            '&&&&',
            '=&=&=',
            '?a?b',
            ';a=1;b=2',
            'a=1#frag',
            '%26=%3D',
            'a=%',
            'a==b',
            '\u00e9=\u00e9',
            ' a=b',
            'a=b c',
          ]),
        ),
    ],
    ['header.request_id', 3, (d) => d.headers.push(['X-Request-Id', this.rnd.pick(BAD_REQUEST_IDS)])],
    [
      'header.request_id_twice',
      1,
      (d) => {
        d.headers.push(['X-Request-Id', '123e4567-e89b-12d3-a456-426614174000']);
        d.headers.push(['X-Request-Id', this.rnd.chance(0.5) ? '123e4567-e89b-12d3-a456-426614174000' : 'x']);
      },
    ],
    ['header.traceparent', 3, (d) => d.headers.push(['traceparent', this.rnd.pick(BAD_TRACEPARENTS)])],
    [
      'header.traceparent_twice',
      1,
      (d) => {
        d.headers.push(['traceparent', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01']);
        d.headers.push(['traceparent', '00-1af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01']);
        d.headers.push(['tracestate', 'a'.repeat(this.rnd.int(1, 4000))]);
      },
    ],
    [
      'header.oversized',
      2,
      (d) =>
        d.headers.push([
          this.rnd.pick(['X-Big', 'Cookie', 'Authorization', 'User-Agent']),
          'v'.repeat(this.rnd.chance(0.5) ? this.rnd.int(10_000, 16_000) : this.rnd.int(16_400, 100_000)),
        ]),
    ],
    [
      'header.many',
      1,
      (d) => {
        const n = this.rnd.int(100, 3000);
        for (let i = 0; i < n; i++) d.headers.push([`X-H${i}`, String(i)]);
      },
    ],
    [
      'header.garbage',
      2,
      (d) =>
        d.headers.push(
          this.rnd.pick<[string, string]>([
            ['X Y', 'z'],
            ['X\u007f', 'y'],
            ['', 'empty-name'],
            ['X-Ctl', 'a\u0001b'],
            ['X-Nul', 'a\u0000b'],
            ['X-Latin1', '\u00e9\u00ff'],
            ['X-Fold', 'a\r\n folded'],
            ['X-NoColon\r\nY', 'z'],
            ['X-Space ', 'v'],
            ['X-Long-Name'.repeat(500), 'v'],
            ['Content-Length', '-1'],
            ['Content-Length', 'abc'],
            ['Content-Length', '1e3'],
            ['Content-Length', '99999999999999999999'],
            ['Transfer-Encoding', 'gzip'],
            ['Transfer-Encoding', 'chunked, chunked'],
            ['Connection', 'keep-alive, upgrade'],
            ['Upgrade', 'websocket'],
            ['Upgrade', 'h2c'],
            ['HTTP2-Settings', 'AAMAAABkAAQAAP__'],
            ['Cookie', 'a=b; '.repeat(500)],
            ['If-None-Match', '*'],
            ['If-Modified-Since', 'Thu, 01 Jan 2099 00:00:00 GMT'],
            [
              'Range',
              this.rnd.pick([
                'bytes=0-0',
                'bytes=-1',
                'bytes=999999999999999999-',
                'bytes=a-b',
                `bytes=${'0-1,'.repeat(500)}0-1`,
                'lines=1-2',
              ]),
            ],
            [
              'Accept',
              this.rnd.pick([
                'application/openmetrics-text; version=1.0.0',
                'application/openmetrics-text;q=x',
                '*/*;q=-1',
                'text/html',
                '\u00e9',
                'a'.repeat(8000),
              ]),
            ],
            ['Accept-Encoding', 'gzip, br, zstd, *;q=0'],
            [
              'Authorization',
              this.rnd.pick([
                'Bearer',
                'Bearer ',
                'Basic Zm9vOmJhcg==',
                'Bearer a b',
                `Bearer ${'a'.repeat(8000)}`,
                'bearer\t x',
              ]),
            ],
            ['X-Forwarded-For', '1.1.1.1, '.repeat(300)],
            ['X-HTTP-Method-Override', 'DELETE'],
          ]),
        ),
    ],
    [
      'header.host',
      1,
      (d) => {
        const r = this.rnd.next();
        if (r < 0.4) d.headers = d.headers.filter(([k]) => k !== 'Host');
        else if (r < 0.7) d.headers.push(['Host', 'other.example']);
        else
          d.headers = d.headers.map(([k, v]) =>
            k === 'Host' ? [k, this.rnd.pick(['', ' ', 'a b', '[::1', 'x:99999', '\u00e9'])] : [k, v],
          );
      },
    ],
    [
      'header.last_event_id',
      1,
      (d) =>
        d.headers.push([
          'Last-Event-ID',
          this.rnd.pick(['-1', 'abc', '1e3', '9'.repeat(40), '', ' 5', '0x10', '\u00e9', '1, 2', 'null']),
        ]),
    ],
    [
      'header.expect',
      1,
      (d) => d.headers.push(['Expect', this.rnd.pick(['100-continue', '100-continue', 'foo', '200-ok', ''])]),
    ],
    [
      'framing',
      2,
      (d) => {
        d.framing = true;
        const body = d.body ?? Buffer.from('{"level":"info"}');
        const hex = body.length.toString(16);
        const pick = this.rnd.int(0, 7);
        if (pick === 0) {
          d.headers.push(['Content-Length', String(body.length)], ['Transfer-Encoding', 'chunked']);
          d.body = Buffer.from(`${hex}\r\n${body.toString('latin1')}\r\n0\r\n\r\n`, 'latin1');
        } else if (pick === 1) {
          d.headers.push(['Transfer-Encoding', 'chunked']);
          d.body = Buffer.from(`zz\r\n${body.toString('latin1')}\r\n0\r\n\r\n`, 'latin1');
        } else if (pick === 2) {
          d.headers.push(['Transfer-Encoding', 'chunked']);
          d.body = Buffer.from(
            `${hex};ext="x"\r\n${body.toString('latin1')}\r\n0\r\nX-Trailer: a\r\n\r\n`,
            'latin1',
          );
        } else if (pick === 3) {
          d.headers.push(
            ['Content-Length', String(body.length)],
            ['Content-Length', String(body.length + 1)],
          );
        } else if (pick === 4) {
          d.headers.push(['Content-Length', '0']);
          d.trailer = `GET /debug/config HTTP/1.1\r\nHost: x\r\n\r\n`;
        } else if (pick === 5) {
          d.headers.push(['Transfer-Encoding', 'chunked']);
          d.body = Buffer.from(`${'f'.repeat(20)}\r\nabc\r\n0\r\n\r\n`, 'latin1');
        } else if (pick === 6) {
          d.headers.push(['Content-Length', ` ${body.length}`], ['Transfer-Encoding', ' chunked']);
          d.body = Buffer.from(`${hex}\r\n${body.toString('latin1')}\r\n0\r\n\r\n`, 'latin1');
        } else {
          d.headers.push(['Content-Length', String(Math.max(0, body.length - 3))]);
        }
      },
    ],
    [
      'body.json',
      4,
      (d) => {
        d.body = Buffer.from(this.rnd.pick(BODIES));
        if (!d.headers.some(([k]) => k === 'Content-Type'))
          d.headers.push(['Content-Type', 'application/json']);
        if (d.method === 'GET' && this.rnd.chance(0.5)) d.method = 'POST';
      },
    ],
    [
      'body.huge',
      2,
      (d) => {
        const n = this.rnd.pick([4097, 4200, 16_384, 100_000, 1_000_000]);
        d.body = Buffer.from(`{"level":"info","pad":"${'x'.repeat(n)}"}`);
        if (d.method === 'GET' && this.rnd.chance(0.3)) d.method = 'POST';
      },
    ],
    [
      'body.content_type',
      2,
      (d) => {
        d.headers = d.headers.filter(([k]) => k !== 'Content-Type');
        d.headers.push(['Content-Type', this.rnd.pick(CONTENT_TYPES)]);
        d.body ??= Buffer.from('{"level":"info"}');
      },
    ],
    [
      'body.encoding',
      1,
      (d) => {
        d.headers.push([
          'Content-Encoding',
          this.rnd.pick(['gzip', 'deflate', 'br', 'identity', 'x-unknown', 'gzip, gzip', 'zstd', 'compress']),
        ]);
        d.body ??= Buffer.from('{"level":"info"}');
      },
    ],
    [
      'method',
      3,
      (d) => {
        const r = this.rnd.next();
        d.method =
          r < 0.3
            ? this.rnd.pick(['HEAD', 'OPTIONS'])
            : r < 0.75
              ? this.rnd.pick(METHODS_ODD)
              : r < 0.85
                ? d.method === 'GET'
                  ? 'POST'
                  : 'GET'
                : this.rnd.pick(METHODS_INVALID);
      },
    ],
    ['method.connect', 0.1, (d) => (d.method = 'CONNECT')],
    [
      'version',
      1,
      (d) =>
        (d.version = this.rnd.pick([
          'HTTP/1.0',
          'HTTP/0.9',
          'HTTP/2.0',
          'HTTP/1.2',
          'HTTP/9.9',
          'HTTX/1.1',
          'http/1.1',
          'HTTP/1.1 extra',
          '',
        ])),
    ],
    ['line_endings', 1, (d) => (d.eol = this.rnd.pick(['\n', '\r', '\r\r\n']))],
  ];

  private readonly totalWeight = this.mutations.reduce((s, [, w]) => s + w, 0);

  private pickMutation(): [string, (d: Draft, route: Route) => void] {
    let r = this.rnd.next() * this.totalWeight;
    for (const [name, w, fn] of this.mutations) {
      r -= w;
      if (r <= 0) return [name, fn];
    }
    const last = this.mutations[this.mutations.length - 1]!;
    return [last[0], last[2]];
  }

  /** A well-formed request to each route, for clients that give up before the answer. */
  plain(): FuzzCase[] {
    const a = this.known.artifacts[0];
    return ROUTES.map((route) => {
      const d = this.draft(route, 'dev');
      d.query = [];
      // A download of a file that exists: the handler is still reading it when the client goes.
      if (a && route.path.includes('{name}')) {
        d.path = `/debug/artifacts/${enc(a.job)}/${a.name.split('/').map(enc).join('/')}`;
      }
      return { agent: 'dev', route: route.path, kind: 'abandoned', head: false, bytes: serialize(d) };
    });
  }

  private random(): FuzzCase {
    const route = this.rnd.pick(ROUTES);
    const agent = this.rnd.chance(0.75) ? 'dev' : 'prod';
    const d = this.draft(route, agent);
    const n = this.rnd.chance(0.7) ? 1 : this.rnd.int(2, 3);
    const kinds: string[] = [];
    for (let i = 0; i < n; i++) {
      const [name, fn] = this.pickMutation();
      fn(d, route);
      kinds.push(name);
    }
    return { agent, route: route.path, kind: kinds[0]!, head: d.method === 'HEAD', bytes: serialize(d) };
  }

  /** Requests worth sending every run, whatever the seed. */
  private fixedCases(): (() => FuzzCase)[] {
    const a = this.known.artifacts[0];
    const download = a
      ? `/debug/artifacts/${enc(a.job)}/${a.name.split('/').map(enc).join('/')}`
      : '/debug/artifacts/x/y';
    const base = (path: string, extra: string, method = 'GET', version = 'HTTP/1.1'): Buffer =>
      Buffer.from(`${method} ${path} ${version}\r\n${extra}Connection: close\r\n\r\n`, 'latin1');
    const cases: [string, string, Buffer, boolean?][] = [
      ['fixed.expect', '/health', base('/health', 'Host: x\r\nExpect: foo\r\n')],
      ['fixed.no_host', '/debug/status', base('/debug/status', '')],
      ['fixed.connect', '/', base('127.0.0.1:80', 'Host: x\r\n', 'CONNECT')],
      ['fixed.http09', '/health', Buffer.from('GET /health\r\n\r\n')],
      ['fixed.head_error', '/debug/logs', base('/debug/logs?lines=abc', 'Host: x\r\n', 'HEAD'), true],
      [
        'fixed.bad_percent_param',
        '/debug/artifacts/{job}/{name}',
        base('/debug/artifacts/%E0%A4%A/x', 'Host: x\r\n'),
      ],
      ['fixed.huge_header', '/health', base('/health', `Host: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n`)],
      ['fixed.huge_url', '/health', base(`/health?${'a'.repeat(20_000)}`, 'Host: x\r\n')],
      [
        'fixed.cl_te',
        '/debug/log-level',
        Buffer.from(
          'POST /debug/log-level HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n',
        ),
      ],
      [
        'fixed.gzip_garbage',
        '/debug/log-level',
        Buffer.from(
          'POST /debug/log-level HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello',
        ),
      ],
      [
        'fixed.too_large',
        '/debug/log-level',
        Buffer.from(
          `POST /debug/log-level HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n${'x'.repeat(5000)}`,
        ),
      ],
      [
        'fixed.wrong_type',
        '/debug/log-level',
        Buffer.from(
          'POST /debug/log-level HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 16\r\nConnection: close\r\n\r\n{"level":"info"}',
        ),
      ],
      [
        'fixed.proto_body',
        '/debug/log-level',
        Buffer.from(
          'POST /debug/log-level HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 30\r\nConnection: close\r\n\r\n{"__proto__":{"level":"info"}}',
        ),
      ],
      [
        'fixed.request_id',
        '/debug/status',
        base('/debug/status', `Host: x\r\nX-Request-Id: ${'a'.repeat(200)}\r\n`),
      ],
      [
        'fixed.traceparent',
        '/debug/status',
        base(
          '/debug/status',
          'Host: x\r\ntraceparent: 00-00000000000000000000000000000000-0000000000000000-00\r\n',
        ),
      ],
      ['fixed.repeated_lines', '/debug/logs', base('/debug/logs?lines=1&lines=2', 'Host: x\r\n')],
      ['fixed.lines_huge', '/debug/logs', base(`/debug/logs?lines=${'9'.repeat(400)}`, 'Host: x\r\n')],
      ['fixed.lines_negative', '/debug/logs', base('/debug/logs?lines=-5', 'Host: x\r\n')],
      ['fixed.since_far', '/debug/logs', base('/debug/logs?since=275760-09-13T00:00:00.001Z', 'Host: x\r\n')],
      [
        'fixed.traversal',
        '/debug/artifacts/{job}/{name}',
        base('/debug/artifacts/x/..%2F..%2Fetc%2Fpasswd', 'Host: x\r\n'),
      ],
      ['fixed.options_star', '/', base('*', 'Host: x\r\n', 'OPTIONS')],
      ['fixed.absolute_form', '/debug/config', base('http://127.0.0.1/debug/config', 'Host: x\r\n')],
      [
        'fixed.upgrade',
        '/health',
        base('/health', 'Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n'),
      ],
      ['fixed.events_types', '/debug/events', base('/debug/events?types=gpu,bogus', 'Host: x\r\n')],
      ['fixed.events_resume', '/debug/events', base('/debug/events', 'Host: x\r\nLast-Event-ID: abc\r\n')],
      // The body turns out malformed only after the download has started: the agent drops the
      // connection under a handler that is still at work.
      [
        'fixed.download_bad_range',
        '/debug/artifacts/{job}/{name}',
        base(download, 'Host: x\r\nRange: bytes=999999999999999999-\r\n'),
      ],
      [
        'fixed.download_bad_chunk',
        '/debug/artifacts/{job}/{name}',
        Buffer.from(
          `GET ${download} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n` +
            'ffffffffffffffffffff\r\nabc\r\n0\r\n\r\n',
          'latin1',
        ),
      ],
    ];
    return cases.flatMap(([kind, route, bytes, head]) =>
      (['dev', 'prod'] as const).map((agent) => () => ({ agent, route, kind, head: head ?? false, bytes })),
    );
  }
}

function serialize(d: Draft): Buffer {
  const target = d.query.length > 0 ? `${d.path}?${d.query.join('&')}` : d.path;
  const headers = [...d.headers];
  if (d.body && !d.framing && !headers.some(([k]) => k.toLowerCase() === 'content-length')) {
    headers.push(['Content-Length', String(d.body.length)]);
  }
  const head =
    `${d.method} ${target}${d.version ? ` ${d.version}` : ''}${d.eol}` +
    headers.map(([k, v]) => `${k}: ${v}${d.eol}`).join('') +
    d.eol;
  // Characters beyond Latin-1 go out as UTF-8, as a client that does not encode them would send them.
  const headBytes = /[\u0100-\uffff]/.test(head) ? Buffer.from(head, 'utf8') : Buffer.from(head, 'latin1');
  return Buffer.concat([headBytes, d.body ?? Buffer.alloc(0), Buffer.from(d.trailer ?? '', 'latin1')]);
}

/** A request or response for a report: printable, escaped, cut short. */
function show(bytes: Buffer, max = 300): string {
  const s = bytes.subarray(0, max).toString('latin1');
  return JSON.stringify(s) + (bytes.length > max ? ` …(${bytes.length} bytes)` : '');
}

function classOf(r: RawResponse): string {
  if (r.outcome !== 'answered') return r.outcome;
  return `${Math.floor(r.status / 100)}xx`;
}

/** Why an answer misses a target, or undefined. */
function judge(c: FuzzCase, r: RawResponse): string | undefined {
  if (r.outcome === 'no_answer') return 'connection closed without an answer';
  if (r.outcome === 'timeout') return 'no answer within the time limit';
  if (r.outcome === 'truncated') return 'answer cut off';
  if (r.status >= 500) return `status ${r.status}`;
  if (r.status >= 400) {
    if (c.head) {
      return /^application\/json\b/.test(r.headers['content-type'] ?? '')
        ? undefined
        : `HEAD error answer with content-type ${r.headers['content-type'] ?? 'missing'}`;
    }
    const problem = errorFormatProblem(r.headers['content-type'], r.body);
    if (problem) return `status ${r.status} not in the error format: ${problem}`;
  }
  return undefined;
}

/** Recent jobs of the workload and their artifacts, so some requests name things that exist. */
async function knownJobs(agent: RunningAgent): Promise<Known> {
  const known: Known = { jobIds: [], artifacts: [] };
  const workload = await getJson<{ pid: number | null }>(`${agent.url}/debug/workload`);
  const status = await getJson<{ current_job: { job_id: string } | null }>(`${agent.url}/debug/status`);
  const prefix = `job-${workload.pid}-`;
  const current = status.current_job?.job_id;
  const n = current?.startsWith(prefix) ? Number(current.slice(prefix.length)) : 0;
  // The running job has no artifact yet: its artifact comes at its end.
  for (let k = Math.max(1, n - 5); k < n; k++) {
    const jobId = `${prefix}${k}`;
    const list = await getJson<{ artifacts: { name: string }[] }>(
      `${agent.url}/debug/artifacts?job_id=${encodeURIComponent(jobId)}`,
    );
    known.jobIds.push(jobId);
    for (const a of list.artifacts) known.artifacts.push({ job: jobId, name: a.name });
  }
  if (current) known.jobIds.push(current);
  return known;
}

async function heapUsed(agent: RunningAgent): Promise<number> {
  const m = await getJson<{ process: { heap_used_bytes: number } }>(`${agent.url}/debug/memory`);
  return m.process.heap_used_bytes;
}

/** Median RSS over a few samples, so one GC does not decide the figure. */
async function steadyRss(pid: number, samples = 5, gapMs = 500): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < samples; i++) {
    xs.push(rssBytes(pid));
    if (i < samples - 1) await sleep(gapMs);
  }
  xs.sort((a, b) => a - b);
  return xs[Math.floor(xs.length / 2)]!;
}

const ABANDON_ROUNDS = 10;

/** Sends a request and closes the connection at once, as a client that gives up does. */
function abandon(port: number, bytes: Buffer): Promise<void> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => {
      socket.write(bytes, () => setImmediate(() => socket.destroy()));
    });
    socket.on('error', () => undefined);
    socket.on('close', () => resolve());
  });
}

/** Sockets that send half a request and stop; the agent must answer 408 in the error format and close. */
async function slowClients(dev: RunningAgent, which: 'headers' | 'all'): Promise<FuzzResult['slow']> {
  const partial = [
    'GET /debug/status HTTP/1.1\r\nHost: x\r\nX-Slow: ',
    'GET /debug/logs?lines=',
    ...(which === 'all'
      ? [
          'POST /debug/log-level HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{"level":',
        ]
      : []),
  ];
  const runs = partial.flatMap((p) => Array.from({ length: 5 }, () => p));
  const results = await Promise.all(
    runs.map((p) => rawRequest(dev.port, Buffer.from(p), { timeoutMs: 40_000 })),
  );
  const out = { sent: runs.length, answered408: 0, other: [] as string[] };
  for (const [i, r] of results.entries()) {
    const problem =
      r.outcome === 'answered' ? errorFormatProblem(r.headers['content-type'], r.body) : r.outcome;
    if (r.status === 408 && !problem) out.answered408++;
    else out.other.push(`${show(Buffer.from(runs[i]!), 80)} → ${r.outcome} ${r.status} ${problem ?? ''}`);
  }
  return out;
}

export async function runFuzz(opts: FuzzOptions): Promise<FuzzResult> {
  const dev = await startAgent({
    env: {
      MOCK_GPU_COUNT: '2',
      HARDENING_MODE: 'jobs',
      HARDENING_EVENTS_PER_S: '40',
      HARDENING_STEPS: '20',
    },
    workload: [process.execPath, WORKLOAD],
    nodeArgs: ['--inspect=127.0.0.1:0'],
  });
  const prod = await startAgent({
    env: { NODE_ENV: 'production', DEBUG_TOKEN: TOKEN, REQUEST_ID_FORMAT: 'token' },
  });
  const failures: string[] = [];
  try {
    // Long enough for the workload to finish a few jobs with artifacts.
    await sleep(3000);
    const known = await knownJobs(dev);
    // The warm-up draws from its own sequence, so the measured run starts with the fixed cases.
    const warmGen = new Generator(new Random(opts.seed ^ 0x5bd1e995), known);
    const gen = new Generator(new Random(opts.seed), known);

    const byClass: Record<string, number> = {};
    const byStatus: Record<string, number> = {};
    const byRoute: Record<string, Record<string, number>> = {};
    const byKind: Record<string, Record<string, number>> = {};
    const examples: FuzzFailure[] = [];
    let badFormat = 0;
    let fiveXx = 0;
    let noAnswer = 0;
    let missingRequestId = 0;
    const bump = (t: Record<string, Record<string, number>>, k: string, col: string): void => {
      t[k] ??= {};
      t[k][col] = (t[k][col] ?? 0) + 1;
    };

    const sentById = new Map<string, string>();
    const send = async (count: number, source: Generator, record: boolean): Promise<void> => {
      let left = count;
      const worker = async (): Promise<void> => {
        while (left > 0) {
          left--;
          const c = source.next();
          const agent = c.agent === 'dev' ? dev : prod;
          const r = await rawRequest(agent.port, c.bytes, { head: c.head, timeoutMs: 15_000 });
          // The agent's request id ties its log records back to the request that caused them.
          const rid = r.headers['x-request-id'];
          if (rid !== undefined) sentById.set(rid, show(c.bytes));
          if (!record) continue;
          const cls = classOf(r);
          byClass[cls] = (byClass[cls] ?? 0) + 1;
          const statusKey = r.outcome === 'answered' ? String(r.status) : r.outcome;
          byStatus[statusKey] = (byStatus[statusKey] ?? 0) + 1;
          bump(byRoute, c.route, 'requests');
          bump(byRoute, c.route, cls);
          bump(byKind, c.kind, 'requests');
          bump(byKind, c.kind, cls);
          if (r.outcome === 'answered' && r.headers['x-request-id'] === undefined) missingRequestId++;
          const why = judge(c, r);
          if (!why) continue;
          bump(byRoute, c.route, 'failed');
          bump(byKind, c.kind, 'failed');
          if (r.outcome !== 'answered') noAnswer++;
          else if (r.status >= 500) fiveXx++;
          else badFormat++;
          if (examples.length < 40 && !examples.some((e) => e.why === why)) {
            examples.push({
              why,
              agent: c.agent,
              request: show(c.bytes),
              response: `${r.outcome} ${r.status} ${JSON.stringify(r.headers)} ${show(r.body, 200)}`,
            });
          }
        }
      };
      await Promise.all(Array.from({ length: opts.concurrency }, () => worker()));
    };

    // Warm-up: the same mix, so JIT code and heap reach their working size before the baseline.
    await send(Math.max(500, Math.floor(opts.requests / 20)), warmGen, false);
    await collectGarbage(dev);
    await sleep(1000);
    const rssBaseline = await steadyRss(dev.pid, 3, 300);
    const heapBaseline = await heapUsed(dev);

    let peak = rssBaseline;
    const sampler = setInterval(() => {
      if (dev.alive()) peak = Math.max(peak, rssBytes(dev.pid));
    }, 250);
    const slow = opts.slowClients === 'none' ? undefined : slowClients(dev, opts.slowClients);
    const t0 = performance.now();
    await send(opts.requests, gen, true);
    const durationMs = performance.now() - t0;
    const slowResult = (await slow) ?? { sent: 0, answered408: 0, other: [] };
    // Clients that give up: the request goes out and the connection closes before any answer.
    const abandoned = gen.plain();
    for (let i = 0; i < ABANDON_ROUNDS; i++)
      await Promise.all(abandoned.map((c) => abandon(dev.port, c.bytes)));
    await sleep(500);
    clearInterval(sampler);

    const crashed = !dev.alive() || !prod.alive();
    const tolerance = Math.max(10 * 1024 * 1024, rssBaseline * 0.1);
    // First as it comes back by itself (V8 returns memory after its own major GCs, when it gets to them)...
    const settleStart = performance.now();
    let rssNatural = crashed ? NaN : await steadyRss(dev.pid, 3, 300);
    const settleTrace: [number, number][] = [[(performance.now() - settleStart) / 1000, rssNatural]];
    while (
      !crashed &&
      rssNatural > rssBaseline + tolerance &&
      performance.now() - settleStart < opts.settleMs
    ) {
      await sleep(1000);
      rssNatural = await steadyRss(dev.pid, 3, 300);
      settleTrace.push([(performance.now() - settleStart) / 1000, rssNatural]);
    }
    const settledMs = performance.now() - settleStart;
    // ...then after a full GC, as the baseline was taken: what the run left retained.
    let rssAfter = NaN;
    let heapAfter = NaN;
    if (!crashed) {
      await collectGarbage(dev);
      await sleep(1000);
      rssAfter = await steadyRss(dev.pid, 3, 300);
      heapAfter = await heapUsed(dev);
    }

    const errorRecords = dev.errors.length + prod.errors.length;
    const requests = opts.requests;
    if (requests < 10_000) failures.push(`only ${requests} requests (at least 10,000)`);
    if (fiveXx > 0) failures.push(`${fiveXx} answers with a 5xx status`);
    if (crashed) failures.push(`agent crashed: ${dev.stderr().slice(0, 500)}${prod.stderr().slice(0, 500)}`);
    if (badFormat > 0) failures.push(`${badFormat} error answers not in the error format`);
    if (noAnswer > 0) failures.push(`${noAnswer} requests without a (whole) answer`);
    if (!(rssAfter <= rssBaseline + tolerance)) {
      failures.push(
        `RSS ${mb(rssAfter)} MB after the run, baseline ${mb(rssBaseline)} MB (+${mb(tolerance)} MB allowed)`,
      );
    }
    if (errorRecords > 0) failures.push(`${errorRecords} log records at error level or above`);
    if (slowResult.other.length > 0)
      failures.push(`${slowResult.other.length} slow clients not answered 408`);

    const result: FuzzResult = {
      ok: failures.length === 0,
      failures,
      requests,
      byClass,
      byStatus,
      byRoute,
      byKind,
      badFormat,
      fiveXx,
      noAnswer,
      missingRequestId,
      examples,
      crashed,
      errorRecords,
      errorExamples: [],
      rss: {
        baseline: rssBaseline,
        peak,
        natural: rssNatural,
        after: rssAfter,
        settledMs,
        settle: settleTrace,
      },
      heapUsed: { baseline: heapBaseline, after: heapAfter },
      slow: slowResult,
      abandoned: abandoned.length * ABANDON_ROUNDS,
      durationMs,
      ratePerS: requests / (durationMs / 1000),
    };
    for (const e of [...dev.errors, ...prod.errors].slice(0, 20)) {
      const rid = typeof e.request_id === 'string' ? e.request_id : undefined;
      result.errorExamples.push({
        record: JSON.stringify({ ...e, error: undefined }).slice(0, 600),
        request:
          (rid !== undefined ? sentById.get(rid) : undefined) ??
          'none answered with this request id (an abandoned request, or one whose client had gone)',
      });
    }
    if (opts.print) printFuzz(result, opts);
    return result;
  } finally {
    await Promise.all([dev.stop(), prod.stop()]);
  }
}

function printFuzz(r: FuzzResult, opts: FuzzOptions): void {
  console.log(
    `bad-input fuzz: ${r.requests} requests (seed ${opts.seed}, ${opts.concurrency} connections at a time) in ` +
      `${(r.durationMs / 1000).toFixed(1)} s (${r.ratePerS.toFixed(0)} req/s), after a warm-up of the same mix`,
  );
  const classes = ['2xx', '3xx', '4xx', '5xx', 'no_answer', 'truncated', 'timeout'];
  printTable(
    'Answers by status class',
    ['class', 'requests'],
    classes.map((c) => [c, r.byClass[c] ?? 0]),
  );
  printTable(
    'Answers by status',
    ['status', 'requests'],
    Object.entries(r.byStatus)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([s, n]) => [s, n]),
  );
  const cols = ['requests', '2xx', '4xx', '5xx', 'failed'];
  printTable(
    'By route',
    ['route', ...cols],
    Object.entries(r.byRoute)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, v]) => [k, ...cols.map((c) => v[c] ?? 0)]),
  );
  printTable(
    'By first mutation',
    ['mutation', ...cols],
    Object.entries(r.byKind)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, v]) => [k, ...cols.map((c) => v[c] ?? 0)]),
  );
  printTable(
    'Targets',
    ['figure', 'value', 'target'],
    [
      ['responses 5xx', r.fiveXx, 0],
      ['error answers not in the error format', r.badFormat, 0],
      ['requests without a whole answer', r.noAnswer, 0],
      ['agent crashed', r.crashed ? 'yes' : 'no', 'no'],
      ['log records at error level', r.errorRecords, 0],
      ['RSS baseline MB (after a full GC)', mb(r.rss.baseline), ''],
      ['RSS peak MB', mb(r.rss.peak), ''],
      ['RSS after MB (after a full GC)', mb(r.rss.after), `≤ baseline + max(10 MB, 10 %)`],
      ['RSS before that GC MB', mb(r.rss.natural), ''],
      ['RSS watched coming back s', (r.rss.settledMs / 1000).toFixed(1), ''],
      ['heap used before / after MB', `${mb(r.heapUsed.baseline)} / ${mb(r.heapUsed.after)}`, ''],
      ['slow clients answered 408', `${r.slow.answered408} / ${r.slow.sent}`, 'all'],
      ['requests abandoned before the answer', r.abandoned, 'no error record'],
      ['answers without x-request-id', r.missingRequestId, ''],
    ],
  );
  if (r.rss.settle.length > 1) {
    const trace = r.rss.settle.map(([t, v]) => `${t.toFixed(0)}: ${mb(v)}`).join(', ');
    console.log(`RSS after the run, before the full GC (s: MB): ${trace}`);
  }
  if (r.examples.length > 0) {
    console.log('\nFailures (one example per kind):');
    for (const e of r.examples) {
      console.log(`- ${e.why} [${e.agent} agent]\n    request:  ${e.request}\n    response: ${e.response}`);
    }
  }
  for (const o of r.slow.other) console.log(`- slow client: ${o}`);
  for (const e of r.errorExamples.slice(0, 10)) {
    console.log(`- error record: ${e.record}\n    after request: ${e.request}`);
  }
}

/** Options of a script run: `--short` is the npm test form. */
export function fuzzOptionsFromArgs(argv: readonly string[] = process.argv): FuzzOptions {
  const short = isShort(argv);
  return {
    requests: Number(argValue('requests', argv) ?? (short ? 10_000 : 50_000)),
    seed: Number(argValue('seed', argv) ?? process.env.HARDENING_SEED ?? 1),
    concurrency: Number(argValue('concurrency', argv) ?? 16),
    slowClients: short ? 'headers' : 'all',
    settleMs: short ? 20_000 : 60_000,
    print: true,
  };
}

if (isMain(import.meta.url)) runAsScript(() => runFuzz(fuzzOptionsFromArgs()));
