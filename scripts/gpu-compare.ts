/**
 * Reads the real GPUs of this machine through every backend that works here, side by side, for
 * `--seconds` (default 20), and checks that they agree: memory used within 1 % (or 8 MiB) of each
 * other at the same moment, and utilization following the same trend. Prints one table and a JSON
 * summary; exits 1 when backends disagree or none works. scripts/gpu-smoke.sh runs it under load.
 *
 *   node dist/scripts/gpu-compare.js [--seconds 20] [--json out.json]
 */
import { writeFileSync } from 'node:fs';
import {
  DcgmiBackend,
  NvidiaSmiBackend,
  NvmlBackend,
  probeDcgm,
  probeNvidiaSmi,
  probeNvml,
} from '../gpu/index.js';
import type { GpuBackend, GpuSample } from '../gpu/index.js';

const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? fallback : (process.argv[i + 1] ?? fallback);
};
const seconds = Number(arg('seconds', '20'));
const jsonOut = arg('json', '');
const MIB = 1024 * 1024;

interface Reading {
  at: number;
  ms: number;
  sample?: GpuSample;
  error?: string;
}

async function available(): Promise<GpuBackend[]> {
  const out: GpuBackend[] = [];
  const nvml = await probeNvml({ timeoutMs: 10_000 });
  console.log(
    `nvml: ${nvml.ok ? `${nvml.deviceCount} GPU(s), driver ${nvml.driverVersion ?? '?'}` : nvml.reason}`,
  );
  if (nvml.ok) out.push(new NvmlBackend());
  const smi = await probeNvidiaSmi(AbortSignal.timeout(10_000));
  console.log(`nvidia-smi: ${smi.ok ? (smi.detail ?? 'ok') : smi.reason}`);
  if (smi.ok) out.push(new NvidiaSmiBackend({ detailIntervalMs: 5000 }));
  const dcgm = await probeDcgm({ timeoutMs: 5000 });
  console.log(`dcgm: ${dcgm.ok ? `via ${dcgm.via}` : dcgm.reason}`);
  if (dcgm.ok && dcgm.via === 'dcgmi') out.push(new DcgmiBackend({ intervalMs: 1000 }));
  return out;
}

async function main(): Promise<void> {
  const backends = await available();
  if (backends.length === 0) {
    console.error('no backend works on this machine');
    process.exit(1);
  }
  const readings = new Map<string, Reading[]>(backends.map((b) => [b.name, []]));
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    const tick = Date.now();
    // One after another, so each reading is of the same second and no tool slows another.
    for (const b of backends) {
      const t0 = performance.now();
      try {
        const sample = await b.sample(AbortSignal.timeout(10_000));
        readings.get(b.name)!.push({ at: Date.now(), ms: performance.now() - t0, sample });
      } catch (err) {
        readings
          .get(b.name)!
          .push({ at: Date.now(), ms: performance.now() - t0, error: (err as Error).message });
      }
    }
    await new Promise((r) => setTimeout(r, Math.max(0, 1000 - (Date.now() - tick))));
  }
  for (const b of backends) await b.close();

  const problems: string[] = [];
  const summary: Record<string, unknown> = {};
  console.log(
    '\nbackend       samples  errors  median ms  GPU0 memory used MiB (first/last)  GPU0 util % (min/max)',
  );
  for (const [name, rs] of readings) {
    const ok = rs.filter((r) => r.sample);
    const ms = ok.map((r) => r.ms).sort((a, b) => a - b);
    const mem = ok.map((r) => r.sample!.devices[0]?.memory.usedBytes ?? NaN);
    const util = ok
      .map((r) => r.sample!.devices[0]?.utilization.gpuPercent)
      .filter((u): u is number => u !== undefined);
    summary[name] = {
      samples: rs.length,
      errors: rs.filter((r) => r.error).map((r) => r.error),
      median_ms: ms[Math.floor(ms.length / 2)],
      gpu0_memory_used_mib: mem.map((m) => Math.round(m / MIB)),
      gpu0_utilization_percent: util,
    };
    console.log(
      `${name.padEnd(12)} ${String(rs.length).padStart(8)} ${String(rs.length - ok.length).padStart(7)} ${(ms[Math.floor(ms.length / 2)] ?? NaN).toFixed(1).padStart(10)}  ${`${Math.round((mem[0] ?? NaN) / MIB)}/${Math.round((mem.at(-1) ?? NaN) / MIB)}`.padStart(33)}  ${`${Math.min(...util)}/${Math.max(...util)}`.padStart(20)}`,
    );
    if (ok.length < rs.length / 2) problems.push(`${name}: most samples failed`);
  }

  // Memory at the same moments: each pair of backends, reading by reading.
  const names = [...readings.keys()];
  for (let i = 0; i < names.length; i++) {
    for (let j = i + 1; j < names.length; j++) {
      const a = readings.get(names[i]!)!;
      const b = readings.get(names[j]!)!;
      let worst = 0;
      for (let k = 0; k < Math.min(a.length, b.length); k++) {
        const da = a[k]!.sample?.devices;
        const db = b[k]!.sample?.devices;
        if (!da || !db) continue;
        for (const d of da) {
          const e = db.find((x) => x.uuid === d.uuid) ?? db[d.index];
          if (!e) continue;
          const diff = Math.abs(d.memory.usedBytes - e.memory.usedBytes);
          const rel = diff / Math.max(d.memory.totalBytes, 1);
          if (diff > 8 * MIB && rel > 0.01) worst = Math.max(worst, rel);
        }
      }
      const verdict =
        worst === 0 ? 'agree within 1 %' : `differ by up to ${(worst * 100).toFixed(2)} % of memory`;
      console.log(`memory ${names[i]} vs ${names[j]}: ${verdict}`);
      if (worst > 0) problems.push(`memory ${names[i]} vs ${names[j]} ${verdict}`);
      // Utilization trend: both see load (>= 50 %) and both see it fall, or neither.
      const loaded = (rs: Reading[]): boolean =>
        rs.some((r) => (r.sample?.devices[0]?.utilization.gpuPercent ?? 0) >= 50);
      if (loaded(a) !== loaded(b))
        problems.push(`utilization trend: only one of ${names[i]} and ${names[j]} saw the load`);
    }
  }
  if (jsonOut)
    writeFileSync(jsonOut, `${JSON.stringify({ seconds, backends: summary, problems }, null, 2)}\n`);
  if (problems.length) {
    console.log(`\nPROBLEMS:\n${problems.map((p) => `- ${p}`).join('\n')}`);
    process.exit(1);
  }
  console.log('\nall backends agree');
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
