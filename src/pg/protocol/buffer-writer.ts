/**
 * Reusable scratch writer for building frames: reserves the header, lets the caller append
 * fields, then writes the length back and copies out exactly the frame's bytes. One instance is
 * shared by every encoder (encoding is synchronous, so it is never used by two at once).
 */
import { MalformedFrameError } from './errors.js';

const INITIAL_BYTES = 1024;
/** Past this the scratch space is released after use, so one huge frame doesn't pin memory forever. */
const RETAIN_BYTES = 64 * 1024;

export class BufferWriter {
  private buffer = Buffer.allocUnsafe(INITIAL_BYTES);
  private offset = 0;
  /** Where the Int32 length field sits: 1 after a type byte, 0 for startup-phase frames. */
  private lengthAt = 0;

  /** Starts a typed frame: type byte plus a placeholder for the Int32 length. */
  startTyped(type: number): this {
    this.buffer[0] = type;
    this.lengthAt = 1;
    this.offset = 5;
    return this;
  }

  /** Starts a startup-phase frame (no type byte): a placeholder for the Int32 length only. */
  startUntyped(): this {
    this.lengthAt = 0;
    this.offset = 4;
    return this;
  }

  int32(value: number): this {
    this.ensure(4);
    this.buffer.writeInt32BE(value, this.offset);
    this.offset += 4;
    return this;
  }

  int16(value: number): this {
    this.ensure(2);
    this.buffer.writeInt16BE(value, this.offset);
    this.offset += 2;
    return this;
  }

  byte(value: number): this {
    this.ensure(1);
    this.buffer[this.offset++] = value;
    return this;
  }

  /**
   * Appends a NUL-terminated UTF-8 string. A NUL inside would end the field early and shift
   * every later field on the receiver's side, so it is refused.
   */
  cstring(value: string): this {
    if (value.includes('\0')) throw new MalformedFrameError('cannot encode a string containing NUL');
    const length = Buffer.byteLength(value, 'utf8');
    this.ensure(length + 1);
    this.buffer.write(value, this.offset, length, 'utf8');
    this.offset += length;
    this.buffer[this.offset++] = 0;
    return this;
  }

  bytes(value: Uint8Array): this {
    this.ensure(value.length);
    this.buffer.set(value, this.offset);
    this.offset += value.length;
    return this;
  }

  /** Writes the length back and returns a fresh buffer holding exactly the frame. */
  finish(): Buffer {
    this.buffer.writeUInt32BE(this.offset - this.lengthAt, this.lengthAt);
    // allocUnsafe + copy: small frames come from Node's shared pool, so this is one cheap copy.
    const frame = Buffer.allocUnsafe(this.offset);
    this.buffer.copy(frame, 0, 0, this.offset);
    if (this.buffer.length > RETAIN_BYTES) this.buffer = Buffer.allocUnsafe(INITIAL_BYTES);
    return frame;
  }

  /** Grows the scratch space by doubling until `extra` more bytes fit. */
  private ensure(extra: number): void {
    const needed = this.offset + extra;
    if (needed <= this.buffer.length) return;
    let size = this.buffer.length * 2;
    while (size < needed) size *= 2;
    const grown = Buffer.allocUnsafe(size);
    this.buffer.copy(grown, 0, 0, this.offset);
    this.buffer = grown;
  }
}
