/**
 * What a client session tells its client when a server fails under it, and the requests it
 * answers itself rather than forwarding: a request lost with its server gets an error; a
 * transaction lost with its server (a crash, a failover fencing it) leaves the client in an
 * aborted transaction, as PostgreSQL would, until it sends ROLLBACK or COMMIT; rwsplit's own
 * SHOW/SET (`rwsplit.causal_token`, …) are answered in order with the rest.
 */
import type { NodeStatus } from '../../core/topology.js';
import type { BackendConnection } from '../backend/backend-connection.js';
import type { ClientBatch, TakenFrames } from './client-batch.js';
import { parseNote, queryNote } from './frame-note.js';
import { RwsplitPgError, SqlState } from '../errors.js';
import type { OutputCoalescer } from './output-coalescer.js';
import {
  decodeErrorFields,
  decodeQuery,
  encodeCommandComplete,
  FrontendCode,
  readyForQuery,
} from '../protocol/index.js';
import type { SessionContext } from './session-context.js';
import { applySessionCommand, parseSessionCommand, type SessionSettings } from './session-commands.js';

// Transaction status bytes of ReadyForQuery.
/** ReadyForQuery status 'I': not in a transaction block */
export const TX_IDLE = 0x49;
/** ReadyForQuery status 'T': in a transaction block */
export const TX_BLOCK = 0x54;
/** ReadyForQuery status 'E': in a failed transaction block */
export const TX_FAILED = 0x45;
/** the shard of an unsharded setup */
export const DEFAULT_SHARD = 'default';

/** What SessionRecovery needs of its session (ClientSession implements it). */
export interface RecoverySessionHost {
  /** client frames not yet sent to a backend */
  readonly batch: ClientBatch;
  /** the backend leased for this session's work, or null */
  readonly currentBackend: BackendConnection | null;
  /** the error the next statement gets while a lost transaction is not ended (see ClientSession) */
  readonly abortedTx: RwsplitPgError | null;
  /** the transaction is over for the client: every statement gets `err` until ROLLBACK/COMMIT */
  abortTransaction(err: RwsplitPgError): void;
  /** the client ended the aborted transaction */
  endAbortedTransaction(): void;
  /** the batch waits for the leased backend to go idle */
  holdUntilIdle(): void;
  /** a batch held until the backend went idle goes on now (the backend is gone or idle) */
  dispatchHeld(): void;
  /** no answer pending on the leased backend */
  backendIdle(): boolean;
  /** the transaction status the client was last told */
  clientTxStatus(): number;
  /** drops the whole batch and sends these frames */
  answer(...frames: Buffer[]): void;
  /** answers every request of the batch with this error */
  failBatch(err: RwsplitPgError, status: number): void;
  /** removes the first queued frame */
  shiftBatch(): Buffer;
  /** sends the proxy's own answer to one request, closed by ReadyForQuery, then dispatches */
  reply(frames: readonly Buffer[], status: number): void;
  dispatch(): void;
  fatal(err: RwsplitPgError, detail?: string): void;
  /** drops the transaction's backends on other shards (sharded PostgreSQL) */
  discardParked(reason: string): void;
}

/** Failures of a session's servers, as its client sees them; owned by the ClientSession. */
export class SessionRecovery {
  constructor(
    private readonly ctx: SessionContext,
    private readonly settings: SessionSettings,
    private readonly out: OutputCoalescer,
    private readonly session: RecoverySessionHost,
  ) {}

  /**
   * The server died while it ran requests outside a transaction (nothing to retry): each
   * request still waiting gets this error, and the session goes on with other servers.
   */
  requestLost(node: NodeStatus, reason: string, pendingReady: number): void {
    const err = backendLostError(
      node,
      reason,
      node.role === 'primary'
        ? 'The request may or may not have run; retry it if it is idempotent. New writes wait up to postgres.failover.bufferMs for a primary (failover).'
        : 'The request may or may not have run; retry it if it is idempotent.',
    );
    this.ctx.stats.clientError(err.sqlstate);
    this.out.push(err.toFrame());
    for (let i = 0; i < pendingReady; i++) this.out.push(readyForQuery(TX_IDLE));
    this.out.flush();
    this.session.dispatchHeld();
  }

  /** A session pinned to its server (SET, temporary tables, …) cannot go on without it. */
  pinnedSessionLost(node: NodeStatus, reason: string): void {
    this.session.fatal(
      backendLostError(node, reason, undefined),
      'the session state on that server (SET, temporary tables, …) is lost',
    );
  }

  /**
   * The transaction's server is gone (a crash, a failover fencing it). The client connection
   * stays: it gets an error for what it was waiting for and, as in any aborted transaction,
   * errors until it ends the transaction; then it carries on with new servers.
   */
  transactionLost(node: NodeStatus, reason: string, commitInFlight: boolean, pendingReady: number): void {
    const failover = this.ctx.topology.failover(node.spec.shard);
    const cause = failover
      ? `${node.spec.id} was lost to a ${failover.kind} (${reason})`
      : `rwsplit lost its connection to ${node.spec.id} (${node.spec.host}:${node.spec.port}): ${reason}`;
    const err = commitInFlight
      ? new RwsplitPgError(
          'COMMIT_OUTCOME_UNKNOWN',
          SqlState.TransactionResolutionUnknown,
          `${cause}; the COMMIT was sent and its outcome is unknown`,
          'Check whether the transaction took effect before running it again.',
        )
      : new RwsplitPgError(
          'TRANSACTION_LOST',
          SqlState.SerializationFailure,
          `${cause}; the transaction was rolled back`,
          'Run the transaction again: new writes go to the new primary (they wait up to postgres.failover.bufferMs for one).',
        );
    const s = this.session;
    s.discardParked(`the transaction was lost on shard ${node.spec.shard}`);
    if (pendingReady > 0) {
      this.ctx.stats.clientError(err.sqlstate);
      this.out.push(err.toFrame());
      for (let i = 0; i < pendingReady; i++) this.out.push(readyForQuery(TX_FAILED));
      this.out.flush();
      s.abortTransaction(abortedError(`The transaction was lost: ${cause}. Send ROLLBACK.`));
    } else {
      s.abortTransaction(err); // nothing was waiting: the next statement learns it
    }
    s.dispatchHeld();
  }

  /** In a transaction lost with its server: ROLLBACK/COMMIT end it, anything else fails. */
  answerAbortedTransaction(): void {
    const s = this.session;
    if (s.batch.length === 1 && s.batch.first[0] === FrontendCode.Query) {
      const c = queryNote(s.batch.firstNote);
      if (c.statementCount === 1 && (c.tx === 'commit' || c.tx === 'rollback')) {
        s.endAbortedTransaction();
        // PostgreSQL answers COMMIT of a failed transaction with the tag ROLLBACK too.
        s.answer(encodeCommandComplete('ROLLBACK'), readyForQuery(TX_IDLE));
        return;
      }
    }
    const err = s.abortedTx!;
    if (err.sqlstate !== SqlState.InFailedSqlTransaction) s.abortTransaction(abortedError('Send ROLLBACK.'));
    s.failBatch(err, TX_FAILED);
  }

  /** rwsplit's own SHOW/SET (`rwsplit.causal_token`, …): answered here, in order with the rest. */
  trySessionCommand(frame: Buffer): boolean {
    const cmd = parseSessionCommand(decodeQuery(frame));
    if (!cmd) return false;
    const s = this.session;
    if (s.currentBackend && !s.backendIdle()) {
      s.holdUntilIdle(); // answers for earlier requests are still coming
      return true;
    }
    s.shiftBatch();
    s.reply(applySessionCommand(cmd, this.settings, DEFAULT_SHARD), s.clientTxStatus());
    return true;
  }
}

function abortedError(hint: string): RwsplitPgError {
  return new RwsplitPgError(
    'IN_FAILED_TRANSACTION',
    SqlState.InFailedSqlTransaction,
    'current transaction is aborted, commands ignored until end of transaction block',
    hint,
  );
}

function backendLostError(node: NodeStatus, reason: string, hint: string | undefined): RwsplitPgError {
  return new RwsplitPgError(
    'BACKEND_LOST',
    SqlState.ConnectionFailure,
    `rwsplit lost its connection to ${node.spec.id} (${node.spec.host}:${node.spec.port}) while it ran this request: ${reason}`,
    hint,
  );
}

/** Does this batch (sent inside a transaction) end it with COMMIT? */
export function endsWithCommit({ frames, notes }: TakenFrames): boolean {
  for (let i = 0; i < frames.length; i++) {
    const t = frames[i]![0];
    if (t === FrontendCode.Query) {
      if (queryNote(notes[i]!).tx === 'commit') return true;
    } else if (t === FrontendCode.Parse) {
      if (parseNote(notes[i]!).classification.tx === 'commit') return true;
    }
  }
  return false;
}

/** FATAL/PANIC with an operator-intervention or connection SQLSTATE (57P01 admin shutdown, …). */
export function isServerGoingAway(frame: Buffer): boolean {
  const fields = decodeErrorFields(frame);
  const severity = fields.get('V') ?? fields.get('S');
  const code = fields.get('C') ?? '';
  return (severity === 'FATAL' || severity === 'PANIC') && (code.startsWith('57P') || code.startsWith('08'));
}

/** Why a write found no primary: a failover under way that outlasted bufferMs, or none at all. */
export function noPrimaryError(failover: { kind: string; from: string } | undefined): RwsplitPgError {
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

/** A failure to lease a connection to `node`, as the client is told it. */
export function asClientError(err: Error, node: NodeStatus): RwsplitPgError {
  if (err instanceof RwsplitPgError) return err;
  return new RwsplitPgError(
    'BACKEND_UNAVAILABLE',
    SqlState.ConnectionFailure,
    `cannot connect to ${node.spec.id} (${node.spec.host}:${node.spec.port}): ${err.message}`,
    'Check that the node is running; `rwsplit status` shows what rwsplit sees.',
  );
}
