/**
 * A Redis client's session state, as a graceful restart hands it to the new process together
 * with the client's socket (src/admin/handover.ts, RedisProxy.drain): what the client set on
 * its connection (database, RESP version, name, login) and what read-your-writes needs (its
 * level, its causal token, the shards it wrote to). Only plain request/response connections
 * move: a subscriber, a MONITOR, client-side caching, MULTI/WATCH or CLIENT REPLY OFF/SKIP keep
 * state in server connections or in this process that does not travel, so those clients are
 * closed at a reply boundary instead.
 */
import type { ConsistencyLevel } from '../../config/schema.js';
import type { NodeStatus } from '../../core/topology.js';
import { CausalTokenError, parseCausalToken } from '../routing/causal-token.js';
import type { RedisSession } from './client-session.js';

/** Plain data: it crosses the IPC channel as JSON. */
export interface HandedRedisState {
  resp3: boolean;
  db: number;
  name: string | null;
  /** authenticated with AUTH or HELLO (not merely let in because no password was set) */
  loggedIn: boolean;
  /** passthrough mode: the credentials the servers accepted */
  creds: { user: string | null; password: string } | null;
  level: ConsistencyLevel;
  /** RWSPLIT TOKEN was asked: positions are kept whatever the level */
  tokenWanted: boolean;
  /** the causal token (`r1:…`, by shard name), null before any tracked write */
  token: string | null;
  /** shards (by name) whose position after an acknowledged write is not known yet */
  unknown: string[];
  /** shards (by name) this client wrote to */
  written: string[];
  /** a PostgreSQL causal token handed over with RWSPLIT TOKEN: shard name and LSN (decimal) */
  pgToken: [string, string][] | null;
}

/**
 * The state to hand over, or null when the connection holds state that cannot move (see
 * above). The caller has checked it is at a reply boundary (RedisSession.drainable).
 */
export function handoverState(s: RedisSession, shardNames: readonly string[]): HandedRedisState | null {
  // N: not subscribed, not in MULTI, not blocked, no MONITOR, no tracking.
  if (s.view().flags !== 'N' || s.repliesMuted) return null;
  const unknown = new Set<string>();
  for (let k = 0; k < shardNames.length; k++) {
    // A write answered whose position is still on its way (`pin` names its node) is as good as
    // unknown: the new process reads that shard from the primary until it learns the position.
    if (s.causal.pin(k) !== null) unknown.add(shardNames[k]!);
  }
  const token = s.causal.token.empty ? null : s.causal.token.format(shardNames);
  return {
    resp3: s.resp3,
    db: s.db,
    name: s.name,
    loggedIn: s.ctx.authRequired && s.authenticated,
    creds: s.credentials,
    level: s.causal.level,
    tokenWanted: s.causal.tracking && s.causal.level !== 'read-your-writes',
    token,
    unknown: [...unknown],
    written: [...s.writtenShards].map((k) => shardNames[k]!),
    pgToken: s.causal.pgToken ? [...s.causal.pgToken].map(([shard, lsn]) => [shard, lsn.toString()]) : null,
  };
}

/**
 * Gives a new session the state handed over. Shards are matched by name (the new process
 * re-read the config); a shard no longer configured is dropped. A token that no longer parses
 * makes every shard written to unknown, which routes their reads to the primary: never stale.
 */
export function restoreState(
  s: RedisSession,
  st: HandedRedisState,
  shardNames: readonly string[],
  primaryOf: (shard: number) => NodeStatus | null,
): void {
  const index = (name: string): number => shardNames.indexOf(name);
  s.resp3 = st.resp3;
  s.db = st.db;
  s.name = st.name;
  s.authenticated = !s.ctx.authRequired || st.loggedIn;
  s.credentials = st.creds;
  s.causal.level = st.level;
  if (st.tokenWanted) s.causal.wantToken();
  let unknown = st.unknown;
  if (st.token !== null) {
    try {
      s.causal.token.adopt(parseCausalToken(st.token, shardNames));
    } catch (err) {
      if (!(err instanceof CausalTokenError)) throw err;
      unknown = st.written;
    }
  }
  if (st.pgToken) s.causal.pgToken = new Map(st.pgToken.map(([shard, lsn]) => [shard, BigInt(lsn)]));
  for (const name of st.written) {
    const k = index(name);
    if (k < 0) continue;
    s.writtenShards.add(k);
    // Not tracking: only remembered, for a later switch to read-your-writes (SessionCausal).
    const primary = primaryOf(k);
    if (!s.causal.tracking && primary) {
      s.causal.beginWrite(k, primary);
    }
  }
  if (s.causal.tracking) {
    for (const name of unknown) {
      const k = index(name);
      if (k >= 0) s.causal.endWrite(k, null, true);
    }
  }
}
