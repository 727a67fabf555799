/**
 * The oracle of the change-stream tests: the PostgreSQL table itself. A table in the `hash`
 * format is what its rows' text output says (NULL columns absent); the Redis side is every key
 * of the stream's shape on the shard primaries. `diff` counts keys lost, stale (a field
 * differs) and extra.
 */
import type { Redis } from 'ioredis';
import type pg from 'pg';
import type { ChangeStream } from '../../src/stream/change-stream.js';
import { parseLsnText } from '../../src/stream/pgoutput.js';
import { waitFor } from './stack.js';

const TEXT = { getTypeParser: () => (v: string) => v };

export type Rows = Map<string, Record<string, string>>;

/** Every key matching `pattern` (SCAN MATCH) on `nodes`, with its hash; a key on two nodes throws. */
export async function redisHashes(nodes: Redis[], pattern: string): Promise<Rows> {
  const out: Rows = new Map();
  for (const r of nodes) {
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await r.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = next;
      keys.push(...batch);
    } while (cursor !== '0');
    for (let i = 0; i < keys.length; i += 500) {
      const batch = keys.slice(i, i + 500);
      const p = r.pipeline();
      for (const k of batch) p.hgetall(k);
      const res = (await p.exec())!;
      batch.forEach((k, j) => {
        if (out.has(k)) throw new Error(`key ${k} is on two shards`);
        const [err, h] = res[j]!;
        if (err) throw err;
        out.set(k, h as Record<string, string>);
      });
    }
  }
  return out;
}

/** The table as the `hash` format must hold it, keyed by `key(row)`. */
export async function tableHashes(
  db: pg.Client,
  table: string,
  key: (row: Record<string, string>) => string,
): Promise<Rows> {
  const { rows } = await db.query<Record<string, string | null>>({
    text: `SELECT * FROM ${table}`,
    types: TEXT,
  });
  const out: Rows = new Map();
  for (const r of rows) {
    const h: Record<string, string> = {};
    for (const [k, v] of Object.entries(r)) if (v !== null) h[k] = v;
    out.set(key(h), h);
  }
  return out;
}

export interface Diff {
  rows: number;
  lost: number;
  stale: number;
  extra: number;
  /** a few of each, for the assertion message */
  examples: string;
}

export function diff(actual: Rows, expected: Rows): Diff {
  const same = (a: Record<string, string>, b: Record<string, string>): boolean =>
    JSON.stringify(Object.entries(a).sort()) === JSON.stringify(Object.entries(b).sort());
  const lost = [...expected.keys()].filter((k) => !actual.has(k));
  const extra = [...actual.keys()].filter((k) => !expected.has(k));
  const stale = [...expected.keys()].filter((k) => actual.has(k) && !same(actual.get(k)!, expected.get(k)!));
  const show = (k: string): string =>
    `${k}: redis ${JSON.stringify(actual.get(k) ?? null)} table ${JSON.stringify(expected.get(k) ?? null)}`;
  return {
    rows: expected.size,
    lost: lost.length,
    stale: stale.length,
    extra: extra.length,
    examples: [...lost.slice(0, 2), ...stale.slice(0, 2), ...extra.slice(0, 2)].map(show).join('\n'),
  };
}

/** Waits until `stream` streams and has applied everything `db`'s server wrote so far. */
export async function caughtUp(stream: () => ChangeStream, db: pg.Client, timeoutMs = 60_000): Promise<void> {
  await waitFor(`stream ${stream().name} streaming`, () => stream().state === 'streaming', timeoutMs);
  const { rows } = await db.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn');
  await stream().waitApplied(parseLsnText(rows[0]!.lsn), timeoutMs);
}
