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
import type { NodeStatus } from '../core/topology.js';
import type { BackendConnection, BackendListener, BackendLogin } from './backend-connection.js';
import type { BackendPool } from './backend-pool.js';
import { RwsplitPgError, SqlState } from './errors.js';
import { OutputCoalescer } from './output-coalescer.js';
import {
  BackendCode,
  decodeErrorFields,
  encodeCommandComplete,
  FrontendCode,
  readyForQuery,
} from './protocol/index.js';
import { ResponseTracker, Verdict, type TrackerSink } from './response-tracker.js';
import { BatchTranslator } from './batch-translator.js';
import { classifyQuery, decideRoute, type RouteDecision } from './route-decision.js';
import type { RouteReason, SessionContext } from './session-context.js';
import { ClientStatements } from './statement-registry.js';

const TX_IDLE = 0x49; // 'I'
const TX_BLOCK = 0x54; // 'T'

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
    if (this.acquiring || this.waitingForIdle || this.batch.length === 0 || this.closed) return;
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
    let node: NodeStatus | undefined;
    let reason: RouteReason = decision.reason;
    if (decision.target === 'primary') {
      node = this.ctx.topology.primary();
      if (!node) {
        this.failBatch(
          new RwsplitPgError(
            'NO_PRIMARY',
            SqlState.CannotConnectNow,
            'no primary is available for this write: every node that could be the primary is down or fenced',
            'Check the primary listed in postgres.nodes; `rwsplit status` shows what rwsplit sees.',
          ),
        );
        return;
      }
    } else {
      const pick = this.ctx.readRouter.pick(failed ?? undefined);
      if (!pick.ok) {
        this.failBatch(
          new RwsplitPgError('NO_READ_NODE', SqlState.CannotConnectNow, pick.message, pick.hint),
        );
        return;
      }
      node = pick.node;
      if (pick.reason === 'fallback-primary') reason = 'fallback-primary';
    }
    if (failed) reason = 'retry';
    this.ctx.stats.routed(reason);
    const retry =
      this.ctx.retryReads && decision.target === 'read' && this.deferredBegin === null && decision.retryable;
    this.routedCount = this.batch.length;
    this.routedAs = decision.target === 'read' ? 'read' : 'write';
    this.retryable = retry ? { frames: this.batch, failed: failed ?? new Set() } : null;
    let pool = this.pools.get(node.spec.id);
    if (!pool) this.pools.set(node.spec.id, (pool = this.ctx.pool(node, this.login)));
    const conn = pool.tryAcquire();
    if (conn) {
      this.lease(conn, pool, node);
      return;
    }
    this.acquiring = true;
    // Frames keep queuing while we wait: the retry copy must hold only the routed ones.
    if (this.retryable) this.retryable.frames = this.batch.slice();
    pool.acquire().then(
      (c) => {
        this.acquiring = false;
        if (this.closed) {
          pool.release(c);
          return;
        }
        this.lease(c, pool, node);
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

  private lease(conn: BackendConnection, pool: BackendPool, node: NodeStatus): void {
    conn.listener = this;
    this.backend = conn;
    this.backendPool = pool;
    this.node = node;
    this.socket.resume();
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
    let frames = this.batch;
    if (count >= frames.length) {
      this.batch = [];
      this.batchBytes = 0;
    } else {
      frames = this.batch.slice(0, count);
      this.batch = this.batch.slice(count);
      this.batchBytes = this.batch.reduce((n, f) => n + f.length, 0);
    }
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
  private failBatch(err: RwsplitPgError): void {
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
        this.out.push(readyForQuery(TX_IDLE));
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
      const conn = this.backend;
      if (conn) {
        conn.socket.pause();
        this.socket.once('drain', () => conn.socket.resume());
      }
    }
    if (this.backend && this.isBackendReusable()) {
      this.releaseBackend();
      if (this.batch.length > 0) {
        this.waitingForIdle = false;
        this.dispatch();
      }
    }
  }

  /** Nothing pending, outside a transaction, no session state: the backend can serve others. */
  private isBackendReusable(): boolean {
    return (
      this.tracker.idle &&
      !this.translator.unsynced &&
      this.txStatus === TX_IDLE &&
      this.pinnedBy === null &&
      !this.acquiring
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
    const err = new RwsplitPgError(
      'BACKEND_LOST',
      SqlState.ConnectionFailure,
      `rwsplit lost its connection to ${node.spec.id} (${node.spec.host}:${node.spec.port}) while it ran this request: ${reason}`,
      wasInTransaction ? undefined : 'The request may or may not have run; retry it if it is idempotent.',
    );
    if (wasInTransaction) {
      this.fatal(err, 'the transaction or session state on that server is lost');
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

function asClientError(err: Error, node: NodeStatus): RwsplitPgError {
  if (err instanceof RwsplitPgError) return err;
  return new RwsplitPgError(
    'BACKEND_UNAVAILABLE',
    SqlState.ConnectionFailure,
    `cannot connect to ${node.spec.id} (${node.spec.host}:${node.spec.port}): ${err.message}`,
    'Check that the node is running; `rwsplit status` shows what rwsplit sees.',
  );
}
