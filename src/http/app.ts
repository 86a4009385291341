import express from 'express';
import type { ErrorRequestHandler, NextFunction, Request, RequestHandler, Response } from 'express';
import type { Logger } from 'pino';
import type { ArtifactStore } from '../artifacts/artifact-store.js';
import type { Tracing } from '../tracing/otel.js';
import { UnsafePathError, checkRelativeName } from '../artifacts/safe-path.js';
import { LOG_LEVELS } from '../config.js';
import type { LogLevel } from '../config.js';
import type { HostSnapshot } from '../host/host-store.js';
import { LEVEL_VALUES } from '../logging/levels.js';
import type { LevelName } from '../logging/levels.js';
import type { LogRing } from '../logging/log-ring.js';
import { AgentMetrics } from '../metrics/registry.js';
import { buildArtifactsView } from '../views/artifacts.js';
import { buildGpuView, nvidiaSmiDetailOf } from '../views/gpu.js';
import { toNodeNvidiaSmiShape } from '../../gpu/index.js';
import { buildMemoryView } from '../views/memory.js';
import { readiness, statusJson, workloadView } from '../views/status.js';
import type { StatusDeps } from '../views/status.js';
import { buildWorkflowView } from '../views/workflow.js';
import { bearerChecker } from './auth.js';
import { debugPage } from './debug-page.js';
import { HttpError, errorBody } from './errors.js';
import type { ErrorCode } from './error-codes.js';
import { cappedInt, idParam, oneOf, timeParam, traceIdParam } from './query.js';
import { BodyCache } from './body-cache.js';
import { requestContext } from './request-context.js';

export interface AppDeps extends StatusDeps {
  now: () => number;
  /** Spans per request when tracing is on. */
  tracing?: Tracing;
  /** `GET /debug/events`. */
  events?: { handler: (req: Request, res: Response) => void };
  logger: Logger;
  logRing: LogRing;
  artifacts: ArtifactStore;
  host: () => HostSnapshot;
  metrics: AgentMetrics;
  /** Effective configuration with secrets redacted. */
  configView: () => Record<string, unknown>;
  getLogLevel: () => string;
  setLogLevel: (level: LogLevel) => void;
  debugToken: string | undefined;
  production: boolean;
  requestIdFormat: 'uuid' | 'token';
  /** Cancels a job this pod runs; undefined unless the pod is a queue worker. */
  cancelJob?: (jobId: string, reason: string) => boolean;
  /** Counts answered requests for the per-minute summary. */
  onResponse?: (status: number) => void;
}

/** Encoded `/debug/logs` answers kept for repeated queries: how many, and the largest kept. */
const LOG_BODY_CACHE = { entries: 2, maxBytes: 512 * 1024 };

/** Default and maximum of `/debug/logs?lines=`; the buffer size caps it further. */
export const LOG_LINES_DEFAULT = 100;

type Method = 'get' | 'post';

/** Paths of the artifact download route, for its 405 answers. */
const ARTIFACT_FILE = /^\/debug\/artifacts\/[^/]+\/./;
/** Paths of the job cancel route, likewise. */
const JOB_CANCEL = /^\/debug\/queue\/jobs\/[^/]+\/cancel$/;

/**
 * Builds the HTTP app; it does not listen. Handlers only read stores: no hardware, no Redis, no file
 * reads on the hot path (artifact downloads excepted, which stream the file asked for).
 */
export function createApp(deps: AppDeps): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.set('query parser', 'simple');
  // Routes match case-sensitively, as the token check does: /DEBUG/config must not be a way around it.
  app.set('case sensitive routing', true);

  app.use(requestContext(deps.requestIdFormat, observer(deps), deps.tracing));

  const checkToken = deps.debugToken ? bearerChecker(deps.debugToken) : undefined;
  /** Throws the 400 or 401 a request gets before any route answers it. */
  const admit = (req: Request, tokenFree = false): void => {
    if (req.ctx.invalidRequestId !== undefined) {
      throw new HttpError(400, 'INVALID_REQUEST_ID', 'x-request-id is not a valid request id', {
        header: 'x-request-id',
        value: req.ctx.invalidRequestId.slice(0, 64),
      });
    }
    if (checkToken && !tokenFree && isDebugPath(req.path) && !checkToken(req.headers.authorization)) {
      throw new HttpError(401, 'UNAUTHORIZED', 'a valid debug token is required', null, {
        'WWW-Authenticate': 'Bearer realm="gpu-pod-agent"',
      });
    }
  };

  // Methods each path takes, for 405 answers. One fallback answers those for every route, and the
  // admission check runs inside each route's first handler: every layer a request walks costs time.
  const allowed = new Map<string, Method[]>();
  const route = (
    methods: Method[],
    paths: string[],
    first: RequestHandler,
    ...rest: RequestHandler[]
  ): void => {
    const admitted: RequestHandler = (req, res, next) => {
      admit(req);
      return first(req, res, next);
    };
    for (const path of paths) {
      for (const m of methods) app[m](path, admitted, ...rest);
      allowed.set(path, [...(allowed.get(path) ?? []), ...methods]);
    }
  };

  if (deps.events) route(['get'], ['/debug/events'], deps.events.handler);

  // The live page. A browser opening it cannot send a bearer header, so it loads without the token;
  // it holds nothing of the pod and asks for the token before it reads any of the guarded endpoints.
  app.get('/debug/', (req, res) => {
    admit(req, true);
    const page = debugPage();
    res.setHeader('Content-Security-Policy', page.csp);
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Referrer-Policy', 'no-referrer');
    noStore(res).type('html').send(page.html);
  });
  allowed.set('/debug', ['get']);

  route(['get'], ['/debug/status'], (_req, res) => {
    noStore(res).type('application/json').send(statusJson(deps, deps.now()));
  });

  route(['get'], ['/metrics'], async (req, res) => {
    // Prometheus asks for OpenMetrics first when it wants exemplars; everyone else gets the text format.
    const accept = req.headers.accept ?? '';
    const format = accept.includes('application/openmetrics-text') ? 'openmetrics' : 'prometheus';
    const body = await deps.metrics.render(format);
    res.setHeader('Content-Type', AgentMetrics.contentType(format));
    res.send(body);
  });

  route(['get'], ['/health', '/healthz'], (_req, res) => {
    res.json({
      status: 'ok',
      uptime_s: Math.floor((deps.now() - deps.startedAt) / 1000),
      started_at: new Date(deps.startedAt).toISOString(),
      version: deps.version,
    });
  });

  route(['get'], ['/ready', '/readyz'], (_req, res) => {
    const r = readiness(deps, deps.now());
    res
      .status(r.status === 'ok' ? 200 : 503)
      .json({ status: r.status, checks: r.checks, version: deps.version });
  });

  route(['get'], ['/debug/gpu'], (req, res) => {
    const format = oneOf(req, 'format', ['agent', 'node-nvidia-smi'] as const, 'agent');
    const history = oneOf(req, 'history', ['true', 'false', '1', '0'] as const, 'false');
    if (format === 'node-nvidia-smi') {
      // node-nvidia-smi's JSON, built from the newest `-q -x` report the backend took: no nvidia-smi
      // run happens for the request.
      const detail = nvidiaSmiDetailOf(deps.gpu.latest());
      if (!detail) {
        throw new HttpError(
          404,
          'DETAIL_NOT_AVAILABLE',
          `the ${deps.gpu.backend} backend takes no nvidia-smi report`,
          {
            backend: deps.gpu.backend,
          },
        );
      }
      noStore(res).json(toNodeNvidiaSmiShape(detail.xml));
      return;
    }
    noStore(res).json(buildGpuView(deps.gpu, deps.now(), history === 'true' || history === '1'));
  });

  route(['get'], ['/debug/workflow'], (req, res) => {
    const asked = idParam(req, 'job_id');
    const job = asked !== undefined ? deps.jobs.get(asked) : deps.jobs.latest();
    if (asked !== undefined && !job) throw jobNotFound(asked);
    const wf = job ? deps.workflows.get(job.id) : undefined;
    noStore(res).json(buildWorkflowView(wf, job?.id ?? null, job?.state ?? null, deps.now()));
  });

  // Pollers ask for the same tail again and again; between two records the answer is the same bytes.
  const logBodies = new BodyCache(LOG_BODY_CACHE);
  route(['get'], ['/debug/logs'], (req, res) => {
    const cap = deps.logRing.capacity;
    const limit = cappedInt(req, 'lines', { min: 1, cap, fallback: Math.min(LOG_LINES_DEFAULT, cap) });
    const level = oneOf(req, 'level', Object.keys(LEVEL_VALUES) as LevelName[], 'trace');
    const jobId = idParam(req, 'job_id');
    const traceId = traceIdParam(req, 'trace_id');
    const since = timeParam(req, 'since');
    const key = `${limit}|${level}|${jobId ?? ''}|${traceId ?? ''}|${since ?? ''}`;
    let body = logBodies.get(key, deps.logRing.version);
    if (!body) {
      const entries = deps.logRing.query({ limit, minLevel: LEVEL_VALUES[level], jobId, traceId, since });
      // Stored lines are already JSON: join them rather than parse and re-encode.
      body = Buffer.from(
        `{"count":${entries.length},"limit":${limit},"max_lines":${cap},"level":"${level}",` +
          `"dropped_total":${deps.logRing.dropped},"records":[${entries.map((e) => e.line).join(',')}]}`,
      );
      logBodies.set(key, deps.logRing.version, body);
    }
    noStore(res).type('application/json').send(body);
  });

  route(['get'], ['/debug/queue'], (_req, res) => {
    noStore(res).json(deps.queue.snapshot(deps.now()));
  });

  route(['get'], ['/debug/memory'], (_req, res) => {
    noStore(res).json(buildMemoryView(deps.host(), deps.gpu, deps.now()));
  });

  route(['get'], ['/debug/artifacts'], (req, res) => {
    const asked = idParam(req, 'job_id');
    const job = asked !== undefined ? deps.jobs.get(asked) : deps.jobs.latest();
    const jobId = asked ?? job?.id ?? null;
    const list = jobId === null ? [] : deps.artifacts.list(jobId);
    if (asked !== undefined && !job && !list) throw jobNotFound(asked);
    noStore(res).json(buildArtifactsView(jobId, list ?? []));
  });

  route(['get'], ['/debug/artifacts/:jobId/*name'], async (req, res) => {
    const jobId = req.params.jobId as string;
    const segments = (req.params as unknown as { name: string[] }).name;
    const name = segments.join('/');
    try {
      checkRelativeName(name);
    } catch (err) {
      throw invalidArtifactPath(err);
    }
    const artifact = deps.artifacts.find(jobId, name);
    if (!artifact) {
      throw new HttpError(404, 'ARTIFACT_NOT_FOUND', `job ${jobId} has no artifact named ${name}`, {
        job_id: jobId,
        name,
      });
    }
    let file: string;
    try {
      file = await deps.artifacts.pathOf(artifact);
    } catch (err) {
      if (err instanceof UnsafePathError && err.reason === 'missing') {
        throw new HttpError(404, 'ARTIFACT_NOT_FOUND', 'the artifact file no longer exists', {
          job_id: jobId,
          name,
        });
      }
      throw invalidArtifactPath(err);
    }
    res.setHeader('Content-Type', artifact.contentType);
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader(
      'Content-Disposition',
      `attachment; filename="${encodeURIComponent(name.split('/').pop() ?? name)}"`,
    );
    await new Promise<void>((resolve, reject) => {
      // no-store like every debug answer: a shared cache must not keep what needed the token.
      res.setHeader('Cache-Control', 'no-store');
      res.sendFile(
        file,
        { dotfiles: 'allow', etag: false, lastModified: false, cacheControl: false },
        // A client that hangs up mid-download is no failure of the agent's.
        (err) =>
          err && (err as NodeJS.ErrnoException).code !== 'ECONNABORTED' && !res.destroyed
            ? reject(err)
            : resolve(),
      );
    });
  });

  route(['get'], ['/'], (_req, res) => {
    res.json({
      service: 'gpu-pod-agent',
      version: deps.version,
      routes: [
        '/debug/',
        '/health',
        '/ready',
        '/metrics',
        '/debug/status',
        '/debug/gpu',
        '/debug/workflow',
        '/debug/logs',
        '/debug/queue',
        '/debug/memory',
        '/debug/artifacts',
        ...(configRoutesOn(deps)
          ? ['/debug/config', 'POST /debug/log-level', 'POST /debug/queue/jobs/{job_id}/cancel']
          : []),
      ],
    });
  });

  route(['get'], ['/debug/workload'], (_req, res) => {
    noStore(res).json(workloadView(deps.workload()));
  });

  if (configRoutesOn(deps)) {
    route(['get'], ['/debug/config'], (_req, res) => {
      noStore(res).json(deps.configView());
    });
    route(
      ['post'],
      ['/debug/log-level'],
      requireJson,
      express.json({ limit: '4kb', strict: false, type: () => true }),
      (req, res) => {
        const body: unknown = req.body;
        const level =
          body !== null && typeof body === 'object' && !Array.isArray(body)
            ? (body as Record<string, unknown>).level
            : undefined;
        if (typeof level !== 'string' || !(LOG_LEVELS as readonly string[]).includes(level)) {
          throw new HttpError(
            400,
            'INVALID_BODY',
            `body must be {"level": one of ${LOG_LEVELS.join(', ')}}`,
            {
              field: 'level',
              allowed: LOG_LEVELS,
            },
          );
        }
        const previous = deps.getLogLevel();
        deps.setLogLevel(level as LogLevel);
        requestLogger(deps.logger, req).warn({ data: { previous, level } }, 'log level changed');
        noStore(res).json({ level, previous });
      },
    );
    route(['post'], ['/debug/queue/jobs/:jobId/cancel'], (req, res) => {
      const jobId = req.params.jobId as string;
      const reason = reasonParam(req) ?? 'canceled through the debug API';
      if (!deps.cancelJob) {
        throw new HttpError(
          409,
          'NOT_A_WORKER',
          'this pod runs no queue worker (JOB_RUNNER=none or no REDIS_URL)',
        );
      }
      if (!deps.cancelJob(jobId, reason)) {
        throw new HttpError(
          404,
          'JOB_NOT_RUNNING',
          `job ${truncate(jobId, 200)} is not running on this pod`,
          {
            job_id: jobId,
          },
        );
      }
      requestLogger(deps.logger, req).warn({ job_id: jobId, data: { reason } }, 'job cancel requested');
      noStore(res).status(202).json({ job_id: jobId, canceling: true, reason });
    });
  }

  app.use((req: Request, res: Response, next: NextFunction) => {
    admit(req);
    const path = req.path.length > 1 ? req.path.replace(/\/+$/, '') : req.path;
    const methods =
      allowed.get(path) ??
      (ARTIFACT_FILE.test(path)
        ? ['get' as const]
        : JOB_CANCEL.test(path) && configRoutesOn(deps)
          ? ['post' as const]
          : undefined);
    if (methods) {
      methodNotAllowed(methods)(req, res, next);
      return;
    }
    next(new HttpError(404, 'NOT_FOUND', `no route for ${req.method} ${truncate(req.path, 200)}`));
  });
  app.use(errorHandler(deps.logger));
  return app;
}

/** A logger whose records carry the request's ids; made only when a handler logs. */
function requestLogger(logger: Logger, req: Request): Logger {
  return logger.child({ request_id: req.ctx.requestId, trace_id: req.ctx.traceId, span_id: req.ctx.spanId });
}

/** `?reason=` of a cancel: 1–500 characters without control characters. */
function reasonParam(req: Request): string | undefined {
  const raw = req.query.reason;
  if (raw === undefined) return undefined;
  // eslint-disable-next-line no-control-regex
  if (typeof raw !== 'string' || raw.length === 0 || raw.length > 500 || /[\x00-\x1f\x7f]/.test(raw)) {
    throw new HttpError(
      400,
      'INVALID_QUERY',
      'query parameter "reason" must be 1–500 characters without control characters',
      {
        parameter: 'reason',
      },
    );
  }
  return raw;
}

function configRoutesOn(deps: Pick<AppDeps, 'production' | 'debugToken'>): boolean {
  return !deps.production || deps.debugToken !== undefined;
}

function isDebugPath(path: string): boolean {
  const p = path.toLowerCase();
  return p === '/debug' || p.startsWith('/debug/');
}

function noStore(res: Response): Response {
  res.setHeader('Cache-Control', 'no-store');
  return res;
}

function truncate(s: string, n: number): string {
  return s.length > n ? `${s.slice(0, n)}…` : s;
}

function jobNotFound(jobId: string): HttpError {
  return new HttpError(404, 'JOB_NOT_FOUND', `no job ${truncate(jobId, 100)} is known`, { job_id: jobId });
}

function invalidArtifactPath(err: unknown): HttpError {
  const reason = err instanceof UnsafePathError ? err.reason : 'invalid';
  return new HttpError(
    400,
    'INVALID_ARTIFACT_PATH',
    err instanceof Error ? err.message : 'invalid artifact path',
    {
      reason,
    },
  );
}

const requireJson: RequestHandler = (req, _res, next) => {
  const type = req.headers['content-type'];
  if (type !== undefined && !/^application\/([\w.+-]+\+)?json\s*(;|$)/i.test(type)) {
    throw new HttpError(415, 'UNSUPPORTED_MEDIA_TYPE', 'the body must be application/json', {
      content_type: req.headers['content-type'] ?? null,
    });
  }
  next();
};

function methodNotAllowed(methods: Method[]): RequestHandler {
  const allow = [
    ...methods.map((m) => m.toUpperCase()),
    ...(methods.includes('get') ? ['HEAD'] : []),
    'OPTIONS',
  ].join(', ');
  return (req, res) => {
    res.setHeader('Allow', allow);
    if (req.method === 'OPTIONS') {
      res.status(204).end();
      return;
    }
    throw new HttpError(405, 'METHOD_NOT_ALLOWED', `${req.method} is not allowed here`, { allow });
  };
}

/** Times each request into the API metrics (templated route, never the raw URL) and a debug record. */
function observer(deps: AppDeps): (req: Request, res: Response) => void {
  return (req, res) => {
    const seconds = (performance.now() - req.ctx.startedAt) / 1000;
    const endpoint = req.route ? String((req.route as { path: unknown }).path) : 'unmatched';
    deps.metrics.observeRequest(
      endpoint,
      req.method,
      res.statusCode,
      seconds,
      req.ctx.span ? req.ctx.traceId : undefined,
    );
    deps.onResponse?.(res.statusCode);
    // 503 is what /ready answers while starting, degraded or draining: a state, not a failure.
    const failed = res.statusCode >= 500 && res.statusCode !== 503;
    if (!failed && !deps.logger.isLevelEnabled('debug')) return;
    const fields = {
      request_id: req.ctx.requestId,
      trace_id: req.ctx.traceId,
      data: {
        method: req.method,
        endpoint,
        status: res.statusCode,
        duration_ms: Math.round(seconds * 1e4) / 10,
      },
    };
    if (failed) deps.logger.error(fields, 'request failed');
    else deps.logger.debug(fields, 'request');
  };
}

/** Any error becomes the documented error body; unexpected ones are a 500 with a log record, never a crash. */
function errorHandler(logger: Logger): ErrorRequestHandler {
  return (err: unknown, req, res, next) => {
    if (res.headersSent) {
      next(err);
      return;
    }
    const ids = { requestId: req.ctx?.requestId, traceId: req.ctx?.traceId };
    let status = 500;
    let code: ErrorCode = 'INTERNAL_ERROR';
    let message = 'internal error';
    let details: unknown = null;
    if (err instanceof HttpError) {
      ({ status, code, message, details } = err);
      for (const [k, v] of Object.entries(err.headers)) res.setHeader(k, v);
    } else {
      const e = err as { status?: unknown; statusCode?: unknown; type?: unknown; message?: unknown };
      const s =
        typeof e.status === 'number' ? e.status : typeof e.statusCode === 'number' ? e.statusCode : 500;
      if (s >= 400 && s < 500) {
        status = s;
        [code, message] =
          e.type === 'entity.parse.failed'
            ? ['INVALID_BODY', 'the body is not valid JSON']
            : e.type === 'entity.too.large' || s === 413
              ? ['PAYLOAD_TOO_LARGE', 'the body is too large']
              : s === 415
                ? ['UNSUPPORTED_MEDIA_TYPE', 'the body encoding or charset is not supported']
                : s === 416
                  ? ['RANGE_NOT_SATISFIABLE', 'the Range asked for lies outside the file']
                  : s === 404
                    ? ['NOT_FOUND', 'not found']
                    : ['BAD_REQUEST', typeof e.message === 'string' ? e.message : 'bad request'];
        if (code === 'NOT_FOUND') status = 404;
      } else {
        logger.error(
          { error: err, request_id: ids.requestId, trace_id: ids.traceId },
          'unhandled error in a request handler',
        );
      }
    }
    // A handler may have set up a file answer (an artifact download) before it failed.
    for (const h of ['Content-Type', 'Content-Disposition', 'Content-Encoding', 'Accept-Ranges', 'ETag'])
      res.removeHeader(h);
    res.status(status).json(errorBody(code, message, ids, details));
  };
}
