/**
 * Sharded PostgreSQL inside one client session: which shard a batch runs on, a transaction
 * that moves between shards (the backends of the shards it left stay open, parked, their
 * transactions still running), its end (two-phase commit over every participant, or a
 * rollback everywhere), and `/* rwsplit:all-shards *\/` reads. The ClientSession owns the
 * backend lease; this class parks it and hands parked ones back.
 */
import type { NodeStatus } from '../../core/topology.js';
import type { BackendConnection, BackendListener } from '../backend/backend-connection.js';
import type { BackendPool } from '../backend/backend-pool.js';
import { readAllShards } from './all-shards-read.js';
import type { CausalReads } from '../routing/causal-reads.js';
import { RwsplitPgError, SqlState } from '../errors.js';
import { InternalQueryError, internalQuery } from '../backend/internal-query.js';
import {
  BackendCode,
  BIND_COMPLETE,
  PARSE_COMPLETE,
  decodeQuery,
  encodeCommandComplete,
  encodeNoticeResponse,
  encodeQuery,
  FrontendCode,
} from '../protocol/index.js';
import type { Lease } from '../backend/lease.js';
import type { ClientBatch } from '../session/client-batch.js';
import { queryNote } from '../session/frame-note.js';
import type { SessionContext, ShardingContext } from '../session/session-context.js';
import type { SessionSettings } from '../session/session-commands.js';
import {
  asClientError,
  endsWithCommit,
  TX_BLOCK,
  TX_FAILED,
  TX_IDLE,
  type SessionRecovery,
} from '../session/session-recovery.js';
import { chooseShard } from './shard-choice.js';
import { ShardFanOut } from './shard-fanout.js';
import { classifyKeyless } from './shard-keyless.js';
import { extendedGroup, rewrittenGroup, type ExtendedGroup } from './shard-extended.js';
import { settingChange, type SettingChange } from './shard-session-state.js';
import { lex } from '../classifier/lexer.js';
import type { ClientStatements } from '../session/statement-registry.js';
import type { Participant } from './twopc/index.js';

const BEGIN = encodeQuery('BEGIN');
const INT8_OID = 20;

/** What ShardTransaction needs of its session (ClientSession implements it). */
export interface ShardSessionHost {
  /** client frames not yet sent to a backend */
  readonly batch: ClientBatch;
  readonly currentBackend: BackendConnection | null;
  /** the node of the leased backend */
  readonly node: NodeStatus | null;
  /** transaction status of the leased backend */
  readonly txStatus: number;
  /** reason the session is pinned to its backend, or null */
  readonly pinnedBy: string | null;
  readonly closed: boolean;
  /** a BEGIN answered by the proxy, sent ahead of the next batch */
  deferredBegin: Buffer | null;
  /** the transaction is over for the proxy: the next statements get this error until ROLLBACK */
  readonly abortedTx: RwsplitPgError | null;
  /** the transaction is over for the proxy: the next statements get `err` until ROLLBACK */
  abortTransaction(err: RwsplitPgError): void;
  /** the shard the batch being routed belongs to */
  shard: string;
  /** the batch waits for the leased backend to go idle */
  holdUntilIdle(): void;
  /** the proxy runs its own work: the client's requests wait until it settles (see RoutingHost) */
  gate<T>(work: Promise<T>, then: (result: T) => void): void;
  /** a write ran on the lease (its commit position is still to be taken) */
  wroteOnLease: boolean;
  /** no answer pending on the leased backend */
  backendIdle(): boolean;
  /** the transaction status the client was last told */
  clientTxStatus(): number;
  /** answers every request of the batch with this error */
  failBatch(err: RwsplitPgError, status: number): void;
  /** removes the first queued frame */
  shiftBatch(): Buffer;
  /** gives up the lease without releasing it; its transaction status goes with it */
  detachLease(): Lease;
  /** takes a parked backend (with its transaction) back as the lease */
  attachLease(p: Lease): void;
  /** this session's pool for a node */
  poolFor(node: NodeStatus): BackendPool;
  /** sends the proxy's own answer to one request, closed by ReadyForQuery, then dispatches */
  reply(frames: readonly Buffer[], status: number): void;
  dispatch(): void;
}

/** A session's place among the shards; owned by the ClientSession when sharding is configured. */
export class ShardTransaction {
  /** the transaction's backends on other shards (a transaction that spans shards) */
  private readonly parked = new Map<string, Lease>();
  /** the BEGIN that opened the transaction, replayed on each shard it reaches */
  beginFrame: Buffer = BEGIN;
  /** the transaction's SET LOCAL statements, replayed after its BEGIN on each shard it reaches later */
  private txLocals: string[] = [];
  /** statements run on every shard, and the session's settings on every backend */
  readonly fanOut: ShardFanOut;

  constructor(
    private readonly ctx: SessionContext,
    private readonly sharding: ShardingContext,
    private readonly settings: SessionSettings,
    private readonly statements: ClientStatements,
    private readonly causal: CausalReads,
    private readonly recovery: SessionRecovery,
    private readonly session: ShardSessionHost,
  ) {
    this.fanOut = new ShardFanOut(ctx, sharding, {
      poolFor: (node) => session.poolFor(node),
      readNodeOf: (shard) => this.readNodeOf(shard),
      commitAll: (all) => this.twoPhaseCommit(all),
    });
  }

  /** The query that brings a backend just leased to this session's settings, or null. */
  syncQuery(conn: BackendConnection): Buffer | null {
    const sql = this.fanOut.state.syncQuery(conn);
    return sql === null ? null : encodeQuery(sql);
  }

  /**
   * Sets the session's shard for the queued batch, or handles the batch itself (an error, a
   * read of every shard, the end of a transaction that spans shards, a switch to another
   * shard's backend) and returns false.
   */
  place(): boolean {
    const s = this.session;
    const first = s.batch.first;
    if (this.parked.size > 0 && s.currentBackend && this.endsSpanningTransaction(first)) return false;
    const inTransaction = (s.currentBackend !== null && s.txStatus !== TX_IDLE) || s.deferredBegin !== null;
    if (!inTransaction) this.txLocals = [];
    const simple = s.batch.length === 1 && first[0] === FrontendCode.Query ? decodeQuery(first) : null;
    const statements = simple === null ? null : lex(simple).statements;
    const change = statements?.length === 1 ? settingChange(statements[0]!, simple!) : null;
    if (change !== null) return this.placeSetting(first, change, inTransaction);
    const choice = chooseShard(s.batch, this.statements, this.sharding.resolver, this.settings.shardKey);
    switch (choice.kind) {
      case 'none':
        return true;
      case 'error':
        s.failBatch(choice.error, s.clientTxStatus());
        return false;
      case 'all-shards':
        if (inTransaction || s.currentBackend || s.batch.length !== 1 || first[0] !== FrontendCode.Query) {
          s.failBatch(
            new RwsplitPgError(
              'ALL_SHARDS_FORM',
              SqlState.FeatureNotSupported,
              '/* rwsplit:all-shards */ reads run as one simple-protocol query outside a transaction',
            ),
            s.clientTxStatus(),
          );
        } else this.readEveryShard(first);
        return false;
      case 'anywhere':
        if (s.currentBackend && inTransaction) return true; // the transaction's current shard
        // A write or session state without a table (`SELECT nextval('s')`, an advisory lock)
        // still belongs to one shard, which the text does not name.
        if (!this.writesOrPins()) return this.placeOn(this.sharding.resolver.anyShard());
        if (!s.currentBackend && this.isTransactionControl(first)) return true;
        s.failBatch(this.sharding.resolver.unknownShardError(), s.clientTxStatus());
        return false;
      case 'unknown': {
        if (!s.currentBackend && this.isTransactionControl(first)) return true; // BEGIN waits for its first statement
        const keyless =
          simple !== null && statements?.length === 1
            ? this.placeKeyless(simple, null, inTransaction)
            : this.placeExtendedKeyless(inTransaction);
        if (keyless !== null) return keyless;
        if (s.currentBackend && inTransaction) return true; // the transaction's current shard
        s.failBatch(this.sharding.resolver.unknownShardError(), s.clientTxStatus());
        return false;
      }
      case 'shard':
        return this.placeOn(choice.shard);
    }
  }

  /** Drops the backends of the transaction's other shards (their servers roll back). */
  discardParked(reason: string): void {
    for (const p of this.parked.values()) {
      p.conn.listener = null;
      p.pool.discard(p.conn, reason);
    }
    this.parked.clear();
  }

  /**
   * In a transaction that spans shards: a lone COMMIT/ROLLBACK ends it on every shard (true);
   * any other COMMIT is refused (true); anything else goes on (false).
   */
  private endsSpanningTransaction(first: Buffer): boolean {
    const s = this.session;
    const end = this.distributedEnd(first);
    if (end !== null) {
      if (!s.backendIdle()) s.holdUntilIdle();
      else this.finishDistributed(end);
      return true;
    }
    if (!endsWithCommit(s.batch)) return false;
    s.failBatch(
      new RwsplitPgError(
        'DISTRIBUTED_COMMIT_FORM',
        SqlState.FeatureNotSupported,
        'a transaction that spans shards must end with a simple-protocol COMMIT or ROLLBACK on its own',
        'Send COMMIT as a plain query (node-postgres: client.query("COMMIT")).',
      ),
      TX_BLOCK,
    );
    return true;
  }

  /** The batch belongs to shard `target`: route it there, or first move the transaction. */
  private placeOn(target: string): boolean {
    const s = this.session;
    if (!s.currentBackend || s.node!.spec.shard === target) {
      s.shard = target;
      return true;
    }
    if (!s.backendIdle()) {
      s.holdUntilIdle(); // the current shard's answers first
      return false;
    }
    if (s.pinnedBy) {
      s.failBatch(
        new RwsplitPgError(
          'PINNED_TO_SHARD',
          SqlState.FeatureNotSupported,
          `this session is pinned to shard ${s.node!.spec.shard} by ${s.pinnedBy}; it cannot run statements on shard ${target}`,
        ),
        s.clientTxStatus(),
      );
      return false;
    }
    if (s.txStatus === TX_IDLE) {
      s.holdUntilIdle(); // released in a moment; then routed afresh
      return false;
    }
    this.switchShard(target);
    return false;
  }

  /** Parks the current shard's backend (its transaction stays open) and continues on `target`. */
  private switchShard(target: string): void {
    const s = this.session;
    const cur = s.detachLease();
    cur.conn.listener = this.parkedListener(cur);
    this.parked.set(cur.node.spec.shard, cur);
    s.shard = target;
    const back = this.parked.get(target);
    if (back) {
      this.parked.delete(target);
      s.attachLease(back);
    } else {
      // The transaction reaches a new shard: its BEGIN (and SET LOCALs) go ahead of the batch there.
      s.deferredBegin =
        this.txLocals.length === 0
          ? this.beginFrame
          : encodeQuery(`${decodeQuery(this.beginFrame).replace(/;\s*$/, '')}; ${this.txLocals.join('; ')}`);
    }
    s.dispatch();
  }

  private parkedListener(p: Lease): BackendListener {
    return {
      onBackendFrame: () => undefined,
      onBackendChunkEnd: () => undefined,
      onBackendClose: (_conn, reason) => {
        if (this.parked.get(p.node.spec.shard) !== p) return;
        this.parked.delete(p.node.spec.shard);
        p.pool.lost();
        this.ctx.nodeFailed(p.node.spec.id, reason);
        // The whole transaction is lost: end it everywhere and tell the client.
        const current = this.session.currentBackend;
        if (current) current.destroy(`shard ${p.node.spec.shard} of this transaction was lost: ${reason}`);
        else this.recovery.transactionLost(p.node, reason, false, 0);
      },
    };
  }

  /** 'commit' or 'rollback' when the batch is one simple COMMIT/ROLLBACK, else null. */
  private distributedEnd(first: Buffer): 'commit' | 'rollback' | null {
    if (this.session.batch.length !== 1 || first[0] !== FrontendCode.Query) return null;
    const c = queryNote(this.session.batch.firstNote);
    if (c.statementCount !== 1) return null;
    return c.tx === 'commit' ? 'commit' : c.tx === 'rollback' ? 'rollback' : null;
  }

  /** The batch writes or sets session state (the classifier's verdict, as for routing). */
  private writesOrPins(): boolean {
    const d = this.session.batch.route(this.statements, false);
    return d.reason === 'write' || d.reason === 'pinned';
  }

  /** A lone BEGIN/COMMIT/ROLLBACK: needs no shard before a statement gives one. */
  private isTransactionControl(first: Buffer): boolean {
    if (this.session.batch.length !== 1 || first[0] !== FrontendCode.Query) return false;
    const c = queryNote(this.session.batch.firstNote);
    return c.statementCount === 1 && c.tx !== null;
  }

  /**
   * COMMIT of a transaction that wrote on several shards: two-phase commit over every
   * participant's backend (PREPARE TRANSACTION, a durable decision, COMMIT PREPARED); ROLLBACK
   * (or COMMIT of a failed transaction) rolls every participant back. The client sees one
   * ordinary answer.
   */
  private finishDistributed(end: 'commit' | 'rollback'): void {
    const s = this.session;
    s.shiftBatch();
    const all: Lease[] = [...this.parked.values(), s.detachLease()];
    this.parked.clear();
    const failed = all.some((p) => p.txStatus === TX_FAILED);
    const work =
      end === 'commit' && !failed
        ? this.twoPhaseCommit(all)
        : Promise.all(all.map((p) => internalQuery(p.conn, 'ROLLBACK').catch(() => undefined))).then(() => [
            encodeCommandComplete('ROLLBACK'),
          ]);
    s.gate(work, (frames) => {
      for (const p of all) {
        p.conn.listener = null;
        if (p.conn.closed) p.pool.lost();
        else p.pool.release(p.conn);
      }
      s.wroteOnLease = false;
      if (!s.closed) s.reply(frames, TX_IDLE);
    });
  }

  /**
   * A SET/RESET of a server parameter. Outside a transaction the session's settings change
   * (tried on one shard first, then applied on each backend the session leases); SET LOCAL in a
   * transaction goes to its current shard and is replayed on the shards it reaches later.
   */
  private placeSetting(first: Buffer, change: SettingChange, inTransaction: boolean): boolean {
    const s = this.session;
    if (change.kind === 'local') {
      if (inTransaction) this.txLocals.push(change.sql);
      if (s.currentBackend) return true;
      return this.placeOn(this.sharding.resolver.anyShard());
    }
    if (inTransaction) {
      this.refuseInTransaction(
        new RwsplitPgError(
          'SHARD_SET_IN_TRANSACTION',
          SqlState.FeatureNotSupported,
          'rwsplit: SET and RESET of session settings inside a transaction are not supported on a sharded endpoint',
          'Run SET outside the transaction, or use SET LOCAL for this transaction only.',
        ),
      );
      return false;
    }
    if (s.currentBackend && s.pinnedBy) {
      // Pinned to this backend (LISTEN, a temporary table…): the SET runs there, and is kept
      // for the backends of other shards.
      this.fanOut.state.record(change);
      this.fanOut.state.markApplied(s.currentBackend);
      return true;
    }
    if (s.currentBackend) {
      // A backend still leased (answers pending): the setting waits until it is given back.
      s.holdUntilIdle();
      return false;
    }
    this.runOwn(1, () => this.fanOut.applySetting(first, change));
    return false;
  }

  /** A one-statement text whose shard is unknown: run on every shard, or refused with the reason; null if neither. */
  private placeKeyless(sql: string, group: ExtendedGroup | null, inTransaction: boolean): boolean | null {
    const s = this.session;
    const keyless = classifyKeyless(sql, this.sharding.resolver, group?.params);
    if (keyless === null) return null;
    if (keyless.kind === 'refused') {
      s.failBatch(keyless.error, s.clientTxStatus());
      return false;
    }
    if (inTransaction) {
      this.refuseInTransaction(
        new RwsplitPgError(
          'SHARD_EVERY_SHARD_IN_TRANSACTION',
          SqlState.FeatureNotSupported,
          'rwsplit: this statement has no shard key and runs on every shard, which is supported outside a transaction block only',
          'Run it on its own (autocommit), or give the shard with a /* rwsplit:shard=NAME */ comment.',
        ),
      );
      return false;
    }
    if (s.currentBackend) {
      s.holdUntilIdle();
      return false;
    }
    const frames = s.batch.frames.slice();
    if (keyless.kind === 'every-shard') {
      this.runOwn(frames.length, () =>
        this.fanOut.everyShard(Buffer.concat(frames), keyless.atomic, keyless.replicated),
      );
      return false;
    }
    const plan = keyless.plan;
    if (group === null) {
      this.runOwn(1, () => this.fanOut.mergeRead(plan, encodeQuery(plan.shardSql)));
      return false;
    }
    // The LIMIT/OFFSET parameters cut from the text are still bound: declare their type.
    const types = [...group.paramTypes];
    while (types.length < group.params.length) types.push(0);
    for (const i of plan.cutParams) if (types[i] === 0) types[i] = INT8_OID;
    const query = rewrittenGroup(frames, group, plan.shardSql, types);
    this.runOwn(frames.length, async () => {
      const merged = await this.fanOut.mergeRead(plan, query);
      if (merged[0]?.[0] === BackendCode.ErrorResponse) return merged;
      const rows = group.describe ? merged : merged.filter((f) => f[0] !== BackendCode.RowDescription);
      return [PARSE_COMPLETE, BIND_COMPLETE, ...rows];
    });
    return false;
  }

  /** An extended-protocol group (Parse, Bind, Execute, Sync on the unnamed statement) with no shard. */
  private placeExtendedKeyless(inTransaction: boolean): boolean | null {
    const group = extendedGroup(this.session.batch.frames);
    return group === null ? null : this.placeKeyless(group.sql, group, inTransaction);
  }

  /**
   * A statement refused inside a transaction block. A transaction that has reached no server
   * yet (a BEGIN the proxy answered) fails as the server's would: every statement gets 25P02
   * until ROLLBACK. One that runs on a shard goes on there.
   */
  private refuseInTransaction(err: RwsplitPgError): void {
    const s = this.session;
    if (s.currentBackend === null && s.deferredBegin !== null) {
      s.deferredBegin = null;
      s.failBatch(err, TX_FAILED);
      s.abortTransaction(
        new RwsplitPgError(
          'IN_FAILED_TRANSACTION',
          '25P02',
          'current transaction is aborted, commands ignored until end of transaction block',
          'Send ROLLBACK.',
        ),
      );
      return;
    }
    s.failBatch(err, s.clientTxStatus());
  }

  /** Takes the request off the batch, holds the client's others while `work` runs, and answers with its frames. */
  private runOwn(count: number, work: () => Promise<Buffer[]>): void {
    const s = this.session;
    for (let i = 0; i < count; i++) s.shiftBatch();
    s.gate(
      work().catch((err: unknown) => [asClientError(err as Error, this.ctx.topology.nodes[0]!).toFrame()]),
      (frames) => {
        if (!s.closed) s.reply(frames, TX_IDLE);
      },
    );
  }

  private async twoPhaseCommit(all: readonly Lease[]): Promise<Buffer[]> {
    const timeoutMs = this.sharding.statementTimeoutMs;
    const participants: Participant[] = all.map((p) => ({
      shard: p.node.spec.shard,
      exec: (sql) =>
        withConnectionDeadline(p.conn, internalQuery(p.conn, sql), timeoutMs).then(
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
      const result = await this.sharding.coordinator.commit(participants);
      await this.causal.recordCommits(all);
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
    const s = this.session;
    s.shiftBatch();
    const shards = [...new Set(this.ctx.topology.nodes.map((n) => n.spec.shard))];
    const leases: { pool: BackendPool; conn: BackendConnection }[] = [];
    const run = async (): Promise<Buffer[]> => {
      for (const shard of shards) {
        const node = this.readNodeOf(shard);
        const pool = s.poolFor(node);
        leases.push({ pool, conn: await pool.acquire() });
      }
      for (const l of leases) {
        const sync = this.fanOut.state.syncQuery(l.conn);
        if (sync !== null) await internalQuery(l.conn, sync);
      }
      return readAllShards(
        frame,
        leases.map((l, i) => ({ shard: shards[i]!, conn: l.conn })),
      );
    };
    const work = run().catch((err: unknown) => [
      asClientError(err as Error, this.ctx.topology.nodes[0]!).toFrame(),
    ]);
    s.gate(work, (frames) => {
      for (const l of leases) {
        if (l.conn.closed) l.pool.lost();
        else l.pool.release(l.conn);
      }
      if (!s.closed) s.reply(frames, TX_IDLE);
    });
  }

  /** The node an all-shards read uses on `shard`: the primary under `strong`, else a read node. */
  readNodeOf(shard: string): NodeStatus {
    let node: NodeStatus | undefined;
    // Under read-your-writes, a shard this session wrote on is read on its primary: these reads
    // do not wait for a replica to replay the session's writes.
    if (
      this.settings.consistency === 'strong' ||
      (this.settings.consistency === 'read-your-writes' && this.settings.token.has(shard))
    )
      node = this.ctx.topology.primary(shard);
    else {
      const d = this.ctx.readRouter.pick(undefined, { shard });
      if (d.ok) node = d.node;
    }
    if (!node)
      throw new RwsplitPgError(
        'NO_READ_NODE',
        SqlState.CannotConnectNow,
        `no node of shard ${shard} can serve this read`,
      );
    return node;
  }
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
