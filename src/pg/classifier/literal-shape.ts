/**
 * The shape of a plain `SELECT` text with its numeric literals masked, so texts that differ
 * only in the numbers they inline (`... WHERE aid = 4711`, what `pgbench -M simple` and many
 * drivers without parameters send) are lexed and classified once, not each anew.
 *
 * Why this is exact, not a guess: a number token's value matters to the rules only in
 * `EXPLAIN (ANALYZE 0)`; a text that is one `SELECT` statement never reaches that rule, and
 * masking a number keeps every token's kind, depth and place (see lexer.ts). The shape is only
 * made for texts where the lexer's rules reduce to words, numbers and single punctuation
 * characters: ASCII, no quotes, no dollar signs, no comments, no `;` but a final one. Anything
 * else gets null and is classified as it is.
 *
 * @module
 */

const CH_TAB = 9;
const CH_CR = 13;
const CH_SPACE = 32;
const CH_DQUOTE = 34;
const CH_DOLLAR = 36;
const CH_SQUOTE = 39;
const CH_STAR = 42;
const CH_MINUS = 45;
const CH_DOT = 46;
const CH_SLASH = 47;
const CH_SEMI = 59;
const CH_BACKSLASH = 92;

function isSpace(c: number): boolean {
  return c === CH_SPACE || (c >= CH_TAB && c <= CH_CR);
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

/** lexer.ts `isIdentStart`, ASCII only (non-ASCII texts get no shape). */
function isIdentStart(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || c === 95;
}

function isIdentCont(c: number): boolean {
  return isIdentStart(c) || isDigit(c) || c === CH_DOLLAR;
}

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
 * `sql` with every numeric literal replaced by `0`, if it is a single plain SELECT with at least
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
      shape += sql.slice(copied, start) + '0';
      copied = i;
    } else if (c >= 128 || c === CH_SQUOTE || c === CH_DQUOTE || c === CH_DOLLAR || c === CH_BACKSLASH) {
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
