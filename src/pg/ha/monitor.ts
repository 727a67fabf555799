/**
 * Probes every PostgreSQL node on an interval, over a dedicated connection per node:
 * role (`pg_is_in_recovery()`), WAL positions, timeline. Turns the positions into lag in
 * bytes (primary's current LSN minus the replica's replay LSN) and in time (how long ago
 * the primary first passed the replica's replay position), and feeds the staleness bound.
 * Each shard is judged on its own: its primary, its lag history, its timelines. The
 * failover controller (failover.ts) reads each node's failure run and last answers here.
 */
import pg from 'pg';
import type { Logger } from 'pino';
import type { PgConfig } from '../../config/schema.js';
import { lsnDiff, parseLsn, PositionHistory } from '../../core/lag.js';
import type { StalenessTracker } from '../../core/staleness.js';
import type { NodeStatus, Topology, TopologyEvent } from '../../core/topology.js';
import type { NodeRole } from '../../core/types.js';
import { loopStall, ProbeExcused, ProbeTimeout, withProbeDeadline } from '../../core/liveness.js';
import { connectOutcome } from '../../util/connect-check.js';
import { isTlsRefusal, pgClientSsl, type BackendTls } from '../backend/backend-tls.js';
import type { ProbeHealth } from './failover-plan.js';
import { MONITOR_APPLICATION_NAME } from './control-names.js';
import type { SqlLogin } from './promotion-sql.js';

/** `postgres.failover.mode` */
type FailoverMode = PgConfig['failover']['mode'];

export interface MonitorOptions {
  intervalMs: number;
  timeoutMs: number;
  database: string;
  user: string;
  password?: string;
  /** called with each replica's time lag, per probe (for the lag histogram) */
  onLag?: (nodeId: string, lagMs: number) => void;
  /**
   * `postgres.failover.mode`. With `off` roles are configured, not observed: the first node
   * of each shard is its primary whatever it answers, and nothing is fenced.
   */
  failoverMode?: FailoverMode;
  /** TLS toward each node (postgres.backend.sslmode and per node); absent: plain */
  tls?: ReadonlyMap<string, BackendTls>;
}

/** What one successful probe of a node saw. */
export interface ProbeResult {
  /** sequence number of the probe: a later probe's answer supersedes an earlier one's */
  seq: number;
  inRecovery: boolean;
  currentLsn: string | null;
  /** pg_last_wal_receive_lsn() (replicas) */
  receiveLsn: string | null;
  replayLsn: string | null;
  timeline: number | null;
  /** synchronous_standby_names as the node has it (what matters is the primary's) */
  syncStandbyNames: string;
}

// One round trip. The timeline comes from the WAL file name on a primary (first 8 hex
// digits) and from the WAL receiver on a replica; all of it is readable without superuser.
const PROBE_SQL = `SELECT pg_is_in_recovery() AS r,
  CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END AS cur,
  pg_last_wal_receive_lsn()::text AS rcv,
  pg_last_wal_replay_lsn()::text AS replay,
  CASE WHEN pg_is_in_recovery() THEN (SELECT received_tli FROM pg_stat_wal_receiver)
       ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END AS tli,
  current_setting('synchronous_standby_names') AS ssn`;

/** Per shard: the primary last seen and the history its lag figures come from. */
interface ShardState {
  history: PositionHistory;
  lastPrimary: string | null;
}

export class PgMonitor {
  private readonly clients = new Map<string, pg.Client>();
  /** nodes with sslmode prefer that refused TLS: probed in plain */
  private readonly plain = new Set<string>();
  private readonly shards = new Map<string, ShardState>();
  /** nodes this monitor fenced as stale primaries (operators' drains are not ours to lift) */
  private readonly staleFenced = new Set<string>();
  private readonly lastProbes = new Map<string, ProbeResult>();
  private readonly failures = new Map<string, ProbeHealth>();
  /** seq of the last answer applied per node, so a slow round cannot undo a newer probe */
  private readonly appliedSeq = new Map<string, number>();
  private readonly roundListeners: (() => void)[] = [];
  /** nodes with a confirming connection attempt under way */
  private readonly confirming = new Set<string>();
  /** when each node last answered a probe (a confirmation older than that is stale) */
  private readonly lastOkAt = new Map<string, number>();
  private seq = 0;
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  private stopped = false;

  constructor(
    private readonly topology: Topology,
    private readonly staleness: StalenessTracker,
    private readonly opts: MonitorOptions,
    private readonly log: Logger,
  ) {
    // A connection the data path saw break starts the node's failure clock; probes decide.
    topology.on('event', (e: TopologyEvent) => {
      if (e.type !== 'down') return;
      const f = this.failures.get(e.node);
      if (!f) this.failures.set(e.node, { failedProbes: 0, failingSince: e.at });
      else f.failingSince ??= e.at;
      this.confirm(e.node);
    });
  }

  /**
   * One fresh connection attempt to a node that just failed (a broken connection, a FATAL
   * from a dying server, a refused probe): refused means nothing listens any more, which a
   * failover may act on at once (core/liveness.ts); a timeout or an accepted connection
   * leaves the judgement to the probes and detectMs.
   */
  private confirm(id: string): void {
    const n = this.topology.get(id);
    if (!n || this.stopped || this.confirming.has(id)) return;
    this.confirming.add(id);
    const startedAt = Date.now();
    void connectOutcome(n.spec.host, n.spec.port, this.opts.timeoutMs)
      .then((outcome) => {
        if (outcome !== 'refused' || this.stopped) return;
        if ((this.lastOkAt.get(id) ?? 0) > startedAt) return; // it answered since
        const f = this.failures.get(id) ?? { failedProbes: 0, failingSince: startedAt };
        f.failingSince ??= startedAt;
        f.confirmedDownAt ??= Date.now();
        this.failures.set(id, f);
        this.topology.markDown(id, `connection refused: nothing listens on ${n.spec.host}:${n.spec.port}`);
        this.log.warn({ node: id }, 'node confirmed down: connection refused');
        this.notifyRound();
      })
      .finally(() => this.confirming.delete(id));
  }

  /** Runs one round at once (so roles are known before clients arrive), then on the interval. */
  async start(): Promise<void> {
    loopStall.start();
    await this.round();
    this.schedule();
  }

  async stop(): Promise<void> {
    if (!this.stopped) loopStall.stop();
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await Promise.all([...this.clients.values()].map((c) => c.end().catch(() => undefined)));
    this.clients.clear();
  }

  /** The monitor's login (the failover controller connects with it too). */
  get login(): SqlLogin {
    const { user, password, database, tls } = this.opts;
    const login: SqlLogin = password === undefined ? { user, database } : { user, password, database };
    if (tls) login.tls = tls;
    return login;
  }

  /** The node's current run of failures (zeros when its last probe answered). */
  health(id: string): ProbeHealth {
    const f = this.failures.get(id);
    return f ? { ...f } : { failedProbes: 0, failingSince: null };
  }

  /** The last answer the node gave (kept while it is down: what it said when last alive). */
  lastProbe(id: string): ProbeResult | undefined {
    return this.lastProbes.get(id);
  }

  /** Calls `fn` after each round has been applied to the topology. */
  onRound(fn: () => void): void {
    this.roundListeners.push(fn);
  }

  /**
   * Probes one node now and records its role, as a round would (the failover controller
   * calls this right after a promotion rather than setting roles itself: roles have one
   * writer, the probes). Lag figures wait for the next round.
   */
  async probeNow(id: string): Promise<ProbeResult | null> {
    const n = this.topology.get(id);
    if (!n) return null;
    const p = await this.probe(n);
    if (p && this.isNewest(n, p)) {
      this.topology.markProbeOk(id, this.roleOf(n, p));
      n.timeline = p.timeline;
      n.position = p.inRecovery ? p.replayLsn : p.currentLsn;
    }
    return p;
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
      const byShard = new Map<string, [NodeStatus, ProbeResult | null][]>();
      this.topology.nodes.forEach((n, i) => {
        const p = results[i] ?? null;
        const entry: [NodeStatus, ProbeResult | null] = [n, p && this.isNewest(n, p) ? p : null];
        const list = byShard.get(n.spec.shard);
        if (list) list.push(entry);
        else byShard.set(n.spec.shard, [entry]);
      });
      for (const [shard, entries] of byShard) this.applyShard(shard, entries);
    } finally {
      this.running = false;
    }
    // After `running` is cleared, so a listener may itself ask for a round.
    this.notifyRound();
  }

  /** Runs the round listeners (after a round, or when a node was confirmed down between rounds). */
  private notifyRound(): void {
    for (const fn of this.roundListeners) {
      try {
        fn();
      } catch (err) {
        this.log.error({ err }, 'monitor round listener failed');
      }
    }
  }

  private isNewest(n: NodeStatus, p: ProbeResult): boolean {
    if (p.seq < (this.appliedSeq.get(n.spec.id) ?? 0)) return false;
    this.appliedSeq.set(n.spec.id, p.seq);
    return true;
  }

  /** Observed role, or with failover `off` the configured one (first node of its shard). */
  private roleOf(n: NodeStatus, p: ProbeResult): NodeRole {
    if (this.opts.failoverMode !== 'off') return p.inRecovery ? 'replica' : 'primary';
    const first = this.topology.nodes.find((x) => x.spec.shard === n.spec.shard);
    return first === n ? 'primary' : 'replica';
  }

  private shardState(shard: string): ShardState {
    let s = this.shards.get(shard);
    if (!s) this.shards.set(shard, (s = { history: new PositionHistory(), lastPrimary: null }));
    return s;
  }

  private applyShard(shard: string, entries: [NodeStatus, ProbeResult | null][]): void {
    const now = Date.now();
    const state = this.shardState(shard);
    let primaryLsn: bigint | null = null;
    for (const [n, p] of entries) {
      if (!p) continue;
      const role = this.roleOf(n, p);
      this.topology.markProbeOk(n.spec.id, role);
      n.timeline = p.timeline;
      n.position = p.inRecovery ? p.replayLsn : p.currentLsn;
      if (role === 'primary' && p.currentLsn && !n.fenced) primaryLsn = parseLsn(p.currentLsn);
    }
    const newest = this.opts.failoverMode === 'off' ? null : this.fenceStalePrimaries(entries);
    if (newest && !newest.fenced && newest.position) primaryLsn = parseLsn(newest.position);
    if (newest && newest.spec.id !== state.lastPrimary) {
      // A new primary (promotion): its WAL positions are not comparable with the old history.
      if (state.lastPrimary !== null) state.history.clear();
      state.lastPrimary = newest.spec.id;
    }
    if (primaryLsn === null) return; // no primary answered: keep the last lag figures
    state.history.record(primaryLsn, now);
    for (const [n, p] of entries) this.applyLag(n, p, primaryLsn, newest, state, now);
  }

  private applyLag(
    n: NodeStatus,
    p: ProbeResult | null,
    primaryLsn: bigint,
    newest: NodeStatus | null,
    state: ShardState,
    now: number,
  ): void {
    if (!p) return;
    if (this.roleOf(n, p) === 'primary') {
      n.lagBytes = 0;
      n.lagMs = 0;
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
      n.lagBytes = lsnDiff(primaryLsn, replay);
      n.lagMs = state.history.lagMs(replay, now);
      this.opts.onLag?.(n.spec.id, n.lagMs);
    }
    const eligible = this.staleness.observe(n.spec.id, n.lagBytes, n.lagMs);
    this.topology.setLagging(n.spec.id, !eligible);
  }

  /**
   * Two nodes of a shard answering as primary (an old primary restarted after a promotion):
   * the one on the highest timeline is the primary; the others are fenced — never routed to —
   * until they come back as replicas. Returns the primary (or null when none answered as one).
   */
  private fenceStalePrimaries(entries: [NodeStatus, ProbeResult | null][]): NodeStatus | null {
    const primaries = entries.filter(([, p]) => p && !p.inRecovery).map(([n]) => n);
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
    for (const [n, p] of entries) {
      if (this.staleFenced.has(n.spec.id) && p?.inRecovery) {
        this.staleFenced.delete(n.spec.id);
        this.topology.unfence(n.spec.id, 'rejoined as a replica');
      }
    }
    return newest;
  }

  private async probe(n: NodeStatus): Promise<ProbeResult | null> {
    if (this.stopped) return null; // a late probeNow must not open a connection nobody closes
    const id = n.spec.id;
    const seq = ++this.seq;
    const sentAt = Date.now();
    let client = this.clients.get(id);
    try {
      const row = await withProbeDeadline(this.opts.timeoutMs, id, async (deadline) => {
        if (!client) {
          client = this.newClient(n);
          this.clients.set(id, client);
          try {
            await Promise.race([client.connect(), deadline]);
          } catch (err) {
            // sslmode prefer and a server without TLS: plain from now on.
            if (this.opts.tls?.get(id)?.mode !== 'prefer' || !isTlsRefusal(err as Error)) throw err;
            this.plain.add(id);
            client = this.newClient(n);
            this.clients.set(id, client);
            await Promise.race([client.connect(), deadline]);
          }
        }
        const res = await Promise.race([client.query<Record<string, unknown>>(PROBE_SQL), deadline]);
        return res.rows[0]!;
      });
      const result: ProbeResult = {
        seq,
        inRecovery: row.r === true,
        currentLsn: (row.cur as string | null) ?? null,
        receiveLsn: (row.rcv as string | null) ?? null,
        replayLsn: (row.replay as string | null) ?? null,
        timeline: row.tli === null || row.tli === undefined ? null : Number(row.tli),
        syncStandbyNames: typeof row.ssn === 'string' ? row.ssn : '',
      };
      this.failures.delete(id);
      this.lastOkAt.set(id, Date.now());
      this.lastProbes.set(id, result);
      return result;
    } catch (err) {
      // Late only because the node is busy sending data on the data path: no verdict.
      if (err instanceof ProbeExcused) return null;
      this.failed(n, client, sentAt, err as Error);
      return null;
    }
  }

  private failed(n: NodeStatus, client: pg.Client | undefined, sentAt: number, err: Error): void {
    const id = n.spec.id;
    const f = this.failures.get(id);
    if (f) {
      f.failedProbes++;
      f.failingSince ??= sentAt;
    } else this.failures.set(id, { failedProbes: 1, failingSince: sentAt });
    if (this.clients.get(id) === client) this.clients.delete(id);
    client?.end().catch(() => undefined);
    // A stopped (SIGSTOPped) server never answers `end`; drop the socket outright.
    (
      client as unknown as { connection?: { stream?: { destroy(): void } } } | undefined
    )?.connection?.stream?.destroy();
    const reason = `probe failed: ${err.message}`;
    if (n.reachable) this.log.warn({ node: id, reason }, 'node out of rotation');
    this.topology.markDown(id, reason);
    // Not a timeout (refused, reset, a server shutting down): worth one fresh attempt.
    if (!(err instanceof ProbeTimeout)) this.confirm(id);
  }

  private newClient(n: NodeStatus): pg.Client {
    const client = new pg.Client({
      host: n.spec.host,
      port: n.spec.port,
      user: this.opts.user,
      password: this.opts.password,
      database: this.opts.database,
      application_name: MONITOR_APPLICATION_NAME,
      connectionTimeoutMillis: this.opts.timeoutMs,
      ssl: this.plain.has(n.spec.id) ? false : pgClientSsl(this.opts.tls?.get(n.spec.id), n.spec.host),
    });
    client.on('error', () => undefined); // reported through the failing probe
    return client;
  }
}
