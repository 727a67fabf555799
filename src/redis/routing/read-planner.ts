/**
 * Where a Redis read goes, per consistency level:
 * - `eventual`: any reachable replica, even past the staleness bound; the primary when none;
 * - `bounded`: the staleness rule of the read router (replicas within maxLag, else the
 *   primary or an error per `staleness.whenAllLagging`);
 * - `read-your-writes`: `bounded`, and the replica must have applied the session's causal
 *   token for the shard (known from the position book, else asked now, polled up to
 *   `causalWaitMs`); else the primary;
 * - `strong`: the primary.
 * Decision logic only: the session sends the command.
 */
import { createBalancer, type Balancer, type Candidate } from '../../core/balancer.js';
import { eligibleReplica } from '../../core/eligible.js';
import type { NodeStatus } from '../../core/topology.js';
import type { BalanceStrategy } from '../../core/types.js';
import type { ConsistencyLevel } from '../../config/schema.js';
import { covers, type CausalPosition } from './causal-token.js';
import type { PositionBook } from './position-book.js';
import type { ReadFrom, Shard } from '../sharding/shards.js';

/** A node for the read, or why there is none. */
export type ReadChoice = { node: NodeStatus; error?: undefined } | { node?: undefined; error: string };

export interface ReadPlannerOptions {
  readFrom: ReadFrom;
  balance: BalanceStrategy;
  causalWaitMs: number;
}

/** Pause between two rounds of position checks that found no replica far enough yet. */
const POLL_PAUSE_MS = 1;

export class ReadPlanner {
  private readonly balancers: Balancer[];

  constructor(
    private readonly shards: readonly Shard[],
    private readonly book: PositionBook,
    private readonly opts: ReadPlannerOptions,
  ) {
    this.balancers = shards.map(() => createBalancer(opts.balance));
  }

  /**
   * Chooses the node for a read of `shard`; a Promise when a read-your-writes read waits for
   * a replica to reach `want` (until `since` + causalWaitMs). `exclude`: nodes that already
   * failed this read.
   */
  plan(
    shard: number,
    level: ConsistencyLevel,
    want: readonly CausalPosition[],
    exclude?: ReadonlySet<string>,
    since = Date.now(),
  ): ReadChoice | Promise<ReadChoice> {
    const s = this.shards[shard]!;
    if (this.opts.readFrom === 'primary' || level === 'strong') return this.primary(s);
    if (level === 'eventual') {
      const any = this.replicas(s, exclude, true);
      return any.length > 0 ? { node: this.pick(shard, any) } : this.primary(s);
    }
    if (level === 'bounded' || want.length === 0) {
      const pick = s.readRouter.pick(exclude);
      return pick.ok ? { node: pick.node } : { error: `${pick.message}. ${pick.hint}` };
    }
    const candidates = this.replicas(s, exclude, false);
    const ready = candidates.filter((n) => this.holds(n, want));
    if (ready.length > 0) return { node: this.pick(shard, ready) };
    const deadline = since + this.opts.causalWaitMs;
    if (candidates.length === 0 || deadline <= Date.now()) return this.primary(s);
    return this.waitForReplica(shard, want, exclude, deadline);
  }

  /** Whether the book knows `node` has applied every position of `want`. */
  holds(node: NodeStatus, want: readonly CausalPosition[]): boolean {
    const pos = this.book.get(node.spec.id);
    if (pos === undefined) return false;
    // A loop rather than every(): no closure per read (the session asks this per command).
    for (let i = 0; i < want.length; i++) if (!covers(pos, want[i]!)) return false;
    return true;
  }

  private primary(s: Shard): ReadChoice {
    const p = s.topology.primary();
    return p
      ? { node: p }
      : { error: `no node of shard ${s.name} can serve this read: its primary is unavailable` };
  }

  private replicas(s: Shard, exclude: ReadonlySet<string> | undefined, evenLagging: boolean): NodeStatus[] {
    return s.topology.nodes.filter((n) => eligibleReplica(n, evenLagging, exclude));
  }

  private pick(shard: number, nodes: readonly NodeStatus[]): NodeStatus {
    if (nodes.length === 1) return nodes[0]!;
    const candidates: (Candidate & { node: NodeStatus })[] = nodes.map((n) => ({
      id: n.spec.id,
      weight: n.spec.weight,
      outstanding: n.outstanding,
      latencyMs: n.latency.value,
      node: n,
    }));
    return (this.balancers[shard]!.pick(candidates) as Candidate & { node: NodeStatus }).node;
  }

  /**
   * Asks the candidate replicas for their position (one shared request per node), again
   * after each answer that was not far enough, until one has applied `want` or the deadline
   * passes; then the primary. A replica that does not answer (SIGSTOPped) does not hold up
   * the others: each round ends at the first answer.
   */
  private async waitForReplica(
    shard: number,
    want: readonly CausalPosition[],
    exclude: ReadonlySet<string> | undefined,
    deadline: number,
  ): Promise<ReadChoice> {
    const s = this.shards[shard]!;
    for (;;) {
      const candidates = this.replicas(s, exclude, false);
      const ready = candidates.filter((n) => this.holds(n, want));
      if (ready.length > 0) return { node: this.pick(shard, ready) };
      const left = deadline - Date.now();
      if (candidates.length === 0 || left <= 0) return this.primary(s);
      const answered = await this.firstAnswer(candidates, left);
      if (answered && !candidates.some((n) => this.holds(n, want))) {
        await new Promise((r) => setTimeout(r, Math.min(POLL_PAUSE_MS, Math.max(0, deadline - Date.now()))));
      }
    }
  }

  /** Resolves true at the first answer of any candidate, false when `ms` pass first. */
  private firstAnswer(candidates: readonly NodeStatus[], ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), ms);
      for (const n of candidates) {
        void this.book.check(n).then((info) => {
          if (info === null) return;
          clearTimeout(timer);
          resolve(true);
        });
      }
    });
  }
}
