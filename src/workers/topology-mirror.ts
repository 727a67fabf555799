/**
 * A topology's state as the controller sees it, in a form that crosses the IPC channel, and
 * its application to a worker's copy. The controller's monitors and failover controllers
 * decide; each worker routes on a mirror that follows it: roles, reachability, fences,
 * staleness verdicts, lag figures, positions and held writes. What is the worker's own
 * (requests in flight, latency) is left alone. Applying goes through Topology's methods, so
 * the worker's sessions react to the same events as in one process (a fenced node loses its
 * connections at once, a held write waits in `whenWritable`).
 */
import type { FailoverState, NodeStatus, Topology } from '../core/topology.js';

/** What a worker mirrors of a node's status (the controller's monitor measures it). */
export type NodeSnapshot = { id: string } & Pick<
  NodeStatus,
  | 'role'
  | 'roleKnown'
  | 'reachable'
  | 'lagging'
  | 'fenced'
  | 'lagBytes'
  | 'lagMs'
  | 'position'
  | 'timeline'
  | 'lastError'
  | 'lastProbeAt'
>;

export interface TopologySnapshot {
  nodes: NodeSnapshot[];
  /** the failovers or switchovers holding writes, one per shard */
  held: FailoverState[];
}

export function snapshotTopology(t: Topology): TopologySnapshot {
  return {
    nodes: t.nodes.map((n) => ({
      id: n.spec.id,
      role: n.role,
      roleKnown: n.roleKnown,
      reachable: n.reachable,
      lagging: n.lagging,
      fenced: n.fenced,
      lagBytes: n.lagBytes,
      lagMs: n.lagMs,
      position: n.position,
      timeline: n.timeline,
      lastError: n.lastError,
      lastProbeAt: n.lastProbeAt,
    })),
    held: t.heldShards().map((h) => ({ ...h })),
  };
}

/**
 * Makes `t` say what `s` says. Order matters: writes are held and nodes fenced or marked down
 * before anything is released, unfenced or marked up, so a write never finds a way in between.
 *
 * `ownDown`: nodes this copy's data path marked down and reported. They stay down until a
 * snapshot says so too: a snapshot taken before the controller heard of the failure would
 * otherwise put a dead node back in rotation for a moment.
 */
export function applySnapshot(t: Topology, s: TopologySnapshot, ownDown?: Set<string>): void {
  const heldNow = new Map(s.held.map((h) => [h.shard, h]));
  for (const h of s.held) {
    const mine = t.failover(h.shard);
    if (mine) Object.assign(mine, h);
    else t.holdWrites({ ...h }, `held by the controller (${h.kind} of ${h.from})`);
  }
  for (const snap of s.nodes) {
    const n = t.get(snap.id);
    if (!n) continue;
    if (snap.fenced) t.fence(snap.id, snap.lastError ?? 'fenced by the controller');
    if (!snap.reachable) {
      t.markDown(snap.id, snap.lastError ?? 'down (controller)');
      // The controller counts the probes that bring a node back, not this copy.
      n.okStreak = 0;
    }
  }
  for (const snap of s.nodes) {
    const n = t.get(snap.id);
    if (!n) continue;
    if (!snap.reachable) ownDown?.delete(snap.id);
    applyNode(t, n, ownDown?.has(snap.id) ? { ...snap, reachable: false, lastError: n.lastError } : snap);
  }
  for (const h of t.heldShards())
    if (!heldNow.has(h.shard)) t.releaseWrites(h.shard, 'released by the controller');
}

function applyNode(t: Topology, n: NodeStatus, snap: NodeSnapshot): void {
  n.lagBytes = snap.lagBytes;
  n.lagMs = snap.lagMs;
  n.position = snap.position;
  n.timeline = snap.timeline;
  if (n.role !== snap.role || n.roleKnown !== snap.roleKnown) {
    if (snap.roleKnown) t.markProbeOk(snap.id, snap.role);
    else n.role = snap.role;
    if (!snap.reachable) {
      t.markDown(snap.id, snap.lastError ?? 'down (controller)');
      n.okStreak = 0;
    }
  }
  if (snap.reachable) t.markUp(snap.id, 'in rotation again (controller)');
  if (!snap.fenced) t.unfence(snap.id, 'unfenced by the controller');
  t.setLagging(snap.id, snap.lagging);
  n.lastError = snap.lastError;
  n.lastProbeAt = snap.lastProbeAt;
}
