/**
 * The live page at GET /debug/: GPU charts, the current job's node timeline, queue counts, XID and
 * throttle events and a log tail, from the agent's own JSON endpoints and its /debug/events stream.
 * No framework and no network access beyond the agent: it is inlined into the page the agent serves.
 */

// ---- shapes of what the agent answers (the fields this page reads) ----

interface GpuSummary {
  index: number;
  uuid: string | null;
  name: string | null;
  memory_used_mb: number | null;
  memory_total_mb: number | null;
  utilization_percent: number | null;
  temperature_c: number | null;
  power_w: number | null;
  power_limit_w: number | null;
  sm_clock_mhz: number | null;
  throttle_reasons: string[];
  xid_errors_total: number | null;
  processes_count: number | null;
}

/** A device in /debug/gpu, which has the XID detail the summaries leave out. */
interface GpuDevice extends GpuSummary {
  xid_errors?: { total: number; last: { xid: number; at: string } | null };
}

interface NodeProgress {
  steps: number;
  total: number;
}

interface WorkflowNode {
  id: string;
  node_id: string;
  type: string | null;
  status: string;
  progress: NodeProgress | null;
  started_at: string | null;
  ended_at: string | null;
  duration_ms: number | null;
  steps_per_second: number | null;
  gpu_memory_peak_mb: number | null;
  error: { message?: string; exception_type?: string } | string | null;
}

interface Workflow {
  job_id: string | null;
  state: string | null;
  nodes_total: number | null;
  nodes_completed: number | null;
  progress_percent: number | null;
  started_at: string | null;
  finished_at: string | null;
  current_node: string | null;
  gpu_memory_peak_mb: number | null;
  nodes: WorkflowNode[];
}

interface CurrentJob {
  job_id: string;
  queue: string;
  state: string;
  progress_percent: number | null;
  started_at: string | null;
  elapsed_ms: number | null;
  nodes_total: number | null;
  nodes_completed: number | null;
  node: { id: string; step: number | null; total: number | null; progress_percent: number | null } | null;
}

interface Status {
  pod_id: string;
  status: string;
  uptime_s: number;
  version: string;
  gpu_backend: string;
  gpu_backend_up: boolean;
  stale: boolean;
  sample_age_ms: number | null;
  current_job: CurrentJob | null;
  gpus: GpuSummary[];
}

interface Readiness {
  status: string;
  reason?: string;
  checks?: Record<string, { status: string; reason?: unknown }>;
}

interface LogRecord {
  level: string;
  timestamp: string;
  message: string;
  source?: string;
  job_id?: string;
  trace_id?: string;
  [k: string]: unknown;
}

interface JobEvent {
  job_id: string;
  queue: string;
  state: string;
  from: string | null;
  progress_percent: number | null;
  failure: { message: string } | null;
}

interface NodeEvent {
  job_id: string;
  node: { id: string; status: string; step: number | null; total: number | null };
}

interface ProgressEvent {
  job_id: string;
  progress_percent?: number | null;
  node?: { id: string; status: string; step: number | null; total: number | null };
}

// ---- helpers ----

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];
const HISTORY_MS = 10 * 60_000;
const MAX_LOG_ROWS = 500;
const TOKEN_KEY = 'gpu-pod-agent.debug-token';

function $(id: string): HTMLElement {
  const el = document.getElementById(id);
  if (!el) throw new Error(`page element #${id} is missing`);
  return el;
}

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: { className?: string; text?: string; title?: string } = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (props.className) e.className = props.className;
  if (props.text !== undefined) e.textContent = props.text;
  if (props.title !== undefined) e.title = props.title;
  e.append(...children);
  return e;
}

function fmtNum(v: number | null | undefined, digits = 0): string {
  return v === null || v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(digits);
}

function fmtDuration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '–';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${Math.round(s % 60)}s`;
  return `${Math.floor(m / 60)}h ${m % 60}m`;
}

function fmtTime(ms: number): string {
  return new Date(ms).toLocaleTimeString();
}

function gib(mb: number | null | undefined): string {
  return mb === null || mb === undefined ? '–' : (mb / 1024).toFixed(1);
}

function ms(iso: string | null | undefined): number | null {
  if (!iso) return null;
  const t = Date.parse(iso);
  return Number.isNaN(t) ? null : t;
}

function errorText(e: WorkflowNode['error']): string {
  if (!e) return '';
  if (typeof e === 'string') return e;
  return [e.exception_type, e.message].filter(Boolean).join(': ');
}

// ---- talking to the agent ----

let token: string | null = sessionStorage.getItem(TOKEN_KEY);
let askingToken: Promise<void> | null = null;

function authHeaders(extra: Record<string, string> = {}): Record<string, string> {
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

/** Shows the token dialog once; resolves when a token was entered. */
function askToken(wrong: boolean): Promise<void> {
  askingToken ??= new Promise<void>((resolve) => {
    const dialog = $('token-dialog') as HTMLDialogElement;
    const input = $('token-input') as HTMLInputElement;
    $('token-error').textContent = wrong ? 'That token was refused.' : '';
    input.value = '';
    const form = $('token-form') as HTMLFormElement;
    const onSubmit = (): void => {
      const t = input.value.trim();
      if (!t) return;
      token = t;
      sessionStorage.setItem(TOKEN_KEY, t);
      form.removeEventListener('submit', onSubmit);
      askingToken = null;
      resolve();
    };
    form.addEventListener('submit', onSubmit);
    dialog.showModal();
  });
  return askingToken;
}

async function getJson<T>(path: string): Promise<T> {
  for (;;) {
    const res = await fetch(path, {
      headers: authHeaders({ Accept: 'application/json' }),
      cache: 'no-store',
    });
    if (res.status === 401) {
      await askToken(token !== null);
      continue;
    }
    if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
    return (await res.json()) as T;
  }
}

// ---- state ----

interface Series {
  t: number[];
  util: (number | null)[];
  mem: (number | null)[];
  power: (number | null)[];
}

const state = {
  status: null as Status | null,
  gpus: new Map<number, GpuSummary>(),
  series: new Map<number, Series>(),
  lastSampleAt: 0,
  followJob: null as string | null,
  pinnedJob: null as string | null,
  workflow: null as Workflow | null,
  jobs: new Map<string, JobEvent & { at: number }>(),
  logs: [] as LogRecord[],
  logsPaused: false,
  gpuEvents: [] as { at: number; gpu: number; text: string; kind: string }[],
  prevThrottle: new Map<number, string>(),
  prevXid: new Map<number, number>(),
};

function seriesOf(index: number): Series {
  let s = state.series.get(index);
  if (!s) {
    s = { t: [], util: [], mem: [], power: [] };
    state.series.set(index, s);
  }
  return s;
}

function pushSample(
  at: number,
  g: Pick<GpuSummary, 'index' | 'utilization_percent' | 'memory_used_mb' | 'power_w'>,
) {
  const s = seriesOf(g.index);
  if (s.t.length && at <= (s.t[s.t.length - 1] ?? 0)) return;
  s.t.push(at);
  s.util.push(g.utilization_percent);
  s.mem.push(g.memory_used_mb);
  s.power.push(g.power_w);
  const cut = at - HISTORY_MS;
  let drop = 0;
  while (drop < s.t.length && (s.t[drop] ?? 0) < cut) drop++;
  if (drop) {
    s.t.splice(0, drop);
    s.util.splice(0, drop);
    s.mem.splice(0, drop);
    s.power.splice(0, drop);
  }
}

/** XID and throttle changes, found by comparing each GPU's sample with its previous one. */
function noteGpuEvents(at: number, g: GpuSummary): void {
  const reasons = g.throttle_reasons.filter((r) => r !== 'gpu_idle' && r !== 'applications_clocks_setting');
  const key = reasons.join(',');
  const prev = state.prevThrottle.get(g.index);
  if (prev !== undefined && prev !== key) {
    state.gpuEvents.unshift({
      at,
      gpu: g.index,
      kind: key ? 'throttle' : 'clear',
      text: key ? `throttled: ${reasons.join(', ')}` : 'throttling ended',
    });
  }
  state.prevThrottle.set(g.index, key);
  const xid = g.xid_errors_total ?? 0;
  const prevXid = state.prevXid.get(g.index);
  if (prevXid !== undefined && xid > prevXid) {
    state.gpuEvents.unshift({
      at,
      gpu: g.index,
      kind: 'xid',
      text: `XID error (${xid - prevXid} new, ${xid} in all)`,
    });
  }
  state.prevXid.set(g.index, xid);
  state.gpuEvents.length = Math.min(state.gpuEvents.length, 50);
}

// ---- rendering ----

let dirty = new Set<string>();
let frame = 0;
function mark(...parts: string[]): void {
  for (const p of parts) dirty.add(p);
  if (!frame) frame = requestAnimationFrame(render);
}

function render(): void {
  frame = 0;
  const parts = dirty;
  dirty = new Set();
  if (parts.has('header')) renderHeader();
  if (parts.has('gpus')) renderGpus();
  if (parts.has('job')) renderJob();
  if (parts.has('jobs')) renderJobs();
  if (parts.has('gpu-events')) renderGpuEvents();
  if (parts.has('logs')) renderLogs();
}

let readiness: Readiness | null = null;

function renderHeader(): void {
  const s = state.status;
  if (s) {
    $('pod').textContent = `${s.pod_id} · v${s.version}`;
    $('backend').textContent = `GPU backend ${s.gpu_backend}${s.gpu_backend_up ? '' : ' (down)'}`;
  }
  const r = readiness;
  const badge = $('ready');
  if (r) {
    badge.textContent = r.status === 'ok' ? 'ready' : `not ready: ${r.status}`;
    badge.className = `badge ${r.status === 'ok' ? 'ok' : 'bad'}`;
    const failing = Object.entries(r.checks ?? {})
      .filter(([, c]) => c.status !== 'ok' && c.status !== 'disabled')
      .map(([k, c]) => `${k}: ${typeof c.reason === 'string' ? c.reason : c.status}`);
    $('ready-reason').textContent = r.status === 'ok' ? '' : (r.reason ?? failing.join('; '));
  }
}

interface ChartSpec {
  key: 'util' | 'mem' | 'power';
  label: string;
  max: (g: GpuSummary) => number;
  value: (g: GpuSummary) => string;
  color: string;
}

const CHARTS: ChartSpec[] = [
  {
    key: 'util',
    label: 'util',
    max: () => 100,
    value: (g) => `${fmtNum(g.utilization_percent)} %`,
    color: '#4aa3ff',
  },
  {
    key: 'mem',
    label: 'memory',
    max: (g) => g.memory_total_mb ?? 1,
    value: (g) => `${gib(g.memory_used_mb)}/${gib(g.memory_total_mb)} GiB`,
    color: '#b48cff',
  },
  {
    key: 'power',
    label: 'power',
    max: (g) => g.power_limit_w ?? 1,
    value: (g) => `${fmtNum(g.power_w)} W`,
    color: '#f0b429',
  },
];

const gpuCards = new Map<
  number,
  {
    root: HTMLElement;
    title: HTMLElement;
    info: HTMLElement;
    charts: Map<string, { canvas: HTMLCanvasElement; value: HTMLElement }>;
  }
>();

function renderGpus(): void {
  const root = $('gpus');
  if (state.gpus.size === 0) return;
  if (root.querySelector('.empty')) root.textContent = '';
  for (const g of [...state.gpus.values()].sort((a, b) => a.index - b.index)) {
    let card = gpuCards.get(g.index);
    if (!card) {
      const title = el('b');
      const info = el('span', { className: 'dim' });
      const charts = new Map<string, { canvas: HTMLCanvasElement; value: HTMLElement }>();
      const div = el('div', { className: 'gpu' }, el('div', { className: 'title' }, title, info));
      div.dataset.gpu = String(g.index);
      for (const c of CHARTS) {
        const value = el('b');
        const canvas = el('canvas');
        canvas.dataset.chart = c.key;
        div.append(
          el('div', { className: 'chart' }, el('div', { className: 'label', text: c.label }, value), canvas),
        );
        charts.set(c.key, { canvas, value });
      }
      root.append(div);
      card = { root: div, title, info, charts };
      gpuCards.set(g.index, card);
    }
    card.title.textContent = `${g.index} · ${g.name ?? 'GPU'}`;
    card.info.textContent = `${fmtNum(g.temperature_c)} °C · ${fmtNum(g.sm_clock_mhz)} MHz · ${g.processes_count ?? 0} proc`;
    const s = seriesOf(g.index);
    for (const c of CHARTS) {
      const chart = card.charts.get(c.key);
      if (!chart) continue;
      chart.value.textContent = c.value(g);
      drawChart(chart.canvas, s.t, s[c.key], c.max(g), c.color);
    }
  }
  const age = state.lastSampleAt ? Date.now() - state.lastSampleAt : null;
  $('gpu-age').textContent =
    age === null ? '' : `last sample ${fmtDuration(age)} ago${state.status?.stale ? ' (stale)' : ''}`;
}

function drawChart(
  canvas: HTMLCanvasElement,
  t: number[],
  v: (number | null)[],
  max: number,
  color: string,
): void {
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(canvas.clientWidth * dpr));
  const h = Math.max(1, Math.round(canvas.clientHeight * dpr));
  if (canvas.width !== w || canvas.height !== h) {
    canvas.width = w;
    canvas.height = h;
  }
  const ctx = canvas.getContext('2d');
  if (!ctx) return;
  ctx.clearRect(0, 0, w, h);
  ctx.strokeStyle = '#222a33';
  ctx.lineWidth = 1;
  for (const f of [0.25, 0.5, 0.75]) {
    ctx.beginPath();
    ctx.moveTo(0, Math.round(h * f) + 0.5);
    ctx.lineTo(w, Math.round(h * f) + 0.5);
    ctx.stroke();
  }
  // The last HISTORY_MS at most; a younger history fills the width, down to a minute.
  const end = Date.now();
  const span = Math.min(HISTORY_MS, Math.max(60_000, end - (t[0] ?? end)));
  const start = end - span;
  const x = (ts: number): number => ((ts - start) / span) * w;
  const y = (val: number): number => h - 2 - Math.min(Math.max(val / (max || 1), 0), 1) * (h - 4);
  ctx.beginPath();
  let open = false;
  let firstX = 0;
  let lastX = 0;
  for (let i = 0; i < t.length; i++) {
    const val = v[i];
    const ts = t[i] ?? 0;
    if (val === null || val === undefined) continue;
    const px = x(ts);
    if (!open) {
      ctx.moveTo(px, y(val));
      firstX = px;
      open = true;
    } else ctx.lineTo(px, y(val));
    lastX = px;
  }
  if (!open) return;
  ctx.strokeStyle = color;
  ctx.lineWidth = 1.5 * dpr;
  ctx.stroke();
  ctx.lineTo(lastX, h);
  ctx.lineTo(firstX, h);
  ctx.closePath();
  ctx.globalAlpha = 0.18;
  ctx.fillStyle = color;
  ctx.fill();
  ctx.globalAlpha = 1;
}

function shownJobId(): string | null {
  return state.pinnedJob ?? state.followJob;
}

function renderJob(): void {
  const wf = state.workflow;
  const jobId = shownJobId();
  const cur = state.status?.current_job;
  $('job-id').textContent = jobId ?? '';
  const stateBadge = $('job-state');
  const jobState = wf?.state ?? cur?.state ?? '';
  stateBadge.textContent = jobState;
  stateBadge.className = `badge ${jobState === 'completed' ? 'ok' : jobState === 'failed' ? 'bad' : jobState === 'active' ? 'warn' : ''}`;
  const now = $('job-now');
  const bar = $('job-bar');
  if (!jobId || !wf || wf.job_id !== jobId) {
    if (!jobId) {
      now.replaceChildren(el('span', { className: 'empty', text: 'no job yet' }));
      bar.style.width = '0';
      $('job-meta').textContent = '';
      $('timeline').textContent = '';
    }
    return;
  }
  const running = wf.nodes.find((n) => n.status === 'running');
  const pct = wf.progress_percent ?? 0;
  bar.style.width = `${Math.min(100, Math.max(0, pct))}%`;
  if (running) {
    const p = running.progress;
    now.replaceChildren(
      el('span', { className: 'node', text: running.id }),
      el(
        'span',
        {},
        p ? ` step ${p.steps} of ${p.total}` : ' running',
        running.steps_per_second ? ` · ${running.steps_per_second.toFixed(2)} it/s` : '',
        ` · ${fmtNum(pct, 1)} % of the job`,
      ),
    );
  } else {
    const failed = wf.nodes.find((n) => n.status === 'failed');
    now.replaceChildren(
      el(
        'span',
        { className: failed ? 'err' : '' },
        failed
          ? `failed at ${failed.id}: ${errorText(failed.error)}`
          : `${wf.state ?? ''} · ${fmtNum(pct, 1)} %`,
      ),
    );
  }
  const started = ms(wf.started_at);
  const finished = ms(wf.finished_at);
  const elapsed = started === null ? null : (finished ?? Date.now()) - started;
  $('job-meta').textContent =
    `${wf.nodes_completed ?? 0} of ${wf.nodes_total ?? wf.nodes.length} nodes done · ${fmtDuration(elapsed)}` +
    (wf.gpu_memory_peak_mb !== null ? ` · GPU memory peak ${gib(wf.gpu_memory_peak_mb)} GiB` : '') +
    (state.pinnedJob ? ' · pinned (click it again in Recent jobs to follow the current job)' : '');
  renderTimeline(wf, started, finished);
}

function renderTimeline(wf: Workflow, started: number | null, finished: number | null): void {
  const root = $('timeline');
  const t0 = started ?? Date.now();
  const t1 = Math.max((finished ?? Date.now()) - t0, 1);
  // In the order they ran: cached nodes (settled when the run began), then by start, then those to come.
  const order = (n: WorkflowNode): number =>
    n.status === 'cached' ? -Infinity : (ms(n.started_at) ?? Number.POSITIVE_INFINITY);
  const nodes = [...wf.nodes].sort((a, b) => order(a) - order(b) || 0);
  const rows = nodes.map((n) => {
    const s = ms(n.started_at);
    const e = ms(n.ended_at) ?? (n.status === 'running' ? Date.now() : null);
    const track = el('div', { className: 'track' });
    if (s !== null) {
      const seg = el('div', { className: `seg ${n.status}` });
      seg.style.left = `${(((s - t0) / t1) * 100).toFixed(3)}%`;
      seg.style.width = `${((((e ?? s) - s) / t1) * 100).toFixed(3)}%`;
      track.append(seg);
    }
    const p = n.progress;
    const info = [
      n.status === 'cached'
        ? 'cached'
        : n.status === 'pending'
          ? 'pending'
          : fmtDuration(n.status === 'running' && s !== null ? Date.now() - s : n.duration_ms),
      p ? `${p.steps}/${p.total}` : '',
      n.steps_per_second ? `${n.steps_per_second.toFixed(2)} it/s` : '',
      n.gpu_memory_peak_mb !== null ? `${gib(n.gpu_memory_peak_mb)} GiB` : '',
    ]
      .filter(Boolean)
      .join(' · ');
    const title = `${n.id} (${n.type ?? '?'}, node ${n.node_id}): ${n.status}${n.error ? ` — ${errorText(n.error)}` : ''}`;
    const row = el(
      'div',
      { className: `trow ${n.status}`, title },
      el('div', { className: 'name mono' }, el('span', { className: `st ${n.status}` }), n.id),
      track,
      el('div', { className: 'info', text: info }),
    );
    row.dataset.node = n.id;
    row.dataset.status = n.status;
    return row;
  });
  root.replaceChildren(...rows);
}

function renderJobs(): void {
  const rows = [...state.jobs.values()]
    .sort((a, b) => b.at - a.at)
    .slice(0, 12)
    .map((j) => {
      const tr = el(
        'tr',
        { className: `pick${shownJobId() === j.job_id ? ' selected' : ''}`, title: j.failure?.message ?? '' },
        el('td', { className: 'mono', text: j.job_id }),
        el('td', {}, el('span', { className: `st ${j.state === 'active' ? 'running' : j.state}` }), j.state),
        el('td', { text: `${fmtNum(j.progress_percent, 0)} %` }),
        el('td', { className: 'dim', text: j.queue }),
      );
      tr.addEventListener('click', () => {
        state.pinnedJob = state.pinnedJob === j.job_id ? null : j.job_id;
        void refreshWorkflow();
        mark('jobs');
      });
      return tr;
    });
  $('jobs').replaceChildren(...rows);
}

function renderGpuEvents(): void {
  const rows = state.gpuEvents
    .slice(0, 20)
    .map((e) =>
      el(
        'tr',
        {},
        el('td', { text: fmtTime(e.at) }),
        el('td', { text: String(e.gpu) }),
        el('td', { className: e.kind === 'xid' ? 'err' : '', text: e.text }),
      ),
    );
  $('gpu-events').replaceChildren(...rows);
  $('gpu-events-empty').hidden = rows.length > 0;
}

function logMatches(r: LogRecord): boolean {
  const level = ($('log-level') as HTMLSelectElement).value;
  if (LEVELS.indexOf(r.level) < LEVELS.indexOf(level)) return false;
  const job = ($('log-job') as HTMLInputElement).value.trim();
  if (job && r.job_id !== job) return false;
  const trace = ($('log-trace') as HTMLInputElement).value.trim().toLowerCase();
  if (trace && r.trace_id !== trace) return false;
  const text = ($('log-text') as HTMLInputElement).value.trim().toLowerCase();
  if (text && !JSON.stringify(r).toLowerCase().includes(text)) return false;
  return true;
}

function logRow(r: LogRecord): HTMLElement {
  const extra: string[] = [];
  if (r.source) extra.push(r.source);
  if (r.job_id) extra.push(`job=${r.job_id}`);
  if (r.trace_id) extra.push(`trace=${r.trace_id.slice(0, 8)}…`);
  const row = el(
    'div',
    { className: 'log' },
    el('span', { className: 'dim', text: `${r.timestamp.slice(11, 23)} ` }),
    el('span', { className: `lvl ${r.level}`, text: r.level }),
    r.message,
    el('span', { className: 'dim', text: extra.length ? `  ${extra.join(' ')}` : '' }),
  );
  row.dataset.level = r.level;
  return row;
}

function renderLogs(): void {
  const box = $('logs');
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 30;
  const shown = state.logs.filter(logMatches);
  box.replaceChildren(...shown.map(logRow));
  $('log-count').textContent = `${shown.length} shown`;
  if (atBottom) box.scrollTop = box.scrollHeight;
}

// ---- loading and following ----

let workflowTimer = 0;
async function refreshWorkflow(): Promise<void> {
  const id = shownJobId();
  if (!id) {
    state.workflow = null;
    mark('job');
    return;
  }
  try {
    state.workflow = await getJson<Workflow>(`/debug/workflow?job_id=${encodeURIComponent(id)}`);
  } catch {
    // The job fell out of the history: show what the status says.
    state.workflow = null;
  }
  mark('job');
}

/** Coalesces bursts of node events into one /debug/workflow read. */
function scheduleWorkflow(): void {
  if (workflowTimer) return;
  workflowTimer = window.setTimeout(() => {
    workflowTimer = 0;
    void refreshWorkflow();
  }, 250);
}

async function refreshStatus(): Promise<void> {
  const s = await getJson<Status>('/debug/status');
  state.status = s;
  for (const g of s.gpus) state.gpus.set(g.index, g);
  const cur = s.current_job?.job_id ?? null;
  if (cur && cur !== state.followJob) {
    state.followJob = cur;
    scheduleWorkflow();
  }
  if (s.current_job) {
    const c = s.current_job;
    const known = state.jobs.get(c.job_id);
    state.jobs.set(c.job_id, {
      job_id: c.job_id,
      queue: c.queue,
      state: c.state,
      from: null,
      progress_percent: c.progress_percent,
      failure: null,
      at: known?.at ?? ms(c.started_at) ?? Date.now(),
    });
  }
  mark('header', 'gpus', 'job', 'jobs');
}

async function loadInitial(): Promise<void> {
  const [gpu, ready, wf] = await Promise.all([
    getJson<{ devices?: GpuDevice[]; history?: { taken_at: string; devices: GpuSummary[] }[] }>(
      '/debug/gpu?history=true',
    ),
    fetch('/ready', { cache: 'no-store' }).then((r) => r.json() as Promise<Readiness>),
    getJson<Workflow>('/debug/workflow'),
    refreshStatus(),
  ]);
  readiness = ready;
  for (const h of gpu.history ?? []) {
    const at = ms(h.taken_at);
    if (at === null) continue;
    for (const d of h.devices) pushSample(at, d);
  }
  for (const d of gpu.devices ?? []) {
    state.prevXid.set(d.index, d.xid_errors_total ?? 0);
    const last = d.xid_errors?.last;
    const at = ms(last?.at);
    if (last && at !== null)
      state.gpuEvents.push({ at, gpu: d.index, kind: 'xid', text: `XID ${last.xid} (latest)` });
  }
  if (wf.job_id) {
    state.followJob ??= wf.job_id;
    state.jobs.set(wf.job_id, {
      job_id: wf.job_id,
      queue: state.jobs.get(wf.job_id)?.queue ?? '',
      state: wf.state ?? '',
      from: null,
      progress_percent: wf.progress_percent,
      failure: null,
      at: ms(wf.started_at) ?? Date.now(),
    });
  }
  await Promise.all([refreshWorkflow(), refreshQueue(), reloadLogs()]);
  mark('header', 'gpus', 'job', 'jobs', 'gpu-events');
}

async function refreshQueue(): Promise<void> {
  const q = await getJson<{
    enabled: boolean;
    reason?: string;
    queue?: string;
    counts?: Record<string, number> | null;
    workers?: number | null;
    redis?: { status: string; latency_ms: number | null };
  }>('/debug/queue');
  const root = $('queue');
  if (!q.enabled) {
    root.replaceChildren(el('span', { className: 'empty', text: q.reason ?? 'no queue' }));
    return;
  }
  const counts = Object.entries(q.counts ?? {}).map(([k, v]) => {
    const c = el('div', { className: 'count' }, el('b', { text: String(v) }), k.replace(/_/g, ' '));
    c.dataset.count = k;
    return c;
  });
  root.replaceChildren(
    el(
      'div',
      { className: 'dim' },
      `${q.queue ?? ''} · ${q.workers ?? '?'} worker${q.workers === 1 ? '' : 's'} · Redis ${q.redis?.status ?? '?'}` +
        (q.redis?.latency_ms !== null && q.redis?.latency_ms !== undefined
          ? ` (${q.redis.latency_ms} ms)`
          : ''),
    ),
    el(
      'div',
      { className: 'counts' },
      ...(counts.length ? counts : [el('span', { className: 'empty', text: 'no counts yet' })]),
    ),
  );
}

async function reloadLogs(): Promise<void> {
  const level = ($('log-level') as HTMLSelectElement).value;
  const q = new URLSearchParams({ lines: String(MAX_LOG_ROWS), level });
  const job = ($('log-job') as HTMLInputElement).value.trim();
  const trace = ($('log-trace') as HTMLInputElement).value.trim().toLowerCase();
  if (job) q.set('job_id', job);
  if (/^[0-9a-f]{32}$/.test(trace)) q.set('trace_id', trace);
  try {
    const r = await getJson<{ records: LogRecord[] }>(`/debug/logs?${q.toString()}`);
    state.logs = r.records;
  } catch {
    // A malformed filter value: keep what is shown, the client-side filter still applies.
  }
  mark('logs');
}

// ---- the event stream ----

let lastEventId: string | null = null;
let stream: AbortController | null = null;
let retryMs = 1000;

function setConn(text: string, cls: string): void {
  const c = $('conn');
  c.textContent = text;
  c.className = `badge ${cls}`;
}

function onEvent(type: string, data: string): void {
  switch (type) {
    case 'gpu': {
      const e = JSON.parse(data) as { at: number; gpus: GpuSummary[] };
      state.lastSampleAt = e.at;
      for (const g of e.gpus) {
        state.gpus.set(g.index, g);
        pushSample(e.at, g);
        noteGpuEvents(e.at, g);
      }
      mark('gpus', 'gpu-events');
      break;
    }
    case 'job': {
      const e = JSON.parse(data) as JobEvent;
      state.jobs.set(e.job_id, { ...e, at: state.jobs.get(e.job_id)?.at ?? Date.now() });
      if (e.state === 'active' && !state.pinnedJob) state.followJob = e.job_id;
      if (e.job_id === shownJobId()) scheduleWorkflow();
      mark('jobs', 'job');
      break;
    }
    case 'node': {
      const e = JSON.parse(data) as NodeEvent;
      if (!state.pinnedJob && state.followJob !== e.job_id) state.followJob = e.job_id;
      if (e.job_id === shownJobId()) scheduleWorkflow();
      break;
    }
    case 'progress': {
      const e = JSON.parse(data) as ProgressEvent;
      const j = state.jobs.get(e.job_id);
      if (j && typeof e.progress_percent === 'number') j.progress_percent = e.progress_percent;
      const wf = state.workflow;
      if (wf && wf.job_id === e.job_id) {
        if (typeof e.progress_percent === 'number') wf.progress_percent = e.progress_percent;
        if (e.node) {
          const n = wf.nodes.find((x) => x.id === e.node?.id);
          // Steps of the node shown running; a node not yet shown so waits for the workflow read.
          if (n?.status === 'running' && e.node.step !== null && e.node.total !== null) {
            n.progress = { steps: e.node.step, total: e.node.total };
          } else scheduleWorkflow();
        }
        mark('job');
      }
      mark('jobs');
      break;
    }
    case 'log': {
      if (state.logsPaused) break;
      state.logs.push(JSON.parse(data) as LogRecord);
      if (state.logs.length > MAX_LOG_ROWS) state.logs.splice(0, state.logs.length - MAX_LOG_ROWS);
      mark('logs');
      break;
    }
    case 'ready': {
      readiness = JSON.parse(data) as Readiness;
      mark('header');
      break;
    }
    case 'gap':
      // Events fell out of the agent's buffer while away: read the whole state again.
      void loadInitial();
      break;
  }
}

/** Reads /debug/events with fetch, so the token goes as a header (EventSource cannot send one). */
async function follow(): Promise<void> {
  stream?.abort();
  const ctrl = new AbortController();
  stream = ctrl;
  const level = ($('log-level') as HTMLSelectElement).value;
  const headers = authHeaders({ Accept: 'text/event-stream' });
  if (lastEventId) headers['Last-Event-ID'] = lastEventId;
  try {
    const res = await fetch(`/debug/events?level=${level}&gpu_interval_ms=1000`, {
      headers,
      signal: ctrl.signal,
      cache: 'no-store',
    });
    if (res.status === 401) {
      setConn('token needed', 'bad');
      await askToken(token !== null);
      void follow();
      return;
    }
    if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
    setConn('live', 'ok');
    retryMs = 1000;
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let cut: number;
      while ((cut = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        let type = 'message';
        let data = '';
        for (const line of block.split('\n')) {
          if (line.startsWith('id: ')) lastEventId = line.slice(4);
          else if (line.startsWith('event: ')) type = line.slice(7);
          else if (line.startsWith('data: ')) data += line.slice(6);
        }
        if (data) {
          try {
            onEvent(type, data);
          } catch (err) {
            console.warn('event not understood', type, err);
          }
        }
      }
    }
    throw new Error('stream ended');
  } catch (err) {
    if (ctrl.signal.aborted) return;
    setConn(`reconnecting (${err instanceof Error ? err.message : 'error'})`, 'warn');
    window.setTimeout(() => void follow(), retryMs);
    retryMs = Math.min(retryMs * 2, 15_000);
  }
}

// ---- start ----

function start(): void {
  for (const id of ['log-job', 'log-trace', 'log-text']) {
    let t = 0;
    $(id).addEventListener('input', () => {
      window.clearTimeout(t);
      t = window.setTimeout(() => {
        if (id === 'log-text') mark('logs');
        else void reloadLogs();
      }, 300);
    });
  }
  $('log-level').addEventListener('change', () => {
    void reloadLogs();
    // The stream filters log events by level on the agent's side.
    lastEventId = null;
    void follow();
  });
  $('log-pause').addEventListener('click', () => {
    state.logsPaused = !state.logsPaused;
    $('log-pause').textContent = state.logsPaused ? 'resume' : 'pause';
  });
  // Uptime, staleness and what the stream does not carry (queue counts) are read now and then.
  window.setInterval(() => void refreshStatus().catch(() => undefined), 5000);
  window.setInterval(() => void refreshQueue().catch(() => undefined), 5000);
  // The running node's bar grows with time even between events.
  window.setInterval(() => mark('job', 'gpus'), 1000);
  window.addEventListener('resize', () => mark('gpus'));
  loadInitial()
    .catch((err: unknown) => setConn(`failed: ${err instanceof Error ? err.message : String(err)}`, 'bad'))
    .finally(() => void follow());
}

start();
