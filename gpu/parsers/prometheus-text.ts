/**
 * The Prometheus text exposition format (version 0.0.4), read strictly where the grammar is clear and
 * tolerantly where real exporters break it: a sample whose value is not a number is kept with an
 * undefined value (dcgm-exporter prints `ERROR - FAILED TO CONVERT TO STRING` and MIG device names as
 * values), a line that cannot be read is reported and skipped, and nothing stops the rest of the page.
 */

export interface PromSample {
  name: string;
  labels: Record<string, string>;
  /** Undefined when the value text is not a number. */
  value: number | undefined;
  /** The value text as written. */
  rawValue: string;
  timestampMs?: number;
  /** 1-based line number, for messages. */
  line: number;
}

export interface PromParseError {
  line: number;
  text: string;
  reason: string;
}

export interface PromParseResult {
  samples: PromSample[];
  /** `# TYPE` declarations by metric name. */
  types: Map<string, string>;
  errors: PromParseError[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*/;
const FLOAT = /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/;
const TIMESTAMP = /^-?\d+$/;

/** A Prometheus float (Go's ParseFloat forms, including NaN and ±Inf), or undefined. */
export function parsePromFloat(text: string): number | undefined {
  if (FLOAT.test(text)) return Number(text);
  switch (text.toLowerCase()) {
    case 'nan':
      return NaN;
    case '+inf':
    case 'inf':
      return Infinity;
    case '-inf':
      return -Infinity;
    default:
      return undefined;
  }
}

class LineError extends Error {}

/** Reads `{a="b",c="d"}` from `text` at `pos` (which points at `{`); returns the labels and the end. */
function readLabels(text: string, start: number): { labels: Record<string, string>; end: number } {
  const labels: Record<string, string> = {};
  let pos = start + 1;
  const skipSpaces = (): void => {
    while (text[pos] === ' ' || text[pos] === '\t') pos++;
  };
  for (;;) {
    skipSpaces();
    if (text[pos] === '}') return { labels, end: pos + 1 };
    const name = LABEL_NAME.exec(text.slice(pos))?.[0];
    if (!name) throw new LineError(`bad label name at column ${pos + 1}`);
    pos += name.length;
    skipSpaces();
    if (text[pos] !== '=') throw new LineError(`expected "=" after label ${name}`);
    pos++;
    skipSpaces();
    if (text[pos] !== '"') throw new LineError(`expected a quoted value for label ${name}`);
    pos++;
    let value = '';
    for (;;) {
      const c = text[pos];
      if (c === undefined) throw new LineError(`unterminated value for label ${name}`);
      pos++;
      if (c === '"') break;
      if (c === '\\') {
        const e = text[pos];
        pos++;
        value += e === 'n' ? '\n' : (e ?? '');
      } else {
        value += c;
      }
    }
    if (Object.hasOwn(labels, name)) throw new LineError(`label ${name} given twice`);
    labels[name] = value;
    skipSpaces();
    if (text[pos] === ',') pos++;
    else if (text[pos] !== '}') throw new LineError(`expected "," or "}" after label ${name}`);
  }
}

function readSample(text: string, line: number): PromSample {
  const name = METRIC_NAME.exec(text)?.[0];
  if (!name) throw new LineError('not a metric name');
  let pos = name.length;
  let labels: Record<string, string> = {};
  if (text[pos] === '{') {
    ({ labels, end: pos } = readLabels(text, pos));
  }
  if (pos < text.length && text[pos] !== ' ' && text[pos] !== '\t') {
    throw new LineError(`unexpected "${text[pos]}" after the metric name`);
  }
  const rest = text.slice(pos).trim();
  const parts = rest.split(/\s+/);
  if (parts.length === 2 && TIMESTAMP.test(parts[1] ?? '')) {
    const value = parsePromFloat(parts[0] ?? '');
    if (value !== undefined) {
      return { name, labels, value, rawValue: parts[0] ?? '', timestampMs: Number(parts[1]), line };
    }
  }
  return { name, labels, value: parsePromFloat(rest), rawValue: rest, line };
}

export function parsePrometheusText(text: string): PromParseResult {
  const samples: PromSample[] = [];
  const types = new Map<string, string>();
  const errors: PromParseError[] = [];
  const lines = text.split('\n');
  lines.forEach((raw, i) => {
    const line = raw.replace(/\r$/, '');
    const trimmed = line.trim();
    if (trimmed === '') return;
    if (trimmed.startsWith('#')) {
      const type = /^#\s*TYPE\s+(\S+)\s+(\S+)/.exec(trimmed);
      if (type?.[1] && type[2]) types.set(type[1], type[2]);
      return;
    }
    try {
      samples.push(readSample(trimmed, i + 1));
    } catch (err) {
      if (!(err instanceof LineError)) throw err;
      errors.push({ line: i + 1, text: trimmed.slice(0, 200), reason: err.message });
    }
  });
  return { samples, types, errors };
}
