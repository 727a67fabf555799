/**
 * The shape of a plain `SELECT` text with its numeric literals masked, so texts that differ
 * only in the numbers they inline (`... WHERE aid = 4711`, what `pgbench -M simple` and many
 * drivers without parameters send) are lexed and classified once, not each anew.
 *
 * Why this is exact, not a guess: a number token's value matters to the rules only in
 * `EXPLAIN (ANALYZE 0)`; a text that is one `SELECT` statement never reaches that rule, and
 * masking a number keeps every token's kind, depth and place (see lexer.ts). The shape is only
 * made for texts where the lexer's rules reduce to words, numbers and single punctuation
 * characters (it reads them with the lexer's own character classes): no quotes, no dollar
 * signs, no comments, no `;` but a final one. Anything else gets null and is classified as it is.
 *
 * @module
 */

import {
  CH_BACKSLASH,
  CH_DOLLAR,
  CH_DOT,
  CH_DQUOTE,
  CH_MINUS,
  CH_SEMI,
  CH_SLASH,
  CH_SQUOTE,
  CH_STAR,
  isDigit,
  isIdentCont,
  isIdentStart,
  isSpace,
} from './lexer.js';

/** True if `sql` starts, after whitespace, with the word SELECT (any case). */
function startsWithSelect(sql: string, i: number): boolean {
  if (sql.length - i < 7) return false;
  return (
    (sql.charCodeAt(i) | 0x20) === 0x73 && // s
    (sql.charCodeAt(i + 1) | 0x20) === 0x65 && // e
    (sql.charCodeAt(i + 2) | 0x20) === 0x6c && // l
    (sql.charCodeAt(i + 3) | 0x20) === 0x65 && // e
    (sql.charCodeAt(i + 4) | 0x20) === 0x63 && // c
    (sql.charCodeAt(i + 5) | 0x20) === 0x74 && // t
    !isIdentCont(sql.charCodeAt(i + 6))
  );
}

/**
 * `sql` with every numeric literal replaced by `0` (`.0` if it starts with a dot), if it is a single plain SELECT with at least
 * one; null otherwise (no shape: classify the text itself).
 */
export function selectShape(sql: string): string | null {
  const n = sql.length;
  let i = 0;
  while (i < n && isSpace(sql.charCodeAt(i))) i++;
  if (!startsWithSelect(sql, i)) return null;
  let shape = '';
  let copied = 0;
  i += 6;
  while (i < n) {
    const c = sql.charCodeAt(i);
    if (isIdentStart(c)) {
      i++;
      while (i < n && isIdentCont(sql.charCodeAt(i))) i++;
    } else if (isDigit(c) || (c === CH_DOT && isDigit(sql.charCodeAt(i + 1)))) {
      // The lexer's number token: digits, then identifier characters and dots.
      const start = i;
      i++;
      for (let d = sql.charCodeAt(i); i < n && (isIdentCont(d) || d === CH_DOT); d = sql.charCodeAt(++i));
      // `.0` for `.5`: a bare `0` after a word (`a.5`) would join it (`a0`).
      shape += sql.slice(copied, start) + (c === CH_DOT ? '.0' : '0');
      copied = i;
    } else if (c === CH_SQUOTE || c === CH_DQUOTE || c === CH_DOLLAR || c === CH_BACKSLASH) {
      return null;
    } else if (
      (c === CH_MINUS && sql.charCodeAt(i + 1) === CH_MINUS) ||
      (c === CH_SLASH && sql.charCodeAt(i + 1) === CH_STAR)
    ) {
      return null; // a comment (it may hold a hint)
    } else if (c === CH_SEMI) {
      for (let j = i + 1; j < n; j++) if (!isSpace(sql.charCodeAt(j))) return null;
      i = n;
    } else {
      i++;
    }
  }
  return copied === 0 ? null : shape + sql.slice(copied);
}
