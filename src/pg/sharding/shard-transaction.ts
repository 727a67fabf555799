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
  NO_DATA,
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
  noPrimaryError,
  type SessionRecovery,
} from '../session/session-recovery.js';
import { chooseShard } from './shard-choice.js';
import { CopyRowSplitter, copyInPlan, type CopyInPlan } from './shard-copy.js';
import { ShardCopyIn, type CopyOutcome } from './shard-copy-in.js';
import { ShardFanOut } from './shard-fanout.js';
import { classifyKeyless } from './shard-keyless.js';
import { extendedGroup, rewrittenGroup, unnamedGroup, type ExtendedGroup } from './shard-extended.js';
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
  /** sends frames of the proxy's own to the client, no ReadyForQuery (a CopyInResponse) */
  sendFrames(frames: readonly Buffer[]): void;
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
  /** a COPY FROM STDIN running on every shard: the client's COPY messages go there */
  private copy: { run: ShardCopyIn; leases: Lease[]; inTransaction: boolean } | null = null;

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
    if (first[0] !== FrontendCode.Query && this.placeExtendedTxControl()) return false;
    if (this.parked.size > 0 && s.currentBackend && this.endsSpanningTransaction(first)) return false;
    const inTransaction = (s.currentBackend !== null && s.txStatus !== TX_IDLE) || s.deferredBegin !== null;
    if (!inTransaction) this.txLocals = [];
    const simple = s.batch.length === 1 && first[0] === FrontendCode.Query ? decodeQuery(first) : null;
    const statements = simple === null ? null : lex(simple).statements;
    const change = statements?.length === 1 ? settingChange(statements[0]!, simple!) : null;
    if (change !== null) return this.placeSetting(first, change, inTransaction);
    if (statements?.length === 1) {
      const copy = copyInPlan(statements[0]!, this.sharding.resolver);
      if (copy instanceof RwsplitPgError) {
        s.failBatch(copy, s.clientTxStatus());
        return false;
      }
      if (copy !== null && !this.hinted(simple!)) return this.placeCopyIn(first, copy, inTransaction);
    }
    if (simple === null && this.placeExtendedSetting(inTransaction)) return false;
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
        if (!this.writesOrPins() || this.prepareOnly())
          return this.placeOn(this.sharding.resolver.anyShard());
        if (!s.currentBackend && this.isTransactionControl(first)) return true;
        s.failBatch(this.sharding.resolver.unknownShardError(), s.clientTxStatus());
        return false;
      case 'unknown': {
        if (!s.currentBackend && this.isTransactionControl(first)) return true; // BEGIN waits for its first statement
        // A statement prepared without running it (Parse, Describe, Sync): any shard can
        // check and describe it (every shard has the same schema); its Binds are placed later.
        if (this.prepareOnly())
          return s.currentBackend && inTransaction ? true : this.placeOn(this.sharding.resolver.anyShard());
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

  /** Drops the backends of the transaction's other shards (their servers roll back), and those of a COPY. */
  discardParked(reason: string): void {
    const copying = this.copy?.leases ?? [];
    this.copy = null;
    for (const p of [...this.parked.values(), ...copying]) {
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
    if (!endsWithCommit(s.batch) || this.prepareOnly()) return false;
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
      s.failBatch(pinnedToShardError(s.node!.spec.shard, s.pinnedBy, target), s.clientTxStatus());
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
  private finishDistributed(end: 'commit' | 'rollback', count = 1, acks: readonly Buffer[] = []): void {
    const s = this.session;
    for (let i = 0; i < count; i++) s.shiftBatch();
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
      // An error has no acknowledgements before it: the server stops at the failing message.
      const answered = frames[0]?.[0] === BackendCode.ErrorResponse ? frames : [...acks, ...frames];
      if (!s.closed) s.reply(answered, TX_IDLE);
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
      this.refuseInTransaction(setInTransactionError());
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
    if (s.currentBackend && !s.backendIdle()) {
      s.holdUntilIdle();
      return false;
    }
    if (inTransaction && s.txStatus === TX_FAILED) return true; // the server answers 25P02
    if (inTransaction && (s.pinnedBy || (keyless.kind === 'every-shard' && !keyless.atomic))) {
      this.refuseInTransaction(
        new RwsplitPgError(
          'SHARD_EVERY_SHARD_IN_TRANSACTION',
          SqlState.FeatureNotSupported,
          s.pinnedBy
            ? `rwsplit: this statement has no shard key and runs on every shard, but this session is pinned to one backend by ${s.pinnedBy}`
            : 'rwsplit: this statement runs on every shard and cannot run inside a transaction block',
          'Run it on its own (autocommit), or give the shard with a /* rwsplit:shard=NAME */ comment.',
        ),
      );
      return false;
    }
    if (!inTransaction && s.currentBackend) {
      s.holdUntilIdle();
      return false;
    }
    const frames = group === null ? s.batch.frames.slice() : group.frames;
    const count = s.batch.length;
    // What the client did not send is not acknowledged: a Bind of a named statement has no ParseComplete.
    const answer = (out: Buffer[]): Buffer[] =>
      group === null || group.parsed ? out : out.filter((f) => f[0] !== BackendCode.ParseComplete);
    if (keyless.kind === 'every-shard') {
      if (!inTransaction) {
        this.runOwn(count, async () =>
          answer(await this.fanOut.everyShard(Buffer.concat(frames), keyless.atomic, keyless.replicated)),
        );
        return false;
      }
      this.onTransactionShards(count, async (leases) => {
        const r = await this.fanOut.runOn(leases, Buffer.concat(frames), keyless.replicated);
        return { frames: answer(r.frames), failed: r.failed };
      });
      return false;
    }
    const plan = keyless.plan;
    let query: Buffer;
    let finish = (merged: Buffer[]): Buffer[] => merged;
    if (group === null) query = encodeQuery(plan.shardSql);
    else {
      // The LIMIT/OFFSET parameters cut from the text are still bound: declare their type.
      const types = [...group.paramTypes];
      while (types.length < group.params.length) types.push(0);
      for (const i of plan.cutParams) if (types[i] === 0) types[i] = INT8_OID;
      query = rewrittenGroup(frames, group, plan.shardSql, types);
      finish = (merged) => {
        if (merged[0]?.[0] === BackendCode.ErrorResponse) return merged;
        const rows = group.describe ? merged : merged.filter((f) => f[0] !== BackendCode.RowDescription);
        return answer([PARSE_COMPLETE, BIND_COMPLETE, ...rows]);
      };
    }
    if (!inTransaction) {
      this.runOwn(count, async () => finish(await this.fanOut.mergeRead(plan, query)));
      return false;
    }
    this.onTransactionShards(count, async (leases) => {
      const merged = await this.fanOut.mergeOn(plan, query, leases);
      return { frames: finish(merged), failed: merged[0]?.[0] === BackendCode.ErrorResponse };
    });
    return false;
  }

  /** An extended-protocol group (Parse, Bind, Execute, Sync; or a Bind of a named statement) with no shard. */
  private placeExtendedKeyless(inTransaction: boolean): boolean | null {
    const group = this.keylessGroup();
    return group === null ? null : this.placeKeyless(group.sql, group, inTransaction);
  }

  /** The batch as one self-contained extended-protocol group, the client's statement name taken off. */
  private keylessGroup(): ExtendedGroup | null {
    const s = this.session;
    const group = unnamedGroup(s.batch.frames, s.batch.notes, this.statements);
    if (group === null) return null;
    const parsed = extendedGroup(group.frames);
    if (parsed === null) return null;
    // A named statement parsed in this batch: the proxy answers it, so it remembers it here
    // (its later Binds are placed like this one).
    if (group.register !== null) this.statements.set(group.register.name, group.register.info);
    return { ...parsed, parsed: group.parsed };
  }

  /**
   * SET/RESET sent with the extended protocol (a driver that prepares every statement): run
   * once on one shard and recorded, as a simple SET is. True when it was handled.
   */
  private placeExtendedSetting(inTransaction: boolean): boolean {
    const s = this.session;
    const frames = s.batch.frames;
    if (!frames.some((f) => f[0] === FrontendCode.Bind)) return false;
    const group = unnamedGroup(frames, s.batch.notes, this.statements);
    if (group === null) return false;
    const parsed = extendedGroup(group.frames);
    if (parsed === null) return false;
    const statements = lex(parsed.sql).statements;
    const change = statements.length === 1 ? settingChange(statements[0]!, parsed.sql) : null;
    if (change === null || change.kind === 'local') return false;
    if (inTransaction) {
      this.refuseInTransaction(setInTransactionError());
      return true;
    }
    if (s.currentBackend) {
      if (s.pinnedBy) return false; // runs on the pinned backend, as a simple SET does
      s.holdUntilIdle();
      return true;
    }
    if (group.register !== null) this.statements.set(group.register.name, group.register.info);
    const count = s.batch.length;
    const body = Buffer.concat(group.frames);
    this.runOwn(count, async () => {
      const out = await this.fanOut.applySetting(body, change);
      return group.parsed ? out : out.filter((f) => f[0] !== BackendCode.ParseComplete);
    });
    return true;
  }

  /**
   * BEGIN, COMMIT or ROLLBACK sent with the extended protocol (pgbench -M extended/prepared,
   * drivers that prepare everything): a BEGIN is answered by the proxy and opens the
   * transaction on the shard of its first statement, as a simple one does; COMMIT/ROLLBACK end
   * a transaction that spans shards on every shard, or one that reached none. True when handled.
   */
  private placeExtendedTxControl(): boolean {
    const s = this.session;
    const g = unnamedGroup(s.batch.frames, s.batch.notes, this.statements);
    const tx = g?.classification.tx;
    if (g === null || (tx !== 'begin' && tx !== 'commit' && tx !== 'rollback')) return false;
    const group = extendedGroup(g.frames);
    if (group === null || group.params.length > 0) return false;
    const acks = [...(g.parsed ? [PARSE_COMPLETE] : []), BIND_COMPLETE, ...(group.describe ? [NO_DATA] : [])];
    const count = s.batch.length;
    if (tx === 'begin') {
      if (s.currentBackend !== null || s.deferredBegin !== null || s.pinnedBy !== null) return false;
      if (g.register !== null) this.statements.set(g.register.name, g.register.info);
      for (let i = 0; i < count; i++) s.shiftBatch();
      s.deferredBegin = this.beginFrame = encodeQuery(group.sql);
      s.reply([...acks, encodeCommandComplete('BEGIN')], TX_BLOCK);
      return true;
    }
    if (s.currentBackend !== null && this.parked.size > 0) {
      if (g.register !== null) this.statements.set(g.register.name, g.register.info);
      if (!s.backendIdle()) s.holdUntilIdle();
      else this.finishDistributed(tx, count, acks);
      return true;
    }
    if (s.currentBackend === null && s.deferredBegin !== null) {
      if (g.register !== null) this.statements.set(g.register.name, g.register.info);
      for (let i = 0; i < count; i++) s.shiftBatch();
      s.deferredBegin = null;
      s.reply([...acks, encodeCommandComplete(tx === 'commit' ? 'COMMIT' : 'ROLLBACK')], TX_IDLE);
      return true;
    }
    return false;
  }

  /** The batch only prepares (Parse, Describe, Close, Sync, Flush): nothing is bound or run. */
  private prepareOnly(): boolean {
    const frames = this.session.batch.frames;
    let parse = false;
    for (const f of frames) {
      const t = f[0];
      if (t === FrontendCode.Parse) parse = true;
      else if (
        t !== FrontendCode.Describe &&
        t !== FrontendCode.Close &&
        t !== FrontendCode.Sync &&
        t !== FrontendCode.Flush
      )
        return false;
    }
    return parse;
  }

  /** A hint, the session's shard key or the default shard places the statement. */
  private hinted(sql: string): boolean {
    return this.settings.shardKey !== null || this.sharding.resolver.resolve(sql).kind !== 'unknown';
  }

  /**
   * Runs the proxy's own work on the transaction's backend of every shard: the current one,
   * the parked ones, and one opened (BEGIN, and its SET LOCALs) on each shard the transaction
   * had not reached. Afterwards the current shard stays current and the others are parked, so
   * COMMIT is a two-phase commit over all of them. If the work fails, the transaction is
   * rolled back on every shard and, as on a server, every statement gets 25P02 until ROLLBACK.
   */
  private onTransactionShards(count: number, run: (leases: Lease[]) => Promise<CopyOutcome>): void {
    const s = this.session;
    for (let i = 0; i < count; i++) s.shiftBatch();
    const current = s.currentBackend ? s.detachLease() : null;
    const begin = this.transactionBegin();
    s.deferredBegin = null;
    const leases: Lease[] = current ? [current] : [];
    const work = async (): Promise<CopyOutcome> => {
      let outcome: CopyOutcome;
      try {
        await this.reachEveryShard(leases, begin);
        outcome = await run(leases);
      } catch (err) {
        outcome = {
          frames: [asClientError(err as Error, this.ctx.topology.nodes[0]!).toFrame()],
          failed: true,
        };
      }
      if (outcome.failed) await this.rollbackAll(leases);
      return outcome;
    };
    s.gate(work(), (outcome) => this.settleTransaction(leases, outcome));
  }

  /** After the proxy's work on every shard of a transaction: the transaction goes on, or has failed. */
  private settleTransaction(leases: Lease[], outcome: CopyOutcome): void {
    const s = this.session;
    if (outcome.failed) {
      if (s.closed) return;
      s.abortTransaction(
        new RwsplitPgError(
          'IN_FAILED_TRANSACTION',
          SqlState.InFailedSqlTransaction,
          'current transaction is aborted, commands ignored until end of transaction block',
          'Send ROLLBACK.',
        ),
      );
      s.reply(outcome.frames, TX_FAILED);
      return;
    }
    const [first, ...rest] = leases;
    s.attachLease(first!);
    for (const p of rest) {
      p.conn.listener = this.parkedListener(p);
      this.parked.set(p.node.spec.shard, p);
    }
    if (s.closed) {
      this.discardParked('client left mid-transaction');
      return;
    }
    s.reply(outcome.frames, TX_BLOCK);
  }

  /** Adds to `leases` the transaction's backend on each shard it lacks (a parked one, or a new one with BEGIN). */
  private async reachEveryShard(leases: Lease[], begin: string): Promise<void> {
    for (const shard of this.sharding.resolver.shardNames) {
      if (leases.some((l) => l.node.spec.shard === shard)) continue;
      const parked = this.parked.get(shard);
      if (parked) {
        this.parked.delete(shard);
        parked.conn.listener = null;
        leases.push(parked);
        continue;
      }
      const lease = await this.openOn(shard);
      leases.push(lease);
      await internalQuery(lease.conn, begin);
      lease.txStatus = TX_BLOCK;
    }
  }

  /** A backend of the shard's primary, brought to the session's settings. */
  private async openOn(shard: string): Promise<Lease> {
    const node = this.ctx.topology.writablePrimary(shard);
    if (!node) throw noPrimaryError(this.ctx.topology.failover(shard));
    const pool = this.session.poolFor(node);
    const conn = await pool.acquire();
    const lease: Lease = { conn, pool, node, txStatus: TX_IDLE };
    const sync = this.fanOut.state.syncQuery(conn);
    if (sync !== null) {
      try {
        await internalQuery(conn, sync);
      } catch (err) {
        pool.discard(conn, 'settings could not be applied');
        throw err;
      }
    }
    return lease;
  }

  /** Rolls every lease's transaction back and gives the backends back (those that fail are dropped). */
  private async rollbackAll(leases: readonly Lease[]): Promise<void> {
    await Promise.all(
      leases.map(async (l) => {
        l.conn.listener = null;
        try {
          if (!l.conn.closed) await internalQuery(l.conn, 'ROLLBACK');
          l.pool.release(l.conn);
        } catch {
          if (l.conn.closed) l.pool.lost();
          else l.pool.discard(l.conn, 'ROLLBACK failed');
        }
      }),
    );
  }

  /** The statement that opens the transaction on a shard it reaches: its BEGIN and SET LOCALs. */
  private transactionBegin(): string {
    const begin = decodeQuery(this.session.deferredBegin ?? this.beginFrame).replace(/;\s*$/, '');
    return this.txLocals.length === 0 ? begin : `${begin}; ${this.txLocals.join('; ')}`;
  }

  /**
   * `COPY t FROM STDIN` of a sharded or reference table: started on every shard (inside the
   * transaction, or in a transaction of its own committed with two-phase commit), the client's
   * rows split by key (shard-copy.ts).
   */
  private placeCopyIn(frame: Buffer, plan: CopyInPlan, inTransaction: boolean): boolean {
    const s = this.session;
    if (s.currentBackend && !s.backendIdle()) {
      s.holdUntilIdle();
      return false;
    }
    if (inTransaction && s.txStatus === TX_FAILED) return true;
    if (s.pinnedBy) {
      s.failBatch(
        new RwsplitPgError(
          'SHARD_COPY_PINNED',
          SqlState.FeatureNotSupported,
          `rwsplit: COPY of a sharded table runs on every shard, but this session is pinned to one backend by ${s.pinnedBy}`,
        ),
        s.clientTxStatus(),
      );
      return false;
    }
    if (!inTransaction && s.currentBackend) {
      s.holdUntilIdle();
      return false;
    }
    const start = async (leases: Lease[]): Promise<CopyOutcome> => {
      const splitter = await this.splitterFor(plan, leases);
      const targets = leases.map((l) => ({ shard: l.node.spec.shard, conn: l.conn }));
      const started = await ShardCopyIn.start(targets, frame, splitter, plan.keyColumn === null);
      if ('error' in started) return { frames: [started.error], failed: true };
      this.copy = { run: started.copy, leases, inTransaction };
      return { frames: [started.response], failed: false };
    };
    if (inTransaction) {
      // The copy's leases stay out of the session until it ends (takeCopyFrames).
      s.shiftBatch();
      const current = s.currentBackend ? s.detachLease() : null;
      const begin = this.transactionBegin();
      s.deferredBegin = null;
      const leases: Lease[] = current ? [current] : [];
      const work = async (): Promise<CopyOutcome> => {
        try {
          await this.reachEveryShard(leases, begin);
          const r = await start(leases);
          if (r.failed) await this.rollbackAll(leases);
          return r;
        } catch (err) {
          await this.rollbackAll(leases);
          return {
            frames: [asClientError(err as Error, this.ctx.topology.nodes[0]!).toFrame()],
            failed: true,
          };
        }
      };
      s.gate(work(), (r) => {
        if (r.failed) this.settleTransaction(leases, r);
        else if (!s.closed) s.sendFrames(r.frames);
        else this.discardParked('client left during COPY');
      });
      return false;
    }
    s.shiftBatch();
    const leases: Lease[] = [];
    const work = async (): Promise<CopyOutcome> => {
      try {
        for (const shard of this.sharding.resolver.shardNames) {
          const lease = await this.openOn(shard);
          leases.push(lease);
          await internalQuery(lease.conn, 'BEGIN');
          lease.txStatus = TX_BLOCK;
        }
        const r = await start(leases);
        if (r.failed) await this.rollbackAll(leases);
        return r;
      } catch (err) {
        await this.rollbackAll(leases);
        return { frames: [asClientError(err as Error, this.ctx.topology.nodes[0]!).toFrame()], failed: true };
      }
    };
    s.gate(work(), (r) => {
      if (r.failed) {
        if (!s.closed) s.reply(r.frames, TX_IDLE);
      } else if (!s.closed) s.sendFrames(r.frames);
      else this.discardParked('client left during COPY');
    });
    return false;
  }

  /** The row splitter of a COPY: the key's field index from the column list, or the table's columns. */
  private async splitterFor(plan: CopyInPlan, leases: readonly Lease[]): Promise<CopyRowSplitter> {
    // Rows are split by the leases' order (the transaction's current shard comes first).
    const index = new Map(leases.map((l, i) => [l.node.spec.shard, i]));
    const lease = leases[0]!;
    let keyIndex: number | null = null;
    if (plan.keyColumn !== null) {
      let columns = plan.columns;
      if (columns === null) {
        const name = plan.table.map((p) => `"${p.replace(/"/g, '""')}"`).join('.');
        const r = await internalQuery(
          lease.conn,
          `SELECT attname FROM pg_attribute WHERE attrelid = '${name.replace(/'/g, "''")}'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
        );
        columns = r.rows.map((row) => row[0] ?? '');
      }
      keyIndex = columns.indexOf(plan.keyColumn);
      if (keyIndex < 0)
        throw new RwsplitPgError(
          'SHARD_COPY_NO_KEY',
          SqlState.FeatureNotSupported,
          `rwsplit: this COPY does not give the shard key column ${plan.keyColumn}, so its rows have no shard`,
          'List the key column in the COPY column list.',
        );
    }
    const resolver = this.sharding.resolver;
    return new CopyRowSplitter(keyIndex, leases.length, (key) => index.get(resolver.shardForKey(key)) ?? 0);
  }

  /**
   * While a COPY runs on every shard: the client's CopyData goes to the shards, CopyDone or
   * CopyFail ends it. True while a COPY runs (the session sends nothing else meanwhile).
   */
  takeCopyFrames(): boolean {
    const c = this.copy;
    if (c === null) return false;
    const s = this.session;
    while (s.batch.length > 0) {
      const f = s.batch.first;
      const t = f[0];
      if (t === FrontendCode.CopyData) {
        s.shiftBatch();
        c.run.data(f);
        continue;
      }
      if (t === FrontendCode.Flush || t === FrontendCode.Sync) {
        s.shiftBatch(); // ignored in COPY mode, as the server does
        continue;
      }
      s.shiftBatch();
      this.copy = null;
      const fail =
        t === FrontendCode.CopyDone
          ? null
          : t === FrontendCode.CopyFail
            ? f.toString('utf8', 5, f.length - 1)
            : `unexpected message type 0x${t!.toString(16)} during COPY from stdin`;
      s.gate(this.finishCopy(c, fail), (r) => {
        if (c.inTransaction) this.settleTransaction(c.leases, r);
        else if (!s.closed) s.reply(r.frames, TX_IDLE);
      });
      return true;
    }
    return true;
  }

  /** Ends a COPY on every shard; outside a transaction, commits it (two-phase) or rolls it back. */
  private async finishCopy(
    c: { run: ShardCopyIn; leases: Lease[]; inTransaction: boolean },
    fail: string | null,
  ): Promise<CopyOutcome> {
    const r = await c.run.end(fail);
    if (r.failed) {
      await this.rollbackAll(c.leases);
      return r;
    }
    if (c.inTransaction) return r;
    const committed = await this.twoPhaseCommit(c.leases);
    for (const l of c.leases) {
      l.conn.listener = null;
      if (l.conn.closed) l.pool.lost();
      else l.pool.release(l.conn);
    }
    const ok = committed.some(
      (f) => f[0] === BackendCode.CommandComplete && f.toString('utf8', 5, f.length - 1) === 'COMMIT',
    );
    if (!ok) return { frames: committed, failed: true };
    return {
      frames: [...committed.filter((f) => f[0] === BackendCode.NoticeResponse), ...r.frames],
      failed: false,
    };
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
          SqlState.InFailedSqlTransaction,
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
            code: SqlState.Warning,
            message: `committed; shards ${result.pending.join(', ')} finish the commit when they are back (transaction ${result.gid})`,
          }),
        );
      }
      return out;
    } catch (err) {
      const e =
        err instanceof RwsplitPgError
          ? err
          : new RwsplitPgError(
              'TWOPC_FAILED',
              SqlState.TransactionRollback,
              `COMMIT failed: ${(err as Error).message}`,
            );
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

/** A session held on one shard's backend (session state) meets a statement of another shard. */
export function pinnedToShardError(shard: string, pinnedBy: string, target: string): RwsplitPgError {
  return new RwsplitPgError(
    'PINNED_TO_SHARD',
    SqlState.FeatureNotSupported,
    `this session is pinned to shard ${shard} by ${pinnedBy}; it cannot run statements on shard ${target}`,
  );
}

function setInTransactionError(): RwsplitPgError {
  return new RwsplitPgError(
    'SHARD_SET_IN_TRANSACTION',
    SqlState.FeatureNotSupported,
    'rwsplit: SET and RESET of session settings inside a transaction are not supported on a sharded endpoint',
    'Run SET outside the transaction, or use SET LOCAL for this transaction only.',
  );
}
