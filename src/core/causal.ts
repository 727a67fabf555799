/**
 * Read-your-writes bookkeeping. A causal token is, per shard, the
 * position a session's last write reached on the primary (a PostgreSQL LSN, a Redis offset);
 * a replica may serve that session's reads once it has replayed that far. Positions are
 * unsigned 64-bit numbers, kept as bigint. No sockets here.
 */
import { formatLsn, parseLsn } from './lag.js';
import type { NodeStatus, Topology, TopologyEvent } from './topology.js';

/** Per shard, the position a session's reads must see. */
export type CausalToken = Map<string, bigint>;

const TOKEN_VERSION = 'v1';

/** `v1:default@0/3000148,s2@0/16B3A18` — shard names cannot contain '@' or ','. */
export function formatPgToken(token: CausalToken): string {
  const parts: string[] = [];
  for (const [shard, lsn] of token) parts.push(`${shard}@${formatLsn(lsn)}`);
  return `${TOKEN_VERSION}:${parts.join(',')}`;
}

export class CausalTokenError extends Error {
  readonly code = 'CAUSAL_TOKEN_INVALID';
}

/**
 * Parses a token as `SHOW rwsplit.causal_token` printed it; a bare LSN (`0/3000148`) is
 * accepted for a single-shard setup and applies to `defaultShard`. Empty text is no token.
 */
export function parsePgToken(text: string, defaultShard: string): CausalToken {
  const out: CausalToken = new Map();
  const t = text.trim();
  if (t === '') return out;
  if (!t.startsWith(`${TOKEN_VERSION}:`)) {
    out.set(defaultShard, lsnOrThrow(t, text));
    return out;
  }
  for (const part of t.slice(TOKEN_VERSION.length + 1).split(',')) {
    if (part === '') continue;
    const at = part.lastIndexOf('@');
    if (at <= 0) throw tokenError(text);
    out.set(part.slice(0, at), lsnOrThrow(part.slice(at + 1), text));
  }
  return out;
}

function lsnOrThrow(lsn: string, whole: string): bigint {
  if (!/^[0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8}$/.test(lsn)) throw tokenError(whole);
  return parseLsn(lsn);
}

function tokenError(text: string): CausalTokenError {
  return new CausalTokenError(
    `invalid causal token "${text.slice(0, 100)}": expected what SHOW rwsplit.causal_token returns, such as "v1:default@0/3000148", or a bare LSN such as "0/3000148"`,
  );
}

/** Raises `token[shard]` to `position` (tokens only move forward). */
export function advanceToken(token: CausalToken, shard: string, position: bigint): void {
  const cur = token.get(shard);
  if (cur === undefined || position > cur) token.set(shard, position);
}

/**
 * What rwsplit knows of each replica's replay position: the monitor's last probe, raised by
 * checks made on the replica itself for a session's read (so later reads with an older
 * token need no check). A node whose history may have changed (down, role change, fenced)
 * loses its confirmed position.
 */
export class ReplayPositions {
  private readonly confirmed = new Map<string, bigint>();
  /** parsed monitor positions, re-parsed only when the text changes */
  private readonly parsed = new Map<string, { text: string; value: bigint }>();

  constructor(topology: Topology) {
    topology.on('event', (e: TopologyEvent) => {
      if (e.type === 'lagging' || e.type === 'caught-up' || e.type === 'up') return;
      this.confirmed.delete(e.node);
    });
  }

  /** The highest position this replica is known to have replayed, or -1n when unknown. */
  known(n: NodeStatus): bigint {
    let best = this.confirmed.get(n.spec.id) ?? -1n;
    const text = n.position;
    if (text !== null) {
      let p = this.parsed.get(n.spec.id);
      if (!p || p.text !== text) {
        p = { text, value: parseLsn(text) };
        this.parsed.set(n.spec.id, p);
      }
      if (p.value > best) best = p.value;
    }
    return best;
  }

  /** A check on the replica saw it at `position`. */
  confirm(nodeId: string, position: bigint): void {
    const cur = this.confirmed.get(nodeId);
    if (cur === undefined || position > cur) this.confirmed.set(nodeId, position);
  }
}
