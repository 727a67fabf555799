/**
 * A small SQL lexer, just precise enough for routing: it turns a query text into word/punctuation tokens,
 * splits it into top-level statements and collects `rwsplit:` hints from comments. One linear pass, no
 * regular expressions over the text.
 *
 * It follows the PostgreSQL scanner (src/backend/parser/scan.l) on everything that decides where a token
 * starts and ends, because a mistake there means a keyword hidden in a string is taken for real (or a
 * real one is missed):
 * - `'...'` with `''` escapes; `E'...'` also takes backslash escapes (`\'`). Ordinary strings are read
 *   with `standard_conforming_strings = on` (the default since PostgreSQL 9.1).
 * - `U&'...'` / `U&"..."`: standard quoting rules, the `U&` prefix is skipped.
 * - `$tag$...$tag$` and `$$...$$` dollar quotes; `$1` is a parameter, and a `$` inside an identifier
 *   (`a$b`) belongs to the identifier, so it never opens a dollar quote.
 * - `"..."` identifiers with `""` escapes, case preserved; unquoted words are folded to lower case.
 * - `/* ... *\/` comments nest; `--` comments end at a newline or carriage return.
 * - Whitespace is space, tab, newline, carriage return, form feed and vertical tab.
 *
 * @module
 */

/** What a token is; operators are emitted one character at a time as `punct` (routing needs no more). */
export type TokenKind = 'word' | 'qident' | 'string' | 'number' | 'param' | 'punct';

/** One token of a statement. */
export interface Token {
  readonly kind: TokenKind;
  /** Lower-cased for words, unescaped for quoted identifiers and strings, the character for punct. */
  readonly text: string;
  /** Parenthesis depth relative to the statement start; a `(` and its `)` carry the outer depth. */
  readonly depth: number;
}

/** A query text cut into statements. */
export interface LexResult {
  /** Non-empty statements, in order; the `;` separators are not included. */
  readonly statements: Token[][];
  /** The first `rwsplit:primary` / `rwsplit:replica` hint found in a comment. */
  readonly hint: 'primary' | 'replica' | null;
}

const CH_TAB = 9;
const CH_LF = 10;
const CH_CR = 13;
const CH_SPACE = 32;
export const CH_DQUOTE = 34;
export const CH_DOLLAR = 36;
const CH_AMP = 38;
export const CH_SQUOTE = 39;
const CH_LPAREN = 40;
const CH_RPAREN = 41;
export const CH_STAR = 42;
export const CH_MINUS = 45;
export const CH_DOT = 46;
export const CH_SLASH = 47;
export const CH_SEMI = 59;
export const CH_BACKSLASH = 92;

/** scan.l `space`: space, \t, \n, \v (11), \f (12), \r. */
export function isSpace(c: number): boolean {
  return c === CH_SPACE || (c >= CH_TAB && c <= CH_CR);
}

export function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

/** scan.l `ident_start`: letters, `_`, and any byte >= 0x80 (here: any non-ASCII code unit). */
export function isIdentStart(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || c === 95 || c >= 128;
}

/** scan.l `ident_cont`: ident_start, digits and `$`. */
export function isIdentCont(c: number): boolean {
  return isIdentStart(c) || isDigit(c) || c === CH_DOLLAR;
}

/**
 * Splits statements and tracks SQL-standard routine bodies. `CREATE FUNCTION ... BEGIN ATOMIC ...; ...; END`
 * contains top-level `;` that do not end the statement; like psql (psqlscan.l, `begin_depth`), inside a
 * `CREATE [OR REPLACE] FUNCTION|PROCEDURE` statement every `BEGIN` or `CASE` opens a level and `END` closes one.
 */
class StatementSplitter {
  readonly statements: Token[][] = [];
  private current: Token[] = [];
  private routineDefinition = false;
  private blockDepth = 0;

  push(token: Token): void {
    if (token.kind === 'word') this.trackBlocks(token.text);
    this.current.push(token);
  }

  /** A `;` was seen: end the statement unless it sits inside a `BEGIN ATOMIC` body. */
  semicolon(): boolean {
    if (this.blockDepth > 0) {
      this.current.push({ kind: 'punct', text: ';', depth: 0 });
      return false;
    }
    this.finish();
    return true;
  }

  finish(): void {
    if (this.current.length > 0) this.statements.push(this.current);
    this.current = [];
    this.routineDefinition = false;
    this.blockDepth = 0;
  }

  private trackBlocks(word: string): void {
    const n = this.current.length;
    if (n === 0) return;
    if (n <= 3 && (word === 'function' || word === 'procedure')) {
      const first = this.current[0];
      const plain = n === 1;
      const orReplace = n === 3 && this.current[1]?.text === 'or' && this.current[2]?.text === 'replace';
      if (first?.kind === 'word' && first.text === 'create' && (plain || orReplace)) {
        this.routineDefinition = true;
      }
      return;
    }
    if (!this.routineDefinition) return;
    if (word === 'begin' || word === 'case') this.blockDepth++;
    else if (word === 'end' && this.blockDepth > 0) this.blockDepth--;
  }
}

/**
 * Finds `rwsplit : primary|replica` in a comment body (case-insensitive, whitespace tolerated around the
 * colon). Comments are short, so a lower-cased copy of each one is cheap.
 */
export function findHint(comment: string): 'primary' | 'replica' | null {
  const text = comment.toLowerCase();
  let from = text.indexOf('rwsplit');
  while (from >= 0) {
    let i = from + 7;
    while (i < text.length && isSpace(text.charCodeAt(i))) i++;
    if (text.charCodeAt(i) === 58 /* : */) {
      i++;
      while (i < text.length && isSpace(text.charCodeAt(i))) i++;
      for (const target of ['primary', 'replica'] as const) {
        if (text.startsWith(target, i) && !isIdentCont(text.charCodeAt(i + target.length))) return target;
      }
    }
    from = text.indexOf('rwsplit', from + 7);
  }
  return null;
}

/** Index just past the closing quote of a string opened at `start` (which holds the quote character). */
function endOfQuoted(sql: string, start: number, quote: number, backslashEscapes: boolean): number {
  let i = start + 1;
  while (i < sql.length) {
    const c = sql.charCodeAt(i);
    if (backslashEscapes && c === CH_BACKSLASH) {
      i += 2;
    } else if (c === quote) {
      if (sql.charCodeAt(i + 1) !== quote) return i + 1;
      i += 2; // doubled quote: an escaped quote inside the literal
    } else {
      i++;
    }
  }
  return sql.length; // unterminated: the server will reject it; swallow the rest
}

/** Index just past a block comment opened at `start`; PostgreSQL block comments nest. */
export function endOfBlockComment(sql: string, start: number): number {
  let depth = 0;
  let i = start;
  while (i < sql.length) {
    const c = sql.charCodeAt(i);
    if (c === CH_SLASH && sql.charCodeAt(i + 1) === CH_STAR) {
      depth++;
      i += 2;
    } else if (c === CH_STAR && sql.charCodeAt(i + 1) === CH_SLASH) {
      depth--;
      i += 2;
      if (depth === 0) return i;
    } else {
      i++;
    }
  }
  return sql.length;
}

/** If a dollar-quote opener (`$$` or `$tag$`) starts at `start`, its length; otherwise 0. */
function dollarTagLength(sql: string, start: number): number {
  let i = start + 1;
  if (sql.charCodeAt(i) === CH_DOLLAR) return 2;
  if (!isIdentStart(sql.charCodeAt(i))) return 0;
  i++;
  while (i < sql.length) {
    const c = sql.charCodeAt(i);
    if (c === CH_DOLLAR) return i + 1 - start;
    if (!isIdentStart(c) && !isDigit(c)) return 0;
    i++;
  }
  return 0;
}

/** Lexes `sql` into statements and a hint. */
export function lex(sql: string): LexResult {
  const splitter = new StatementSplitter();
  let hint: 'primary' | 'replica' | null = null;
  let depth = 0;
  let i = 0;
  const n = sql.length;
  const emit = (kind: TokenKind, text: string, at: number): void => splitter.push({ kind, text, depth: at });
  const comment = (from: number, to: number): void => {
    if (hint === null) hint = findHint(sql.slice(from, to));
  };

  while (i < n) {
    const c = sql.charCodeAt(i);
    const next = sql.charCodeAt(i + 1);
    if (isSpace(c)) {
      i++;
    } else if (c === CH_MINUS && next === CH_MINUS) {
      let end = i + 2;
      while (end < n && sql.charCodeAt(end) !== CH_LF && sql.charCodeAt(end) !== CH_CR) end++;
      comment(i, end);
      i = end;
    } else if (c === CH_SLASH && next === CH_STAR) {
      const end = endOfBlockComment(sql, i);
      comment(i, end);
      i = end;
    } else if (c === CH_SQUOTE) {
      const end = endOfQuoted(sql, i, CH_SQUOTE, false);
      emit('string', unquote(sql, i, end), depth);
      i = end;
    } else if (c === CH_DQUOTE) {
      const end = endOfQuoted(sql, i, CH_DQUOTE, false);
      emit('qident', unquote(sql, i, end), depth);
      i = end;
    } else if ((c === 69 || c === 101) && next === CH_SQUOTE) {
      // E'...': backslash escapes. The value is not needed for routing, only where the literal ends.
      const end = endOfQuoted(sql, i + 1, CH_SQUOTE, true);
      emit('string', sql.slice(i + 2, end - 1), depth);
      i = end;
    } else if ((c === 85 || c === 117) && next === CH_AMP && isQuote(sql.charCodeAt(i + 2))) {
      i += 2; // U&'...' or U&"...": the quoted part is read on the next turn
    } else if (isIdentStart(c)) {
      let end = i + 1;
      while (end < n && isIdentCont(sql.charCodeAt(end))) end++;
      emit('word', sql.slice(i, end).toLowerCase(), depth);
      i = end;
    } else if (isDigit(c) || (c === CH_DOT && isDigit(next))) {
      let end = i + 1;
      while (end < n && (isIdentCont(sql.charCodeAt(end)) || sql.charCodeAt(end) === CH_DOT)) end++;
      emit('number', sql.slice(i, end), depth);
      i = end;
    } else if (c === CH_DOLLAR) {
      i = lexDollar(sql, i, depth, emit);
    } else if (c === CH_SEMI) {
      if (splitter.semicolon()) depth = 0;
      i++;
    } else if (c === CH_LPAREN) {
      emit('punct', '(', depth);
      depth++;
      i++;
    } else if (c === CH_RPAREN) {
      depth = Math.max(0, depth - 1);
      emit('punct', ')', depth);
      i++;
    } else {
      emit('punct', sql[i] ?? '', depth);
      i++;
    }
  }
  splitter.finish();
  return { statements: splitter.statements, hint };
}

function isQuote(c: number): boolean {
  return c === CH_SQUOTE || c === CH_DQUOTE;
}

/** The content of a `'...'` or `"..."` literal spanning [start, end), with doubled quotes undone. */
function unquote(sql: string, start: number, end: number): string {
  const quote = sql[start] ?? "'";
  const body = sql.slice(start + 1, sql.charCodeAt(end - 1) === sql.charCodeAt(start) ? end - 1 : end);
  return body.includes(quote) ? body.split(quote + quote).join(quote) : body;
}

/** `$1` parameter, dollar-quoted string, or a lone `$`; returns the index after it. */
function lexDollar(
  sql: string,
  i: number,
  depth: number,
  emit: (kind: TokenKind, text: string, at: number) => void,
): number {
  if (isDigit(sql.charCodeAt(i + 1))) {
    let end = i + 1;
    while (end < sql.length && isDigit(sql.charCodeAt(end))) end++;
    emit('param', sql.slice(i, end), depth);
    return end;
  }
  const tagLength = dollarTagLength(sql, i);
  if (tagLength === 0) {
    emit('punct', '$', depth);
    return i + 1;
  }
  const tag = sql.slice(i, i + tagLength);
  const close = sql.indexOf(tag, i + tagLength);
  const end = close < 0 ? sql.length : close + tagLength;
  emit('string', sql.slice(i + tagLength, close < 0 ? sql.length : close), depth);
  return end;
}
