import assert from 'node:assert/strict';
import { http, startAgentProcess } from '../helpers/agent.js';
import type { AgentProcess } from '../helpers/agent.js';
import { assertError } from '../helpers/assertions.js';

const TOKEN = 'tok-3f9a1c7e5b2d4f6a8c0e';
const DEBUG_ROUTES = [
  '/debug/status',
  '/debug/gpu',
  '/debug/workflow',
  '/debug/logs',
  '/debug/queue',
  '/debug/memory',
  '/debug/artifacts',
  '/debug/config',
  '/debug/workload',
  '/debug/unknown-route',
];

describe('debug token', function () {
  let agent: AgentProcess;
  before(async function () {
    agent = await startAgentProcess({ env: { DEBUG_TOKEN: TOKEN } });
  });
  after(async function () {
    await agent?.stop();
  });

  for (const route of DEBUG_ROUTES) {
    it(`${route}: 401 without or with a wrong token, answered with the right one`, async function () {
      const none = await http(`${agent.url}${route}`);
      assertError(none, 401, 'UNAUTHORIZED');
      assert.match(none.headers.get('www-authenticate') ?? '', /^Bearer /);
      for (const auth of [
        `Bearer ${TOKEN}x`,
        `Bearer ${TOKEN.slice(0, -1)}`,
        `Basic ${TOKEN}`,
        TOKEN,
        'Bearer ',
        `Bearer  ${TOKEN} extra`,
      ]) {
        assertError(
          await http(`${agent.url}${route}`, { headers: { authorization: auth } }),
          401,
          'UNAUTHORIZED',
        );
      }
      const ok = await http(`${agent.url}${route}`, { headers: { authorization: `Bearer ${TOKEN}` } });
      assert.equal(ok.status, route === '/debug/unknown-route' ? 404 : 200);
    });
  }

  it('is not bypassed by changing the case of the path or adding a slash', async function () {
    for (const route of ['/DEBUG/config', '/Debug/Status', '/debug/CONFIG', '/debug/config/', '/DEBUG/']) {
      const r = await http(`${agent.url}${route}`);
      assert.ok(r.status === 401 || r.status === 404, `${route} answered ${r.status}`);
      assert.ok(!JSON.stringify(r.body).includes('gpu_backend'), `${route} leaked the config`);
    }
    const post = await http(`${agent.url}/DEBUG/log-level`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"level":"trace"}',
    });
    assert.ok(post.status === 401 || post.status === 404);
  });

  it('POST /debug/log-level needs the token too', async function () {
    const post = (headers: Record<string, string>) =>
      http(`${agent.url}/debug/log-level`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: '{"level":"info"}',
      });
    assertError(await post({}), 401, 'UNAUTHORIZED');
    assert.equal((await post({ authorization: `Bearer ${TOKEN}` })).status, 200);
  });

  it('leaves probes and metrics open', async function () {
    for (const route of ['/health', '/ready', '/metrics']) {
      const res = await fetch(`${agent.url}${route}`);
      assert.notEqual(res.status, 401, route);
    }
  });

  it('never shows the token in /debug/config or the logs', async function () {
    const cfg = await http(`${agent.url}/debug/config`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(cfg.body.debug_token, '[redacted]');
    assert.ok(!JSON.stringify(cfg.body).includes(TOKEN));
    const logs = await fetch(`${agent.url}/debug/logs?lines=5000`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    assert.ok(!(await logs.text()).includes(TOKEN));
    assert.ok(!JSON.stringify(agent.records).includes(TOKEN));
  });
});

describe('NODE_ENV=production', function () {
  it('without a token: /debug/config and POST /debug/log-level are off (404), other routes answer', async function () {
    const agent = await startAgentProcess({ env: { NODE_ENV: 'production' } });
    try {
      assertError(await http(`${agent.url}/debug/config`), 404, 'NOT_FOUND');
      assertError(
        await http(`${agent.url}/debug/log-level`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: '{"level":"debug"}',
        }),
        404,
        'NOT_FOUND',
      );
      assert.equal((await http(`${agent.url}/debug/status`)).status, 200);
      const warning = await agent.waitForRecord((r) => r.level === 'warn' && /DEBUG_TOKEN/.test(r.message));
      assert.equal(warning.environment, 'production');
    } finally {
      await agent.stop();
    }
  });

  it('with a token: they are on behind the token', async function () {
    const agent = await startAgentProcess({ env: { NODE_ENV: 'production', DEBUG_TOKEN: TOKEN } });
    try {
      assertError(await http(`${agent.url}/debug/config`), 401, 'UNAUTHORIZED');
      assert.equal(
        (await http(`${agent.url}/debug/config`, { headers: { authorization: `Bearer ${TOKEN}` } })).status,
        200,
      );
    } finally {
      await agent.stop();
    }
  });
});
