/**
 * `COPY t FROM STDIN` of a sharded or reference table on a sharded endpoint (what `pgbench -i`,
 * `psql \copy` and bulk loaders send): each row goes to the shard of its key column's value, as
 * an `INSERT` of that row would; every row of a reference table goes to every shard. Only the
 * text format with its default delimiter is split (a row is one line, its fields separated by
 * tabs); CSV and binary are refused with the reason.
 *
 * @module
 */
import type { Token } from '../classifier/lexer.js';
import { RwsplitPgError, SqlState } from '../errors.js';
import type { ShardResolver } from './shard-resolver.js';

/** What a `COPY … FROM STDIN` statement says. */
export interface CopyInPlan {
  /** the table's name parts, normalised */
  readonly table: readonly string[];
  /** the column list, normalised, or null (every column, in table order) */
  readonly columns: readonly string[] | null;
  /** the shard key column (normalised), or null for a reference table (every row on every shard) */
  readonly keyColumn: string | null;
}

const word = (tokens: readonly Token[], i: number): string | undefined => {
  const t = tokens[i];
  return t?.kind === 'word' ? t.text : undefined;
};
const ident = (tokens: readonly Token[], i: number): string | undefined => {
  const t = tokens[i];
  return t?.kind === 'word' || t?.kind === 'qident' ? t.text : undefined;
};
const punct = (tokens: readonly Token[], i: number, ch: string): boolean => {
  const t = tokens[i];
  return t?.kind === 'punct' && t.text === ch;
};

/** Options whose rows rwsplit cannot cut into lines and fields the way the server will. */
const UNSPLITTABLE = new Set(['csv', 'binary', 'delimiter']);

/**
 * The plan of a `COPY t [(cols)] FROM STDIN …` of a table the rules shard or replicate; null
 * for any other statement (the caller's usual handling applies); an error for a form that
 * cannot be split.
 */
export function copyInPlan(
  tokens: readonly Token[],
  resolver: ShardResolver,
): CopyInPlan | RwsplitPgError | null {
  if (word(tokens, 0) !== 'copy') return null;
  const table: string[] = [];
  let i = 1;
  for (;;) {
    const part = ident(tokens, i);
    if (part === undefined) return null;
    table.push(part);
    i++;
    if (!punct(tokens, i, '.')) break;
    i++;
  }
  let columns: string[] | null = null;
  if (punct(tokens, i, '(')) {
    columns = [];
    for (i++; !punct(tokens, i, ')'); i++) {
      const c = ident(tokens, i);
      if (c === undefined) return null;
      columns.push(c);
      i++;
      if (punct(tokens, i, ')')) break;
      if (!punct(tokens, i, ',')) return null;
    }
    i++;
  }
  if (word(tokens, i) !== 'from' || word(tokens, i + 1) !== 'stdin') return null;
  const sharded = resolver.isSharded(table);
  if (!sharded && !resolver.isReference(table)) return null;
  for (let j = i + 2; j < tokens.length; j++) {
    const w = word(tokens, j);
    const format = w === 'format' ? word(tokens, j + 1) : undefined;
    if ((w !== undefined && UNSPLITTABLE.has(w)) || (format !== undefined && format !== 'text'))
      return new RwsplitPgError(
        'SHARD_COPY_FORMAT',
        SqlState.FeatureNotSupported,
        'rwsplit: COPY FROM STDIN of a sharded or reference table is split into rows in the text format with its default delimiter only',
        'Use COPY … FROM STDIN without FORMAT csv, FORMAT binary or DELIMITER, or give the shard with a /* rwsplit:shard=NAME */ comment.',
      );
  }
  return { table, columns, keyColumn: sharded ? resolver.keyColumn(table) : null };
}

/** A row whose shard cannot be known (its key is NULL). */
export class CopyRowError extends Error {}

/**
 * Cuts COPY text data into lines and sends each to its shard. Data arrives in arbitrary
 * chunks (a CopyData message may end mid-line); the unfinished line waits for the next.
 */
export class CopyRowSplitter {
  private rest: Buffer = Buffer.alloc(0);
  /** the `\.` end-of-data line was seen: what follows is ignored, as the server does */
  private ended = false;
  private line = 0;

  /**
   * @param keyIndex the key's field index, or null to send every row to every shard
   * @param shards number of shards
   * @param shardOfKey the shard index of a key's text
   */
  constructor(
    private readonly keyIndex: number | null,
    private readonly shards: number,
    private readonly shardOfKey: (key: string) => number,
  ) {}

  /** The bytes each shard gets for this chunk (by shard index; empty buffers for none). */
  push(chunk: Buffer): Buffer[] {
    const data = this.rest.length === 0 ? chunk : Buffer.concat([this.rest, chunk]);
    const out: Buffer[][] = Array.from({ length: this.shards }, () => []);
    let at = 0;
    for (;;) {
      const nl = data.indexOf(0x0a, at);
      if (nl < 0) break;
      this.route(data.subarray(at, nl + 1), out);
      at = nl + 1;
    }
    this.rest = Buffer.from(data.subarray(at));
    return out.map((parts) => Buffer.concat(parts));
  }

  /** The last line, if the data did not end with a newline (the server accepts that). */
  finish(): Buffer[] {
    const out: Buffer[][] = Array.from({ length: this.shards }, () => []);
    if (this.rest.length > 0) this.route(Buffer.concat([this.rest, Buffer.from('\n')]), out);
    this.rest = Buffer.alloc(0);
    return out.map((parts) => Buffer.concat(parts));
  }

  private route(line: Buffer, out: Buffer[][]): void {
    if (this.ended) return;
    this.line++;
    const text = line.toString('latin1').replace(/\r?\n$/, '');
    if (text === '\\.') {
      this.ended = true;
      return;
    }
    if (this.keyIndex === null) {
      for (const parts of out) parts.push(line);
      return;
    }
    const field = fieldAt(line, this.keyIndex);
    // A row without that many fields: the first shard's server rejects it with its own error.
    if (field === null) {
      out[0]!.push(line);
      return;
    }
    const key = decodeTextField(field);
    if (key === null)
      throw new CopyRowError(
        `row ${this.line} of the COPY data has a NULL shard key, which belongs to no shard`,
      );
    out[this.shardOfKey(key)]!.push(line);
  }
}

/** Field `index` of a text-format line (tab-separated, its newline excluded), or null if it has fewer. */
function fieldAt(line: Buffer, index: number): Buffer | null {
  let end = line.length;
  if (line[end - 1] === 0x0a) end--;
  if (line[end - 1] === 0x0d) end--;
  let start = 0;
  for (let f = 0; f < index; f++) {
    const tab = line.indexOf(0x09, start);
    if (tab < 0 || tab >= end) return null;
    start = tab + 1;
  }
  const tab = line.indexOf(0x09, start);
  return line.subarray(start, tab < 0 || tab > end ? end : tab);
}

const SIMPLE_ESCAPES: Record<string, number> = { b: 8, f: 12, n: 10, r: 13, t: 9, v: 11 };

/**
 * A text-format field's value (null for `\N`), its backslash escapes decoded as the server does:
 * `\b \f \n \r \t \v`, octal `\ooo`, hex `\xhh`, and `\c` for any other character c.
 */
export function decodeTextField(field: Buffer): string | null {
  if (field.length === 2 && field[0] === 0x5c && field[1] === 0x4e) return null; // \N
  if (!field.includes(0x5c)) return field.toString('utf8');
  const bytes: number[] = [];
  for (let i = 0; i < field.length; i++) {
    const b = field[i]!;
    if (b !== 0x5c || i + 1 >= field.length) {
      bytes.push(b);
      continue;
    }
    const c = String.fromCharCode(field[++i]!);
    if (c in SIMPLE_ESCAPES) bytes.push(SIMPLE_ESCAPES[c]!);
    else if (c >= '0' && c <= '7') {
      let v = Number(c);
      for (let k = 0; k < 2 && field[i + 1]! >= 0x30 && field[i + 1]! <= 0x37; k++)
        v = v * 8 + field[++i]! - 0x30;
      bytes.push(v & 0xff);
    } else if (c === 'x' && /[0-9a-fA-F]/.test(String.fromCharCode(field[i + 1] ?? 0))) {
      let hex = String.fromCharCode(field[++i]!);
      if (/[0-9a-fA-F]/.test(String.fromCharCode(field[i + 1] ?? 0))) hex += String.fromCharCode(field[++i]!);
      bytes.push(parseInt(hex, 16));
    } else bytes.push(field[i]!);
  }
  return Buffer.from(bytes).toString('utf8');
}
