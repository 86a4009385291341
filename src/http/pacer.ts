import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';

/** Request work done in one turn of the event loop before further requests wait for the next turn. */
export const TURN_BUDGET_MS = 5;

/** When each request that had to wait arrived (`performance.now()`), so its duration counts the wait. */
const arrivals = new WeakMap<IncomingMessage, number>();

/** When `req` arrived, if the pacer held it back; undefined when it ran at once. */
export function arrivedAt(req: IncomingMessage): number | undefined {
  return arrivals.get(req);
}

/**
 * Bounds the request work done in one turn of the event loop.
 *
 * libuv accepts one connection per turn (libuv/libuv#3696), and a turn runs the handler of every socket
 * that has a request ready. Under many busy keep-alive clients a turn grows to hundreds of
 * milliseconds, and a new connection (a liveness probe, a scraper that reconnected) waits in the
 * kernel's accept queue one whole turn for each connection ahead of it: seconds, long enough for
 * clients to time out while the agent is answering everyone else within milliseconds.
 *
 * The pacer runs a request at once while the current turn has spent less than `budgetMs` on requests.
 * After that, requests queue in arrival order and run from `setImmediate`, at most `budgetMs` per turn,
 * so turns stay short, the listener is served every few milliseconds, and waiting requests are answered
 * first come, first served. Total work is unchanged; only its order and slicing are.
 */
export function pacedListener(listener: RequestListener, budgetMs = TURN_BUDGET_MS): RequestListener {
  const queue: ([IncomingMessage, ServerResponse] | undefined)[] = [];
  let head = 0;
  let draining = false;
  let inTurn = false;
  let turnStart = 0;
  // Cleared in the check phase of the turn that set it: requests arriving in the next poll phase
  // start a new turn's budget.
  const endTurn = (): void => {
    inTurn = false;
  };
  const drain = (): void => {
    const start = performance.now();
    while (head < queue.length) {
      const item = queue[head]!;
      queue[head++] = undefined;
      listener(item[0], item[1]);
      if (performance.now() - start >= budgetMs) break;
    }
    if (head < queue.length) {
      // Queued from the check phase, so it runs in the next turn, after that turn's poll phase.
      setImmediate(drain);
      return;
    }
    queue.length = 0;
    head = 0;
    draining = false;
  };
  return (req, res) => {
    const now = performance.now();
    if (!inTurn) {
      inTurn = true;
      turnStart = now;
      setImmediate(endTurn);
    }
    if (!draining && now - turnStart < budgetMs) {
      listener(req, res);
      return;
    }
    arrivals.set(req, now);
    queue.push([req, res]);
    if (!draining) {
      draining = true;
      setImmediate(drain);
    }
  };
}
