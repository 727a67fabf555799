/**
 * What the session reads from a client frame when it is queued (see client-batch.ts): a
 * Query's classification, a Parse's decoded message with its classification. Routing,
 * translation and recovery read these notes instead of decoding the frame again.
 */
import type { Classification, Classifier } from '../classifier/classify.js';
import {
  decodeBindHead,
  decodeParse,
  decodeQuery,
  FrontendCode,
  type BindHead,
  type ParseMessage,
} from '../protocol/index.js';
import type { StatementInfo } from './statement-registry.js';

/** A Parse frame as the session read it. */
export class ParsedFrame {
  /**
   * What the translator registers for this statement, kept with the note: a driver sends
   * the same Parse for every run of a query, and the same bytes get the same note (see
   * ClientBatch.push), so the record is built once per schema epoch, not per Parse.
   */
  info: StatementInfo | null = null;

  constructor(
    readonly msg: ParseMessage,
    readonly classification: Classification,
  ) {}
}

/** What a queued frame says: a Query's classification, a Parse's message, a Bind's head, else nothing. */
export type FrameNote = Classification | ParsedFrame | BindHead | null;

/**
 * Reads a frame once: Query and Parse frames are decoded and classified, a Bind's head
 * (portal, statement) decoded for routing and translation alike; the rest noted as null.
 */
export function noteFrame(classifier: Classifier, frame: Buffer): FrameNote {
  const t = frame[0];
  if (t === FrontendCode.Bind) return decodeBindHead(frame);
  if (t === FrontendCode.Query) return classifier.classify(decodeQuery(frame));
  if (t === FrontendCode.Parse) {
    const msg = decodeParse(frame);
    return new ParsedFrame(msg, classifier.classify(msg.query));
  }
  return null;
}

/** The note of a frame known to be a Query. */
export function queryNote(note: FrameNote): Classification {
  return note as Classification;
}

/** The note of a frame known to be a Parse. */
export function parseNote(note: FrameNote): ParsedFrame {
  return note as ParsedFrame;
}

/** The note of a frame known to be a Bind. */
export function bindNote(note: FrameNote): BindHead {
  return note as BindHead;
}
