import { XMLValidator } from 'fast-xml-parser';
import { GpuError } from '../errors.js';

/**
 * What the nvidia-smi XML parsers share: the well-formedness check that turns garbage into a
 * `parse` failure, and entity decoding done by hand. fast-xml-parser's own entity processing is left
 * off because it would expand entities a DOCTYPE internal subset declares; nvidia-smi's DOCTYPE is
 * an external SYSTEM reference that declares none, so only XML's five predefined entities and
 * numeric character references can legitimately occur.
 */

const ENTITY = /&(?:#(\d+)|#x([0-9a-fA-F]+)|(amp|lt|gt|quot|apos));/g;
const PREDEFINED: Readonly<Record<string, string>> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

/** Decodes the predefined and numeric references; any other `&name;` stays as written. */
export function decodeXmlEntities(s: string): string {
  if (!s.includes('&')) return s;
  return s.replace(ENTITY, (whole, dec?: string, hex?: string, name?: string) => {
    if (name !== undefined) return PREDEFINED[name] ?? whole;
    const code = dec !== undefined ? Number.parseInt(dec, 10) : Number.parseInt(hex ?? '', 16);
    return Number.isInteger(code) && code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : whole;
  });
}

/** The text with a leading byte-order mark removed; Windows tools sometimes write one. */
export function stripBom(text: string): string {
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

/** A short one-line excerpt of unparseable input for the error message, so logs show what came back. */
function excerpt(text: string): string {
  const line = text.trim().replace(/\s+/g, ' ');
  return line.length > 80 ? `${line.slice(0, 80)}…` : line;
}

/**
 * Throws `GpuError('parse')` unless `text` is well-formed XML. fast-xml-parser's parser accepts broken
 * input silently, hence its validator first. Callers check the root element on what they parsed.
 */
export function assertWellFormedXml(text: unknown, what: string): asserts text is string {
  if (typeof text !== 'string') throw new GpuError('parse', `${what}: expected text, got ${typeof text}`);
  const result = XMLValidator.validate(text);
  if (result !== true) {
    const { msg, line, col } = result.err;
    throw new GpuError(
      'parse',
      `${what}: not well-formed XML (${msg} at line ${line}${col ? `, column ${col}` : ''}): "${excerpt(text)}"`,
    );
  }
}

/** The error for a document whose top-level elements are not exactly one `<rootName>`. */
export function wrongRoot(what: string, rootName: string, found: readonly string[]): GpuError {
  const list = found.length === 0 ? 'none' : found.map((n) => `<${n}>`).join(', ');
  return new GpuError('parse', `${what}: expected one <${rootName}> root element, found ${list}`);
}
