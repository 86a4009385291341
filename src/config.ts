import { isIP } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { MOCK_GPU_MODELS, findMockModel } from '../gpu/index.js';
import type { MockFault, MockFaultKind } from '../gpu/index.js';

/**
 * The one place that reads configuration. Every setting comes from an environment variable or the
 * matching `--kebab-case` flag (a flag wins); a blank value counts as unset. All problems are reported
 * together so a bad deployment is fixed in one go.
 */

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const GPU_BACKEND_CHOICES = ['auto', 'nvml', 'nvidia-smi', 'dcgm', 'mock'] as const;
export type GpuBackendChoice = (typeof GPU_BACKEND_CHOICES)[number];
export const JOB_RUNNER_CHOICES = ['command', 'comfyui', 'noop', 'none'] as const;
export type JobRunnerChoice = (typeof JOB_RUNNER_CHOICES)[number];
const MOCK_FAULT_KINDS = ['none', 'hang', 'error', 'na'] as const;

export interface AgentConfig {
  /** TCP port of the HTTP server; 0 picks a free one (the `listening` log record says which). */
  port: number;
  host: string;
  podId: string;
  nodeEnv: string;
  production: boolean;
  mockGpu: boolean;
  gpuBackend: GpuBackendChoice;
  gpuPollIntervalMs: number;
  gpuSampleTimeoutMs: number;
  gpuStaleAfterMs: number;
  gpuHistorySize: number;
  nvmlLibraryPath: string;
  nvidiaSmiPath: string;
  nvidiaSmiDetailIntervalMs: number;
  dcgmiPath: string;
  dcgmHost: string | undefined;
  dcgmExporterUrl: string | undefined;
  mockGpuCount: number;
  mockGpuModel: string;
  mockGpuSeed: number;
  mockGpuFault: MockFault;
  logLevel: LogLevel;
  logBufferLines: number;
  logBufferBytes: number;
  debugToken: string | undefined;
  drainTimeoutMs: number;
  /** Entrypoint mode: how long to keep answering after the workload exited by itself. */
  workloadExitLingerMs: number;
  artifactsDir: string;
  jobHistorySize: number;
  requestIdFormat: 'uuid' | 'token';
  gpuMetricsDcgmCompat: boolean;
  gpuMetricsMaxProcesses: number;
  hostRefreshIntervalMs: number;
  /** Redis of the job queue; unset: no queue. */
  redisUrl: string | undefined;
  queueName: string;
  /** BullMQ key prefix. */
  queuePrefix: string;
  /** What runs each job: a command per job, or nothing (the agent only follows the queue). */
  jobRunner: JobRunnerChoice;
  /** Run through `/bin/sh -c` per job by the `command` runner. */
  jobCommand: string | undefined;
  workerConcurrency: number;
  jobLockDurationMs: number;
  jobStalledIntervalMs: number;
  jobMaxStalledCount: number;
  jobProgressIntervalMs: number;
  jobKeepLogs: number;
  queueRefreshIntervalMs: number;
  /** ComfyUI's base URL, for the `comfyui` runner. */
  comfyuiUrl: string;
  /** ComfyUI's base directory (output/, temp/, input/) when readable here. */
  comfyuiDir: string | undefined;
  comfyuiRequestTimeoutMs: number;
  comfyuiSilenceMs: number;
  /** Whether traces are exported, and why (from the standard `OTEL_*` variables). */
  tracing: { enabled: boolean; reason: string };
  eventsMaxStreams: number;
  eventsBufferSize: number;
  /** The workload command given after `--`; empty in sidecar mode. */
  workload: string[];
}

interface Setting {
  env: string;
  flag: string;
  /** Shown in the README and `--help`. */
  defaultText: string;
  unit: string;
  description: string;
  boolean?: boolean;
  secret?: boolean;
}

/** Every setting, in the order the README lists them. */
export const SETTINGS: readonly Setting[] = [
  {
    env: 'PORT',
    flag: 'port',
    defaultText: '8080',
    unit: 'port',
    description: 'HTTP port for the API and `/metrics`; 0 picks a free port.',
  },
  {
    env: 'HOST',
    flag: 'host',
    defaultText: '0.0.0.0',
    unit: 'address',
    description: 'Address the HTTP server binds to.',
  },
  {
    env: 'POD_ID',
    flag: 'pod-id',
    defaultText: '`RUNPOD_POD_ID`, then the hostname',
    unit: 'text',
    description: 'Pod identity in logs, `/debug/status` and metrics.',
  },
  {
    env: 'NODE_ENV',
    flag: 'node-env',
    defaultText: 'development',
    unit: 'text',
    description:
      '`production` switches off `/debug/config` and `POST /debug/log-level` unless `DEBUG_TOKEN` is set.',
  },
  {
    env: 'MOCK_GPU',
    flag: 'mock-gpu',
    defaultText: 'false',
    unit: 'boolean',
    boolean: true,
    description: 'Use simulated GPUs (for laptops and CI); same as `GPU_BACKEND=mock`.',
  },
  {
    env: 'GPU_BACKEND',
    flag: 'gpu-backend',
    defaultText: 'auto',
    unit: 'auto, nvml, nvidia-smi, dcgm, mock',
    description: 'Where GPU readings come from; `auto` picks the best one that works.',
  },
  {
    env: 'GPU_POLL_INTERVAL_MS',
    flag: 'gpu-poll-interval-ms',
    defaultText: '1000',
    unit: 'ms',
    description: 'Time between GPU samples while the backend is healthy (it backs off after failures).',
  },
  {
    env: 'GPU_SAMPLE_TIMEOUT_MS',
    flag: 'gpu-sample-timeout-ms',
    defaultText: '3000',
    unit: 'ms',
    description: 'A GPU sample running longer is aborted and the backend marked down.',
  },
  {
    env: 'GPU_STALE_AFTER_MS',
    flag: 'gpu-stale-after-ms',
    defaultText: 'max(3 × interval, interval + timeout)',
    unit: 'ms',
    description: 'GPU data older than this is reported `stale` and `/ready` turns degraded.',
  },
  {
    env: 'GPU_HISTORY_SIZE',
    flag: 'gpu-history-size',
    defaultText: '600',
    unit: 'samples',
    description: 'GPU samples kept in memory for history views.',
  },
  {
    env: 'NVML_LIBRARY_PATH',
    flag: 'nvml-library-path',
    defaultText: 'libnvidia-ml.so.1',
    unit: 'path or library name',
    description:
      'The NVML library the `nvml` backend loads (found through the dynamic linker unless a path).',
  },
  {
    env: 'NVIDIA_SMI_PATH',
    flag: 'nvidia-smi-path',
    defaultText: 'nvidia-smi',
    unit: 'path or command',
    description: 'The nvidia-smi the `nvidia-smi` backend runs (found on PATH unless a path).',
  },
  {
    env: 'NVIDIA_SMI_DETAIL_INTERVAL_MS',
    flag: 'nvidia-smi-detail-interval-ms',
    defaultText: '30000',
    unit: 'ms',
    description:
      'How often the `nvidia-smi` backend takes the full `-q -x` report besides its CSV queries (every sample when MIG is on).',
  },
  {
    env: 'DCGMI_PATH',
    flag: 'dcgmi-path',
    defaultText: 'dcgmi',
    unit: 'path or command',
    description: 'The dcgmi the `dcgm` backend runs as one long-lived `dcgmi dmon`.',
  },
  {
    env: 'DCGM_HOST',
    flag: 'dcgm-host',
    defaultText: "dcgmi's own (localhost:5555)",
    unit: 'host[:port]',
    description: 'The DCGM host engine dcgmi talks to.',
  },
  {
    env: 'DCGM_EXPORTER_URL',
    flag: 'dcgm-exporter-url',
    defaultText: 'unset',
    unit: 'URL',
    description:
      'A dcgm-exporter `/metrics` URL: when set, the `dcgm` backend reads it instead of running dcgmi.',
  },
  {
    env: 'MOCK_GPU_COUNT',
    flag: 'mock-gpu-count',
    defaultText: '1',
    unit: 'GPUs',
    description: 'Number of simulated GPUs (1–64).',
  },
  {
    env: 'MOCK_GPU_MODEL',
    flag: 'mock-gpu-model',
    defaultText: 'NVIDIA H100 80GB HBM3',
    unit: 'model name or alias',
    description: `Simulated model: ${MOCK_GPU_MODELS.map((m) => m.aliases[0]).join(', ')} (or the full name).`,
  },
  {
    env: 'MOCK_GPU_SEED',
    flag: 'mock-gpu-seed',
    defaultText: '1',
    unit: 'integer',
    description: 'Seed of the simulated readings; the same seed and workload give the same numbers.',
  },
  {
    env: 'MOCK_GPU_FAULT',
    flag: 'mock-gpu-fault',
    defaultText: 'none',
    unit: '`none`, `hang`, `error`, `na`, optionally `@N`',
    description:
      'Fault injection for tests: the simulated backend hangs, fails, or reports every optional reading as unsupported, after N good samples.',
  },
  {
    env: 'LOG_LEVEL',
    flag: 'log-level',
    defaultText: 'info',
    unit: LOG_LEVELS.join(', '),
    description: 'Lowest level written to stdout and the log buffer; changeable at runtime.',
  },
  {
    env: 'LOG_BUFFER_LINES',
    flag: 'log-buffer-lines',
    defaultText: '5000',
    unit: 'records',
    description: 'Log records kept for `/debug/logs`; also the most one request can get.',
  },
  {
    env: 'LOG_BUFFER_BYTES',
    flag: 'log-buffer-bytes',
    defaultText: '16777216',
    unit: 'bytes',
    description: 'Size bound of the log buffer: the oldest records go first when long lines would exceed it.',
  },

  {
    env: 'DEBUG_TOKEN',
    flag: 'debug-token',
    defaultText: 'unset',
    unit: 'secret',
    secret: true,
    description: 'When set, every `/debug/*` route needs `Authorization: Bearer <token>`.',
  },
  {
    env: 'DRAIN_TIMEOUT_MS',
    flag: 'drain-timeout-ms',
    defaultText: '25000',
    unit: 'ms',
    description:
      'On SIGTERM, how long the workload and the current job get to finish before they are stopped.',
  },
  {
    env: 'WORKLOAD_EXIT_LINGER_MS',
    flag: 'workload-exit-linger-ms',
    defaultText: '0',
    unit: 'ms',
    description:
      'Entrypoint mode: when the workload exits by itself, keep answering this long (`/ready` 503 with its exit code, `/debug/*`, `/metrics`) before exiting with its code, so probes, scrapers and E2E tests can read why. A signal ends the wait at once.',
  },
  {
    env: 'ARTIFACTS_DIR',
    flag: 'artifacts-dir',
    defaultText: '`<tmpdir>/gpu-pod-agent/artifacts`',
    unit: 'path',
    description: 'Root of job artifacts; nothing outside it is ever served.',
  },
  {
    env: 'JOB_HISTORY_SIZE',
    flag: 'job-history-size',
    defaultText: '100',
    unit: 'jobs',
    description: 'Finished jobs (and their workflows) kept for `?job_id=` queries.',
  },
  {
    env: 'REQUEST_ID_FORMAT',
    flag: 'request-id-format',
    defaultText: 'uuid',
    unit: 'uuid, token',
    description:
      '`uuid`: an `x-request-id` must be a UUID (hyphenated or 32 hex digits); `token`: any 1–128 visible ASCII characters.',
  },
  {
    env: 'GPU_METRICS_DCGM_COMPAT',
    flag: 'gpu-metrics-dcgm-compat',
    defaultText: 'false',
    unit: 'boolean',
    boolean: true,
    description:
      "Also export dcgm-exporter names (`DCGM_FI_DEV_*`) so NVIDIA's Grafana dashboard works unchanged.",
  },
  {
    env: 'GPU_METRICS_MAX_PROCESSES',
    flag: 'gpu-metrics-max-processes',
    defaultText: '10',
    unit: 'processes per GPU',
    description:
      'How many processes per GPU get a `gpu_process_memory_used_bytes` series (the largest by memory); 0 turns the family off.',
  },
  {
    env: 'HOST_REFRESH_INTERVAL_MS',
    flag: 'host-refresh-interval-ms',
    defaultText: '5000',
    unit: 'ms',
    description: 'How often host and cgroup memory figures are read for `/debug/memory`.',
  },
  {
    env: 'REDIS_URL',
    flag: 'redis-url',
    defaultText: 'unset',
    unit: 'redis[s]://[user:password@]host[:port][/db]',
    secret: true,
    description:
      'Redis of the BullMQ queue. Unset: no queue (`/debug/queue` says so). Its password never appears in logs or `/debug/config`.',
  },
  {
    env: 'QUEUE_NAME',
    flag: 'queue-name',
    defaultText: 'jobs',
    unit: 'name',
    description: 'The BullMQ queue this pod works on or follows.',
  },
  {
    env: 'QUEUE_PREFIX',
    flag: 'queue-prefix',
    defaultText: 'bull',
    unit: 'key prefix',
    description: "BullMQ's key prefix; producers and workers of one queue must use the same.",
  },
  {
    env: 'JOB_RUNNER',
    flag: 'job-runner',
    defaultText: '`command` when `JOB_COMMAND` is set, else `none`',
    unit: 'command, comfyui, noop, none',
    description:
      "`command`: this pod is a BullMQ worker and runs `JOB_COMMAND` per job; `comfyui`: it runs each job's `workflow` on ComfyUI at `COMFYUI_URL`; `none`: it only follows the queue (the workload is the worker); `noop`: completes each job at once (for benchmarks and queue plumbing checks).",
  },
  {
    env: 'JOB_COMMAND',
    flag: 'job-command',
    defaultText: 'unset',
    unit: 'shell command',
    description:
      'Run with `/bin/sh -c` for each job: the job data as JSON on stdin, `JOB_ID`, `JOB_QUEUE`, `JOB_ATTEMPT` and `TRACEPARENT` in its environment, progress events on stdout.',
  },
  {
    env: 'WORKER_CONCURRENCY',
    flag: 'worker-concurrency',
    defaultText: '1',
    unit: 'jobs',
    description: 'Jobs this pod runs at once.',
  },
  {
    env: 'JOB_LOCK_DURATION_MS',
    flag: 'job-lock-duration-ms',
    defaultText: '30000',
    unit: 'ms',
    description:
      "BullMQ's job lock: renewed every half of it while a job runs; a pod that stops renewing (crashed, cut off from Redis) loses its job to another once the lock has expired and a stall check has found it.",
  },
  {
    env: 'JOB_STALLED_INTERVAL_MS',
    flag: 'job-stalled-interval-ms',
    defaultText: '30000',
    unit: 'ms',
    description:
      "How often the worker looks for jobs whose lock expired (BullMQ's `stalledInterval`) and puts them back in the queue; a job takes two looks, so a crashed pod's job waits up to `JOB_LOCK_DURATION_MS` plus twice this.",
  },
  {
    env: 'JOB_MAX_STALLED_COUNT',
    flag: 'job-max-stalled-count',
    defaultText: '1',
    unit: 'times',
    description:
      "How many times a job may be put back after its pod stopped renewing its lock before it fails as stalled (BullMQ's `maxStalledCount`); a drain or a second signal hands jobs back without counting.",
  },
  {
    env: 'JOB_PROGRESS_INTERVAL_MS',
    flag: 'job-progress-interval-ms',
    defaultText: '500',
    unit: 'ms',
    description:
      'Least time between two `job.updateProgress` writes of one job (the last value is never lost).',
  },
  {
    env: 'JOB_KEEP_LOGS',
    flag: 'job-keep-logs',
    defaultText: '1000',
    unit: 'lines per job',
    description:
      "The job's output lines kept in BullMQ's job log (`job.log`) when the job's own `keepLogs` option is unset; 0 writes none.",
  },
  {
    env: 'QUEUE_REFRESH_INTERVAL_MS',
    flag: 'queue-refresh-interval-ms',
    defaultText: '2000',
    unit: 'ms',
    description:
      'How often the queue counts, worker count and Redis latency of `/debug/queue` are read from Redis.',
  },
  {
    env: 'EVENTS_MAX_STREAMS',
    flag: 'events-max-streams',
    defaultText: '64',
    unit: 'streams',
    description:
      '`/debug/events` streams open at once; one more is answered 503 `TOO_MANY_STREAMS`. A stream whose client reads too slowly is closed (it reconnects with `Last-Event-ID`).',
  },
  {
    env: 'EVENTS_BUFFER_SIZE',
    flag: 'events-buffer-size',
    defaultText: '2000',
    unit: 'events',
    description:
      'Events kept for `/debug/events` clients that reconnect with `Last-Event-ID` (while a stream is open and 5 minutes after the last closed).',
  },
  {
    env: 'COMFYUI_URL',
    flag: 'comfyui-url',
    defaultText: 'http://127.0.0.1:8188',
    unit: 'http(s) URL',
    description:
      'ComfyUI for `JOB_RUNNER=comfyui`: prompts are submitted there and followed over its websocket. The pod takes no job while it is unreachable (`/ready` says so).',
  },
  {
    env: 'COMFYUI_DIR',
    flag: 'comfyui-dir',
    defaultText: 'unset',
    unit: 'path',
    description:
      "ComfyUI's base directory (the one with `output/`, `temp/`, `input/`), when this container can read it: output files are copied from there (or recorded in place when `ARTIFACTS_DIR` is inside it) instead of downloaded through `/view`.",
  },
  {
    env: 'COMFYUI_REQUEST_TIMEOUT_MS',
    flag: 'comfyui-request-timeout-ms',
    defaultText: '30000',
    unit: 'ms',
    description: "Bound on each HTTP call to ComfyUI (a download's body excepted).",
  },
  {
    env: 'COMFYUI_SILENCE_MS',
    flag: 'comfyui-silence-ms',
    defaultText: '10000',
    unit: 'ms',
    description:
      "With no websocket event for this long while a prompt runs, the agent reads ComfyUI's `/history` and `/queue` to learn where the prompt is (a lost event or a socket that died quietly).",
  },
];

export type ConfigResult = { ok: true; config: AgentConfig } | { ok: false; errors: string[] };

type Raw = Record<string, string | undefined>;

const intIn = (min: number, max: number) =>
  z
    .string()
    .regex(/^[+-]?\d+$/, 'must be a whole number')
    .transform(Number)
    .pipe(z.number().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`));

const bool = z
  .string()
  .transform((s) => s.toLowerCase())
  .pipe(
    z.enum(
      ['1', '0', 'true', 'false', 'yes', 'no', 'on', 'off'],
      'must be true or false (1/0, yes/no, on/off)',
    ),
  )
  .transform((s) => ['1', 'true', 'yes', 'on'].includes(s));

const oneOf = <T extends readonly [string, ...string[]]>(values: T) =>
  z.enum(values, `must be one of ${values.join(', ')}`);

const mockFault = z.string().transform((s, ctx): MockFault => {
  const m = /^([a-z]+)(?:@(\d+))?$/.exec(s.toLowerCase());
  const kind = m?.[1] as MockFaultKind | undefined;
  if (!m || !kind || !(MOCK_FAULT_KINDS as readonly string[]).includes(kind)) {
    ctx.addIssue({
      code: 'custom',
      message: `must be one of ${MOCK_FAULT_KINDS.join(', ')}, optionally followed by @N`,
    });
    return z.NEVER;
  }
  return m[2] === undefined ? { kind } : { kind, afterSamples: Number(m[2]) };
});

const mockModel = z.string().transform((s, ctx) => {
  const model = findMockModel(s);
  if (!model) {
    ctx.addIssue({
      code: 'custom',
      message: `unknown model; known: ${MOCK_GPU_MODELS.map((m) => m.aliases[0]).join(', ')}`,
    });
    return z.NEVER;
  }
  return model.name;
});

const printable = (max: number) =>
  z
    .string()
    .max(max, `must be at most ${max} characters`)
    .regex(/^[\x21-\x7e]+$/, 'must be visible ASCII characters without spaces');

/** A queue name or key prefix: BullMQ joins them with `:`, so they must not contain one. */
const queueKeyPart = z
  .string()
  .max(200, 'must be at most 200 characters')
  .regex(/^[\x21-\x39\x3b-\x7e]+$/, 'must be visible ASCII characters without spaces or ":"');

/** Splits argv at `--`: agent flags before, the workload command after. */
export function splitArgv(argv: readonly string[]): { agentArgs: string[]; workload: string[] } {
  const i = argv.indexOf('--');
  if (i === -1) return { agentArgs: [...argv], workload: [] };
  return { agentArgs: argv.slice(0, i), workload: argv.slice(i + 1) };
}

/**
 * Builds the config from `argv` (without node and script) and `env`. Never throws and never exits:
 * the caller prints the errors and exits 2.
 */
export function loadConfig(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  hostname = os.hostname(),
): ConfigResult {
  const errors: string[] = [];
  const { agentArgs, workload } = splitArgv(argv);

  const options: Record<string, { type: 'string' | 'boolean' }> = {};
  for (const s of SETTINGS) options[s.flag] = { type: s.boolean ? 'boolean' : 'string' };
  const parsed = parseArgs({ args: agentArgs, options, strict: false, allowPositionals: true, tokens: true });
  const known = new Set(SETTINGS.map((s) => s.flag));
  for (const t of parsed.tokens ?? []) {
    if (t.kind === 'option' && !known.has(t.name)) errors.push(`${t.rawName}: unknown flag (see --help)`);
    else if (
      t.kind === 'option' &&
      SETTINGS.find((s) => s.flag === t.name)?.boolean &&
      t.value !== undefined
    ) {
      errors.push(
        `${t.rawName}: a switch takes no value (use ${t.rawName.split('=')[0]} alone, or the environment variable)`,
      );
    } else if (
      t.kind === 'option' &&
      !SETTINGS.find((s) => s.flag === t.name)?.boolean &&
      t.value === undefined
    ) {
      errors.push(`${t.rawName}: needs a value`);
    } else if (t.kind === 'positional') {
      errors.push(`unexpected argument "${t.value}": put the workload command after --`);
    }
  }

  const raw: Raw = {};
  for (const s of SETTINGS) {
    const flagValue = parsed.values[s.flag];
    // A valued flag given bare parses as `true`; it was reported above and must not be read as a value.
    const fromFlag = typeof flagValue === 'boolean' ? (s.boolean ? String(flagValue) : undefined) : flagValue;
    const fromEnv = env[s.env];
    const value = blankToUndefined(fromFlag) ?? blankToUndefined(fromEnv);
    raw[s.env] = value;
  }

  const get = <T>(key: string, schema: z.ZodType<T, string>, fallback: string): T | undefined => {
    const value = raw[key] ?? fallback;
    const r = schema.safeParse(value.trim());
    if (r.success) return r.data;
    const shown = SETTINGS.find((s) => s.env === key)?.secret ? '(hidden)' : JSON.stringify(value);
    for (const issue of r.error.issues) errors.push(`${key}: ${issue.message} (got ${shown})`);
    return undefined;
  };

  const port = get('PORT', intIn(0, 65535), '8080');
  const host = get(
    'HOST',
    z
      .string()
      .refine(
        (h) => isIP(h) !== 0 || /^(?=.*[a-z])[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/i.test(h),
        'must be an IP address or a host name',
      ),
    '0.0.0.0',
  );
  const podId = get(
    raw.POD_ID === undefined && blankToUndefined(env.RUNPOD_POD_ID) !== undefined
      ? 'RUNPOD_POD_ID'
      : 'POD_ID',
    printable(253),
    blankToUndefined(env.RUNPOD_POD_ID) ?? (hostname || 'unknown-pod'),
  );
  const nodeEnv = get('NODE_ENV', printable(64), 'development');
  const mockGpu = get('MOCK_GPU', bool, 'false');
  const gpuBackend = get('GPU_BACKEND', oneOf(GPU_BACKEND_CHOICES), 'auto');
  const gpuPollIntervalMs = get('GPU_POLL_INTERVAL_MS', intIn(50, 3_600_000), '1000');
  const gpuSampleTimeoutMs = get('GPU_SAMPLE_TIMEOUT_MS', intIn(10, 600_000), '3000');
  const defaultStale =
    gpuPollIntervalMs !== undefined && gpuSampleTimeoutMs !== undefined
      ? String(Math.max(3 * gpuPollIntervalMs, gpuPollIntervalMs + gpuSampleTimeoutMs))
      : '3000';
  const gpuStaleAfterMs = get('GPU_STALE_AFTER_MS', intIn(100, 86_400_000), defaultStale);
  const gpuHistorySize = get('GPU_HISTORY_SIZE', intIn(1, 100_000), '600');
  const nvmlLibraryPath = get('NVML_LIBRARY_PATH', z.string().min(1), 'libnvidia-ml.so.1');
  const nvidiaSmiPath = get('NVIDIA_SMI_PATH', z.string().min(1), 'nvidia-smi');
  const nvidiaSmiDetailIntervalMs = get('NVIDIA_SMI_DETAIL_INTERVAL_MS', intIn(0, 86_400_000), '30000');
  const dcgmiPath = get('DCGMI_PATH', z.string().min(1), 'dcgmi');
  const dcgmHost = raw.DCGM_HOST === undefined ? undefined : get('DCGM_HOST', printable(256), '');
  const dcgmExporterUrl =
    raw.DCGM_EXPORTER_URL === undefined
      ? undefined
      : get(
          'DCGM_EXPORTER_URL',
          z
            .string()
            .refine(
              (u) => URL.canParse(u) && /^https?:$/.test(new URL(u).protocol),
              'must be an http(s) URL',
            ),
          '',
        );
  const mockGpuCount = get('MOCK_GPU_COUNT', intIn(1, 64), '1');
  const mockGpuModel = get('MOCK_GPU_MODEL', mockModel, MOCK_GPU_MODELS[0]?.name ?? '');
  const mockGpuSeed = get('MOCK_GPU_SEED', intIn(0, 2 ** 32 - 1), '1');
  const mockGpuFault = get('MOCK_GPU_FAULT', mockFault, 'none');
  const logLevel = get('LOG_LEVEL', oneOf(LOG_LEVELS), 'info');
  const logBufferLines = get('LOG_BUFFER_LINES', intIn(10, 1_000_000), '5000');
  const logBufferBytes = get('LOG_BUFFER_BYTES', intIn(65_536, 1_073_741_824), '16777216');
  const debugToken = raw.DEBUG_TOKEN === undefined ? undefined : get('DEBUG_TOKEN', printable(512), '');
  const drainTimeoutMs = get('DRAIN_TIMEOUT_MS', intIn(0, 3_600_000), '25000');
  const workloadExitLingerMs = get('WORKLOAD_EXIT_LINGER_MS', intIn(0, 3_600_000), '0');
  const artifactsDir = get(
    'ARTIFACTS_DIR',
    z
      .string()
      .min(1)
      .transform((p) => path.resolve(p)),
    path.join(os.tmpdir(), 'gpu-pod-agent', 'artifacts'),
  );
  const jobHistorySize = get('JOB_HISTORY_SIZE', intIn(1, 100_000), '100');
  const requestIdFormat = get('REQUEST_ID_FORMAT', oneOf(['uuid', 'token'] as const), 'uuid');
  const gpuMetricsDcgmCompat = get('GPU_METRICS_DCGM_COMPAT', bool, 'false');
  const gpuMetricsMaxProcesses = get('GPU_METRICS_MAX_PROCESSES', intIn(0, 1000), '10');
  const hostRefreshIntervalMs = get('HOST_REFRESH_INTERVAL_MS', intIn(100, 3_600_000), '5000');
  const redisUrl =
    raw.REDIS_URL === undefined
      ? undefined
      : get(
          'REDIS_URL',
          z
            .string()
            .refine(
              (u) => URL.canParse(u) && /^rediss?:$/.test(new URL(u).protocol) && new URL(u).hostname !== '',
              'must be a redis:// or rediss:// URL with a host',
            ),
          '',
        );
  const queueName = get('QUEUE_NAME', queueKeyPart, 'jobs');
  const queuePrefix = get('QUEUE_PREFIX', queueKeyPart, 'bull');
  const jobCommand = raw.JOB_COMMAND === undefined ? undefined : get('JOB_COMMAND', z.string().min(1), '');
  const jobRunner = get('JOB_RUNNER', oneOf(JOB_RUNNER_CHOICES), jobCommand ? 'command' : 'none');
  const workerConcurrency = get('WORKER_CONCURRENCY', intIn(1, 256), '1');
  const jobLockDurationMs = get('JOB_LOCK_DURATION_MS', intIn(1000, 3_600_000), '30000');
  const jobStalledIntervalMs = get('JOB_STALLED_INTERVAL_MS', intIn(1000, 3_600_000), '30000');
  const jobMaxStalledCount = get('JOB_MAX_STALLED_COUNT', intIn(0, 1000), '1');
  const jobProgressIntervalMs = get('JOB_PROGRESS_INTERVAL_MS', intIn(0, 600_000), '500');
  const jobKeepLogs = get('JOB_KEEP_LOGS', intIn(0, 1_000_000), '1000');
  const queueRefreshIntervalMs = get('QUEUE_REFRESH_INTERVAL_MS', intIn(100, 3_600_000), '2000');
  const comfyuiUrl = get(
    'COMFYUI_URL',
    z
      .string()
      .refine(
        (u) => URL.canParse(u) && /^https?:$/.test(new URL(u).protocol) && new URL(u).hostname !== '',
        'must be an http(s) URL with a host',
      ),
    'http://127.0.0.1:8188',
  );
  const comfyuiDir =
    raw.COMFYUI_DIR === undefined
      ? undefined
      : get(
          'COMFYUI_DIR',
          z
            .string()
            .min(1)
            .transform((p) => path.resolve(p)),
          '',
        );
  const tracing = tracingFromEnv(env);
  const eventsMaxStreams = get('EVENTS_MAX_STREAMS', intIn(1, 10_000), '64');
  const eventsBufferSize = get('EVENTS_BUFFER_SIZE', intIn(10, 1_000_000), '2000');
  const comfyuiRequestTimeoutMs = get('COMFYUI_REQUEST_TIMEOUT_MS', intIn(100, 600_000), '30000');
  const comfyuiSilenceMs = get('COMFYUI_SILENCE_MS', intIn(200, 3_600_000), '10000');

  if (mockGpu && gpuBackend !== undefined && gpuBackend !== 'auto' && gpuBackend !== 'mock') {
    errors.push(`MOCK_GPU: conflicts with GPU_BACKEND=${gpuBackend} (unset one of them)`);
  }
  if (
    gpuSampleTimeoutMs !== undefined &&
    gpuStaleAfterMs !== undefined &&
    raw.GPU_STALE_AFTER_MS !== undefined &&
    gpuStaleAfterMs < gpuSampleTimeoutMs
  ) {
    errors.push('GPU_STALE_AFTER_MS: must not be shorter than GPU_SAMPLE_TIMEOUT_MS');
  }
  if (workload.length === 0 && argv.includes('--')) errors.push('--: no workload command after it');
  if (jobRunner === 'command' && !jobCommand) errors.push('JOB_RUNNER: `command` needs JOB_COMMAND');
  if (jobRunner !== undefined && raw.JOB_RUNNER !== undefined && raw.REDIS_URL === undefined) {
    errors.push('JOB_RUNNER: needs REDIS_URL (the queue to take jobs from)');
  } else if (jobCommand && raw.REDIS_URL === undefined) {
    errors.push('JOB_COMMAND: needs REDIS_URL (the queue to take jobs from)');
  }
  if (jobCommand && jobRunner === 'none' && raw.JOB_RUNNER !== undefined) {
    errors.push('JOB_COMMAND: set, but JOB_RUNNER=none never runs it');
  }

  if (errors.length > 0) return { ok: false, errors };
  const backend = mockGpu ? 'mock' : (gpuBackend as GpuBackendChoice);
  return {
    ok: true,
    config: {
      port: port as number,
      host: host as string,
      podId: podId as string,
      nodeEnv: nodeEnv as string,
      production: nodeEnv === 'production',
      mockGpu: backend === 'mock',
      gpuBackend: backend,
      gpuPollIntervalMs: gpuPollIntervalMs as number,
      gpuSampleTimeoutMs: gpuSampleTimeoutMs as number,
      gpuStaleAfterMs: gpuStaleAfterMs as number,
      gpuHistorySize: gpuHistorySize as number,
      nvmlLibraryPath: nvmlLibraryPath as string,
      nvidiaSmiPath: nvidiaSmiPath as string,
      nvidiaSmiDetailIntervalMs: nvidiaSmiDetailIntervalMs as number,
      dcgmiPath: dcgmiPath as string,
      dcgmHost,
      dcgmExporterUrl,
      mockGpuCount: mockGpuCount as number,
      mockGpuModel: mockGpuModel as string,
      mockGpuSeed: mockGpuSeed as number,
      mockGpuFault: mockGpuFault as MockFault,
      logLevel: logLevel as LogLevel,
      logBufferLines: logBufferLines as number,
      logBufferBytes: logBufferBytes as number,
      debugToken: debugToken || undefined,
      drainTimeoutMs: drainTimeoutMs as number,
      workloadExitLingerMs: workloadExitLingerMs as number,
      artifactsDir: artifactsDir as string,
      jobHistorySize: jobHistorySize as number,
      requestIdFormat: requestIdFormat as 'uuid' | 'token',
      gpuMetricsDcgmCompat: gpuMetricsDcgmCompat as boolean,
      gpuMetricsMaxProcesses: gpuMetricsMaxProcesses as number,
      hostRefreshIntervalMs: hostRefreshIntervalMs as number,
      redisUrl,
      queueName: queueName as string,
      queuePrefix: queuePrefix as string,
      jobRunner: jobRunner as JobRunnerChoice,
      jobCommand,
      workerConcurrency: workerConcurrency as number,
      jobLockDurationMs: jobLockDurationMs as number,
      jobStalledIntervalMs: jobStalledIntervalMs as number,
      jobMaxStalledCount: jobMaxStalledCount as number,
      jobProgressIntervalMs: jobProgressIntervalMs as number,
      jobKeepLogs: jobKeepLogs as number,
      queueRefreshIntervalMs: queueRefreshIntervalMs as number,
      comfyuiUrl: comfyuiUrl as string,
      comfyuiDir,
      comfyuiRequestTimeoutMs: comfyuiRequestTimeoutMs as number,
      comfyuiSilenceMs: comfyuiSilenceMs as number,
      tracing,
      eventsMaxStreams: eventsMaxStreams as number,
      eventsBufferSize: eventsBufferSize as number,
      workload,
    },
  };
}

/**
 * Traces are exported when an OTLP endpoint or a trace exporter is named in the standard variables,
 * unless `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`. The SDK reads the rest itself.
 */
export function tracingFromEnv(env: NodeJS.ProcessEnv): { enabled: boolean; reason: string } {
  const v = (k: string): string | undefined => blankToUndefined(env[k])?.trim();
  if (v('OTEL_SDK_DISABLED')?.toLowerCase() === 'true')
    return { enabled: false, reason: 'OTEL_SDK_DISABLED=true' };
  const exporter = v('OTEL_TRACES_EXPORTER');
  if (exporter === 'none') return { enabled: false, reason: 'OTEL_TRACES_EXPORTER=none' };
  const endpoint = v('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT') ?? v('OTEL_EXPORTER_OTLP_ENDPOINT');
  if (endpoint) return { enabled: true, reason: `OTLP endpoint ${redactUrl(endpoint)}` };
  if (exporter) return { enabled: true, reason: `OTEL_TRACES_EXPORTER=${exporter}` };
  return { enabled: false, reason: 'no OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_TRACES_EXPORTER' };
}

function blankToUndefined(v: string | undefined): string | undefined {
  return v === undefined || v.trim() === '' ? undefined : v;
}

/** The config as `/debug/config` shows it: secrets replaced, keys in snake_case. */
export function redactedConfig(config: AgentConfig): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(config)) {
    out[k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)] = v;
  }
  out.debug_token = config.debugToken === undefined ? null : '[redacted]';
  out.redis_url = config.redisUrl === undefined ? null : redactUrl(config.redisUrl);
  return out;
}

/** `--help` text, generated from SETTINGS so it cannot drift from the code. */
export function helpText(): string {
  const lines = [
    'Usage: gpu-pod-agent [flags] [-- workload command...]',
    '       gpu-pod-agent status [--url URL] [--token T] [--watch [S]] [--json]   (see status --help)',
    '',
    'Runs as a sidecar, or with `-- cmd` as the entrypoint that supervises the workload.',
    'Every flag has an environment variable; a flag wins over the variable.',
    '',
  ];
  for (const s of SETTINGS) {
    lines.push(
      `  --${s.flag}${s.boolean ? '' : ' <value>'}  (${s.env}, default ${s.defaultText.replace(/`/g, '')})`,
    );
    lines.push(`      ${s.description.replace(/`/g, '')}`);
  }
  lines.push('', '  --help     this text', '  --version  print the version');
  return lines.join('\n');
}

/** A URL with its password replaced, for logs and views. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = 'redacted';
    return u.toString();
  } catch {
    return '[unparseable URL]';
  }
}
