/**
 * A PostgreSQL client's session state, as a graceful restart hands it to the new process
 * together with the client's socket (src/admin/handover.ts, PgProxy.drain). The client logged
 * in once and was told its server parameters and cancel key; the new process adopts the
 * session as it is, without a new login, and keeps the same cancel key (BackendKeyData), so a
 * CancelRequest for it still reaches it. What moves: the login (user, database, startup
 * parameters, the SCRAM keys of a pass-through login), the cancel key, rwsplit's own settings
 * (consistency, causal token, shard key), the named prepared statements the proxy keeps for
 * the client (the new process re-Parses them on a server before first use, as for any backend
 * that has not seen them), and, for a session pinned to its server by `SET`, the session-level
 * settings that server has, which the new process sets again on a new server connection
 * before the client's next request.
 *
 * What cannot move, so such a client is closed at a transaction boundary as before the
 * handover existed (FATAL 57P01, which clients and pools take as "reconnect"): a TLS client
 * (its encryption state lives in this process), a sharded session, the native data plane, and
 * a pinned server holding more than settings (temporary tables, advisory locks, LISTEN,
 * cursors WITH HOLD, SQL-level PREPARE): inspectPinned tells.
 */
import type { ConsistencyLevel } from '../../config/schema.js';
import type { ScramKeys } from '../auth/index.js';
import type { BackendConnection } from '../backend/backend-connection.js';
import { internalQuery } from '../backend/internal-query.js';

/** What the ClientSession itself holds (ClientSession.handoverState / adoptHandedState). */
export interface HandedSession {
  /** prepared statements by the client's name ('' = the unnamed one): query and parameter types (base64) */
  statements: [name: string, query: string, paramTypes: string][];
  consistency: ConsistencyLevel;
  /** rwsplit.causal_token as SHOW gives it ('' before any tracked write) */
  token: string;
  shardKey: string | null;
  /** a commit position is unknown (a write ran on the lease and was not captured): reads go to the primary */
  tokenUnknown: boolean;
  /** why the session is pinned to a server, or null */
  pinnedBy: string | null;
}

/** Plain data: it crosses the IPC channel as JSON. */
export interface HandedPgState extends HandedSession {
  processId: number;
  secretKey: number;
  /** the client's own login (before postgres.backend maps it to a server login) */
  user: string;
  database: string;
  params: Record<string, string>;
  /** a SCRAM login: the keys the client proved (base64), for pass-through server logins */
  scramKeys: { clientKey: string; serverKey: string } | null;
  /** pinned: the session-level settings its server had, [name, value], in the order to set them */
  pinnedSettings: [string, string][] | null;
}

export function encodeKeys(keys: ScramKeys | undefined): HandedPgState['scramKeys'] {
  return keys
    ? { clientKey: keys.clientKey.toString('base64'), serverKey: keys.serverKey.toString('base64') }
    : null;
}

export function decodeKeys(keys: HandedPgState['scramKeys']): ScramKeys | undefined {
  return keys
    ? { clientKey: Buffer.from(keys.clientKey, 'base64'), serverKey: Buffer.from(keys.serverKey, 'base64') }
    : undefined;
}

/**
 * The server's own account of what a session left on it: settings changed by SET (source
 * `session`; session_authorization first, since setting it resets role), and a count of the
 * state that cannot be set again elsewhere.
 */
const INSPECT_SQL = `SELECT
  coalesce((SELECT json_agg(json_build_array(name, current_setting(name))
    ORDER BY name <> 'session_authorization', name)::text FROM pg_settings WHERE source = 'session'), '[]'),
  (SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema())
  + (SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory')
  + (SELECT count(*) FROM pg_listening_channels())
  + (SELECT count(*) FROM pg_cursors)
  + (SELECT count(*) FROM pg_prepared_statements WHERE from_sql)`;

/**
 * Asks a pinned session's server (idle, outside a transaction) what the session set there.
 * Returns its settings, or null when it holds state that cannot be set up again on another
 * connection (then, or when the query fails, the client is closed at the boundary instead).
 */
export async function inspectPinned(conn: BackendConnection): Promise<[string, string][] | null> {
  const res = await internalQuery(conn, INSPECT_SQL);
  const row = res.rows[0];
  if (!row || res.txStatus !== 'I' || row[1] !== '0') return null;
  return JSON.parse(row[0] ?? '[]') as [string, string][];
}

/**
 * Sets `settings` (from inspectPinned) on a new server connection, in one statement whose
 * `set_config` calls run in order; `SHOW` then gives what it gave on the old one.
 * @throws InternalQueryError / InternalQueryLost when the server refuses or goes away
 */
export async function replaySettings(conn: BackendConnection, settings: [string, string][]): Promise<void> {
  if (settings.length === 0) return;
  const calls = settings.map((_, i) => `set_config($${2 * i + 1}, $${2 * i + 2}, false)`);
  await internalQuery(conn, `SELECT ${calls.join(', ')}`, settings.flat());
}
