/**
 * One client connection after login: the query phase. Client frames are queued until a
 * point where the server must answer (Sync, Query, Flush, FunctionCall, a full batch);
 * the queue is then routed as one unit to a backend connection lent by a pool, translated
 * for that backend (statement names, re-Parse), and the backend's answers are streamed back
 * untouched except where the response tracker says otherwise. The connection goes back to
 * its pool as soon as the server is idle outside a transaction, unless session state pins it.
 */
import type net from 'node:net';
import { performance } from 'node:perf_hooks';
import { advanceToken } from '../core/causal.js';
import type { NodeStatus } from '../core/topology.js';
import type { BackendConnection, BackendListener, BackendLogin } from './backend-connection.js';
import type { BackendPool } from './backend-pool.js';
import { RwsplitPgError, SqlState } from './errors.js';
import { OutputCoalescer } from './output-coalescer.js';
import {
  BackendCode,
  decodeErrorFields,
  decodeQuery,
  encodeCommandComplete,
  encodeNoticeResponse,
  encodeQuery,
  FrontendCode,
  readyForQuery,
} from './protocol/index.js';
import { ResponseTracker, Verdict, type TrackerSink } from './response-tracker.js';
import { BatchTranslator } from './batch-translator.js';
import { classifyQuery, decideRoute, parseOf, type RouteDecision } from './route-decision.js';
import type { RouteReason, SessionContext } from './session-context.js';
import { ClientStatements } from './statement-registry.js';
import { awaitReplay, commitPosition } from './causal-gate.js';
import { readAllShards } from './all-shards-read.js';
import { InternalQueryError, internalQuery } from './internal-query.js';
import { chooseShard } from './shard-choice.js';
import type { Participant } from './twopc/index.js';
import {
  applySessionCommand,
  mayBeSessionCommand,
  parseSessionCommand,
  type SessionSettings,
} from './session-commands.js';

const TX_IDLE = 0x49; // 'I'
const TX_BLOCK = 0x54; // 'T'
const TX_FAILED = 0x45; // 'E'
/** the shard of an unsharded setup */
const SHARD = 'default';
const BEGIN = encodeQuery('BEGIN');

/** A backend holding this session's transaction on another shard, while it works on one. */
interface Participation {
  conn: BackendConnection;
  pool: BackendPool;
  node: NodeStatus;
  txStatus: number;
}

export class ClientSession implements BackendListener, TrackerSink {
  private backend: BackendConnection | null = null;
  private backendPool: BackendPool | null = null;
  private node: NodeStatus | null = null;
  /** client frames not yet sent to a backend */
  private batch: Buffer[] = [];
  private batchBytes = 0;
  /** transaction status of the leased backend, from its last ReadyForQuery */
  private txStatus = TX_IDLE;
  /** reason the session is pinned to its backend (session state), or null */
  private pinnedBy: string | null = null;
  /** a lone BEGIN answered by the proxy and not yet sent (see tryDeferBegin) */
  private deferredBegin: Buffer | null = null;
  private acquiring = false;
  /** frames of the batch the last routing decision covered (more may queue while acquiring) */
  private routedCount = 0;
  /** the side of the split the current backend was chosen for (metrics) */
  private routedAs: 'read' | 'write' = 'read';
  /** a batch that needs the primary waits for the current (replica) backend to go idle */
  private waitingForIdle = false;
  /** an autocommit read that can still be retried elsewhere: nothing reached the client yet */
  private retryable: { frames: Buffer[]; failed: Set<string> } | null = null;
  private readonly dispatchTimes: number[] = [];
  /** consistency level, causal token, shard key: rwsplit's own settings (SET rwsplit.…) */
  private readonly settings: SessionSettings;
  /** a batch routed as a write ran on the current lease: take the commit position before release */
  private wroteOnLease = false;
  /** the last commit position could not be read: reads go to the primary until the next one */
  private tokenUnknown = false;
  /** the proxy runs its own statement on the leased backend (causal token work): hold the client's */
  private gated = false;
  /** a COMMIT was sent and not yet answered (its outcome is unknown if the server dies now) */
  private commitInFlight = false;
  /**
   * The server running this session's transaction was lost (failover): the client is told, the
   * transaction is over, and until it sends ROLLBACK/COMMIT every statement fails as in an
   * aborted transaction. Holds the error the next statement gets.
   */
  private abortedTx: RwsplitPgError | null = null;
  /** the shard the batch being routed belongs to (sharded PostgreSQL), else 'default' */
  private shard = SHARD;
  /** the transaction's backends on other shards (a transaction that spans shards) */
  private readonly parked = new Map<string, Participation>();
  /** the BEGIN that opened the transaction, replayed on each shard it reaches */
  private beginFrame: Buffer = BEGIN;
  /** this session's pool per node id (the login is fixed for the session's life) */
  private readonly pools = new Map<string, BackendPool>();
  private readonly tracker = new ResponseTracker(this);
  private readonly statements = new ClientStatements();
  private readonly translator: BatchTranslator;
  private readonly out: OutputCoalescer;
  private closed = false;

  constructor(
    private readonly ctx: SessionContext,
    private readonly socket: net.Socket,
    private readonly login: BackendLogin,
    readonly processId: number,
    readonly secretKey: number,
  ) {
    this.out = new OutputCoalescer(socket);
    this.settings = {
      consistency: ctx.consistency,
      defaultConsistency: ctx.consistency,
      token: new Map(),
      shardKey: null,
    };
    this.translator = new BatchTranslator(ctx.classifier, this.statements, this.tracker);
  }

  /** The backend currently running this session's work (for CancelRequest). */
  get currentBackend(): BackendConnection | null {
    return this.backend;
  }

  // ---- client side -------------------------------------------------------------------

  onClientFrame(type: number, frame: Buffer): void {
    if (this.closed) return;
    switch (type) {
      case FrontendCode.Terminate:
        this.close();
        return;
      case FrontendCode.Query:
      case FrontendCode.Sync:
      case FrontendCode.Flush:
      case FrontendCode.FunctionCall:
      case FrontendCode.CopyData:
      case FrontendCode.CopyDone:
      case FrontendCode.CopyFail:
        this.queue(frame);
        this.dispatch();
        return;
      case FrontendCode.Parse:
      case FrontendCode.Bind:
      case FrontendCode.Describe:
      case FrontendCode.Execute:
      case FrontendCode.Close:
        this.queue(frame);
        if (this.batchBytes >= this.ctx.maxBatchBytes) this.dispatch();
        return;
      default:
        this.fatal(
          new RwsplitPgError(
            'UNEXPECTED_MESSAGE',
            SqlState.ProtocolViolation,
            `unexpected message type 0x${type.toString(16)} from the client`,
          ),
        );
    }
  }

  /** The client connection is gone (or we closed it): give the backend back or drop it. */
  onClientClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.ctx.sessionClosed(this.processId);
    const conn = this.backend;
    if (!conn) return;
    if (this.isBackendReusable()) this.releaseBackend();
    else
      this.dropBackend(
        this.pinnedBy ? `session pinned by ${this.pinnedBy} ended` : 'client left mid-transaction',
      );
  }

  private queue(frame: Buffer): void {
    this.batch.push(frame);
    this.batchBytes += frame.length;
    // Bounded memory: stop reading the client while we cannot forward what it sends.
    if ((this.acquiring || this.waitingForIdle) && this.batchBytes >= this.ctx.maxBatchBytes)
      this.socket.pause();
  }

  // ---- routing -----------------------------------------------------------------------

  private dispatch(): void {
    if (this.acquiring || this.waitingForIdle || this.gated || this.batch.length === 0 || this.closed) return;
    const first = this.batch[0]!;
    if (first[0] === FrontendCode.Query && mayBeSessionCommand(first) && this.trySessionCommand(first))
      return;
    if (this.abortedTx) {
      this.answerAbortedTransaction();
      return;
    }
    if (this.ctx.sharding && !this.placeOnShard()) return;
    const conn = this.backend;
    if (conn) {
      if (this.mustLeaveReplica()) {
        this.waitingForIdle = true;
        return;
      }
      this.sendBatch(conn);
      return;
    }
    if (this.tryAnswerWithoutBackend()) return;
    const decision = decideRoute(
      this.batch,
      this.statements,
      this.ctx.classifier,
      this.deferredBegin !== null,
    );
    this.route(decision, null);
  }

  /** A write queued behind pipelined reads on a replica waits until that replica is idle. */
  private mustLeaveReplica(): boolean {
    if (this.pinnedBy || this.node?.role === 'primary' || this.txStatus !== TX_IDLE) return false;
    if (this.tracker.idle && !this.translator.unsynced) return false;
    const decision = decideRoute(this.batch, this.statements, this.ctx.classifier, false);
    return decision.target === 'primary';
  }

  private route(decision: RouteDecision, failed: Set<string> | null): void {
    this.routedCount = this.batch.length;
    const level = this.settings.consistency;
    if (decision.target === 'read' && level === 'strong')
      decision = { target: 'primary', reason: 'strong', retryable: decision.retryable };
    if (decision.target === 'primary') {
      const node = this.ctx.topology.writablePrimary(this.shard);
      if (node) this.routeTo(node, decision, decision.reason, failed, null);
      else this.awaitPrimary(decision, failed);
      return;
    }
    const shard = this.ctx.sharding ? this.shard : undefined;
    const pick = this.ctx.readRouter.pick(failed ?? undefined, { allowLagging: level === 'eventual', shard });
    if (!pick.ok) {
      this.failBatch(new RwsplitPgError('NO_READ_NODE', SqlState.CannotConnectNow, pick.message, pick.hint));
      return;
    }
    let node = pick.node;
    const reason: RouteReason = pick.reason === 'fallback-primary' ? 'fallback-primary' : decision.reason;
    let checkToken: bigint | null = null;
    if (level === 'read-your-writes' && node.role === 'replica') {
      if (this.tokenUnknown) {
        this.readOnPrimary(decision, failed);
        return;
      }
      const token = this.settings.token.get(this.shard);
      if (token !== undefined) {
        const replay = this.ctx.replay;
        if (replay.known(node) >= token) this.ctx.stats.causalRead('replica-known');
        else {
          // Another replica may be known to be far enough; else ask the one picked.
          const known = this.ctx.readRouter.pick(failed ?? undefined, {
            accept: (n) => replay.known(n) >= token,
            shard,
          });
          if (known.ok && known.node.role === 'replica') {
            node = known.node;
            this.ctx.stats.causalRead('replica-known');
          } else {
            // Ask the replica most likely to be there: the one known to be furthest ahead.
            node = this.furthestReplica(failed) ?? node;
            checkToken = token;
          }
        }
      }
    }
    this.routeTo(node, decision, reason, failed, checkToken);
  }

  private furthestReplica(failed: Set<string> | null): NodeStatus | undefined {
    let best: NodeStatus | undefined;
    let bestAt = -2n;
    const eventual = this.settings.consistency === 'eventual';
    for (const n of this.ctx.topology.nodes) {
      if (n.role !== 'replica' || !n.reachable || n.fenced || (n.lagging && !eventual)) continue;
      if (n.spec.shard !== this.shard || failed?.has(n.spec.id)) continue;
      const at = this.ctx.replay.known(n);
      if (at > bestAt) {
        best = n;
        bestAt = at;
      }
    }
    return best;
  }

  /** Writes wait up to failover.bufferMs for a primary (a failover or switchover under way). */
  private awaitPrimary(decision: RouteDecision, failed: Set<string> | null): void {
    const topology = this.ctx.topology;
    const during = topology.failover(this.shard);
    if (this.ctx.failoverBufferMs <= 0 && !during) {
      this.failBatch(noPrimaryError(during));
      return;
    }
    this.acquiring = true;
    void topology.whenWritable(this.shard, Math.max(this.ctx.failoverBufferMs, 1)).then((node) => {
      this.acquiring = false;
      if (this.closed) return;
      this.socket.resume();
      if (node) this.routeTo(node, decision, decision.reason, failed, null);
      else this.failBatch(noPrimaryError(topology.failover(this.shard) ?? during));
    });
  }

  /** A read-your-writes read no replica could serve in time goes to the primary. */
  private readOnPrimary(decision: RouteDecision, failed: Set<string> | null): void {
    this.ctx.stats.causalRead('primary');
    const node = this.ctx.topology.primary(this.shard);
    const read: RouteDecision = {
      target: 'primary',
      reason: 'causal-primary',
      retryable: decision.retryable,
    };
    if (node) this.routeTo(node, read, 'causal-primary', failed, null);
    else this.awaitPrimary(read, failed);
  }

  private routeTo(
    node: NodeStatus,
    decision: RouteDecision,
    reason: RouteReason,
    failed: Set<string> | null,
    checkToken: bigint | null,
  ): void {
    this.ctx.stats.routed(failed ? 'retry' : reason);
    const retry =
      this.ctx.retryReads && decision.retryable && this.deferredBegin === null && reason !== 'strong'
        ? decision.target === 'read' || reason === 'causal-primary'
        : false;
    this.routedAs =
      decision.target === 'read' || reason === 'causal-primary' || reason === 'strong' ? 'read' : 'write';
    const routed = this.routedCount >= this.batch.length ? this.batch : this.batch.slice(0, this.routedCount);
    this.retryable = retry ? { frames: routed, failed: failed ?? new Set() } : null;
    let pool = this.pools.get(node.spec.id);
    if (!pool) this.pools.set(node.spec.id, (pool = this.ctx.pool(node, this.login)));
    const conn = pool.tryAcquire();
    if (conn) {
      this.lease(conn, pool, node, decision, checkToken);
      return;
    }
    this.acquiring = true;
    // Frames keep queuing while we wait: the retry copy must hold only the routed ones.
    if (this.retryable) this.retryable.frames = this.batch.slice(0, this.routedCount);
    pool.acquire().then(
      (c) => {
        this.acquiring = false;
        if (this.closed) {
          pool.release(c);
          return;
        }
        if (node.fenced) {
          // Fenced while we waited (a failover): never send anything there.
          pool.release(c);
          this.route(decision, failed);
          return;
        }
        this.lease(c, pool, node, decision, checkToken);
      },
      (err: Error) => {
        this.acquiring = false;
        if (this.closed) return;
        this.socket.resume();
        if (this.retryable) {
          this.retryable.failed.add(node.spec.id);
          this.ctx.stats.retried(node.spec.id);
          this.route(decision, this.retryable.failed);
          return;
        }
        this.failBatch(asClientError(err, node));
      },
    );
  }

  private lease(
    conn: BackendConnection,
    pool: BackendPool,
    node: NodeStatus,
    decision: RouteDecision,
    checkToken: bigint | null,
  ): void {
    conn.listener = this;
    this.backend = conn;
    this.backendPool = pool;
    this.node = node;
    this.socket.resume();
    if (checkToken !== null) this.checkReplay(conn, node, checkToken, decision);
    else this.startLease(conn);
  }

  private startLease(conn: BackendConnection): void {
    if (this.deferredBegin) {
      // Goes ahead of the batch, in the same write; its answer is swallowed.
      this.translator.injectQuery(this.deferredBegin, conn);
      this.deferredBegin = null;
    }
    // Frames that queued while the connection was being acquired were not part of the
    // routing decision: send what was decided, then route the rest (dispatch checks them).
    this.sendBatch(conn, this.routedCount);
    if (this.batch.length > 0) this.dispatch();
  }

  /**
   * Read-your-writes on a replica not known to have replayed the session's token: ask it,
   * waiting up to causalWaitMs; if it never gets there, the read goes to the primary.
   */
  private checkReplay(
    conn: BackendConnection,
    node: NodeStatus,
    token: bigint,
    decision: RouteDecision,
  ): void {
    this.gated = true;
    void awaitReplay(conn, token, this.ctx.causalWaitMs, () => this.closed).then((outcome) => {
      if (this.backend !== conn) return; // the client left and the connection was dropped
      this.gated = false;
      if (this.closed) {
        this.releaseBackend();
        return;
      }
      switch (outcome.kind) {
        case 'ready':
          this.ctx.replay.confirm(node.spec.id, outcome.position);
          this.ctx.stats.causalRead('replica-checked');
          this.startLease(conn);
          return;
        case 'lost':
          this.lostWhileGated(node, outcome.reason);
          this.route(decision, new Set([node.spec.id]));
          return;
        case 'timeout':
        case 'error':
          this.releaseBackend();
          this.readOnPrimary(decision, null);
          return;
      }
    });
  }

  /**
   * After a write, before the backend goes back to its pool: the primary's WAL insert
   * position becomes the session's causal token. The client already has its answer; its
   * next request waits for this one round trip (gated).
   */
  private captureThenRelease(conn: BackendConnection): void {
    this.gated = true;
    this.wroteOnLease = false;
    const node = this.node!;
    void commitPosition(conn).then((outcome) => {
      if (this.backend !== conn) return;
      this.gated = false;
      if (outcome.kind === 'ready') {
        advanceToken(this.settings.token, node.spec.shard, outcome.position);
        this.tokenUnknown = false;
      } else {
        // Without the position, no replica can be proven fresh enough: primary reads until the next write.
        this.tokenUnknown = true;
      }
      if (outcome.kind === 'lost') this.lostWhileGated(node, outcome.reason);
      else this.releaseBackend();
      if (!this.closed && this.batch.length > 0) {
        this.waitingForIdle = false;
        this.dispatch();
      }
    });
  }

  /** The leased connection died during the proxy's own statement: a node failure, nothing owed to the client. */
  private lostWhileGated(node: NodeStatus, reason: string): void {
    this.ctx.nodeFailed(node.spec.id, reason);
    this.backendPool?.lost();
    this.backend = null;
    this.backendPool = null;
    this.node = null;
    this.tracker.reset();
    this.translator.reset();
    this.txStatus = TX_IDLE;
  }

  private sendBatch(conn: BackendConnection, count = this.batch.length): void {
    let frames = this.batch;
    if (count >= frames.length) {
      this.batch = [];
      this.batchBytes = 0;
    } else {
      frames = this.batch.slice(0, count);
      this.batch = this.batch.slice(count);
      this.batchBytes = this.batch.reduce((n, f) => n + f.length, 0);
    }
    if (this.routedAs === 'write') this.wroteOnLease = true;
    if (this.txStatus === TX_BLOCK && !this.commitInFlight)
      this.commitInFlight = this.endsTransaction(frames);
    const result = this.translator.translate(frames, conn);
    if (result.pin && !this.pinnedBy) this.pinnedBy = result.pin;
    const node = this.node!;
    for (let i = 0; i < result.readyCount; i++) {
      this.dispatchTimes.push(performance.now());
      node.outstanding++;
      this.ctx.stats.dispatched(node.spec.id, this.routedAs);
    }
    this.out.flush();
    if (result.backendFull) {
      this.socket.pause();
      conn.socket.once('drain', () => this.socket.resume());
    }
  }

  /** Answers a lone BEGIN, or the COMMIT/ROLLBACK that ends an empty deferred one, without a backend. */
  private tryAnswerWithoutBackend(): boolean {
    const first = this.batch[0]!;
    if (this.batch.length !== 1 || first[0] !== FrontendCode.Query || this.pinnedBy) return false;
    const c = classifyQuery(this.ctx.classifier, first);
    if (c.statementCount !== 1 || c.hint) return false;
    if (this.deferredBegin === null && c.tx === 'begin') {
      // Deferring BEGIN lets the next statement decide the node: `SET TRANSACTION READ ONLY`
      // makes it a replica transaction. Snapshots start at the first statement anyway.
      this.deferredBegin = Buffer.from(first);
      this.beginFrame = this.deferredBegin;
      this.answer(encodeCommandComplete('BEGIN'), readyForQuery(TX_BLOCK));
      return true;
    }
    if (this.deferredBegin !== null && (c.tx === 'commit' || c.tx === 'rollback')) {
      this.deferredBegin = null;
      this.answer(encodeCommandComplete(c.tx === 'commit' ? 'COMMIT' : 'ROLLBACK'), readyForQuery(TX_IDLE));
      return true;
    }
    return false;
  }

  private answer(...frames: Buffer[]): void {
    this.batch = [];
    this.batchBytes = 0;
    for (const f of frames) this.out.push(f);
    this.out.flush();
  }

  /**
   * Answers a batch that cannot be routed: one ErrorResponse for each group the server would
   * have answered, each closed by ReadyForQuery. A transaction the proxy deferred cannot go on.
   */
  private failBatch(err: RwsplitPgError, status = TX_IDLE): void {
    this.ctx.stats.clientError(err.sqlstate);
    if (this.deferredBegin) {
      this.fatal(err);
      return;
    }
    const frames = this.batch;
    this.batch = [];
    this.batchBytes = 0;
    this.retryable = null;
    let errorSent = false;
    for (const f of frames) {
      const t = f[0];
      if (t === FrontendCode.Sync || t === FrontendCode.Query || t === FrontendCode.FunctionCall) {
        if (!errorSent || t !== FrontendCode.Sync) this.out.push(err.toFrame());
        this.out.push(readyForQuery(status));
        errorSent = false;
      } else if (!errorSent && t !== FrontendCode.CopyData && t !== FrontendCode.CopyDone) {
        this.out.push(err.toFrame());
        errorSent = true;
      }
    }
    this.out.flush();
  }

  // ---- backend side ------------------------------------------------------------------

  onBackendFrame(type: number, frame: Buffer): void {
    if (type === BackendCode.ErrorResponse && this.retryable && isServerGoingAway(frame)) {
      // The server is shutting down or lost its postmaster: a node failure, not an answer.
      // Nothing reached the client yet, so the read runs again elsewhere (onBackendClose).
      this.backend?.destroy(
        `${this.node?.spec.id ?? 'server'} is terminating: ${decodeErrorFields(frame).get('M') ?? ''}`,
      );
      return;
    }
    const verdict = this.tracker.onFrame(type, frame);
    if (type === BackendCode.ReadyForQuery) {
      this.txStatus = frame[5]!;
      this.commitInFlight = false;
      if (verdict === Verdict.Forward) this.onReady();
    }
    if (verdict === Verdict.Forward) {
      this.retryable = null;
      this.out.push(frame);
    }
  }

  /** A ReadyForQuery for the client: one dispatched batch is answered. */
  private onReady(): void {
    const started = this.dispatchTimes.shift();
    const node = this.node;
    if (started !== undefined && node) {
      node.outstanding--;
      const ms = performance.now() - started;
      node.latency.update(ms, Date.now());
      this.ctx.stats.answered(node.spec.id, ms / 1000);
    }
  }

  onBackendChunkEnd(): void {
    this.out.flush();
    if (this.out.full) {
      this.out.full = false;
      const busy = this.backend;
      if (busy) {
        busy.socket.pause();
        this.socket.once('drain', () => busy.socket.resume());
      }
    }
    const conn = this.backend;
    if (conn && this.isBackendReusable()) {
      if (
        this.wroteOnLease &&
        this.settings.consistency === 'read-your-writes' &&
        this.node?.role === 'primary'
      ) {
        this.captureThenRelease(conn);
        return;
      }
      this.wroteOnLease = false;
      this.releaseBackend();
      if (this.batch.length > 0) {
        this.waitingForIdle = false;
        this.dispatch();
      }
    } else if (this.waitingForIdle && conn && this.tracker.idle && !this.translator.unsynced) {
      // Answers the proxy gives itself (SHOW rwsplit.…) waited for the server to catch up.
      this.waitingForIdle = false;
      this.dispatch();
    }
  }

  /** Nothing pending, outside a transaction, no session state: the backend can serve others. */
  private isBackendReusable(): boolean {
    return (
      this.tracker.idle &&
      !this.translator.unsynced &&
      this.txStatus === TX_IDLE &&
      this.pinnedBy === null &&
      !this.acquiring &&
      !this.gated
    );
  }

  onBackendClose(conn: BackendConnection, reason: string): void {
    if (conn !== this.backend) return;
    const node = this.node!;
    this.ctx.nodeFailed(node.spec.id, reason);
    node.outstanding -= this.dispatchTimes.length;
    this.dispatchTimes.length = 0;
    const pendingReady = this.tracker.pendingReady;
    this.tracker.reset();
    this.translator.reset();
    this.backendPool?.lost();
    this.backend = null;
    this.backendPool = null;
    this.node = null;
    const wasInTransaction = this.txStatus !== TX_IDLE || this.pinnedBy !== null;
    this.txStatus = TX_IDLE;
    if (this.closed) return;
    const retry = this.retryable;
    if (retry && !wasInTransaction) {
      // Nothing of the answer reached the client: run the same frames on another node.
      retry.failed.add(node.spec.id);
      this.ctx.stats.retried(node.spec.id);
      this.batch = retry.frames.concat(this.batch);
      this.batchBytes = this.batch.reduce((n, f) => n + f.length, 0);
      const decision = decideRoute(this.batch, this.statements, this.ctx.classifier, false);
      this.route(decision, retry.failed);
      return;
    }
    const commitInFlight = this.commitInFlight;
    this.commitInFlight = false;
    if (wasInTransaction && this.pinnedBy === null) {
      this.transactionLost(node, reason, commitInFlight, pendingReady);
      return;
    }
    const err = new RwsplitPgError(
      'BACKEND_LOST',
      SqlState.ConnectionFailure,
      `rwsplit lost its connection to ${node.spec.id} (${node.spec.host}:${node.spec.port}) while it ran this request: ${reason}`,
      wasInTransaction
        ? undefined
        : node.role === 'primary'
          ? 'The request may or may not have run; retry it if it is idempotent. New writes wait up to postgres.failover.bufferMs for a primary (failover).'
          : 'The request may or may not have run; retry it if it is idempotent.',
    );
    if (wasInTransaction) {
      this.fatal(err, 'the session state on that server (SET, temporary tables, …) is lost');
      return;
    }
    this.ctx.stats.clientError(err.sqlstate);
    this.out.push(err.toFrame());
    for (let i = 0; i < pendingReady; i++) this.out.push(readyForQuery(TX_IDLE));
    this.out.flush();
    this.waitingForIdle = false;
    this.dispatch();
  }

  /**
   * The transaction's server is gone (a crash, a failover fencing it). The client connection
   * stays: it gets an error for what it was waiting for and, as in any aborted transaction,
   * errors until it ends the transaction; then it carries on with new servers.
   */
  private transactionLost(
    node: NodeStatus,
    reason: string,
    commitInFlight: boolean,
    pendingReady: number,
  ): void {
    const failover = this.ctx.topology.failover(node.spec.shard);
    const cause = failover
      ? `${node.spec.id} was lost to a ${failover.kind} (${reason})`
      : `rwsplit lost its connection to ${node.spec.id} (${node.spec.host}:${node.spec.port}): ${reason}`;
    const err = commitInFlight
      ? new RwsplitPgError(
          'COMMIT_OUTCOME_UNKNOWN',
          '08007',
          `${cause}; the COMMIT was sent and its outcome is unknown`,
          'Check whether the transaction took effect before running it again.',
        )
      : new RwsplitPgError(
          'TRANSACTION_LOST',
          '40001',
          `${cause}; the transaction was rolled back`,
          'Run the transaction again: new writes go to the new primary (they wait up to postgres.failover.bufferMs for one).',
        );
    const aborted = new RwsplitPgError(
      'IN_FAILED_TRANSACTION',
      '25P02',
      'current transaction is aborted, commands ignored until end of transaction block',
      `The transaction was lost: ${cause}. Send ROLLBACK.`,
    );
    this.waitingForIdle = false;
    this.discardParked(`the transaction was lost on shard ${node.spec.shard}`);
    if (pendingReady > 0) {
      this.ctx.stats.clientError(err.sqlstate);
      this.out.push(err.toFrame());
      for (let i = 0; i < pendingReady; i++) this.out.push(readyForQuery(TX_FAILED));
      this.out.flush();
      this.abortedTx = aborted;
    } else {
      this.abortedTx = err; // nothing was waiting: the next statement learns it
    }
    this.dispatch();
  }

  /** In a transaction lost with its server: ROLLBACK/COMMIT end it, anything else fails. */
  private answerAbortedTransaction(): void {
    const first = this.batch[0]!;
    if (this.batch.length === 1 && first[0] === FrontendCode.Query) {
      const c = classifyQuery(this.ctx.classifier, first);
      if (c.statementCount === 1 && (c.tx === 'commit' || c.tx === 'rollback')) {
        this.abortedTx = null;
        // PostgreSQL answers COMMIT of a failed transaction with the tag ROLLBACK too.
        this.answer(encodeCommandComplete('ROLLBACK'), readyForQuery(TX_IDLE));
        return;
      }
    }
    const err = this.abortedTx!;
    if (err.sqlstate !== '25P02') {
      this.abortedTx = new RwsplitPgError(
        'IN_FAILED_TRANSACTION',
        '25P02',
        'current transaction is aborted, commands ignored until end of transaction block',
        'Send ROLLBACK.',
      );
    }
    this.failBatch(err, TX_FAILED);
  }

  /** Does this batch (sent inside a transaction) end it with COMMIT? */
  private endsTransaction(frames: readonly Buffer[]): boolean {
    for (const f of frames) {
      if (f[0] === FrontendCode.Query) {
        if (classifyQuery(this.ctx.classifier, f).tx === 'commit') return true;
      } else if (f[0] === FrontendCode.Parse) {
        if (this.ctx.classifier.classify(parseOf(f).query).tx === 'commit') return true;
      }
    }
    return false;
  }

  // ---- sharded PostgreSQL ------------------------------------------------------------

  /**
   * Sets `this.shard` for the queued batch, or handles the batch itself (an error, a read of
   * every shard, the end of a transaction that spans shards, a switch to another shard's
   * backend) and returns false.
   */
  private placeOnShard(): boolean {
    const sharding = this.ctx.sharding!;
    const first = this.batch[0]!;
    if (this.parked.size > 0 && this.backend) {
      const end = this.distributedEnd(first);
      if (end !== null) {
        if (!this.backendIdle()) this.waitingForIdle = true;
        else this.finishDistributed(end);
        return false;
      }
      if (this.endsTransaction(this.batch)) {
        this.failBatch(
          new RwsplitPgError(
            'DISTRIBUTED_COMMIT_FORM',
            SqlState.FeatureNotSupported,
            'a transaction that spans shards must end with a simple-protocol COMMIT or ROLLBACK on its own',
            'Send COMMIT as a plain query (node-postgres: client.query("COMMIT")).',
          ),
          TX_BLOCK,
        );
        return false;
      }
    }
    const inTransaction = (this.backend !== null && this.txStatus !== TX_IDLE) || this.deferredBegin !== null;
    const choice = chooseShard(this.batch, this.statements, sharding.resolver, this.settings.shardKey);
    switch (choice.kind) {
      case 'none':
        return true;
      case 'error':
        this.failBatch(choice.error, this.clientTxStatus());
        return false;
      case 'all-shards':
        if (inTransaction || this.backend || this.batch.length !== 1 || first[0] !== FrontendCode.Query) {
          this.failBatch(
            new RwsplitPgError(
              'ALL_SHARDS_FORM',
              SqlState.FeatureNotSupported,
              '/* rwsplit:all-shards */ reads run as one simple-protocol query outside a transaction',
            ),
            this.clientTxStatus(),
          );
        } else this.readEveryShard(first);
        return false;
      case 'unknown':
        if (this.backend && inTransaction) return true; // the transaction's current shard
        if (!this.backend && this.isTransactionControl(first)) return true; // BEGIN waits for its first statement
        this.failBatch(sharding.resolver.unknownShardError(), this.clientTxStatus());
        return false;
      case 'shard':
        break;
    }
    const target = choice.shard;
    if (!this.backend || this.node!.spec.shard === target) {
      this.shard = target;
      return true;
    }
    if (!this.backendIdle()) {
      this.waitingForIdle = true; // the current shard's answers first
      return false;
    }
    if (this.pinnedBy) {
      this.failBatch(
        new RwsplitPgError(
          'PINNED_TO_SHARD',
          SqlState.FeatureNotSupported,
          `this session is pinned to shard ${this.node!.spec.shard} by ${this.pinnedBy}; it cannot run statements on shard ${target}`,
        ),
        this.clientTxStatus(),
      );
      return false;
    }
    if (this.txStatus === TX_IDLE) {
      this.waitingForIdle = true; // released in a moment; then routed afresh
      return false;
    }
    this.switchShard(target);
    return false;
  }

  /** Parks the current shard's backend (its transaction stays open) and continues on `target`. */
  private switchShard(target: string): void {
    const cur: Participation = {
      conn: this.backend!,
      pool: this.backendPool!,
      node: this.node!,
      txStatus: this.txStatus,
    };
    cur.conn.listener = this.parkedListener(cur);
    this.parked.set(cur.node.spec.shard, cur);
    this.backend = null;
    this.backendPool = null;
    this.node = null;
    this.shard = target;
    const back = this.parked.get(target);
    if (back) {
      this.parked.delete(target);
      back.conn.listener = this;
      this.backend = back.conn;
      this.backendPool = back.pool;
      this.node = back.node;
      this.txStatus = back.txStatus;
    } else {
      // The transaction reaches a new shard: its BEGIN goes ahead of the batch there.
      this.txStatus = TX_IDLE;
      this.deferredBegin = this.beginFrame;
    }
    this.dispatch();
  }

  private parkedListener(p: Participation): BackendListener {
    return {
      onBackendFrame: () => undefined,
      onBackendChunkEnd: () => undefined,
      onBackendClose: (_conn, reason) => {
        if (this.parked.get(p.node.spec.shard) !== p) return;
        this.parked.delete(p.node.spec.shard);
        p.pool.lost();
        this.ctx.nodeFailed(p.node.spec.id, reason);
        // The whole transaction is lost: end it everywhere and tell the client.
        if (this.backend)
          this.backend.destroy(`shard ${p.node.spec.shard} of this transaction was lost: ${reason}`);
        else this.transactionLost(p.node, reason, false, 0);
      },
    };
  }

  /** Drops the backends of the transaction's other shards (their servers roll back). */
  private discardParked(reason: string): void {
    for (const p of this.parked.values()) {
      p.conn.listener = null;
      p.pool.discard(p.conn, reason);
    }
    this.parked.clear();
  }

  /** 'commit' or 'rollback' when the batch is one simple COMMIT/ROLLBACK, else null. */
  private distributedEnd(first: Buffer): 'commit' | 'rollback' | null {
    if (this.batch.length !== 1 || first[0] !== FrontendCode.Query) return null;
    const c = classifyQuery(this.ctx.classifier, first);
    if (c.statementCount !== 1) return null;
    return c.tx === 'commit' ? 'commit' : c.tx === 'rollback' ? 'rollback' : null;
  }

  /** A lone BEGIN/COMMIT/ROLLBACK: needs no shard before a statement gives one. */
  private isTransactionControl(first: Buffer): boolean {
    if (this.batch.length !== 1 || first[0] !== FrontendCode.Query) return false;
    const c = classifyQuery(this.ctx.classifier, first);
    return c.statementCount === 1 && c.tx !== null;
  }

  private backendIdle(): boolean {
    return this.tracker.idle && !this.translator.unsynced;
  }

  private clientTxStatus(): number {
    if (this.abortedTx) return TX_FAILED;
    if (this.backend) return this.txStatus;
    return this.deferredBegin ? TX_BLOCK : TX_IDLE;
  }

  /**
   * COMMIT of a transaction that wrote on several shards: two-phase commit over every
   * participant's backend (PREPARE TRANSACTION, a durable decision, COMMIT PREPARED); ROLLBACK
   * (or COMMIT of a failed transaction) rolls every participant back. The client sees one
   * ordinary answer.
   */
  private finishDistributed(end: 'commit' | 'rollback'): void {
    this.batch.shift();
    this.batchBytes = this.batch.reduce((n, f) => n + f.length, 0);
    const all: Participation[] = [
      ...this.parked.values(),
      { conn: this.backend!, pool: this.backendPool!, node: this.node!, txStatus: this.txStatus },
    ];
    this.parked.clear();
    this.backend = null;
    this.backendPool = null;
    this.node = null;
    this.txStatus = TX_IDLE;
    this.gated = true;
    const failed = all.some((p) => p.txStatus === TX_FAILED);
    const work =
      end === 'commit' && !failed
        ? this.twoPhaseCommit(all)
        : Promise.all(all.map((p) => internalQuery(p.conn, 'ROLLBACK').catch(() => undefined))).then(() => [
            encodeCommandComplete('ROLLBACK'),
          ]);
    void work.then((frames) => {
      for (const p of all) {
        p.conn.listener = null;
        if (p.conn.closed) p.pool.lost();
        else p.pool.release(p.conn);
      }
      this.gated = false;
      this.wroteOnLease = false;
      if (this.closed) return;
      for (const f of frames) this.out.push(f);
      this.out.push(readyForQuery(TX_IDLE));
      this.out.flush();
      this.dispatch();
    });
  }

  private async twoPhaseCommit(all: readonly Participation[]): Promise<Buffer[]> {
    const participants: Participant[] = all.map((p) => ({
      shard: p.node.spec.shard,
      exec: (sql) =>
        withConnectionDeadline(
          p.conn,
          internalQuery(p.conn, sql),
          this.ctx.sharding!.statementTimeoutMs,
        ).then(
          (r) => r.tag ?? undefined,
          (err: unknown) => {
            // The coordinator reads a server error's SQLSTATE from `code`, as node-postgres has it.
            if (err instanceof InternalQueryError)
              throw Object.assign(new Error(err.message), { code: err.sqlstate });
            throw err;
          },
        ),
    }));
    try {
      const result = await this.ctx.sharding!.coordinator.commit(participants);
      if (this.settings.consistency === 'read-your-writes') {
        for (const p of all) {
          const pos = await commitPosition(p.conn);
          if (pos.kind === 'ready') advanceToken(this.settings.token, p.node.spec.shard, pos.position);
          else this.tokenUnknown = true;
        }
      }
      const out = [encodeCommandComplete('COMMIT')];
      if (result.outcome === 'committed-pending') {
        out.unshift(
          encodeNoticeResponse({
            severity: 'WARNING',
            code: '01000',
            message: `committed; shards ${result.pending.join(', ')} finish the commit when they are back (transaction ${result.gid})`,
          }),
        );
      }
      return out;
    } catch (err) {
      const e =
        err instanceof RwsplitPgError
          ? err
          : new RwsplitPgError('TWOPC_FAILED', '40000', `COMMIT failed: ${(err as Error).message}`);
      this.ctx.stats.clientError(e.sqlstate);
      return [e.toFrame()];
    }
  }

  /** `/* rwsplit:all-shards *\/`: the query on one read node per shard, rows merged. */
  private readEveryShard(frame: Buffer): void {
    this.batch.shift();
    this.batchBytes -= frame.length;
    this.gated = true;
    const shards = [...new Set(this.ctx.topology.nodes.map((n) => n.spec.shard))];
    const leases: { pool: BackendPool; conn: BackendConnection }[] = [];
    const strong = this.settings.consistency === 'strong';
    const run = async (): Promise<Buffer[]> => {
      for (const shard of shards) {
        const pick = strong
          ? this.ctx.topology.primary(shard)
          : (() => {
              const d = this.ctx.readRouter.pick(undefined, { shard });
              return d.ok ? d.node : undefined;
            })();
        if (!pick)
          throw new RwsplitPgError(
            'NO_READ_NODE',
            SqlState.CannotConnectNow,
            `no node of shard ${shard} can serve this read`,
          );
        let pool = this.pools.get(pick.spec.id);
        if (!pool) this.pools.set(pick.spec.id, (pool = this.ctx.pool(pick, this.login)));
        leases.push({ pool, conn: await pool.acquire() });
      }
      return readAllShards(
        frame,
        leases.map((l, i) => ({ shard: shards[i]!, conn: l.conn })),
      );
    };
    void run()
      .catch((err: unknown) => [asClientError(err as Error, this.ctx.topology.nodes[0]!).toFrame()])
      .then((frames) => {
        for (const l of leases) {
          if (l.conn.closed) l.pool.lost();
          else l.pool.release(l.conn);
        }
        this.gated = false;
        if (this.closed) return;
        for (const f of frames) this.out.push(f);
        this.out.push(readyForQuery(TX_IDLE));
        this.out.flush();
        this.dispatch();
      });
  }

  /** rwsplit's own SHOW/SET (`rwsplit.causal_token`, …): answered here, in order with the rest. */
  private trySessionCommand(frame: Buffer): boolean {
    const cmd = parseSessionCommand(decodeQuery(frame));
    if (!cmd) return false;
    if (this.backend && !(this.tracker.idle && !this.translator.unsynced)) {
      this.waitingForIdle = true; // answers for earlier requests are still coming
      return true;
    }
    this.batch.shift();
    this.batchBytes -= frame.length;
    for (const f of applySessionCommand(cmd, this.settings, SHARD)) this.out.push(f);
    const status = this.abortedTx
      ? TX_FAILED
      : this.backend
        ? this.txStatus
        : this.deferredBegin
          ? TX_BLOCK
          : TX_IDLE;
    this.out.push(readyForQuery(status));
    this.out.flush();
    this.dispatch();
    return true;
  }

  /**
   * A failover fenced this node: every connection to it closes now, so transactions running
   * there end with an error that names the failover and nothing more reaches that server.
   */
  nodeFenced(nodeId: string, reason: string): void {
    if (this.node?.spec.id === nodeId && this.backend)
      this.backend.destroy(`${nodeId} was fenced: ${reason}`);
  }

  /**
   * The monitor found this node dead (a probe timed out, e.g. a SIGSTOPped server). A read
   * still waiting there with nothing sent to the client yet moves to another node now
   * rather than waiting for a server that may never answer.
   */
  nodeDown(nodeId: string): void {
    if (this.node?.spec.id === nodeId && this.retryable && this.backend)
      this.backend.destroy(`${nodeId} is down`);
  }

  // ---- TrackerSink ---------------------------------------------------------------------

  emit(bytes: Buffer): void {
    this.retryable = null;
    this.out.push(bytes);
  }

  parseFailed(key: string | null): void {
    const conn = this.backend;
    if (!conn) return;
    if (key === null) conn.unnamedKey = null;
    else conn.prepared.delete(key);
  }

  closeSkipped(key: string): void {
    this.backend?.prepared.add(key);
  }

  // ---- endings -------------------------------------------------------------------------

  private releaseBackend(): void {
    const conn = this.backend!;
    this.backend = null;
    this.node = null;
    const pool = this.backendPool!;
    this.backendPool = null;
    pool.release(conn);
  }

  private dropBackend(reason: string): void {
    const conn = this.backend!;
    this.backend = null;
    this.node = null;
    const pool = this.backendPool!;
    this.backendPool = null;
    pool.discard(conn, reason);
  }

  /** Sends a FATAL error in the client's protocol and closes this client only. */
  fatal(err: RwsplitPgError, detail?: string): void {
    if (this.socket.destroyed) return;
    this.ctx.stats.clientError(err.sqlstate);
    this.out.flush();
    this.socket.end(err.toFatalFrame(detail));
    this.onClientClose();
  }

  close(): void {
    this.socket.end();
    this.onClientClose();
  }
}

/** FATAL/PANIC with an operator-intervention or connection SQLSTATE (57P01 admin shutdown, …). */
function isServerGoingAway(frame: Buffer): boolean {
  const fields = decodeErrorFields(frame);
  const severity = fields.get('V') ?? fields.get('S');
  const code = fields.get('C') ?? '';
  return (severity === 'FATAL' || severity === 'PANIC') && (code.startsWith('57P') || code.startsWith('08'));
}

/**
 * A participant that does not answer (a stopped server) must not hold the COMMIT forever:
 * past the deadline its connection is closed, which the coordinator treats as a lost
 * participant (roll back, or leave the prepared transaction to recovery).
 */
function withConnectionDeadline<T>(conn: BackendConnection, work: Promise<T>, ms: number): Promise<T> {
  const timer = setTimeout(() => conn.destroy(`no answer within ${ms} ms during a two-phase commit`), ms);
  return work.finally(() => clearTimeout(timer));
}

function noPrimaryError(failover: { kind: string; from: string } | undefined): RwsplitPgError {
  if (failover) {
    return new RwsplitPgError(
      'NO_PRIMARY',
      SqlState.CannotConnectNow,
      `no primary took this write within postgres.failover.bufferMs: a ${failover.kind} is replacing ${failover.from}`,
      'Retry shortly; `rwsplit status` shows the failover. Raise postgres.failover.bufferMs to wait longer.',
    );
  }
  return new RwsplitPgError(
    'NO_PRIMARY',
    SqlState.CannotConnectNow,
    'no primary is available for this write: every node that could be the primary is down or fenced',
    'Check the primary listed in postgres.nodes; `rwsplit status` shows what rwsplit sees. With postgres.failover.mode "auto", rwsplit promotes a replica.',
  );
}

function asClientError(err: Error, node: NodeStatus): RwsplitPgError {
  if (err instanceof RwsplitPgError) return err;
  return new RwsplitPgError(
    'BACKEND_UNAVAILABLE',
    SqlState.ConnectionFailure,
    `cannot connect to ${node.spec.id} (${node.spec.host}:${node.spec.port}): ${err.message}`,
    'Check that the node is running; `rwsplit status` shows what rwsplit sees.',
  );
}
