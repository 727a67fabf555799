/**
 * The controller's side of `workers: N` (N > 1): forks N data-plane worker processes
 * (worker.ts), hands each client connection accepted on rwsplit's listening sockets to one
 * of them, keeps their mirrors of the topologies in step, and sums their figures.
 *
 * Why a controller that accepts and passes sockets on rather than workers all accepting:
 * this is what Node's `cluster` module does in its default round-robin mode (the kernel
 * spreads connections unevenly over processes that all accept), but here the listening sockets
 * stay ordinary servers of the controller, so a graceful restart hands them over as before,
 * port 0 means one port, and a worker's death loses no listener. The controller touches each
 * connection once (one accept, one handle passed): no client byte crosses it.
 *
 * One view of the cluster: the controller sends the topologies' state on every topology event
 * (coalesced within a tick) and every `STATE_INTERVAL_MS` (lag figures and positions), well
 * within one monitor interval. A failover that fences a node awaits `Topology.settle`, which
 * resolves once every worker has applied the fence: a worker that does not confirm within
 * `SYNC_TIMEOUT_MS` is killed, so none can still send a write to the old primary once a
 * replica is promoted.
 */
import { fork, type ChildProcess } from 'node:child_process';
import type net from 'node:net';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import type { WorkerReport } from '../admin/http-server.js';
import type { RemoteMetrics } from '../admin/metrics.js';
import type { ConnectionCounts, ConnectionStatsSource } from '../core/cluster-view.js';
import type { Topology } from '../core/topology.js';
import type { Config } from '../config/schema.js';
import type { PositionBook } from '../redis/routing/position-book.js';
import { PROCESS_ID_HEADROOM } from '../pg/proxy.js';
import type {
  ClientProtocol,
  DrainCounts,
  FromWorker,
  ToWorker,
  WorkerStats,
  WorkerTotals,
} from './messages.js';
import { processIdOwner, workerConfig } from './split-limits.js';
import { snapshotTopology } from './topology-mirror.js';

/** Lag figures and positions reach the workers at least this often (monitor intervals are ≥ 100 ms). */
export const STATE_INTERVAL_MS = 100;
/** A worker that has not confirmed a fence this long after it was sent is killed. */
export const SYNC_TIMEOUT_MS = 2000;
/** Workers exiting before they serve, in a row, before the pool gives up replacing them. */
const MAX_FAILED_STARTS = 3;
/** Connections waiting for a worker (none ready: all being replaced) beyond this many are closed. */
const MAX_PENDING = 10_000;

const WORKER_ENTRY = fileURLToPath(new URL('./worker-main.js', import.meta.url));

interface Slot {
  index: number;
  child: ChildProcess;
  ready: boolean;
  stats: WorkerStats | null;
  /** sync requests this worker has not confirmed yet: seq → confirm */
  syncs: Map<number, () => void>;
  metrics: Map<number, (m: unknown[]) => void>;
  drained: ((m: Extract<FromWorker, { t: 'drained' }>) => void) | null;
  startedAt: number;
  /** client connections handed to this worker since it started */
  accepted: number;
}

/** Graceful restart, old process: sends a client with its session's state to the new process. */
export type MoveToSuccessor = (state: unknown, socket: net.Socket) => Promise<boolean>;

const NO_DRAIN: Extract<FromWorker, { t: 'drained' }> = {
  t: 'drained',
  postgres: { handedOver: 0, atBoundary: 0, atTimeout: 0 },
  redis: { handedOver: 0, atBoundary: 0, atTimeout: 0 },
};

/**
 * A socket received over IPC starts reading at once (net.Socket does with a handle): one only
 * passed on must not, or the client's next bytes would be read here and lost. Called in the
 * tick that received it, before the event loop could read anything.
 */
function stopReading(socket: net.Socket): void {
  (socket as unknown as { _handle?: { readStop?: () => number } | null })._handle?.readStop?.();
}

/**
 * The controller's change streams as the workers need them (StreamManager): the streams run
 * here, the workers serve the reads of the keys they feed (stream-gate.ts).
 */
export interface WorkerStreams {
  /** each stream's applied position, when known */
  appliedPositions(): [string, bigint][];
  /** settles once stream `name` applied the causal token position `lsn` (rejects: why not) */
  waitApplied(name: string, lsn: bigint): Promise<void>;
  /** reads of the stream's keys served by a worker */
  countReads(name: string, n: number): void;
}

export interface WorkerPoolOptions {
  count: number;
  config: Config;
  /** the first BackendKeyData process id (workers take every `count`-th from first + index) */
  firstProcessId: number;
  log: Logger;
  /** an event for the admin log (a worker died and was replaced) */
  record: (detail: string) => void;
}

export class WorkerPool implements RemoteMetrics {
  private readonly slots: Slot[] = [];
  private next = 0;
  private seq = 0;
  private stopping = false;
  private stateQueued = false;
  private stateTimer: NodeJS.Timeout | null = null;
  private readonly pending: { protocol: ClientProtocol; socket: net.Socket }[] = [];
  private readonly readyWaiters = new Set<() => void>();
  /** workers replaced since start */
  replaced = 0;
  private failedStarts = 0;
  private startError: Error | null = null;
  /** the PostgreSQL topology (when configured) then each Redis shard's: the order workers mirror */
  private topologies: Topology[] = [];

  private nodeDown: (node: string, reason: string) => void = () => undefined;
  /** the change streams, once they run (they start after the workers) */
  streams: WorkerStreams | null = null;
  /** the Redis position book the controller's monitor feeds, sent with the state */
  redisBook: PositionBook | null = null;
  /** the PostgreSQL process ids the workers hand out start here (continueProcessIds) */
  private processIdsFrom: number;
  /** client connections passed to workers (accepted or handed over), all incarnations */
  private passed = 0;
  /** graceful restart, old process: where the drain sends clients, by protocol */
  private moves: Partial<Record<ClientProtocol, MoveToSuccessor>> = {};

  constructor(private readonly opts: WorkerPoolOptions) {
    this.processIdsFrom = opts.firstProcessId;
  }

  /**
   * Graceful restart, new process (before start): the workers hand out PostgreSQL process ids
   * from `next` on (the old process's processIdsAfterHandover), each still every `count`-th
   * from its own index, so the id of a session handed over and of a new one alike names its
   * worker (processIdOwner) and they never meet.
   */
  continueProcessIds(next: number): void {
    if (Number.isSafeInteger(next) && next > this.processIdsFrom) this.processIdsFrom = next;
  }

  /**
   * Graceful restart, old process: where the new process's ids may start. Each worker hands
   * out at most one id per client passed to it, `count` apart; the headroom covers the clients
   * still logging in until the drain starts (as PgProxy.processIdsAfterHandover).
   */
  get processIdsAfterHandover(): number {
    return this.processIdsFrom + this.opts.count * (this.passed + 1) + PROCESS_ID_HEADROOM;
  }

  /** Worker `index`'s first process id: the first from processIdsFrom that names it. */
  private firstProcessId(index: number): number | undefined {
    const { firstProcessId: first, count } = this.opts;
    if (this.processIdsFrom === first) return undefined;
    const from = this.processIdsFrom;
    return from + ((((index - (from - first)) % count) + count) % count);
  }

  /** What to do when a worker's data path saw a node fail (the controller marks it down). */
  onNodeDown(fn: (node: string, reason: string) => void): void {
    this.nodeDown = fn;
  }

  /**
   * Forks every worker and resolves once each serves. Connections accepted before (takeOver)
   * wait for the first worker ready.
   */
  async start(topologies: Topology[], timeoutMs: number): Promise<void> {
    this.topologies = topologies;
    for (const t of topologies) {
      t.on('event', () => this.queueState());
      t.onSettle(() => this.sync());
    }
    for (let i = 0; i < this.opts.count; i++) this.slots.push(this.fork(i));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`the data-plane workers were not ready within ${timeoutMs} ms`)),
        timeoutMs,
      );
      const check = (): void => {
        if (this.startError) {
          clearTimeout(timer);
          this.readyWaiters.delete(check);
          reject(this.startError);
          return;
        }
        if (!this.slots.every((s) => s.ready)) return;
        clearTimeout(timer);
        this.readyWaiters.delete(check);
        resolve();
      };
      this.readyWaiters.add(check);
      check();
    });
    this.stateTimer = setInterval(() => this.sendState(true), STATE_INTERVAL_MS);
    this.stateTimer.unref();
  }

  get count(): number {
    return this.opts.count;
  }

  /** Each worker's pid, index and figures (`GET /api/workers`, `rwsplit status`). */
  describe(): WorkerReport[] {
    return this.slots.map((s) => ({
      index: s.index,
      pid: s.child.pid ?? null,
      ready: s.ready,
      startedAt: s.startedAt,
      clients: s.stats ? s.stats.clients.postgres + s.stats.clients.redis : 0,
      accepted: s.accepted,
    }));
  }

  pids(): number[] {
    return this.slots.flatMap((s) => (s.child.pid !== undefined ? [s.child.pid] : []));
  }

  /** Makes `server` pass each connection it accepts to a worker instead of serving it. */
  takeOver(server: net.Server, protocol: ClientProtocol): void {
    // The socket must reach the worker unread: the client's first bytes are the worker's.
    (server as net.Server & { pauseOnConnect: boolean }).pauseOnConnect = true;
    server.removeAllListeners('connection');
    server.on('connection', (socket: net.Socket) => this.dispatch(protocol, socket));
  }

  private dispatch(protocol: ClientProtocol, socket: net.Socket): void {
    const n = this.slots.length;
    for (let i = 0; i < n; i++) {
      const slot = this.slots[(this.next + i) % n]!;
      if (!slot.ready || !slot.child.connected) continue;
      this.next = (this.next + i + 1) % n;
      slot.accepted++;
      this.passed++;
      slot.child.send({ t: 'client', protocol } satisfies ToWorker, socket, (err) => {
        // The worker died between the check and the send: another takes the client.
        if (err && !socket.destroyed) this.dispatch(protocol, socket);
      });
      return;
    }
    if (this.pending.length >= MAX_PENDING || this.stopping) {
      socket.destroy();
      return;
    }
    this.pending.push({ protocol, socket });
  }

  private fork(index: number): Slot {
    const child = fork(WORKER_ENTRY, [], {
      // `node --test` flags are the test runner's, not the worker's.
      execArgv: process.execArgv.filter((a) => !a.startsWith('--test')),
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const slot: Slot = {
      index,
      child,
      ready: false,
      stats: null,
      syncs: new Map(),
      metrics: new Map(),
      drained: null,
      startedAt: Date.now(),
      accepted: 0,
    };
    child.on('message', (m: FromWorker, handle: unknown) => this.onMessage(slot, m, handle));
    child.on('error', (err) => this.opts.log.warn({ worker: index, err: err.message }, 'worker error'));
    child.once('exit', (code, signal) => this.onExit(slot, code, signal));
    const init: Extract<ToWorker, { t: 'init' }> = {
      t: 'init',
      config: workerConfig(this.opts.config, index, this.opts.count),
      index,
      count: this.opts.count,
      logLevel: this.opts.log.level,
      topologies: this.topologies.map(snapshotTopology),
    };
    const firstId = this.firstProcessId(index);
    if (firstId !== undefined) init.firstProcessId = firstId;
    child.send(init);
    return slot;
  }

  private onMessage(slot: Slot, m: FromWorker, handle?: unknown): void {
    switch (m.t) {
      case 'ready':
        slot.ready = true;
        this.opts.log.info({ worker: slot.index, pid: slot.child.pid }, 'data-plane worker ready');
        // It may have missed state sent while it started.
        this.sendStateTo(slot);
        for (const w of [...this.readyWaiters]) w();
        this.flushPending();
        return;
      case 'failed':
        this.opts.log.error({ worker: slot.index, err: m.error }, 'data-plane worker failed to start');
        return;
      case 'stats':
        this.takeStats(slot, m.stats);
        return;
      case 'synced':
        this.takeStats(slot, m.stats);
        for (const [seq, done] of slot.syncs)
          if (seq <= m.seq) {
            slot.syncs.delete(seq);
            done();
          }
        return;
      case 'node-down':
        this.nodeDown(m.node, m.reason);
        return;
      case 'cancel':
        this.cancel(slot, m.processId, m.secretKey);
        return;
      case 'metrics':
        slot.metrics.get(m.seq)?.(m.metrics);
        slot.metrics.delete(m.seq);
        return;
      case 'handover':
        this.relayHandover(slot, m.seq, m.protocol, m.state, handle as net.Socket | undefined);
        return;
      case 'drained':
        slot.drained?.(m);
        return;
      case 'stream-wait':
        this.streamWait(slot, m.seq, m.stream, BigInt(m.lsn));
        return;
    }
  }

  private takeStats(slot: Slot, stats: WorkerStats): void {
    slot.stats = stats;
    for (const [name, n] of stats.streamReads) if (n > 0) this.streams?.countReads(name, n);
  }

  /** A worker's read waits for a change stream of this process (as a read in one process would). */
  private streamWait(slot: Slot, seq: number, stream: string, lsn: bigint): void {
    const answer = (error: string | null): void => {
      if (slot.child.connected) this.post(slot, { t: 'stream-applied', seq, error });
    };
    if (!this.streams) {
      answer(`stream ${stream} is not running yet`);
      return;
    }
    this.streams.waitApplied(stream, lsn).then(
      () => answer(null),
      (err: Error) => answer(err.message),
    );
  }

  /** The streams' applied positions as sent to the workers. */
  private streamPositions(): [string, string][] {
    return (this.streams?.appliedPositions() ?? []).map(([name, lsn]) => [name, lsn.toString()]);
  }

  /** A CancelRequest one worker received for a session of another: the pid names the owner. */
  private cancel(from: Slot, processId: number, secretKey: number): void {
    const owner = processIdOwner(processId, this.opts.firstProcessId, this.opts.count);
    if (owner === null || owner === from.index) return; // no such session (any more)
    const slot = this.slots[owner];
    if (slot?.ready && slot.child.connected)
      slot.child.send({ t: 'cancel', processId, secretKey } satisfies ToWorker);
  }

  private onExit(slot: Slot, code: number | null, signal: NodeJS.Signals | null): void {
    const wasReady = slot.ready;
    slot.ready = false;
    for (const done of slot.syncs.values()) done(); // a dead worker routes nothing
    slot.syncs.clear();
    for (const reply of slot.metrics.values()) reply([]);
    slot.metrics.clear();
    slot.drained?.(NO_DRAIN);
    if (this.stopping) return;
    const how = signal ?? `code ${code}`;
    // A worker that cannot even start (a bad config, a server that refuses) would be forked
    // again and again: after a few in a row, the start fails instead.
    this.failedStarts = wasReady ? 0 : this.failedStarts + 1;
    if (this.failedStarts >= MAX_FAILED_STARTS) {
      this.startError = new Error(
        `data-plane worker ${slot.index} exited (${how}) before serving, ${this.failedStarts} times in a row; its log says why`,
      );
      this.opts.log.error(this.startError.message);
      for (const w of [...this.readyWaiters]) w();
      return;
    }
    const replacement = this.fork(slot.index);
    this.slots[slot.index] = replacement;
    this.replaced++;
    const detail = `data-plane worker ${slot.index} (pid ${slot.child.pid}) exited (${how}); its clients' connections closed with it; replaced by pid ${replacement.child.pid}`;
    this.opts.log.error({ worker: slot.index, exit: how }, detail);
    this.opts.record(detail);
  }

  private flushPending(): void {
    const waiting = this.pending.splice(0);
    for (const p of waiting) if (!p.socket.destroyed) this.dispatch(p.protocol, p.socket);
  }

  private queueState(): void {
    if (this.stateQueued) return;
    this.stateQueued = true;
    queueMicrotask(() => this.sendState());
  }

  /**
   * `ifChanged` (the periodic send): skipped when the state is what the workers last got. Most
   * ticks of a quiet cluster change nothing, and each send costs the controller a serialization
   * per worker and each worker a parse: a fixed cost per second that an idle or lightly loaded
   * instance would otherwise pay in CPU per request.
   */
  private sendState(ifChanged = false): void {
    this.stateQueued = false;
    const m: ToWorker = {
      t: 'state',
      topologies: this.topologies.map(snapshotTopology),
      streams: this.streamPositions(),
      book: this.redisBook?.entries() ?? [],
    };
    const text = JSON.stringify(m);
    if (ifChanged && text === this.lastState) return;
    this.lastState = text;
    for (const s of this.slots) if (s.ready && s.child.connected) this.post(s, m);
  }

  /** the last state sent to every worker (JSON) */
  private lastState = '';

  private sendStateTo(slot: Slot): void {
    this.post(slot, {
      t: 'state',
      topologies: this.topologies.map(snapshotTopology),
      streams: this.streamPositions(),
      book: this.redisBook?.entries() ?? [],
    });
  }

  private post(slot: Slot, m: ToWorker): void {
    try {
      slot.child.send(m);
    } catch {
      // the channel closed: the exit handler replaces the worker
    }
  }

  /**
   * Resolves once every worker has applied the state as it is now (Topology.settle). One that
   * does not answer within SYNC_TIMEOUT_MS is killed and waited for: it routes nothing after.
   */
  sync(): Promise<void> {
    this.sendState();
    const seq = ++this.seq;
    const waits = this.slots.map((slot) => {
      // A worker still starting gets the state with its `ready`, before any client.
      if (!slot.ready || !slot.child.connected) return Promise.resolve();
      return new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          this.opts.log.error(
            { worker: slot.index, pid: slot.child.pid },
            `data-plane worker did not confirm the topology within ${SYNC_TIMEOUT_MS} ms: killed`,
          );
          slot.child.kill('SIGKILL');
        }, SYNC_TIMEOUT_MS);
        slot.syncs.set(seq, () => {
          clearTimeout(timer);
          resolve();
        });
        this.post(slot, { t: 'sync', seq });
      });
    });
    return Promise.all(waits).then(() => undefined);
  }

  // ---- figures -----------------------------------------------------------------------------

  /** The workers' client and backend connection counts, as one proxy of `kind`. */
  connections(kind: ClientProtocol): ConnectionStatsSource {
    const slots = (): Slot[] => this.slots;
    return {
      kind,
      get clientCount(): number {
        return slots().reduce((sum, s) => sum + (s.stats?.clients[kind] ?? 0), 0);
      },
      poolStats(): Map<string, ConnectionCounts> {
        const out = new Map<string, ConnectionCounts>();
        for (const s of slots())
          for (const [node, c] of s.stats?.pools[kind] ?? []) {
            const cur = out.get(node) ?? { idle: 0, active: 0, waiting: 0 };
            cur.idle += c.idle;
            cur.active += c.active;
            cur.waiting += c.waiting;
            out.set(node, cur);
          }
        return out;
      },
    };
  }

  totals(nodeId: string): WorkerTotals {
    const out: WorkerTotals = { queries: 0, reads: null, writes: null };
    for (const s of this.slots) {
      const t = s.stats?.totals.find(([id]) => id === nodeId)?.[1];
      if (!t) continue;
      out.queries += t.queries;
      if (t.reads !== null) out.reads = (out.reads ?? 0) + t.reads;
      if (t.writes !== null) out.writes = (out.writes ?? 0) + t.writes;
    }
    return out;
  }

  decisions(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const s of this.slots)
      for (const [reason, n] of Object.entries(s.stats?.decisions ?? {}))
        out[reason] = (out[reason] ?? 0) + n;
    return out;
  }

  registries(): ReturnType<RemoteMetrics['registries']> {
    const seq = ++this.seq;
    const asks = this.slots.map(
      (slot) =>
        new Promise<unknown[]>((resolve) => {
          if (!slot.ready || !slot.child.connected) return resolve([]);
          const timer = setTimeout(() => {
            slot.metrics.delete(seq);
            resolve([]);
          }, SYNC_TIMEOUT_MS);
          slot.metrics.set(seq, (m) => {
            clearTimeout(timer);
            resolve(m);
          });
          this.post(slot, { t: 'metrics', seq });
        }),
    );
    return Promise.all(asks) as ReturnType<RemoteMetrics['registries']>;
  }

  setLogLevel(level: string): void {
    for (const s of this.slots) if (s.ready) this.post(s, { t: 'log-level', level });
  }

  // ---- end of life -------------------------------------------------------------------------

  /**
   * Graceful restart, old process: a worker's client at its boundary goes on to the new process
   * (its socket is not read here); the worker learns whether it went.
   */
  private relayHandover(
    slot: Slot,
    seq: number,
    protocol: ClientProtocol,
    state: unknown,
    socket: net.Socket | undefined,
  ): void {
    const answer = (ok: boolean): void => {
      if (slot.child.connected) this.post(slot, { t: 'handed', seq, ok });
    };
    if (!socket) return answer(false);
    stopReading(socket);
    socket.on('error', () => socket.destroy());
    const move = this.moves[protocol];
    if (!move) {
      socket.destroy();
      return answer(false);
    }
    void move(state, socket).then(
      (ok) => {
        if (!ok) socket.destroy();
        answer(ok);
      },
      () => {
        socket.destroy();
        answer(false);
      },
    );
  }

  /**
   * Graceful restart, new process: a client the old process handed over, with its session's
   * state, goes to a worker to adopt. A PostgreSQL session goes to the worker its process id
   * names (processIdOwner), so a CancelRequest for it is routed there as for any other.
   */
  adoptHanded(protocol: ClientProtocol, socket: net.Socket, state: unknown): void {
    stopReading(socket);
    const n = this.slots.length;
    let first = this.next;
    const pid = (state as { processId?: unknown } | null)?.processId;
    if (protocol === 'postgres' && typeof pid === 'number') {
      first = processIdOwner(pid, this.opts.firstProcessId, this.opts.count) ?? first;
    } else this.next = (this.next + 1) % Math.max(1, n);
    for (let i = 0; i < n; i++) {
      const slot = this.slots[(first + i) % n]!;
      if (!slot.ready || !slot.child.connected) continue;
      slot.accepted++;
      this.passed++;
      slot.child.send({ t: 'adopt-handed', protocol, state } satisfies ToWorker, socket, (err) => {
        if (err) socket.destroy();
      });
      return;
    }
    // No worker serves (all being replaced): the client reconnects.
    socket.destroy();
  }

  /**
   * Graceful restart: every worker drains its sessions and exits; at its boundary a session of
   * a protocol in `moves` is handed over to the new process through this one, any other closed.
   */
  async drain(
    timeoutMs: number,
    moves: Partial<Record<ClientProtocol, MoveToSuccessor>> = {},
  ): Promise<DrainCounts[]> {
    this.moves = moves;
    const handOver = Object.keys(moves) as ClientProtocol[];
    this.stopping = true;
    if (this.stateTimer) clearInterval(this.stateTimer);
    const reports = await Promise.all(
      this.slots.map(
        (slot) =>
          new Promise<Extract<FromWorker, { t: 'drained' }>>((resolve) => {
            slot.drained = resolve;
            if (!slot.child.connected || slot.child.exitCode !== null) {
              resolve(NO_DRAIN);
              return;
            }
            this.post(slot, { t: 'drain', timeoutMs, handOver });
          }),
      ),
    );
    const sum = (k: 'postgres' | 'redis'): DrainCounts => ({
      handedOver: reports.reduce((a, r) => a + r[k].handedOver, 0),
      atBoundary: reports.reduce((a, r) => a + r[k].atBoundary, 0),
      atTimeout: reports.reduce((a, r) => a + r[k].atTimeout, 0),
    });
    return [sum('postgres'), sum('redis')];
  }

  /** Stops every worker (their clients' connections close) and waits for them to exit. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.stateTimer) clearInterval(this.stateTimer);
    for (const p of this.pending.splice(0)) p.socket.destroy();
    await Promise.all(
      this.slots.map(
        (slot) =>
          new Promise<void>((resolve) => {
            if (slot.child.exitCode !== null || slot.child.signalCode !== null) return resolve();
            slot.child.once('exit', () => resolve());
            slot.child.kill('SIGTERM');
            setTimeout(() => slot.child.kill('SIGKILL'), 2000).unref();
          }),
      ),
    );
  }
}
