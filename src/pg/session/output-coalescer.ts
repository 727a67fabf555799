/**
 * Joins consecutive frames that lie next to each other in the same received chunk into one
 * write, so a typical response (RowDescription, DataRows, CommandComplete, ReadyForQuery
 * arriving in one TCP read) costs one socket write instead of one per frame.
 */
import type { Writable } from 'node:stream';

export class OutputCoalescer {
  private buf: Buffer | null = null;
  /** `buf.buffer`, read once per run: on Node 20 that getter is a call into the runtime */
  private memory: ArrayBufferLike | null = null;
  private start = 0;
  private end = 0;
  /** true when the last flush() saw the destination refuse more (write() returned false) */
  full = false;

  constructor(private readonly out: Writable) {}

  push(frame: Buffer): void {
    const at = frame.byteOffset;
    if (this.buf !== null && at === this.end && frame.buffer === this.memory) {
      this.end += frame.length;
      return;
    }
    this.flush();
    this.buf = frame;
    this.memory = frame.buffer;
    this.start = at;
    this.end = at + frame.length;
  }

  flush(): void {
    const b = this.buf;
    if (b === null) return;
    this.buf = null;
    const memory = this.memory as ArrayBuffer;
    this.memory = null;
    const data =
      this.end - this.start === b.length ? b : Buffer.from(memory, this.start, this.end - this.start);
    if (!this.out.write(data)) this.full = true;
  }
}
