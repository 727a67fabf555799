/**
 * Probes every PostgreSQL node on an interval, over a dedicated connection per node:
 * role (`pg_is_in_recovery()`), WAL positions, timeline. Turns the positions into lag in
 * bytes (primary's current LSN minus the replica's replay LSN) and in time (how long ago
 * the primary first passed the replica's replay position), and feeds the staleness bound.
 */
import pg from 'pg';
import type { Logger } from 'pino';
import { lsnDiff, parseLsn, PositionHistory } from '../core/lag.js';
import type { StalenessTracker } from '../core/staleness.js';
import type { NodeStatus, Topology } from '../core/topology.js';
import { withDeadline } from '../util/deadline.js';

export interface MonitorOptions {
  intervalMs: number;
  timeoutMs: number;
  database: string;
  user: string;
  password?: string;
  /** called with each replica's time lag, per probe (for the lag histogram) */
  onLag?: (nodeId: string, lagMs: number) => void;
}

interface Probe {
  inRecovery: boolean;
  currentLsn: string | null;
  replayLsn: string | null;
  timeline: number | null;
}

// One round trip. The timeline comes from the WAL file name on a primary (first 8 hex
// digits) and from the WAL receiver on a replica; both are readable without superuser.
const PROBE_SQL = `SELECT pg_is_in_recovery() AS r,
  CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END AS cur,
  pg_last_wal_replay_lsn()::text AS replay,
  CASE WHEN pg_is_in_recovery() THEN (SELECT received_tli FROM pg_stat_wal_receiver)
       ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END AS tli`;

export class PgMonitor {
  private readonly clients = new Map<string, pg.Client>();
  private readonly history = new PositionHistory();
  /** nodes this monitor fenced as stale primaries (operators' drains are not ours to lift) */
  private readonly staleFenced = new Set<string>();
  private lastPrimary: string | null = null;
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  private stopped = false;

  constructor(
    private readonly topology: Topology,
    private readonly staleness: StalenessTracker,
    private readonly opts: MonitorOptions,
    private readonly log: Logger,
  ) {}

  /** Runs one round at once (so roles are known before clients arrive), then on the interval. */
  async start(): Promise<void> {
    await this.round();
    this.schedule();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await Promise.all([...this.clients.values()].map((c) => c.end().catch(() => undefined)));
    this.clients.clear();
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      void this.round().finally(() => this.schedule());
    }, this.opts.intervalMs);
    this.timer.unref();
  }

  /** Probes all nodes concurrently, then derives lag from one consistent set of answers. */
  async round(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      const results = await Promise.all(this.topology.nodes.map((n) => this.probe(n)));
      this.apply(results);
    } finally {
      this.running = false;
    }
  }

  private apply(results: (Probe | null)[]): void {
    const now = Date.now();
    let primaryLsn: bigint | null = null;
    this.topology.nodes.forEach((n, i) => {
      const p = results[i];
      if (!p) return;
      this.topology.markProbeOk(n.spec.id, p.inRecovery ? 'replica' : 'primary');
      n.timeline = p.timeline;
      n.position = p.inRecovery ? p.replayLsn : p.currentLsn;
      if (!p.inRecovery && p.currentLsn && !n.fenced) primaryLsn = parseLsn(p.currentLsn);
    });
    const newest = this.fenceStalePrimaries(results);
    if (newest && !newest.fenced && newest.position) primaryLsn = parseLsn(newest.position);
    if (newest && newest.spec.id !== this.lastPrimary) {
      // A new primary (promotion): its WAL positions are not comparable with the old history.
      if (this.lastPrimary !== null) this.history.clear();
      this.lastPrimary = newest.spec.id;
    }
    if (primaryLsn === null) return; // no primary answered: keep the last lag figures
    this.history.record(primaryLsn, now);
    this.topology.nodes.forEach((n, i) => {
      const p = results[i];
      if (!p || !p.inRecovery) {
        if (p) {
          n.lagBytes = 0;
          n.lagMs = 0;
        }
        return;
      }
      // A replica still on an older timeline follows a primary that is no longer the primary:
      // its data is another history, so it serves no reads until it follows the new one.
      if (newest?.timeline != null && p.timeline !== null && p.timeline < newest.timeline) {
        this.topology.setLagging(n.spec.id, true);
        return;
      }
      if (p.replayLsn === null) {
        n.lagBytes = null;
        n.lagMs = null;
      } else {
        const replay = parseLsn(p.replayLsn);
        n.lagBytes = lsnDiff(primaryLsn!, replay);
        n.lagMs = this.history.lagMs(replay, now);
        this.opts.onLag?.(n.spec.id, n.lagMs);
      }
      const eligible = this.staleness.observe(n.spec.id, n.lagBytes, n.lagMs);
      this.topology.setLagging(n.spec.id, !eligible);
    });
  }

  /**
   * Two nodes answering as primary (an old primary restarted after a promotion): the one on
   * the highest timeline is the primary; the others are fenced — never routed to — until they
   * come back as replicas. Returns the primary (or null when none answered as one).
   */
  private fenceStalePrimaries(results: (Probe | null)[]): NodeStatus | null {
    const primaries = this.topology.nodes.filter((n, i) => results[i] && !results[i]!.inRecovery);
    let newest: NodeStatus | null = null;
    for (const n of primaries) if (!newest || (n.timeline ?? -1) > (newest.timeline ?? -1)) newest = n;
    for (const n of primaries) {
      if (n === newest || (n.timeline ?? -1) >= (newest!.timeline ?? -1)) continue;
      this.staleFenced.add(n.spec.id);
      this.topology.fence(
        n.spec.id,
        `reports itself primary on timeline ${n.timeline}, behind ${newest!.spec.id} on timeline ${newest!.timeline}: fenced until it rejoins as a replica`,
      );
    }
    this.topology.nodes.forEach((n, i) => {
      if (this.staleFenced.has(n.spec.id) && results[i]?.inRecovery) {
        this.staleFenced.delete(n.spec.id);
        this.topology.unfence(n.spec.id, 'rejoined as a replica');
      }
    });
    return newest;
  }

  private async probe(n: NodeStatus): Promise<Probe | null> {
    const id = n.spec.id;
    let client = this.clients.get(id);
    try {
      const row = await withDeadline(this.opts.timeoutMs, async (deadline) => {
        if (!client) {
          client = this.newClient(n);
          this.clients.set(id, client);
          await Promise.race([client.connect(), deadline]);
        }
        const res = await Promise.race([client.query<Record<string, unknown>>(PROBE_SQL), deadline]);
        return res.rows[0]!;
      });
      return {
        inRecovery: row.r === true,
        currentLsn: (row.cur as string | null) ?? null,
        replayLsn: (row.replay as string | null) ?? null,
        timeline: row.tli === null || row.tli === undefined ? null : Number(row.tli),
      };
    } catch (err) {
      this.clients.delete(id);
      client?.end().catch(() => undefined);
      // A stopped (SIGSTOPped) server never answers `end`; drop the socket outright.
      (
        client as unknown as { connection?: { stream?: { destroy(): void } } } | undefined
      )?.connection?.stream?.destroy();
      const reason = `probe failed: ${(err as Error).message}`;
      if (n.reachable) this.log.warn({ node: id, reason }, 'node out of rotation');
      this.topology.markDown(id, reason);
      return null;
    }
  }

  private newClient(n: NodeStatus): pg.Client {
    const client = new pg.Client({
      host: n.spec.host,
      port: n.spec.port,
      user: this.opts.user,
      password: this.opts.password,
      database: this.opts.database,
      application_name: 'rwsplit-monitor',
      connectionTimeoutMillis: this.opts.timeoutMs,
    });
    client.on('error', () => undefined); // reported through the failing probe
    return client;
  }
}
