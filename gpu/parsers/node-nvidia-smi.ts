import { XMLParser } from 'fast-xml-parser';
import { GpuError } from '../errors.js';
import { assertWellFormedXml, decodeXmlEntities, stripBom, wrongRoot } from './xml-document.js';

/**
 * The JSON the npm package `node-nvidia-smi` (1.0.0, github.com/chrisallenlane/node-nvidia-smi) gives
 * for `nvidia-smi -q -x`, so its users can read `GET /debug/gpu?format=node-nvidia-smi` unchanged.
 *
 * That package hands stdout to xml2js 0.4 (`^0.4.17`) as
 * `parseString(stdout, { explicitArray: false, trim: true }, cb)`. Mirrored here, with xml2js's
 * other defaults that shape the output:
 * - `explicitRoot: true`: the result is `{ nvidia_smi_log: {...} }`.
 * - `explicitArray: false`: an element that occurs once is its value, one that repeats is an array
 *   in document order, so one GPU gives `gpu: {...}` and two give `gpu: [{...}, {...}]`.
 * - `attrkey: '$'`, `mergeAttrs: false`: attributes go under `$`, e.g. `gpu.$.id`.
 * - `charkey: '_'`: text of an element that also has attributes or children is under `_`; text of a
 *   plain element is the value itself.
 * - `trim: true`: text is trimmed, but only text that has something besides whitespace: xml2js
 *   drops whitespace-only text before trimming, and an element left empty becomes that dropped
 *   whitespace (`emptyTag: ''`), so `<processes>\n\t\t</processes>` gives `"\n\t\t"` and
 *   `<processes/>` gives `""`.
 * - all text of an element, including text between its children, is joined before that check.
 * - the XML declaration, DOCTYPE and comments leave no trace; values stay strings.
 * Whitespace-only input gives `null`, as xml2js does. Built with fast-xml-parser in its
 * order-preserving mode, which keeps the raw text xml2js's rules need. Checked byte for byte against
 * xml2js 0.4.23 on every capture in test/fixtures/real. Known differences, none of which nvidia-smi
 * output can trigger in a value anyone reads: CRLF inside a whitespace-only element comes out as LF
 * (fast-xml-parser applies XML's line-end normalization, sax does not); elements named `__proto__`,
 * `constructor` or `prototype` are a parse error and `toString`-like names get a `__` prefix
 * (fast-xml-parser's guard against prototype pollution); xml2js rejects an undeclared `&name;`,
 * this keeps it as written.
 */
const parser = new XMLParser({
  preserveOrder: true,
  ignoreAttributes: false,
  attributeNamePrefix: '',
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: false,
  processEntities: false,
  htmlEntities: false,
  ignoreDeclaration: true,
  ignorePiTags: true,
  tagValueProcessor: (_tagName, value) => decodeXmlEntities(value),
  attributeValueProcessor: (_name, value) => decodeXmlEntities(value),
});

const ROOT = 'nvidia_smi_log';
const WHAT = 'node-nvidia-smi view of nvidia-smi -q -x';
const TEXT = '#text';
const ATTRS = ':@';

/** Converts `nvidia-smi -q -x` output to node-nvidia-smi's JSON. Throws `GpuError('parse')` on bad XML. */
export function toNodeNvidiaSmiShape(xmlText: string): unknown {
  if (typeof xmlText === 'string' && xmlText.trim() === '') return null;
  assertWellFormedXml(xmlText, WHAT);
  let nodes: unknown;
  try {
    nodes = parser.parse(stripBom(xmlText)) as unknown;
  } catch (err) {
    throw new GpuError('parse', `${WHAT}: ${err instanceof Error ? err.message : String(err)}`, {
      cause: err,
    });
  }
  const elements = (Array.isArray(nodes) ? (nodes as unknown[]) : []).flatMap((n) => {
    const name = elementName(n);
    return name === undefined ? [] : [{ name, node: n as OrderedNode }];
  });
  const [root] = elements;
  if (elements.length !== 1 || root?.name !== ROOT)
    throw wrongRoot(
      WHAT,
      ROOT,
      elements.map((e) => e.name),
    );
  return { [ROOT]: convert(root.node, ROOT) };
}

/**
 * fast-xml-parser's order-preserving node: `{ [tagName]: children, ':@'?: attributes }` for an
 * element, `{ '#text': text }` for text.
 */
type OrderedNode = Record<string, unknown>;

function elementName(node: unknown): string | undefined {
  if (typeof node !== 'object' || node === null) return undefined;
  return Object.keys(node).find((k) => k !== ATTRS && k !== TEXT);
}

function convert(node: OrderedNode, name: string): unknown {
  const children = Array.isArray(node[name]) ? (node[name] as unknown[]) : [];
  const attrs = node[ATTRS];
  const obj: Record<string, unknown> = {};
  let text = '';
  let hasAttrs = false;
  if (typeof attrs === 'object' && attrs !== null && Object.keys(attrs).length > 0) {
    define(obj, '$', { ...attrs });
    hasAttrs = true;
  }
  for (const child of children) {
    if (typeof child !== 'object' || child === null) continue;
    if (Object.hasOwn(child, TEXT)) {
      text += String((child as OrderedNode)[TEXT]);
      continue;
    }
    const childName = elementName(child);
    if (childName !== undefined) assignOrPush(obj, childName, convert(child as OrderedNode, childName));
  }
  const whitespaceOnly = /^\s*$/.test(text);
  if (whitespaceOnly) {
    const keys = Object.keys(obj);
    // An element with nothing left is the whitespace xml2js dropped (emptyTag '').
    return keys.length === 0 ? text : obj;
  }
  const trimmed = text.trim();
  if (Object.keys(obj).length === 0 && !hasAttrs) return trimmed;
  // xml2js creates the text key first, so it leads the object.
  return { _: trimmed, ...obj };
}

function assignOrPush(obj: Record<string, unknown>, key: string, value: unknown): void {
  if (!Object.hasOwn(obj, key)) {
    define(obj, key, value);
    return;
  }
  const current = obj[key];
  if (Array.isArray(current)) current.push(value);
  else define(obj, key, [current, value]);
}

/** Sets a key as plain data, so an element named `__proto__` can never touch the prototype. */
function define(obj: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}
