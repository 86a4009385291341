import { StringDecoder } from 'node:string_decoder';

/**
 * Splits a byte stream into lines (LF or CRLF). A line longer than `maxLineLength` characters is
 * emitted in pieces, so a workload printing megabytes without a newline cannot exhaust memory.
 */
export class LineSplitter {
  private readonly decoder = new StringDecoder('utf8');
  private pending = '';

  constructor(
    private readonly onLine: (line: string, truncated: boolean) => void,
    private readonly maxLineLength = 64 * 1024,
  ) {}

  push(chunk: Buffer | string): void {
    let text = this.pending + (typeof chunk === 'string' ? chunk : this.decoder.write(chunk));
    let nl: number;
    while ((nl = text.indexOf('\n')) !== -1) {
      const line = text.slice(0, nl);
      text = text.slice(nl + 1);
      this.emitBounded(line.endsWith('\r') ? line.slice(0, -1) : line);
    }
    while (text.length > this.maxLineLength) {
      this.onLine(text.slice(0, this.maxLineLength), true);
      text = text.slice(this.maxLineLength);
    }
    this.pending = text;
  }

  /** Emits what is left after the stream ends. */
  end(): void {
    const rest = this.pending + this.decoder.end();
    this.pending = '';
    if (rest.length > 0) this.emitBounded(rest);
  }

  private emitBounded(line: string): void {
    for (let i = 0; i < line.length; i += this.maxLineLength) {
      const piece = line.slice(i, i + this.maxLineLength);
      this.onLine(piece, line.length > this.maxLineLength);
    }
    if (line.length === 0) this.onLine('', false);
  }
}
