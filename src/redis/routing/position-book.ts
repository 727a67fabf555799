/**
 * What rwsplit knows of each Redis node's replication position (history id and applied
 * offset): fed by every monitor probe, and asked on demand when a read-your-writes read
 * needs a replica at a position the monitor has not seen yet. Answers are remembered per
 * node, so the reads after the one that asked benefit too.
 *
 * Every answer is a lower bound of the node's position (offsets only grow within a history),
 * so an old answer can only make a replica look further behind than it is: safe for reads.
 */
import type { NodeStatus } from '../../core/topology.js';
import { RedisLink, type LinkOptions } from '../backend/backend-link.js';
import { replicationInfoFromReply, type ReplicationInfo } from '../ha/replication-info.js';
import { encodeCommand } from '../resp/index.js';

export const INFO_REPLICATION = encodeCommand(['INFO', 'replication']);

export class PositionBook {
  private readonly known = new Map<string, ReplicationInfo>();
  private readonly inflight = new Map<string, Promise<ReplicationInfo | null>>();
  private readonly links = new Map<string, RedisLink>();
  private closed = false;

  constructor(
    private readonly linkOptions: () => LinkOptions,
    /** longest wait for one on-demand answer (the monitor's probe timeout) */
    private readonly timeoutMs: number,
  ) {}

  /** The last position seen for a node. */
  get(nodeId: string): ReplicationInfo | undefined {
    return this.known.get(nodeId);
  }

  observe(nodeId: string, info: ReplicationInfo): void {
    this.known.set(nodeId, info);
  }

  /** Every position known, per node (the controller sends its book to the data-plane workers). */
  entries(): [string, ReplicationInfo][] {
    return [...this.known];
  }

  /**
   * A position another process saw (the controller's monitor, for a data-plane worker): taken
   * unless this book already holds a later one of the same history.
   */
  adopt(nodeId: string, info: ReplicationInfo): void {
    const mine = this.known.get(nodeId);
    if (mine && mine.replid === info.replid && mine.offset >= info.offset) return;
    this.known.set(nodeId, info);
  }

  /** The node is down: its checking link goes (its last position stays, a lower bound). */
  forget(nodeId: string): void {
    this.links.get(nodeId)?.destroy('node down');
    this.links.delete(nodeId);
  }

  /**
   * Asks the node for its position now; concurrent askers share one request. Resolves with
   * null when the node does not answer within the timeout.
   */
  check(node: NodeStatus): Promise<ReplicationInfo | null> {
    const id = node.spec.id;
    let pending = this.inflight.get(id);
    if (!pending) {
      pending = this.ask(node).finally(() => this.inflight.delete(id));
      this.inflight.set(id, pending);
    }
    return pending;
  }

  close(): void {
    this.closed = true;
    for (const l of this.links.values()) l.destroy('shutting down');
    this.links.clear();
  }

  private async ask(node: NodeStatus): Promise<ReplicationInfo | null> {
    const id = node.spec.id;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<null>((resolve) => {
      timer = setTimeout(() => {
        this.forget(id); // a SIGSTOPped node: do not queue behind a request it will never answer
        resolve(null);
      }, this.timeoutMs);
    });
    try {
      return await Promise.race([this.request(node), timeout]);
    } catch {
      this.forget(id);
      return null;
    } finally {
      clearTimeout(timer);
    }
  }

  private async request(node: NodeStatus): Promise<ReplicationInfo | null> {
    const id = node.spec.id;
    let link = this.links.get(id);
    if (!link || link.closed) {
      link = await RedisLink.connect(
        { nodeId: id, host: node.spec.host, port: node.spec.port },
        { ...this.linkOptions(), resp3: false },
      );
      if (this.closed) {
        link.destroy('shutting down');
        return null;
      }
      this.links.get(id)?.destroy('replaced');
      this.links.set(id, link);
    }
    const l = link;
    const raw = await new Promise<Buffer | null>((resolve) => l.send(INFO_REPLICATION, resolve));
    if (raw === null) return null;
    const info = replicationInfoFromReply(raw);
    this.observe(id, info);
    return info;
  }
}
