/**
 * The one extended-protocol shape a sharded session runs on every shard: a self-contained
 * group on the unnamed statement and portal, as node-postgres and most drivers send a query
 * with parameters: Parse, Bind, [Describe portal], Execute (all rows), Sync. Its rows must come
 * back in text format, so rwsplit can merge them.
 */
import { bindTextParams } from './shard-choice.js';
import {
  decodeBindHead,
  decodeExecutePortal,
  decodeParse,
  encodeParse,
  FrontendCode,
} from '../protocol/index.js';

export interface ExtendedGroup {
  sql: string;
  /** bound values in text form (null: SQL NULL) */
  params: (string | null)[];
  /** the client asked for the row description */
  describe: boolean;
  /** the Parse's declared parameter types, by index (0: unspecified) */
  paramTypes: number[];
}

/** The group, or null when the batch is any other shape (or binary values or results). */
export function extendedGroup(batch: readonly Buffer[]): ExtendedGroup | null {
  const types = batch.map((f) => f[0]);
  const describe = types.length === 5;
  const expected = describe
    ? [FrontendCode.Parse, FrontendCode.Bind, FrontendCode.Describe, FrontendCode.Execute, FrontendCode.Sync]
    : [FrontendCode.Parse, FrontendCode.Bind, FrontendCode.Execute, FrontendCode.Sync];
  if (types.length !== expected.length || types.some((t, i) => t !== expected[i])) return null;
  const parse = decodeParse(batch[0]!);
  const bind = decodeBindHead(batch[1]!);
  if (parse.statement !== '' || bind.statement !== '' || bind.portal !== '') return null;
  if (describe && (batch[2]![5] !== 0x50 /* P */ || batch[2]![6] !== 0)) return null;
  const execute = batch[describe ? 3 : 2]!;
  if (decodeExecutePortal(execute) !== '' || execute.readInt32BE(execute.length - 4) !== 0) return null;
  const params = bindTextParams(batch[1]!);
  if (params === null || !textResults(batch[1]!)) return null;
  const paramTypes: number[] = [];
  const n = parse.paramTypes.readUInt16BE(0);
  for (let i = 0; i < n; i++) paramTypes.push(parse.paramTypes.readUInt32BE(2 + 4 * i));
  return { sql: parse.query, params, describe, paramTypes };
}

/** The group's frames with the Parse's text (and parameter types) replaced, and a Describe of the portal. */
export function rewrittenGroup(
  batch: readonly Buffer[],
  g: ExtendedGroup,
  sql: string,
  paramTypes: number[],
): Buffer {
  const types = Buffer.alloc(2 + 4 * paramTypes.length);
  types.writeUInt16BE(paramTypes.length, 0);
  paramTypes.forEach((t, i) => types.writeUInt32BE(t, 2 + 4 * i));
  const describePortal = Buffer.from([FrontendCode.Describe, 0, 0, 0, 6, 0x50, 0]);
  const rest = g.describe ? batch.slice(2) : [describePortal, ...batch.slice(2)];
  return Buffer.concat([encodeParse('', sql, types), batch[1]!, ...rest]);
}

/** Whether a Bind asks for every result column in text format. */
function textResults(frame: Buffer): boolean {
  let at = decodeBindHead(frame).restOffset;
  const nFormats = frame.readInt16BE(at);
  at += 2 + 2 * nFormats;
  const n = frame.readInt16BE(at);
  at += 2;
  for (let i = 0; i < n; i++) {
    const len = frame.readInt32BE(at);
    at += 4 + Math.max(len, 0);
  }
  const results = frame.readInt16BE(at);
  for (let i = 0; i < results; i++) if (frame.readInt16BE(at + 2 + 2 * i) !== 0) return false;
  return true;
}
