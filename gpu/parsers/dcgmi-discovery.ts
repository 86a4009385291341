import { dcgmString } from './dcgm-fields.js';

/** One GPU as `dcgmi discovery -l` lists it. */
export interface DcgmiDiscoveredGpu {
  /** DCGM's GPU id, the `n` of `GPU n` in `dcgmi dmon` rows. */
  gpuId: number;
  name?: string;
  pciBusId?: string;
  uuid?: string;
  /** DCGM 4 with `--all`: a GPU that is not OK says why. */
  status?: string;
}

export interface DcgmiDiscovery {
  gpus: DcgmiDiscoveredGpu[];
  /** The count from the `N GPUs found.` line, when there was one. */
  declaredCount?: number;
}

const FOUND_GPUS = /^(\d+) GPUs? found\b/;
const FOUND_OTHER = /^\d+ \S.* found\b/;

/**
 * Parses `dcgmi discovery -l`:
 *
 *   4 GPUs found.                       (DCGM 4: "4 GPUs found (Active).")
 *   +--------+----------------------------------------------------------------------+
 *   | GPU ID | Device Information                                                   |
 *   +--------+----------------------------------------------------------------------+
 *   | 0      | Name: NVIDIA H100 80GB HBM3                                          |
 *   |        | PCI Bus ID: 00000000:4C:00.0                                         |
 *   |        | Device UUID: GPU-d6a2c177-4cd8-8d01-0310-79f2720f37de                |
 *   +--------+----------------------------------------------------------------------+
 *   0 NvSwitches found.
 *
 * Only the GPU table is read; NvSwitch, ConnectX and CPU tables after it are not. DCGM's blank-string
 * sentinel (`Name: <<<NULL>>>`, seen on real H100 hosts) and the `(last known)` suffix DCGM 4 adds to
 * cached values of inactive GPUs do not reach the result.
 */
export function parseDcgmiDiscovery(text: string): DcgmiDiscovery {
  const gpus: DcgmiDiscoveredGpu[] = [];
  let declaredCount: number | undefined;
  let inGpuTable = false;
  let current: DcgmiDiscoveredGpu | undefined;

  for (const raw of text.split('\n')) {
    const line = raw.trim();
    const found = FOUND_GPUS.exec(line);
    if (found) {
      declaredCount = Number(found[1]);
      inGpuTable = true;
      continue;
    }
    if (FOUND_OTHER.test(line)) {
      inGpuTable = false;
      continue;
    }
    if (!inGpuTable || !line.startsWith('|')) continue;
    const cells = line.split('|').map((c) => c.trim());
    const idCell = cells[1] ?? '';
    const info = cells[2] ?? '';
    if (/^\d+$/.test(idCell)) {
      current = { gpuId: Number(idCell) };
      gpus.push(current);
    } else if (idCell !== '') {
      continue; // the "GPU ID | Device Information" title row
    }
    if (!current) continue;
    const kv = /^([A-Za-z][A-Za-z ]*?):\s*(.*)$/.exec(info);
    if (!kv) continue;
    const value = dcgmString((kv[2] ?? '').replace(/\s*\(last known\)$/, ''));
    switch (kv[1]) {
      case 'Name':
        if (value !== undefined) current.name = value;
        break;
      case 'PCI Bus ID':
        if (value !== undefined) current.pciBusId = value;
        break;
      case 'Device UUID':
        if (value !== undefined) current.uuid = value;
        break;
      case 'Status':
        if (value !== undefined) current.status = value;
        break;
    }
  }
  return declaredCount === undefined ? { gpus } : { gpus, declaredCount };
}
