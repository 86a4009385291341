import type { Request } from 'express';
import { HttpError } from './errors.js';

/** One query value, or undefined; repeated keys (`?a=1&a=2`) and bracket objects are a 400. */
export function single(req: Request, key: string): string | undefined {
  const v = (req.query as Record<string, unknown>)[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') {
    throw new HttpError(400, 'INVALID_QUERY', `query parameter "${key}" must be given once`, {
      parameter: key,
    });
  }
  return v;
}

/**
 * A whole number ≥ `min`. Values above `cap` are capped rather than refused (the documented limit
 * applies), so `lines=99999999999` answers with the most the agent keeps.
 */
export function cappedInt(
  req: Request,
  key: string,
  opts: { min: number; cap: number; fallback: number },
): number {
  const raw = single(req, key);
  if (raw === undefined) return opts.fallback;
  if (!/^\+?\d+$/.test(raw.trim())) {
    throw new HttpError(
      400,
      'INVALID_QUERY',
      `query parameter "${key}" must be a whole number ≥ ${opts.min}`,
      {
        parameter: key,
        value: raw.slice(0, 100),
      },
    );
  }
  const n = Number(raw.trim());
  if (n < opts.min) {
    throw new HttpError(400, 'INVALID_QUERY', `query parameter "${key}" must be at least ${opts.min}`, {
      parameter: key,
      value: raw.slice(0, 100),
    });
  }
  return Math.min(n, opts.cap);
}

export function oneOf<T extends string>(req: Request, key: string, values: readonly T[], fallback: T): T {
  const raw = single(req, key);
  if (raw === undefined) return fallback;
  const v = raw.trim().toLowerCase();
  if (!(values as readonly string[]).includes(v)) {
    throw new HttpError(
      400,
      'INVALID_QUERY',
      `query parameter "${key}" must be one of ${values.join(', ')}`,
      {
        parameter: key,
        value: raw.slice(0, 100),
        allowed: values,
      },
    );
  }
  return v as T;
}

/** An identifier: 1–256 visible characters. */
export function idParam(req: Request, key: string): string | undefined {
  const raw = single(req, key);
  if (raw === undefined) return undefined;
  // eslint-disable-next-line no-control-regex
  if (raw.length === 0 || raw.length > 256 || /[\x00-\x1f\x7f]/.test(raw)) {
    throw new HttpError(400, 'INVALID_QUERY', `query parameter "${key}" must be 1–256 visible characters`, {
      parameter: key,
    });
  }
  return raw;
}

/** A point in time as ISO 8601 or Unix epoch milliseconds. */
export function timeParam(req: Request, key: string): number | undefined {
  const raw = single(req, key);
  if (raw === undefined) return undefined;
  const t = /^\d{1,16}$/.test(raw) ? Number(raw) : /^\d{4}-\d{2}-\d{2}/.test(raw) ? Date.parse(raw) : NaN;
  if (!Number.isFinite(t)) {
    throw new HttpError(
      400,
      'INVALID_QUERY',
      `query parameter "${key}" must be an ISO 8601 time or epoch milliseconds`,
      {
        parameter: key,
        value: raw.slice(0, 100),
      },
    );
  }
  return t;
}

/** A W3C trace id: 32 lowercase hex digits. */
export function traceIdParam(req: Request, key: string): string | undefined {
  const raw = single(req, key);
  if (raw === undefined) return undefined;
  if (!/^[0-9a-f]{32}$/.test(raw)) {
    throw new HttpError(
      400,
      'INVALID_QUERY',
      `query parameter "${key}" must be 32 lowercase hex digits (a W3C trace id)`,
      {
        parameter: key,
        value: raw.slice(0, 100),
      },
    );
  }
  return raw;
}
