/**
 * Session settings on a sharded endpoint. A session's statements run on pooled backends of
 * several shards, so a `SET` cannot pin it to one backend: rwsplit records the session's
 * `SET`/`RESET` statements and, when the session leases a backend whose settings differ, sends
 * `RESET ALL` and the recorded statements ahead of the session's own (its answers swallowed).
 * `SHOW` then runs on whichever shard, which answers from the same settings.
 *
 * Inside a transaction, `SET LOCAL` statements are kept for the transaction and replayed after
 * its BEGIN on each shard the transaction reaches later.
 *
 * @module
 */
import type { BackendConnection } from '../backend/backend-connection.js';
import type { Token } from '../classifier/lexer.js';

/** What a statement does to the session's settings. */
export type SettingChange =
  /** `SET [SESSION] name …` (also `SET TIME ZONE …`, `SET name TO DEFAULT`): the statement text is kept */
  | { readonly kind: 'set'; readonly name: string; readonly sql: string }
  /** `RESET name` */
  | { readonly kind: 'reset'; readonly name: string }
  /** `RESET ALL` */
  | { readonly kind: 'reset-all' }
  /** `SET LOCAL …`: lasts until the transaction ends */
  | { readonly kind: 'local'; readonly sql: string };

/** Settings that are identity or transaction modes, not parameters: they keep their old handling (a pin). */
const NOT_PARAMETERS = new Set(['role', 'session', 'transaction', 'constraints']);

const word = (tokens: readonly Token[], i: number): string | undefined => {
  const t = tokens[i];
  return t?.kind === 'word' ? t.text : undefined;
};

/**
 * The setting change of one statement (the classifier lexer's tokens and the statement's
 * text), or null when it is not a plain parameter SET/RESET (`SET ROLE`, `SET TRANSACTION`,
 * rwsplit's own `rwsplit.*` settings are not).
 */
export function settingChange(tokens: readonly Token[], sql: string): SettingChange | null {
  const first = word(tokens, 0);
  if (first === 'reset') {
    if (word(tokens, 1) === 'all' && tokens.length === 2) return { kind: 'reset-all' };
    const name = parameterName(tokens, 1);
    if (name === null || name.next !== tokens.length) return null;
    return { kind: 'reset', name: name.text };
  }
  if (first !== 'set') return null;
  let i = 1;
  const scope = word(tokens, 1);
  if (scope === 'local' || scope === 'session') i = 2;
  let name: string;
  if (word(tokens, i) === 'time' && word(tokens, i + 1) === 'zone') name = 'timezone';
  else {
    const n = parameterName(tokens, i);
    if (n === null || NOT_PARAMETERS.has(n.text)) return null;
    name = n.text;
  }
  if (name.startsWith('rwsplit.')) return null;
  const text = sql.trim().replace(/;\s*$/, '');
  return scope === 'local' ? { kind: 'local', sql: text } : { kind: 'set', name, sql: text };
}

/** `name` or `ext.name`, lower-cased as the server folds it. */
function parameterName(tokens: readonly Token[], i: number): { text: string; next: number } | null {
  const t = tokens[i];
  if (t?.kind !== 'word' && t?.kind !== 'qident') return null;
  const dot = tokens[i + 1];
  const part = tokens[i + 2];
  if (dot?.kind === 'punct' && dot.text === '.' && (part?.kind === 'word' || part?.kind === 'qident'))
    return { text: `${t.text}.${part.text}`, next: i + 3 };
  return { text: t.text, next: i + 1 };
}

/** Settings applied on each backend, by connection: what the connection's server currently has. */
const applied = new WeakMap<BackendConnection, string>();

/** One session's recorded settings. */
export class ShardSessionState {
  /** parameter → the SET statement that set it, in the order first set */
  private readonly sets = new Map<string, string>();
  /** the statements that bring a clean backend to this state, `;`-joined ('' when none) */
  private text = '';

  /** Records a change (after the server accepted it). */
  record(change: SettingChange): void {
    if (change.kind === 'set') {
      this.sets.delete(change.name); // the latest SET last, as the server applied them
      this.sets.set(change.name, change.sql);
    } else if (change.kind === 'reset') this.sets.delete(change.name);
    else if (change.kind === 'reset-all') this.sets.clear();
    else return;
    this.text = [...this.sets.values()].join('; ');
  }

  /**
   * The query that brings `conn` to this session's settings, or null when it has them; the
   * connection is then taken to have them (the caller sends the query before anything else).
   */
  syncQuery(conn: BackendConnection): string | null {
    const current = applied.get(conn) ?? '';
    if (current === this.text) return null;
    applied.set(conn, this.text);
    return this.text === '' ? 'RESET ALL' : `RESET ALL; ${this.text}`;
  }

  /** `conn` ran this session's statements and has its settings now (a SET just ran there). */
  markApplied(conn: BackendConnection): void {
    applied.set(conn, this.text);
  }

  /** The connection's settings are unknown (a SET on it failed part-way): reset it at its next lease. */
  static forget(conn: BackendConnection): void {
    applied.set(conn, '\u0000unknown');
  }
}
