/**
 * Worker thread entry for the NVML backend. NVML calls block (a wedged driver can block for ever), so
 * they never run on the main thread. Two roles:
 * - `sampler` answers init/sample requests one at a time;
 * - `events` blocks in nvmlEventSetWait in a loop and reports XID errors as they arrive.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { setImmediate as yieldToLoop, setTimeout as sleep } from 'node:timers/promises';
import type { FailureCategory } from '../../errors.js';
import { NVML, NVML_EVENT_TYPE_XID_CRITICAL_ERROR, NvmlLoadError, loadNvml } from './bindings.js';
import type { NvmlBindings } from './bindings.js';
import type {
  EventsToMain,
  InitInfo,
  MainToWorker,
  NvmlWorkerData,
  SamplerReply,
  WorkerFailure,
} from './protocol.js';
import { NvmlCallError, REINIT_CODES, readSample } from './read.js';

const port = parentPort;
if (!port) throw new Error('the NVML worker must run in a worker thread');
const data = workerData as NvmlWorkerData;

function categoryOf(code: number): FailureCategory {
  if (code === NVML.ERROR_NOT_SUPPORTED) return 'not_supported';
  if (code === NVML.ERROR_TIMEOUT) return 'timeout';
  return 'library';
}

function failure(err: unknown): WorkerFailure {
  if (err instanceof NvmlLoadError) return { ok: false, category: 'library', message: err.message };
  if (err instanceof NvmlCallError) {
    return {
      ok: false,
      category: categoryOf(err.code),
      message: err.message,
      reinit: REINIT_CODES.has(err.code),
    };
  }
  return { ok: false, category: 'unknown', message: err instanceof Error ? err.message : String(err) };
}

/** Loads the library and runs nvmlInit; throws NvmlLoadError / NvmlCallError. */
function open(): NvmlBindings {
  const b = loadNvml(data.libraryPath);
  const r = b.init();
  if (r !== NVML.SUCCESS) throw new NvmlCallError(b.symbols.init ?? 'nvmlInit', r, b.errorString(r));
  return b;
}

function runSampler(p: NonNullable<typeof parentPort>): void {
  let nvml: NvmlBindings | undefined;
  const reply = (msg: SamplerReply): void => p.postMessage(msg);

  p.on('message', (m: MainToWorker) => {
    switch (m.type) {
      case 'init': {
        try {
          nvml ??= open();
          const count = nvml.deviceCount();
          const driver = nvml.driverVersion();
          const info: InitInfo = {
            symbols: nvml.symbols,
            hasEvents: nvml.hasEvents,
            deviceCount: count.ok ? count.value : 0,
            driverVersion: driver.ok ? driver.value : undefined,
          };
          reply({ type: 'reply', id: m.id, result: { ok: true, value: info } });
        } catch (err) {
          reply({ type: 'reply', id: m.id, result: failure(err) });
        }
        return;
      }
      case 'sample': {
        try {
          if (!nvml) throw new Error('sample before init');
          reply({
            type: 'reply',
            id: m.id,
            result: { ok: true, value: readSample(nvml, { pcieThroughput: data.pcieThroughput ?? true }) },
          });
        } catch (err) {
          reply({ type: 'reply', id: m.id, result: failure(err) });
        }
        return;
      }
      case 'close': {
        // nvmlInit is reference-counted per process; every successful init is paired with a shutdown.
        nvml?.shutdown();
        nvml = undefined;
        reply({ type: 'closed' });
        p.close();
        return;
      }
    }
  });
}

async function runEvents(p: NonNullable<typeof parentPort>): Promise<void> {
  const post = (msg: EventsToMain): void => p.postMessage(msg);
  let stopping = false;
  p.on('message', (m: MainToWorker) => {
    if (m.type === 'close') stopping = true;
  });

  let nvml: NvmlBindings;
  try {
    nvml = open();
  } catch (err) {
    post({ type: 'events-unavailable', reason: failure(err).message });
    p.close();
    return;
  }
  const finish = (set?: bigint): void => {
    if (set !== undefined) nvml.eventSetFree(set);
    nvml.shutdown();
    post({ type: 'closed' });
    p.close();
  };
  if (!nvml.hasEvents) {
    post({ type: 'events-unavailable', reason: 'the library exports no event API' });
    finish();
    return;
  }
  const created = nvml.eventSetCreate();
  if (!created.ok) {
    post({
      type: 'events-unavailable',
      reason: `nvmlEventSetCreate failed: ${nvml.errorString(created.code)}`,
    });
    finish();
    return;
  }
  const set = created.value;
  const indexOf = new Map<bigint, number>();
  const count = nvml.deviceCount();
  for (let i = 0; i < (count.ok ? count.value : 0); i++) {
    const h = nvml.handleByIndex(i);
    // A device that cannot record XIDs (NOT_SUPPORTED, e.g. some vGPUs) is left out; the others still are.
    if (h.ok && nvml.registerEvents(h.value, NVML_EVENT_TYPE_XID_CRITICAL_ERROR, set) === NVML.SUCCESS) {
      indexOf.set(h.value, i);
    }
  }
  post({ type: 'events-ready', monitored: [...indexOf.values()] });
  if (indexOf.size === 0) {
    finish(set);
    return;
  }

  const waitMs = data.eventWaitTimeoutMs ?? 500;
  let lastError = '';
  while (!stopping) {
    const r = nvml.eventSetWait(set, waitMs);
    if (r.ok) {
      const device = indexOf.get(r.value.device);
      if (device !== undefined && (r.value.eventType & NVML_EVENT_TYPE_XID_CRITICAL_ERROR) !== 0n) {
        post({ type: 'xid', device, xid: Number(r.value.eventData), gpuInstanceId: r.value.gpuInstanceId });
      }
      lastError = '';
    } else if (r.code !== NVML.ERROR_TIMEOUT) {
      // GPU_IS_LOST and friends: say so once, and wait before asking again rather than spinning.
      const message = `nvmlEventSetWait failed: ${nvml.errorString(r.code)}`;
      if (message !== lastError) post({ type: 'events-error', message });
      lastError = message;
      await sleep(1000);
    }
    // Lets the 'close' message in between two waits.
    await yieldToLoop();
  }
  finish(set);
}

if (data.role === 'events') void runEvents(port);
else runSampler(port);
