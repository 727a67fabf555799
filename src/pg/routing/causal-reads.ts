/**
 * Read-your-writes on a session's backend lease. A read with a causal token goes to a replica
 * known to have replayed it, else to the replica furthest ahead, checked before it serves
 * (up to causalWaitMs), else to the primary. After a write, before the backend goes back to
 * its pool, the primary's commit position becomes the session's token. The ClientSession
 * owns the lease; this class only runs the proxy's own statements on it while the session
 * is gated (its client's requests wait).
 */
import { advanceToken } from '../../core/causal.js';
import { eligibleReplica } from '../../core/eligible.js';
import type { NodeStatus } from '../../core/topology.js';
import type { BackendConnection } from '../backend/backend-connection.js';
import { awaitReplay, commitPosition } from './causal-gate.js';
import type { RouteDecision } from './route-decision.js';
import type { RouteReason } from './route-decision.js';
import type { RoutingHost, SessionContext } from '../session/session-context.js';
import type { SessionSettings } from '../session/session-commands.js';

/** What CausalReads needs of its session (ClientSession implements it). */
export interface CausalSessionHost extends RoutingHost {
  /** the leased backend: a gated step whose lease ended meanwhile (client left, server lost) knows it by this */
  readonly currentBackend: BackendConnection | null;
  /** a write waits for a primary (failover) */
  awaitPrimary(decision: RouteDecision, failed: Set<string> | null): void;
  /** sends the routed batch on the backend just leased */
  startLease(conn: BackendConnection): void;
  releaseBackend(): void;
  /** the lease died during the proxy's own statement: a node failure, nothing owed to the client */
  leaseLost(node: NodeStatus, reason: string): void;
  /** dispatches what the client sent meanwhile */
  resumeQueued(): void;
}

/** A session's causal token work; owned by the ClientSession. */
export class CausalReads {
  /** the last commit position could not be read: reads go to the primary until the next one */
  tokenUnknown = false;

  constructor(
    private readonly ctx: SessionContext,
    private readonly settings: SessionSettings,
    private readonly session: CausalSessionHost,
  ) {}

  /**
   * A read-your-writes read the read router gave to `node`, a replica: it serves if it is
   * known to have replayed the session's token for this shard; else another known to; else
   * the one furthest ahead is asked first (checkReplay).
   */
  routeRead(
    node: NodeStatus,
    decision: RouteDecision,
    reason: RouteReason,
    failed: Set<string> | null,
  ): void {
    if (this.tokenUnknown) {
      this.readOnPrimary(decision, failed);
      return;
    }
    const token = this.settings.token.get(this.session.shard);
    let checkToken: bigint | null = null;
    if (token !== undefined) {
      const replay = this.ctx.replay;
      if (replay.known(node) >= token) this.ctx.stats.causalRead('replica-known');
      else {
        // Another replica may be known to be far enough; else ask the one picked.
        const known = this.ctx.readRouter.pick(failed ?? undefined, {
          accept: (n) => replay.known(n) >= token,
          shard: this.ctx.sharding ? this.session.shard : undefined,
        });
        if (known.ok && known.node.role === 'replica') {
          node = known.node;
          this.ctx.stats.causalRead('replica-known');
        } else {
          // Ask the replica most likely to be there: the one known to be furthest ahead.
          node = this.furthestReplica(failed) ?? node;
          checkToken = token;
        }
      }
    }
    this.session.routeTo(node, decision, reason, failed, checkToken);
  }

  /** A read-your-writes read no replica could serve in time goes to the primary. */
  readOnPrimary(decision: RouteDecision, failed: Set<string> | null): void {
    this.ctx.stats.causalRead('primary');
    const node = this.ctx.topology.primary(this.session.shard);
    const read: RouteDecision = {
      target: 'primary',
      reason: 'causal-primary',
      retryable: decision.retryable,
    };
    if (node) this.session.routeTo(node, read, 'causal-primary', failed, null);
    else this.session.awaitPrimary(read, failed);
  }

  /**
   * Read-your-writes on a replica not known to have replayed the session's token: ask it,
   * waiting up to causalWaitMs; if it never gets there, the read goes to the primary.
   */
  checkReplay(conn: BackendConnection, node: NodeStatus, token: bigint, decision: RouteDecision): void {
    const s = this.session;
    s.gate(
      awaitReplay(conn, token, this.ctx.causalWaitMs, () => s.closed),
      (outcome) => {
        // The lease ended while gated: the client left (its connection was dropped), or the
        // server went right after answering (ClientSession.onBackendClose only noted the loss).
        const lost = s.currentBackend !== conn;
        if (s.closed) {
          if (!lost) s.releaseBackend();
          return;
        }
        if (lost) {
          s.route(decision, new Set([node.spec.id]));
          return;
        }
        switch (outcome.kind) {
          case 'ready':
            this.ctx.replay.confirm(node.spec.id, outcome.position);
            this.ctx.stats.causalRead('replica-checked');
            s.startLease(conn);
            return;
          case 'lost':
            s.leaseLost(node, outcome.reason);
            s.route(decision, new Set([node.spec.id]));
            return;
          case 'timeout':
          case 'error':
            s.releaseBackend();
            this.readOnPrimary(decision, null);
            return;
        }
      },
    );
  }

  /**
   * After a write, before the backend goes back to its pool: the primary's WAL insert
   * position becomes the session's causal token. The client already has its answer; its
   * next request waits for this one round trip (gated).
   */
  captureThenRelease(conn: BackendConnection, node: NodeStatus): void {
    const s = this.session;
    s.gate(commitPosition(conn), (outcome) => {
      // The lease may have ended while gated (see checkReplay); the client still waits for
      // nothing here, but what it queued meanwhile must go on.
      const lost = s.currentBackend !== conn;
      if (outcome.kind === 'ready') {
        advanceToken(this.settings.token, node.spec.shard, outcome.position);
        this.tokenUnknown = false;
      } else {
        // Without the position, no replica can be proven fresh enough: primary reads until the next write.
        this.tokenUnknown = true;
      }
      if (!lost) {
        if (outcome.kind === 'lost') s.leaseLost(node, outcome.reason);
        else s.releaseBackend();
      }
      if (!s.closed) s.resumeQueued();
    });
  }

  /** After a two-phase commit: every participant's commit position joins the session's token. */
  async recordCommits(participants: readonly { conn: BackendConnection; node: NodeStatus }[]): Promise<void> {
    if (this.settings.consistency !== 'read-your-writes') return;
    for (const p of participants) {
      const pos = await commitPosition(p.conn);
      if (pos.kind === 'ready') advanceToken(this.settings.token, p.node.spec.shard, pos.position);
      else this.tokenUnknown = true;
    }
  }

  private furthestReplica(failed: Set<string> | null): NodeStatus | undefined {
    let best: NodeStatus | undefined;
    let bestAt = -2n;
    const eventual = this.settings.consistency === 'eventual';
    const shard = this.session.shard;
    for (const n of this.ctx.topology.nodes) {
      if (n.spec.shard !== shard || !eligibleReplica(n, eventual, failed)) continue;
      const at = this.ctx.replay.known(n);
      if (at > bestAt) {
        best = n;
        bestAt = at;
      }
    }
    return best;
  }
}
