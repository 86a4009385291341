/**
 * Builds the fake libnvidia-ml (test/fakes/nvml/fake_nvml.c) with the system C compiler, once per
 * variant per test run, and drives it through its state file.
 *
 * State keys (one `key=value` per line; absent keys take the fake's defaults, one GPU):
 *   device_count, driver_version, cuda_version (e.g. 12040), init_error (an nvmlReturn_t for nvmlInit),
 *   query_error (an nvmlReturn_t every query answers after a good init, e.g. 9 as if the driver left),
 *   hang=1 (every query, or those named in hang_on=fnA,fnB, blocks until hang is cleared),
 *   hang_ms=N (each such query sleeps N ms), hang_marker=path (each call that starts to hang appends
 *   its name there: see hungCalls), unsupported=driver_version,cuda_version,process_name,
 *   process_names=pid:name,..., xid_events=device:xid[:gpuInstanceId],... (delivered in order, each
 *   once; append to add more, a shorter list starts over),
 *   gpuN.name, .uuid, .bus_id, .serial, .vbios, .memory_total, .memory_reserved, .memory_used (bytes;
 *   used excludes reserved), .util_gpu, .util_memory, .encoder, .decoder, .temperature,
 *   .memory_temperature, .power_mw, .power_limit_mw, .energy_mj, .clock_sm, .clock_mem, .max_clock_sm,
 *   .max_clock_mem, .clock_reasons (bitmask), .ecc_corrected, .ecc_uncorrected, .pstate, .fan,
 *   .pcie_gen, .pcie_width, .pcie_tx_kbs, .pcie_rx_kbs, .mig_mode (0/1),
 *   .migs=gi:ci:totalBytes:usedBytes:uuid,..., .processes=pid:usedBytes|na[:gi[:ci]],...,
 *   .unsupported=name,uuid,serial,vbios,pci,memory,utilization,encoder,decoder,temperature,
 *     memory_temperature,power,power_limit,energy,clocks,max_clocks,clock_reasons,ecc,pstate,fan,
 *     pcie_link,pcie_throughput,mig,processes,events (each answers NOT_SUPPORTED),
 *     handle (nvmlDeviceGetHandleByIndex answers GPU_IS_LOST)
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root (this file runs from dist/test/helpers). */
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const SOURCE = path.join(ROOT, 'test/fakes/nvml/fake_nvml.c');

/** `modern`: a current driver. `legacy`: an old one, without the versioned calls. `minimal`: bare. */
export type FakeNvmlVariant = 'modern' | 'legacy' | 'minimal';

const FLAGS: Record<FakeNvmlVariant, string[]> = {
  modern: [],
  legacy: ['-DFAKE_NVML_LEGACY'],
  minimal: ['-DFAKE_NVML_MINIMAL'],
};

let workDir: string | undefined;
const built = new Map<FakeNvmlVariant, string>();

function dir(): string {
  if (!workDir) {
    workDir = mkdtempSync(path.join(os.tmpdir(), 'gpa-fake-nvml-'));
    const d = workDir;
    process.on('exit', () => {
      // Removing the state file also releases calls still blocked on `hang`: Node waits for every
      // worker thread at exit, including one stuck in the fake.
      rmSync(d, { recursive: true, force: true });
    });
  }
  return workDir;
}

/**
 * The fake reads FAKE_NVML_STATE once, from the process environment (worker threads share it), so one
 * path serves the whole run. Set before any library is loaded.
 */
export const FAKE_NVML_STATE = path.join(dir(), 'state');
process.env.FAKE_NVML_STATE = FAKE_NVML_STATE;

export class NoCompilerError extends Error {}

/**
 * Path of `libnvidia-ml.so.1` built as `variant`. Throws NoCompilerError when there is no C compiler
 * (use `fakeNvmlOrSkip` in tests).
 */
export function buildFakeNvml(variant: FakeNvmlVariant): string {
  const done = built.get(variant);
  if (done) return done;
  const out = path.join(dir(), variant);
  mkdirSync(out, { recursive: true });
  const lib = path.join(out, 'libnvidia-ml.so.1');
  const cc = process.env.CC || 'cc';
  try {
    execFileSync(
      cc,
      [
        '-shared',
        '-fPIC',
        '-O1',
        '-Wall',
        '-Wextra',
        '-Werror',
        '-fvisibility=hidden',
        ...FLAGS[variant],
      ].concat(['-o', lib, SOURCE, '-lpthread']),
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new NoCompilerError(`no C compiler (${cc}) to build the fake libnvidia-ml`);
    }
    const stderr = (err as { stderr?: Buffer }).stderr?.toString() ?? '';
    throw new Error(`building the fake libnvidia-ml (${variant}) failed:\n${stderr}`, { cause: err });
  }
  built.set(variant, lib);
  return lib;
}

/** The fake built as `variant`; skips the test without a compiler, except under CI where that fails. */
export function fakeNvmlOrSkip(ctx: Mocha.Context, variant: FakeNvmlVariant): string {
  try {
    return buildFakeNvml(variant);
  } catch (err) {
    if (err instanceof NoCompilerError && !process.env.CI) ctx.skip();
    throw err;
  }
}

export type FakeNvmlState = Record<string, string | number | bigint>;

/**
 * Replaces the fake's whole state. Written to a new file and renamed over the old one, so a call never
 * sees half a file and the inode change is noticed even within one mtime tick.
 */
export function setFakeNvmlState(state: FakeNvmlState): void {
  const text = Object.entries(state)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : v.toString()}\n`)
    .join('');
  const tmp = `${FAKE_NVML_STATE}.${process.pid}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, FAKE_NVML_STATE);
}

/** Where the fake records calls that started to hang, when the state names it as `hang_marker`. */
export const HANG_MARKER = path.join(dir(), 'hung-calls');

/** Names of the calls that have started to hang since the last `clearHungCalls()`. */
export function hungCalls(): string[] {
  try {
    return readFileSync(HANG_MARKER, 'utf8').split('\n').filter(Boolean);
  } catch {
    return [];
  }
}

export function clearHungCalls(): void {
  rmSync(HANG_MARKER, { force: true });
}
