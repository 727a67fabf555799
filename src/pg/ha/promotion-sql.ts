/**
 * The SQL a failover or switchover runs on the servers: positions, `pg_promote()`,
 * re-pointing a replica, fencing an old primary. Each operation opens its own short-lived
 * connection under a deadline: a failover talks to nodes that may be dead or frozen, and
 * must never wait on them longer than it chose to.
 */
import pg from 'pg';
import type { NodeSpec } from '../../core/types.js';
import { withDeadline } from '../../util/deadline.js';
import { parseConninfo, repointConninfo, type RepointTarget } from './conninfo.js';
import { FAILOVER_APPLICATION_NAME, MONITOR_APPLICATION_NAME } from './control-names.js';
import { pgClientSsl, type BackendTls } from '../backend/backend-tls.js';

/** The login the controller uses (the monitor's: it must be a superuser for ALTER SYSTEM). */
export interface SqlLogin {
  user: string;
  password?: string;
  database: string;
  /** TLS toward each node (postgres.backend.sslmode and per node); absent: plain */
  tls?: ReadonlyMap<string, BackendTls>;
}

/** Runs statements on one node; every call is bounded by `timeoutMs` unless told otherwise. */
export class NodeSql {
  constructor(
    private readonly login: SqlLogin,
    private readonly timeoutMs: number,
  ) {}

  /** Opens a connection to `node`, runs `fn`, closes it; rejects after `timeoutMs`. */
  async run<T>(node: NodeSpec, fn: (c: pg.Client) => Promise<T>, timeoutMs = this.timeoutMs): Promise<T> {
    const t = this.login.tls?.get(node.id);
    const client = new pg.Client({
      host: node.host,
      port: node.port,
      user: this.login.user,
      password: this.login.password,
      database: this.login.database,
      application_name: FAILOVER_APPLICATION_NAME,
      connectionTimeoutMillis: Math.min(timeoutMs, this.timeoutMs),
      // prefer: these short-lived controller connections stay plain (docs/CONFIG.md).
      ssl: t?.mode === 'prefer' ? false : pgClientSsl(t, node.host),
    });
    client.on('error', () => undefined); // the failing call reports it
    let ok = false;
    try {
      const out = await withDeadline(timeoutMs, async (deadline) => {
        await Promise.race([client.connect(), deadline]);
        return Promise.race([fn(client), deadline]);
      });
      ok = true;
      return out;
    } finally {
      client.end().catch(() => undefined);
      // A frozen server never answers Terminate; drop the socket so nothing waits on it.
      if (!ok)
        (
          client as unknown as { connection?: { stream?: { destroy(): void } } }
        ).connection?.stream?.destroy();
    }
  }
}

/** A replica's WAL positions, asked directly (not the monitor's last figures). */
export async function walPositions(
  c: pg.Client,
): Promise<{ inRecovery: boolean; receiveLsn: string | null; replayLsn: string | null }> {
  const { rows } = await c.query<{ r: boolean; rcv: string | null; rep: string | null }>(
    'SELECT pg_is_in_recovery() AS r, pg_last_wal_receive_lsn()::text AS rcv, pg_last_wal_replay_lsn()::text AS rep',
  );
  const row = rows[0]!;
  return { inRecovery: row.r, receiveLsn: row.rcv, replayLsn: row.rep };
}

/** `pg_is_in_recovery()`: true on a replica (and on a node still promoting). */
export async function inRecovery(c: pg.Client): Promise<boolean> {
  const { rows } = await c.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r');
  return rows[0]!.r;
}

/**
 * `pg_promote(wait => false)`: asks the replica to end recovery (after replaying all WAL
 * received) and switch to a new timeline, without waiting. The caller polls
 * `pg_is_in_recovery()`: `pg_promote(true)` checks only every 100 ms, a poll every 10 ms
 * sees the end of recovery sooner. Returns false when the signal could not be sent.
 */
export async function requestPromotion(c: pg.Client): Promise<boolean> {
  const { rows } = await c.query<{ ok: boolean }>('SELECT pg_promote(false) AS ok');
  return rows[0]!.ok;
}

/** The primary's `pg_current_wal_lsn()` (what a switchover target must replay). */
export async function currentWalLsn(c: pg.Client): Promise<string> {
  const { rows } = await c.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
  return rows[0]!.lsn;
}

/** A replica's `pg_last_wal_replay_lsn()`. */
export async function replayLsn(c: pg.Client): Promise<string | null> {
  const { rows } = await c.query<{ lsn: string | null }>('SELECT pg_last_wal_replay_lsn()::text AS lsn');
  return rows[0]!.lsn;
}

async function setAndReload(c: pg.Client, name: string, value: string | null): Promise<void> {
  // ALTER SYSTEM takes no parameters: the value is quoted as a literal. It also works on a
  // standby (it writes postgresql.auto.conf, not WAL).
  await c.query(
    value === null ? `ALTER SYSTEM RESET ${name}` : `ALTER SYSTEM SET ${name} = ${c.escapeLiteral(value)}`,
  );
  await c.query('SELECT pg_reload_conf()');
}

/** What a replica streamed from before it was re-pointed. */
export interface RepointedReplica {
  slot: string;
  applicationName: string | null;
}

/**
 * Aims a replica at a new primary: its `primary_conninfo` with host and port (and the
 * configured login) replaced, then a reload — PostgreSQL 13+ restarts the WAL receiver on a
 * changed primary_conninfo, and `recovery_target_timeline = 'latest'` (the default since 12)
 * makes it follow the new primary's timeline. A physical slot the replica streams through is
 * created on the new primary first (see {@link ensurePhysicalSlot}).
 */
export async function repointReplica(
  replica: pg.Client,
  to: RepointTarget,
  createSlot: (slot: string) => Promise<void>,
): Promise<RepointedReplica> {
  const conninfo = await showSetting(replica, 'primary_conninfo');
  const slot = await showSetting(replica, 'primary_slot_name');
  if (slot !== '') await createSlot(slot);
  const next = repointConninfo(conninfo, to);
  await setAndReload(replica, 'primary_conninfo', next);
  return { slot, applicationName: parseConninfo(next).get('application_name') ?? null };
}

async function showSetting(c: pg.Client, name: string): Promise<string> {
  const { rows } = await c.query<{ v: string }>('SELECT current_setting($1) AS v', [name]);
  return rows[0]!.v;
}

/** Creates a physical slot reserving WAL from now; one that already exists is fine. */
export async function ensurePhysicalSlot(c: pg.Client, slot: string): Promise<void> {
  try {
    await c.query('SELECT pg_create_physical_replication_slot($1, true)', [slot]);
  } catch (err) {
    if ((err as { code?: string }).code !== '42710') throw err; // duplicate_object
  }
}

/** Sets synchronous_standby_names (ALTER SYSTEM + reload). */
export async function setSyncStandbyNames(c: pg.Client, value: string): Promise<void> {
  await setAndReload(c, 'synchronous_standby_names', value);
}

/**
 * Makes a node harmless as a primary: `default_transaction_read_only = on` for every session
 * (ALTER SYSTEM + reload reaches the sessions that did not SET it themselves), then ends the
 * client backends already there — they may be inside read-write transactions — except this
 * one and the monitor's. Returns how many backends were ended.
 */
export async function fenceServer(c: pg.Client): Promise<number> {
  await setAndReload(c, 'default_transaction_read_only', 'on');
  const { rows } = await c.query<{ n: string }>(
    `SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity
      WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
        AND application_name NOT IN ($1, $2)`,
    [MONITOR_APPLICATION_NAME, FAILOVER_APPLICATION_NAME],
  );
  return Number(rows[0]!.n);
}

/** Undoes {@link fenceServer}'s setting (a switchover that gave up, a node that rejoined as a replica). */
export async function unfenceServer(c: pg.Client): Promise<void> {
  await setAndReload(c, 'default_transaction_read_only', null);
}
