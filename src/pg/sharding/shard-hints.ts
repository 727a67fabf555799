/**
 * Shard hints in SQL comments: `/* rwsplit:shard=NAME *\/`, `/* rwsplit:key=VALUE *\/` and
 * `/* rwsplit:all-shards *\/`, in block or `--` comments anywhere in a query text.
 *
 * Comments are found with the same quoting rules as the classifier's lexer
 * (src/pg/classifier/lexer.ts, after the server's scan.l), so a hint-like text inside a string
 * literal, a quoted identifier or a dollar-quoted body is never taken for a hint. The lexer
 * drops comments, hence this second, smaller pass; it only runs when the text mentions
 * `rwsplit` at all.
 *
 * Other `rwsplit:` words (`rwsplit:primary`, `rwsplit:replica`) are the classifier's and are
 * left alone here.
 *
 * @module
 */
import { endOfBlockComment } from '../classifier/lexer.js';

/** The shard hints of one query text, in the order written. */
export interface ShardHints {
  /** Every `rwsplit:shard=NAME` name (possibly empty when the name is missing). */
  readonly shards: string[];
  /** Every `rwsplit:key=VALUE` value, unquoted and trimmed. */
  readonly keys: string[];
  /** `rwsplit:all-shards` seen. */
  readonly allShards: boolean;
}

const CH_DQUOTE = 34;
const CH_DOLLAR = 36;
const CH_SQUOTE = 39;
const CH_STAR = 42;
const CH_MINUS = 45;
const CH_SLASH = 47;
const CH_BACKSLASH = 92;

const MENTIONS_RWSPLIT = /rwsplit/i;

function isSpace(c: number): boolean {
  return c === 32 || (c >= 9 && c <= 13);
}

function isIdentStart(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || c === 95 || c >= 128;
}

function isIdentCont(c: number): boolean {
  return isIdentStart(c) || (c >= 48 && c <= 57) || c === CH_DOLLAR;
}

/** Shard names allowed by the config schema: letters, digits, `_`, `.`, `-`. */
function isShardNameChar(c: number): boolean {
  return isIdentStart(c) || (c >= 48 && c <= 57) || c === 46 || c === CH_MINUS;
}

/** The shard hints of `sql`; `null` when it has none (the common case, decided cheaply). */
export function findShardHints(sql: string): ShardHints | null {
  if (!MENTIONS_RWSPLIT.test(sql)) return null;
  const hints = { shards: [] as string[], keys: [] as string[], allShards: false };
  let found = false;
  forEachComment(sql, (body) => {
    if (collectHints(body, hints)) found = true;
  });
  return found ? hints : null;
}

/** Calls `visit` with the body of every comment of `sql`, skipping quoted text. */
function forEachComment(sql: string, visit: (body: string) => void): void {
  const n = sql.length;
  let i = 0;
  while (i < n) {
    const c = sql.charCodeAt(i);
    const next = sql.charCodeAt(i + 1);
    if (c === CH_MINUS && next === CH_MINUS) {
      let end = i + 2;
      while (end < n && sql.charCodeAt(end) !== 10 && sql.charCodeAt(end) !== 13) end++;
      visit(sql.slice(i + 2, end));
      i = end;
    } else if (c === CH_SLASH && next === CH_STAR) {
      const end = endOfBlockComment(sql, i);
      const closed = sql.charCodeAt(end - 1) === CH_SLASH && sql.charCodeAt(end - 2) === CH_STAR;
      visit(sql.slice(i + 2, closed && end - 2 >= i + 2 ? end - 2 : end));
      i = end;
    } else if (c === CH_SQUOTE || c === CH_DQUOTE) {
      i = endOfQuoted(sql, i, c, false);
    } else if ((c === 69 || c === 101) && next === CH_SQUOTE) {
      i = endOfQuoted(sql, i + 1, CH_SQUOTE, true); // E'...': backslash escapes
    } else if (isIdentStart(c)) {
      // A `$` inside an identifier (`a$b`) belongs to it and never opens a dollar quote.
      i++;
      while (i < n && isIdentCont(sql.charCodeAt(i))) i++;
    } else if (c === CH_DOLLAR) {
      i = endOfDollar(sql, i);
    } else {
      i++;
    }
  }
}

function endOfQuoted(sql: string, start: number, quote: number, backslashEscapes: boolean): number {
  let i = start + 1;
  while (i < sql.length) {
    const c = sql.charCodeAt(i);
    if (backslashEscapes && c === CH_BACKSLASH) i += 2;
    else if (c !== quote) i++;
    else if (sql.charCodeAt(i + 1) === quote) i += 2;
    else return i + 1;
  }
  return sql.length;
}

/** Past a `$1` parameter, a `$tag$…$tag$` / `$$…$$` string, or a lone `$`. */
function endOfDollar(sql: string, start: number): number {
  let i = start + 1;
  if (sql.charCodeAt(i) !== CH_DOLLAR) {
    if (!isIdentStart(sql.charCodeAt(i))) return i; // `$1` (digits follow harmlessly) or a lone `$`
    while (i < sql.length && isIdentCont(sql.charCodeAt(i)) && sql.charCodeAt(i) !== CH_DOLLAR) i++;
    if (sql.charCodeAt(i) !== CH_DOLLAR) return i;
  }
  const tag = sql.slice(start, i + 1);
  const close = sql.indexOf(tag, i + 1);
  return close < 0 ? sql.length : close + tag.length;
}

/** Adds the hints of one comment body to `hints`; true when there was at least one. */
function collectHints(
  body: string,
  hints: { shards: string[]; keys: string[]; allShards: boolean },
): boolean {
  const lower = body.toLowerCase();
  let found = false;
  let from = lower.indexOf('rwsplit');
  while (from >= 0) {
    let i = skipSpaces(lower, from + 7);
    let resumeAt = from + 7;
    if (lower.charCodeAt(i) === 58 /* : */) {
      i = skipSpaces(lower, i + 1);
      if (wordAt(lower, i, 'all-shards')) {
        hints.allShards = true;
        found = true;
      } else if (wordAt(lower, i, 'shard') && lower.charCodeAt(skipSpaces(lower, i + 5)) === 61 /* = */) {
        const start = skipSpaces(body, skipSpaces(lower, i + 5) + 1);
        let end = start;
        while (end < body.length && isShardNameChar(body.charCodeAt(end))) end++;
        hints.shards.push(body.slice(start, end));
        resumeAt = end;
        found = true;
      } else if (wordAt(lower, i, 'key') && lower.charCodeAt(skipSpaces(lower, i + 3)) === 61) {
        const value = keyValue(body, skipSpaces(lower, i + 3) + 1);
        hints.keys.push(value.key);
        resumeAt = value.end;
        found = true;
      }
    }
    from = lower.indexOf('rwsplit', resumeAt);
  }
  return found;
}

function skipSpaces(text: string, i: number): number {
  while (i < text.length && isSpace(text.charCodeAt(i))) i++;
  return i;
}

/** `word` at `i`, not followed by an identifier character. */
function wordAt(lower: string, i: number, word: string): boolean {
  if (!lower.startsWith(word, i)) return false;
  const after = lower.charCodeAt(i + word.length);
  return Number.isNaN(after) || !(isIdentCont(after) || after === CH_MINUS);
}

/**
 * A key hint's value: `'quoted'` (with `''` for a quote; the comment may go on after it) or
 * the rest of the comment, up to a nested comment's `*\/` if any, trimmed.
 */
function keyValue(body: string, at: number): { key: string; end: number } {
  const start = skipSpaces(body, at);
  if (body.charCodeAt(start) === CH_SQUOTE) {
    const end = endOfQuoted(body, start, CH_SQUOTE, false);
    const closed = end > start + 1 && body.charCodeAt(end - 1) === CH_SQUOTE;
    const inner = body.slice(start + 1, closed ? end - 1 : end);
    return { key: inner.replaceAll("''", "'"), end };
  }
  const stop = body.indexOf('*/', start);
  const end = stop < 0 ? body.length : stop;
  return { key: body.slice(start, end).trim(), end };
}
