/**
 * The PostgreSQL load of a chaos run, through rwsplit with node-postgres: writers inserting
 * unique increasing ids, read-your-writes sessions updating their own row then reading it
 * back on the same connection, and readers. Every acknowledged write names the server that
 * accepted it (`RETURNING inet_server_port()`), every read the server that answered.
 */
import pg from 'pg';

import type { Recorder } from './checker.js';
import {
  startSessions,
  type RunningLoad,
  type SessionDriver,
  type SessionLoopOptions,
} from './session-loop.js';

/** How many sessions of each kind, and how they connect. */
export interface PgLoadOptions extends SessionLoopOptions {
  /** rwsplit's PostgreSQL port */
  port: number;
  /** node id by server port, to name the server behind `inet_server_port()` */
  nodeByPort: ReadonlyMap<number, string>;
  writers: number;
  rywSessions: number;
  readers: number;
  /** client-side limit on one query: longer than rwsplit's failover.bufferMs, so held writes are not cut short */
  queryTimeoutMs: number;
}

/** The tables the load writes (created directly on the primary before the run). */
export const PG_SCHEMA = [
  'CREATE TABLE chaos_writes (id bigint PRIMARY KEY, session int NOT NULL)',
  'CREATE TABLE chaos_ryw (session int PRIMARY KEY, value bigint NOT NULL)',
];

/** Creates the tables and one row per read-your-writes session, on a direct connection to the primary. */
export async function preparePgSchema(primaryPort: number, rywSessions: number): Promise<void> {
  const c = new pg.Client({ host: '127.0.0.1', port: primaryPort, user: 'postgres', database: 'postgres' });
  await c.connect();
  try {
    for (const sql of PG_SCHEMA) await c.query(sql);
    await c.query(
      'INSERT INTO chaos_ryw (session, value) SELECT s, 0 FROM generate_series(0, $1::int - 1) s',
      [rywSessions],
    );
  } finally {
    await c.end();
  }
}

/**
 * The final state, read on a direct connection to `port` (the surviving primary): `w:<id>`
 * for each row of chaos_writes, `ryw:<session>` for each session's value.
 */
export async function readPgState(port: number): Promise<Map<string, number>> {
  const c = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
  c.on('error', () => undefined);
  await c.connect();
  try {
    const out = new Map<string, number>();
    const writes = await c.query<{ id: string }>('SELECT id FROM chaos_writes');
    for (const r of writes.rows) out.set(`w:${r.id}`, Number(r.id));
    const ryw = await c.query<{ session: number; value: string }>('SELECT session, value FROM chaos_ryw');
    for (const r of ryw.rows) out.set(`ryw:${r.session}`, Number(r.value));
    return out;
  } finally {
    await c.end();
  }
}

/** A node-postgres client, whether it has broken (error or end event, timeout), whether a query is out. */
interface PgConn {
  client: pg.Client;
  broken: boolean;
  busy: boolean;
}

/** Runs one query, marking the connection busy meanwhile (see the 'error' listener in pgDriver). */
async function query<R extends pg.QueryResultRow>(
  conn: PgConn,
  text: string,
  values?: unknown[],
): Promise<pg.QueryResult<R>> {
  conn.busy = true;
  try {
    return await conn.client.query<R>(text, values);
  } finally {
    conn.busy = false;
  }
}

/** Starts every session; the ids the writers insert come from one counter, so they are unique and increasing. */
export function startPgLoad(opts: PgLoadOptions, rec: Recorder): RunningLoad {
  let nextId = 1;
  const ids = (): number => nextId++;
  const drivers: SessionDriver<PgConn>[] = [];
  for (let i = 0; i < opts.writers; i++) drivers.push(pgDriver(opts, drivers.length, rec, writerStep(ids)));
  for (let i = 0; i < opts.rywSessions; i++) drivers.push(pgDriver(opts, drivers.length, rec, rywStep(i)));
  for (let i = 0; i < opts.readers; i++) drivers.push(pgDriver(opts, drivers.length, rec, readerStep()));
  return startSessions(drivers as SessionDriver<unknown>[], rec, opts);
}

type PgStep = (ctx: StepContext) => Promise<boolean>;

interface StepContext {
  conn: PgConn;
  session: number;
  rec: Recorder;
  nodeOf(row: { port?: unknown } | undefined): string | null;
}

function pgDriver(opts: PgLoadOptions, session: number, rec: Recorder, step: PgStep): SessionDriver<PgConn> {
  const nodeOf = (row: { port?: unknown } | undefined): string | null =>
    row?.port === undefined ? null : (opts.nodeByPort.get(Number(row.port)) ?? `port ${String(row.port)}`);
  return {
    connect: async () => {
      const client = new pg.Client({
        host: '127.0.0.1',
        port: opts.port,
        user: 'postgres',
        database: 'postgres',
        query_timeout: opts.queryTimeoutMs,
        connectionTimeoutMillis: opts.queryTimeoutMs,
      });
      const conn: PgConn = { client, broken: false, busy: false };
      client.on('error', (err) => {
        // A broken socket with a query out: the query's rejection records it. node-postgres
        // also comes here for an ErrorResponse that answers no query (a protocol desync),
        // which no query records: the connection is unusable from then on.
        if (err instanceof pg.DatabaseError || (!conn.busy && !conn.broken))
          rec.error(session, 'connection', err);
        conn.broken = true;
      });
      client.on('end', () => (conn.broken = true));
      try {
        await client.connect();
      } catch (err) {
        await client.end().catch(() => undefined);
        throw err;
      }
      return conn;
    },
    step: (conn) => step({ conn, session, rec, nodeOf }),
    close: async (conn) => {
      await conn.client.end();
    },
  };
}

/**
 * Whether the connection is still usable after `err`: not after an error or end event, nor
 * after a client-side timeout (the late answer would be taken for the next query's).
 */
function stillUsable(conn: PgConn, err: unknown): boolean {
  const message = err instanceof Error ? err.message : String(err);
  if (/Query read timeout|not queryable|Connection terminated/i.test(message)) conn.broken = true;
  return !conn.broken;
}

function writerStep(ids: () => number): PgStep {
  return async ({ conn, session, rec, nodeOf }) => {
    const id = ids();
    const sentAt = rec.now();
    try {
      // Extended protocol (Parse/Bind/Execute), as most drivers send it.
      const res = await query<{ port: number }>(
        conn,
        'INSERT INTO chaos_writes (id, session) VALUES ($1, $2) RETURNING inet_server_port() AS port',
        [id, session],
      );
      rec.ack({ key: `w:${id}`, value: id, session, sentAt, node: nodeOf(res.rows[0]) });
      return true;
    } catch (err) {
      rec.error(session, 'write', err);
      return stillUsable(conn, err);
    }
  };
}

/** Update the session's row, then read it back on the same connection: it must show at least the last acknowledged value. */
function rywStep(row: number): PgStep {
  let counter = 0;
  let lastAcked = 0;
  return async ({ conn, session, rec, nodeOf }) => {
    const value = ++counter;
    const sentAt = rec.now();
    try {
      // Simple protocol (one Query message); both values are integers we made.
      const res = await query<{ port: number }>(
        conn,
        `UPDATE chaos_ryw SET value = ${value} WHERE session = ${row} RETURNING inet_server_port() AS port`,
      );
      if (res.rowCount === 1) {
        rec.ack({ key: `ryw:${row}`, value, session, sentAt, node: nodeOf(res.rows[0]) });
        lastAcked = value;
      }
    } catch (err) {
      rec.error(session, 'write', err);
      if (!stillUsable(conn, err)) return false;
    }
    try {
      const res = await query<{ value: string; port: number }>(
        conn,
        `SELECT value, inet_server_port() AS port FROM chaos_ryw WHERE session = ${row}`,
      );
      const r = res.rows[0];
      rec.read({ session, seen: r ? Number(r.value) : null, expectedMin: lastAcked, node: nodeOf(r) });
      return true;
    } catch (err) {
      rec.error(session, 'read', err);
      return stillUsable(conn, err);
    }
  };
}

function readerStep(): PgStep {
  return async ({ conn, session, rec, nodeOf }) => {
    try {
      const res = await query<{ m: string | null; port: number }>(
        conn,
        'SELECT max(id) AS m, inet_server_port() AS port FROM chaos_writes',
      );
      const r = res.rows[0];
      rec.read({ session, seen: r?.m == null ? null : Number(r.m), expectedMin: null, node: nodeOf(r) });
      return true;
    } catch (err) {
      rec.error(session, 'read', err);
      return stillUsable(conn, err);
    }
  };
}
