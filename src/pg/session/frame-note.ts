/**
 * What the session reads from a client frame when it is queued (see client-batch.ts): a
 * Query's classification, a Parse's decoded message with its classification. Routing,
 * translation and recovery read these notes instead of decoding the frame again.
 */
import type { Classification, Classifier } from '../classifier/classify.js';
import { decodeParse, decodeQuery, FrontendCode, type ParseMessage } from '../protocol/index.js';

/** A Parse frame as the session read it. */
export class ParsedFrame {
  constructor(
    readonly msg: ParseMessage,
    readonly classification: Classification,
  ) {}
}

/** What a queued frame says: a Query's classification, a Parse's message, else nothing. */
export type FrameNote = Classification | ParsedFrame | null;

/** Reads a frame once: Query and Parse frames are decoded and classified, the rest noted as null. */
export function noteFrame(classifier: Classifier, frame: Buffer): FrameNote {
  const t = frame[0];
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
