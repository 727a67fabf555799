/**
 * The PostgreSQL side of rwsplit: a TCP server that speaks the wire protocol to clients,
 * glues codec (protocol/), statement routing (classifier, route-decision), the routing
 * core (topology, read router) and the backend pools together.
 */
import { tallyHandover, type DrainTally, type Handover } from '../util/drain-tally.js';
import { randomInt } from 'node:crypto';
import net from 'node:net';
import type tls from 'node:tls';
import type { Logger } from 'pino';
import { ReplayPositions } from '../core/causal.js';
import type { ReadRouter } from '../core/read-router.js';
import type { ConnectionStatsSource } from '../core/cluster-view.js';
import { ClientGuard } from '../core/client-guard.js';
import type { NodeStatus, Topology, TopologyEvent } from '../core/topology.js';
import type { ConsistencyLevel, PgConfig } from '../config/schema.js';
import { makeScramVerifier, parseScramVerifier, type ScramKeys, type ScramVerifier } from './auth/index.js';
import { AuthQuery } from './auth/auth-query.js';
import type { BackendLogin } from './backend/backend-connection.js';
import type { BackendTls } from './backend/backend-tls.js';
import type { Lease } from './backend/lease.js';
import { BackendPool } from './backend/backend-pool.js';
import type { Classifier } from './classifier/classify.js';
import { ClientSession } from './session/client-session.js';
import {
  ClientStartup,
  closesSilently,
  type ClientLogin,
  type StartupHost,
} from './session/client-startup.js';
import { BackendStartupError, RwsplitPgError, SqlState } from './errors.js';
import { IdleTransactionWatch } from './session/idle-transaction.js';
import {
  encodeBackendKeyData,
  encodeCancelRequest,
  FrameReader,
  FrameTooLargeError,
  ProtocolError,
  readyForQuery,
} from './protocol/index.js';
import type { PgStats, SessionContext, ShardingContext, SignalTarget } from './session/session-context.js';
import {
  bindPathFor,
  moveSocketFile,
  pgSocketPath,
  prepareSocketPath,
  removeSocketFile,
} from './session/unix-socket.js';
import { ReplicationPassthrough } from './session/replication-passthrough.js';
import { DEFAULT_SHARD, TX_IDLE } from './session/session-recovery.js';
import {
  decodeKeys,
  encodeKeys,
  inspectPinned,
  replaySettings,
  type HandedPgState,
} from './session/session-handover.js';
import { listenPath, listenServer } from '../util/listen.js';
import type { NativeCore } from '../util/native-core.js';

const SERVER_MAX_FRAME_BYTES = 1024 * 1024 * 1024;
/**
 * Process ids rwsplit hands out (BackendKeyData) start above the largest pid Linux can give
 * (2^22), so a pid passed to pg_cancel_backend/pg_terminate_backend names either a server
 * backend or an rwsplit session, never both.
 */
export const FIRST_PROCESS_ID = 0x400001;
/** Draining: how long a session that sent nothing since its login is left to send its first request. */
const FRESH_SESSION_GRACE_MS = 1000;
/**
 * A graceful restart's new process hands out process ids from this far past the old one's
 * next (PgProxy.processIdsAfterHandover): the old one still logs clients in until the new one
 * serves, and the sessions it hands over keep their ids (their cancel keys).
 */
export const PROCESS_ID_HEADROOM = 0x100000;

/**
 * Hands a client over to the new process of a graceful restart (src/admin/handover.ts): its
 * session's state and its socket, which is no longer read here. Resolves false when the new
 * process cannot take it (the socket is then still this process's, to close).
 */
export type MovePgClient = (state: HandedPgState, socket: net.Socket) => Promise<boolean>;

export interface PgProxyDeps {
  config: PgConfig;
  topology: Topology;
  readRouter: ReadRouter;
  classifier: Classifier;
  stats: PgStats;
  log: Logger;
  tls: tls.SecureContext | null;
  /** statement-to-shard resolution and the 2PC coordinator, when postgres.sharding is set */
  sharding?: ShardingContext | null;
  /** TLS toward each node (sslmode other than disable) */
  backendTls?: ReadonlyMap<string, BackendTls>;
  /** the instance's buffer budget and record of clients cut off */
  guard?: ClientGuard;
  /**
   * A data-plane worker (src/workers/): its process ids are FIRST_PROCESS_ID + index, then
   * every `count`-th (from `firstProcessId` in a graceful restart's successor, past the ids of
   * the sessions handed over), and a CancelRequest for a session it does not hold goes to
   * `cancelElsewhere`.
   */
  worker?: {
    index: number;
    count: number;
    firstProcessId?: number;
    cancelElsewhere: (processId: number, secretKey: number) => void;
  };
  /** the native forwarding core (dataPlane native); absent: the JavaScript data plane */
  nativeCore?: NativeCore | null;
}

export class PgProxy implements SessionContext, ConnectionStatsSource {
  readonly kind = 'postgres';
  readonly classifier: Classifier;
  readonly topology: Topology;
  readonly readRouter: ReadRouter;
  readonly stats: PgStats;
  readonly retryReads: boolean;
  readonly maxBatchBytes: number;
  readonly consistency: ConsistencyLevel;
  readonly causalWaitMs: number;
  readonly failoverBufferMs: number;
  readonly replay: ReplayPositions;
  readonly sharding: ShardingContext | null;
  readonly guard: ClientGuard;
  readonly nativeCore: NativeCore | null;
  readonly dataPlane: 'native' | 'js';
  private readonly server: net.Server;
  private readonly sessions = new Map<number, ClientSession>();
  private readonly sockets = new Set<net.Socket>();
  private readonly pools = new Map<string, BackendPool>();
  private readonly verifiers = new Map<string, ScramVerifier>();
  /** postgres.auth.authQuery: the verifiers of users not in postgres.auth.users */
  private readonly authQuery: AuthQuery | null;
  /**
   * SCRAM pass-through: per user rwsplit has no password for, the keys its latest client
   * proved; new server connections of that user log in with them.
   */
  private readonly clientKeys = new Map<string, ScramKeys>();
  /** ParameterStatus frames per login, replayed to each client at login */
  private readonly serverParams = new Map<string, Buffer[]>();
  private reaper: NodeJS.Timeout | null = null;
  /** null unless postgres.pool.idleInTransactionTimeoutMs is set */
  private readonly idleTransactions: IdleTransactionWatch | null;
  /** the Unix-socket listener (listen.postgres.socketDir), if any */
  private unix: { server: net.Server; file: string } | null = null;
  private nextProcessId = FIRST_PROCESS_ID;
  private readonly processIdStep: number = 1;
  /** while a graceful restart drains: closes a session if it is at a transaction boundary */
  private draining: ((session: ClientSession) => void) | null = null;
  /** set once a graceful restart handed the listening sockets over: the socket file is the new process's */
  private handedOver = false;
  /** each session's client connection and login, for a graceful restart to hand it over */
  private readonly clients = new WeakMap<ClientSession, { client: ClientConnection; login: ClientLogin }>();
  /** sessions on their way to the new process of a graceful restart */
  private readonly moving = new WeakSet<ClientSession>();

  constructor(private readonly deps: PgProxyDeps) {
    this.classifier = deps.classifier;
    this.topology = deps.topology;
    this.readRouter = deps.readRouter;
    this.stats = deps.stats;
    this.retryReads = deps.config.routing.retryReads;
    this.maxBatchBytes = deps.config.limits.maxBatchBytes;
    this.consistency = deps.config.routing.consistency;
    this.causalWaitMs = deps.config.routing.causalWaitMs;
    this.failoverBufferMs = deps.config.failover.bufferMs;
    this.replay = new ReplayPositions(deps.topology);
    this.sharding = deps.sharding ?? null;
    this.guard = deps.guard ?? new ClientGuard(0);
    if (deps.worker) {
      this.nextProcessId = deps.worker.firstProcessId ?? FIRST_PROCESS_ID + deps.worker.index;
      this.processIdStep = deps.worker.count;
    }
    this.nativeCore = deps.nativeCore ?? null;
    this.dataPlane = this.nativeCore ? 'native' : 'js';
    for (const u of deps.config.auth.users) {
      this.verifiers.set(
        u.name,
        u.password.startsWith('SCRAM-SHA-256$')
          ? parseScramVerifier(u.password)
          : makeScramVerifier(u.password),
      );
    }
    const authQuery = deps.config.auth.authQuery;
    this.authQuery = authQuery ? new AuthQuery(authQuery, this, deps.config.monitor.database) : null;
    const idleMs = deps.config.pool.idleInTransactionTimeoutMs;
    this.idleTransactions =
      idleMs > 0 ? new IdleTransactionWatch(idleMs, () => this.sessions.values()) : null;
    this.server = net.createServer({ noDelay: true }, (socket) => this.accept(socket));
    deps.topology.on('event', (e: TopologyEvent) => {
      if (e.type === 'down') {
        for (const session of this.sessions.values()) session.nodeDown(e.node);
      } else if (e.type === 'fenced') {
        // Nothing may reach a fenced node again, not even a transaction already running there.
        for (const session of this.sessions.values()) session.nodeFenced(e.node, e.detail);
      } else if (e.type !== 'role-change') {
        return;
      }
      // Pooled connections to a node that died, was fenced or changed role are not worth keeping.
      for (const pool of this.pools.values()) if (pool.target.nodeId === e.node) pool.dropIdle();
    });
  }

  get clientCount(): number {
    return this.sockets.size;
  }

  /** Backend connection counts per node, for metrics and the admin API. */
  poolStats(): Map<string, { idle: number; active: number; waiting: number }> {
    const out = new Map<string, { idle: number; active: number; waiting: number }>();
    for (const pool of this.pools.values()) {
      const s = pool.stats;
      const cur = out.get(pool.target.nodeId) ?? { idle: 0, active: 0, waiting: 0 };
      cur.idle += s.idle;
      cur.active += s.active;
      cur.waiting += s.waiting;
      out.set(pool.target.nodeId, cur);
    }
    return out;
  }

  /** `inherited`: the listening socket a graceful restart handed over (used when on `port`). */
  async listen(host: string, port: number, inherited?: net.Server): Promise<net.AddressInfo> {
    const address = await listenServer(this.server, host, port, inherited);
    this.reaper = setInterval(() => {
      const now = Date.now();
      for (const pool of this.pools.values()) pool.reapIdle(now);
    }, 10_000);
    this.reaper.unref();
    this.idleTransactions?.start();
    return address;
  }

  /** The listening socket, for a graceful restart to hand over. */
  get listener(): net.Server {
    return this.server;
  }

  /**
   * Graceful restart, after the new process took over the listening socket: stop accepting,
   * and let each session reach its next transaction boundary with nothing pending (idle ones
   * are there at once). There it is handed over to the new process with its state (`move`),
   * so the client keeps its connection and its session; one that cannot move
   * (session-handover.ts), or every one without `move`, is closed instead with FATAL 57P01,
   * which drivers and pools take as "reconnect". Resolves once every client is gone (and every
   * handover is on its way); after `timeoutMs`, those left (a transaction still open) are
   * closed anyway.
   * @returns how many sessions were handed over, closed at a boundary, and closed at the timeout
   */
  async drain(timeoutMs: number, move?: MovePgClient): Promise<DrainTally> {
    this.handedOver = true;
    this.server.close();
    this.unix?.server.close();
    const closed: DrainTally = { handedOver: 0, atBoundary: 0, atTimeout: 0 };
    const moves: Promise<void>[] = [];
    const started = Date.now();
    this.draining = (session) => {
      if (!session.drainable() || this.moving.has(session)) return;
      if (move && tallyHandover(this.handOver(session, move), closed, moves)) return;
      // A client that has just logged in is sending its first request (pgbench -C, a pool
      // filling up): closing it now would fail that request. It is closed after it, or when
      // it has sent nothing for a while.
      if (
        session.clientFrames === 0 &&
        Date.now() - Math.max(started, session.openedAt) < FRESH_SESSION_GRACE_MS
      )
        return;
      closed.atBoundary++;
      const socket = this.clients.get(session)?.client.socket;
      if (socket) closeForRestart(session, socket);
      else session.fatal(restartingError());
    };
    // Sessions call back when they may have reached a boundary (ClientSession.onBoundary); the
    // sweep catches the rest (a proxy-made answer, an error after a wait).
    const check = this.draining;
    for (const session of this.sessions.values()) {
      session.onBoundary = () => queueMicrotask(() => check(session));
      check(session);
    }
    const deadline = Date.now() + timeoutMs;
    while (this.sockets.size > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
      for (const session of this.sessions.values()) check(session);
    }
    closed.atTimeout = this.sessions.size;
    await Promise.all(moves);
    return closed;
  }

  /**
   * Hands one session at a transaction boundary over (see drain): `stays` when it cannot move,
   * `later` when it is not quite at a boundary yet (part of a message read, an answer not yet
   * flushed to the kernel), else the handover under way (false: it did not happen and the
   * client was closed; it had nothing in flight).
   */
  private handOver(session: ClientSession, move: MovePgClient): Handover {
    const entry = this.clients.get(session);
    const state = session.handoverState();
    if (!entry || !state) return 'stays';
    const { client, login } = entry;
    const socket = client.socket;
    // TLS: the encryption state lives in this process and cannot go with the socket.
    if ((socket as Partial<tls.TLSSocket>).encrypted) return 'stays';
    if (client.bufferedBytes > 0 || socket.readableLength > 0 || socket.writableLength > 0) return 'later';
    const handle = (socket as unknown as { _handle?: { readStop?: () => number } | null })._handle;
    if (!handle?.readStop || socket.destroyed) return 'stays';
    // From here on the client's bytes stay in the kernel until the new process reads them.
    handle.readStop();
    client.detach();
    this.moving.add(session);
    return (async () => {
      let pinnedSettings: [string, string][] | null = null;
      const conn = session.currentBackend;
      if (session.pinnedBy !== null && conn) {
        // Reading stopped, so nothing else uses the server meanwhile.
        pinnedSettings = await inspectPinned(conn).catch(() => null);
        if (pinnedSettings === null || session.closed || session.txStatus !== TX_IDLE) {
          // State that does not move: closed at this boundary as without a handover.
          closeForRestart(session, socket);
          return false;
        }
      }
      const handed: HandedPgState = {
        ...state,
        processId: session.processId,
        secretKey: session.secretKey,
        user: login.user,
        database: login.database,
        params: login.params,
        scramKeys: encodeKeys(
          login.scramKeys ? (this.clientKeys.get(login.user) ?? login.scramKeys) : undefined,
        ),
        pinnedSettings,
      };
      // The session ends here without a word to the client (a pinned server is dropped).
      session.onClientClose();
      const ok = await move(handed, socket);
      // A socket sent away is not closed here (no 'close' event): it is no longer this process's.
      this.sockets.delete(socket);
      if (!ok) socket.destroy();
      return ok;
    })();
  }

  /**
   * Graceful restart, new process: where the old process's process ids (cancel keys) end, so
   * this one's do not meet those of the sessions it will adopt (see PROCESS_ID_HEADROOM).
   */
  get processIdsAfterHandover(): number {
    return this.nextProcessId + PROCESS_ID_HEADROOM;
  }

  /** Graceful restart, new process: hands out process ids from `next` (processIdsAfterHandover there). */
  continueProcessIds(next: number): void {
    if (this.deps.worker || !Number.isSafeInteger(next) || next < FIRST_PROCESS_ID) return;
    this.nextProcessId = next;
  }

  /**
   * Graceful restart, new process: a client the old process handed over at a transaction
   * boundary (see drain), with its session's state. It carries on without logging in again,
   * with the same cancel key; a pinned session first gets a server with its settings. A client
   * that cannot be taken (its process id in use, no primary for a pinned session) is closed
   * with FATAL 57P01, at a boundary: it reconnects.
   */
  adoptHanded(socket: net.Socket, st: HandedPgState): void {
    // Nothing is read until the session is ready; an error meanwhile only closes it.
    socket.on('error', () => socket.destroy());
    if (this.sessions.has(st.processId) || this.sockets.size >= this.deps.config.limits.maxClients) {
      socket.end(restartingError().toFatalFrame());
      return;
    }
    const scramKeys = decodeKeys(st.scramKeys);
    if (scramKeys && !this.clientKeys.has(st.user)) this.clientKeys.set(st.user, scramKeys);
    const login: ClientLogin = {
      user: st.user,
      database: st.database,
      params: st.params,
      ...(scramKeys ? { scramKeys } : {}),
    };
    const backendLogin = this.backendLogin(login);
    const session = new ClientSession(this, socket, backendLogin, st.processId, st.secretKey);
    session.adoptHandedState(st);
    const client = new ClientConnection(this, socket, this.deps);
    this.clients.set(session, { client, login });
    this.track(socket);
    const ready = (): void => {
      if (socket.destroyed) {
        session.onClientClose();
        return;
      }
      // Registered only now: a drain must not take it before it reads its client.
      this.sessions.set(st.processId, session);
      this.guardSession(session, socket);
      const check = this.draining;
      if (check) session.onBoundary = () => queueMicrotask(() => check(session));
      client.adoptSession(session);
    };
    if (st.pinnedSettings === null) {
      ready();
      return;
    }
    void this.pinnedServer(backendLogin, st.pinnedSettings).then(
      (lease) => {
        session.attachLease(lease);
        ready();
      },
      (err: Error) => {
        this.deps.log.warn(
          { err: err.message },
          'graceful restart: a pinned session could not be set up again',
        );
        closeForRestart(session, socket);
      },
    );
  }

  /** A primary server connection with a handed-over pinned session's settings (adoptHanded). */
  private async pinnedServer(login: BackendLogin, settings: [string, string][]): Promise<Lease> {
    const node = this.topology.writablePrimary(DEFAULT_SHARD) ?? this.topology.primary(DEFAULT_SHARD);
    if (!node) throw new Error('no primary');
    const pool = this.pool(node, login);
    const conn = await pool.acquire();
    try {
      await replaySettings(conn, settings);
    } catch (err) {
      pool.discard(conn, 'settings of a handed-over session refused');
      throw err;
    }
    return { conn, pool, node, txStatus: TX_IDLE };
  }

  /**
   * Also listens on the Unix socket `<dir>/.s.PGSQL.<port>` (listen.postgres.socketDir): the
   * same sessions as over TCP. Returns the socket's path. `inherited`: that socket, handed
   * over by a graceful restart (the file stays; the old process still holds it).
   */
  async listenUnix(dir: string, port: number, inherited?: net.Server): Promise<string> {
    const file = pgSocketPath(dir, port);
    const accepting = net.createServer((socket) => this.accept(socket));
    if (inherited) {
      this.unix = { server: await listenPath(accepting, file, inherited), file };
      return file;
    }
    await prepareSocketPath(file);
    // Bound elsewhere, then moved: see bindPathFor (the old process of a graceful restart
    // would otherwise remove the file its successor serves on).
    const temp = bindPathFor(file);
    if (temp) await removeSocketFile(temp);
    const server = await listenPath(accepting, temp ?? file);
    if (temp) await moveSocketFile(temp, file);
    this.unix = { server, file };
    return file;
  }

  /** The Unix-socket listener, if any, for a graceful restart to hand over. */
  get unixListener(): net.Server | null {
    return this.unix?.server ?? null;
  }

  async close(): Promise<void> {
    if (this.reaper) clearInterval(this.reaper);
    this.idleTransactions?.stop();
    const unix = this.unix;
    this.unix = null;
    const unixClosed = unix
      ? new Promise<void>((resolve) => unix.server.close(() => resolve())).then(() =>
          // After a handover the file is the new process's socket.
          this.handedOver ? undefined : removeSocketFile(unix.file),
        )
      : Promise.resolve();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    const bye = new RwsplitPgError(
      'SHUTDOWN',
      SqlState.AdminShutdown,
      'rwsplit is shutting down',
    ).toFatalFrame();
    for (const s of this.sockets) s.end(bye);
    for (const pool of this.pools.values()) pool.close();
    setTimeout(() => {
      for (const s of this.sockets) s.destroy();
    }, 1000).unref();
    await Promise.all([closed, unixClosed]);
  }

  // ---- SessionContext ------------------------------------------------------------------

  pool(node: NodeStatus, login: BackendLogin): BackendPool {
    const key = `${node.spec.id}\0${loginKey(login)}`;
    let pool = this.pools.get(key);
    if (!pool) {
      const { pool: p, limits } = this.deps.config;
      const tls = this.deps.backendTls?.get(node.spec.id);
      pool = new BackendPool(
        { nodeId: node.spec.id, host: node.spec.host, port: node.spec.port, ...(tls ? { tls } : {}) },
        login,
        // Servers are trusted and a DataRow may legitimately be large: their frames are bounded
        // by PostgreSQL's own limit (1 GiB, MaxAllocSize), not by the client limit.
        { ...p, maxFrameBytes: Math.max(limits.maxFrameBytes, SERVER_MAX_FRAME_BYTES) },
        { onNodeFailure: (id, reason) => this.nodeFailed(id, reason) },
      );
      this.pools.set(key, pool);
    }
    return pool;
  }

  nodeFailed(nodeId: string, reason: string): void {
    this.deps.log.warn({ node: nodeId, reason }, 'node failed on the data path; out of rotation');
    this.topology.markDown(nodeId, reason);
  }

  sessionClosed(processId: number): void {
    this.sessions.delete(processId);
  }

  signalTarget(pid: number): SignalTarget | null {
    if (pid >= FIRST_PROCESS_ID) {
      const session = this.sessions.get(pid);
      return session ? { kind: 'session', session } : null;
    }
    for (const pool of this.pools.values()) {
      for (const conn of pool.connections) {
        if (conn.processId !== pid) continue;
        const node = this.topology.nodes.find((n) => n.spec.id === pool.target.nodeId);
        if (node) return { kind: 'backend', conn, node };
      }
    }
    return null;
  }

  // ---- connections -----------------------------------------------------------------------

  private accept(raw: net.Socket): void {
    if (this.sockets.size >= this.deps.config.limits.maxClients) {
      raw.end(
        new RwsplitPgError(
          'TOO_MANY_CLIENTS',
          SqlState.TooManyConnections,
          `sorry, too many clients already (postgres.limits.maxClients = ${this.deps.config.limits.maxClients})`,
        ).toFatalFrame(),
      );
      return;
    }
    new ClientConnection(this, raw, this.deps).start();
  }

  /** Registers a socket so shutdown can reach it. */
  track(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
  }

  /** A listed user's verifier, else (postgres.auth.authQuery) the one the primary has now. */
  verifier(user: string, database: string): ScramVerifier | null | Promise<ScramVerifier | null> {
    const listed = this.verifiers.get(user);
    if (listed) return listed;
    return this.authQuery ? this.authQuery.verifier(user, database) : null;
  }

  /** A client socket accepted elsewhere (a data-plane worker's controller passed it on). */
  adopt(socket: net.Socket): void {
    this.accept(socket);
  }

  cancel(processId: number, secretKey: number): void {
    const session = this.sessions.get(processId);
    if (!session && this.deps.worker) {
      this.deps.worker.cancelElsewhere(processId, secretKey);
      return;
    }
    const conn = session?.currentBackend;
    if (!session || session.secretKey !== secretKey || !conn) return;
    // Cancel goes to the server that runs the query, with that server's own key.
    const s = net.connect({ host: conn.target.host, port: conn.target.port }, () =>
      s.end(encodeCancelRequest(conn.processId, conn.secretKey)),
    );
    s.on('error', () => s.destroy());
  }

  /** Opens the session after login: server parameters, our cancel key, ReadyForQuery. */
  async openSession(
    client: ClientConnection,
    login: ClientLogin,
  ): Promise<ClientSession | ReplicationPassthrough> {
    if (login.scramKeys) this.clientKeys.set(login.user, login.scramKeys);
    const backendLogin = this.backendLogin(login);
    if (backendLogin.params['replication'] !== undefined && backendLogin.params['replication'] !== 'false')
      return this.openReplication(client, backendLogin);
    const params = await this.parameterFrames(backendLogin);
    const processId = this.nextProcessId & 0x7fffffff;
    this.nextProcessId += this.processIdStep;
    const secretKey = randomInt(0, 0x7fffffff);
    const session = new ClientSession(this, client.socket, backendLogin, processId, secretKey);
    this.sessions.set(processId, session);
    this.clients.set(session, { client, login });
    this.guardSession(session, client.socket);
    for (const f of params) client.write(f);
    client.write(encodeBackendKeyData(processId, secretKey));
    client.write(readyForQuery(0x49));
    const check = this.draining;
    // Logged in while the old process drains (accepted just before it stopped accepting): it
    // is closed at a boundary like the others, by the sweep or after its first request.
    if (check) session.onBoundary = () => queueMicrotask(() => check(session));
    return session;
  }

  /**
   * Puts a session under the buffer budget (its client socket's queue and its backend's), and
   * `postgres.limits.idleClientTimeoutMs`: a session with nothing in flight that stays silent is closed.
   */
  private guardSession(session: ClientSession, socket: net.Socket): void {
    const leave = this.guard.add({
      protocol: 'postgres',
      bufferedBytes: () => socket.writableLength + (session.currentBackend?.socket.writableLength ?? 0),
      cutOff: (message) => {
        const queued = socket.writableLength > 0;
        session.fatal(
          new RwsplitPgError(
            'OUT_OF_MEMORY',
            SqlState.OutOfMemory,
            message,
            'Read results as they come, or raise limits.maxBufferedBytes.',
            'FATAL',
          ),
        );
        // A client that does not read would never take the error: its queue must go now.
        if (queued) socket.destroy();
        else setTimeout(() => socket.destroy(), 1000).unref();
      },
    });
    socket.once('close', leave);
    const idleMs = this.deps.config.limits.idleClientTimeoutMs;
    if (idleMs > 0) {
      socket.setTimeout(idleMs, () => {
        if (session.currentBackend !== null && !session.backendIdle()) return;
        this.guard.killed({
          protocol: 'postgres',
          reason: 'idle-timeout',
          clientClass: 'session',
          detail: `session ${session.processId} was idle for ${idleMs} ms`,
        });
        session.fatal(
          new RwsplitPgError(
            'IDLE_TIMEOUT',
            SqlState.AdminShutdown,
            `terminating connection due to idle timeout (postgres.limits.idleClientTimeoutMs = ${idleMs})`,
            undefined,
            'FATAL',
          ),
        );
      });
    }
  }

  /** A replication connection: its own server connection to the primary, frames passed through. */
  private async openReplication(
    client: ClientConnection,
    login: BackendLogin,
  ): Promise<ReplicationPassthrough> {
    const node = this.topology.writablePrimary(DEFAULT_SHARD) ?? this.topology.primary(DEFAULT_SHARD);
    if (!node)
      throw new RwsplitPgError(
        'NO_PRIMARY',
        SqlState.CannotConnectNow,
        'no primary to take the replication connection',
        undefined,
        'FATAL',
      );
    const pool = this.pool(node, login);
    const conn = await pool.acquire();
    return new ReplicationPassthrough(client.socket, conn, (c) =>
      pool.discard(c, 'replication connection ended'),
    );
  }

  /**
   * Who a client's server connections log in as. A user rwsplit knows only by its verifier
   * (from the auth query, or listed with one) logs in as itself with its client's SCRAM keys;
   * an auth-query user always does, whatever postgres.backend says, since that is the point of
   * the auth query.
   */
  private backendLogin(login: ClientLogin): BackendLogin {
    const { backend, auth } = this.deps.config;
    const listed = auth.users.some((u) => u.name === login.user);
    const fromAuthQuery = auth.method === 'scram-sha-256' && !listed;
    const user = fromAuthQuery ? login.user : (backend.user ?? login.user);
    const configured = auth.users.find((u) => u.name === user)?.password;
    const password = fromAuthQuery
      ? undefined
      : (backend.password ??
        (configured && !configured.startsWith('SCRAM-SHA-256$') ? configured : undefined));
    const out: BackendLogin = { user, database: login.database, params: login.params };
    if (password !== undefined) out.password = password;
    else if (login.scramKeys && user === login.user) out.scramKeys = () => this.clientKeys.get(user);
    return out;
  }

  /** Server parameters for a login, learned once from a real backend connection. */
  private async parameterFrames(login: BackendLogin): Promise<Buffer[]> {
    const key = loginKey(login);
    const cached = this.serverParams.get(key);
    if (cached) return cached;
    const node = this.topology.primary() ?? this.topology.nodes.find((n) => n.reachable && !n.fenced);
    if (!node) {
      throw new RwsplitPgError(
        'NO_NODE',
        SqlState.CannotConnectNow,
        'no PostgreSQL node is reachable',
        'Check the servers listed in postgres.nodes; `rwsplit status` shows what rwsplit sees.',
        'FATAL',
      );
    }
    const pool = this.pool(node, login);
    const conn = await pool.acquire();
    pool.release(conn);
    this.serverParams.set(key, conn.parameterFrames);
    return conn.parameterFrames;
  }
}

/** What a client closed at a transaction boundary by a graceful restart is told. */
function restartingError(): RwsplitPgError {
  return new RwsplitPgError(
    'RESTARTING',
    SqlState.AdminShutdown,
    'terminating connection due to administrator command: rwsplit is restarting',
    'Reconnect: the new rwsplit process already accepts on this port. Nothing of this session was lost: it was between transactions.',
    'FATAL',
  );
}

/** Closes a session at a transaction boundary for a graceful restart (FATAL 57P01, see restartingError). */
function closeForRestart(session: ClientSession, socket: net.Socket): void {
  session.fatal(restartingError());
  // fatal() says nothing to a client already gone, but the session must end all the same.
  session.onClientClose();
  // A client that keeps its end open (or one no longer read: a handover that stopped) must
  // not hold the drain.
  setTimeout(() => socket.destroy(), 1000).unref();
}

function loginKey(login: BackendLogin): string {
  const params = Object.keys(login.params)
    .sort()
    .map((k) => `${k}=${login.params[k]}`)
    .join('\0');
  return `${login.user}\0${login.database}\0${params}`;
}

/** A client socket through startup into its session; owns the frame reader. */
class ClientConnection implements StartupHost {
  socket: net.Socket;
  private readonly reader: FrameReader;
  private session: ClientSession | ReplicationPassthrough | null = null;
  private readonly startup: ClientStartup;
  private readonly onData = (chunk: Buffer): void => this.push(chunk);
  private readonly onFrame = (type: number, frame: Buffer): void => {
    if (this.session) this.session.onClientFrame(type, frame);
    else this.startup.onFrame(type, frame);
  };

  constructor(
    private readonly proxy: PgProxy,
    raw: net.Socket,
    private readonly deps: PgProxyDeps,
  ) {
    this.socket = raw;
    this.reader = new FrameReader({ maxFrameBytes: deps.config.limits.maxFrameBytes, startup: true });
    this.startup = new ClientStartup(this, {
      authMethod: deps.config.auth.method,
      verifier: (u, db) => proxy.verifier(u, db),
      tls: deps.tls,
      cancel: (pid, key) => proxy.cancel(pid, key),
    });
  }

  start(): void {
    this.proxy.track(this.socket);
    this.bind(this.socket);
    this.watchLogin();
  }

  /**
   * `postgres.limits.loginTimeoutMs` (PostgreSQL's authentication_timeout): startup and
   * authentication must finish in time, else the socket is closed, so silent connections
   * cannot hold the `maxClients` slots.
   */
  private watchLogin(): void {
    const ms = this.deps.config.limits.loginTimeoutMs;
    const timer = setTimeout(() => {
      if (this.session || this.socket.destroyed) return;
      this.proxy.guard.killed({
        protocol: 'postgres',
        reason: 'login-timeout',
        clientClass: 'login',
        detail: `a client did not finish startup and authentication within ${ms} ms`,
      });
      this.reader.pause();
      this.reject(
        new RwsplitPgError(
          'LOGIN_TIMEOUT',
          SqlState.ProtocolViolation,
          `startup and authentication did not finish within postgres.limits.loginTimeoutMs (${ms} ms)`,
          undefined,
          'FATAL',
        ),
      );
      setTimeout(() => this.socket.destroy(), 1000).unref();
    }, ms);
    timer.unref();
    this.socket.once('close', () => clearTimeout(timer));
  }

  private bind(socket: net.Socket): void {
    socket.on('data', this.onData);
    socket.on('error', () => socket.destroy());
    socket.on('close', () => this.session?.onClientClose());
  }

  private push(chunk: Buffer): void {
    try {
      this.reader.push(chunk, this.onFrame);
      this.session?.onClientChunkEnd();
    } catch (err) {
      this.protocolFailure(err as Error);
    }
  }

  /** A malformed or oversized frame: tell this client why, close it, nobody else notices. */
  private protocolFailure(err: Error): void {
    if (!this.session && this.reader.startup && closesSilently(err)) {
      this.deps.log.debug({ err: err.message }, 'invalid length of startup packet: closing quietly');
      this.reader.pause();
      this.closeQuietly();
      return;
    }
    const message =
      err instanceof FrameTooLargeError
        ? `message of ${err.length} bytes exceeds the limit of ${err.max} bytes`
        : err instanceof ProtocolError
          ? `invalid message: ${err.message}`
          : `internal error: ${err.message}`;
    const hint =
      err instanceof FrameTooLargeError
        ? 'Raise postgres.limits.maxFrameBytes if such messages are legitimate.'
        : undefined;
    this.deps.log.info({ err: err.message }, 'closing a client after a protocol error');
    const e = new RwsplitPgError('PROTOCOL_VIOLATION', SqlState.ProtocolViolation, message, hint, 'FATAL');
    this.reader.pause();
    if (this.session) this.session.fatal(e);
    else this.reject(e);
  }

  write(buf: Buffer): void {
    this.socket.write(buf);
  }

  /** Bytes read from the client that are not a whole message yet. */
  get bufferedBytes(): number {
    return this.reader.bufferedBytes;
  }

  /**
   * A graceful restart hands this client over: nothing is read here any more (the caller
   * stopped reading the socket), and an error on the way must not crash this process.
   */
  detach(): void {
    this.socket.off('data', this.onData);
    this.socket.setTimeout(0);
    this.socket.on('error', () => undefined);
  }

  /** A client handed over by the old process of a graceful restart: its session goes on here. */
  adoptSession(session: ClientSession): void {
    this.reader.startup = false;
    this.session = session;
    this.bind(this.socket);
  }

  upgrade(secure: tls.TLSSocket): void {
    this.socket.off('data', this.onData);
    this.socket = secure;
    this.proxy.track(secure);
    this.bind(secure);
  }

  typedFramesFollow(): void {
    this.reader.startup = false;
  }

  authenticated(login: ClientLogin): void {
    this.reader.pause();
    this.proxy.openSession(this, login).then(
      (session) => {
        this.session = session;
        if (session instanceof ClientSession) {
          const reader = this.reader;
          session.setClientInput({
            maxFrameBytes: this.deps.config.limits.maxFrameBytes,
            get bufferedBytes() {
              return reader.bufferedBytes;
            },
            feed: (bytes) => this.push(bytes),
          });
        }
        if (this.socket.destroyed) {
          session.onClientClose();
          return;
        }
        try {
          this.reader.resume(); // frames that arrived during login
        } catch (err) {
          this.protocolFailure(err as Error);
        }
      },
      (err: Error) => this.reject(loginError(err)),
    );
  }

  reject(err: RwsplitPgError | Buffer): void {
    this.socket.end(Buffer.isBuffer(err) ? err : err.toFatalFrame());
  }

  closeQuietly(): void {
    this.socket.end();
  }
}

/** The backend's own ErrorResponse when it refused the login, else ours. */
function loginError(err: Error): RwsplitPgError | Buffer {
  if (err instanceof BackendStartupError && err.frame) return err.frame;
  if (err instanceof RwsplitPgError) return err;
  return new RwsplitPgError(
    'BACKEND_UNAVAILABLE',
    SqlState.CannotConnectNow,
    `rwsplit cannot open a server connection: ${err.message}`,
    undefined,
    'FATAL',
  );
}
