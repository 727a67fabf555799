/**
 * One client connection after login: the query phase. Client frames are queued until a
 * point where the server must answer (Sync, Query, Flush, FunctionCall, a full batch);
 * the queue is then routed as one unit to a backend connection lent by a pool, translated
 * for that backend (statement names, re-Parse), and the backend's answers are streamed back
 * untouched except where the response tracker says otherwise. The connection goes back to
 * its pool as soon as the server is idle outside a transaction, unless session state pins it.
 *
 * The session owns the backend lease and the plain read/write path. Three collaborators it
 * owns handle the rest, each through a narrow host interface the session implements:
 * CausalReads (read-your-writes on a lease), SessionRecovery (servers lost under the session,
 * rwsplit's own SHOW/SET) and ShardTransaction (sharded PostgreSQL).
 */
import type net from 'node:net';
import { performance } from 'node:perf_hooks';
import type { NodeStatus } from '../../core/topology.js';
import type { BackendConnection, BackendListener, BackendLogin } from '../backend/backend-connection.js';
import type { BackendPool } from '../backend/backend-pool.js';
import { BackendSignals, type SignalSessionHost } from '../backend/backend-signal.js';
import { CausalReads, type CausalSessionHost } from '../routing/causal-reads.js';
import type { IdleTransactionSubject } from './idle-transaction.js';
import { BackendStartupError, RwsplitPgError, SqlState } from '../errors.js';
import { OutputCoalescer } from './output-coalescer.js';
import {
  BackendCode,
  decodeErrorFields,
  encodeCommandComplete,
  FrontendCode,
  readyForQuery,
} from '../protocol/index.js';
import { Expect, ResponseTracker, Verdict, type TrackerSink } from './response-tracker.js';
import { cacheSalt, NativeForward, type ClientInput, type NativeForwardHost } from './native-forward.js';
import { NativeRoute } from '../../util/native-core.js';
import { BatchTranslator } from './batch-translator.js';
import { ClientBatch } from './client-batch.js';
import { noteFrame, queryNote, type FrameNote } from './frame-note.js';
import type { RouteDecision } from '../routing/route-decision.js';
import type { RouteReason } from '../routing/route-decision.js';
import type { SessionContext, SignalledSession } from './session-context.js';
import {
  ClientStatements,
  isDdlComplete,
  schemaChanged,
  schemaEpoch,
  statementKey,
  STALE_STATEMENT_STATES,
} from './statement-registry.js';
import { formatPgToken, parsePgToken } from '../../core/causal.js';
import type { HandedSession } from './session-handover.js';
import { mayBeSessionCommand, type SessionSettings } from './session-commands.js';
import {
  asClientError,
  DEFAULT_SHARD,
  endsWithCommit,
  isServerGoingAway,
  noPrimaryError,
  SessionRecovery,
  TX_BLOCK,
  TX_FAILED,
  TX_IDLE,
  type RecoverySessionHost,
} from './session-recovery.js';
import type { Lease } from '../backend/lease.js';
import { ShardTransaction, type ShardSessionHost } from '../sharding/shard-transaction.js';

/**
 * A client's session. Members without `private` are its state and steps as the collaborators
 * see them through their host interfaces; the proxy itself uses only the client-side entry
 * points, the cancel key, nodeFenced/nodeDown, fatal and close.
 */
export class ClientSession
  implements
    BackendListener,
    TrackerSink,
    CausalSessionHost,
    RecoverySessionHost,
    ShardSessionHost,
    IdleTransactionSubject,
    SignalSessionHost,
    SignalledSession,
    NativeForwardHost
{
  /** the backend lent to this session, or null: started in lease()/attachLease(), ended in endLease() */
  private lease: Lease | null = null;
  /** client frames not yet sent to a backend, each noted (classified) as it arrived */
  readonly batch: ClientBatch;
  /** reason the session is pinned to its backend (session state), or null */
  pinnedBy: string | null = null;
  /** a lone BEGIN answered by the proxy and not yet sent (see tryAnswerWithoutBackend) */
  deferredBegin: Buffer | null = null;
  /** what holds the queued batch back, if anything: changed only by enter() and leave() */
  private hold = Hold.None;
  /** frames of the batch the last routing decision covered (more may queue while acquiring) */
  private routedCount = 0;
  /** the side of the split the current backend was chosen for (metrics) */
  private routedAs: 'read' | 'write' = 'read';
  /** an autocommit read that can still be retried elsewhere: nothing reached the client yet */
  private retryable = false;
  // The retryable read, kept in fields rather than a record per read: its frames and their
  // notes (the batch's own arrays when it was routed whole: sending takes them off the batch,
  // it does not empty them) and the nodes it already failed on (null: none yet).
  private retryFrames: Buffer[] = NO_FRAMES;
  private retryNotes: FrameNote[] = NO_NOTES;
  private retryFailed: Set<string> | null = null;
  private readonly dispatchTimes: number[] = [];
  /** consistency level, causal token, shard key: rwsplit's own settings (SET rwsplit.…) */
  private readonly settings: SessionSettings;
  /** a batch routed as a write ran on the current lease: take the commit position before release */
  wroteOnLease = false;
  /** a COMMIT was sent and not yet answered (its outcome is unknown if the server dies now) */
  private commitInFlight = false;
  /**
   * The server running this session's transaction was lost (failover): the client is told, the
   * transaction is over, and until it sends ROLLBACK/COMMIT every statement fails as in an
   * aborted transaction. Holds the error the next statement gets.
   */
  private aborted: RwsplitPgError | null = null;
  /** the shard the batch being routed belongs to (sharded PostgreSQL), else 'default' */
  shard = DEFAULT_SHARD;
  /** this session's pool per node id (the login is fixed for the session's life) */
  private readonly pools = new Map<string, BackendPool>();
  private readonly tracker = new ResponseTracker(this);
  private readonly statements = new ClientStatements();
  /** DDL ran on the leased backend and its transaction has not ended yet */
  private ddlInTransaction = false;
  private readonly translator: BatchTranslator;
  private readonly out: OutputCoalescer;
  private readonly causal: CausalReads;
  private readonly recovery: SessionRecovery;
  private readonly signals: BackendSignals;
  /** null unless postgres.sharding is configured */
  private readonly shards: ShardTransaction | null;
  /** the native core carrying answers to this client (dataPlane native), else null */
  private readonly native: NativeForward | null;
  closed = false;
  /**
   * Set by the proxy while a graceful restart drains: called where the session may have
   * reached a transaction boundary (see drainable), so it can be closed there.
   */
  onBoundary: (() => void) | null = null;
  readonly openedAt = Date.now();
  /** client frames received so far (the idle-in-transaction sweep compares two readings) */
  clientFrames = 0;

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
    this.batch = new ClientBatch(ctx.classifier);
    this.translator = new BatchTranslator(this.statements, this.tracker);
    this.causal = new CausalReads(ctx, this.settings, this);
    this.recovery = new SessionRecovery(ctx, this.settings, this.out, this);
    this.signals = new BackendSignals(ctx, this);
    this.native = ctx.nativeCore
      ? new NativeForward(ctx.nativeCore, socket, this, cacheSalt(ctx.classifier))
      : null;
    this.shards = ctx.sharding
      ? new ShardTransaction(
          ctx,
          ctx.sharding,
          this.settings,
          this.statements,
          this.causal,
          this.recovery,
          this,
        )
      : null;
  }

  // ---- intents: what the helpers ask of the session ------------------------------------

  /** See RoutingHost.gate: the hold is lifted before `then` runs, as the work's own continuation. */
  gate<T>(work: Promise<T>, then: (result: T) => void): void {
    this.enter(Hold.Gated);
    void work.then((result) => {
      this.leave(Hold.Gated);
      then(result);
    });
  }

  /** The batch waits for the leased backend to go idle (answers to earlier requests come first). */
  holdUntilIdle(): void {
    this.enter(Hold.IdleWait);
  }

  /** A batch held until the backend went idle goes on now. */
  dispatchHeld(): void {
    this.leave(Hold.IdleWait);
    this.dispatch();
  }

  /**
   * The session's one state change: the batch is held for `why`. The holds exclude each other:
   * a batch is held only from a dispatch that found none (an idle wait, the proxy's own work)
   * or while routing with no lease (acquiring), and a new one replaces a stale idle wait (a
   * retried read acquiring elsewhere), which the next dispatch would re-decide anyway.
   */
  private enter(why: Hold): void {
    this.hold = why;
  }

  /** Lifts the hold `why`, if it is the one in force. */
  private leave(why: Hold): void {
    if (this.hold === why) this.hold = Hold.None;
  }

  /**
   * The server running this session's transaction was lost (failover): the client is told, the
   * transaction is over, and until it sends ROLLBACK/COMMIT every statement fails with `err`,
   * as in an aborted transaction.
   */
  abortTransaction(err: RwsplitPgError): void {
    this.aborted = err;
  }

  endAbortedTransaction(): void {
    this.aborted = null;
  }

  /** The error the next statement gets while an aborted transaction is not ended, or null. */
  get abortedTx(): RwsplitPgError | null {
    return this.aborted;
  }

  /** The backend currently running this session's work (for CancelRequest). */
  get currentBackend(): BackendConnection | null {
    return this.lease === null ? null : this.lease.conn;
  }

  private get backend(): BackendConnection | null {
    return this.lease === null ? null : this.lease.conn;
  }

  /** the node of the leased backend */
  get node(): NodeStatus | null {
    return this.lease === null ? null : this.lease.node;
  }

  /** transaction status of the leased backend, from its last ReadyForQuery (idle without one) */
  get txStatus(): number {
    return this.lease === null ? TX_IDLE : this.lease.txStatus;
  }

  // ---- client side -------------------------------------------------------------------

  onClientFrame(type: number, frame: Buffer): void {
    if (this.closed) return;
    this.clientFrames++;
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
        if (this.batch.bytes >= this.ctx.maxBatchBytes) this.dispatch();
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

  /** The client's frame reader (the native core hands back what it read and did not take). */
  setClientInput(input: ClientInput): void {
    if (this.native !== null) this.native.input = input;
  }

  /**
   * Between transactions with nothing pending or queued: closing the client now loses nothing
   * (a graceful restart). A session pinned by session state qualifies when its backend is idle
   * outside a transaction; that state is what a reconnecting client sets up again.
   */
  drainable(): boolean {
    if (this.closed || this.batch.length > 0 || this.hold !== Hold.None) return false;
    if (this.deferredBegin !== null || this.abortedTx !== null) return false;
    if (this.backend === null) return true;
    return this.pinnedBy !== null && this.txStatus === TX_IDLE && this.backendIdle();
  }

  /**
   * Graceful restart: what of this session moves to the new process with its socket
   * (session-handover.ts), or null when it cannot move (sharded, the native data plane). The
   * caller checked drainable().
   */
  handoverState(): HandedSession | null {
    if (this.shards !== null || this.native !== null) return null;
    // Answers still joined here must reach the socket before it moves (the caller checks it is written).
    this.out.flush();
    const statements: HandedSession['statements'] = [];
    for (const [name, info] of this.statements.entries())
      statements.push([name, info.query, info.paramTypes.toString('base64')]);
    return {
      statements,
      consistency: this.settings.consistency,
      token: this.settings.token.size > 0 ? formatPgToken(this.settings.token) : '',
      shardKey: this.settings.shardKey,
      tokenUnknown: this.causal.tokenUnknown || this.wroteOnLease,
      pinnedBy: this.pinnedBy,
    };
  }

  /**
   * Graceful restart, new process: takes on the state a session had in the old one, before
   * the first client frame. Statements are re-Parsed on each server before first use (no
   * backend of this process has them). A pinned session's server comes with attachLease.
   */
  adoptHandedState(st: HandedSession): void {
    for (const [name, query, types] of st.statements) {
      const paramTypes = Buffer.from(types, 'base64');
      this.statements.set(name, {
        key: statementKey(query, paramTypes),
        query,
        paramTypes,
        classification: this.ctx.classifier.classify(query),
        epoch: schemaEpoch.value,
      });
    }
    this.settings.consistency = st.consistency;
    if (st.token !== '') this.settings.token = parsePgToken(st.token, DEFAULT_SHARD);
    this.settings.shardKey = st.shardKey;
    this.causal.tokenUnknown = st.tokenUnknown;
    this.pinnedBy = st.pinnedBy;
  }

  /**
   * The client's chunk is read. A server runs an Execute as soon as it reads it, Sync or not,
   * and a COPY FROM STDIN then waits for the data: clients that put their Sync after CopyDone
   * wait for the CopyInResponse first. So a batch that ends in an Execute and goes to the
   * primary is sent now rather than held for a Sync that will not come yet.
   */
  onClientChunkEnd(): void {
    const last = this.batch.frames[this.batch.length - 1];
    if (last === undefined || last[0] !== FrontendCode.Execute || this.closed) return;
    if (
      this.backend === null &&
      this.batch.route(this.statements, this.deferredBegin !== null).target !== 'primary'
    )
      return;
    this.dispatch();
  }

  /** The client connection is gone (or we closed it): give the backend back or drop it. */
  onClientClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.ctx.sessionClosed(this.processId);
    // Sharded: the transaction's backends on other shards roll back with it.
    this.shards?.discardParked('client left mid-transaction');
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
    // Bounded memory: stop reading the client while we cannot forward what it sends.
    if (
      (this.hold === Hold.Acquiring || this.hold === Hold.IdleWait) &&
      this.batch.bytes >= this.ctx.maxBatchBytes
    )
      this.socket.pause();
  }

  // ---- routing -----------------------------------------------------------------------

  /** Sends the queued batch on, if nothing (acquiring, an idle wait, the proxy's own work) holds it. */
  dispatch(): void {
    if (this.hold !== Hold.None || this.batch.length === 0 || this.closed) return;
    // Sharded: a COPY FROM STDIN running on every shard takes the client's COPY messages.
    if (this.shards !== null && this.shards.takeCopyFrames()) return;
    if (this.backend === null && isCopyFrame(this.batch.first) && this.dropStrayCopyFrames()) return;
    const first = this.batch.first;
    if (
      first[0] === FrontendCode.Query &&
      mayBeSessionCommand(first) &&
      this.recovery.trySessionCommand(first)
    )
      return;
    if (this.abortedTx) {
      this.recovery.answerAbortedTransaction();
      return;
    }
    if (this.shards !== null && !this.shards.place()) return;
    const conn = this.backend;
    if (conn) {
      if (this.mustLeaveReplica()) {
        this.holdUntilIdle();
        return;
      }
      this.sendBatch(conn);
      return;
    }
    if (this.tryAnswerWithoutBackend()) return;
    // pg_cancel_backend/pg_terminate_backend: where the pid lives, not the primary.
    if (this.deferredBegin === null && this.pinnedBy === null && this.signals.tryRoute()) return;
    const decision = this.batch.route(this.statements, this.deferredBegin !== null);
    if (this.native !== null) this.learnRoute(decision);
    this.route(decision, null);
  }

  /**
   * A lone simple Query routed on its statement's own verdict goes into the native core's
   * decision cache: the same text with other literals is then read and sent by the core
   * (nativeRequest). Not a transaction boundary, session state, a hint, a reset of prepared
   * statements, rwsplit's own SET/SHOW or a signal function (those read their literals).
   */
  private learnRoute(decision: RouteDecision): void {
    const first = this.batch.first;
    if (this.batch.length !== 1 || first[0] !== FrontendCode.Query) return;
    if (this.deferredBegin !== null || this.pinnedBy !== null || this.shards !== null) return;
    const c = queryNote(this.batch.firstNote);
    if (c.statementCount !== 1 || c.tx !== null || c.pin !== null || c.hint !== null || c.resetsPrepared)
      return;
    if (mayBeSessionCommand(first) || first.includes('_backend')) return;
    if (decision.target === 'read' && decision.reason === 'read' && decision.retryable)
      this.native!.learn(first, NativeRoute.Read);
    else if (decision.target === 'primary' && decision.reason === 'write')
      this.native!.learn(first, NativeRoute.Write);
  }

  /**
   * The native core read a request whose statement is in its decision cache (learnRoute): the
   * usual routing without the classifier. When a backend is free now that the core can take,
   * and no causal check is to be made, the request is registered as sent on it and the core
   * writes it. Once a node is picked, anything else runs the usual way from there ('queued',
   * so the balancing counts one pick per request); before that, null: the core hands the bytes
   * back.
   */
  nativeRequest(
    route: NativeRoute,
    frame: Buffer,
    canEngage: (conn: BackendConnection) => boolean,
  ): BackendConnection | 'queued' | null {
    if (this.closed || this.lease !== null || this.batch.length > 0 || this.hold !== Hold.None) return null;
    if (this.deferredBegin !== null || this.pinnedBy !== null || this.aborted !== null) return null;
    if (this.shards !== null || this.onBoundary !== null) return null;
    const level = this.settings.consistency;
    let decision = route === NativeRoute.Read ? CACHED_READ : CACHED_WRITE;
    if (decision.target === 'read' && level === 'strong') decision = CACHED_STRONG;
    let node: NodeStatus | undefined;
    let reason: RouteReason = decision.reason;
    if (decision.target === 'primary') node = this.ctx.topology.writablePrimary(this.shard);
    else {
      const pick =
        level === 'eventual'
          ? this.ctx.readRouter.pick(undefined, { allowLagging: true })
          : this.ctx.readRouter.pick(undefined);
      if (!pick.ok) return null;
      node = pick.node;
      if (pick.reason === 'fallback-primary') reason = 'fallback-primary';
      if (level === 'read-your-writes' && node.role === 'replica') {
        // Only a replica known to have replayed the session's token: else CausalReads decides.
        const token = this.settings.token.get(this.shard);
        if (this.causal.tokenUnknown || (token !== undefined && this.ctx.replay.known(node) < token)) {
          this.queueNativeRequest(frame);
          this.causal.routeRead(node, decision, reason, null);
          return 'queued';
        }
        if (token !== undefined) this.ctx.stats.causalRead('replica-known');
      }
    }
    if (node === undefined) return null;
    const pool = this.poolFor(node);
    const conn = pool.tryAcquire();
    if (conn === null || node.fenced || conn.closed || !canEngage(conn)) {
      if (conn !== null) pool.release(conn);
      this.queueNativeRequest(frame);
      this.routeTo(node, decision, reason, null, null);
      return 'queued';
    }
    // routeTo, leaseFor and sendBatch for one Query, without touching the batch.
    this.clientFrames++;
    this.ctx.stats.routed(reason);
    this.routedAs = decision.target === 'read' || reason === 'strong' ? 'read' : 'write';
    this.retryable = this.ctx.retryReads && decision.retryable && reason !== 'strong';
    if (this.retryable) {
      this.retryFrames = [frame];
      this.retryNotes = LAZY_NOTES;
      this.retryFailed = null;
    } else this.dropRetryFrames();
    this.attachLease({ conn, pool, node, txStatus: TX_IDLE });
    if (this.routedAs === 'write') this.wroteOnLease = true;
    conn.unnamedKey = null;
    this.tracker.expect(Expect.Query);
    this.dispatchTimes.push(performance.now());
    node.outstanding++;
    this.ctx.stats.dispatched(node.spec.id, this.routedAs);
    return conn;
  }

  /** A request the core read goes the usual way from its routing on (see nativeRequest). */
  private queueNativeRequest(frame: Buffer): void {
    this.clientFrames++;
    this.queue(frame);
    this.routedCount = 1;
  }

  /**
   * COPY messages with no server session running a COPY for this client: a server ignores
   * them outside COPY mode (postgres.js sends a CopyFail after every finished COPY FROM
   * STDIN), so they are dropped rather than routed as a batch of their own. True when
   * nothing else is queued.
   */
  private dropStrayCopyFrames(): boolean {
    while (this.batch.length > 0 && isCopyFrame(this.batch.first)) this.batch.shift();
    return this.batch.length === 0;
  }

  /** A write queued behind pipelined reads on a replica waits until that replica is idle. */
  private mustLeaveReplica(): boolean {
    if (this.pinnedBy || this.node?.role === 'primary' || this.txStatus !== TX_IDLE) return false;
    if (this.tracker.idle && !this.translator.unsynced) return false;
    return this.batch.route(this.statements, false).target === 'primary';
  }

  /** Picks the node for the batch (`failed`: nodes a retried read must avoid) and leases a backend there. */
  route(decision: RouteDecision, failed: Set<string> | null): void {
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
    // The common read (no sharding, not eventual) passes no options object: nothing allocated.
    const pick =
      level === 'eventual' || shard !== undefined
        ? this.ctx.readRouter.pick(failed ?? undefined, { allowLagging: level === 'eventual', shard })
        : this.ctx.readRouter.pick(failed ?? undefined);
    if (!pick.ok) {
      this.failBatch(new RwsplitPgError('NO_READ_NODE', SqlState.CannotConnectNow, pick.message, pick.hint));
      return;
    }
    const reason: RouteReason = pick.reason === 'fallback-primary' ? 'fallback-primary' : decision.reason;
    if (level === 'read-your-writes' && pick.node.role === 'replica')
      this.causal.routeRead(pick.node, decision, reason, failed);
    else this.routeTo(pick.node, decision, reason, failed, null);
  }

  /** The routed frames become the retryable read's (see retryFrames). */
  private keepRetryFrames(): void {
    const whole = this.routedCount >= this.batch.length;
    this.retryFrames = whole ? this.batch.frames : this.batch.frames.slice(0, this.routedCount);
    this.retryNotes = whole ? this.batch.notes : this.batch.notes.slice(0, this.routedCount);
  }

  /** Part of the answer reached the client: the read can no longer run elsewhere. */
  private endRetry(): void {
    this.retryable = false;
    this.dropRetryFrames();
  }

  private dropRetryFrames(): void {
    this.retryFrames = NO_FRAMES;
    this.retryNotes = NO_NOTES;
    this.retryFailed = null;
  }

  /** Writes wait up to failover.bufferMs for a primary (a failover or switchover under way). */
  awaitPrimary(decision: RouteDecision, failed: Set<string> | null): void {
    const topology = this.ctx.topology;
    const during = topology.failover(this.shard);
    if (this.ctx.failoverBufferMs <= 0 && !during) {
      this.failBatch(noPrimaryError(during));
      return;
    }
    this.enter(Hold.Acquiring);
    void topology.whenWritable(this.shard, Math.max(this.ctx.failoverBufferMs, 1)).then((node) => {
      this.leave(Hold.Acquiring);
      if (this.closed) return;
      this.socket.resume();
      if (node) this.routeTo(node, decision, decision.reason, failed, null);
      else this.failBatch(noPrimaryError(topology.failover(this.shard) ?? during));
    });
  }

  /** Leases a backend on `node` for the batch; `checkToken`: the replica must first show it has replayed it. */
  routeTo(
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
    this.retryable = retry;
    if (retry) {
      this.keepRetryFrames();
      this.retryFailed = failed;
    } else this.dropRetryFrames();
    let pool = this.pools.get(node.spec.id);
    if (!pool) this.pools.set(node.spec.id, (pool = this.ctx.pool(node, this.login)));
    const conn = pool.tryAcquire();
    if (conn) this.leaseFor(conn, pool, node, decision, checkToken);
    else this.awaitConnection(pool, node, decision, failed, checkToken);
  }

  /** Every connection of the node's pool is lent: the batch waits for one (or moves on if none comes). */
  private awaitConnection(
    pool: BackendPool,
    node: NodeStatus,
    decision: RouteDecision,
    failed: Set<string> | null,
    checkToken: bigint | null,
  ): void {
    this.enter(Hold.Acquiring);
    // Frames keep queuing while we wait: the retry copy must hold only the routed ones.
    if (this.retryable) {
      this.retryFrames = this.batch.frames.slice(0, this.routedCount);
      this.retryNotes = this.batch.notes.slice(0, this.routedCount);
    }
    pool.acquire().then(
      (c) => {
        this.leave(Hold.Acquiring);
        if (this.closed) {
          pool.release(c);
          return;
        }
        if (node.fenced || c.closed) {
          // Fenced while we waited (a failover): never send anything there. Or the connection
          // closed between its hand-over and now, while nobody listened: it would swallow the batch.
          if (c.closed) pool.lost();
          else pool.release(c);
          this.route(decision, failed);
          return;
        }
        this.leaseFor(c, pool, node, decision, checkToken);
      },
      (err: Error) => {
        this.leave(Hold.Acquiring);
        if (this.closed) return;
        this.socket.resume();
        if (node.role !== 'primary' && replicaCannotServe(err)) {
          // Nothing was sent: the read goes to another replica, else to the primary.
          this.readElsewhere(decision, new Set(failed ?? []).add(node.spec.id));
          return;
        }
        if (this.retryable) {
          const failedHere = (this.retryFailed ??= new Set()).add(node.spec.id);
          this.ctx.stats.retried(node.spec.id);
          this.route(decision, failedHere);
          return;
        }
        if (
          decision.target === 'primary' &&
          isNodeFailure(err) &&
          this.ctx.failoverBufferMs > 0 &&
          !node.reachable
        ) {
          // The primary just died under us (the pool marked it down): nothing was sent, so the
          // write waits for a new primary like any write that finds none (failover.bufferMs).
          this.route(decision, failed);
          return;
        }
        this.failBatch(asClientError(err, node));
      },
    );
  }

  /**
   * A replica refused this session's login (its database or role not replayed there yet, not
   * accepting connections, full): another replica that can serve takes the read, else the
   * primary, whatever primaryReads says, rather than an error the primary would not give.
   */
  private readElsewhere(decision: RouteDecision, failed: Set<string>): void {
    const shard = this.ctx.sharding ? this.shard : undefined;
    const pick = this.ctx.readRouter.pick(failed, {
      allowLagging: this.settings.consistency === 'eventual',
      shard,
    });
    if (pick.ok) {
      this.route(decision, failed);
      return;
    }
    const primary = this.ctx.topology.primary(this.shard);
    if (primary) this.routeTo(primary, decision, 'fallback-primary', failed, null);
    else this.route(decision, failed);
  }

  /** This session's pool for a node (the login is fixed for the session's life). */
  poolFor(node: NodeStatus): BackendPool {
    let pool = this.pools.get(node.spec.id);
    if (!pool) this.pools.set(node.spec.id, (pool = this.ctx.pool(node, this.login)));
    return pool;
  }

  private leaseFor(
    conn: BackendConnection,
    pool: BackendPool,
    node: NodeStatus,
    decision: RouteDecision,
    checkToken: bigint | null,
  ): void {
    this.attachLease({ conn, pool, node, txStatus: TX_IDLE });
    this.socket.resume();
    if (checkToken !== null) this.causal.checkReplay(conn, node, checkToken, decision);
    else this.startLease(conn);
  }

  /** Sends the routed batch on a backend just leased (a deferred BEGIN goes first). */
  startLease(conn: BackendConnection): void {
    // Sharded: the session's SET statements, on a backend that does not have them yet.
    const sync = this.shards?.syncQuery(conn) ?? null;
    if (sync !== null) this.translator.injectQuery(sync, conn);
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

  private sendBatch(conn: BackendConnection, count = this.batch.length): void {
    const frames = this.batch.take(count);
    if (this.routedAs === 'write') this.wroteOnLease = true;
    if (this.txStatus === TX_BLOCK && !this.commitInFlight) this.commitInFlight = endsWithCommit(frames);
    const result = this.translator.translate(frames, conn);
    if (result.pin && !this.pinnedBy) this.pinnedBy = result.pin;
    const node = this.node!;
    for (let i = 0; i < result.readyCount; i++) {
      this.dispatchTimes.push(performance.now());
      node.outstanding++;
      this.ctx.stats.dispatched(node.spec.id, this.routedAs);
    }
    this.out.flush();
    this.native?.afterSend(conn, result.readyCount, this.tracker.plain);
    if (result.backendFull) {
      this.socket.pause();
      conn.socket.once('drain', () => this.socket.resume());
    }
  }

  /** Answers a lone BEGIN, or the COMMIT/ROLLBACK that ends an empty deferred one, without a backend. */
  private tryAnswerWithoutBackend(): boolean {
    const first = this.batch.first;
    if (this.batch.length !== 1 || first[0] !== FrontendCode.Query || this.pinnedBy) return false;
    const c = queryNote(this.batch.firstNote);
    if (c.statementCount !== 1 || c.hint) return false;
    if (this.deferredBegin === null && c.tx === 'begin') {
      // Deferring BEGIN lets the next statement decide the node: `SET TRANSACTION READ ONLY`
      // makes it a replica transaction. Snapshots start at the first statement anyway.
      this.deferredBegin = Buffer.from(first);
      if (this.shards) this.shards.beginFrame = this.deferredBegin;
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

  /** Drops the whole batch and sends these frames instead. */
  answer(...frames: Buffer[]): void {
    this.batch.clear();
    for (const f of frames) this.out.push(f);
    this.out.flush();
  }

  /** Frames of the proxy's own, no ReadyForQuery: the request goes on (a CopyInResponse). */
  sendFrames(frames: readonly Buffer[]): void {
    for (const f of frames) this.out.push(f);
    this.out.flush();
    this.dispatch();
  }

  /** The proxy's own answer to the request it took off the batch: frames, ReadyForQuery, then the rest. */
  reply(frames: readonly Buffer[], status: number): void {
    for (const f of frames) this.out.push(f);
    this.out.push(readyForQuery(status));
    this.out.flush();
    this.dispatch();
    this.onBoundary?.();
  }

  /**
   * Answers a batch that cannot be routed: one ErrorResponse for each group the server would
   * have answered, each closed by ReadyForQuery. A transaction the proxy deferred cannot go on.
   */
  failBatch(err: RwsplitPgError, status = TX_IDLE): void {
    this.ctx.stats.clientError(err.sqlstate);
    if (this.deferredBegin) {
      this.fatal(err);
      return;
    }
    const { frames } = this.batch.take();
    if (this.retryable) this.endRetry();
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

  /** Takes the first queued frame off the batch (the proxy answers it itself). */
  shiftBatch(): Buffer {
    return this.batch.shift();
  }

  // ---- backend side ------------------------------------------------------------------

  onBackendFrame(type: number, frame: Buffer): void {
    if (type === BackendCode.ErrorResponse && isServerGoingAway(frame)) {
      if (this.backend?.terminationRequested) {
        // pg_terminate_backend through rwsplit: end this client as the server ends it.
        this.out.push(frame);
        this.out.flush();
        this.close();
        return;
      }
      // The server is shutting down or lost its postmaster: a node failure, not an answer.
      // The client must not see a FATAL (it would take its own session for dead): the
      // connection is dropped and onBackendClose answers once, in the client's terms — a read
      // runs again elsewhere, a write or transaction gets an error and the session goes on.
      this.backend?.destroy(
        `${this.node?.spec.id ?? 'server'} is terminating: ${decodeErrorFields(frame).get('M') ?? ''}`,
      );
      return;
    }
    if (type === BackendCode.CommandComplete ? isDdlComplete(frame) : type === BackendCode.ErrorResponse)
      this.noteSchemaChange(type, frame);
    if (this.account(type, frame) === Verdict.Forward) {
      if (this.retryable) this.endRetry();
      this.out.push(frame);
    }
  }

  /** The tracker's verdict on a server frame, and what a ReadyForQuery tells the session. */
  private account(type: number, frame: Buffer): Verdict {
    const verdict = this.tracker.onFrame(type, frame);
    if (type === BackendCode.ReadyForQuery) {
      if (this.ddlInTransaction && frame[5] === TX_IDLE) {
        // Committed now: statements prepared meanwhile on other backends saw the old schema.
        this.ddlInTransaction = false;
        schemaChanged();
      }
      if (this.lease !== null) this.lease.txStatus = frame[5]!;
      this.commitInFlight = false;
      if (verdict === Verdict.Forward) this.onReady();
    }
    return verdict;
  }

  /**
   * The native core sent part of an answer to the client itself (native-forward.ts): the same
   * bookkeeping as for frames forwarded here. `record`: the completion frames it forwarded (a
   * ReadyForQuery's status follows its type); the core carries nothing else that matters here.
   */
  nativeForwarded(record: Buffer, sent: number): void {
    if (sent > 0 && this.retryable) this.endRetry();
    for (let i = 0; i < record.length; i++) {
      const type = record[i]!;
      this.account(
        type,
        type === BackendCode.ReadyForQuery ? readyForQuery(record[++i]!) : (COMPLETION_STUBS[type] ?? EMPTY),
      );
    }
  }

  /** DDL done here, or a server's sign of a schema change: shared statements re-Parse (statement-registry.ts). */
  private noteSchemaChange(type: number, frame: Buffer): void {
    if (
      type === BackendCode.ErrorResponse &&
      !STALE_STATEMENT_STATES.has(decodeErrorFields(frame).get('C') ?? '')
    )
      return;
    schemaChanged();
    if (type === BackendCode.CommandComplete) this.ddlInTransaction = true;
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
        this.wroteOnLease = false;
        this.causal.captureThenRelease(conn, this.node);
        return;
      }
      this.wroteOnLease = false;
      this.releaseBackend();
      if (this.batch.length > 0) this.dispatchHeld();
      else if (this.native !== null && this.hold === Hold.None && !this.closed && this.onBoundary === null)
        this.native.arm();
    } else if (this.hold === Hold.IdleWait && conn && this.tracker.idle && !this.translator.unsynced) {
      // Answers the proxy gives itself (SHOW rwsplit.…) waited for the server to catch up.
      this.dispatchHeld();
    }
    this.onBoundary?.();
  }

  /** Nothing pending, outside a transaction, no session state: the backend can serve others. */
  private isBackendReusable(): boolean {
    return (
      this.tracker.idle &&
      !this.translator.unsynced &&
      this.txStatus === TX_IDLE &&
      this.pinnedBy === null &&
      this.hold !== Hold.Acquiring &&
      this.hold !== Hold.Gated
    );
  }

  /** No answer is pending on the leased backend. */
  backendIdle(): boolean {
    return this.tracker.idle && !this.translator.unsynced;
  }

  /** The transaction status the client was last told (the proxy answers some requests itself). */
  clientTxStatus(): number {
    if (this.abortedTx) return TX_FAILED;
    if (this.backend) return this.txStatus;
    return this.deferredBegin ? TX_BLOCK : TX_IDLE;
  }

  /** The client was told it is in a transaction (or a failed one) and owes the next message. */
  idleInTransaction(): boolean {
    if (this.closed || this.batch.length > 0 || this.hold === Hold.Acquiring || this.hold === Hold.Gated)
      return false;
    if (this.backend !== null && !this.backendIdle()) return false;
    return this.clientTxStatus() !== TX_IDLE;
  }

  /** Sends what queued meanwhile: a batch that waited for the backend to go idle goes now. */
  resumeQueued(): void {
    if (this.batch.length > 0) this.dispatchHeld();
  }

  onBackendClose(conn: BackendConnection, reason: string): void {
    if (conn !== this.backend) return;
    // Frames forwarded from the same read as the FATAL that closed the backend (a whole
    // answer, ReadyForQuery included) are still in the coalescer, and the chunk-end flush will
    // not come: the listener is gone. They belong to the client; without this it waits forever.
    this.out.flush();
    const node = this.node!;
    if (this.hold === Hold.Gated) {
      // The proxy's own statement holds the lease (causal token work) and nothing the client
      // sent is on it: the gated step's continuation decides what comes next. The server can
      // go between its answer and that continuation (a FATAL right behind the ReadyForQuery,
      // in the same chunk); recovering here as well would leave the session gated for ever.
      this.leaseLost(node, reason);
      return;
    }
    this.ctx.nodeFailed(node.spec.id, reason);
    node.outstanding -= this.dispatchTimes.length;
    this.dispatchTimes.length = 0;
    const pendingReady = this.tracker.pendingReady;
    // Nothing asked and unanswered (e.g. the server died between two requests): nobody to tell.
    const awaited = pendingReady > 0 || !this.tracker.idle || this.translator.unsynced;
    this.tracker.reset();
    this.translator.reset();
    const lost = this.endLease();
    lost.pool.lost();
    const wasInTransaction = lost.txStatus !== TX_IDLE || this.pinnedBy !== null;
    if (this.closed) return;
    // Reading from the client may have been paused until that backend drained: it never will.
    this.socket.resume();
    if (this.retryable && !wasInTransaction) {
      // Nothing of the answer reached the client: run the same frames on another node.
      const failedHere = (this.retryFailed ??= new Set()).add(node.spec.id);
      this.ctx.stats.retried(node.spec.id);
      const notes =
        this.retryNotes === LAZY_NOTES
          ? this.retryFrames.map((f) => noteFrame(this.ctx.classifier, f))
          : this.retryNotes;
      this.batch.prepend({ frames: this.retryFrames, notes });
      this.route(this.batch.route(this.statements, false), failedHere);
      return;
    }
    const commitInFlight = this.commitInFlight;
    this.commitInFlight = false;
    if (!wasInTransaction) {
      if (awaited) this.recovery.requestLost(node, reason, pendingReady);
      else this.dispatch();
    } else if (this.pinnedBy === null)
      this.recovery.transactionLost(node, reason, commitInFlight, pendingReady);
    else this.recovery.pinnedSessionLost(node, reason);
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
    if (this.retryable) this.endRetry();
    this.out.push(bytes);
  }

  parseFailed(key: string | null): void {
    const conn = this.backend;
    if (!conn) return;
    if (key === null) conn.unnamedKey = null;
    else conn.prepared.delete(key);
  }

  closeSkipped(key: string, epoch: number): void {
    this.backend?.prepared.set(key, epoch);
  }

  readyDropped(count: number, extended: boolean): void {
    // Syncs the server read inside a COPY: the dispatches they counted will never be answered.
    this.dispatchTimes.splice(-count, count);
    if (this.node) this.node.outstanding -= count;
    // An Execute's COPY leaves the server waiting for a Sync: the backend is not free yet.
    if (extended) this.translator.unsynced = true;
  }

  // ---- the lease -----------------------------------------------------------------------

  /**
   * The one place a lease ends: the session lets go of its backend, which the caller gives
   * back to its pool, discards, reports lost or parks.
   */
  private endLease(): Lease {
    const lease = this.lease!;
    this.lease = null;
    return lease;
  }

  /** Gives the leased backend back to its pool. */
  releaseBackend(): void {
    const { conn, pool } = this.endLease();
    pool.release(conn);
    this.onBoundary?.();
  }

  private dropBackend(reason: string): void {
    const { conn, pool } = this.endLease();
    pool.discard(conn, reason);
  }

  /** The leased connection died during the proxy's own statement: a node failure, nothing owed to the client. */
  leaseLost(node: NodeStatus, reason: string): void {
    this.ctx.nodeFailed(node.spec.id, reason);
    if (this.lease !== null) this.endLease().pool.lost();
    this.tracker.reset();
    this.translator.reset();
  }

  /** Gives up the lease, its transaction still open on the backend (a shard the transaction left). */
  detachLease(): Lease {
    return this.endLease();
  }

  /** The one place a lease starts: a backend just lent, or one detached earlier taken back with its transaction. */
  attachLease(lease: Lease): void {
    lease.conn.listener = this;
    this.lease = lease;
  }

  /** Drops the backends of the transaction's other shards (their servers roll back). */
  discardParked(reason: string): void {
    this.shards?.discardParked(reason);
  }

  // ---- endings -------------------------------------------------------------------------

  /** Sends a FATAL error in the client's protocol and closes this client only. */
  fatal(err: RwsplitPgError, detail?: string): void {
    if (this.socket.destroyed) return;
    this.native?.disarm();
    this.ctx.stats.clientError(err.sqlstate);
    this.out.flush();
    this.socket.end(err.toFatalFrame(detail));
    this.onClientClose();
  }

  close(): void {
    this.native?.disarm();
    this.socket.end();
    this.onClientClose();
  }
}

/** What holds a session's queued batch back; one at a time (see ClientSession.enter). */
const enum Hold {
  /** nothing: dispatch sends the batch */
  None,
  /** routed, waiting for a backend (a pool's free connection, or a primary during a failover) */
  Acquiring,
  /** the leased backend must answer earlier requests first (a move to the primary, rwsplit's SHOW) */
  IdleWait,
  /** the proxy's own work runs on the lease (causal token), or beside it (shard fan-out) */
  Gated,
}

const NO_FRAMES: Buffer[] = [];
/** The retry notes of a request the native core read: classified only if it is retried. */
const LAZY_NOTES: FrameNote[] = [];
const CACHED_READ: RouteDecision = { target: 'read', reason: 'read', retryable: true };
const CACHED_WRITE: RouteDecision = { target: 'primary', reason: 'write', retryable: false };
const CACHED_STRONG: RouteDecision = { target: 'primary', reason: 'strong', retryable: true };
const EMPTY = Buffer.alloc(0);
/** Stand-ins for the completion frames the native core forwarded: the tracker reads their type only. */
const COMPLETION_STUBS: Partial<Record<number, Buffer>> = Object.fromEntries(
  [...'123TnCIs'].map((c) => [c.charCodeAt(0), Buffer.from([c.charCodeAt(0), 0, 0, 0, 4])]),
);
const NO_NOTES: FrameNote[] = [];

function isCopyFrame(frame: Buffer): boolean {
  const t = frame[0];
  return t === FrontendCode.CopyData || t === FrontendCode.CopyDone || t === FrontendCode.CopyFail;
}

/**
 * SQLSTATEs of a login a replica refuses where the primary may accept it: database or role
 * missing (created on the primary, not replayed yet), not accepting connections (57P03, e.g.
 * hot standby not ready), too many connections, a password the replica's catalog does not
 * know yet.
 */
const REPLICA_LOGIN_REFUSALS: ReadonlySet<string> = new Set(['3D000', '28000', '28P01', '57P03', '53300']);

function replicaCannotServe(err: Error): boolean {
  if (!(err instanceof BackendStartupError) || err.nodeFailure || !err.frame) return false;
  return REPLICA_LOGIN_REFUSALS.has(decodeErrorFields(err.frame).get('C') ?? '');
}

/** A connection attempt that failed because of the node (refused, reset, timeout), not the login. */
function isNodeFailure(err: Error): boolean {
  return err instanceof BackendStartupError && err.nodeFailure;
}
