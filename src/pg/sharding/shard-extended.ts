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
  encodeBindWithStatement,
  encodeParse,
  FrontendCode,
} from '../protocol/index.js';
import type { Classification } from '../classifier/classify.js';
import { parseNote, type FrameNote } from '../session/frame-note.js';
import {
  schemaEpoch,
  statementKey,
  type ClientStatements,
  type StatementInfo,
} from '../session/statement-registry.js';

export interface ExtendedGroup {
  /** the group's frames (on the unnamed statement) */
  frames: readonly Buffer[];
  /** the client sent the Parse (else it bound a statement it prepared earlier: no ParseComplete) */
  parsed: boolean;
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
  return { frames: batch, parsed: true, sql: parse.query, params, describe, paramTypes };
}

/**
 * A group on a named statement, as drivers send prepared statements: `Parse(name), Bind(name),
 * …` or a later `Bind(name), …`, rewritten onto the unnamed statement (the text comes from the
 * client's statements), so it can run on any backend of any shard as it is. `register`: the
 * named statement this batch's Parse defines, for the session to remember. Null for any other
 * shape (extendedGroup then checks the rest).
 */
export function unnamedGroup(
  batch: readonly Buffer[],
  notes: readonly FrameNote[],
  statements: ClientStatements,
): {
  frames: Buffer[];
  parsed: boolean;
  register: { name: string; info: StatementInfo } | null;
  classification: Classification;
} | null {
  const first = batch[0];
  if (first === undefined) return null;
  if (first[0] === FrontendCode.Parse) {
    const bind = batch[1];
    if (bind?.[0] !== FrontendCode.Bind) return null;
    const { msg, classification } = parseNote(notes[0]!);
    const head = decodeBindHead(bind);
    if (head.statement !== msg.statement) return null;
    if (msg.statement === '') return { frames: [...batch], parsed: true, register: null, classification };
    const info: StatementInfo = {
      key: statementKey(msg.query, msg.paramTypes),
      query: msg.query,
      paramTypes: Buffer.from(msg.paramTypes),
      classification,
      epoch: schemaEpoch.value,
    };
    return {
      frames: [
        encodeParse('', msg.query, msg.paramTypes),
        encodeBindWithStatement(bind, head, ''),
        ...batch.slice(2),
      ],
      parsed: true,
      register: { name: msg.statement, info },
      classification,
    };
  }
  if (first[0] !== FrontendCode.Bind) return null;
  const head = decodeBindHead(first);
  if (head.statement === '') return null;
  const info = statements.get(head.statement);
  if (info === null) return null;
  return {
    frames: [
      encodeParse('', info.query, info.paramTypes),
      encodeBindWithStatement(first, head, ''),
      ...batch.slice(1),
    ],
    parsed: false,
    register: null,
    classification: info.classification,
  };
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
