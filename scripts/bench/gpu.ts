/**
 * The cost of one GPU sample of 8 GPUs through each way of reading them, measured in the same run:
 * NVML through koffi (against the fake libnvidia-ml built from C), nvidia-smi's CSV fast path and its
 * -q -x report (against the fake nvidia-smi replaying real captures), and the npm package
 * node-nvidia-smi (exec + xml2js on the same report), as ratios to NVML.
 *
 *   npm run bench:gpu                     (GPU_BENCH_SAMPLES=30)
 *   node dist/scripts/bench/gpu.js --real on a machine with NVIDIA GPUs: the real driver and tools,
 *                                         however many GPUs it has (scripts/gpu-smoke.sh runs this)
 *
 * Wall time is what the poller waits; "agent CPU" is the CPU this process spends per sample (parsing,
 * marshalling), which is what the agent pays beside the tool itself. On a real GPU, run
 * scripts/gpu-smoke.sh: the fakes are cheaper than a driver and nvidia-smi's own start-up.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { NvidiaSmiBackend, NvmlBackend } from '../../gpu/index.js';
import type { GpuBackend } from '../../gpu/index.js';
import { ROOT, median } from './common.js';

const SAMPLES = Number(process.env.GPU_BENCH_SAMPLES ?? 30);
const REAL = process.argv.includes('--real');
let GPUS = 8;
const MIB = 1024 * 1024;

interface Cost {
  wallMs: number;
  cpuMs: number;
}

async function measure(sample: () => Promise<unknown>): Promise<Cost> {
  for (let i = 0; i < 3; i++) await sample();
  const walls: number[] = [];
  const cpus: number[] = [];
  for (let i = 0; i < SAMPLES; i++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await sample();
    walls.push(performance.now() - t0);
    const c = process.cpuUsage(c0);
    cpus.push((c.user + c.system) / 1000);
  }
  return { wallMs: median(walls), cpuMs: median(cpus) };
}

/** An 8-GPU `-q -x` report: a real 2-GPU capture's GPUs repeated, each with its own UUID and bus id. */
function eightGpuReport(): string {
  const xml = readFileSync(
    path.join(ROOT, 'test/fixtures/real/nvidia-smi-q-x_2x-rtx-a5000_driver-590.44.01_dtd-v13_procs.xml'),
    'utf8',
  );
  const gpus = [...xml.matchAll(/<gpu id="[^"]*">[\s\S]*?\n\t<\/gpu>/g)].map((m) => m[0]);
  const body = Array.from({ length: GPUS }, (_, i) =>
    (gpus[i % gpus.length] as string)
      .replace(/<gpu id="[^"]*">/, `<gpu id="00000000:${(0x10 + i).toString(16).padStart(2, '0')}:00.0">`)
      .replace(
        /<uuid>GPU-([0-9a-f-]+?)[0-9a-f]{2}<\/uuid>/,
        (_m, p: string) => `<uuid>GPU-${p}${i.toString(16).padStart(2, '0')}</uuid>`,
      ),
  ).join('\n');
  const start = xml.indexOf(gpus[0] as string);
  const end = xml.indexOf(gpus.at(-1) as string) + (gpus.at(-1) as string).length;
  return (
    xml
      .slice(0, start)
      .replace(/<attached_gpus>\d+<\/attached_gpus>/, `<attached_gpus>${GPUS}</attached_gpus>`) +
    body +
    xml.slice(end)
  );
}

/** Builds the fake libnvidia-ml with the system compiler and writes an 8-GPU state for it. */
function fakeNvml(dir: string): string {
  const lib = path.join(dir, 'libnvidia-ml.so.1');
  execFileSync(process.env.CC || 'cc', [
    '-shared',
    '-fPIC',
    '-O1',
    '-o',
    lib,
    path.join(ROOT, 'test/fakes/nvml/fake_nvml.c'),
    '-lpthread',
  ]);
  const state = [`device_count=${GPUS}`, 'driver_version=550.90.07', 'cuda_version=12040'];
  for (let i = 0; i < GPUS; i++) {
    state.push(
      `gpu${i}.name=NVIDIA H100 80GB HBM3`,
      `gpu${i}.uuid=GPU-5d7a3b0e-1c2f-4a6b-9e8d-7f6a5b4c3d${i.toString(16).padStart(2, '0')}`,
      `gpu${i}.memory_total=${81559 * MIB}`,
      `gpu${i}.memory_used=${20000 * MIB}`,
      `gpu${i}.processes=${1000 + i}:${19000 * MIB}`,
    );
  }
  const file = path.join(dir, 'state');
  writeFileSync(file, `${state.join('\n')}\n`);
  process.env.FAKE_NVML_STATE = file;
  return lib;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'gpa-bench-gpu-'));
  try {
    let lib: string | undefined;
    if (REAL) {
      const out = execFileSync('nvidia-smi', ['-L'], { encoding: 'utf8' });
      GPUS = out.split('\n').filter((l) => l.startsWith('GPU ')).length;
    } else {
      const bin = path.join(dir, 'bin');
      mkdirSync(bin);
      // node-nvidia-smi runs plain `nvidia-smi` from PATH: put the fake there under that name.
      execFileSync('ln', ['-s', path.join(ROOT, 'test/fakes/nvidia-smi'), path.join(bin, 'nvidia-smi')]);
      const report = path.join(dir, 'report.xml');
      writeFileSync(report, eightGpuReport());
      Object.assign(process.env, {
        PATH: `${bin}:${process.env.PATH ?? ''}`,
        FAKE_NVIDIA_SMI_GPUS: String(GPUS),
        FAKE_NVIDIA_SMI_XML: report,
        FAKE_NVIDIA_SMI_APPS: path.join(
          ROOT,
          'test/fixtures/real/query-compute-apps_csv_rtx-4080-super_driver-595.71.05_load.csv',
        ),
      });
      lib = fakeNvml(dir);
    }
    const signal = new AbortController().signal;
    const through = (b: GpuBackend) => async () => {
      const s = await b.sample(signal);
      if (s.devices.length !== GPUS) throw new Error(`${b.name}: ${s.devices.length} GPUs, expected ${GPUS}`);
    };

    const nvml = new NvmlBackend({ libraryPath: lib, xidEvents: false });
    const csv = new NvidiaSmiBackend({ path: 'nvidia-smi', detailIntervalMs: 86_400_000 });
    const xml = new NvidiaSmiBackend({ path: 'nvidia-smi' });
    // The report alone, as for an nvidia-smi without the CSV queries.
    const report = async (): Promise<void> => {
      if (!REAL) process.env.FAKE_NVIDIA_SMI_MODE = 'xml-only';
      try {
        await through(xml)();
      } finally {
        delete process.env.FAKE_NVIDIA_SMI_MODE;
      }
    };
    const require = createRequire(import.meta.url);
    let nodeNvidiaSmi: ((cb: (err: unknown, data: unknown) => void) => void) | undefined;
    try {
      nodeNvidiaSmi = require('node-nvidia-smi') as typeof nodeNvidiaSmi;
    } catch {
      // A machine the project was carried to without its dev dependencies.
    }
    const viaPackage = (): Promise<unknown> =>
      new Promise((resolve, reject) =>
        nodeNvidiaSmi!((err, data) =>
          err ? reject(err instanceof Error ? err : new Error(JSON.stringify(err))) : resolve(data),
        ),
      );

    const tool = REAL ? 'real' : 'fake';
    const results: [string, Cost][] = [
      [`NVML via koffi (${tool} libnvidia-ml)`, await measure(through(nvml))],
      [`nvidia-smi CSV fast path (${tool} nvidia-smi)`, await measure(through(csv))],
      [`nvidia-smi -q -x report (${tool} nvidia-smi)`, await measure(report)],
    ];
    if (nodeNvidiaSmi) results.push([`node-nvidia-smi 1.0.0 (same ${tool} tool)`, await measure(viaPackage)]);
    await nvml.close();
    await csv.close();
    await xml.close();

    const base = results[0]![1];
    console.log(`GPU sample cost, ${GPUS} GPU(s), median of ${SAMPLES} samples each, same run`);
    console.log('source                                              wall ms   ×NVML   agent CPU ms   ×NVML');
    for (const [name, c] of results) {
      console.log(
        `${name.padEnd(50)} ${c.wallMs.toFixed(2).padStart(8)} ${(c.wallMs / base.wallMs).toFixed(1).padStart(7)}   ${c.cpuMs.toFixed(2).padStart(12)} ${(c.cpuMs / Math.max(base.cpuMs, 0.001)).toFixed(1).padStart(7)}`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
