import { readFile } from 'node:fs/promises';
import si from 'systeminformation';
import type { Logger } from 'pino';

export interface SystemMemory {
  totalBytes: number;
  availableBytes: number;
  usedBytes: number;
  freeBytes: number;
  swapTotalBytes: number;
  swapUsedBytes: number;
}

export interface CgroupMemory {
  version: 1 | 2;
  /** Undefined when the cgroup has no limit. */
  limitBytes?: number;
  usageBytes: number;
}

export interface HostSnapshot {
  takenAt: number;
  system?: SystemMemory;
  cgroup: CgroupMemory | null;
}

export interface HostReaders {
  systemMemory(): Promise<SystemMemory>;
  cgroupMemory(): Promise<CgroupMemory | null>;
}

/** Reads host memory through systeminformation (never `graphics()`: it runs nvidia-smi synchronously). */
export async function readSystemMemory(): Promise<SystemMemory> {
  const m = await si.mem();
  return {
    totalBytes: m.total,
    availableBytes: m.available,
    usedBytes: m.used,
    freeBytes: m.free,
    swapTotalBytes: m.swaptotal,
    swapUsedBytes: m.swapused,
  };
}

/** Parses cgroup v2 `memory.max` / `memory.current` (or v1 limit/usage files); `max` means no limit. */
export function parseCgroupMemory(version: 1 | 2, limitText: string, usageText: string): CgroupMemory | null {
  const usage = Number(usageText.trim());
  if (!Number.isFinite(usage)) return null;
  const l = limitText.trim();
  let limit: number | undefined = l === 'max' ? undefined : Number(l);
  // cgroup v1 says "no limit" with a page-rounded near-2^63 value.
  if (limit !== undefined && (!Number.isFinite(limit) || limit >= 2 ** 62)) limit = undefined;
  return { version, limitBytes: limit, usageBytes: usage };
}

/**
 * The cgroup v2 directory of this process, from /proc/self/cgroup (`0::/path`). In a container it is
 * usually the root of its own namespace; on a host it is a subtree, and the root's files would
 * describe the whole machine.
 */
export function cgroupV2Path(procSelfCgroup: string): string | undefined {
  const line = procSelfCgroup.split('\n').find((l) => l.startsWith('0::'));
  return line === undefined ? undefined : line.slice(3).trim() || '/';
}

/** The cgroup v1 memory controller path of this process (`N:memory:/path`). */
export function cgroupV1MemoryPath(procSelfCgroup: string): string | undefined {
  const line = procSelfCgroup.split('\n').find((l) => /^\d+:([^:]*,)?memory(,[^:]*)?:/.test(l));
  return line === undefined
    ? undefined
    : line.slice(line.indexOf(':', line.indexOf(':') + 1) + 1).trim() || '/';
}

export async function readCgroupMemory(
  root = '/sys/fs/cgroup',
  selfCgroup = '/proc/self/cgroup',
): Promise<CgroupMemory | null> {
  const tryRead = (f: string): Promise<string | undefined> => readFile(f, 'utf8').catch(() => undefined);
  const selfText = (await tryRead(selfCgroup)) ?? '';
  const own = cgroupV2Path(selfText);
  const dir = own === undefined || own === '/' ? root : `${root}${own}`;
  // Memory limits can sit on an ancestor; the own directory's memory.max is what applies to it, and
  // it exists on every cgroup below the root.
  const [max2, cur2] = await Promise.all([tryRead(`${dir}/memory.max`), tryRead(`${dir}/memory.current`)]);
  if (max2 !== undefined && cur2 !== undefined) return parseCgroupMemory(2, max2, cur2);
  const own1 = cgroupV1MemoryPath(selfText);
  const dir1 = own1 === undefined || own1 === '/' ? `${root}/memory` : `${root}/memory${own1}`;
  const [lim1, use1] = await Promise.all([
    tryRead(`${dir1}/memory.limit_in_bytes`),
    tryRead(`${dir1}/memory.usage_in_bytes`),
  ]);
  if (lim1 !== undefined && use1 !== undefined) return parseCgroupMemory(1, lim1, use1);
  return null;
}

export const realHostReaders: HostReaders = {
  systemMemory: readSystemMemory,
  cgroupMemory: () => readCgroupMemory(),
};

/** Host and cgroup memory, refreshed on a timer so `/debug/memory` never reads files itself. */
export class HostStore {
  private snap: HostSnapshot = { takenAt: 0, cgroup: null };
  private timer: NodeJS.Timeout | undefined;
  private running = false;

  constructor(
    private readonly readers: HostReaders,
    private readonly intervalMs: number,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  snapshot(): HostSnapshot {
    return this.snap;
  }

  async refresh(): Promise<void> {
    const [system, cgroup] = await Promise.allSettled([
      this.readers.systemMemory(),
      this.readers.cgroupMemory(),
    ]);
    this.snap = {
      takenAt: this.now(),
      system: system.status === 'fulfilled' ? system.value : this.snap.system,
      cgroup: cgroup.status === 'fulfilled' ? cgroup.value : this.snap.cgroup,
    };
    if (system.status === 'rejected')
      this.logger.debug({ error: system.reason as unknown }, 'host memory read failed');
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    const loop = (): void => {
      this.refresh()
        .catch(() => undefined)
        .finally(() => {
          if (!this.running) return;
          this.timer = setTimeout(loop, this.intervalMs);
          this.timer.unref();
        });
    };
    loop();
  }

  stop(): void {
    this.running = false;
    clearTimeout(this.timer);
  }
}
