import type { Request, Response } from 'express';
import { EVENT_TYPES } from '../events/event-hub.js';
import type { EventHub, HubEvent, HubEventType } from '../events/event-hub.js';
import { LEVEL_VALUES } from '../logging/levels.js';
import type { LevelName } from '../logging/levels.js';
import { HttpError } from './errors.js';
import { cappedInt, oneOf } from './query.js';

export interface EventStreamOptions {
  hub: EventHub;
  maxStreams: number;
  /** Bytes a stream may have waiting for its client; beyond, the client is too slow and is dropped. */
  maxBufferedBytes?: number;
  /** A comment line this often keeps proxies from closing a quiet stream. */
  heartbeatMs?: number;
}

/** Counts what the streams did, for `/debug/events` views and tests. */
export interface EventStreamStats {
  open: number;
  opened: number;
  dropped_slow: number;
  refused: number;
}

const DEFAULT_MAX_BUFFERED = 1024 * 1024;

/**
 * `GET /debug/events`: Server-Sent Events of what the stores record. `?types=gpu,job,node,progress,log,ready`
 * picks kinds, `?level=` the least log level, `?gpu_interval_ms=` thins GPU samples; `Last-Event-ID`
 * (or `?last_event_id=`) resumes after an id still in the buffer, with a `gap` event saying how many were
 * lost otherwise. A client that does not read fast enough is dropped, never buffered for.
 */
export function eventStream(opts: EventStreamOptions): {
  handler: (req: Request, res: Response) => void;
  stats: EventStreamStats;
  closeAll: () => void;
} {
  const stats: EventStreamStats = { open: 0, opened: 0, dropped_slow: 0, refused: 0 };
  const maxBuffered = opts.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED;
  const open = new Set<Response>();
  const handler = (req: Request, res: Response): void => {
    const level = LEVEL_VALUES[oneOf(req, 'level', Object.keys(LEVEL_VALUES) as LevelName[], 'info')];
    const gpuEvery = cappedInt(req, 'gpu_interval_ms', { min: 0, cap: 3_600_000, fallback: 0 });
    const types = typesParam(req);
    const resumeFrom = lastEventId(req);
    if (stats.open >= opts.maxStreams) {
      stats.refused++;
      throw new HttpError(503, 'TOO_MANY_STREAMS', `at most ${opts.maxStreams} event streams at once`, {
        max_streams: opts.maxStreams,
      });
    }
    stats.open++;
    stats.opened++;
    open.add(res);
    res.status(200);
    res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
    res.setHeader('Cache-Control', 'no-store');
    // nginx and similar proxies would otherwise hold events back in their buffers.
    res.setHeader('X-Accel-Buffering', 'no');
    res.flushHeaders();
    let lastGpu = -Infinity;
    let closed = false;
    const wanted = (e: HubEvent): boolean => {
      if (!types.has(e.type)) return false;
      if (e.type === 'log') return (e.level ?? 0) >= level;
      if (e.type === 'gpu') {
        if (e.at - lastGpu < gpuEvery) return false;
        lastGpu = e.at;
      }
      return true;
    };
    const send = (e: HubEvent): void => {
      if (closed || !wanted(e)) return;
      res.write(`id: ${e.id}\nevent: ${e.type}\ndata: ${e.data}\n\n`);
      if (res.writableLength > maxBuffered) {
        // The client reads slower than events come: it goes, and comes back with Last-Event-ID.
        stats.dropped_slow++;
        close();
        res.destroy();
      }
    };
    const heartbeat = setInterval(() => res.write(': ping\n\n'), opts.heartbeatMs ?? 15_000);
    heartbeat.unref();
    const unsubscribe = opts.hub.subscribe(send);
    const close = (): void => {
      if (closed) return;
      closed = true;
      clearInterval(heartbeat);
      unsubscribe();
      open.delete(res);
      stats.open--;
    };
    res.on('close', close);
    // Tells EventSource how soon to come back after a drop.
    res.write('retry: 2000\n\n');
    if (resumeFrom !== undefined) {
      const { events, lost } = opts.hub.since(resumeFrom);
      if (lost > 0) res.write(`event: gap\ndata: ${JSON.stringify({ lost, after: resumeFrom })}\n\n`);
      for (const e of events) send(e);
    }
  };
  return {
    handler,
    stats,
    closeAll: () => {
      for (const res of open) res.end();
    },
  };
}

function typesParam(req: Request): Set<HubEventType> {
  const raw = req.query.types;
  if (raw === undefined) return new Set(EVENT_TYPES);
  if (typeof raw !== 'string' || raw === '') {
    throw new HttpError(400, 'INVALID_QUERY', 'query parameter "types" must be a comma-separated list', {
      parameter: 'types',
      allowed: EVENT_TYPES,
    });
  }
  const out = new Set<HubEventType>();
  for (const t of raw.split(',')) {
    if (!(EVENT_TYPES as readonly string[]).includes(t)) {
      throw new HttpError(400, 'INVALID_QUERY', `unknown event type "${t.slice(0, 40)}"`, {
        parameter: 'types',
        allowed: EVENT_TYPES,
      });
    }
    out.add(t as HubEventType);
  }
  return out;
}

function lastEventId(req: Request): number | undefined {
  const header = req.headers['last-event-id'];
  const raw = typeof header === 'string' && header !== '' ? header : req.query.last_event_id;
  if (raw === undefined) return undefined;
  if (typeof raw !== 'string' || !/^\d{1,15}$/.test(raw)) {
    throw new HttpError(400, 'INVALID_QUERY', 'Last-Event-ID must be an event id (a whole number)', {
      parameter: 'last_event_id',
    });
  }
  return Number(raw);
}
