/**
 * The coordinator log: one row per distributed transaction that reached a decision, in the
 * table `rwsplit_2pc_log` on one shard's primary (postgres.sharding.twoPhase.logShard).
 *
 * Why a table and not a local file: a decision must outlive the rwsplit instance that made
 * it and be readable by every other instance (several instances may run behind one address), because any
 * instance's recovery may have to finish the transaction. A row committed on a primary is
 * as durable as that primary (and survives its failover under synchronous replication);
 * the primary key makes "first writer wins" one INSERT … ON CONFLICT DO NOTHING, which is
 * what keeps a coordinator and a recovering instance from deciding differently.
 */
import { messageOf, sqlStateOf } from './errors.js';
import { withTimeout, type SqlClient } from './sql-client.js';

/** What a distributed transaction does once every participant is prepared (or not). */
export type Decision = 'commit' | 'abort';

/** Where decisions are kept; see {@link PgDecisionStore}. Every method may reject when the log is unreachable. */
export interface DecisionStore {
  /** Creates the table if it is missing (idempotent, safe to run from several instances at once). */
  ensureSchema(): Promise<void>;
  /**
   * Records `decision` for `gid` unless a decision is already there, atomically, and returns
   * the decision that holds: the first writer wins. The row is committed (durable) when this
   * resolves. `participants` are the shard names, for people reading the table.
   */
  decide(gid: string, decision: Decision, participants: readonly string[]): Promise<Decision>;
  /** The recorded decision, or null when there is none. */
  lookup(gid: string): Promise<Decision | null>;
  /**
   * Gids whose 'commit' was recorded more than `commitMs` ago or whose 'abort' more than
   * `abortMs` ago, oldest first, at most `limit`: the candidates for {@link forget}.
   */
  listDecided(olderThan: { commitMs: number; abortMs: number }, limit: number): Promise<string[]>;
  /** Deletes these rows; recovery calls it once no shard has the gid prepared any more. */
  forget(gids: readonly string[]): Promise<void>;
}

/** The log table's name. */
export const LOG_TABLE = 'rwsplit_2pc_log';

const SCHEMA_SQL = `
CREATE TABLE IF NOT EXISTS ${LOG_TABLE} (
  gid text PRIMARY KEY,
  decision text NOT NULL CHECK (decision IN ('commit', 'abort')),
  participants text[] NOT NULL,
  decided_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS ${LOG_TABLE}_decided_at ON ${LOG_TABLE} (decided_at)`;

/** Options of {@link PgDecisionStore}. */
export interface PgDecisionStoreOptions {
  /**
   * Opens a connection to the log shard's current primary, in the database that holds the
   * table (called again after a failover breaks the old connections).
   */
  connect: () => Promise<SqlClient>;
  /** Connections kept open at most (default 4): decisions of concurrent commits share them. */
  poolSize?: number;
  /** A query not answered after this long fails and its connection is dropped (default 10,000 ms). */
  queryTimeoutMs?: number;
}

/** A query took longer than `queryTimeoutMs`. */
export class DecisionLogTimeoutError extends Error {
  override readonly name = 'DecisionLogTimeoutError';
  readonly code = 'DECISION_LOG_TIMEOUT';
}

/**
 * The log could not be reached before anything was sent (no connection, or the table could
 * not be created): a decide() that fails with this wrote nothing.
 */
export class DecisionLogUnavailableError extends Error {
  override readonly name = 'DecisionLogUnavailableError';
  readonly code = 'DECISION_LOG_UNAVAILABLE';
}

function decisionOf(rows: unknown[]): Decision | null {
  const row = rows[0] as { decision?: unknown } | undefined;
  const d = row?.decision;
  return d === 'commit' || d === 'abort' ? d : null;
}

/** A connection error, or a server error that ends the session (class 08, 57P): drop the connection. */
function breaksConnection(err: unknown): boolean {
  const state = sqlStateOf(err);
  return state === undefined || state.startsWith('08') || state.startsWith('57P');
}

/** {@link DecisionStore} over the `rwsplit_2pc_log` table, with a small pool of connections. */
export class PgDecisionStore implements DecisionStore {
  private readonly poolSize: number;
  private readonly queryTimeoutMs: number;
  private readonly idle: SqlClient[] = [];
  private readonly broken = new WeakSet<SqlClient>();
  private readonly waiters: (() => void)[] = [];
  private open = 0;
  private schema: Promise<void> | undefined;

  constructor(private readonly opts: PgDecisionStoreOptions) {
    this.poolSize = Math.max(1, opts.poolSize ?? 4);
    this.queryTimeoutMs = opts.queryTimeoutMs ?? 10_000;
  }

  ensureSchema(): Promise<void> {
    this.schema ??= this.createSchema().catch((err: unknown) => {
      this.schema = undefined; // try again on the next call
      throw err;
    });
    return this.schema;
  }

  async decide(gid: string, decision: Decision, participants: readonly string[]): Promise<Decision> {
    await this.ready();
    return this.use(async (c) => {
      // Two statements, not one CTE: when ON CONFLICT waited for a concurrent inserter, that
      // row is invisible to this statement's snapshot; the next statement sees it.
      for (let attempt = 0; attempt < 3; attempt++) {
        const inserted = await c.query(
          `INSERT INTO ${LOG_TABLE} (gid, decision, participants) VALUES ($1, $2, $3)
           ON CONFLICT (gid) DO NOTHING RETURNING decision`,
          [gid, decision, [...participants]],
        );
        const mine = decisionOf(inserted.rows);
        if (mine !== null) return mine;
        const held = decisionOf(
          (await c.query(`SELECT decision FROM ${LOG_TABLE} WHERE gid = $1`, [gid])).rows,
        );
        if (held !== null) return held;
        // The conflicting row was deleted in between (forgotten): insert again.
      }
      throw new Error(`decision for ${gid} neither inserted nor found after 3 attempts`);
    });
  }

  async lookup(gid: string): Promise<Decision | null> {
    await this.ready();
    return this.use(async (c) =>
      decisionOf((await c.query(`SELECT decision FROM ${LOG_TABLE} WHERE gid = $1`, [gid])).rows),
    );
  }

  async listDecided(olderThan: { commitMs: number; abortMs: number }, limit: number): Promise<string[]> {
    await this.ready();
    // Ages on the log server's clock, so rwsplit's clock does not matter.
    const { rows } = await this.use((c) =>
      c.query(
        `SELECT gid FROM ${LOG_TABLE}
         WHERE (decision = 'commit' AND decided_at < now() - $1::float8 * interval '1 millisecond')
            OR (decision = 'abort' AND decided_at < now() - $2::float8 * interval '1 millisecond')
         ORDER BY decided_at LIMIT $3`,
        [olderThan.commitMs, olderThan.abortMs, limit],
      ),
    );
    return rows.map((r) => String((r as { gid: unknown }).gid));
  }

  async forget(gids: readonly string[]): Promise<void> {
    if (gids.length === 0) return;
    await this.ready();
    await this.use((c) => c.query(`DELETE FROM ${LOG_TABLE} WHERE gid = ANY($1::text[])`, [[...gids]]));
  }

  /** Closes the idle connections; in-use ones close when released. */
  async close(): Promise<void> {
    const idle = this.idle.splice(0);
    this.open -= idle.length;
    await Promise.all(idle.map((c) => c.end().catch(() => undefined)));
  }

  /** {@link ensureSchema}, its failure reported as "nothing sent" to the caller of a data method. */
  private async ready(): Promise<void> {
    try {
      await this.ensureSchema();
    } catch (err) {
      if (err instanceof DecisionLogUnavailableError) throw err;
      throw new DecisionLogUnavailableError(
        `the 2PC decision log has no table ${LOG_TABLE}: ${messageOf(err)}`,
        {
          cause: err,
        },
      );
    }
  }

  private async createSchema(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.use((c) => c.query(SCHEMA_SQL));
        return;
      } catch (err) {
        // Two instances creating the table at once: one fails on the catalog's unique index
        // (23505), finds the relation already there (42P07) or its row type (42710, `type
        // "rwsplit_2pc_log" already exists`); the second try sees it.
        const state = sqlStateOf(err);
        if (attempt >= 3 || (state !== '23505' && state !== '42P07' && state !== '42710')) throw err;
      }
    }
  }

  private async use<T>(fn: (c: SqlClient) => Promise<T>): Promise<T> {
    const client = await this.acquire();
    let drop = false;
    try {
      return await withTimeout(fn(client), this.queryTimeoutMs, () => {
        drop = true;
        return new DecisionLogTimeoutError(
          `the 2PC decision log did not answer within ${this.queryTimeoutMs} ms`,
        );
      });
    } catch (err) {
      if (breaksConnection(err)) drop = true;
      throw err;
    } finally {
      this.release(client, drop || this.broken.has(client));
    }
  }

  private async acquire(): Promise<SqlClient> {
    for (;;) {
      const idle = this.idle.pop();
      if (idle !== undefined) {
        if (!this.broken.has(idle)) return idle;
        this.discard(idle);
        continue;
      }
      if (this.open < this.poolSize) return this.connect();
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  private async connect(): Promise<SqlClient> {
    this.open++;
    try {
      const client = await this.opts.connect();
      client.on('error', () => this.broken.add(client));
      return client;
    } catch (err) {
      this.open--;
      this.waiters.shift()?.();
      throw new DecisionLogUnavailableError(`cannot connect to the 2PC decision log: ${messageOf(err)}`, {
        cause: err,
      });
    }
  }

  private release(client: SqlClient, drop: boolean): void {
    if (drop) this.discard(client);
    else this.idle.push(client);
    this.waiters.shift()?.();
  }

  private discard(client: SqlClient): void {
    this.open--;
    void client.end().catch(() => undefined);
  }
}
