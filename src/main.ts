import { mkdir } from 'node:fs/promises';
import os from 'node:os';
import type http from 'node:http';
import { GpuStore } from '../gpu/index.js';
import type { GpuActivity } from '../gpu/index.js';
import { ArtifactStore } from './artifacts/artifact-store.js';
import { redactedConfig } from './config.js';
import type { AgentConfig } from './config.js';
import { GpuSource } from './gpu-backend.js';
import { settlesWithin } from './deadline.js';
import { exitImmediately } from './hard-exit.js';
import { HostStore, realHostReaders } from './host/host-store.js';
import { createApp } from './http/app.js';
import { closeServer, createServer, listen } from './http/server.js';
import { JobStore } from './jobs/job-store.js';
import { Lifecycle } from './lifecycle.js';
import { LogRing } from './logging/log-ring.js';
import { createLogger, stdoutSink } from './logging/logger.js';
import type { LineSink, Logger } from './logging/logger.js';
import { AgentMetrics } from './metrics/registry.js';
import { readVersion } from './version.js';
import { CommandRunner } from './queue/command-runner.js';
import { QueueMonitor } from './queue/queue-monitor.js';
import { QueueObserver } from './queue/queue-observer.js';
import { QueueWorker } from './queue/queue-worker.js';
import { NoopRunner } from './queue/runner.js';
import { disabledQueue } from './views/queue.js';
import type { QueueView } from './views/queue.js';
import { readiness } from './views/status.js';
import { WorkflowStore } from './workflow/workflow-store.js';
import { ProgressApplier } from './workload/progress-applier.js';
import { PROTOCOL_PREFIX } from './workload/progress-protocol.js';
import { WorkloadSupervisor, workloadName } from './workload/supervisor.js';

/** How long shutdown waits for artifacts still being hashed. */
const ARTIFACT_SETTLE_MS = 5000;

/** The queue label of jobs the workload reports without naming a queue. */
export const WORKLOAD_QUEUE = 'workload';

export interface AgentIo {
  env: NodeJS.ProcessEnv;
  out?: LineSink & { close?(timeoutMs: number): Promise<void> };
  /** Installs process signal handlers; tests that embed the agent pass false. */
  handleSignals?: boolean;
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
      return { job_id: id, node_id: node?.id };
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

  // Queue: a worker running each job, or an observer following a queue the workload works on.
  let metricsInvalidate = (): void => undefined;
  const queueLogger = rootLogger.child({ source: 'queue' });
  let monitor: QueueMonitor | undefined;
  let queueWorker: QueueWorker | undefined;
  let observer: QueueObserver | undefined;
  if (config.redisUrl) {
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
      queueWorker = new QueueWorker({
        ...q,
        concurrency: config.workerConcurrency,
        lockDurationMs: config.jobLockDurationMs,
        progressIntervalMs: config.jobProgressIntervalMs,
        keepLogs: config.jobKeepLogs,
        runner:
          config.jobRunner === 'noop'
            ? new NoopRunner()
            : new CommandRunner({
                command: config.jobCommand as string,
                env: workloadEnv(io.env),
                artifactsDir: config.artifactsDir,
              }),
        jobs,
        workflows,
        artifacts,
        logger: queueLogger,
        jobOutputLogger: rootLogger.child({ source: 'job' }),
        workerName: `gpu-pod-agent:${config.podId}:${process.pid}`,
        now,
      });
      monitor.attach(queueWorker);
    } else {
      observer = new QueueObserver({ ...q, jobs, workflows, logger: queueLogger });
      monitor.attach(observer);
    }
  }

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
    workloadRunning: () => (config.workload.length ? workload.status().state === 'running' : undefined),
    dcgmCompat: config.gpuMetricsDcgmCompat,
    maxProcessSeries: config.gpuMetricsMaxProcesses,
    now,
  });
  lifecycle.subscribe(() => metrics.invalidate());
  metricsInvalidate = () => metrics.invalidate();
  const httpStats = { total: 0, byClass: {} as Record<string, number> };
  const app = createApp({
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
  const shutdown = (reason: string, signal?: NodeJS.Signals): Promise<number> => {
    shutdownPromise ??= (async () => {
      lifecycle.advance('draining');
      logger.info({ data: { reason, drain_timeout_ms: config.drainTimeoutMs } }, 'draining');
      // Jobs first: stop taking them, let the running ones finish, hand back what cannot; then the
      // workload (a server the jobs use) gets what is left of the deadline.
      const deadline = now() + config.drainTimeoutMs;
      await queueWorker?.drain(deadline);
      await observer?.close();
      const exit = await workload.stop(Math.max(deadline - now(), 1000), signal ?? 'SIGTERM');
      // Artifacts being hashed get a few seconds, not the whole drain: a huge file must not hold the exit.
      await settlesWithin(applier.settled(), ARTIFACT_SETTLE_MS);
      workload.killLeftovers();
      applier.abandon({
        message: exit
          ? `the workload exited with code ${exit.code} before the job ended`
          : 'the agent stopped',
        retryable: true,
      });
      clearInterval(summary);
      await gpuSource.stop();
      await monitor?.close();
      host.stop();
      lifecycle.advance('stopped');
      await closeServer(server, 1000);
      metrics.close();
      const code = forcedExitCode ?? exit?.code ?? 0;
      logger.info({ data: { reason, exit_code: code } }, 'agent stopped');
      await out.close?.(1000);
      resolveDone(code);
      return code;
    })();
    return shutdownPromise;
  };

  void workload.exited.then((exit) => shutdown(`workload exited with code ${exit.code}`));

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
      // At once, but with the records already written given a moment to reach stdout.
      void (out.close?.(200) ?? Promise.resolve()).then(() =>
        gpuSource.hasWedgedThreads() ? exitImmediately(code) : process.exit(code),
      );
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    process.on('exit', () => workload.kill());
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
