import { errorMessage } from './errors.js';
import type { BackendName, GpuBackend, GpuLogger } from './types.js';
import { silentLogger } from './types.js';

export type ProbeResult = { ok: true; detail?: string } | { ok: false; reason: string };

/** One backend auto-detection can try: a cheap check that it works here, and its constructor. */
export interface BackendCandidate {
  name: BackendName;
  probe(signal: AbortSignal): Promise<ProbeResult>;
  create(): GpuBackend;
}

export interface Attempt {
  name: BackendName;
  ok: boolean;
  /** Why it was not chosen, or what the probe found. */
  detail: string;
}

export type Detection =
  { backend: GpuBackend; attempts: Attempt[] } | { backend: undefined; attempts: Attempt[]; reason: string };

/**
 * Tries candidates in order (NVML, DCGM, nvidia-smi, as the agent lists them) and returns the first
 * whose probe passes within `probeTimeoutMs`. Never falls back to simulated GPUs: with none working,
 * the result says why each one failed.
 */
export async function detectBackend(
  candidates: readonly BackendCandidate[],
  opts: { probeTimeoutMs: number; logger?: GpuLogger },
): Promise<Detection> {
  const logger = opts.logger ?? silentLogger;
  const attempts: Attempt[] = [];
  for (const c of candidates) {
    const signal = AbortSignal.timeout(opts.probeTimeoutMs);
    let result: ProbeResult;
    try {
      result = await Promise.race([
        c.probe(signal),
        new Promise<ProbeResult>((resolve) =>
          signal.addEventListener(
            'abort',
            () => resolve({ ok: false, reason: `no answer within ${opts.probeTimeoutMs} ms` }),
            {
              once: true,
            },
          ),
        ),
      ]);
    } catch (err) {
      result = { ok: false, reason: errorMessage(err) };
    }
    const attempt = {
      name: c.name,
      ok: result.ok,
      detail: result.ok ? (result.detail ?? 'available') : result.reason,
    };
    attempts.push(attempt);
    logger.info({ data: attempt }, result.ok ? 'gpu backend found' : 'gpu backend not available');
    if (result.ok) return { backend: c.create(), attempts };
  }
  const reason =
    attempts.length === 0
      ? 'no GPU backend to try'
      : `no GPU backend works here: ${attempts.map((a) => `${a.name}: ${a.detail}`).join('; ')}`;
  return { backend: undefined, attempts, reason };
}
