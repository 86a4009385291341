import { StringDecoder } from 'node:string_decoder';

export interface LineInfo {
  /** The line was longer than the limit and this is one piece of it. */
  truncated: boolean;
  /**
   * The line ended with a bare carriage return: a progress bar (tqdm and the like) redrawing itself.
   * Such lines come many times a second; the caller may keep only some of them.
   */
  redraw: boolean;
}

/**
 * Splits a byte stream into lines: LF, CRLF, or a bare CR (progress bars). A line longer than
 * `maxLineLength` characters is emitted in pieces, so a workload printing megabytes without a line
 * end cannot exhaust memory.
 */
export class LineSplitter {
  private readonly decoder = new StringDecoder('utf8');
  private pending = '';

  constructor(
    private readonly onLine: (line: string, info: LineInfo) => void,
    private readonly maxLineLength = 16 * 1024,
  ) {}

  push(chunk: Buffer | string): void {
    let text = this.pending + (typeof chunk === 'string' ? chunk : this.decoder.write(chunk));
    let start = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c === 10) {
        this.emitBounded(text.slice(start, i), false);
        start = i + 1;
      } else if (c === 13) {
        // CRLF is one line end; a CR at the very end may be the first half of one, so wait.
        if (i + 1 === text.length) break;
        if (text.charCodeAt(i + 1) === 10) {
          this.emitBounded(text.slice(start, i), false);
          start = i + 2;
          i++;
        } else {
          this.emitBounded(text.slice(start, i), true);
          start = i + 1;
        }
      }
    }
    text = text.slice(start);
    while (text.length > this.maxLineLength) {
      this.onLine(text.slice(0, this.maxLineLength), { truncated: true, redraw: false });
      text = text.slice(this.maxLineLength);
    }
    this.pending = text;
  }

  /** Emits what is left after the stream ends. */
  end(): void {
    const rest = (this.pending + this.decoder.end()).replace(/\r$/, '');
    this.pending = '';
    if (rest.length > 0) this.emitBounded(rest, false);
  }

  private emitBounded(line: string, redraw: boolean): void {
    if (line.length <= this.maxLineLength) {
      this.onLine(line, { truncated: false, redraw });
      return;
    }
    for (let i = 0; i < line.length; i += this.maxLineLength) {
      this.onLine(line.slice(i, i + this.maxLineLength), { truncated: true, redraw });
    }
  }
}
