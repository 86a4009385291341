import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import {
  AGENT_METRICS,
  API_METRICS,
  GPU_METRICS,
  JOB_METRICS,
  QUEUE_METRICS,
} from '../../src/metrics/names.js';
import { ROOT, eventually, startAgentProcess, tempDir } from '../helpers/agent.js';
import type { AgentProcess } from '../helpers/agent.js';
import { parseExposition } from '../helpers/prom.js';
import { findPromtool } from '../helpers/promtool.js';

const DEPLOY = path.join(ROOT, 'deploy');
const PROMETHEUS_DIR = path.join(DEPLOY, 'prometheus');
const ALERTS = path.join(PROMETHEUS_DIR, 'alerts.yml');
const ALERT_TESTS = path.join(PROMETHEUS_DIR, 'alerts.test.yml');
const PROMETHEUS_CONFIG = path.join(PROMETHEUS_DIR, 'prometheus.yml');
const DASHBOARD = path.join(DEPLOY, 'grafana/gpu-pod-agent.json');
const COLLECTOR = path.join(DEPLOY, 'otel-collector/config.yaml');

// js-yaml comes with mocha (it reads .mocharc.yml); required untyped so the build never depends on it.
const yaml = createRequire(import.meta.url)('js-yaml') as { load(text: string): unknown };

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
function obj(v: unknown, what: string): Obj {
  assert.ok(isObj(v), `${what} is not a mapping`);
  return v;
}
function list(v: unknown, what: string): unknown[] {
  assert.ok(Array.isArray(v), `${what} is not a list`);
  return v as unknown[];
}
function str(v: unknown, what: string): string {
  assert.equal(typeof v, 'string', `${what} is not a string`);
  return v as string;
}
function loadYaml(file: string): Obj {
  return obj(yaml.load(readFileSync(file, 'utf8')), path.relative(ROOT, file));
}

const PROMQL_KEYWORDS = new Set([
  'and',
  'or',
  'unless',
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'offset',
  'bool',
  'atan2',
  'inf',
  'nan',
]);

/**
 * The metric names a PromQL expression selects: identifiers left once strings, label matchers, ranges
 * and grouping label lists are cut out, that are neither keywords nor function or aggregation calls.
 */
function metricNames(expr: string): Set<string> {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const names = new Set<string>();
  for (const m of bare.matchAll(/(?<![\w:.$])[a-zA-Z_:][\w:]*(?![\w:]|\s*\()/g)) {
    if (!PROMQL_KEYWORDS.has(m[0].toLowerCase())) names.add(m[0]);
  }
  return names;
}

/** Grafana's own variables and the dashboard's, replaced so promtool can parse a panel's query. */
function withoutGrafanaVariables(expr: string): string {
  return expr
    .replaceAll('$__rate_interval', '5m')
    .replaceAll('$__interval', '1m')
    .replaceAll('$__range', '1h')
    .replace(/\$\{?(?:instance|pod)\}?/g, '.*');
}

/** Every name the names module defines. */
const DEFINED_NAMES: ReadonlySet<string> = new Set(
  [GPU_METRICS, JOB_METRICS, QUEUE_METRICS, API_METRICS, AGENT_METRICS].flatMap((o) => Object.values(o)),
);
/**
 * Names the agent under test (mock GPU, no Redis, no workload) does not print, so they are checked
 * against the names module instead (and must be absent from the exposition, so the list stays short).
 */
const CONDITIONAL_NAMES: ReadonlySet<string> = new Set([
  // Only with REDIS_URL.
  'bullmq_job_count',
  'agent_queue_workers',
  'agent_queue_redis_up',
  'agent_queue_redis_latency_seconds',
  // Only once a job finished, a job started from a queue, or a workflow node completed.
  'job_duration_seconds',
  'job_queue_wait_seconds',
  'workflow_node_duration_seconds',
  // Only after the first failed GPU sample, and the first XID.
  'agent_gpu_sample_failures_total',
  'gpu_xid_errors_total',
  // Only on GPUs that report HBM temperature (the mock H100 does not).
  'gpu_memory_temperature_celsius',
]);
/** Series Prometheus adds to every target itself. */
const SCRAPE_NAMES: ReadonlySet<string> = new Set(['up']);

/** Names in `used` that neither the live exposition, the conditional names nor Prometheus account for. */
function unknownNames(used: Iterable<string>, live: ReadonlySet<string>): string[] {
  const unknown: string[] = [];
  for (const name of used) {
    const family = name.replace(/_(?:bucket|sum|count)$/, '');
    if (live.has(name) || SCRAPE_NAMES.has(name) || CONDITIONAL_NAMES.has(name)) continue;
    if (family !== name && CONDITIONAL_NAMES.has(family)) continue;
    unknown.push(name);
  }
  return unknown;
}

/** A scrape job's lines with its `kubernetes_sd_configs` block swapped for one static target. */
function withStaticTarget(job: string[]): string[] {
  const out: string[] = [];
  let skipDeeperThan: number | undefined;
  for (const line of job) {
    const indent = line.length - line.trimStart().length;
    if (skipDeeperThan !== undefined && indent > skipDeeperThan) continue;
    skipDeeperThan = undefined;
    if (line.trim() === 'kubernetes_sd_configs:') {
      skipDeeperThan = indent;
      out.push(
        `${' '.repeat(indent)}static_configs:`,
        `${' '.repeat(indent + 2)}- targets: ['127.0.0.1:8080']`,
      );
      continue;
    }
    out.push(line);
  }
  return out;
}

interface Promtool {
  status: number | null;
  output: string;
}
function runPromtool(promtool: string, args: string[], cwd = PROMETHEUS_DIR): Promtool {
  const r = spawnSync(promtool, args, { cwd, encoding: 'utf8' });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

function requirePromtool(ctx: Mocha.Context): string {
  const promtool = findPromtool();
  if (promtool) return promtool;
  if (process.env.CI) assert.fail('promtool is required in CI (.ci/run installs it)');
  ctx.skip();
}

interface AlertRule {
  alert: string;
  expr: string;
  labels: Obj;
  annotations: Obj;
}
function alertRules(): AlertRule[] {
  const rules: AlertRule[] = [];
  for (const g of list(loadYaml(ALERTS).groups, 'groups')) {
    for (const r of list(obj(g, 'group').rules, 'rules')) {
      const rule = obj(r, 'rule');
      rules.push({
        alert: str(rule.alert, 'alert'),
        expr: str(rule.expr, `expr of ${String(rule.alert)}`),
        labels: obj(rule.labels, `labels of ${String(rule.alert)}`),
        annotations: obj(rule.annotations, `annotations of ${String(rule.alert)}`),
      });
    }
  }
  return rules;
}

interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: unknown;
  targets?: { expr?: string; refId?: string; datasource?: unknown }[];
  gridPos?: { x: number; y: number; w: number; h: number };
  panels?: Panel[];
}
interface Dashboard {
  schemaVersion: number;
  uid: string;
  panels: Panel[];
  templating: { list: { name: string; type: string; query: unknown; datasource?: unknown }[] };
}

function loadDashboard(): Dashboard {
  return JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard;
}
/** Every panel, those inside rows included. */
function allPanels(d: Dashboard): Panel[] {
  return d.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
}
function dashboardQueries(d: Dashboard): { where: string; expr: string }[] {
  return allPanels(d).flatMap((p) =>
    (p.targets ?? []).map((t) => ({ where: `panel ${p.id} "${p.title}" ${t.refId}`, expr: t.expr ?? '' })),
  );
}
/** The metric a `label_values(<selector>, <label>)` variable reads. */
function variableSelectors(d: Dashboard): { where: string; expr: string }[] {
  return d.templating.list.flatMap((v) => {
    const q = isObj(v.query) ? v.query.query : v.query;
    const m = typeof q === 'string' ? /^label_values\((.+),\s*\w+\)$/.exec(q) : null;
    return m ? [{ where: `variable ${v.name}`, expr: m[1]! }] : [];
  });
}

const DATASOURCE_REF = { type: 'prometheus', uid: '${datasource}' };

describe('deploy/ assets', function () {
  describe('metricNames', function () {
    it('finds the selected metrics and nothing else', function () {
      const expr =
        'histogram_quantile(0.9, sum by (le, queue) (rate(job_duration_seconds_bucket{status="failed", pod=~"$pod"}[$__rate_interval])))' +
        ' / on (queue) group_left (name) max without (gpu) (gpu_info offset 10m) > bool 1e3' +
        ' or (agent_ready unless up{job="x"} == 0) or vector(0)';
      assert.deepEqual(
        [...metricNames(expr)].sort(),
        ['agent_ready', 'gpu_info', 'job_duration_seconds_bucket', 'up'].sort(),
      );
    });
  });

  describe('Prometheus', function () {
    it('alerts.yml passes promtool check rules', function () {
      const promtool = requirePromtool(this);
      const r = runPromtool(promtool, ['check', 'rules', 'alerts.yml']);
      assert.equal(r.status, 0, r.output);
    });

    it('alerts.test.yml passes promtool test rules', function () {
      const promtool = requirePromtool(this);
      const r = runPromtool(promtool, ['test', 'rules', 'alerts.test.yml']);
      assert.equal(r.status, 0, r.output);
      assert.match(r.output, /SUCCESS/);
    });

    it('prometheus.yml passes promtool check config, and so does each commented example job', function () {
      const promtool = requirePromtool(this);
      const r = runPromtool(promtool, ['check', 'config', 'prometheus.yml']);
      assert.equal(r.status, 0, r.output);

      // A commented job starts at `  # - job_name:` and runs while the uncommented lines sit deeper.
      const lines = readFileSync(PROMETHEUS_CONFIG, 'utf8').split('\n');
      const examples: string[][] = [];
      let current: string[] | undefined;
      for (const line of lines) {
        const uncommented = /^\s*#/.test(line) ? line.replace(/^(\s*)# ?/, '$1') : undefined;
        if (uncommented !== undefined && /^ {2}- job_name:/.test(uncommented)) {
          current = [uncommented];
          examples.push(current);
        } else if (current && uncommented !== undefined && /^ {4,}\S/.test(uncommented)) {
          current.push(uncommented);
        } else {
          current = undefined;
        }
      }
      assert.ok(examples.length >= 2, 'prometheus.yml lost its commented RunPod and Kubernetes jobs');
      const dir = tempDir('gpa-prom-');
      for (const [i, example] of examples.entries()) {
        const file = path.join(dir, `example-${i}.yml`);
        writeFileSync(file, `scrape_configs:\n${example.join('\n')}\n`);
        let e = runPromtool(promtool, ['check', 'config', file], dir);
        if (/field kubernetes_sd_configs not found/.test(e.output)) {
          // Debian builds promtool without Kubernetes discovery: check the rest of the job (its
          // relabelling) with a static target in its place.
          writeFileSync(file, `scrape_configs:\n${withStaticTarget(example).join('\n')}\n`);
          e = runPromtool(promtool, ['check', 'config', file], dir);
        }
        assert.equal(e.status, 0, `${example[0]}:\n${e.output}`);
      }
    });

    it('every alert has a severity, a summary and a description, and tests where it fires and where not', function () {
      const rules = alertRules();
      assert.ok(rules.length >= 10, `only ${rules.length} alerts`);
      const fires = new Set<string>();
      const silent = new Set<string>();
      for (const t of list(loadYaml(ALERT_TESTS).tests, 'tests')) {
        for (const c of list(obj(t, 'test').alert_rule_test, 'alert_rule_test')) {
          const tc = obj(c, 'alert_rule_test case');
          const exp = tc.exp_alerts === undefined ? [] : list(tc.exp_alerts, 'exp_alerts');
          (exp.length > 0 ? fires : silent).add(str(tc.alertname, 'alertname'));
        }
      }
      for (const r of rules) {
        assert.match(String(r.labels.severity), /^(?:critical|warning|info)$/, `${r.alert} severity`);
        assert.ok(str(r.annotations.summary, `${r.alert} summary`).trim(), `${r.alert} summary`);
        assert.ok(str(r.annotations.description, `${r.alert} description`).trim(), `${r.alert} description`);
        assert.ok(fires.has(r.alert), `alerts.test.yml never expects ${r.alert} to fire`);
        assert.ok(silent.has(r.alert), `alerts.test.yml never expects ${r.alert} to stay silent`);
      }
      assert.equal(new Set(rules.map((r) => r.alert)).size, rules.length, 'duplicate alert names');
    });
  });

  describe('Grafana dashboard', function () {
    it('is a schemaVersion 39+ dashboard with datasource, pod and instance variables', function () {
      const d = loadDashboard();
      assert.ok(d.schemaVersion >= 39, `schemaVersion ${d.schemaVersion}`);
      assert.ok(d.uid);
      const vars = new Map(d.templating.list.map((v) => [v.name, v]));
      const ds = vars.get('datasource');
      assert.equal(ds?.type, 'datasource');
      assert.equal(ds?.query, 'prometheus');
      for (const name of ['pod', 'instance']) {
        const v = vars.get(name);
        assert.equal(v?.type, 'query', `variable ${name}`);
        assert.deepEqual(v?.datasource, DATASOURCE_REF, `variable ${name} datasource`);
      }
    });

    it('has unique panel ids, and every panel queries the datasource variable filtered by pod and instance', function () {
      const d = loadDashboard();
      const panels = allPanels(d);
      const ids = panels.map((p) => p.id);
      assert.equal(new Set(ids).size, ids.length, `duplicate panel ids: ${ids.join(',')}`);
      for (const p of panels) {
        const g = p.gridPos;
        assert.ok(g && g.x >= 0 && g.w > 0 && g.x + g.w <= 24, `panel ${p.id} gridPos`);
        // Rows only group panels; they hold no queries.
        if (p.type === 'row') continue;
        assert.deepEqual(p.datasource, DATASOURCE_REF, `panel ${p.id} "${p.title}" datasource`);
        assert.ok(p.targets?.length, `panel ${p.id} "${p.title}" has no query`);
        for (const t of p.targets) {
          assert.deepEqual(t.datasource, DATASOURCE_REF, `panel ${p.id} ${t.refId} datasource`);
          assert.match(t.expr ?? '', /instance=~"\$instance"/, `panel ${p.id} ${t.refId} ignores $instance`);
          assert.match(t.expr ?? '', /pod=~"\$pod"/, `panel ${p.id} ${t.refId} ignores $pod`);
        }
      }
    });

    it('every query parses as PromQL (promtool check rules)', function () {
      const promtool = requirePromtool(this);
      const d = loadDashboard();
      const rules = [...dashboardQueries(d), ...variableSelectors(d)].map((q, i) => ({
        record: `dashboard:query_${i}`,
        expr: withoutGrafanaVariables(q.expr),
      }));
      const dir = tempDir('gpa-dash-');
      // JSON is YAML, which is what promtool reads.
      writeFileSync(
        path.join(dir, 'queries.yml'),
        JSON.stringify({ groups: [{ name: 'dashboard', rules }] }),
      );
      const r = runPromtool(promtool, ['check', 'rules', 'queries.yml'], dir);
      assert.equal(r.status, 0, r.output);
    });
  });

  describe('metric names against a running agent', function () {
    let agent: AgentProcess;
    let live: Set<string>;
    before(async function () {
      agent = await startAgentProcess();
      // API metrics exist once a request was answered; GPU families once the first sample was taken.
      await fetch(`${agent.url}/health`);
      live = await eventually(async () => {
        const res = await fetch(`${agent.url}/metrics`);
        const names = new Set(parseExposition(await res.text()).map((s) => s.name));
        return names.has(GPU_METRICS.utilizationRatio) && names.has(API_METRICS.requestsTotal)
          ? names
          : undefined;
      });
    });
    after(async function () {
      await agent?.stop();
    });

    it('alerts.yml uses only names the agent exports', function () {
      const used = new Set(alertRules().flatMap((r) => [...metricNames(r.expr)]));
      assert.ok(used.has(GPU_METRICS.xidErrorsTotal) && used.has(AGENT_METRICS.gpuBackendUp));
      assert.deepEqual(unknownNames(used, live), []);
    });

    it('the dashboard uses only names the agent exports', function () {
      const d = loadDashboard();
      const used = new Set(
        [...dashboardQueries(d), ...variableSelectors(d)].flatMap((q) => [...metricNames(q.expr)]),
      );
      assert.ok(used.has(GPU_METRICS.utilizationRatio) && used.has(QUEUE_METRICS.bullmqJobCount));
      assert.deepEqual(unknownNames(used, live), []);
    });

    it('names taken from the names module are defined there and really absent here', function () {
      assert.deepEqual(
        [...CONDITIONAL_NAMES].filter((n) => !DEFINED_NAMES.has(n)),
        [],
        'not in src/metrics/names.ts',
      );
      const printed = [...CONDITIONAL_NAMES].filter(
        (n) => live.has(n) || live.has(`${n}_bucket`) || live.has(`${n}_count`),
      );
      assert.deepEqual(printed, []);
    });
  });

  describe('OpenTelemetry Collector config', function () {
    it('parses, receives OTLP on 4317 and 4318, and every pipeline limits memory, batches and exports', function () {
      const c = loadYaml(COLLECTOR);
      const protocols = obj(obj(obj(c.receivers, 'receivers').otlp, 'otlp receiver').protocols, 'protocols');
      assert.match(str(obj(protocols.grpc, 'grpc').endpoint, 'grpc endpoint'), /:4317$/);
      assert.match(str(obj(protocols.http, 'http').endpoint, 'http endpoint'), /:4318$/);

      const service = obj(c.service, 'service');
      const defined = (section: string): Set<string> => new Set(Object.keys(obj(c[section], section)));
      for (const ext of list(service.extensions ?? [], 'service.extensions')) {
        assert.ok(defined('extensions').has(str(ext, 'extension')), `extension ${String(ext)} undefined`);
      }
      const pipelines = obj(service.pipelines, 'pipelines');
      assert.ok('traces' in pipelines, 'no traces pipeline');
      for (const [name, p] of Object.entries(pipelines)) {
        const pipeline = obj(p, name);
        for (const section of ['receivers', 'processors', 'exporters']) {
          for (const id of list(pipeline[section], `${name}.${section}`)) {
            assert.ok(defined(section).has(str(id, section)), `${name}: ${section} ${String(id)} undefined`);
          }
        }
        const processors = list(pipeline.processors, `${name}.processors`);
        // memory_limiter must come first to refuse data before anything buffers it.
        assert.equal(processors[0], 'memory_limiter', `${name}: memory_limiter is not first`);
        assert.ok(processors.includes('batch'), `${name}: no batch processor`);
        const exporters = list(pipeline.exporters, `${name}.exporters`).map((e) => String(e).split('/')[0]);
        assert.ok(exporters.includes('debug'), `${name}: no debug exporter`);
        assert.ok(
          exporters.some((e) => /^otlp(?:_grpc|_http|http)?$/.test(e ?? '')),
          `${name}: no OTLP exporter`,
        );
      }
    });
  });
});
