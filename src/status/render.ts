/**
 * The terminal view of `gpu-pod-agent status`: what a running agent's endpoints say, as a few lines
 * like gpustat's. Pure: it takes the fetched answers and the terminal's width, and returns the text.
 */

export interface GpuLine {
  index: number;
  name: string | null;
  memory_used_mb: number | null;
  memory_total_mb: number | null;
  utilization_percent: number | null;
  temperature_c: number | null;
  power_w: number | null;
  power_limit_w: number | null;
}

export interface StatusAnswer {
  pod_id: string;
  status: string;
  uptime_s: number;
  version: string;
  gpu_backend: string;
  gpu_backend_up: boolean;
  stale: boolean;
  sample_age_ms: number | null;
  current_job: {
    job_id: string;
    queue: string;
    state: string;
    progress_percent: number | null;
    elapsed_ms: number | null;
    attempts?: number;
    nodes_total: number | null;
    nodes_completed: number | null;
    node: {
      id: string;
      step: number | null;
      total: number | null;
      progress_percent: number | null;
    } | null;
  } | null;
  gpus: GpuLine[];
}

export interface ReadyAnswer {
  status: string;
  checks?: Record<string, { status: string; reason?: unknown }>;
}

export interface QueueAnswer {
  enabled: boolean;
  reason?: string;
  queue?: string;
  counts?: Record<string, number> | null;
  workers?: number | null;
  redis?: { status: string; latency_ms: number | null };
}

export interface StatusView {
  url: string;
  ready: ReadyAnswer;
  status: StatusAnswer;
  queue: QueueAnswer;
}

export interface RenderOptions {
  /** Columns: no line is longer. */
  width: number;
  color: boolean;
}

const ESC = '\u001b[';
const paint = (on: boolean, code: string, s: string): string => (on ? `${ESC}${code}m${s}${ESC}0m` : s);
// eslint-disable-next-line no-control-regex -- the escape sequences this module writes
const ANSI = /\u001b\[[0-9;]*m/g;

/** Characters a line shows, its color codes aside. */
export function visibleLength(s: string): number {
  return s.replace(ANSI, '').length;
}

/** Cuts a line to `width` visible characters, keeping (and closing) its color codes. */
export function fit(s: string, width: number): string {
  if (visibleLength(s) <= width) return s;
  let out = '';
  let shown = 0;
  let i = 0;
  while (i < s.length && shown < width) {
    if (s.startsWith(ESC, i)) {
      const end = s.indexOf('m', i);
      out += s.slice(i, end + 1);
      i = end + 1;
    } else {
      out += s[i];
      shown++;
      i++;
    }
  }
  return s.includes(ESC) ? `${out}${ESC}0m` : out;
}

/** A bar of `cells` cells filled to `percent`. */
export function bar(percent: number | null, cells: number, color: boolean): string {
  if (cells <= 0) return '';
  if (percent === null || !Number.isFinite(percent)) return paint(color, '2', '·'.repeat(cells));
  const p = Math.min(100, Math.max(0, percent));
  const full = Math.round((p / 100) * cells);
  const code = p >= 90 ? '31' : p >= 60 ? '33' : '32';
  return paint(color, code, '█'.repeat(full)) + paint(color, '2', '░'.repeat(cells - full));
}

const num = (v: number | null | undefined, digits = 0): string =>
  v === null || v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(digits);
const gib = (mb: number | null | undefined): string =>
  num(mb === null || mb === undefined ? null : mb / 1024, 1);

export function duration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '–';
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${(ms / 1000).toFixed(1)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  const h = Math.floor(m / 60);
  return h < 48 ? `${h}h${String(m % 60).padStart(2, '0')}m` : `${Math.floor(h / 24)}d${h % 24}h`;
}

/** Why the pod is not ready, from the checks that fail. */
export function notReadyReason(r: ReadyAnswer): string {
  const failing = Object.entries(r.checks ?? {})
    .filter(([, c]) => c.status !== 'ok' && c.status !== 'disabled')
    .map(([k, c]) => `${k} ${c.status}${typeof c.reason === 'string' ? `: ${c.reason}` : ''}`);
  return failing.join('; ');
}

export function renderStatus(v: StatusView, o: RenderOptions): string {
  const { color } = o;
  const width = Math.max(40, o.width);
  const lines: string[] = [];
  const s = v.status;
  const ready = v.ready.status === 'ok';
  lines.push(
    `${paint(color, '1', 'gpu-pod-agent')} ${s.pod_id} v${s.version} · ` +
      (ready ? paint(color, '32', 'ready') : paint(color, '31', `not ready (${v.ready.status})`)) +
      ` · ${s.status} · up ${duration(s.uptime_s * 1000)} · ${s.gpu_backend}${s.gpu_backend_up ? '' : ' down'}` +
      (s.stale ? paint(color, '33', ` · stale (${duration(s.sample_age_ms)} old)`) : ''),
  );
  if (!ready) {
    const why = notReadyReason(v.ready);
    if (why) lines.push(paint(color, '31', `  ${why}`));
  }

  // GPUs: index, name, temperature, power, then two bars sharing what width is left.
  const names = s.gpus.map((g) => (g.name ?? 'GPU').replace(/^NVIDIA /, ''));
  const nameWidth = Math.min(width < 100 ? 14 : 24, Math.max(3, ...names.map((n) => n.length)));
  s.gpus.forEach((g, i) => {
    const head =
      `[${g.index}] ${(names[i] ?? '').slice(0, nameWidth).padEnd(nameWidth)} ` +
      `${num(g.temperature_c).padStart(3)}°C ${num(g.power_w).padStart(4)} W`;
    const memPct =
      g.memory_used_mb !== null && g.memory_total_mb ? (100 * g.memory_used_mb) / g.memory_total_mb : null;
    const utilText = ` ${num(g.utilization_percent).padStart(3)} %`;
    const memText = ` ${gib(g.memory_used_mb)}/${gib(g.memory_total_mb)} GiB`;
    const fixed = visibleLength(head) + ' util '.length + utilText.length + ' mem '.length + memText.length;
    const cells = Math.max(0, Math.min(20, Math.floor((width - fixed) / 2)));
    lines.push(
      cells >= 3
        ? `${head} util ${bar(g.utilization_percent, cells, color)}${utilText} mem ${bar(memPct, cells, color)}${memText}`
        : `${head} util${utilText} mem${memText}`,
    );
  });
  if (s.gpus.length === 0) lines.push(paint(color, '2', 'no GPU reading'));

  const j = s.current_job;
  if (j) {
    const nodes = j.nodes_total ? ` · ${j.nodes_completed ?? 0}/${j.nodes_total} nodes` : '';
    const head = `job ${j.job_id} ${j.state} · ${duration(j.elapsed_ms)}${nodes}`;
    const pct = ` ${num(j.progress_percent, 1)} %`;
    const cells = Math.max(0, Math.min(30, width - visibleLength(head) - pct.length - 2));
    lines.push(`${paint(color, '1', head)} ${bar(j.progress_percent, cells, color)}${pct}`);
    if (j.node) {
      const n = j.node;
      const step = n.step !== null && n.total !== null ? ` step ${n.step}/${n.total}` : '';
      const nhead = `  node ${paint(color, '36', n.id)}${step}`;
      const npct = n.progress_percent !== null ? ` ${num(n.progress_percent, 1)} %` : '';
      const ncells =
        n.progress_percent !== null
          ? Math.max(0, Math.min(30, width - visibleLength(nhead) - npct.length - 2))
          : 0;
      lines.push(ncells > 0 ? `${nhead} ${bar(n.progress_percent, ncells, color)}${npct}` : nhead);
    }
  } else lines.push(paint(color, '2', 'no job running'));

  const q = v.queue;
  if (q.enabled) {
    const counts = Object.entries(q.counts ?? {})
      .filter(([k, n]) => n > 0 || ['waiting', 'active', 'completed', 'failed'].includes(k))
      .map(([k, n]) => `${k.replace(/_/g, ' ')} ${n}`)
      .join(' · ');
    const redis = q.redis
      ? ` · redis ${q.redis.status}${q.redis.latency_ms !== null ? ` ${num(q.redis.latency_ms, 1)} ms` : ''}`
      : '';
    lines.push(`queue ${q.queue ?? ''}: ${counts || 'no counts yet'} · workers ${q.workers ?? '?'}${redis}`);
  } else lines.push(paint(color, '2', `queue: ${q.reason ?? 'none'}`));

  return lines.map((l) => fit(l, width)).join('\n');
}
