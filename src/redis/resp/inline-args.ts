/**
 * Splitting of an inline command line into arguments with the quoting rules of redis'
 * `sdssplitargs()` (src/sds.c), so the proxy sees exactly the arguments redis-server will see:
 *
 * - arguments are separated by runs of C `isspace` bytes (space, \t, \n, \v, \f, \r);
 * - an unquoted argument ends at space, \t, \n or \r, and a quote inside it starts a quoted part
 *   (`a"b c"` is the single argument `ab c`);
 * - inside "…": `\xHH` (two hex digits) is that byte, `\n \r \t \b \a` are control characters,
 *   `\` before any other byte is that byte;
 * - inside '…': only `\'` is an escape;
 * - a closing quote must be followed by a space or the end of the line, and an unterminated
 *   quote is an error: both make the whole line invalid ("unbalanced quotes").
 */

const SPACE = 0x20;
const TAB = 0x09;
const LF = 0x0a;
const CR = 0x0d;
const DOUBLE_QUOTE = 0x22;
const SINGLE_QUOTE = 0x27;
const BACKSLASH = 0x5c;
const LOWER_X = 0x78;

/** C `isspace()` in the "C" locale. */
function isSpace(c: number): boolean {
  return c === SPACE || (c >= TAB && c <= CR); // \t \n \v \f \r are 0x09..0x0d
}

/** Value of a hex digit, or -1. */
function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}

/** The byte `\c` stands for inside double quotes. */
function escapedByte(c: number): number {
  switch (c) {
    case 0x6e /* n */:
      return LF;
    case 0x72 /* r */:
      return CR;
    case 0x74 /* t */:
      return TAB;
    case 0x62 /* b */:
      return 0x08;
    case 0x61 /* a */:
      return 0x07;
    default:
      return c;
  }
}

/** Cursor over one line while its arguments are split. */
class ArgSplitter {
  private p = 0;

  constructor(private readonly line: Buffer) {}

  /** All arguments, or null if the quoting is unbalanced. */
  splitAll(): Buffer[] | null {
    const line = this.line;
    const args: Buffer[] = [];
    for (;;) {
      while (this.p < line.length && isSpace(line[this.p]!)) this.p++;
      if (this.p >= line.length) return args;
      const arg = this.nextArg();
      if (arg === null) return null;
      args.push(arg);
    }
  }

  /**
   * One argument starting at a non-space byte: a zero-copy subarray of the line unless it has
   * a quoted part, which ends the argument and whose escapes change the bytes.
   */
  private nextArg(): Buffer | null {
    const line = this.line;
    const start = this.p;
    while (this.p < line.length) {
      const c = line[this.p]!;
      if (c === SPACE || c === TAB || c === LF || c === CR) break;
      if (c === DOUBLE_QUOTE || c === SINGLE_QUOTE) {
        const bytes = [...line.subarray(start, this.p)];
        this.p++;
        const closed = c === DOUBLE_QUOTE ? this.doubleQuoted(bytes) : this.singleQuoted(bytes);
        return closed ? Buffer.from(bytes) : null;
      }
      this.p++;
    }
    return line.subarray(start, this.p);
  }

  /** Reads up to and including the closing `"`; false if unbalanced. */
  private doubleQuoted(out: number[]): boolean {
    const line = this.line;
    while (this.p < line.length) {
      const c = line[this.p]!;
      if (c === BACKSLASH && this.p + 1 < line.length) {
        const hi = this.p + 3 < line.length ? hexValue(line[this.p + 2]!) : -1;
        const lo = this.p + 3 < line.length ? hexValue(line[this.p + 3]!) : -1;
        if (line[this.p + 1] === LOWER_X && hi >= 0 && lo >= 0) {
          out.push(hi * 16 + lo);
          this.p += 4;
        } else {
          out.push(escapedByte(line[this.p + 1]!));
          this.p += 2;
        }
      } else if (c === DOUBLE_QUOTE) {
        return this.closeQuote();
      } else {
        out.push(c);
        this.p++;
      }
    }
    return false;
  }

  /** Reads up to and including the closing `'`; false if unbalanced. */
  private singleQuoted(out: number[]): boolean {
    const line = this.line;
    while (this.p < line.length) {
      const c = line[this.p]!;
      if (c === BACKSLASH && line[this.p + 1] === SINGLE_QUOTE) {
        out.push(SINGLE_QUOTE);
        this.p += 2;
      } else if (c === SINGLE_QUOTE) {
        return this.closeQuote();
      } else {
        out.push(c);
        this.p++;
      }
    }
    return false;
  }

  /** At a closing quote: it ends the argument and must be followed by a space or the end. */
  private closeQuote(): boolean {
    this.p++;
    return this.p >= this.line.length || isSpace(this.line[this.p]!);
  }
}

/**
 * Splits an inline command line (without its line terminator) into arguments the way
 * redis-server does. Unquoted arguments are subarrays of `line`; quoted ones are fresh buffers.
 * Returns null when the quoting is unbalanced (redis answers "unbalanced quotes in request").
 * An empty or all-space line gives no arguments. `\v` and `\f` separate arguments but do not
 * end one, as in redis. A NUL byte is an ordinary byte here (redis would stop the line at it):
 * `CommandReader` rejects lines that contain one before splitting them.
 */
export function splitInlineArgs(line: Buffer): Buffer[] | null {
  return new ArgSplitter(line).splitAll();
}
