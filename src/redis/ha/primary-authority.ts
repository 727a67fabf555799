/**
 * Which node is a Redis shard's primary, decided from one probe round (roles as each node
 * reports them) and, when configured, an authority: Redis Sentinel's answer, or this
 * instance's own failover controller. Pure decision logic: the monitor applies the result
 * to the Topology.
 *
 * Two nodes can both report `role:master` — the old primary restarted after a failover (it
 * comes back empty and writable), or a promotion made elsewhere while the old one still
 * runs. Exactly one of them is the shard's primary; every other master is fenced (never
 * routed to) until it reports `role:slave`, which is Redis's own way of giving up a history.
 *
 * The primary is, in order: the node the authority names (Sentinel, or the controller right
 * after a promotion); else the current primary while it still reports master; else, when the
 * current one is down or turned replica, a master that was promoted meanwhile (a failover
 * made elsewhere is followed) — including one fenced because it was promoted while the
 * current one still answered, if its history continues the current one's (`master_replid2`
 * is the id the current primary last reported: `REPLICAOF NO ONE` on its replica, then the
 * old primary stopped, is a failover made by hand in the order operators often use); else,
 * at start, the master most replicas follow (ties: config order). `failover.mode: off` skips
 * all of this: the first configured node is the primary.
 */
import type { ReplicationInfo } from './replication-info.js';

export type FailoverMode = 'auto' | 'follow' | 'off';

/** One node as the last probe round saw it. */
export interface NodeProbe {
  id: string;
  host: string;
  port: number;
  /** null: the probe failed */
  info: ReplicationInfo | null;
}

/** What the monitor must apply after a round. */
export interface AuthorityDecision {
  /** the shard's primary (may be unreachable or not yet a master); null when unknown */
  primary: string | null;
  /** roles to record for the nodes that answered */
  roles: Map<string, 'primary' | 'replica'>;
  fence: { id: string; reason: string }[];
  unfence: { id: string; reason: string }[];
  /** reachable masters other than the primary: the controller demotes them (`REPLICAOF`) */
  strays: string[];
}

export class PrimaryAuthority {
  private current: string | null = null;
  /** nodes this authority (or the controller through it) fenced; an operator's drains are not ours */
  private readonly fencedByUs = new Set<string>();
  private why = 'observed';
  private strict = false;
  /** the history id the current primary last reported as master (see choose) */
  private currentReplid: string | null = null;

  constructor(
    private readonly nodeIds: readonly string[],
    readonly mode: FailoverMode,
  ) {
    if (mode === 'off') this.current = nodeIds[0] ?? null;
  }

  get primary(): string | null {
    return this.current;
  }

  /**
   * The authority (Sentinel, or the failover controller) names the primary. `strict`: only
   * the authority changes it again (Sentinel); otherwise a later promotion observed while
   * this node is down is followed.
   */
  designate(id: string, why: string, strict = false): void {
    if (this.mode === 'off' || !this.nodeIds.includes(id)) return;
    this.current = id;
    this.why = why;
    this.strict = strict;
  }

  /** The controller fenced `id` (a primary being replaced): ours to lift when it turns replica. */
  claimFence(id: string): void {
    this.fencedByUs.add(id);
  }

  /** Whether `id` is fenced by this authority or the controller. */
  fencedHere(id: string): boolean {
    return this.fencedByUs.has(id);
  }

  /** Forgets a fence (the controller lifted it itself). */
  releaseFence(id: string): void {
    this.fencedByUs.delete(id);
  }

  /** Decides the round. `alreadyFenced` tells which nodes are fenced now, by anyone. */
  decide(probes: readonly NodeProbe[], alreadyFenced: ReadonlySet<string>): AuthorityDecision {
    const roles = new Map<string, 'primary' | 'replica'>();
    const out: AuthorityDecision = { primary: this.current, roles, fence: [], unfence: [], strays: [] };
    if (this.mode === 'off') {
      for (const p of probes) if (p.info) roles.set(p.id, p.id === this.current ? 'primary' : 'replica');
      return out;
    }
    for (const p of probes) if (p.info) roles.set(p.id, p.info.role === 'master' ? 'primary' : 'replica');
    this.choose(probes);
    out.primary = this.current;
    const chosen = probes.find((p) => p.id === this.current)?.info;
    if (chosen?.role === 'master') this.currentReplid = chosen.replid;
    for (const p of probes) {
      if (!p.info) continue;
      if (p.info.role === 'master' && p.id !== this.current) {
        out.strays.push(p.id);
        if (!alreadyFenced.has(p.id)) {
          this.fencedByUs.add(p.id);
          out.fence.push({
            id: p.id,
            reason: `reports role master while ${this.current ?? 'no node'} is the shard's primary (${this.why}): fenced until it turns replica`,
          });
        }
      } else if (this.fencedByUs.has(p.id) && (p.info.role === 'slave' || p.id === this.current)) {
        this.fencedByUs.delete(p.id);
        if (alreadyFenced.has(p.id)) {
          const reason = p.info.role === 'slave' ? 'rejoined as a replica' : `named primary (${this.why})`;
          out.unfence.push({ id: p.id, reason });
        }
      }
    }
    return out;
  }

  private choose(probes: readonly NodeProbe[]): void {
    const cur = probes.find((p) => p.id === this.current);
    if (cur?.info?.role === 'master' || (this.strict && this.current !== null)) return;
    // The authority named a node that answers but is not a master yet (Sentinel between
    // REPLICAOF NO ONE and our probe seeing it): keep it, writes wait for it.
    if (this.current !== null && this.why !== 'observed' && cur?.info) return;
    let masters = probes.filter((p) => p.info?.role === 'master' && !this.fencedByUs.has(p.id));
    if (masters.length === 0 && this.current !== null && !cur?.info && this.currentReplid !== null) {
      // The current primary is down, and a master fenced as a stray was promoted from its
      // history (a replica given REPLICAOF NO ONE before the primary was stopped): it takes over.
      const heirs = probes.filter(
        (p) =>
          p.info?.role === 'master' && this.fencedByUs.has(p.id) && p.info.replid2 === this.currentReplid,
      );
      if (heirs.length > 0) masters = heirs;
    }
    if (masters.length === 0) {
      // Nothing seen yet: the first configured node is assumed (as the Topology does), so a
      // primary already down at start is detected and replaced like any other.
      this.current ??= this.nodeIds[0] ?? null;
      return;
    }
    if (this.current !== null && cur?.info) {
      // The current primary turned replica: the master it now follows took over.
      const followed = masters.find(
        (m) => m.port === cur.info!.masterPort && sameHost(m.host, cur.info!.masterHost),
      );
      if (followed) {
        this.current = followed.id;
        return;
      }
    }
    this.current = mostFollowed(masters, probes);
    this.why = 'observed';
  }
}

/** The master the most replicas follow; ties go to config order (probes are in config order). */
function mostFollowed(masters: readonly NodeProbe[], probes: readonly NodeProbe[]): string {
  let best = masters[0]!;
  let bestCount = -1;
  for (const m of masters) {
    const count = probes.filter(
      (p) => p.info?.role === 'slave' && p.info.masterPort === m.port && sameHost(m.host, p.info.masterHost),
    ).length;
    if (count > bestCount) {
      best = m;
      bestCount = count;
    }
  }
  return best.id;
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1']);

/** Host names as configured vs as Redis reports them (an IP): loopback spellings are one host. */
export function sameHost(a: string, b: string | null): boolean {
  if (b === null) return false;
  return a === b || (LOOPBACK.has(a) && LOOPBACK.has(b));
}
