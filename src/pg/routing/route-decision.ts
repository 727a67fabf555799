/**
 * Decides where a queued batch of client frames must run: the primary or a read node.
 * Reads only what routing needs: the classification of Query and Parse and the statement a
 * Bind names (noted when the frame was queued, see frame-note.ts).
 */
import type { Classification } from '../classifier/classify.js';
import { bindNote, parseNote, queryNote, type FrameNote } from '../session/frame-note.js';
import { FrontendCode } from '../protocol/index.js';
import type { ClientStatements } from '../session/statement-registry.js';

/** Why a batch went where it went; a label of the routing-decision metric. */
export type RouteReason =
  | 'read'
  | 'write'
  | 'transaction'
  | 'read-only-transaction'
  | 'pinned'
  | 'hint-primary'
  | 'hint-replica'
  | 'fallback-primary'
  | 'retry'
  /** read-your-writes: no replica had replayed the session's token within causalWaitMs */
  | 'causal-primary'
  /** the session's consistency level is `strong` */
  | 'strong';

export interface RouteDecision {
  target: 'primary' | 'read';
  reason: RouteReason;
  /** an autocommit read made only of statements: safe to run again on another node */
  retryable: boolean;
}

/**
 * Order of precedence: a hint; the transaction the batch opens (`BEGIN` → primary,
 * `BEGIN READ ONLY` or a deferred BEGIN followed by `SET TRANSACTION READ ONLY` → a read
 * node); session state or any write → primary; otherwise a read node.
 */
export function decideRoute(
  batch: readonly Buffer[],
  notes: readonly FrameNote[],
  statements: ClientStatements,
  deferredBegin: boolean,
): RouteDecision {
  let hint: Classification['hint'] = null;
  let tx: Classification['tx'] = null;
  let firstTx: Classification['tx'] | undefined;
  let write = false;
  let pin = false;
  let retryable = true;
  // Statements Parsed earlier in this same batch: a Bind names them, not what the registry
  // still holds (the registry learns them only when the batch is translated). Drivers re-Parse
  // the unnamed statement for every query, so a Bind of '' must not be classified as the
  // previous query (a write before a read would send the read to the primary).
  let parsedHere: Map<string, Classification> | null = null;
  for (let i = 0; i < batch.length; i++) {
    const frame = batch[i]!;
    let c: Classification | null = null;
    switch (frame[0]) {
      case FrontendCode.Query:
        c = queryNote(notes[i]!);
        break;
      case FrontendCode.Parse: {
        const parsed = parseNote(notes[i]!);
        c = parsed.classification;
        (parsedHere ??= new Map()).set(parsed.msg.statement, c);
        break;
      }
      case FrontendCode.Bind: {
        const name = bindNote(notes[i]!).statement;
        c = parsedHere?.get(name) ?? statements.get(name)?.classification ?? null;
        break;
      }
      case FrontendCode.FunctionCall:
        write = true;
        retryable = false;
        continue;
      case FrontendCode.CopyData:
      case FrontendCode.CopyDone:
      case FrontendCode.CopyFail:
        retryable = false;
        continue;
      default:
        continue;
    }
    if (!c) continue;
    if (firstTx === undefined) firstTx = c.tx;
    hint ??= c.hint;
    tx ??= c.tx;
    if (c.pin) pin = true;
    if (c.route === 'write') write = true;
  }
  if (deferredBegin) {
    const readOnly = firstTx === 'set-tx-read-only';
    return {
      target: readOnly ? 'read' : 'primary',
      reason: readOnly ? 'read-only-transaction' : 'transaction',
      retryable: false,
    };
  }
  return routeFromFacts(hint, tx, pin, write, retryable);
}

/**
 * The precedence itself, over what the statements of a unit of work say: a hint; the
 * transaction it opens; session state or any write → primary; otherwise a read node. The
 * proxy (decideRoute) and the in-process library (src/lib/pg) both route by it.
 */
export function routeFromFacts(
  hint: Classification['hint'],
  tx: Classification['tx'],
  pin: boolean,
  write: boolean,
  retryable: boolean,
): RouteDecision {
  if (hint === 'primary') return { target: 'primary', reason: 'hint-primary', retryable: false };
  if (hint === 'replica')
    return { target: 'read', reason: 'hint-replica', retryable: retryable && !write && tx === null };
  if (tx === 'begin') return { target: 'primary', reason: 'transaction', retryable: false };
  if (tx === 'begin-read-only') return { target: 'read', reason: 'read-only-transaction', retryable: false };
  if (pin) return { target: 'primary', reason: 'pinned', retryable: false };
  if (write) return { target: 'primary', reason: 'write', retryable: false };
  return { target: 'read', reason: 'read', retryable: retryable && tx === null };
}
