/**
 * Decides where a queued batch of client frames must run: the primary or a read node.
 * Reads only what routing needs: the text of Query and Parse, the statement a Bind names.
 */
import type { Classification, Classifier } from './classifier/classify.js';
import {
  decodeBindHead,
  decodeParse,
  decodeQuery,
  FrontendCode,
  type ParseMessage,
} from './protocol/index.js';
import type { RouteReason } from './session-context.js';
import type { ClientStatements } from './statement-registry.js';

let memoFrame: Buffer | null = null;
let memoClassification: Classification | null = null;

/**
 * Classifies a Query frame. The same frame is looked at by the router and then by the
 * translator; a one-entry memo keyed by the frame's identity spares the second decode.
 */
export function classifyQuery(classifier: Classifier, frame: Buffer): Classification {
  if (frame === memoFrame) return memoClassification!;
  const c = classifier.classify(decodeQuery(frame));
  memoFrame = frame;
  memoClassification = c;
  return c;
}

let parseMemoFrame: Buffer | null = null;
let parseMemo: ParseMessage | null = null;

/** Decodes a Parse frame, with the same one-entry identity memo (router, then translator). */
export function parseOf(frame: Buffer): ParseMessage {
  if (frame === parseMemoFrame) return parseMemo!;
  const msg = decodeParse(frame);
  parseMemoFrame = frame;
  parseMemo = msg;
  return msg;
}

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
  statements: ClientStatements,
  classifier: Classifier,
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
  for (const frame of batch) {
    let c: Classification | null = null;
    switch (frame[0]) {
      case FrontendCode.Query:
        c = classifyQuery(classifier, frame);
        break;
      case FrontendCode.Parse: {
        const msg = parseOf(frame);
        c = classifier.classify(msg.query);
        (parsedHere ??= new Map()).set(msg.statement, c);
        break;
      }
      case FrontendCode.Bind: {
        const name = decodeBindHead(frame).statement;
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
  if (hint === 'primary') return { target: 'primary', reason: 'hint-primary', retryable: false };
  if (hint === 'replica')
    return { target: 'read', reason: 'hint-replica', retryable: retryable && !write && tx === null };
  if (tx === 'begin') return { target: 'primary', reason: 'transaction', retryable: false };
  if (tx === 'begin-read-only') return { target: 'read', reason: 'read-only-transaction', retryable: false };
  if (pin) return { target: 'primary', reason: 'pinned', retryable: false };
  if (write) return { target: 'primary', reason: 'write', retryable: false };
  return { target: 'read', reason: 'read', retryable: retryable && tx === null };
}
