/**
 * `INFO replication`, decoded: the one reply that gives a node's role, its replication
 * history (`master_replid`, and `master_replid2` up to `second_repl_offset` after a
 * promotion) and its offset atomically. The monitor probes with it, the write path reads it
 * right after a write (the causal token), and the failover controller asks replicas with it
 * which is the most advanced.
 *
 * Field meanings (Redis 7 `src/server.c` genRedisInfoString, `src/replication.c`):
 * - `master_repl_offset`: on a primary, the end of its replication stream (every write
 *   applied so far); on a replica, the offset it has applied and would serve to its own replicas.
 * - `slave_repl_offset`: on a replica, the offset applied from its primary (`master->reploff`,
 *   kept from the cached primary while the link is down).
 * - `master_replid` / `master_replid2` / `second_repl_offset`: a promotion starts a new history
 *   (`shiftReplicationId`): the old id moves to replid2 and second_repl_offset is the new
 *   primary's offset + 1; PSYNC accepts the old id for offsets below it, because both
 *   histories share those bytes.
 */
import { parseReply, RespErrorValue } from '../resp/index.js';

/** A node's replication state as one `INFO replication` reported it. */
export interface ReplicationInfo {
  role: 'master' | 'slave';
  /** the id of the history this node's data belongs to (40 hex characters) */
  replid: string;
  /** the previous history this one continues, or 40 zeros */
  replid2: string;
  /** bytes of `replid2` this history shares are those below this offset; -1 when none */
  secondOffset: number;
  /** applied offset: master_repl_offset on a primary, slave_repl_offset on a replica */
  offset: number;
  /** replica: `master_link_status:up`; always true on a primary */
  linkUp: boolean;
  /** replica: the primary it follows */
  masterHost: string | null;
  masterPort: number | null;
  /** primary: `connected_slaves` */
  connectedReplicas: number;
}

/** The reply was not an `INFO replication` text this module understands. */
export class ReplicationInfoError extends Error {
  readonly code = 'REDIS_BAD_INFO';
}

/** Parses the text of `INFO replication` (lines `key:value`). */
export function parseReplicationInfo(text: string): ReplicationInfo {
  const fields = new Map<string, string>();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon <= 0 || line.startsWith('#')) continue;
    fields.set(line.slice(0, colon), line.slice(colon + 1).trim());
  }
  const role = fields.get('role');
  const replid = fields.get('master_replid');
  const masterOffset = fields.get('master_repl_offset');
  if ((role !== 'master' && role !== 'slave') || !replid || masterOffset === undefined) {
    throw new ReplicationInfoError(
      `unexpected INFO replication reply (role ${role ?? '?'}): ${text.slice(0, 120).replace(/\r?\n/g, ' ')}`,
    );
  }
  const num = (key: string, fallback: number): number => {
    const v = Number(fields.get(key));
    return Number.isFinite(v) && fields.has(key) ? v : fallback;
  };
  const primary = role === 'master';
  return {
    role,
    replid,
    replid2: fields.get('master_replid2') ?? '0'.repeat(40),
    secondOffset: num('second_repl_offset', -1),
    offset: primary ? num('master_repl_offset', 0) : num('slave_repl_offset', num('master_repl_offset', 0)),
    linkUp: primary || fields.get('master_link_status') === 'up',
    masterHost: primary ? null : (fields.get('master_host') ?? null),
    masterPort: primary ? null : num('master_port', 0) || null,
    connectedReplicas: num('connected_slaves', 0),
  };
}

/**
 * Decodes a raw `INFO replication` reply (a RESP2 bulk string or a RESP3 verbatim string).
 * @throws ReplicationInfoError on an error reply or an unexpected shape
 */
export function replicationInfoFromReply(raw: Buffer): ReplicationInfo {
  const v = parseReply(raw);
  if (v instanceof RespErrorValue) throw new ReplicationInfoError(`INFO replication failed: ${v.message}`);
  if (!Buffer.isBuffer(v) && typeof v !== 'string') {
    throw new ReplicationInfoError('INFO replication did not return a text');
  }
  return parseReplicationInfo(v.toString());
}
