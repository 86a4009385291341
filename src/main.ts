import { randomUUID } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import os from 'node:os';
import type http from 'node:http';
import { GpuStore } from '../gpu/index.js';
import type { GpuActivity } from '../gpu/index.js';
import { ArtifactStore } from './artifacts/artifact-store.js';
import { EventHub } from './events/event-hub.js';
import { eventStream } from './http/event-stream.js';
import { ComfyUIRunner } from './comfyui/runner.js';
import { redactedConfig } from './config.js';
import type { AgentConfig } from './config.js';
import { GpuSource } from './gpu-backend.js';
import { settlesWithin } from './deadline.js';
import { exitImmediately } from './hard-exit.js';
import { HostStore, realHostReaders } from './host/host-store.js';
import { createApp } from './http/app.js';
import { closeServer, createServer, listen } from './http/server.js';
import { FINISHED_STATES, JobStore } from './jobs/job-store.js';
import { Lifecycle } from './lifecycle.js';
import { LogRing } from './logging/log-ring.js';
import { createLogger, stdoutSink } from './logging/logger.js';
import type { LineSink, Logger } from './logging/logger.js';
import { AgentMetrics } from './metrics/registry.js';
import { readVersion } from './version.js';
import { CommandRunner } from './queue/command-runner.js';
import type { QueueMonitor } from './queue/queue-monitor.js';
import type { QueueObserver } from './queue/queue-observer.js';
import type { QueueWorker } from './queue/queue-worker.js';
import { NoopRunner } from './queue/runner.js';
import type { JobRunner } from './queue/runner.js';
import { disabledQueue } from './views/queue.js';
import type { QueueView } from './views/queue.js';
import { ATTR, SPAN } from './tracing/attributes.js';
import { SpanKind, Tracing, endSpan } from './tracing/otel.js';
import type { Span } from './tracing/otel.js';
import { WorkflowSpans } from './tracing/workflow-spans.js';
import { readiness, summariesOf } from './views/status.js';
import type { StatusDeps } from './views/status.js';
import { WorkflowStore } from './workflow/workflow-store.js';
import { OrphanReaper } from './workload/orphan-reaper.js';
import { ProgressApplier } from './workload/progress-applier.js';
import { PROTOCOL_PREFIX } from './workload/progress-protocol.js';
import { WorkloadSupervisor, workloadName } from './workload/supervisor.js';

/** How long shutdown waits for artifacts still being hashed. */
const ARTIFACT_SETTLE_MS = 5000;
/** How long the GPU model may take to be known before traces go out without it. */
const GPU_MODEL_WAIT_MS = 10_000;
/** How long a second signal's exit waits for running queue jobs to be handed back. */
const FORCED_HAND_BACK_MS = 500;

/** The queue label of jobs the workload reports without naming a queue. */
export const WORKLOAD_QUEUE = 'workload';

export interface AgentIo {
  env: NodeJS.ProcessEnv;
  out?: LineSink & { close?(timeoutMs: number): Promise<void> };
  /** Installs process signal handlers; tests that embed the agent pass false. */
  handleSignals?: boolean;
  /**
   * Waits for orphaned processes handed to the agent (see src/workload/orphan-reaper.ts).
   * @defaultValue true when the agent is PID 1 (a container started without an init)
   */
  reapOrphans?: boolean;
}

export interface RunningAgent {
  port: number;
  /** Begins the ordered shutdown; resolves with the exit code. Safe to call repeatedly. */
  shutdown(reason: string, signal?: NodeJS.Signals): Promise<number>;
  /** Resolves with the exit code once the agent has stopped for any reason. */
  done: Promise<number>;
  /** A GPU driver call is still stuck in a thread: exit with exitImmediately, not process.exit. */
  hasWedgedThreads(): boolean;
  logger: Logger;
}

/**
 * Starts the agent: config → logs → stores → sources → HTTP → ready, as DESIGN.md orders it. Returns
 * once the port is open.
 */
export async function startAgent(config: AgentConfig, io: AgentIo): Promise<RunningAgent> {
  const startedAt = Date.now();
  const now = (): number => Date.now();
  const version = readVersion();

  // Logs
  const logRing = new LogRing(config.logBufferLines, config.logBufferBytes);
  const out = io.out ?? stdoutSink();
  const rootLogger = createLogger({
    level: config.logLevel,
    service: 'gpu-pod-agent',
    environment: config.nodeEnv,
    podId: config.podId,
    ring: logRing,
    out,
  });
  // Each component logs through a child bound to its `source`; the root itself never logs, so no
  // record carries the key twice.
  const logger = rootLogger.child({ source: 'agent' });
  logger.info({ data: { version, node: process.version, config: redactedConfig(config) } }, 'agent starting');
  if (config.production && !config.debugToken) {
    logger.warn(
      'NODE_ENV=production without DEBUG_TOKEN: /debug/* is open; /debug/config and POST /debug/log-level are off',
    );
  }

  // PID 1 (no tini): orphans are handed to the agent. Set up before anything spawns a child.
  const reaper = (io.reapOrphans ?? process.pid === 1) ? new OrphanReaper({ logger }) : undefined;
  await reaper?.start();

  // Stores
  const lifecycle = new Lifecycle();
  const jobs = new JobStore(config.jobHistorySize, now);
  const workflows = new WorkflowStore(config.jobHistorySize, now);
  await mkdir(config.artifactsDir, { recursive: true });
  const artifacts = new ArtifactStore(config.artifactsDir, config.jobHistorySize, now);
  const host = new HostStore(
    realHostReaders,
    config.hostRefreshIntervalMs,
    rootLogger.child({ source: 'host' }),
    now,
  );

  // Workload (entrypoint mode)
  const applier = new ProgressApplier({
    jobs,
    workflows,
    artifacts,
    logger,
    defaultQueue: WORKLOAD_QUEUE,
    source: 'workload',
  });
  const workload = new WorkloadSupervisor({
    command: config.workload,
    env: {
      ...workloadEnv(io.env),
      // Python buffers stdout into a pipe; progress lines must arrive as they are printed.
      PYTHONUNBUFFERED: io.env.PYTHONUNBUFFERED ?? '1',
      AGENT_PROGRESS_PREFIX: PROTOCOL_PREFIX,
      ARTIFACTS_DIR: config.artifactsDir,
      POD_ID: config.podId,
    },
    logger,
    workloadLogger: rootLogger.child({ source: 'workload' }),
    onEvent: (e) => applier.apply(e),
    context: () => {
      const id = applier.jobId;
      const node = id === undefined ? undefined : workflows.currentNode(id);
      if (id === undefined) return { job_id: id, node_id: undefined };
      // The workload's lines carry its job's trace (the job span's when traced).
      const span = workloadJobSpans.get(id)?.spanContext();
      return {
        job_id: id,
        node_id: node?.id,
        trace_id: span?.traceId ?? jobs.get(id)?.traceId,
        span_id: span?.spanId,
      };
    },
  });

  // GPU source
  const activity = (): GpuActivity => {
    const job = jobs.currentJob();
    if (!job) return { jobActive: false };
    const pid = workload.pid;
    return {
      jobActive: true,
      nodeType: workflows.currentNode(job.id)?.type,
      processes: pid === undefined ? [] : [{ pid, name: workloadName(config.workload) }],
    };
  };
  const gpu = new GpuStore({
    backend: 'none',
    detecting: true,
    staleAfterMs: config.gpuStaleAfterMs,
    historySize: config.gpuHistorySize,
  });
  const gpuSource = new GpuSource(config, gpu, activity, rootLogger.child({ source: 'gpu' }));

  // Traces (only with OTEL_* set): the GPU model joins the resource once the backend has read it.
  const gpuModel = new Promise<string | undefined>((resolve) => {
    const t = setTimeout(() => resolve(undefined), GPU_MODEL_WAIT_MS);
    t.unref();
    const off = gpu.subscribe((e) => {
      if (e.type !== 'sample') return;
      clearTimeout(t);
      off();
      resolve(e.sample.devices[0]?.name);
    });
  });
  const tracing = await Tracing.start({
    enabled: config.tracing.enabled,
    serviceVersion: version,
    podId: config.podId,
    gpuModel,
  });
  if (tracing.enabled) {
    logger.info({ data: { reason: config.tracing.reason } }, 'exporting traces');
    // A failed GPU sample is a span of its own: the trace shows when the driver misbehaved.
    gpu.subscribe((e) => {
      if (e.type !== 'failure') return;
      const end = Date.now();
      const span = tracing.tracer.startSpan(SPAN.gpuSample, {
        startTime: end - e.durationMs,
        attributes: {
          [ATTR.gpuBackend]: gpu.status(end).backend,
          [ATTR.failureCategory]: e.failure.category,
        },
      });
      endSpan(span, { message: e.failure.message, type: e.failure.category });
    });
  }
  const workflowSpans = tracing.enabled ? new WorkflowSpans(tracing, workflows) : undefined;
  // Jobs the supervised workload reports (job.start) get a span too, continuing the traceparent it gave.
  const workloadJobSpans = new Map<string, Span>();
  if (workflowSpans) {
    jobs.subscribe((e) => {
      if (e.job.source !== 'workload') return;
      if (e.type === 'created' || (e.type === 'transition' && e.to === 'active')) {
        const span = tracing.startFromTraceparent(
          SPAN.job(e.job.queue),
          e.job.traceparent,
          SpanKind.INTERNAL,
          {
            [ATTR.jobId]: e.job.id,
            [ATTR.jobQueue]: e.job.queue,
            [ATTR.jobRunner]: 'workload',
          },
        );
        workloadJobSpans.set(e.job.id, span);
        workflowSpans.begin(e.job.id, span);
      } else if (e.type === 'transition' && FINISHED_STATES.has(e.to)) {
        const span = workloadJobSpans.get(e.job.id);
        if (!span) return;
        workloadJobSpans.delete(e.job.id);
        workflowSpans.end(e.job.id);
        span.setAttribute(ATTR.jobStatus, e.to);
        endSpan(span, e.to === 'completed' ? undefined : e.job.failure);
      }
    });
  }
  // GPU memory peaks per job and node for /debug/workflow.
  gpu.subscribe((e) => {
    if (e.type !== 'sample') return;
    let used = 0;
    for (const d of e.sample.devices) if (Number.isFinite(d.memory.usedBytes)) used += d.memory.usedBytes;
    if (e.sample.devices.length > 0) workflows.recordGpuMemory(used);
  });

  // Queue: a worker running each job, or an observer following a queue the workload works on.
  let metricsInvalidate = (): void => undefined;
  const queueLogger = rootLogger.child({ source: 'queue' });
  let monitor: QueueMonitor | undefined;
  let queueWorker: QueueWorker | undefined;
  let observer: QueueObserver | undefined;
  let readinessRunner: StatusDeps['runner'];
  if (config.redisUrl) {
    // BullMQ and ioredis load only for a pod with a queue.
    const [{ QueueMonitor }, { QueueWorker }, { QueueObserver }] = await Promise.all([
      import('./queue/queue-monitor.js'),
      import('./queue/queue-worker.js'),
      import('./queue/queue-observer.js'),
    ]);
    const q = { url: config.redisUrl, queueName: config.queueName, prefix: config.queuePrefix };
    monitor = new QueueMonitor({
      ...q,
      refreshIntervalMs: config.queueRefreshIntervalMs,
      jobs,
      workflows,
      logger: queueLogger,
      now,
      onChange: () => metricsInvalidate(),
    });
    if (config.jobRunner !== 'none') {
      const jobRunner: JobRunner =
        config.jobRunner === 'noop'
          ? new NoopRunner()
          : config.jobRunner === 'comfyui'
            ? new ComfyUIRunner({
                url: config.comfyuiUrl,
                comfyDir: config.comfyuiDir,
                artifacts,
                requestTimeoutMs: config.comfyuiRequestTimeoutMs,
                silenceMs: config.comfyuiSilenceMs,
                logger: rootLogger.child({ source: 'comfyui' }),
                clientId: `gpu-pod-agent-${config.podId}-${randomUUID().slice(0, 8)}`,
              })
            : new CommandRunner({
                command: config.jobCommand as string,
                env: workloadEnv(io.env),
                artifactsDir: config.artifactsDir,
              });
      const runnerReadiness = jobRunner.readiness?.bind(jobRunner);
      if (runnerReadiness) readinessRunner = { name: jobRunner.name, readiness: runnerReadiness };
      queueWorker = new QueueWorker({
        ...q,
        concurrency: config.workerConcurrency,
        lockDurationMs: config.jobLockDurationMs,
        stalledIntervalMs: config.jobStalledIntervalMs,
        maxStalledCount: config.jobMaxStalledCount,
        progressIntervalMs: config.jobProgressIntervalMs,
        keepLogs: config.jobKeepLogs,
        runner: jobRunner,
        jobs,
        workflows,
        artifacts,
        logger: queueLogger,
        jobOutputLogger: rootLogger.child({ source: 'job' }),
        tracing: workflowSpans ? { tracing, workflowSpans } : undefined,
        workerName: `gpu-pod-agent:${config.podId}:${process.pid}`,
        now,
      });
      monitor.attach(queueWorker);
    } else {
      observer = new QueueObserver({ ...q, jobs, workflows, logger: queueLogger });
      monitor.attach(observer);
    }
  }

  // The event stream: what the stores record, with ids, for /debug/events.
  const hub = new EventHub(config.eventsBufferSize);
  jobs.subscribe((e) => {
    const j = e.job;
    if (e.type === 'progress') {
      hub.publish('progress', { job_id: j.id, progress_percent: j.progressPercent });
      return;
    }
    hub.publish('job', {
      job_id: j.id,
      queue: j.queue,
      state: j.state,
      from: e.type === 'transition' ? e.from : null,
      attempts: j.attempts,
      progress_percent: j.progressPercent,
      trace_id: j.traceId ?? null,
      failure: j.failure ? { message: j.failure.message, type: j.failure.type ?? null } : null,
    });
  });
  workflows.subscribe((e) => {
    if (e.type === 'progress') return;
    const n = e.node;
    const node = {
      id: n.id,
      node_id: n.nodeId,
      type: n.type,
      status: n.status,
      step: n.step ?? null,
      total: n.total ?? null,
    };
    if (e.type === 'node_progress') hub.publish('progress', { job_id: e.jobId, node });
    else hub.publish('node', { job_id: e.jobId, from: e.from, node, error: n.error?.message ?? null });
  });
  gpu.subscribe((e) => {
    if (e.type === 'sample')
      hub.publishJson('gpu', `{"at":${e.sample.takenAt},"gpus":${summariesOf(e.sample).json}}`);
  });
  logRing.onRecord = (entry) => hub.publishJson('log', entry.line, entry.level);

  // Views
  const queue: QueueView = monitor ?? disabledQueue('no queue is configured (REDIS_URL is not set)');
  const statusDeps = {
    podId: config.podId,
    version,
    startedAt,
    lifecycle,
    gpu,
    jobs,
    workflows,
    queue,
    workload: () => workload.status(),
    runner: readinessRunner,
  };
  const metrics = new AgentMetrics({
    version,
    hostname: os.hostname(),
    gpu,
    jobs,
    workflows,
    logRing,
    queues: config.redisUrl ? [WORKLOAD_QUEUE, config.queueName] : [WORKLOAD_QUEUE],
    queue: monitor && {
      queue: config.queueName,
      counts: () => monitor.counts()?.counts,
      workers: () => monitor.counts()?.workers,
      redisUp: () => monitor.redisUp,
      latencyMs: () => monitor.counts()?.latencyMs,
    },
    ready: () => readiness(statusDeps, now()).status === 'ok',
    draining: () => lifecycle.phase === 'draining' || lifecycle.phase === 'stopped',
    workloadRunning: () => (config.workload.length ? workload.status().state === 'running' : undefined),
    dcgmCompat: config.gpuMetricsDcgmCompat,
    maxProcessSeries: config.gpuMetricsMaxProcesses,
    now,
  });
  lifecycle.subscribe(() => metrics.invalidate());
  metricsInvalidate = () => metrics.invalidate();
  const httpStats = { total: 0, byClass: {} as Record<string, number> };
  // Readiness as an event when it changes: checked with what can change it, and every second.
  let lastReady = '';
  const publishReadiness = (): void => {
    const r = readiness(statusDeps, now());
    // A change is one of status or of a check's status and reason, not a sample's age.
    const key = `${r.status}|${Object.entries(r.checks)
      .map(([k, c]) => `${k}:${c.status}:${typeof c.reason === 'string' ? c.reason : ''}`)
      .join('|')}`;
    if (key === lastReady) return;
    lastReady = key;
    hub.publish('ready', r);
  };
  lifecycle.subscribe(publishReadiness);
  const readyTimer = setInterval(publishReadiness, 1000);
  readyTimer.unref();
  const events = eventStream({ hub, maxStreams: config.eventsMaxStreams });

  const app = createApp({
    tracing,
    events,
    ...statusDeps,
    now,
    logger: rootLogger.child({ source: 'http' }),
    logRing,
    artifacts,
    host: () => host.snapshot(),
    metrics,
    configView: () => redactedConfig(config),
    getLogLevel: () => rootLogger.level,
    setLogLevel: (level) => {
      rootLogger.level = level;
    },
    debugToken: config.debugToken,
    production: config.production,
    requestIdFormat: config.requestIdFormat,
    cancelJob: queueWorker ? (id, reason) => queueWorker.cancel(id, reason) : undefined,
    onResponse: (status) => {
      httpStats.total++;
      const cls = `${Math.floor(status / 100)}xx`;
      httpStats.byClass[cls] = (httpStats.byClass[cls] ?? 0) + 1;
    },
  });
  const server: http.Server = createServer(app, rootLogger.child({ source: 'http' }));

  // Sources, then HTTP, then ready.
  host.start();
  const address = await listen(server, config.port, config.host);
  logger.info({ data: { host: address.address, port: address.port } }, 'listening');
  gpuSource.start();
  monitor?.start();
  queueWorker?.start();
  observer?.start();
  workload.start();
  lifecycle.advance('running');

  const summary = setInterval(() => {
    logger.info(
      { source: 'http', data: { requests: httpStats.total, by_status: httpStats.byClass } },
      'http summary',
    );
    httpStats.total = 0;
    httpStats.byClass = {};
  }, 60_000);
  summary.unref();

  // Shutdown: ordered, bounded, idempotent.
  let resolveDone!: (code: number) => void;
  const done = new Promise<number>((r) => (resolveDone = r));
  let shutdownPromise: Promise<number> | undefined;
  /** Set by a second signal: the exit code is decided, whatever the drain still finishing says. */
  let forcedExitCode: number | undefined;
  /**
   * Settles the jobs the workload reported: artifacts being hashed get a few seconds, not the whole
   * drain (a huge file must not hold the exit), then a job still running is failed, retryable.
   */
  const endWorkloadJobs = async (exit: { code: number } | undefined): Promise<void> => {
    await settlesWithin(applier.settled(), ARTIFACT_SETTLE_MS);
    applier.abandon({
      message: exit ? `the workload exited with code ${exit.code} before the job ended` : 'the agent stopped',
      retryable: true,
    });
  };
  /** Ends the wait after the workload exited by itself (WORKLOAD_EXIT_LINGER_MS), if one is running. */
  let endLinger: (() => void) | undefined;
  const shutdown = (reason: string, signal?: NodeJS.Signals): Promise<number> => {
    endLinger?.();
    shutdownPromise ??= (async () => {
      lifecycle.advance('draining');
      logger.info({ data: { reason, drain_timeout_ms: config.drainTimeoutMs } }, 'draining');
      // Jobs first: stop taking them, let the running ones finish, hand back what cannot; then the
      // workload (a server the jobs use) gets what is left of the deadline.
      const deadline = now() + config.drainTimeoutMs;
      await queueWorker?.drain(deadline);
      await observer?.close();
      const exit = await workload.stop(Math.max(deadline - now(), 1000), signal ?? 'SIGTERM');
      await endWorkloadJobs(exit);
      workload.killLeftovers();
      // Whoever scrapes this pod reads the counts of its last jobs before the port closes.
      const waitedMs = await metrics.finalScrape(Math.max(deadline - now(), 1000));
      if (waitedMs > 0)
        logger.info({ data: { waited_ms: waitedMs } }, 'waited for a last scrape of /metrics');
      clearInterval(summary);
      await gpuSource.stop();
      await monitor?.close();
      host.stop();
      lifecycle.advance('stopped');
      clearInterval(readyTimer);
      events.closeAll();
      await closeServer(server, 1000);
      metrics.close();
      const code = forcedExitCode ?? exit?.code ?? 0;
      // What spans are buffered go out within what is left of the drain (a second at least).
      workflowSpans?.close();
      await tracing.shutdown(Math.max(deadline - now(), 1000));
      reaper?.stop();
      logger.info({ data: { reason, exit_code: code } }, 'agent stopped');
      await out.close?.(1000);
      resolveDone(code);
      return code;
    })();
    return shutdownPromise;
  };

  void workload.exited.then(async (exit) => {
    const reason = `workload exited with code ${exit.code}`;
    // Answer a while longer, so whoever watches the pod can read why it is going away; a signal (which
    // starts the shutdown itself) or the deadline ends the wait.
    if (config.workloadExitLingerMs > 0 && !shutdownPromise) {
      // The job it was running is over: say so now, not only once the agent exits.
      await endWorkloadJobs(exit);
      logger.info(
        { data: { exit_code: exit.code, linger_ms: config.workloadExitLingerMs } },
        'the workload exited; still answering before the agent exits',
      );
      if (!shutdownPromise)
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, config.workloadExitLingerMs);
          endLinger = () => {
            clearTimeout(timer);
            resolve();
          };
        });
    }
    void shutdown(reason);
  });

  if (io.handleSignals !== false) {
    let signals = 0;
    const onSignal = (signal: NodeJS.Signals): void => {
      signals++;
      if (signals === 1) {
        logger.info({ data: { signal } }, 'signal received; draining (send it again to exit at once)');
        void shutdown(`signal ${signal}`, signal);
        return;
      }
      logger.warn({ data: { signal } }, 'second signal; exiting at once');
      workload.kill();
      const code = workload.status().exitCode ?? 128 + (os.constants.signals[signal] ?? 0);
      forcedExitCode = code;
      // At once, but with running queue jobs handed back if Redis answers within a moment, and the
      // records written by then given a moment to reach stdout.
      void (queueWorker?.kill(FORCED_HAND_BACK_MS) ?? Promise.resolve())
        .then(() => out.close?.(200))
        .then(() => (gpuSource.hasWedgedThreads() ? exitImmediately(code) : process.exit(code)));
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    process.on('exit', () => {
      workload.kill();
      void queueWorker?.kill();
    });
    process.on('uncaughtException', (err) => {
      logger.fatal({ error: err }, 'uncaught exception; shutting down');
      void shutdown('uncaught exception').then(() =>
        gpuSource.hasWedgedThreads() ? exitImmediately(1) : process.exit(1),
      );
    });
    process.on('unhandledRejection', (reason) => {
      logger.error({ error: reason }, 'unhandled promise rejection');
    });
  }

  return {
    port: address.port,
    shutdown,
    done,
    logger: rootLogger,
    hasWedgedThreads: () => gpuSource.hasWedgedThreads(),
  };
}

/** The agent's environment as the workload gets it: the debug token stays with the agent. */
function workloadEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out = { ...env };
  delete out.DEBUG_TOKEN;
  return out;
}
