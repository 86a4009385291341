import type { ChildProcess } from 'node:child_process';
import { GpuError, errorMessage } from '../errors.js';
import type { FailureCategory } from '../errors.js';
import { DCGM_PROFILING_FIELD_IDS, DEFAULT_DMON_FIELD_IDS, dcgmDevice } from '../parsers/dcgm-fields.js';
import { parseDcgmExporterMetrics } from '../parsers/dcgm-exporter.js';
import { DmonParser, LineSplitter } from '../parsers/dcgmi-dmon.js';
import type { DmonRow } from '../parsers/dcgmi-dmon.js';
import { parseDcgmiDiscovery } from '../parsers/dcgmi-discovery.js';
import type { DcgmiDiscoveredGpu } from '../parsers/dcgmi-discovery.js';
import { silentLogger, systemClock } from '../types.js';
import type { Clock, GpuBackend, GpuDevice, GpuLogger, GpuSample } from '../types.js';
import { defaultSpawn, exitCategory, runProcess, signalGroup } from '../process.js';
import type { SpawnFn } from '../process.js';

/**
 * Remembers when each GPU's XID code was first seen, since DCGM reports the newest code but not its
 * time: the same code on later readings keeps its first time instead of looking new each sample.
 * Keyed by index, which DCGM keeps for a GPU while it runs (a UUID may only arrive later).
 */
class XidFirstSeen {
  private readonly seen = new Map<number, { xid: number; at: number }>();

  stamp(devices: GpuDevice[]): void {
    for (const d of devices) {
      const key = d.index;
      const last = d.xidErrors?.last;
      if (!last) {
        this.seen.delete(key);
        continue;
      }
      const before = this.seen.get(key);
      if (before && before.xid === last.xid) last.at = before.at;
      else this.seen.set(key, { xid: last.xid, at: last.at });
    }
  }
}

/** Command output as one short line, for failure messages and logs. */
function oneLine(text: string, max = 300): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > max ? `${line.slice(0, max)}…` : line;
}

function abortReason(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  return reason instanceof Error ? reason : new GpuError('timeout', 'sample aborted');
}

// ---------------------------------------------------------------------------------------------------
// dcgmi dmon

export interface DcgmiBackendOptions {
  /** The `dcgmi` executable. @defaultValue 'dcgmi' (looked up on PATH) */
  binary?: string;
  /** Host engine address for `--host` (`host:port` or `unix:///path`). @defaultValue dcgmi's own (localhost) */
  host?: string;
  /** Field ids for `dmon -e`, in column order. @defaultValue DEFAULT_DMON_FIELD_IDS */
  fieldIds?: readonly number[];
  /** `dmon -d`: time between rows. @defaultValue 1000 */
  intervalMs?: number;
  /**
   * A reading older than this is never served: `sample()` waits this long for a new one and then
   * rejects as `timeout`. @defaultValue 3 × intervalMs + 2000
   */
  maxReadingAgeMs?: number;
  /**
   * No valid row for this long (a hung host engine, a child printing junk) and the child is killed and
   * restarted. @defaultValue max(10 000, 5 × intervalMs)
   */
  silenceTimeoutMs?: number;
  /** First wait before restarting a failed child; doubles per consecutive failure. @defaultValue 1000 */
  restartBackoffMs?: number;
  /** Upper bound of that wait. @defaultValue 30 000 */
  maxRestartBackoffMs?: number;
  /** Deadline for `dcgmi discovery -l`. @defaultValue 10 000 */
  discoveryTimeoutMs?: number;
  /** Time between SIGTERM and SIGKILL when stopping the child. @defaultValue 2000 */
  killGraceMs?: number;
  env?: NodeJS.ProcessEnv;
  spawn?: SpawnFn;
  clock?: Clock;
  logger?: GpuLogger;
}

export interface DcgmiBackendStats {
  /** Pid of the running `dcgmi dmon`, if one runs now. */
  pid?: number;
  /** Children started, the first included. */
  starts: number;
  /** Child failures and `discovery -l` failures, by category (`spawn`, `exit:N`, `timeout`, `parse`). */
  failures: Partial<Record<FailureCategory, number>>;
  rows: number;
  readings: number;
  /** The field ids the current child watches (profiling ids drop out when the GPU refuses them). */
  fieldIds: number[];
  profilingDisabled: boolean;
  /** GPUs `dcgmi discovery -l` named, 0 until it succeeded. */
  discoveredGpus: number;
}

interface ChildRun {
  child: ChildProcess;
  splitter: LineSplitter;
  parser: DmonParser;
  rows: number;
  /** We killed it (close or the silence watchdog): its exit is not a failure of its own. */
  killedByUs: boolean;
  ended: boolean;
  /** Text dcgmi printed about errors, kept short, to recognise "profiling is not supported". */
  complaints: string;
  loggedLines: number;
  exited: Promise<void>;
  markExited: () => void;
}

interface EntityReading {
  row: DmonRow;
  at: number;
}

const LOGGED_LINES_PER_CHILD = 10;
const MAX_COMPLAINT_CHARS = 2000;
const EXIT_DRAIN_MS = 500;

/**
 * GPU readings from one long-lived `dcgmi dmon` child. The child prints a block of rows (one per GPU)
 * every `intervalMs`; the backend keeps the newest values per GPU and `sample()` answers from them, so
 * sampling costs no process start. A child that exits, hangs or prints only junk is restarted with
 * exponential backoff; failures are counted by category and visible in `stats()`. Names, UUIDs and PCI
 * ids are not in dmon output: they come once from `dcgmi discovery -l`, and stay empty strings / unset
 * if that fails. The driver version is not reported. MIG instance rows (`GPU-I n`) are not mapped: their
 * parent GPU is not in the output; the exporter backend reports MIG instances.
 */
export class DcgmiBackend implements GpuBackend {
  readonly name = 'dcgm' as const;
  private readonly binary: string;
  private readonly intervalMs: number;
  private readonly maxReadingAgeMs: number;
  private readonly silenceTimeoutMs: number;
  private readonly restartBackoffMs: number;
  private readonly maxRestartBackoffMs: number;
  private readonly discoveryTimeoutMs: number;
  private readonly killGraceMs: number;
  private readonly spawn: SpawnFn;
  private readonly clock: Clock;
  private readonly logger: GpuLogger;
  private fieldIds: number[];
  private profilingDisabled = false;

  private started = false;
  private closing: Promise<void> | undefined;
  private run: ChildRun | undefined;
  private restartTimer: unknown;
  private silenceTimer: unknown;
  private settleTimer: unknown;
  private consecutiveFailures = 0;
  private lastFailure: { category: FailureCategory; message: string } | undefined;

  private readonly latest = new Map<number, EntityReading>();
  private readonly block = new Set<string>();
  private blockLastRowAt = 0;
  private lastReadingAt: number | undefined;
  private readonly waiters = new Set<() => void>();

  private discovered: Map<number, DcgmiDiscoveredGpu> | undefined;
  private discovering = false;
  private discoveryAbort: AbortController | undefined;
  private discoveryGone: Promise<void> | undefined;
  private readonly xids = new XidFirstSeen();
  private readonly counters = { starts: 0, rows: 0, readings: 0 };
  private readonly failures: Partial<Record<FailureCategory, number>> = {};

  constructor(private readonly options: DcgmiBackendOptions = {}) {
    this.binary = options.binary ?? 'dcgmi';
    this.intervalMs = options.intervalMs ?? 1000;
    if (!Number.isInteger(this.intervalMs) || this.intervalMs < 1) {
      throw new RangeError(`dcgmi dmon interval must be a positive integer of ms, got ${this.intervalMs}`);
    }
    this.maxReadingAgeMs = options.maxReadingAgeMs ?? 3 * this.intervalMs + 2000;
    this.silenceTimeoutMs = options.silenceTimeoutMs ?? Math.max(10_000, 5 * this.intervalMs);
    this.restartBackoffMs = options.restartBackoffMs ?? 1000;
    this.maxRestartBackoffMs = Math.max(options.maxRestartBackoffMs ?? 30_000, this.restartBackoffMs);
    this.discoveryTimeoutMs = options.discoveryTimeoutMs ?? 10_000;
    this.killGraceMs = options.killGraceMs ?? 2000;
    this.spawn = options.spawn ?? defaultSpawn;
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger ?? silentLogger;
    this.fieldIds = [...(options.fieldIds ?? DEFAULT_DMON_FIELD_IDS)];
    if (this.fieldIds.length === 0) throw new RangeError('dcgmi dmon needs at least one field id');
  }

  /** Pid of the running `dcgmi dmon`, if any. */
  get pid(): number | undefined {
    return this.run?.child.pid;
  }

  stats(): DcgmiBackendStats {
    return {
      ...(this.pid !== undefined ? { pid: this.pid } : {}),
      ...this.counters,
      failures: { ...this.failures },
      fieldIds: [...this.fieldIds],
      profilingDisabled: this.profilingDisabled,
      discoveredGpus: this.discovered?.size ?? 0,
    };
  }

  async sample(signal: AbortSignal): Promise<GpuSample> {
    if (this.closing) throw new GpuError('library', 'dcgmi backend is closed');
    signal.throwIfAborted();
    this.start();
    const ready = this.reading();
    if (ready) return ready;
    if (!this.run && this.lastFailure?.category === 'spawn') {
      // Waiting cannot help while the executable cannot even start.
      throw new GpuError('spawn', this.lastFailure.message);
    }
    await this.waitForReading(signal);
    const reading = this.reading();
    if (reading) return reading;
    throw this.noReadingError();
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  // --- lifecycle ---

  private start(): void {
    if (this.started) return;
    this.started = true;
    this.spawnChild();
  }

  private async shutdown(): Promise<void> {
    this.clock.clearTimeout(this.restartTimer);
    this.clock.clearTimeout(this.silenceTimer);
    this.clock.clearTimeout(this.settleTimer);
    this.discoveryAbort?.abort(new GpuError('timeout', 'dcgmi backend closed'));
    this.notifyWaiters();
    const run = this.run;
    if (run && !run.ended) {
      run.killedByUs = true;
      signalGroup(run.child, 'SIGTERM');
      let grace: unknown;
      const killed = new Promise<void>((resolve) => {
        grace = this.clock.setTimeout(() => {
          signalGroup(run.child, 'SIGKILL');
          resolve();
        }, this.killGraceMs);
      });
      await Promise.race([run.exited, killed]);
      this.clock.clearTimeout(grace);
      await run.exited;
    }
    // An aborted discovery run is killed at once; wait until it is really gone.
    await this.discoveryGone;
  }

  private spawnChild(): void {
    if (this.closing) return;
    if (!this.discovered) void this.discover();
    const args = ['dmon', '-e', this.fieldIds.join(','), '-d', String(this.intervalMs), ...this.hostArgs()];
    let child: ChildProcess;
    try {
      child = this.spawn(this.binary, args, {
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: this.options.env ?? process.env,
      });
    } catch (err) {
      this.childFailed('spawn', `cannot start ${this.binary}: ${errorMessage(err)}`);
      this.scheduleRestart();
      return;
    }
    let markExited = (): void => undefined;
    const exited = new Promise<void>((resolve) => (markExited = resolve));
    const run: ChildRun = {
      child,
      splitter: new LineSplitter(),
      parser: new DmonParser(this.fieldIds),
      rows: 0,
      killedByUs: false,
      ended: false,
      complaints: '',
      loggedLines: 0,
      exited,
      markExited,
    };
    this.run = run;
    this.counters.starts++;
    this.logger.debug(
      { data: { backend: this.name, pid: child.pid, command: [this.binary, ...args].join(' ') } },
      'dcgmi dmon started',
    );
    this.armSilenceWatchdog(run);

    child.stdout?.setEncoding('utf8');
    child.stderr?.setEncoding('utf8');
    child.stdout?.on('data', (chunk: string) => {
      for (const line of run.splitter.push(chunk)) this.onLine(run, line);
    });
    const stderrLines = new LineSplitter();
    child.stderr?.on('data', (chunk: string) => {
      for (const line of stderrLines.push(chunk)) this.onStderr(run, line);
    });
    child.on('error', (err) => {
      this.onChildEnd(run, 'spawn', `cannot start ${this.binary}: ${err.message}`);
    });
    child.stdout?.on('end', () => {
      for (const line of run.splitter.flush()) this.onLine(run, line);
    });
    // What dcgmi printed last (often why it stopped) can arrive after 'exit'; 'close' waits for it,
    // but a leftover holding the pipes open would hold 'close' back, hence the short fallback.
    let drain: unknown;
    const end = (category: FailureCategory, message: string): void => {
      this.clock.clearTimeout(drain);
      this.onChildEnd(run, category, message);
    };
    child.on('exit', (code: number | null, signal: NodeJS.Signals | null) => {
      const category = exitCategory(code, signal);
      const message = `dcgmi dmon exited (${code ?? signal ?? 'unknown'})`;
      // Leftovers of a wrapper script would otherwise outlive it.
      signalGroup(child, 'SIGKILL');
      child.once('close', () => end(category, message));
      drain = this.clock.setTimeout(() => end(category, message), EXIT_DRAIN_MS);
    });
  }

  private hostArgs(): string[] {
    return this.options.host ? ['--host', this.options.host] : [];
  }

  private onChildEnd(run: ChildRun, category: FailureCategory, message: string): void {
    if (run.ended) return;
    run.ended = true;
    run.markExited();
    this.completeBlock();
    if (this.run !== run) return;
    this.run = undefined;
    this.clock.clearTimeout(this.silenceTimer);
    if (this.closing) return;
    if (!run.killedByUs) {
      const detail = run.complaints
        ? `${message}: ${run.complaints.trim().split('\n').slice(-3).join(' | ')}`
        : message;
      this.childFailed(category, detail);
      this.maybeDropProfiling(run);
    }
    this.scheduleRestart();
  }

  /** GPUs without profiling support make dcgmi refuse every field; without DCP ids the rest still works. */
  private maybeDropProfiling(run: ChildRun): void {
    if (run.rows > 0 || this.profilingDisabled) return;
    if (!/profil|single pass/i.test(run.complaints)) return;
    const without = this.fieldIds.filter((id) => !DCGM_PROFILING_FIELD_IDS.includes(id));
    if (without.length === this.fieldIds.length || without.length === 0) return;
    this.fieldIds = without;
    this.profilingDisabled = true;
    this.logger.warn(
      { data: { backend: this.name, field_ids: without.join(',') } },
      'dcgmi refused the profiling fields; watching the others only',
    );
  }

  private childFailed(category: FailureCategory, message: string): void {
    this.failures[category] = (this.failures[category] ?? 0) + 1;
    this.lastFailure = { category, message };
    this.consecutiveFailures++;
    this.logger.warn({ data: { backend: this.name, category, error: message } }, 'dcgmi dmon failed');
  }

  private scheduleRestart(): void {
    if (this.closing) return;
    const exponent = Math.min(Math.max(this.consecutiveFailures - 1, 0), 30);
    const delayMs = Math.min(this.restartBackoffMs * 2 ** exponent, this.maxRestartBackoffMs);
    this.logger.debug({ data: { backend: this.name, delay_ms: delayMs } }, 'dcgmi dmon restart scheduled');
    this.clock.clearTimeout(this.restartTimer);
    this.restartTimer = this.clock.setTimeout(() => this.spawnChild(), delayMs);
  }

  private armSilenceWatchdog(run: ChildRun): void {
    // Output of a child that already ended can still be draining; it must not touch its successor's timer.
    if (this.run !== run || run.ended) return;
    this.clock.clearTimeout(this.silenceTimer);
    this.silenceTimer = this.clock.setTimeout(() => {
      if (this.run !== run || run.ended) return;
      this.childFailed('timeout', `no row from dcgmi dmon in ${this.silenceTimeoutMs} ms; restarting it`);
      run.killedByUs = true;
      signalGroup(run.child, 'SIGKILL');
    }, this.silenceTimeoutMs);
  }

  // --- output ---

  private onLine(run: ChildRun, text: string): void {
    const line = run.parser.line(text);
    switch (line.kind) {
      case 'row':
        run.rows++;
        this.counters.rows++;
        if (line.row.invalid.length > 0)
          this.countParse(run, `bad values for fields ${line.row.invalid.join(',')}`);
        this.armSilenceWatchdog(run);
        this.onRow(line.row);
        return;
      case 'header':
        this.completeBlock();
        return;
      case 'message':
        this.complain(run, line.text);
        return;
      case 'invalid':
        this.countParse(run, `${line.reason}: ${line.text.slice(0, 200)}`);
        return;
      case 'units':
      case 'blank':
        return;
    }
  }

  private onStderr(run: ChildRun, text: string): void {
    if (text.trim() === '') return;
    this.complain(run, text.trim());
  }

  /** dcgmi's own messages: logged (the first few at WARN), never counted as failures. */
  private complain(run: ChildRun, text: string): void {
    if (run.complaints.length < MAX_COMPLAINT_CHARS) run.complaints += `${text}\n`;
    const fields = { data: { backend: this.name, pid: run.child.pid, line: text.slice(0, 500) } };
    if (run.loggedLines++ < LOGGED_LINES_PER_CHILD) this.logger.warn(fields, 'dcgmi dmon says');
    else this.logger.debug(fields, 'dcgmi dmon says');
  }

  private countParse(run: ChildRun, message: string): void {
    this.failures.parse = (this.failures.parse ?? 0) + 1;
    this.lastFailure = { category: 'parse', message };
    const fields = { data: { backend: this.name, category: 'parse', error: message } };
    if (run.loggedLines++ < LOGGED_LINES_PER_CHILD)
      this.logger.warn(fields, 'dcgmi dmon printed a line it cannot read');
    else this.logger.debug(fields, 'dcgmi dmon printed a line it cannot read');
  }

  /**
   * dcgmi prints one row per entity each interval and flushes once, so a block ends when an entity
   * comes round again, a header is printed, every discovered GPU has reported, or output pauses.
   */
  private onRow(row: DmonRow): void {
    const key = `${row.entityGroup} ${row.entityId}`;
    if (this.block.has(key)) this.completeBlock();
    const now = this.clock.now();
    this.block.add(key);
    this.blockLastRowAt = now;
    if (row.entityGroup === 'GPU') this.latest.set(row.entityId, { row, at: now });
    const expected = this.discovered;
    if (expected && expected.size > 0 && [...expected.keys()].every((id) => this.block.has(`GPU ${id}`))) {
      this.completeBlock();
      return;
    }
    this.clock.clearTimeout(this.settleTimer);
    this.settleTimer = this.clock.setTimeout(() => this.completeBlock(), Math.min(200, this.intervalMs / 2));
  }

  private completeBlock(): void {
    this.clock.clearTimeout(this.settleTimer);
    if (this.block.size === 0) return;
    this.block.clear();
    this.lastReadingAt = this.blockLastRowAt;
    this.counters.readings++;
    this.consecutiveFailures = 0;
    this.notifyWaiters();
  }

  // --- readings ---

  private reading(): GpuSample | undefined {
    const now = this.clock.now();
    const takenAt = this.lastReadingAt;
    if (takenAt === undefined || now - takenAt > this.maxReadingAgeMs) return undefined;
    const devices = [...this.latest.entries()]
      .filter(([, e]) => now - e.at <= this.maxReadingAgeMs)
      .sort(([a], [b]) => a - b)
      .map(([gpuId, e]) => {
        const found = this.discovered?.get(gpuId);
        return dcgmDevice(
          { index: gpuId, uuid: found?.uuid, name: found?.name, pciBusId: found?.pciBusId },
          e.row.values,
          takenAt,
        );
      });
    if (devices.length === 0) return undefined;
    this.xids.stamp(devices);
    return { takenAt, devices };
  }

  private waitForReading(signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const done = (): void => {
        this.waiters.delete(onReading);
        this.clock.clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
      };
      const onReading = (): void => {
        done();
        resolve();
      };
      const onAbort = (): void => {
        done();
        reject(abortReason(signal));
      };
      const timer = this.clock.setTimeout(() => {
        done();
        reject(this.noReadingError());
      }, this.maxReadingAgeMs);
      this.waiters.add(onReading);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  private notifyWaiters(): void {
    for (const w of [...this.waiters]) w();
  }

  private noReadingError(): GpuError {
    if (this.closing) return new GpuError('library', 'dcgmi backend is closed');
    const last = this.lastFailure
      ? ` (last failure: ${this.lastFailure.category}: ${this.lastFailure.message})`
      : '';
    return new GpuError(
      'timeout',
      `no reading from dcgmi dmon in the last ${this.maxReadingAgeMs} ms${last}`,
    );
  }

  // --- discovery ---

  private async discover(): Promise<void> {
    if (this.discovering || this.discovered || this.closing) return;
    this.discovering = true;
    const abort = new AbortController();
    this.discoveryAbort = abort;
    try {
      const result = await runProcess(this.binary, ['discovery', '-l', ...this.hostArgs()], {
        timeoutMs: this.discoveryTimeoutMs,
        signal: abort.signal,
        env: this.options.env,
        spawn: this.spawn,
        clock: this.clock,
        onStarted: (gone) => {
          this.discoveryGone = gone;
        },
      });
      if (result.code !== 0) {
        throw new GpuError(
          exitCategory(result.code, result.signal),
          `dcgmi discovery -l failed: ${oneLine(`${result.stdout} ${result.stderr}`)}`,
        );
      }
      const { gpus } = parseDcgmiDiscovery(result.stdout);
      if (gpus.length === 0) throw new GpuError('parse', 'dcgmi discovery -l listed no GPU');
      this.discovered = new Map(gpus.map((g) => [g.gpuId, g]));
      this.logger.info(
        {
          data: { backend: this.name, gpus: gpus.map((g) => ({ id: g.gpuId, name: g.name, uuid: g.uuid })) },
        },
        'dcgmi discovery',
      );
    } catch (err) {
      if (this.closing) return;
      const category = err instanceof GpuError ? err.category : 'unknown';
      this.failures[category] = (this.failures[category] ?? 0) + 1;
      this.logger.warn(
        { data: { backend: this.name, category, error: errorMessage(err) } },
        'dcgmi discovery -l failed; GPU names and UUIDs stay unknown until it works',
      );
    } finally {
      this.discovering = false;
      if (this.discoveryAbort === abort) this.discoveryAbort = undefined;
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// dcgm-exporter

export interface DcgmExporterBackendOptions {
  /** The exporter's metrics URL, e.g. `http://localhost:9400/metrics`. */
  url: string;
  /** A larger page is refused as `parse`. @defaultValue 16 MiB */
  maxBodyBytes?: number;
  clock?: Clock;
  logger?: GpuLogger;
}

const DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024;

async function readBounded(res: Response, maxBytes: number): Promise<string> {
  if (!res.body) return '';
  // Node's fetch types leave the body's chunk type open; it yields bytes.
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      await reader.cancel();
      throw new GpuError('parse', `metrics page larger than ${maxBytes} bytes`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function connectError(url: string, err: unknown): GpuError {
  const cause =
    err instanceof Error ? (err.cause as { code?: string; message?: string } | undefined) : undefined;
  const detail = cause?.code ?? cause?.message ?? errorMessage(err);
  return new GpuError('connect', `cannot reach dcgm-exporter at ${url}: ${detail}`, { cause: err });
}

/**
 * GPU readings scraped from a dcgm-exporter `/metrics` page, one HTTP request per sample. Useful where
 * the exporter already runs (GPU Operator, DCGM in a sidecar) and nothing else may talk to the host
 * engine. MIG instances come with their profile and profiling ratios.
 */
export class DcgmExporterBackend implements GpuBackend {
  readonly name = 'dcgm' as const;
  private readonly clock: Clock;
  private readonly logger: GpuLogger;
  private readonly maxBodyBytes: number;
  private readonly xids = new XidFirstSeen();
  private closed = false;

  constructor(private readonly options: DcgmExporterBackendOptions) {
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger ?? silentLogger;
    this.maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  }

  async sample(signal: AbortSignal): Promise<GpuSample> {
    if (this.closed) throw new GpuError('library', 'dcgm-exporter backend is closed');
    signal.throwIfAborted();
    const { url } = this.options;
    let text: string;
    try {
      const res = await fetch(url, { signal, headers: { accept: 'text/plain' } });
      if (!res.ok) {
        await res.body?.cancel();
        throw new GpuError(`status:${res.status}`, `dcgm-exporter at ${url} answered ${res.status}`);
      }
      text = await readBounded(res, this.maxBodyBytes);
    } catch (err) {
      if (err instanceof GpuError) throw err;
      if (signal.aborted) throw abortReason(signal);
      throw connectError(url, err);
    }
    const reading = parseDcgmExporterMetrics(text, this.clock.now());
    if (reading.errors.length > 0 || reading.nonNumeric > 0) {
      this.logger.debug(
        {
          data: {
            backend: this.name,
            bad_lines: reading.errors.length,
            non_numeric: reading.nonNumeric,
            first_error: reading.errors[0],
          },
        },
        'dcgm-exporter page has lines that are not metrics',
      );
    }
    if (reading.sample.devices.length === 0) {
      throw new GpuError('parse', `no GPU series (DCGM_FI_* with a gpu label) at ${url}`);
    }
    this.xids.stamp(reading.sample.devices);
    return reading.sample;
  }

  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
}

// ---------------------------------------------------------------------------------------------------
// probe

export interface ProbeDcgmOptions {
  /** Tried first when set. */
  exporterUrl?: string;
  /** `dcgmi` to try, or false to skip it. @defaultValue 'dcgmi' */
  dcgmiBinary?: string | false;
  host?: string;
  /** Deadline for each check. @defaultValue 3000 */
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  spawn?: SpawnFn;
  clock?: Clock;
}

export type ProbeDcgmResult = { ok: true; via: 'dcgmi' | 'exporter' } | { ok: false; reason: string };

/**
 * Whether DCGM answers here: the exporter URL serves DCGM series, or `dcgmi discovery -l` lists a GPU,
 * each within `timeoutMs`. Never throws.
 */
export async function probeDcgm(options: ProbeDcgmOptions = {}): Promise<ProbeDcgmResult> {
  const timeoutMs = options.timeoutMs ?? 3000;
  const reasons: string[] = [];
  if (options.exporterUrl) {
    try {
      const res = await fetch(options.exporterUrl, { signal: AbortSignal.timeout(timeoutMs) });
      const text = res.ok ? await readBounded(res, DEFAULT_MAX_BODY_BYTES) : '';
      if (!res.ok) reasons.push(`exporter: ${options.exporterUrl} answered ${res.status}`);
      else if (parseDcgmExporterMetrics(text, 0).sample.devices.length === 0) {
        reasons.push(`exporter: no GPU series at ${options.exporterUrl}`);
      } else return { ok: true, via: 'exporter' };
    } catch (err) {
      reasons.push(`exporter: ${connectError(options.exporterUrl, err).message}`);
    }
  }
  const binary = options.dcgmiBinary ?? 'dcgmi';
  if (binary !== false) {
    try {
      const args = ['discovery', '-l', ...(options.host ? ['--host', options.host] : [])];
      const r = await runProcess(binary, args, {
        timeoutMs,
        env: options.env,
        spawn: options.spawn,
        clock: options.clock,
      });
      if (r.code !== 0)
        reasons.push(`dcgmi: discovery -l exited ${r.code ?? r.signal}: ${oneLine(r.stderr || r.stdout)}`);
      else if (parseDcgmiDiscovery(r.stdout).gpus.length === 0)
        reasons.push('dcgmi: discovery -l listed no GPU');
      else return { ok: true, via: 'dcgmi' };
    } catch (err) {
      reasons.push(`dcgmi: ${errorMessage(err)}`);
    }
  }
  return { ok: false, reason: reasons.join('; ') || 'neither an exporter URL nor dcgmi to try' };
}
