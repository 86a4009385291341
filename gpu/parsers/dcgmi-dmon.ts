import { DCGM_FIELDS_BY_ID, DCGM_FIELDS_BY_SHORT_NAME, dcgmNumber, dcgmString } from './dcgm-fields.js';

/**
 * `dcgmi dmon -e <ids> -d <ms>` output, one line at a time. What dcgmi prints (DCGM 3.x and 4.x,
 * `dcgmi/DeviceMonitor.cpp`):
 *
 *   #Entity   GPUTL             MCUTL             POWER             TMPTR        ...
 *   ID                                            W                 C
 *   GPU 0     0                 0                 20.891            22           ...
 *
 * Every column is padded to a fixed width (the field's display width + 8), so the header's titles mark
 * where each value starts. The entity column is 10 wide up to 3.3, 13 in 4.0–4.4 and 16 from 4.5, and
 * DCGM 4 leaves a cell blank where a value is missing, so splitting on whitespace would shift columns:
 * values are cut at the header's positions instead. The header comes again every 14 intervals.
 * Missing readings print `N/A`; entities are `GPU n`, `GPU-I n`, `GPU-CI n`, `vGPU n`, `Switch n`,
 * `CPU n`, `CPU Core n`, `CX n`, `LINK n` and in DCGM 4 `GPU n LINK m` / `SW n LINK m`.
 */

export interface DmonRow {
  /** The entity kind as dcgmi prints it: `GPU`, `GPU-I`, `GPU-CI`, ... */
  entityGroup: string;
  entityId: number;
  /** Numeric values by field id. `N/A`, blanks and DCGM's blank sentinels are absent, never 0. */
  values: Map<number, number>;
  /** Text values (string fields such as 50 name or 54 UUID) by field id. */
  strings: Map<number, string>;
  /** Field ids whose text was neither a number, `N/A` nor blank, though the field is numeric. */
  invalid: number[];
}

export type DmonLine =
  | { kind: 'header'; shortNames: string[] }
  | { kind: 'units' }
  | { kind: 'row'; row: DmonRow }
  /** What dcgmi says besides data: errors, "dmon was stopped ...". */
  | { kind: 'message'; text: string }
  | { kind: 'blank' }
  | { kind: 'invalid'; text: string; reason: string };

const ENTITY = /^(GPU|vGPU|Switch|GPU-I|GPU-CI|LINK|CPU|CPU Core|CX|UNKNOWN|GPU \d+ LINK|SW \d+ LINK) (\d+)$/;
const NUMBER = /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/;
const MESSAGE = /^(Error|Warning|dmon was stopped)/i;

/** Column start offsets: where the header's titles begin. */
interface Layout {
  entityWidth: number;
  starts: number[];
  shortNames: string[];
}

/**
 * Classifies `dcgmi dmon` lines and cuts rows into values. Feed it lines in order: it learns the column
 * layout from each header. `fieldIds` is the `-e` list in the order given; without it, columns are
 * matched to fields by their short names.
 */
export class DmonParser {
  private layout: Layout | undefined;

  constructor(private readonly fieldIds?: readonly number[]) {}

  line(raw: string): DmonLine {
    const text = raw.replace(/\r$/, '');
    const trimmed = text.trim();
    if (trimmed === '') return { kind: 'blank' };
    if (text.startsWith('#Entity')) return this.header(text);
    if (/^ID(\s|$)/.test(text)) return { kind: 'units' };
    if (MESSAGE.test(trimmed)) return { kind: 'message', text: trimmed };
    return this.row(text);
  }

  private header(text: string): DmonLine {
    const starts: number[] = [];
    const shortNames: string[] = [];
    const re = /\S+/g;
    re.lastIndex = '#Entity'.length;
    for (let m = re.exec(text); m; m = re.exec(text)) {
      starts.push(m.index);
      shortNames.push(m[0]);
    }
    const first = starts[0];
    if (this.fieldIds && shortNames.length !== this.fieldIds.length) {
      this.layout = undefined;
      return {
        kind: 'invalid',
        text,
        reason: `header has ${shortNames.length} columns, ${this.fieldIds.length} fields were asked for`,
      };
    }
    this.layout = { entityWidth: first ?? text.length, starts, shortNames };
    return { kind: 'header', shortNames };
  }

  private fieldIdAt(column: number): number | undefined {
    if (this.fieldIds) return this.fieldIds[column];
    const shortName = this.layout?.shortNames[column];
    return shortName === undefined ? undefined : DCGM_FIELDS_BY_SHORT_NAME.get(shortName)?.id;
  }

  private row(text: string): DmonLine {
    const cells = (this.layout && this.cutAtColumns(text, this.layout)) ?? this.splitOnSpaces(text);
    if (typeof cells === 'string') return { kind: 'invalid', text, reason: cells };
    const entity = ENTITY.exec(cells.entity.replace(/\s+/g, ' '));
    if (!entity) return { kind: 'invalid', text, reason: `not an entity: "${cells.entity}"` };
    const row: DmonRow = {
      entityGroup: entity[1] ?? '',
      entityId: Number(entity[2]),
      values: new Map(),
      strings: new Map(),
      invalid: [],
    };
    cells.values.forEach((cell, column) => {
      const id = this.fieldIdAt(column);
      if (id === undefined) return;
      const value = cell.trim();
      if (value === '' || value === 'N/A') return;
      if (NUMBER.test(value)) {
        const n = dcgmNumber(Number(value));
        if (n !== undefined) row.values.set(id, n);
        return;
      }
      const s = dcgmString(value);
      if (s === undefined) return;
      if (DCGM_FIELDS_BY_ID.has(id)) row.invalid.push(id);
      else row.strings.set(id, s);
    });
    return { kind: 'row', row };
  }

  /** Cells at the header's offsets, or undefined when the line does not fit them. */
  private cutAtColumns(text: string, layout: Layout): { entity: string; values: string[] } | undefined {
    const { starts, entityWidth } = layout;
    // Cells are padded by at least two spaces, so a column must start right after a space.
    for (const start of starts) {
      if (start < text.length && start > 0 && text[start - 1] !== ' ') return undefined;
    }
    const values = starts.map((start, i) => text.slice(start, starts[i + 1] ?? text.length));
    return { entity: text.slice(0, entityWidth).trim(), values };
  }

  /** The fallback for rows seen before any header, or that overflow it: whitespace-separated tokens. */
  private splitOnSpaces(text: string): { entity: string; values: string[] } | string {
    const tokens = text.trim().split(/\s+/);
    const wanted = this.fieldIds?.length ?? this.layout?.shortNames.length;
    if (wanted === undefined) return 'a row before any header, with no field list to read it by';
    const entityTokens = tokens.length - wanted;
    if (entityTokens < 2 || entityTokens > 4) {
      return `expected ${wanted} values after the entity, found ${tokens.length} tokens`;
    }
    return { entity: tokens.slice(0, entityTokens).join(' '), values: tokens.slice(entityTokens) };
  }
}

/** Splits a byte stream's text into lines, holding back a partial last line until it is complete. */
export class LineSplitter {
  private rest = '';

  constructor(
    /** A line longer than this is cut, so a child that never prints a newline cannot grow memory. */
    private readonly maxLineLength = 64 * 1024,
  ) {}

  push(chunk: string): string[] {
    const text = this.rest + chunk;
    const lines = text.split('\n');
    this.rest = lines.pop() ?? '';
    if (this.rest.length > this.maxLineLength) {
      lines.push(this.rest.slice(0, this.maxLineLength));
      this.rest = '';
    }
    return lines;
  }

  /** The partial line left at the end of the stream, if any. */
  flush(): string[] {
    const rest = this.rest;
    this.rest = '';
    return rest === '' ? [] : [rest];
  }
}

/** Every row of a whole `dcgmi dmon` capture, for tests and one-shot use. */
export function parseDcgmiDmon(
  text: string,
  fieldIds?: readonly number[],
): { lines: DmonLine[]; rows: DmonRow[] } {
  const parser = new DmonParser(fieldIds);
  const lines = text.split('\n').map((l) => parser.line(l));
  const rows = lines.flatMap((l) => (l.kind === 'row' ? [l.row] : []));
  return { lines, rows };
}
