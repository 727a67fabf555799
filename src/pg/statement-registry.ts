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
import type { Classification } from './classifier/classify.js';

/** What the proxy remembers of a statement a client prepared. */
export interface StatementInfo {
  /** server-side name: `rws_` + a hash of the query and parameter types */
  readonly key: string;
  readonly query: string;
  /** raw parameter-type bytes of the Parse message, replayed when re-Parsing */
  readonly paramTypes: Buffer;
  readonly classification: Classification;
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
}
