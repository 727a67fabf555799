/**
 * The logical replication codec: the CopyData payloads of a walsender in CopyBoth mode
 * (XLogData `w`, primary keepalive `k`, the standby status update `r` we send back) and the
 * messages of the `pgoutput` plugin (proto_version 1: Begin, Commit, Relation, Insert, Update,
 * Delete, Truncate, Type, Origin, Message). Pure functions over Buffers; imports nothing from
 * the rest of the project.
 *
 * Reference: PostgreSQL's "Streaming Replication Protocol" and "Logical Replication Message
 * Formats" chapters. LSNs are 64-bit and kept as bigint; timestamps are microseconds since
 * 2000-01-01 UTC and are converted to Unix milliseconds.
 */

/** 2000-01-01T00:00:00Z in Unix milliseconds: PostgreSQL's timestamp epoch. */
const PG_EPOCH_MS = 946_684_800_000;

/** A malformed replication or pgoutput message. */
export class PgoutputError extends Error {
  readonly code = 'PGOUTPUT_MALFORMED';
}

/** `X/Y` (hex halves), PostgreSQL's text form of an LSN. */
export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

/** Parses `X/Y`; throws PgoutputError on anything else. */
export function parseLsnText(text: string): bigint {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text.trim());
  if (!m) throw new PgoutputError(`not an LSN: '${text.slice(0, 40)}'`);
  return (BigInt(`0x${m[1]!}`) << 32n) | BigInt(`0x${m[2]!}`);
}

function pgTimeToMs(micros: bigint): number {
  return PG_EPOCH_MS + Number(micros / 1000n);
}

/** Reads fields front to back, checking each against the end of the message. */
class Cursor {
  offset: number;
  constructor(
    readonly buf: Buffer,
    offset = 0,
  ) {
    this.offset = offset;
  }
  private need(n: number): void {
    if (this.offset + n > this.buf.length)
      throw new PgoutputError(`message ends at ${this.buf.length}, needed ${this.offset + n}`);
  }
  u8(): number {
    this.need(1);
    return this.buf[this.offset++]!;
  }
  i16(): number {
    this.need(2);
    const v = this.buf.readInt16BE(this.offset);
    this.offset += 2;
    return v;
  }
  i32(): number {
    this.need(4);
    const v = this.buf.readInt32BE(this.offset);
    this.offset += 4;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32BE(this.offset);
    this.offset += 4;
    return v;
  }
  u64(): bigint {
    this.need(8);
    const v = this.buf.readBigUInt64BE(this.offset);
    this.offset += 8;
    return v;
  }
  i64(): bigint {
    this.need(8);
    const v = this.buf.readBigInt64BE(this.offset);
    this.offset += 8;
    return v;
  }
  cstring(): string {
    const end = this.buf.indexOf(0, this.offset);
    if (end < 0) throw new PgoutputError('string without its terminating zero byte');
    const s = this.buf.toString('utf8', this.offset, end);
    this.offset = end + 1;
    return s;
  }
  bytes(n: number): Buffer {
    this.need(n);
    const b = this.buf.subarray(this.offset, this.offset + n);
    this.offset += n;
    return b;
  }
}

// --- the walsender's CopyData payloads ---------------------------------------------------

/** A CopyData payload from the walsender. */
export type ReplicationMessage =
  | { kind: 'xlog'; walStart: bigint; walEnd: bigint; sendTimeMs: number; data: Buffer }
  | { kind: 'keepalive'; walEnd: bigint; sendTimeMs: number; replyRequested: boolean };

/** Decodes the payload of one CopyData frame (without the frame's own 5-byte header). */
export function decodeReplicationMessage(payload: Buffer): ReplicationMessage {
  const c = new Cursor(payload);
  const type = c.u8();
  if (type === 0x77 /* w */) {
    const walStart = c.u64();
    const walEnd = c.u64();
    const sendTimeMs = pgTimeToMs(c.i64());
    return { kind: 'xlog', walStart, walEnd, sendTimeMs, data: payload.subarray(c.offset) };
  }
  if (type === 0x6b /* k */) {
    const walEnd = c.u64();
    const sendTimeMs = pgTimeToMs(c.i64());
    return { kind: 'keepalive', walEnd, sendTimeMs, replyRequested: c.u8() === 1 };
  }
  throw new PgoutputError(`unknown replication message type 0x${type.toString(16)}`);
}

/**
 * A whole CopyData frame holding a standby status update: written, flushed and applied
 * positions (we report the same position for the three: it is applied in Redis), the client's
 * clock, and whether the server should answer at once.
 */
export function encodeStandbyStatus(lsn: bigint, nowMs: number, replyRequested = false): Buffer {
  const frame = Buffer.alloc(1 + 4 + 1 + 8 * 4 + 1);
  frame[0] = 0x64; // CopyData
  frame.writeInt32BE(frame.length - 1, 1);
  frame[5] = 0x72; // r
  frame.writeBigUInt64BE(lsn, 6);
  frame.writeBigUInt64BE(lsn, 14);
  frame.writeBigUInt64BE(lsn, 22);
  frame.writeBigInt64BE(BigInt(Math.round(nowMs - PG_EPOCH_MS)) * 1000n, 30);
  frame[38] = replyRequested ? 1 : 0;
  return frame;
}

/** A whole CopyDone frame (`c`): ends the client's side of CopyBoth. */
export const COPY_DONE: Buffer = Buffer.from([0x63, 0, 0, 0, 4]);

// --- pgoutput -----------------------------------------------------------------------------

/** One column of a relation as a Relation message describes it. */
export interface RelationColumn {
  name: string;
  typeOid: number;
  typeMod: number;
  /** part of the replica identity (the primary key by default) */
  isKey: boolean;
}

/** One column value of a tuple: text output, NULL, or "unchanged TOASTed value" (not sent). */
export type TupleValue = { kind: 'text'; text: string } | { kind: 'null' } | { kind: 'unchanged' };

export type PgoutputMessage =
  | { tag: 'begin'; finalLsn: bigint; commitTimeMs: number; xid: number }
  | { tag: 'commit'; flags: number; commitLsn: bigint; endLsn: bigint; commitTimeMs: number }
  | { tag: 'origin'; lsn: bigint; name: string }
  | {
      tag: 'relation';
      relationOid: number;
      schema: string;
      name: string;
      replicaIdentity: string;
      columns: RelationColumn[];
    }
  | { tag: 'type'; typeOid: number; schema: string; name: string }
  | { tag: 'insert'; relationOid: number; newTuple: TupleValue[] }
  | {
      tag: 'update';
      relationOid: number;
      /** the old key ('K') or whole old row ('O') when the server sent one, else null */
      oldTuple: TupleValue[] | null;
      newTuple: TupleValue[];
    }
  | { tag: 'delete'; relationOid: number; oldTuple: TupleValue[] }
  | { tag: 'truncate'; options: number; relationOids: number[] }
  | { tag: 'message'; transactional: boolean; lsn: bigint; prefix: string; content: Buffer };

function readTuple(c: Cursor): TupleValue[] {
  const n = c.i16();
  const values: TupleValue[] = new Array<TupleValue>(n);
  for (let i = 0; i < n; i++) {
    const kind = c.u8();
    if (kind === 0x6e /* n */) values[i] = { kind: 'null' };
    else if (kind === 0x75 /* u */) values[i] = { kind: 'unchanged' };
    else if (kind === 0x74 /* t */) values[i] = { kind: 'text', text: c.bytes(c.i32()).toString('utf8') };
    else
      throw new PgoutputError(
        `column ${i}: value kind 0x${kind.toString(16)} (binary values are not requested; start with binary 'false')`,
      );
  }
  return values;
}

/** Decodes one pgoutput message (the `data` of an XLogData). */
export function decodePgoutput(data: Buffer): PgoutputMessage {
  const c = new Cursor(data);
  const tag = c.u8();
  switch (tag) {
    case 0x42 /* B */: {
      const finalLsn = c.u64();
      const commitTimeMs = pgTimeToMs(c.i64());
      return { tag: 'begin', finalLsn, commitTimeMs, xid: c.u32() };
    }
    case 0x43 /* C */: {
      const flags = c.u8();
      const commitLsn = c.u64();
      const endLsn = c.u64();
      return { tag: 'commit', flags, commitLsn, endLsn, commitTimeMs: pgTimeToMs(c.i64()) };
    }
    case 0x4f /* O */: {
      const lsn = c.u64();
      return { tag: 'origin', lsn, name: c.cstring() };
    }
    case 0x52 /* R */: {
      const relationOid = c.u32();
      const schema = c.cstring();
      const name = c.cstring();
      const replicaIdentity = String.fromCharCode(c.u8());
      const n = c.i16();
      const columns: RelationColumn[] = [];
      for (let i = 0; i < n; i++) {
        const flags = c.u8();
        const colName = c.cstring();
        columns.push({ name: colName, typeOid: c.u32(), typeMod: c.i32(), isKey: (flags & 1) === 1 });
      }
      return { tag: 'relation', relationOid, schema, name, replicaIdentity, columns };
    }
    case 0x59 /* Y */: {
      const typeOid = c.u32();
      const schema = c.cstring();
      return { tag: 'type', typeOid, schema, name: c.cstring() };
    }
    case 0x49 /* I */: {
      const relationOid = c.u32();
      const n = c.u8();
      if (n !== 0x4e /* N */) throw new PgoutputError(`insert: expected 'N', got 0x${n.toString(16)}`);
      return { tag: 'insert', relationOid, newTuple: readTuple(c) };
    }
    case 0x55 /* U */: {
      const relationOid = c.u32();
      let kind = c.u8();
      let oldTuple: TupleValue[] | null = null;
      if (kind === 0x4b /* K */ || kind === 0x4f /* O */) {
        oldTuple = readTuple(c);
        kind = c.u8();
      }
      if (kind !== 0x4e /* N */) throw new PgoutputError(`update: expected 'N', got 0x${kind.toString(16)}`);
      return { tag: 'update', relationOid, oldTuple, newTuple: readTuple(c) };
    }
    case 0x44 /* D */: {
      const relationOid = c.u32();
      const kind = c.u8();
      if (kind !== 0x4b && kind !== 0x4f)
        throw new PgoutputError(`delete: expected 'K' or 'O', got 0x${kind.toString(16)}`);
      return { tag: 'delete', relationOid, oldTuple: readTuple(c) };
    }
    case 0x54 /* T */: {
      const n = c.i32();
      const options = c.u8();
      const relationOids: number[] = [];
      for (let i = 0; i < n; i++) relationOids.push(c.u32());
      return { tag: 'truncate', options, relationOids };
    }
    case 0x4d /* M */: {
      const flags = c.u8();
      const lsn = c.u64();
      const prefix = c.cstring();
      const content = c.bytes(c.i32());
      return { tag: 'message', transactional: (flags & 1) === 1, lsn, prefix, content };
    }
    default:
      throw new PgoutputError(
        `unknown pgoutput message '${String.fromCharCode(tag)}' (0x${tag.toString(16)})`,
      );
  }
}
