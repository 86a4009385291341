import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { DcgmExporterBackend, probeDcgm } from '../../gpu/backends/dcgm.js';
import { GpuError } from '../../gpu/errors.js';
import { ROOT, tempDir } from '../helpers/agent.js';
import { FAKE_DCGMI } from '../helpers/dcgm.js';

const REAL = path.join(ROOT, 'test/fixtures/real');
const L4 = readFileSync(path.join(REAL, 'dcgm-exporter_metrics_l4_driver-580.105.08.prom'), 'utf8');
const A800 = readFileSync(
  path.join(REAL, 'dcgm-exporter_metrics_8x-a800-sxm4-80gb_gpu0-mig_driver-535.129.03_EXCERPT.prom'),
  'utf8',
);
const MIB = 1024 * 1024;
const signal = (ms = 5000): AbortSignal => AbortSignal.timeout(ms);

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** A real HTTP server on a free local port, standing in for dcgm-exporter at the network edge. */
async function exporter(handler: Handler): Promise<{ url: string; server: Server; requests: number }> {
  const state = { requests: 0 };
  const server = createServer((req, res) => {
    state.requests++;
    handler(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  servers.push(server);
  return {
    url: `http://127.0.0.1:${port}/metrics`,
    server,
    get requests() {
      return state.requests;
    },
  };
}

const servers: Server[] = [];

function serve(text: string): Handler {
  return (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
    res.end(text);
  };
}

function isGpuError(category: string): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof GpuError, `a GpuError, got ${String(err)}`);
    assert.equal(err.category, category, err.message);
    return true;
  };
}

/** A port nothing listens on: bound once, then released. */
async function closedPortUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}/metrics`;
}

describe('DcgmExporterBackend against an HTTP server serving real pages', function () {
  this.timeout(30_000);

  afterEach(async function () {
    await Promise.all(
      servers.splice(0).map(
        (s) =>
          new Promise<void>((resolve) => {
            s.closeAllConnections();
            s.close(() => resolve());
          }),
      ),
    );
  });

  it('maps the L4 page, one request per sample', async function () {
    const srv = await exporter(serve(L4));
    const backend = new DcgmExporterBackend({ url: srv.url });
    const s = await backend.sample(signal());
    assert.equal(srv.requests, 1);
    assert.equal(s.driverVersion, '580.105.08');
    const d = s.devices[0]!;
    assert.equal(d.name, 'NVIDIA L4');
    assert.equal(d.uuid, 'GPU-c2f76b33-7953-256e-8f33-1343419b1a1c');
    assert.equal(d.utilization.gpuPercent, 0);
    assert.equal(d.temperatureC, 31);
    assert.equal(d.powerW, 16.365);
    assert.equal(d.memory.freeBytes, 22563 * MIB);
    assert.equal(d.profiling?.pcieTxBytesPerSecond, 112603);
    await backend.sample(signal());
    assert.equal(srv.requests, 2);
    await backend.close();
    await assert.rejects(backend.sample(signal()), isGpuError('library'));
  });

  it('maps the A800 page with its MIG instances', async function () {
    const srv = await exporter(serve(A800));
    const s = await new DcgmExporterBackend({ url: srv.url }).sample(signal());
    assert.equal(s.devices.length, 8);
    assert.deepEqual(
      s.devices[0]!.mig?.instances.map((i) => [i.gpuInstanceId, i.profile]),
      [
        [3, '2g.20gb'],
        [5, '2g.20gb'],
        [6, '2g.20gb'],
      ],
    );
  });

  it('keeps the time an XID code was first seen across samples', async function () {
    const page = L4.replace(
      '# HELP DCGM_FI_DEV_SM_CLOCK',
      'DCGM_FI_DEV_XID_ERRORS{gpu="0",UUID="GPU-c2f76b33-7953-256e-8f33-1343419b1a1c"} 48\n# HELP DCGM_FI_DEV_SM_CLOCK',
    );
    const srv = await exporter(serve(page));
    let now = 1_000;
    const backend = new DcgmExporterBackend({
      url: srv.url,
      clock: { now: () => now, setTimeout: () => undefined, clearTimeout: () => undefined },
    });
    const first = await backend.sample(signal());
    now = 2_000;
    const second = await backend.sample(signal());
    assert.deepEqual(first.devices[0]!.xidErrors, { total: 0, byXid: {}, last: { xid: 48, at: 1_000 } });
    assert.equal(second.takenAt, 2_000);
    assert.equal(second.devices[0]!.xidErrors?.last?.at, 1_000);
  });

  it('turns an HTTP error into status:NNN', async function () {
    const srv = await exporter((_req, res) => {
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('An error has occurred while serving metrics:\n\ncollected metric ... was collected before');
    });
    await assert.rejects(
      new DcgmExporterBackend({ url: srv.url }).sample(signal()),
      isGpuError('status:500'),
    );
    const missing = await exporter((_req, res) => {
      res.writeHead(404);
      res.end();
    });
    await assert.rejects(
      new DcgmExporterBackend({ url: missing.url }).sample(signal()),
      isGpuError('status:404'),
    );
  });

  it('turns a refused connection into connect', async function () {
    const url = await closedPortUrl();
    await assert.rejects(new DcgmExporterBackend({ url }).sample(signal()), (err) => {
      isGpuError('connect')(err);
      assert.match((err as Error).message, /ECONNREFUSED/);
      return true;
    });
  });

  it('turns a page without GPU series into parse', async function () {
    const srv = await exporter(serve('# HELP up x\nup 1\n'));
    await assert.rejects(new DcgmExporterBackend({ url: srv.url }).sample(signal()), isGpuError('parse'));
  });

  it('stops waiting when the poller aborts', async function () {
    const srv = await exporter(() => undefined); // never answers
    const abort = new AbortController();
    const pending = new DcgmExporterBackend({ url: srv.url }).sample(abort.signal);
    setTimeout(() => abort.abort(new GpuError('timeout', 'sample took longer than 50 ms')), 50);
    await assert.rejects(pending, (err) => {
      isGpuError('timeout')(err);
      assert.match((err as Error).message, /took longer than 50 ms/);
      return true;
    });
  });
});

describe('probeDcgm', function () {
  this.timeout(30_000);

  afterEach(async function () {
    await Promise.all(
      servers.splice(0).map(
        (s) =>
          new Promise<void>((resolve) => {
            s.closeAllConnections();
            s.close(() => resolve());
          }),
      ),
    );
  });

  it('finds an exporter that serves GPU series', async function () {
    const srv = await exporter(serve(L4));
    assert.deepEqual(await probeDcgm({ exporterUrl: srv.url, dcgmiBinary: false }), {
      ok: true,
      via: 'exporter',
    });
  });

  it('falls back to dcgmi discovery -l when the exporter does not answer', async function () {
    const url = await closedPortUrl();
    assert.deepEqual(await probeDcgm({ exporterUrl: url, dcgmiBinary: FAKE_DCGMI }), {
      ok: true,
      via: 'dcgmi',
    });
  });

  it('says why when neither answers within the deadline', async function () {
    const srv = await exporter((_req, res) => {
      res.writeHead(503);
      res.end();
    });
    const r = await probeDcgm({
      exporterUrl: srv.url,
      dcgmiBinary: FAKE_DCGMI,
      timeoutMs: 500,
      env: { ...process.env, FAKE_DCGMI_MODE: 'hang' },
    });
    assert.equal(r.ok, false);
    assert.match(!r.ok ? r.reason : '', /exporter: .* answered 503; dcgmi: .*did not finish within 500 ms/);
    const missing = await probeDcgm({ dcgmiBinary: path.join(tempDir('no-dcgmi-'), 'dcgmi') });
    assert.equal(missing.ok, false);
    assert.match(!missing.ok ? missing.reason : '', /dcgmi: cannot start/);
    const exits = await probeDcgm({
      dcgmiBinary: FAKE_DCGMI,
      env: { ...process.env, FAKE_DCGMI_MODE: 'exit' },
    });
    assert.match(
      !exits.ok ? exits.reason : '',
      /dcgmi: discovery -l exited 1: .*Unable to connect to host engine/,
    );
  });
});
