/**
 * `postgres.auth.authQuery` (PgBouncer's auth_query): a user rwsplit's config does not list logs
 * in with its own database password. rwsplit asks the primary for the user's SCRAM verifier,
 * as the configured auth user, on every login (so `ALTER ROLE … PASSWORD` counts from the next
 * login), checks the client's SCRAM proof against it, and then logs into the servers as that
 * user with the client's keys (SCRAM pass-through, `ClientStartup` and `BackendConnection`).
 */
import type { NodeStatus, Topology } from '../../core/topology.js';
import { parseScramVerifier, ScramVerifierError, type ScramVerifier } from './index.js';
import type { BackendLogin } from '../backend/backend-connection.js';
import type { BackendPool } from '../backend/backend-pool.js';
import { BackendStartupError, RwsplitPgError, SqlState } from '../errors.js';
import { decodeErrorFields } from '../protocol/index.js';
import { internalQuery, InternalQueryError, InternalQueryLost } from '../backend/internal-query.js';
import { DEFAULT_SHARD } from '../session/session-recovery.js';

export interface AuthQuerySettings {
  user: string;
  password?: string | undefined;
  query: string;
  /** the database the query runs in; undefined: the client's */
  database?: string | undefined;
}

/** The SQLSTATE of "database does not exist". */
const INVALID_CATALOG_NAME = '3D000';

export interface AuthQueryHost {
  readonly topology: Topology;
  pool(node: NodeStatus, login: BackendLogin): BackendPool;
}

export class AuthQuery {
  /**
   * @param fallbackDatabase where the query runs when the client's database does not exist (the
   *   monitor's): the client is then told so by the server after its password was checked, as
   *   PostgreSQL does, rather than before.
   */
  constructor(
    private readonly settings: AuthQuerySettings,
    private readonly host: AuthQueryHost,
    private readonly fallbackDatabase: string,
  ) {}

  /**
   * The stored SCRAM verifier of `user`, or null when the query finds no row, a NULL password
   * or no SCRAM verifier (an md5 hash): like PostgreSQL under `scram-sha-256`, such a user
   * cannot log in, and the client learns only that its password was wrong.
   */
  async verifier(user: string, database: string): Promise<ScramVerifier | null> {
    const rows = await this.run(user, database);
    const stored = rows[0]?.[1] ?? null;
    if (stored === null || !stored.startsWith('SCRAM-SHA-256$')) return null;
    try {
      return parseScramVerifier(stored);
    } catch (err) {
      if (err instanceof ScramVerifierError) return null;
      throw err;
    }
  }

  private async run(user: string, database: string): Promise<(string | null)[][]> {
    const { topology } = this.host;
    // The primary has the current password; a replica only while there is no primary (a
    // failover), as a password changed just before may not have reached it. Sharded: the
    // default shard, else the first one (every shard must hold the same verifiers).
    const shard = topology.nodes.some((n) => n.spec.shard === DEFAULT_SHARD)
      ? DEFAULT_SHARD
      : topology.nodes[0]?.spec.shard;
    const node =
      topology.primary(shard) ??
      topology.nodes.find((n) => n.spec.shard === shard && n.reachable && !n.fenced);
    if (!node) throw lookupFailed(user, 'no PostgreSQL node is reachable');
    const { user: authUser, password, query } = this.settings;
    const login = (db: string): BackendLogin => {
      const out: BackendLogin = { user: authUser, database: db, params: {} };
      if (password !== undefined) out.password = password;
      return out;
    };
    let pool = this.host.pool(node, login(this.settings.database ?? database));
    let conn;
    try {
      conn = await pool.acquire().catch((err: Error) => {
        if (
          this.settings.database !== undefined ||
          !missingDatabase(err) ||
          database === this.fallbackDatabase
        )
          throw err;
        pool = this.host.pool(node, login(this.fallbackDatabase));
        return pool.acquire();
      });
    } catch (err) {
      // The auth user's own login refused (its password, a missing database) or no connection.
      throw lookupFailed(user, (err as Error).message, CHECK_SETTINGS);
    }
    try {
      const result = await internalQuery(conn, query, [user]);
      pool.release(conn);
      return result.rows;
    } catch (err) {
      if (err instanceof InternalQueryLost) pool.lost();
      else pool.release(conn);
      if (err instanceof InternalQueryError)
        throw lookupFailed(user, `${err.sqlstate} ${err.message}`, CHECK_SETTINGS);
      throw lookupFailed(user, (err as Error).message);
    }
  }
}

function missingDatabase(err: Error): boolean {
  return (
    err instanceof BackendStartupError &&
    err.frame !== null &&
    decodeErrorFields(err.frame).get('C') === INVALID_CATALOG_NAME
  );
}

const CHECK_SETTINGS =
  'Check postgres.auth.authQuery (user, password, database, query) and the rights of its user.';

function lookupFailed(user: string, reason: string, hint?: string): RwsplitPgError {
  return new RwsplitPgError(
    'AUTH_QUERY_FAILED',
    SqlState.CannotConnectNow,
    `rwsplit cannot look up the password of user "${user}" (postgres.auth.authQuery): ${reason}`,
    hint,
    'FATAL',
  );
}
