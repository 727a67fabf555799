/**
 * `pg_cancel_backend(pid)` and `pg_terminate_backend(pid)` through a pool. Under transaction
 * pooling a pid names one server backend on one node, and the session a client wants to reach
 * may run on any of them; sent to the primary like any other "write" function, the call would
 * signal nothing. rwsplit knows every backend it holds and every pid it handed out, so:
 * - a literal pid of a backend in rwsplit's pools: the statement runs on that backend's node;
 * - a literal pid rwsplit handed out (BackendKeyData): the call is rewritten to the real
 *   backend that session holds (a pinned session, or one running a query) and runs on its
 *   node; a session holding none has nothing to cancel, and a terminate ends it (FATAL 57P01);
 * - a pid that comes from a query (`… FROM pg_stat_activity WHERE …`, simple protocol): the
 *   statement runs on every reachable node of the shard (both functions work on standbys)
 *   and the rows of all are returned as one result.
 * Anything else (a pid rwsplit does not know, a named prepared statement) is routed as before.
 */
import type { NodeStatus } from '../../core/topology.js';
import type { BackendConnection } from './backend-connection.js';
import type { BackendPool } from './backend-pool.js';
import type { Classification } from '../classifier/classify.js';
import { lex } from '../classifier/lexer.js';
import { readAllShards } from '../sharding/all-shards-read.js';
import { RwsplitPgError, SqlState } from '../errors.js';
import { decodeQuery, encodeParse, encodeQuery, FrontendCode } from '../protocol/index.js';
import type { ClientBatch } from '../session/client-batch.js';
import { parseNote, queryNote } from '../session/frame-note.js';
import type { RouteDecision } from '../routing/route-decision.js';
import type { RoutingHost, SessionContext } from '../session/session-context.js';
import { asClientError, TX_IDLE } from '../session/session-recovery.js';

export type SignalFunction = 'pg_cancel_backend' | 'pg_terminate_backend';

/** One call of a signal function in a statement, with the spans a rewrite needs. */
export interface SignalCall {
  readonly fn: SignalFunction;
  /** the pid argument when it is an integer literal; null when it comes from the query */
  readonly pid: number | null;
  /** where the pid literal starts and ends in the text */
  readonly pidStart: number;
  readonly pidEnd: number;
  /** where the whole call `name(…)` starts and ends */
  readonly callStart: number;
  readonly callEnd: number;
}

/** PostgreSQL's own words for a terminated session. */
export function terminatedError(): RwsplitPgError {
  return new RwsplitPgError(
    'TERMINATED',
    SqlState.AdminShutdown,
    'terminating connection due to administrator command',
    undefined,
    'FATAL',
  );
}

const CALL = /\b(?:pg_catalog\s*\.\s*)?(pg_cancel_backend|pg_terminate_backend)\s*\(/gi;
const LITERAL_PID = /^\s*(\d{1,10})\s*(?=[,)])/;

/** The one call of pg_cancel_backend/pg_terminate_backend in a single SELECT, or null. */
export function findSignalCall(query: string): SignalCall | null {
  const matches = [...query.matchAll(CALL)];
  if (matches.length !== 1) return null;
  const m = matches[0]!;
  const fn = m[1]!.toLowerCase() as SignalFunction;
  // The lexer tells a real call from the same words inside a string or a comment.
  const { statements } = lex(query);
  if (statements.length !== 1) return null;
  const tokens = statements[0]!;
  if (tokens[0]?.text !== 'select' || !tokens.some((t) => t.kind === 'word' && t.text === fn)) return null;
  const open = m.index + m[0].length;
  let depth = 1;
  let end = open;
  while (end < query.length && depth > 0) {
    const c = query[end];
    if (c === '(') depth++;
    else if (c === ')') depth--;
    end++;
  }
  if (depth !== 0) return null;
  const lit = LITERAL_PID.exec(query.slice(open, end));
  const pidStart = lit ? open + lit[0].indexOf(lit[1]!) : open;
  const pid = lit ? Number(lit[1]) : null;
  return {
    fn,
    pid: pid !== null && pid <= 0x7fffffff ? pid : null,
    pidStart,
    pidEnd: lit ? pidStart + lit[1]!.length : open,
    callStart: m.index,
    callEnd: end,
  };
}

/** The statement with the pid literal replaced. */
export function withPid(query: string, call: SignalCall, pid: number): string {
  return query.slice(0, call.pidStart) + String(pid) + query.slice(call.pidEnd);
}

/**
 * The statement with the call replaced by `true` (what the server answers for a signal it
 * sent), named like the call when it stands alone in the select list, as the server names it.
 */
export function withCallAnswered(query: string, call: SignalCall): string {
  const before = query.slice(0, call.callStart).trimEnd().toLowerCase();
  const after = query.slice(call.callEnd);
  const alone = (before.endsWith('select') || before.endsWith(',')) && /^\s*($|;|,|from\b)/i.test(after);
  return query.slice(0, call.callStart) + (alone ? `true AS ${call.fn}` : 'true') + after;
}

/** What BackendSignals needs of its session (ClientSession implements it). */
export interface SignalSessionHost extends RoutingHost {
  readonly batch: ClientBatch;
  poolFor(node: NodeStatus): BackendPool;
  shiftBatch(): Buffer;
  reply(frames: readonly Buffer[], status: number): void;
}

const SIGNAL_READ: RouteDecision = { target: 'read', reason: 'read', retryable: false };

/** A session's handling of signal calls; owned by the ClientSession. */
export class BackendSignals {
  constructor(
    private readonly ctx: SessionContext,
    private readonly session: SignalSessionHost,
  ) {}

  /**
   * Routes the queued batch itself when it is one signal call the proxy can place better
   * than "the primary"; false leaves it to the ordinary routing. Called with no backend held,
   * outside a transaction.
   */
  tryRoute(): boolean {
    const s = this.session;
    const batch = s.batch;
    const first = batch.first;
    // This runs before every routing decision: reads leave at the first test, on the
    // classification noted when the frame was queued.
    let c: Classification;
    let text: string;
    let paramTypes: Buffer | null = null;
    if (first[0] === FrontendCode.Query) {
      if (batch.length !== 1) return false;
      c = queryNote(batch.firstNote);
      if (c.route !== 'write') return false;
      text = decodeQuery(first);
    } else if (first[0] === FrontendCode.Parse) {
      const { msg, classification } = parseNote(batch.firstNote);
      if (msg.statement !== '') return false;
      c = classification;
      if (c.route !== 'write') return false;
      paramTypes = msg.paramTypes;
      for (let i = 1; i < batch.length; i++) {
        const t = batch.frames[i]![0];
        if (t === FrontendCode.Parse || t === FrontendCode.Query || t === FrontendCode.FunctionCall)
          return false;
      }
      text = msg.query;
    } else return false;
    if (c.statementCount !== 1 || c.hint || c.tx !== null || !text.includes('_backend')) return false;
    const call = findSignalCall(text);
    if (!call) return false;
    if (call.pid === null) {
      if (first[0] !== FrontendCode.Query) return false;
      this.runOnEveryNode(first);
      return true;
    }
    const target = this.ctx.signalTarget(call.pid);
    if (!target) return false;
    const rewrite = (query: string): void => {
      batch.replaceFirst(paramTypes === null ? encodeQuery(query) : encodeParse('', query, paramTypes));
    };
    if (target.kind === 'backend') {
      if (call.fn === 'pg_terminate_backend') target.conn.terminationRequested = true;
      s.routeTo(target.node, SIGNAL_READ, 'read', null, null);
      return true;
    }
    const conn = target.session.currentBackend;
    const node = target.session.node;
    if (conn && node) {
      // The session's real backend: a pinned session (LISTEN, SET, …) or a query running now.
      if (call.fn === 'pg_terminate_backend') conn.terminationRequested = true;
      rewrite(withPid(text, call, conn.processId));
      s.routeTo(node, SIGNAL_READ, 'read', null, null);
      return true;
    }
    // Nothing runs for that session on any server: a cancel has nothing to stop, a terminate
    // ends the client connection itself. The caller gets `true` either way, as from the server.
    rewrite(withCallAnswered(text, call));
    if (call.fn === 'pg_terminate_backend') target.session.fatal(terminatedError());
    s.route(SIGNAL_READ, null);
    return true;
  }

  /** The statement on every reachable node of the shard, the rows of all returned as one result. */
  private runOnEveryNode(frame: Buffer): void {
    const s = this.session;
    s.shiftBatch();
    const nodes = this.ctx.topology.nodes.filter((n) => n.spec.shard === s.shard && n.reachable && !n.fenced);
    const leases: { pool: BackendPool; conn: BackendConnection; node: NodeStatus }[] = [];
    const run = async (): Promise<Buffer[]> => {
      for (const node of nodes) {
        const pool = s.poolFor(node);
        leases.push({ pool, conn: await pool.acquire(), node });
      }
      return readAllShards(
        frame,
        leases.map((l) => ({ shard: l.node.spec.id, conn: l.conn })),
      );
    };
    const work = run().catch((err: unknown) => [
      asClientError(err as Error, nodes[0] ?? this.ctx.topology.nodes[0]!).toFrame(),
    ]);
    s.gate(work, (frames) => {
      for (const l of leases) {
        if (l.conn.closed) l.pool.lost();
        else l.pool.release(l.conn);
      }
      if (!s.closed) s.reply(frames, TX_IDLE);
    });
  }
}
