import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { LogRing } from '../../src/logging/log-ring.js';
import { createLogger } from '../../src/logging/logger.js';
import { arrivedAt, pacedListener } from '../../src/http/pacer.js';
import { closeServer, createServer, listen } from '../../src/http/server.js';

/** Burns `ms` of CPU, as a request that renders a large answer does. */
function busy(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // spin
  }
}

/**
 * A keep-alive client that sends its next request as soon as the last answer is in (closed loop), as
 * autocannon does; `served` counts its answers.
 */
class LoopClient {
  served = 0;
  private stopped = false;
  private readonly socket: net.Socket;

  constructor(port: number, path: string) {
    this.socket = net.connect(port, '127.0.0.1');
    let buf = '';
    const send = (): void => {
      if (!this.stopped) this.socket.write(`GET ${path} HTTP/1.1\r\nHost: t\r\n\r\n`);
    };
    this.socket.setEncoding('latin1');
    this.socket.on('connect', send);
    this.socket.on('data', (chunk: string) => {
      buf += chunk;
      // Every answer here is `ok` with a Content-Length; count whole ones.
      let end: number;
      while ((end = buf.indexOf('\r\n\r\nok')) !== -1) {
        buf = buf.slice(end + 6);
        this.served++;
        send();
      }
    });
    this.socket.on('error', () => undefined);
  }

  stop(): void {
    this.stopped = true;
    this.socket.destroy();
  }
}

/** Sends one request on a new connection; resolves with the answer's body. */
function once(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () =>
      s.write(`GET ${path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n`),
    );
    let buf = '';
    s.setEncoding('latin1');
    s.on('data', (c: string) => (buf += c));
    s.on('end', () => resolve(buf.slice(buf.indexOf('\r\n\r\n') + 4)));
    s.on('error', reject);
  });
}

describe('request pacing', function () {
  this.timeout(60_000);
  const logger = createLogger({
    level: 'fatal',
    service: 's',
    environment: 'test',
    podId: 'p',
    ring: new LogRing(10),
    out: { write: () => undefined },
  });

  /**
   * A server whose every request costs `costMs` of CPU; `paced` chooses the agent's server (with the
   * pacer) or the same listener without it.
   */
  async function start(paced: boolean, costMs: number): Promise<{ server: http.Server; port: number }> {
    const handler: http.RequestListener = (req, res) => {
      if (req.url !== '/probe') busy(costMs);
      res.writeHead(200, { 'Content-Length': 2 });
      res.end('ok');
    };
    const server = paced ? createServer(handler, logger) : http.createServer(handler);
    const addr: AddressInfo = await listen(server, 0, '127.0.0.1');
    return { server, port: addr.port };
  }

  /**
   * With 40 busy keep-alive clients, 20 new connections each send one request; counts the busy
   * requests served between sending those and the last of their answers. libuv accepts one
   * connection per loop turn, so the count is the cost of a new connection under load.
   */
  async function servedWhileConnecting(paced: boolean): Promise<number> {
    const { server, port } = await start(paced, 2);
    const clients = Array.from({ length: 40 }, () => new LoopClient(port, '/work'));
    try {
      // Until every busy client has had answers: the loop turns are at their full length.
      while (clients.some((c) => c.served < 3)) await new Promise((r) => setTimeout(r, 20));
      const before = clients.reduce((s, c) => s + c.served, 0);
      const bodies = await Promise.all(Array.from({ length: 20 }, () => once(port, '/probe')));
      const after = clients.reduce((s, c) => s + c.served, 0);
      assert.deepEqual(new Set(bodies), new Set(['ok']));
      return after - before;
    } finally {
      for (const c of clients) c.stop();
      await closeServer(server, 1000);
    }
  }

  it('accepts new connections under load without waiting a full loop turn per connection', async function () {
    const unpaced = await servedWhileConnecting(false);
    const paced = await servedWhileConnecting(true);
    // Unpaced, each of the 20 connections waits a whole turn of busy requests to be accepted (about
    // 440 here, where the clients share the loop); paced, a turn does ~5 ms of requests, and the new
    // requests then wait their turn in the queue (about 100).
    assert.ok(unpaced >= 200, `without pacing ${unpaced} busy requests were served meanwhile`);
    assert.ok(paced < unpaced / 2, `paced ${paced} vs unpaced ${unpaced} busy requests served meanwhile`);
  });

  it('runs held-back requests in arrival order and records when they arrived', function (done) {
    const order: number[] = [];
    const arrivals: (number | undefined)[] = [];
    const listener = pacedListener((req) => {
      order.push(Number(req.url));
      arrivals.push(arrivedAt(req));
      busy(1);
      if (order.length === 30) {
        try {
          assert.deepEqual(
            order,
            Array.from({ length: 30 }, (_, i) => i),
          );
          // The first requests ran at once; later ones waited and carry their arrival time.
          assert.equal(arrivals[0], undefined);
          assert.ok(arrivals.slice(10).every((t) => typeof t === 'number'));
          done();
        } catch (err) {
          done(err);
        }
      }
    }, 5);
    // Thirty requests in one turn, as one poll phase delivers them.
    for (let i = 0; i < 30; i++) {
      listener({ url: String(i) } as http.IncomingMessage, {} as http.ServerResponse);
    }
    // Ran at once: only those within the turn's 5 ms budget.
    assert.ok(order.length >= 1 && order.length < 30, `${order.length} ran within the turn`);
  });
});
