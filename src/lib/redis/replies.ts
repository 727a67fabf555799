/**
 * Raw RESP2 replies, as the proxy's links hand them over, turned into what ioredis's parser
 * gives its commands: bulk and simple strings as Buffers (each command converts them to
 * strings or keeps them, per its `…Buffer` variant), integers as numbers, errors as
 * ioredis's `ReplyError`, nested errors (inside EXEC's reply) included.
 */
import { ReplyError } from 'ioredis';
import { parseReply, RespErrorValue, type RespValue } from '../../redis/resp/index.js';

export type IoredisValue = Buffer | number | null | Error | IoredisValue[];

export function toIoredis(v: RespValue): IoredisValue {
  if (Buffer.isBuffer(v)) return v;
  if (typeof v === 'number' || v === null) return v;
  if (typeof v === 'string') return Buffer.from(v);
  if (v instanceof RespErrorValue) return new (ReplyError as new (message: string) => Error)(v.message);
  if (Array.isArray(v)) return v.map(toIoredis);
  if (typeof v === 'bigint') return Number(v);
  if (typeof v === 'boolean') return v ? 1 : 0;
  // A map (RESP3 only; the library's links speak RESP2): its pairs, flat, as RESP2 sends them.
  const out: IoredisValue[] = [];
  for (const [k, val] of v) out.push(toIoredis(k), toIoredis(val));
  return out;
}

/** The reply of one command: its value, or the error to reject it with. */
export function decode(raw: Buffer): { value: IoredisValue } | { error: Error } {
  const value = toIoredis(parseReply(raw));
  return value instanceof Error ? { error: value } : { value };
}
