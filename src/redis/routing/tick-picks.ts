/**
 * The replica a client's reads of each shard went to in this tick (one event-loop turn),
 * offered to the next reads of the tick: the reads of one pipeline share a replica, so they
 * leave in one write to one link (and come back in one read) instead of one per replica;
 * the balancer still spreads pipelines and clients. A read follows the pick only while the
 * node is still fit for it (reachable, not lagging or fenced; under read-your-writes, holding
 * the client's causal positions); `strong` reads never do. One per proxy session, one per
 * library client.
 */
import type { ConsistencyLevel } from '../../config/schema.js';
import type { NodeStatus } from '../../core/topology.js';
import type { CausalPosition } from './causal-token.js';
import type { ReadPlanner } from './read-planner.js';

export class TickPicks {
  private readonly picks = new Map<number, NodeStatus>();

  /** The replica this tick's reads of `shard` went to, when this read may go there too. */
  sticky(
    shard: number,
    level: ConsistencyLevel,
    want: readonly CausalPosition[],
    planner: ReadPlanner,
  ): NodeStatus | undefined {
    const node = this.picks.get(shard);
    if (node === undefined || !node.reachable || node.lagging || node.fenced || level === 'strong')
      return undefined;
    if (level === 'read-your-writes' && !planner.holds(node, want)) return undefined;
    return node;
  }

  /** Records the replica the planner chose for a read of `shard`, until the end of the tick. */
  remember(shard: number, node: NodeStatus): void {
    if (this.picks.size === 0) process.nextTick(() => this.picks.clear());
    this.picks.set(shard, node);
  }
}
