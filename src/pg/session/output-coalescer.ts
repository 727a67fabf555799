/**
 * Joins consecutive frames that lie next to each other in the same received chunk into one
 * write, so a typical response (RowDescription, DataRows, CommandComplete, ReadyForQuery
 * arriving in one TCP read) costs one socket write instead of one per frame.
 */
import type { Writable } from 'node:stream';

export class OutputCoalescer {
  private buf: Buffer | null = null;
  private start = 0;
  private end = 0;
  /** true when the last flush() saw the destination refuse more (write() returned false) */
  full = false;

  constructor(private readonly out: Writable) {}

  push(frame: Buffer): void {
    if (this.buf !== null && frame.buffer === this.buf.buffer && frame.byteOffset === this.end) {
      this.end += frame.length;
      return;
    }
    this.flush();
    this.buf = frame;
    this.start = frame.byteOffset;
    this.end = frame.byteOffset + frame.length;
  }

  flush(): void {
    const b = this.buf;
    if (b === null) return;
    this.buf = null;
    const data =
      this.start === b.byteOffset && this.end === b.byteOffset + b.length
        ? b
        : Buffer.from(b.buffer, this.start, this.end - this.start);
    if (!this.out.write(data)) this.full = true;
  }
}
