/**
 * How a row becomes Redis data. `hash`: one field per column, the value PostgreSQL's text
 * output, a NULL column has no field. `json`: one string key holding a JSON object whose
 * values are typed by the column's type: booleans, numbers for int2/int4/oid/float4/float8
 * (and int8 within 2^53), the JSON itself for json/jsonb, strings for everything else
 * (numeric stays a string so no digit is lost), null for NULL.
 */
import type { RelationColumn, TupleValue } from './pgoutput.js';

export type RowFormat = 'hash' | 'json';

/** A column as the stream writes it: its name and where it is in the relation's tuples. */
export interface OutputColumn {
  name: string;
  index: number;
  typeOid: number;
}

const BOOL = 16;
const INT8 = 20;
const INT2 = 21;
const INT4 = 23;
const OID = 26;
const JSON_OID = 114;
const FLOAT4 = 700;
const FLOAT8 = 701;
const JSONB = 3802;

/** The typed JSON value of one column's text output. */
export function jsonValue(typeOid: number, text: string): unknown {
  switch (typeOid) {
    case BOOL:
      return text === 't';
    case INT2:
    case INT4:
    case OID:
      return Number(text);
    case INT8: {
      const n = Number(text);
      return Number.isSafeInteger(n) ? n : text;
    }
    case FLOAT4:
    case FLOAT8: {
      const n = Number(text);
      return Number.isFinite(n) ? n : text; // NaN, Infinity: JSON has no number for them
    }
    case JSON_OID:
    case JSONB:
      return JSON.parse(text) as unknown;
    default:
      return text;
  }
}

/** The columns to write: all of the relation's, or the configured ones (missing ones throw). */
export function outputColumns(relation: RelationColumn[], wanted: string[] | undefined): OutputColumn[] {
  const all = relation.map((c, index) => ({ name: c.name, index, typeOid: c.typeOid }));
  if (!wanted) return all;
  return wanted.map((name) => {
    const c = all.find((x) => x.name === name);
    if (!c)
      throw new Error(`column '${name}' is not in the table (it has ${all.map((x) => x.name).join(', ')})`);
    return c;
  });
}

/**
 * The commands that make `key` hold `tuple`. `replace`: the row is whole (an insert, a copy,
 * a key move), so what the key held before goes; otherwise unchanged TOASTed values
 * (`unchanged`) keep their old field.
 */
export function rowCommands(
  format: RowFormat,
  key: string,
  columns: OutputColumn[],
  tuple: TupleValue[],
  replace: boolean,
): string[][] {
  if (format === 'hash') {
    const hset = ['HSET', key];
    const hdel = ['HDEL', key];
    let unchanged = false;
    for (const c of columns) {
      const v = tuple[c.index];
      if (v === undefined || v.kind === 'unchanged') unchanged = true;
      else if (v.kind === 'null') hdel.push(c.name);
      else hset.push(c.name, v.text);
    }
    const out: string[][] = [];
    if (replace || !unchanged) out.push(['DEL', key]);
    else if (hdel.length > 2) out.push(hdel);
    if (hset.length > 2) out.push(hset);
    return out;
  }
  const obj: Record<string, unknown> = {};
  const keep: string[] = [];
  for (const c of columns) {
    const v = tuple[c.index];
    if (v === undefined || v.kind === 'unchanged') keep.push(c.name);
    else obj[c.name] = v.kind === 'null' ? null : jsonValue(c.typeOid, v.text);
  }
  if (keep.length === 0 || replace) return [['SET', key, JSON.stringify(obj)]];
  // An unchanged TOASTed column: its value is only in Redis; merge it in, atomically (inside the MULTI).
  return [['EVAL', MERGE_SCRIPT, '1', key, JSON.stringify(obj), JSON.stringify(keep)]];
}

/** Keeps the `keep` fields of the stored JSON, takes the rest from ARGV[1]; key order: stored first. */
const MERGE_SCRIPT = `local old = redis.call('GET', KEYS[1])
local new = cjson.decode(ARGV[1])
if old then
  local o = cjson.decode(old)
  for _, k in ipairs(cjson.decode(ARGV[2])) do new[k] = o[k] end
end
redis.call('SET', KEYS[1], cjson.encode(new))
return 1`;
