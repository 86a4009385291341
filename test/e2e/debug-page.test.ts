import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import type { Browser, Page } from 'playwright-core';
import { ROOT, eventually, http, startAgentProcess } from '../helpers/agent.js';
import type { AgentProcess } from '../helpers/agent.js';

/** Debian's chromium package; never a browser build downloaded by Playwright. */
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const TOKEN = 'page-test-token-5b8e1d';
const POD_ID = 'pod-under-test-3f9a';
const SCREENSHOT = path.join(ROOT, 'test-artifacts', 'debug-page.png');

describe('GET /debug/ in headless Chromium, against a pod running a workflow', function () {
  this.timeout(120_000);
  let agent: AgentProcess;
  let browser: Browser;
  let page: Page;
  /** Console errors and warnings, page errors and failed requests: the page must have none. */
  const problems: string[] = [];
  /** Until the token is entered, the page's reads are refused 401, which Chromium logs as errors. */
  let authed = false;

  before(async function () {
    if (!existsSync(CHROMIUM)) {
      // CI installs Debian's chromium (.ci/run); elsewhere the test says what it needs.
      if (process.env.CI) throw new Error(`${CHROMIUM} is missing: apt-get install chromium`);
      console.log(`      skipped: no ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH)`);
      this.skip();
    }
    agent = await startAgentProcess({
      env: { MOCK_GPU_COUNT: '2', DEBUG_TOKEN: TOKEN, POD_ID, GPU_POLL_INTERVAL_MS: '500' },
      args: ['--', process.execPath, path.join(ROOT, 'scripts/demo-workload.mjs')],
    });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
    page.on('console', (m) => {
      if (!authed && / 401 /.test(m.text())) return;
      if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('response', (r) => {
      // The 401s before the token is entered are the page's way of learning it needs one.
      if (r.status() >= 400 && (authed || r.status() !== 401)) problems.push(`${r.status()} ${r.url()}`);
    });
  });
  after(async function () {
    await browser?.close();
    await agent?.stop();
  });

  it('serves a page that holds nothing of the pod, with a CSP that allows only itself', async function () {
    const r = await fetch(`${agent.url}/debug/`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /^text\/html/);
    const csp = r.headers.get('content-security-policy') ?? '';
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'sha256-[A-Za-z0-9+/=]+'/);
    assert.match(csp, /connect-src 'self'/);
    const html = await r.text();
    assert.ok(!html.includes(POD_ID), 'the page carries no pod data');
    assert.ok(
      !/<script[^>]+src=|<link[^>]+stylesheet|https?:\/\//.test(html),
      'nothing is loaded from elsewhere',
    );
    // Everything the page reads stays behind the token.
    assert.equal((await http(`${agent.url}/debug/status`)).status, 401);
  });

  it('asks for the token once, then shows the pod live', async function () {
    await page.goto(`${agent.url}/debug/`);
    const dialog = page.locator('#token-dialog');
    await dialog.waitFor({ state: 'visible' });
    await page.fill('#token-input', TOKEN);
    await page.click('#token-form button[type=submit]');
    await page.locator('#conn', { hasText: /^live$/ }).waitFor();
    authed = true;
    assert.equal(await dialog.isVisible(), false);
    assert.equal(await page.textContent('#ready'), 'ready');
    assert.match((await page.textContent('#pod')) ?? '', new RegExp(POD_ID));
  });

  it("draws every GPU's utilization, memory and power chart", async function () {
    // A chart has drawn when more of its pixels than its width are not the background. The check runs in
    // the page, given as text: this project's TypeScript has no DOM types outside ui/.
    await page.waitForFunction(
      `(() => {
        const canvases = [...document.querySelectorAll('.gpu canvas')];
        return canvases.length === 6 && canvases.every((c) => {
          const ctx = c.getContext('2d');
          if (!ctx || c.width === 0) return false;
          const d = ctx.getImageData(0, 0, c.width, c.height).data;
          let painted = 0;
          for (let i = 3; i < d.length; i += 4) if (d[i] > 0) painted++;
          return painted > c.width;
        });
      })()`,
      undefined,
      { timeout: 30_000 },
    );
    const titles = await page.locator('.gpu .title b').allTextContents();
    assert.deepEqual(
      titles.map((t) => t.split(' · ')[0]),
      ['0', '1'],
    );
    assert.match(titles[0] ?? '', /NVIDIA/);
    assert.match((await page.textContent('.gpu .chart b')) ?? '', /^\d+ %$/);
  });

  it('shows which node is running and how far it is, and the timeline advances', async function () {
    const running = page.locator('.trow.running');
    await running.waitFor({ timeout: 30_000 });
    const snapshot = async (): Promise<{ node: string | null; info: string | null }> =>
      (await running.count()) === 0
        ? { node: null, info: null }
        : {
            node: await running.getAttribute('data-node'),
            info: await running.locator('.info').textContent(),
          };
    const first = await snapshot();
    assert.match(first.node ?? '', /^[A-Za-z]+_\d+$/, 'nodes show as <class_type>_<id>');
    assert.equal(await page.textContent('#job-now .node'), first.node);
    // The node changes, or its step count moves on.
    await eventually(async () => {
      const now = await snapshot();
      return now.node !== first.node || now.info !== first.info ? true : undefined;
    }, 30_000);
    // A sampler shows its steps and rate while it runs.
    await page
      .locator('#job-now', { hasText: /step \d+ of \d+ · [\d.]+ it\/s/ })
      .waitFor({ timeout: 30_000 });
    const bars = await page.locator('.trow .seg').count();
    assert.ok(bars >= 2, 'nodes that ran have bars on the timeline');
    const style = (await page.locator('#job-bar').getAttribute('style')) ?? '';
    const percent = Number(/width:\s*([\d.]+)%/.exec(style)?.[1]);
    assert.ok(percent > 0 && percent <= 100, `overall progress bar at ${percent}% (${style})`);
  });

  it('filters the log tail by level, job and text', async function () {
    // One read of the whole tail at a time: rows are replaced as records come.
    const levels = (): Promise<string[]> =>
      page.evaluate<string[]>(`[...document.querySelectorAll('#logs .log')].map((r) => r.dataset.level)`);
    const texts = (): Promise<string[]> =>
      page.evaluate<string[]>(`[...document.querySelectorAll('#logs .log')].map((r) => r.textContent)`);
    await page.selectOption('#log-level', 'debug');
    await eventually(async () => ((await levels()).includes('debug') ? true : undefined), 20_000);
    await page.selectOption('#log-level', 'warn');
    await eventually(async () => {
      const l = await levels();
      return l.every((x) => ['warn', 'error', 'fatal'].includes(x)) ? true : undefined;
    }, 20_000);
    await page.selectOption('#log-level', 'info');
    // A job that finished: its records stay in the tail.
    const done = await eventually(async () => {
      const r = await http<{ records: { job_id?: string; message: string }[] }>(
        `${agent.url}/debug/logs?level=info`,
        { headers: { Authorization: `Bearer ${TOKEN}` } },
      );
      return r.body.records.find((x) => x.message === 'job completed')?.job_id;
    }, 60_000);
    await page.fill('#log-job', done);
    await eventually(async () => {
      const t = await texts();
      return t.length > 0 && t.every((x) => x.includes(`job=${done}`)) ? true : undefined;
    }, 20_000);
    await page.fill('#log-text', 'job completed');
    await eventually(async () => {
      const t = await texts();
      return t.length === 1 && t[0]?.includes('job completed') ? true : undefined;
    }, 20_000);
    await page.fill('#log-text', '');
    await page.fill('#log-job', '');
  });

  it('lists recent jobs and shows a finished one when picked', async function () {
    const row = page.locator('#jobs tr', { hasText: 'completed' }).first();
    await row.waitFor({ timeout: 30_000 });
    const id = (await row.locator('td').first().textContent()) ?? '';
    await row.click();
    await eventually(async () => {
      const shown = await page.textContent('#job-id');
      const state = await page.textContent('#job-state');
      const done = await page.locator('.trow.completed, .trow.cached').count();
      return shown === id && state === 'completed' && done === 7 ? true : undefined;
    }, 20_000);
    // Picked again, it lets go, and the page follows the running job.
    await row.click();
    await eventually(async () => ((await page.textContent('#job-id')) !== id ? true : undefined), 30_000);
  });

  it('had no console error, page error or failed request, and leaves a screenshot', async function () {
    // Back on the running job, while its sampler runs, with some history in the charts.
    await page.locator('#job-now', { hasText: /step \d+ of \d+/ }).waitFor({ timeout: 30_000 });
    mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    assert.ok(existsSync(SCREENSHOT));
    assert.deepEqual(problems, []);
  });
});
