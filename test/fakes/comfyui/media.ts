import { deflateSync } from 'node:zlib';

/**
 * Small but well-formed media files for the fake ComfyUI: what its nodes write to output/ and temp/ and
 * what it sends as preview frames. Every encoder is deterministic (same arguments, same bytes), so a
 * test can compare a file's sha256 with what `/view` serves.
 */

export type Rgb = readonly [number, number, number];

const CRC32_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(...parts: Buffer[]): number {
  let c = 0xffffffff;
  for (const b of parts) for (const byte of b) c = (CRC32_TABLE[(c ^ byte) & 0xff] ?? 0) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** A colour derived from a string, stable across runs. */
export function colourOf(seed: string): Rgb {
  let h = 2166136261;
  for (let i = 0; i < seed.length; i++) h = Math.imul(h ^ seed.charCodeAt(i), 16777619) >>> 0;
  return [h & 0xff, (h >>> 8) & 0xff, (h >>> 16) & 0xff];
}

export function mixColour(a: Rgb, b: Rgb, t: number): Rgb {
  const m = (x: number, y: number): number => Math.round(x + (y - x) * t);
  return [m(a[0], b[0]), m(a[1], b[1]), m(a[2], b[2])];
}

// ---------------------------------------------------------------------------------------------- PNG

function pngChunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(head.subarray(4), data), 0);
  return Buffer.concat([head, data, crc]);
}

function isLatin1(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 255) return false;
  return true;
}

/**
 * An RGB PNG of one colour with a lighter diagonal, and text chunks as ComfyUI's savers add them
 * (`prompt`, `workflow`, ...): tEXt when the value is latin-1, iTXt otherwise, as Pillow chooses.
 */
export function encodePng(width: number, height: number, colour: Rgb, text: [string, string][] = []): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  const stride = width * 3 + 1;
  const raw = Buffer.alloc(stride * height);
  const light = mixColour(colour, [255, 255, 255], 0.5);
  for (let y = 0; y < height; y++) {
    const row = y * stride;
    for (let x = 0; x < width; x++) {
      const c = x === y ? light : colour;
      raw[row + 1 + x * 3] = c[0];
      raw[row + 2 + x * 3] = c[1];
      raw[row + 3 + x * 3] = c[2];
    }
  }
  const chunks = [pngChunk('IHDR', ihdr)];
  for (const [key, value] of text) {
    if (isLatin1(value)) {
      chunks.push(
        pngChunk(
          'tEXt',
          Buffer.concat([Buffer.from(key, 'latin1'), Buffer.from([0]), Buffer.from(value, 'latin1')]),
        ),
      );
    } else {
      const head = Buffer.concat([Buffer.from(key, 'latin1'), Buffer.from([0, 0, 0, 0, 0])]);
      chunks.push(pngChunk('iTXt', Buffer.concat([head, Buffer.from(value, 'utf8')])));
    }
  }
  chunks.push(pngChunk('IDAT', deflateSync(raw, { level: 4 })));
  chunks.push(pngChunk('IEND', Buffer.alloc(0)));
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), ...chunks]);
}

/** Width and height from a PNG's IHDR, or undefined when the bytes are not a PNG. */
export function pngSize(buf: Buffer): { width: number; height: number } | undefined {
  if (buf.length < 24 || buf.readUInt32BE(0) !== 0x89504e47 || buf.toString('latin1', 12, 16) !== 'IHDR') {
    return undefined;
  }
  return { width: buf.readUInt32BE(16), height: buf.readUInt32BE(20) };
}

// --------------------------------------------------------------------------------------------- JPEG

class BitWriter {
  private readonly bytes: number[] = [];
  private acc = 0;
  private n = 0;
  constructor(private readonly jpegStuffing: boolean) {}

  /** Writes the low `count` bits of `value`, most significant first. */
  msb(value: number, count: number): void {
    for (let i = count - 1; i >= 0; i--) {
      this.acc = (this.acc << 1) | ((value >>> i) & 1);
      if (++this.n === 8) this.flushByte();
    }
  }

  private flushByte(): void {
    this.bytes.push(this.acc & 0xff);
    if (this.jpegStuffing && (this.acc & 0xff) === 0xff) this.bytes.push(0);
    this.acc = 0;
    this.n = 0;
  }

  /** Pads the last byte with `fill` bits. */
  finish(fill: 0 | 1): Buffer {
    while (this.n !== 0) this.msb(fill, 1);
    return Buffer.from(this.bytes);
  }
}

function jpegSegment(marker: number, body: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt16BE(marker, 0);
  head.writeUInt16BE(body.length + 2, 2);
  return Buffer.concat([head, body]);
}

// The standard luminance DC table (ITU T.81 Annex K.3): code lengths and the categories they encode.
const DC_BITS = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0];
const DC_VALUES = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
const DC_CODES: { code: number; length: number }[] = (() => {
  const out: { code: number; length: number }[] = [];
  let code = 0;
  let k = 0;
  for (let len = 1; len <= 16; len++) {
    for (let i = 0; i < (DC_BITS[len - 1] ?? 0); i++)
      out[DC_VALUES[k++] ?? 0] = { code: code++, length: len };
    code <<= 1;
  }
  return out;
})();

/**
 * A baseline JPEG of one colour (4:4:4, quantisation 1). A flat image has only DC coefficients, so the
 * AC table holds just end-of-block, coded as the single bit 0.
 */
export function encodeJpeg(width: number, height: number, colour: Rgb): Buffer {
  const [r, g, b] = colour;
  const ycc = [
    0.299 * r + 0.587 * g + 0.114 * b,
    -0.168736 * r - 0.331264 * g + 0.5 * b + 128,
    0.5 * r - 0.418688 * g - 0.081312 * b + 128,
  ].map((v) => Math.round(8 * (Math.min(255, Math.max(0, v)) - 128)));
  const app0 = Buffer.from([0x4a, 0x46, 0x49, 0x46, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0]);
  const dqt = Buffer.concat([Buffer.from([0]), Buffer.alloc(64, 1)]);
  const sof = Buffer.alloc(15);
  sof[0] = 8;
  sof.writeUInt16BE(height, 1);
  sof.writeUInt16BE(width, 3);
  sof[5] = 3;
  for (let c = 0; c < 3; c++) sof.set([c + 1, 0x11, 0], 6 + c * 3);
  const dht = Buffer.concat([
    Buffer.from([0x00]),
    Buffer.from(DC_BITS),
    Buffer.from(DC_VALUES),
    Buffer.from([0x10, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00]),
  ]);
  const sos = Buffer.from([3, 1, 0x00, 2, 0x00, 3, 0x00, 0, 63, 0]);
  const bits = new BitWriter(true);
  const blocks = Math.ceil(width / 8) * Math.ceil(height / 8);
  for (let i = 0; i < blocks; i++) {
    for (let c = 0; c < 3; c++) {
      const diff = i === 0 ? (ycc[c] ?? 0) : 0;
      const mag = Math.abs(diff);
      const cat = mag === 0 ? 0 : Math.floor(Math.log2(mag)) + 1;
      const code = DC_CODES[cat] ?? { code: 0, length: 2 };
      bits.msb(code.code, code.length);
      if (cat > 0) bits.msb(diff > 0 ? diff : diff + (1 << cat) - 1, cat);
      bits.msb(0, 1); // end of block
    }
  }
  return Buffer.concat([
    Buffer.from([0xff, 0xd8]),
    jpegSegment(0xffe0, app0),
    jpegSegment(0xffdb, dqt),
    jpegSegment(0xffc0, sof),
    jpegSegment(0xffc4, dht),
    jpegSegment(0xffda, sos),
    bits.finish(1),
    Buffer.from([0xff, 0xd9]),
  ]);
}

// --------------------------------------------------------------------------------------------- WEBP

class LsbWriter {
  private readonly bytes: number[] = [];
  private acc = 0;
  private n = 0;
  bits(value: number, count: number): void {
    for (let i = 0; i < count; i++) {
      this.acc |= ((value >>> i) & 1) << this.n;
      if (++this.n === 8) {
        this.bytes.push(this.acc);
        this.acc = 0;
        this.n = 0;
      }
    }
  }
  finish(): Buffer {
    if (this.n > 0) this.bytes.push(this.acc);
    return Buffer.from(this.bytes);
  }
}

function riffChunk(fourcc: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.write(fourcc, 0, 'latin1');
  head.writeUInt32LE(data.length, 4);
  return Buffer.concat([head, data, data.length % 2 ? Buffer.alloc(1) : Buffer.alloc(0)]);
}

function u24(v: number): Buffer {
  return Buffer.from([v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff]);
}

/**
 * A lossless (VP8L) bitstream of one colour: no transforms, no colour cache, and five prefix codes
 * that each have a single symbol, so every pixel is coded with zero bits.
 */
function vp8lSolid(width: number, height: number, colour: Rgb): Buffer {
  const w = new LsbWriter();
  w.bits(0x2f, 8);
  w.bits(width - 1, 14);
  w.bits(height - 1, 14);
  w.bits(0, 1); // alpha_is_used
  w.bits(0, 3); // version
  w.bits(0, 1); // no transform
  w.bits(0, 1); // no colour cache
  w.bits(0, 1); // no meta prefix codes
  for (const symbol of [colour[1], colour[0], colour[2], 255]) {
    w.bits(1, 1); // simple code
    w.bits(0, 1); // one symbol
    w.bits(1, 1); // 8-bit symbol
    w.bits(symbol, 8);
  }
  w.bits(1, 1);
  w.bits(0, 1);
  w.bits(0, 1); // 1-bit symbol
  w.bits(0, 1); // distance symbol 0
  return w.finish();
}

/** An animated WebP (VP8X + ANIM + one ANMF per frame), each frame one colour. */
export function encodeAnimatedWebp(width: number, height: number, frames: Rgb[], durationMs: number): Buffer {
  const vp8x = Buffer.concat([Buffer.from([0x02, 0, 0, 0]), u24(width - 1), u24(height - 1)]);
  const anim = Buffer.from([255, 255, 255, 255, 0, 0]); // white background, loop forever
  const parts = [riffChunk('VP8X', vp8x), riffChunk('ANIM', anim)];
  for (const colour of frames) {
    const head = Buffer.concat([
      u24(0),
      u24(0),
      u24(width - 1),
      u24(height - 1),
      u24(durationMs),
      Buffer.from([0]),
    ]);
    parts.push(riffChunk('ANMF', Buffer.concat([head, riffChunk('VP8L', vp8lSolid(width, height, colour))])));
  }
  const body = Buffer.concat([Buffer.from('WEBP', 'latin1'), ...parts]);
  const head = Buffer.alloc(8);
  head.write('RIFF', 0, 'latin1');
  head.writeUInt32LE(body.length, 4);
  return Buffer.concat([head, body]);
}

// --------------------------------------------------------------------------------------------- FLAC

function crc8(buf: Buffer): number {
  let c = 0;
  for (const byte of buf) {
    c ^= byte;
    for (let i = 0; i < 8; i++) c = c & 0x80 ? ((c << 1) ^ 0x07) & 0xff : (c << 1) & 0xff;
  }
  return c;
}

function crc16(buf: Buffer): number {
  let c = 0;
  for (const byte of buf) {
    c ^= byte << 8;
    for (let i = 0; i < 8; i++) c = c & 0x8000 ? ((c << 1) ^ 0x8005) & 0xffff : (c << 1) & 0xffff;
  }
  return c;
}

function flacUtf8(n: number): number[] {
  if (n < 0x80) return [n];
  if (n < 0x800) return [0xc0 | (n >> 6), 0x80 | (n & 0x3f)];
  if (n < 0x10000) return [0xe0 | (n >> 12), 0x80 | ((n >> 6) & 0x3f), 0x80 | (n & 0x3f)];
  return [0xf0 | (n >> 18), 0x80 | ((n >> 12) & 0x3f), 0x80 | ((n >> 6) & 0x3f), 0x80 | (n & 0x3f)];
}

const FLAC_RATE_CODES: Record<number, number> = {
  88200: 1,
  176400: 2,
  192000: 3,
  8000: 4,
  16000: 5,
  22050: 6,
  24000: 7,
  32000: 8,
  44100: 9,
  48000: 10,
  96000: 11,
};

/**
 * A 16-bit FLAC file: a short tone in a verbatim first block, then constant (silent) blocks for the
 * rest of the duration, with a VORBIS_COMMENT block carrying `tags` as ComfyUI's audio savers do.
 */
export function encodeFlac(
  sampleRate: number,
  channels: number,
  totalSamples: number,
  toneHz: number,
  tags: [string, string][] = [],
): Buffer {
  const blockSize = 4096;
  const info = new BitWriter(false);
  info.msb(blockSize, 16);
  info.msb(blockSize, 16);
  info.msb(0, 24);
  info.msb(0, 24);
  info.msb(sampleRate, 20);
  info.msb(channels - 1, 3);
  info.msb(15, 5);
  info.msb(Math.floor(totalSamples / 2 ** 32), 4);
  info.msb(totalSamples >>> 0, 32);
  const streamInfo = Buffer.concat([info.finish(0), Buffer.alloc(16)]);

  const vendor = Buffer.from('Lavf61.7.100', 'utf8');
  const comments = tags.map(([k, v]) => Buffer.from(`${k}=${v}`, 'utf8'));
  const vc: Buffer[] = [];
  const le32 = (n: number): Buffer => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(n, 0);
    return b;
  };
  vc.push(le32(vendor.length), vendor, le32(comments.length));
  for (const c of comments) vc.push(le32(c.length), c);
  const vorbis = Buffer.concat(vc);

  const blockHeader = (last: boolean, type: number, len: number): Buffer =>
    Buffer.from([(last ? 0x80 : 0) | type, (len >>> 16) & 0xff, (len >>> 8) & 0xff, len & 0xff]);

  const frames: Buffer[] = [];
  const rateCode = FLAC_RATE_CODES[sampleRate] ?? 0;
  for (let start = 0, index = 0; start < totalSamples; start += blockSize, index++) {
    const n = Math.min(blockSize, totalSamples - start);
    const header = Buffer.from([
      0xff,
      0xf8,
      0x70 | rateCode,
      ((channels - 1) << 4) | 0x08,
      ...flacUtf8(index),
      ((n - 1) >> 8) & 0xff,
      (n - 1) & 0xff,
    ]);
    const frameHead = Buffer.concat([header, Buffer.from([crc8(header)])]);
    const body = new BitWriter(false);
    for (let ch = 0; ch < channels; ch++) {
      if (index === 0) {
        body.msb(0x02, 8); // VERBATIM
        for (let i = 0; i < n; i++) {
          const s = Math.round(8000 * Math.sin((2 * Math.PI * toneHz * (start + i)) / sampleRate));
          body.msb(s & 0xffff, 16);
        }
      } else {
        body.msb(0x00, 8); // CONSTANT
        body.msb(0, 16);
      }
    }
    const frame = Buffer.concat([frameHead, body.finish(0)]);
    const crc = Buffer.alloc(2);
    crc.writeUInt16BE(crc16(frame), 0);
    frames.push(frame, crc);
  }
  return Buffer.concat([
    Buffer.from('fLaC', 'latin1'),
    blockHeader(false, 0, streamInfo.length),
    streamInfo,
    blockHeader(true, 4, vorbis.length),
    vorbis,
    ...frames,
  ]);
}

// ---------------------------------------------------------------------------------------------- MP4

function box(type: string, ...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  const head = Buffer.alloc(8);
  head.writeUInt32BE(body.length + 8, 0);
  head.write(type, 4, 'latin1');
  return Buffer.concat([head, body]);
}

/**
 * An ISO-BMFF file with `ftyp`, a `moov` holding only `mvhd` (timescale 1000, the duration) and a
 * `udta` comment, and an `mdat` with one flat JPEG per frame. Its boxes parse; it has no track, so it
 * is not a playable video.
 */
export function encodeMp4(
  width: number,
  height: number,
  frames: Rgb[],
  fps: number,
  comment: string,
): Buffer {
  const ftyp = box(
    'ftyp',
    Buffer.from('isom', 'latin1'),
    Buffer.from([0, 0, 2, 0]),
    Buffer.from('isomiso2avc1mp41', 'latin1'),
  );
  const mvhd = Buffer.alloc(100);
  mvhd.writeUInt32BE(1000, 12); // timescale
  mvhd.writeUInt32BE(Math.round((frames.length / Math.max(fps, 0.01)) * 1000), 16);
  mvhd.writeUInt32BE(0x00010000, 20); // rate 1.0
  mvhd.writeUInt16BE(0x0100, 24); // volume 1.0
  const matrix = [0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000];
  matrix.forEach((v, i) => mvhd.writeUInt32BE(v, 36 + i * 4));
  mvhd.writeUInt32BE(2, 96); // next track id
  const cmt = Buffer.from(comment, 'utf8');
  const data = box('data', Buffer.from([0, 0, 0, 1, 0, 0, 0, 0]), cmt);
  const udta = box('udta', box('\u00a9cmt', data));
  const moov = box('moov', box('mvhd', mvhd), udta);
  const mdat = box('mdat', ...frames.map((c) => encodeJpeg(Math.min(width, 64), Math.min(height, 64), c)));
  return Buffer.concat([ftyp, moov, mdat]);
}
