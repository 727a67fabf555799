/**
 * Probes every Redis node on an interval with `ROLE` (one round trip: role, replication
 * offset, link state): roles per shard, lag in bytes (primary offset minus the replica's
 * processed offset) and in time (since the primary first passed that offset), fed to the
 * staleness bound. A probe that fails or times out takes the node out of rotation at once.
 */
import type { Logger } from 'pino';
import { PositionHistory } from '../core/lag.js';
import type { StalenessTracker } from '../core/staleness.js';
import type { NodeStatus, Topology } from '../core/topology.js';
import { withDeadline } from '../util/deadline.js';
import { RedisLink } from './backend-link.js';
import { encodeCommand, parseReply } from './resp/index.js';

export interface RedisMonitorOptions {
  intervalMs: number;
  timeoutMs: number;
  password?: string;
  user?: string;
  onLag?: (nodeId: string, lagMs: number) => void;
}

interface RoleProbe {
  primary: boolean;
  offset: number;
  linkUp: boolean;
}

const ROLE = encodeCommand(['ROLE']);

export class RedisMonitor {
  private readonly links = new Map<string, RedisLink>();
  private readonly histories = new Map<Topology, PositionHistory>();
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(
    private readonly shards: readonly Topology[],
    private readonly staleness: StalenessTracker,
    private readonly opts: RedisMonitorOptions,
    private readonly log: Logger,
  ) {
    for (const t of shards) this.histories.set(t, new PositionHistory());
  }

  async start(): Promise<void> {
    await this.round();
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    for (const l of this.links.values()) l.destroy('monitor stopped');
    this.links.clear();
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.round().finally(() => this.schedule()), this.opts.intervalMs);
    this.timer.unref();
  }

  async round(): Promise<void> {
    await Promise.all(this.shards.map((t) => this.probeShard(t)));
  }

  private async probeShard(t: Topology): Promise<void> {
    const results = await Promise.all(t.nodes.map((n) => this.probe(n, t)));
    const now = Date.now();
    let primaryOffset: number | null = null;
    t.nodes.forEach((n, i) => {
      const r = results[i];
      if (!r) return;
      t.markProbeOk(n.spec.id, r.primary ? 'primary' : 'replica');
      n.position = String(r.offset);
      if (r.primary && !n.fenced) primaryOffset = r.offset;
    });
    if (primaryOffset === null) return;
    const history = this.histories.get(t)!;
    history.record(BigInt(primaryOffset), now);
    t.nodes.forEach((n, i) => {
      const r = results[i];
      if (!r) return;
      if (r.primary) {
        n.lagBytes = 0;
        n.lagMs = 0;
        return;
      }
      n.lagBytes = Math.max(0, primaryOffset! - r.offset);
      n.lagMs = r.linkUp ? history.lagMs(BigInt(r.offset), now) : null;
      if (n.lagMs !== null) this.opts.onLag?.(n.spec.id, n.lagMs);
      // A replica whose link to the primary is down serves ever older data: out of rotation.
      const eligible = this.staleness.observe(n.spec.id, n.lagBytes, n.lagMs) && r.linkUp;
      t.setLagging(n.spec.id, !eligible);
    });
  }

  private async probe(n: NodeStatus, t: Topology): Promise<RoleProbe | null> {
    const id = n.spec.id;
    try {
      const raw = await withDeadline(this.opts.timeoutMs, async (deadline) => {
        let link = this.links.get(id);
        if (!link || link.closed) {
          const connecting = RedisLink.connect(
            { nodeId: id, host: n.spec.host, port: n.spec.port },
            { resp3: false, connectTimeoutMs: this.opts.timeoutMs, ...this.credentials() },
          );
          try {
            link = await Promise.race([connecting, deadline]);
          } catch (err) {
            // Lost the race: a connection that completes later must not linger.
            connecting.then(
              (late) => late.destroy('probe gave up'),
              () => undefined,
            );
            throw err;
          }
          this.links.set(id, link);
        }
        const l = link;
        const reply = new Promise<Buffer>((resolve, reject) =>
          l.send(ROLE, (r) => (r ? resolve(r) : reject(new Error('connection lost')))),
        );
        return Promise.race([reply, deadline]);
      });
      return parseRole(raw);
    } catch (err) {
      this.links.get(id)?.destroy('probe failed');
      this.links.delete(id);
      const reason = `probe failed: ${(err as Error).message}`;
      if (n.reachable) this.log.warn({ node: id, reason }, 'node out of rotation');
      t.markDown(id, reason);
      return null;
    }
  }

  private credentials(): { password?: string; user?: string } {
    const out: { password?: string; user?: string } = {};
    if (this.opts.password !== undefined) out.password = this.opts.password;
    if (this.opts.user !== undefined) out.user = this.opts.user;
    return out;
  }
}

/** ROLE: ["master", offset, replicas] or ["slave", host, port, state, offset]. */
function parseRole(raw: Buffer): RoleProbe {
  const v = parseReply(raw);
  if (!Array.isArray(v) || !Buffer.isBuffer(v[0]))
    throw new Error(`unexpected ROLE reply ${raw.toString().slice(0, 80)}`);
  const role = v[0].toString();
  if (role === 'master') return { primary: true, offset: Number(v[1]), linkUp: true };
  if (role === 'slave') {
    const state = Buffer.isBuffer(v[3]) ? v[3].toString() : String(v[3]);
    return { primary: false, offset: Number(v[4]), linkUp: state === 'connected' };
  }
  throw new Error(`unsupported role ${role}`);
}
