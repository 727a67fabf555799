/**
 * The proxy's view of the cluster: one NodeStatus per configured node, updated by the
 * monitor (probes) and by the data path (a connection that fails marks its node down at
 * once). The router reads it; the admin API reports it. No sockets here.
 */
import { EventEmitter } from 'node:events';
import { Ewma } from './ewma.js';
import type { NodeRole, NodeSpec, NodeState } from './types.js';

/** Live status of one node. Mutated only through Topology's methods. */
export interface NodeStatus {
  readonly spec: NodeSpec;
  role: NodeRole;
  /** false until the monitor has seen the node answer at least once */
  roleKnown: boolean;
  reachable: boolean;
  lagging: boolean;
  fenced: boolean;
  lagBytes: number | null;
  lagMs: number | null;
  /** last observed WAL position: current LSN on a primary, replay LSN on a replica */
  position: string | null;
  timeline: number | null;
  /** batches dispatched to this node and not yet answered */
  outstanding: number;
  /** EWMA of batch latency in ms */
  readonly latency: Ewma;
  okStreak: number;
  lastError: string | null;
  lastProbeAt: number | null;
}

/** One entry of the event log the admin API and dashboard show. */
export interface TopologyEvent {
  at: number;
  node: string;
  type:
    | 'down'
    | 'up'
    | 'lagging'
    | 'caught-up'
    | 'role-change'
    | 'fenced'
    | 'unfenced'
    | 'failover-start'
    | 'failover-end'
    /** an old primary that came back as a primary was made read-only and its sessions ended */
    | 'fenced-on-server'
    | 'writes-held'
    | 'writes-released';
  detail: string;
}

/** Derives the externally reported state of a node. */
export function nodeState(n: NodeStatus): NodeState {
  if (n.fenced) return 'fenced';
  if (!n.reachable) return 'down';
  if (n.lagging) return 'lagging';
  return 'up';
}

const EVENT_LOG_SIZE = 500;

/** A failover or switchover under way in one shard (set by whoever decides it). */
export interface FailoverState {
  shard: string;
  /** the primary being replaced */
  from: string;
  /** the replica chosen for promotion, once chosen */
  to: string | null;
  kind: 'failover' | 'switchover';
  startedAt: number;
}

export class Topology extends EventEmitter {
  readonly nodes: NodeStatus[];
  readonly events: TopologyEvent[] = [];
  private readonly byId = new Map<string, NodeStatus>();
  /** shards whose writes are held (switchover, or a failover under way) */
  private readonly held = new Map<string, FailoverState>();
  /** see `settle` */
  private readonly settlers: (() => Promise<void>)[] = [];

  /** `upAfter`: consecutive successful probes before a down node returns to rotation. */
  constructor(
    specs: readonly NodeSpec[],
    private readonly upAfter = 2,
  ) {
    super();
    // Writes waiting for a new primary each listen for a moment (whenWritable).
    this.setMaxListeners(0);
    this.nodes = specs.map((spec, i) => ({
      spec,
      // Until the first probe answers, assume the first node is the primary (config order).
      role: i === 0 ? 'primary' : 'replica',
      roleKnown: false,
      reachable: true,
      lagging: false,
      fenced: false,
      lagBytes: null,
      lagMs: null,
      position: null,
      timeline: null,
      outstanding: 0,
      latency: new Ewma(2000),
      okStreak: 0,
      lastError: null,
      lastProbeAt: null,
    }));
    for (const n of this.nodes) this.byId.set(n.spec.id, n);
  }

  get(id: string): NodeStatus | undefined {
    return this.byId.get(id);
  }

  /** The routable primary of a shard: reachable, not fenced, observed (or assumed) primary. */
  primary(shard?: string): NodeStatus | undefined {
    for (const n of this.nodes) {
      if (shard !== undefined && n.spec.shard !== shard) continue;
      if (n.role === 'primary' && n.reachable && !n.fenced) return n;
    }
    return undefined;
  }

  /**
   * The primary new writes may go to now: the routable primary, unless a switchover or
   * failover holds the shard's writes.
   */
  writablePrimary(shard = 'default'): NodeStatus | undefined {
    if (this.held.size > 0 && this.held.has(shard)) return undefined;
    return this.primary(shard);
  }

  /** The failover or switchover under way in a shard, if any. */
  failover(shard = 'default'): FailoverState | undefined {
    return this.held.get(shard);
  }

  /**
   * Holds new writes of a shard (they wait in `whenWritable`) while a failover or switchover
   * replaces its primary. The decider calls `releaseWrites` when the new primary takes writes.
   */
  holdWrites(state: FailoverState, detail: string): void {
    this.held.set(state.shard, state);
    const n = this.byId.get(state.from);
    if (n) this.record(n, 'writes-held', detail);
  }

  releaseWrites(shard: string, detail: string): void {
    const state = this.held.get(shard);
    if (!state) return;
    this.held.delete(shard);
    const n = this.byId.get(state.to ?? state.from);
    if (n) this.record(n, 'writes-released', detail);
  }

  /** Records a failover milestone in the event log (start, promotion, end). */
  recordFailover(
    nodeId: string,
    type: 'failover-start' | 'failover-end' | 'fenced-on-server',
    detail: string,
  ): void {
    const n = this.byId.get(nodeId);
    if (n) this.record(n, type, detail);
  }

  /**
   * Resolves with the shard's writable primary as soon as there is one, or with undefined
   * after `timeoutMs` (failoverBufferMs: writes wait for a new primary instead of failing).
   */
  whenWritable(shard: string, timeoutMs: number): Promise<NodeStatus | undefined> {
    const now = this.writablePrimary(shard);
    if (now || timeoutMs <= 0) return Promise.resolve(now);
    return new Promise((resolve) => {
      const check = (): void => {
        const p = this.writablePrimary(shard);
        if (!p) return;
        clearTimeout(timer);
        this.off('event', check);
        resolve(p);
      };
      const timer = setTimeout(() => {
        this.off('event', check);
        resolve(undefined);
      }, timeoutMs);
      this.on('event', check);
    });
  }

  /** The failovers and switchovers holding writes now, one per shard. */
  heldShards(): FailoverState[] {
    return [...this.held.values()];
  }

  /**
   * Resolves once every process routing with this topology has applied its state as it is now
   * (the data-plane workers, src/workers/). A failover awaits it after fencing a node, so no
   * worker can still send a write there once a replica is promoted. At once in one process.
   */
  async settle(): Promise<void> {
    await Promise.all(this.settlers.map((fn) => fn()));
  }

  /** Registers a waiter for `settle` (the workers' controller). */
  onSettle(fn: () => Promise<void>): void {
    this.settlers.push(fn);
  }

  /** Called by the data path or the monitor when a node fails to answer. Takes effect at once. */
  markDown(id: string, reason: string): void {
    const n = this.byId.get(id);
    if (!n) return;
    n.okStreak = 0;
    n.lastError = reason;
    if (!n.reachable) return;
    n.reachable = false;
    this.record(n, 'down', reason);
  }

  /** Called by the monitor after a successful probe. */
  markProbeOk(id: string, role: NodeRole): void {
    const n = this.byId.get(id);
    if (!n) return;
    n.lastProbeAt = Date.now();
    n.lastError = null;
    const was = n.role;
    const known = n.roleKnown;
    // The new role is in place before the event: a write waiting in whenWritable checks it then.
    n.role = role;
    n.roleKnown = true;
    if (known && was !== role) this.record(n, 'role-change', `${was} -> ${role}`);
    n.okStreak++;
    // A node that has never been seen down is up from its first probe; a node that went
    // down needs `upAfter` answers in a row, so a flapping node does not bounce in and out.
    if (!n.reachable && n.okStreak >= this.upAfter) {
      n.reachable = true;
      this.record(n, 'up', `answered ${n.okStreak} probes in a row`);
    }
  }

  /**
   * Back in rotation on another process's word (a worker mirroring its controller's
   * topology, src/workers/topology-mirror.ts): the controller counted the probes.
   */
  markUp(id: string, detail: string): void {
    const n = this.byId.get(id);
    if (!n || n.reachable) return;
    n.reachable = true;
    this.record(n, 'up', detail);
  }

  /** Records the staleness verdict for a replica. */
  setLagging(id: string, lagging: boolean): void {
    const n = this.byId.get(id);
    if (!n || n.lagging === lagging) return;
    n.lagging = lagging;
    const lag = `lag ${n.lagBytes ?? '?'} bytes, ${n.lagMs ?? '?'} ms`;
    this.record(n, lagging ? 'lagging' : 'caught-up', lag);
  }

  /** Takes a node out of all routing (an old primary that came back as primary: split brain). */
  fence(id: string, reason: string): void {
    const n = this.byId.get(id);
    if (!n || n.fenced) return;
    n.fenced = true;
    this.record(n, 'fenced', reason);
  }

  unfence(id: string, reason: string): void {
    const n = this.byId.get(id);
    if (!n || !n.fenced) return;
    n.fenced = false;
    this.record(n, 'unfenced', reason);
  }

  private record(n: NodeStatus, type: TopologyEvent['type'], detail: string): void {
    const event: TopologyEvent = { at: Date.now(), node: n.spec.id, type, detail };
    this.events.push(event);
    if (this.events.length > EVENT_LOG_SIZE) this.events.splice(0, this.events.length - EVENT_LOG_SIZE);
    this.emit('event', event);
  }
}
