/**
 * Which shard a batch of client frames belongs to (sharded PostgreSQL): the statement's own
 * hint, then the session's `SET rwsplit.shard_key`, then a table rule or the default shard,
 * as the ShardResolver reads them from the first statement of the batch. Parameters of a
 * Bind are decoded (text format) so `WHERE id = $1` rules work for extended-protocol clients.
 */
import { FrontendCode, decodeBindHead, decodeQuery } from '../protocol/index.js';
import type { TakenFrames } from '../session/client-batch.js';
import { parseNote } from '../session/frame-note.js';
import type { ShardResolution, ShardResolver } from './shard-resolver.js';
import type { ClientStatements } from '../session/statement-registry.js';

export type ShardChoice = ShardResolution | { readonly kind: 'none' };

const NONE: ShardChoice = Object.freeze({ kind: 'none' });

/**
 * `none`: the batch has no statement (Sync, Close, Describe only). `unknown` lets the caller
 * keep a transaction on its current shard.
 */
export function chooseShard(
  batch: TakenFrames,
  statements: ClientStatements,
  resolver: ShardResolver,
  shardKey: string | null,
): ShardChoice {
  let sql: string | null = null;
  let params: (string | null)[] | undefined;
  for (let i = 0; i < batch.frames.length; i++) {
    const frame = batch.frames[i]!;
    const t = frame[0];
    if (t === FrontendCode.Query) sql = decodeQuery(frame);
    else if (t === FrontendCode.Parse) sql = parseNote(batch.notes[i]!).msg.query;
    else if (t === FrontendCode.Bind) {
      // A Bind after its Parse in the same batch carries the values for that text.
      const info = statements.get(decodeBindHead(frame).statement);
      if (sql === null) sql = info?.query ?? null;
      params = bindTextParams(frame) ?? undefined;
    } else continue;
    if (sql !== null && (t === FrontendCode.Query || t === FrontendCode.Bind)) break;
  }
  if (sql === null) return NONE;
  const r = resolver.resolve(sql, params);
  if (r.kind === 'shard' && (r.via === 'hint-shard' || r.via === 'hint-key')) return r;
  if (r.kind === 'error' || r.kind === 'all-shards') return r;
  if (shardKey !== null) return { kind: 'shard', shard: resolver.shardForKey(shardKey), via: 'hint-key' };
  return r;
}

/**
 * Parameter values of a Bind frame as text, or null when any is in binary format (a key
 * sent in binary cannot be hashed like its text form).
 */
export function bindTextParams(frame: Buffer): (string | null)[] | null {
  let at = 5;
  at = frame.indexOf(0, at) + 1; // portal
  at = frame.indexOf(0, at) + 1; // statement
  const nFormats = frame.readInt16BE(at);
  at += 2;
  const formats: number[] = [];
  for (let i = 0; i < nFormats; i++, at += 2) formats.push(frame.readInt16BE(at));
  const n = frame.readInt16BE(at);
  at += 2;
  const out: (string | null)[] = [];
  for (let i = 0; i < n; i++) {
    const format = nFormats === 0 ? 0 : nFormats === 1 ? formats[0]! : (formats[i] ?? 0);
    const len = frame.readInt32BE(at);
    at += 4;
    if (len < 0) {
      out.push(null);
      continue;
    }
    if (format !== 0) return null;
    out.push(frame.toString('utf8', at, at + len));
    at += len;
  }
  return out;
}
