/**
 * The Redis side of rwsplit: a TCP server speaking RESP2/RESP3, one session per client, the
 * shards with their links, and the command table learned from the servers.
 */
import { tallyHandover, type DrainTally, type Handover } from '../util/drain-tally.js';
import net from 'node:net';
import type { Logger } from 'pino';
import type { ConnectionStatsSource } from '../core/cluster-view.js';
import { ClientGuard } from '../core/client-guard.js';
import type { ReadRouter } from '../core/read-router.js';
import type { Topology } from '../core/topology.js';
import type { RedisConfig } from '../config/schema.js';
import { RedisLink, type LinkOptions } from './backend/backend-link.js';
import { CommandTable } from './routing/command-table.js';
import { PositionBook } from './routing/position-book.js';
import { ReadGate } from './session/read-gate.js';
import { ReadPlanner } from './routing/read-planner.js';
import { RedisSession } from './session/client-session.js';
import type { RedisSessionContext } from './session/session-context.js';
import { loginTimeoutError, maxClientsError, protocolViolationError } from './errors.js';
import { CommandReader, encodeCommand, RespError, RespTooLargeError } from './resp/index.js';
import type { CommandView } from './resp/index.js';
import type { ShardSet } from './sharding/shards.js';
import { shardRouting } from './sharding/shard-routing.js';
import { WritePath } from './routing/write-path.js';
import type { StreamReadGate } from '../stream/stream-reads.js';
import { listenServer } from '../util/listen.js';
import { handoverState, restoreState, type HandedRedisState } from './session/session-handover.js';

/**
 * Draining: a connection between replies is closed right after its last reply was written (a
 * client that waits for each reply sends nothing more before it reads that reply and the close
 * with it), or once it has sent nothing for this long (an idle one, one just connected). Closed
 * at any other moment, it may have a command on the way, which is then never read: not run,
 * but failed or left unanswered by clients that do not resend.
 */
const QUIET_BEFORE_CLOSE_MS = 1000;

/**
 * Hands a client over to the new process of a graceful restart (src/admin/handover.ts): its
 * socket, no longer read here, and its session's state. Resolves false when that failed (the
 * socket is still this process's).
 */
export type MoveClient = (state: HandedRedisState, socket: net.Socket) => Promise<boolean>;

/** What the proxy keeps per connection besides its session: how to stop serving it here. */
interface Connection {
  reader: CommandReader;
  /** removes this process's listeners and accounting from the socket (it is handed over) */
  detach(): void;
}

export interface RedisStats {
  routed(nodeId: string, read: boolean): void;
  retried(nodeId: string): void;
}

export class RedisProxy implements ConnectionStatsSource {
  readonly kind = 'redis';
  readonly shards: ShardSet;
  /** set by the change streams (src/stream/) once they run */
  streamReads: StreamReadGate | null = null;
  /** replication positions per node (monitor probes and on-demand checks) */
  readonly book: PositionBook;
  private readonly planner: ReadPlanner;
  private readonly writes: WritePath;
  private readonly server: net.Server;
  private readonly sessions = new Map<number, RedisSession>();
  private readonly sockets = new Set<net.Socket>();
  private nextId = 1;
  /** while a graceful restart drains: closes a connection if it is between replies */
  private draining: ((session: RedisSession, afterReply: boolean) => void) | null = null;
  /** while draining: when each connection last sent a command (or connected, or the drain began) */
  private readonly lastCommandAt = new WeakMap<RedisSession, number>();
  private readonly connections = new WeakMap<RedisSession, Connection>();
  private table: CommandTable | null = null;
  private version = '7.0.0';
  private databases = 16;

  constructor(
    private readonly config: RedisConfig,
    topologies: { topology: Topology; readRouter: ReadRouter }[],
    private readonly stats: RedisStats,
    private readonly log: Logger,
    /** the instance's buffer budget and record of clients cut off */
    readonly guard: ClientGuard = new ClientGuard(0),
  ) {
    const routing = shardRouting(config, topologies, () => this.linkOptions());
    this.shards = routing.shards;
    this.book = routing.book;
    this.planner = routing.planner;
    this.writes = routing.writes;
    this.server = net.createServer({ noDelay: true }, (socket) => this.accept(socket));
  }

  get clientCount(): number {
    return this.sockets.size;
  }

  poolStats(): Map<string, { idle: number; active: number; waiting: number }> {
    return this.shards.stats();
  }

  /** Learns the command table and server version from the first primary that answers. */
  async prepare(): Promise<void> {
    let lastError: Error | null = null;
    for (const shard of this.shards.shards) {
      const node = shard.topology.primary() ?? shard.topology.nodes[0];
      if (!node) continue;
      try {
        const link = await RedisLink.connect(
          { nodeId: node.spec.id, host: node.spec.host, port: node.spec.port },
          { ...this.linkOptions(), resp3: false },
        );
        const ask = (args: string[]): Promise<Buffer> =>
          new Promise((resolve, reject) =>
            link.send(encodeCommand(args), (r) => (r ? resolve(r) : reject(new Error('connection lost')))),
          );
        this.table = CommandTable.fromReply(await ask(['COMMAND']));
        const info = (await ask(['INFO', 'server'])).toString();
        this.version = /redis_version:([^\r\n]+)/.exec(info)?.[1] ?? this.version;
        // How many databases SELECT may choose (one shard); CONFIG may be renamed or denied.
        const dbs = /\r\n\$\d+\r\n(\d+)\r\n/.exec((await ask(['CONFIG', 'GET', 'databases'])).toString());
        if (dbs) this.databases = Number(dbs[1]);
        link.destroy('done');
        return;
      } catch (err) {
        lastError = err as Error;
      }
    }
    throw new Error(`cannot learn Redis commands from any shard primary: ${lastError?.message ?? 'no node'}`);
  }

  /** `inherited`: the listening socket a graceful restart handed over (used when on `port`). */
  listen(host: string, port: number, inherited?: net.Server): Promise<net.AddressInfo> {
    return listenServer(this.server, host, port, inherited);
  }

  /** The listening socket, for a graceful restart to hand over. */
  get listener(): net.Server {
    return this.server;
  }

  /**
   * Graceful restart, after the new process took over the listening socket: stop accepting and
   * let each connection reach a reply boundary (RedisSession.drainable: every command read was
   * answered). There it is handed over to the new process with its state (`move`), so it keeps
   * its connection and nothing it sends is lost; one whose state cannot move (session-handover.ts),
   * or every one without `move`, is closed instead: right after a reply, or once it has been
   * quiet for a second (QUIET_BEFORE_CLOSE_MS).
   * Resolves once every client is gone (and every handover is on its way); after `timeoutMs`
   * (a blocking command, a MULTI left open), those left are closed anyway.
   * @returns how many connections were handed over, closed between replies, and closed at the timeout
   */
  async drain(timeoutMs: number, move?: MoveClient): Promise<DrainTally> {
    this.server.close();
    const closed: DrainTally = { handedOver: 0, atBoundary: 0, atTimeout: 0 };
    const moves: Promise<void>[] = [];
    /** `afterReply`: its last reply was just written (see QUIET_BEFORE_CLOSE_MS) */
    const check = (session: RedisSession, afterReply: boolean): void => {
      if (!session.drainable) return;
      if (move && tallyHandover(this.handOver(session, move), closed, moves)) return;
      if (!afterReply && Date.now() - (this.lastCommandAt.get(session) ?? 0) < QUIET_BEFORE_CLOSE_MS) return;
      closed.atBoundary++;
      session.socket.end();
      session.onClose();
    };
    this.draining = check;
    const started = Date.now();
    for (const session of this.sessions.values()) {
      this.lastCommandAt.set(session, started);
      session.slots.onIdle = () => queueMicrotask(() => check(session, true));
      check(session, false);
    }
    const deadline = Date.now() + timeoutMs;
    while (this.sockets.size > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
      for (const session of this.sessions.values()) check(session, false);
    }
    closed.atTimeout = this.sessions.size;
    await Promise.all(moves);
    return closed;
  }

  /**
   * Hands one client at a reply boundary over (see drain): `stays` when its state cannot move,
   * `later` when it is not quite at a boundary yet (part of a command read, a reply not yet
   * flushed to the kernel), else the handover under way (false: it failed and the client was
   * closed; it had nothing in flight).
   */
  private handOver(session: RedisSession, move: MoveClient): Handover {
    const conn = this.connections.get(session);
    const state = handoverState(
      session,
      this.shards.shards.map((s) => s.name),
    );
    if (!conn || !state) return 'stays';
    const socket = session.socket;
    // Bytes read but not yet a whole command, or replies still in this process's buffers,
    // would be lost with the socket: the next check (after the reply, or the sweep) retries.
    if (conn.reader.bufferedBytes > 0 || socket.readableLength > 0 || socket.writableLength > 0)
      return 'later';
    const handle = (socket as unknown as { _handle?: { readStop?: () => number } | null })._handle;
    if (!handle?.readStop || socket.destroyed) return 'stays';
    // From here on the client's bytes stay in the kernel until the new process reads them.
    handle.readStop();
    conn.detach();
    session.onClose();
    return move(state, socket).then((ok) => {
      if (!ok) socket.destroy();
      return ok;
    });
  }

  /**
   * New process of a graceful restart: a client the old process handed over (see drain), with
   * the state its session had there.
   */
  adopt(socket: net.Socket, state?: HandedRedisState): void {
    this.accept(socket, state);
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const s of this.sockets) s.destroy();
    this.shards.closeAll();
    this.book.close();
    await closed;
  }

  private linkOptions(): LinkOptions {
    const { backend, pool } = this.config;
    const out: LinkOptions = { resp3: false, connectTimeoutMs: pool.connectTimeoutMs };
    if (backend.password !== undefined) out.password = backend.password;
    if (backend.user !== undefined) out.user = backend.user;
    return out;
  }

  private accept(socket: net.Socket, handed?: HandedRedisState): void {
    if (this.sockets.size >= this.config.limits.maxClients) {
      socket.end(maxClientsError(this.config.limits.maxClients));
      return;
    }
    this.sockets.add(socket);
    const id = this.nextId++;
    const reader = new CommandReader({
      maxBulkBytes: this.config.limits.maxBulkBytes,
      maxArrayLength: this.config.limits.maxArrayLength,
    });
    const gate = new ReadGate(
      () => {
        reader.pause();
        socket.pause();
      },
      () => {
        if (session.isClosed) return;
        socket.resume();
        try {
          reader.resume(); // commands read before the pause
        } catch (err) {
          protocolError(err as Error);
        }
      },
    );
    const session = new RedisSession(this.context(), socket, id, gate);
    if (handed)
      restoreState(
        session,
        handed,
        this.shards.shards.map((s) => s.name),
        (k) => this.shards.shards[k]?.topology.primary() ?? null,
      );
    this.sessions.set(id, session);
    const check = this.draining;
    if (check) session.slots.onIdle = () => queueMicrotask(() => check(session, true));
    if (check) this.lastCommandAt.set(session, Date.now());
    const onCommand = (cmd: CommandView): void => {
      if (this.draining !== null) this.lastCommandAt.set(session, Date.now());
      session.onRead(cmd);
    };
    const protocolError = (err: Error): void => {
      // A malformed or oversized request: tell this client why and close it; nobody else notices.
      const message = err instanceof RespError ? redisProtocolText(err) : `internal error: ${err.message}`;
      this.log.info({ err: message }, 'closing a Redis client after a protocol error');
      session.slots.flushOut(); // the replies to the commands before it go first
      socket.end(protocolViolationError(message));
      session.onClose();
    };
    const leaveBudget = this.guard.add({
      protocol: 'redis',
      bufferedBytes: () => session.bufferedBytes(),
      cutOff: (message) => session.cutOff(message),
    });
    this.watchLogin(socket, session);
    const onData = (chunk: Buffer): void => {
      try {
        reader.read(chunk, onCommand);
      } catch (err) {
        protocolError(err as Error);
      }
    };
    const onError = (): void => {
      socket.destroy();
    };
    const onClose = (): void => {
      this.sockets.delete(socket);
      leaveBudget();
      session.onClose();
    };
    socket.on('data', onData);
    socket.on('error', onError);
    socket.on('close', onClose);
    this.connections.set(session, {
      reader,
      detach: () => {
        socket.off('data', onData);
        socket.off('error', onError);
        socket.off('close', onClose);
        socket.setTimeout(0);
        // Nothing is read or written here any more; an error on the way must not crash this process.
        socket.on('error', () => undefined);
        onClose();
      },
    });
  }

  /**
   * `redis.limits.loginTimeoutMs`: with AUTH required, a client must authenticate in time
   * (silent sockets must not hold `maxClients` slots). `idleClientTimeoutMs`: a client with
   * nothing in flight that stays silent is closed; subscribers and blocked clients are not idle.
   */
  private watchLogin(socket: net.Socket, session: RedisSession): void {
    const { loginTimeoutMs, idleClientTimeoutMs } = this.config.limits;
    if (!session.authenticated) {
      const timer = setTimeout(() => {
        if (session.authenticated || session.isClosed) return;
        this.guard.killed({
          protocol: 'redis',
          reason: 'login-timeout',
          clientClass: 'login',
          detail: `client ${session.id} did not authenticate within ${loginTimeoutMs} ms`,
        });
        socket.end(loginTimeoutError(loginTimeoutMs));
        setTimeout(() => socket.destroy(), 1000).unref();
        session.onClose();
      }, loginTimeoutMs);
      timer.unref();
      socket.once('close', () => clearTimeout(timer));
    }
    if (idleClientTimeoutMs > 0) {
      socket.setTimeout(idleClientTimeoutMs, () => {
        if (session.isClosed || session.outputClass() !== 'normal' || session.slots.pending > 0) return;
        this.guard.killed({
          protocol: 'redis',
          reason: 'idle-timeout',
          clientClass: 'normal',
          detail: `client ${session.id} was idle for ${idleClientTimeoutMs} ms`,
        });
        socket.destroy();
        session.onClose();
      });
    }
  }

  private context(): RedisSessionContext {
    const cfg = this.config;
    return {
      commands: this.table!,
      shards: this.shards,
      readFrom: cfg.readFrom,
      planner: this.planner,
      writes: this.writes,
      consistency: cfg.consistency,
      failover: { mode: cfg.failover.mode, bufferMs: cfg.failover.bufferMs, detectMs: cfg.failover.detectMs },
      authRequired:
        cfg.auth.mode === 'proxy' && (cfg.auth.password !== undefined || cfg.auth.users.length > 0),
      passthrough: cfg.auth.mode === 'passthrough',
      defaultPasswordSet: cfg.auth.password !== undefined || cfg.auth.users.some((u) => u.name === 'default'),
      databases: this.databases,
      clients: () => this.sessions.values(),
      checkPassword: (user, password) => {
        if (user === null || user === 'default') {
          if (cfg.auth.password !== undefined) return password === cfg.auth.password;
        }
        const u = cfg.auth.users.find((x) => x.name === (user ?? 'default'));
        return u !== undefined && u.password === password;
      },
      serverVersion: this.version,
      stats: this.stats,
      sessionClosed: (id) => this.sessions.delete(id),
      outputLimits: cfg.limits.clientOutputBufferLimit,
      guard: this.guard,
      streamReads: () => this.streamReads,
    };
  }
}

/**
 * Redis's own text for a length over a limit (`invalid bulk length`, `invalid multibulk
 * length`: what redis-server answers past proto-max-bulk-len), followed by the setting to raise.
 */
function redisProtocolText(err: RespError): string {
  if (!(err instanceof RespTooLargeError)) return err.message;
  if (err.setting === 'maxBulkBytes') return `invalid bulk length (${err.message})`;
  if (err.setting === 'maxArrayLength') return `invalid multibulk length (${err.message})`;
  return err.message;
}
