import { parseArgs } from 'node:util';
import { renderStatus } from './render.js';
import type { QueueAnswer, ReadyAnswer, StatusAnswer, StatusView } from './render.js';

/** Exit statuses of `gpu-pod-agent status`: a container health check reads the first two. */
export const STATUS_EXIT = {
  ready: 0,
  notReady: 1,
  usage: 2,
  unreachable: 3,
} as const;

export const STATUS_USAGE = `Usage: gpu-pod-agent status [--url URL] [--token TOKEN] [--watch [SECONDS]] [--json] [--timeout-ms MS]

Shows a running agent (this pod's or a remote one): each GPU with utilization and memory bars, the
current job and node with their progress, and the queue counts.

  --url URL          the agent (default: $GPU_POD_AGENT_URL, else http://127.0.0.1:$PORT, PORT 8080)
  --token TOKEN      its debug token (default: $DEBUG_TOKEN), sent as a bearer header
  --watch [SECONDS]  redraw every SECONDS (default 2) until Ctrl-C
  --json             print the agent's answers as one JSON object (one line per refresh with --watch)
  --timeout-ms MS    give up on a request after MS (default 5000)
  --no-color         no colors (also when NO_COLOR is set or the output is not a terminal)

Lines are cut to the terminal's width ($COLUMNS, else 80, when the output is not a terminal).

Exit status: 0 the pod is ready, 1 it answers but is not ready, 2 bad usage, 3 unreachable, timed out
or the token refused. As a container health check: gpu-pod-agent status --timeout-ms 3000 >/dev/null`;

class Unreachable extends Error {}

interface Options {
  url: string;
  token: string | undefined;
  watchS: number | undefined;
  json: boolean;
  timeoutMs: number;
  color: boolean;
}

/** `--watch` takes an optional value: `--watch 5`, `--watch=5` or `--watch` alone. */
function normalizeWatch(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '--watch') {
      const next = argv[i + 1];
      if (next !== undefined && /^\d+(\.\d+)?$/.test(next)) {
        out.push(`--watch=${next}`);
        i++;
      } else out.push('--watch=2');
    } else out.push(a);
  }
  return out;
}

function parse(argv: string[], env: NodeJS.ProcessEnv, isTty: boolean): Options | 'help' {
  const { values, positionals } = parseArgs({
    args: normalizeWatch(argv),
    options: {
      url: { type: 'string' },
      token: { type: 'string' },
      watch: { type: 'string' },
      json: { type: 'boolean' },
      'timeout-ms': { type: 'string' },
      'no-color': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: true,
  });
  if (values.help) return 'help';
  if (positionals.length > 0) throw new TypeError(`unexpected argument "${positionals[0]}"`);
  const url = values.url ?? env.GPU_POD_AGENT_URL ?? `http://127.0.0.1:${env.PORT || '8080'}`;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new TypeError(`--url "${url}" is not a URL`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new TypeError(`--url must be http or https, not ${parsed.protocol}`);
  }
  const watchS = values.watch === undefined ? undefined : Number(values.watch);
  if (watchS !== undefined && !(watchS > 0 && watchS <= 3600)) {
    throw new TypeError('--watch takes seconds between 0 and 3600');
  }
  const timeoutMs = Number(values['timeout-ms'] ?? 5000);
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > 600_000) {
    throw new TypeError('--timeout-ms takes whole milliseconds between 1 and 600000');
  }
  return {
    url: url.replace(/\/+$/, ''),
    token: values.token ?? (env.DEBUG_TOKEN || undefined),
    watchS,
    json: values.json ?? false,
    timeoutMs,
    color: isTty && !values['no-color'] && !env.NO_COLOR,
  };
}

async function getJson<T>(o: Options, path: string, acceptStatus: number[] = [200]): Promise<T> {
  let res: Response;
  try {
    res = await fetch(`${o.url}${path}`, {
      headers: { Accept: 'application/json', ...(o.token ? { Authorization: `Bearer ${o.token}` } : {}) },
      signal: AbortSignal.timeout(o.timeoutMs),
    });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    const why =
      err instanceof Error && err.name === 'TimeoutError'
        ? `no answer within ${o.timeoutMs} ms`
        : (cause?.code ?? cause?.message ?? (err instanceof Error ? err.message : String(err)));
    throw new Unreachable(`cannot reach the agent at ${o.url}: ${why}`, { cause: err });
  }
  if (res.status === 401) {
    await res.body?.cancel();
    throw new Unreachable(
      o.token
        ? `the agent at ${o.url} refused the token (401)`
        : `unauthorized: the agent at ${o.url} asks for its debug token; pass --token or set DEBUG_TOKEN`,
    );
  }
  if (!acceptStatus.includes(res.status)) {
    const text = (await res.text()).slice(0, 200);
    throw new Unreachable(`${o.url}${path} answered ${res.status}: ${text}`);
  }
  try {
    return (await res.json()) as T;
  } catch (err) {
    throw new Unreachable(`${o.url}${path} did not answer JSON; is this a gpu-pod-agent?`, { cause: err });
  }
}

async function fetchView(o: Options): Promise<StatusView> {
  const [ready, status, queue] = await Promise.all([
    getJson<ReadyAnswer>(o, '/ready', [200, 503]),
    getJson<StatusAnswer>(o, '/debug/status'),
    getJson<QueueAnswer>(o, '/debug/queue'),
  ]);
  return { url: o.url, ready, status, queue };
}

export interface StatusIo {
  argv: string[];
  env: NodeJS.ProcessEnv;
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WritableStream;
}

/** Runs `gpu-pod-agent status`; resolves with the exit status. */
export async function runStatus(io: StatusIo): Promise<number> {
  let o: Options;
  try {
    const parsed = parse(io.argv, io.env, io.stdout.isTTY === true);
    if (parsed === 'help') {
      io.stdout.write(`${STATUS_USAGE}\n`);
      return STATUS_EXIT.ready;
    }
    o = parsed;
  } catch (err) {
    io.stderr.write(
      `gpu-pod-agent status: ${err instanceof Error ? err.message : String(err)}\n\n${STATUS_USAGE}\n`,
    );
    return STATUS_EXIT.usage;
  }

  const once = async (): Promise<number> => {
    try {
      const view = await fetchView(o);
      if (o.json) io.stdout.write(`${JSON.stringify(view, null, o.watchS ? undefined : 2)}\n`);
      else {
        const width = io.stdout.columns || Number(io.env.COLUMNS) || 80;
        const text = renderStatus(view, { width, color: o.color });
        // A terminal is redrawn in place; anything else gets one block after another.
        const clear = o.watchS && io.stdout.isTTY ? '\u001b[H\u001b[2J' : '';
        io.stdout.write(`${clear}${text}\n${o.watchS && !io.stdout.isTTY ? '\n' : ''}`);
      }
      return view.ready.status === 'ok' ? STATUS_EXIT.ready : STATUS_EXIT.notReady;
    } catch (err) {
      if (!(err instanceof Unreachable)) throw err;
      io.stderr.write(`gpu-pod-agent status: ${err.message}\n`);
      return STATUS_EXIT.unreachable;
    }
  };

  let code = await once();
  if (!o.watchS) return code;
  const everyMs = o.watchS * 1000;
  return new Promise<number>((resolve) => {
    let timer: NodeJS.Timeout | undefined;
    const stop = (): void => {
      clearTimeout(timer);
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve(code);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
    const tick = (): void => {
      timer = setTimeout(() => {
        void once().then((c) => {
          code = c;
          tick();
        });
      }, everyMs);
    };
    tick();
  });
}
