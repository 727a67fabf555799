/**
 * Prepared statements across pooled backends.
 *
 * A client's statement names mean nothing to the server connection it happens to be lent,
 * and two clients may use the same name for different queries. So every named statement
 * is renamed on the server side to a key derived from its text and parameter types
 * (`rws_<hash>`): clients that prepare the same query share the server-side statement, and
 * a backend that has not seen a statement gets it re-Parsed just before it is used.
 */
import { createHash } from 'node:crypto';
import type { Classification } from '../classifier/classify.js';

/** What the proxy remembers of a statement a client prepared. */
export interface StatementInfo {
  /** server-side name: `rws_` + a hash of the query and parameter types */
  readonly key: string;
  readonly query: string;
  /** raw parameter-type bytes of the Parse message, replayed when re-Parsing */
  readonly paramTypes: Buffer;
  readonly classification: Classification;
  /** {@link schemaEpoch} when the client parsed it: a server-side copy older than that is stale */
  readonly epoch: number;
}

/**
 * Schema changes this process has seen, as a counter. A server-side statement keeps the result
 * type and tables it was planned with (PostgreSQL answers `0A000 cached plan must not change
 * result type` after an ALTER TABLE, and never fixes it by itself), so each backend remembers the
 * epoch its copy was prepared at. The rule is deliberately coarse: any DDL through rwsplit (a
 * CommandComplete tag starting CREATE/ALTER/DROP), and any 0A000/42804/42P01 error (a change
 * made elsewhere showing through), starts a new epoch for every statement; a client's Parse is
 * then really sent (Close + Parse) to a backend whose copy is older, and a Bind of a statement
 * the client parsed after the change re-prepares an older copy first. Process-wide: several
 * instances in one process only cost each other a few re-Parses.
 */
export const schemaEpoch = { value: 0 };

/** Starts a new schema epoch (see {@link schemaEpoch}). */
export function schemaChanged(): void {
  schemaEpoch.value++;
}

/** SQLSTATEs a stale server-side statement answers with after a schema change. */
export const STALE_STATEMENT_STATES: ReadonlySet<string> = new Set(['0A000', '42804', '42P01']);

const DDL_TAGS = ['CREATE ', 'ALTER ', 'DROP '];

/** True for the CommandComplete frame of a DDL statement (tag CREATE …, ALTER …, DROP …). */
export function isDdlComplete(frame: Buffer): boolean {
  const c = frame[5];
  if (c !== 0x43 && c !== 0x41 && c !== 0x44) return false; // C, A, D
  for (const tag of DDL_TAGS) if (frame.toString('latin1', 5, 5 + tag.length) === tag) return true;
  return false;
}

const keyCache = new Map<string, string>();
const KEY_CACHE_LIMIT = 10_000;

/** Server-side statement name for a query and its parameter types. */
export function statementKey(query: string, paramTypes: Buffer): string {
  // The common case (no declared parameter types: Int16 0) is cached by query text alone.
  const cacheable = paramTypes.length === 2 && paramTypes[0] === 0 && paramTypes[1] === 0;
  if (cacheable) {
    const hit = keyCache.get(query);
    if (hit) return hit;
  }
  const hash = createHash('sha1').update(query).update(paramTypes).digest('hex').slice(0, 24);
  const key = `rws_${hash}`;
  if (cacheable) {
    if (keyCache.size >= KEY_CACHE_LIMIT) keyCache.clear();
    keyCache.set(query, key);
  }
  return key;
}

/** The statements one client session has prepared, by the client's own names. */
export class ClientStatements {
  private readonly named = new Map<string, StatementInfo>();
  /** the client's unnamed statement, which lives until the next unnamed Parse or simple Query */
  unnamed: StatementInfo | null = null;

  constructor(private readonly maxStatements = 10_000) {}

  get(name: string): StatementInfo | null {
    return name === '' ? this.unnamed : (this.named.get(name) ?? null);
  }

  set(name: string, info: StatementInfo): boolean {
    if (name === '') {
      this.unnamed = info;
      return true;
    }
    if (!this.named.has(name) && this.named.size >= this.maxStatements) return false;
    this.named.set(name, info);
    return true;
  }

  delete(name: string): void {
    if (name === '') this.unnamed = null;
    else this.named.delete(name);
  }

  /** Every statement by the client's name, the unnamed one as '' (a graceful restart hands them over). */
  *entries(): IterableIterator<[string, StatementInfo]> {
    if (this.unnamed) yield ['', this.unnamed];
    yield* this.named;
  }
}
