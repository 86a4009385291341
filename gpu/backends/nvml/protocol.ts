/** Messages between the NVML backend and its worker threads. Plain data only: they cross a MessagePort. */
import type { FailureCategory } from '../../errors.js';
import type { GpuDevice } from '../../types.js';

export type WorkerRole = 'sampler' | 'events';

export interface NvmlWorkerData {
  role: WorkerRole;
  libraryPath: string;
  /** events: how long one nvmlEventSetWait blocks, which bounds how late a stop request is seen. */
  eventWaitTimeoutMs?: number;
  /** sampler: read PCIe throughput (20 ms per direction per GPU inside NVML). */
  pcieThroughput?: boolean;
}

export interface WorkerFailure {
  ok: false;
  category: FailureCategory;
  message: string;
  /** The library needs a fresh nvmlInit (driver unloaded or reloaded under us). */
  reinit?: boolean;
}

/** A device as the worker reads it; the main thread adds what only it knows (XID counts). */
export type NvmlDeviceReading = Omit<GpuDevice, 'xidErrors'>;

export interface NvmlReading {
  driverVersion?: string;
  cudaVersion?: string;
  devices: NvmlDeviceReading[];
}

export type MainToWorker = { type: 'init'; id: number } | { type: 'sample'; id: number } | { type: 'close' };

export type SamplerReply =
  { type: 'reply'; id: number; result: { ok: true; value: unknown } | WorkerFailure } | { type: 'closed' };

export interface InitInfo {
  symbols: Record<string, string | null>;
  hasEvents: boolean;
  deviceCount: number;
  driverVersion?: string;
}

export type EventsToMain =
  | { type: 'events-ready'; monitored: number[] }
  | { type: 'events-unavailable'; reason: string }
  | { type: 'xid'; device: number; xid: number; gpuInstanceId?: number }
  | { type: 'events-error'; message: string }
  | { type: 'closed' };
