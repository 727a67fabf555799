/**
 * SASLprep (RFC 4013) of a password, the way PostgreSQL applies it: when the result would be an error
 * (prohibited character, bad bidirectional text, empty result, invalid Unicode) PostgreSQL does not reject
 * the password but uses the raw bytes instead, so that passwords in any encoding keep working.
 * See https://www.postgresql.org/docs/current/sasl-authentication.html and `src/common/saslprep.c`.
 */
import {
  L_CAT,
  MAPPED_TO_NOTHING,
  NON_ASCII_SPACE,
  PROHIBITED_OUTPUT,
  RAND_AL_CAT,
  UNASSIGNED,
} from './saslprep-tables.js';

/** True when `code` falls in one of the inclusive ranges of `table` (sorted flat `[first, last, ...]`). */
function inTable(code: number, table: readonly number[]): boolean {
  let low = 0;
  let high = table.length / 2 - 1;
  while (low <= high) {
    const mid = (low + high) >>> 1;
    const first = table[mid * 2] ?? 0;
    const last = table[mid * 2 + 1] ?? 0;
    if (code < first) high = mid - 1;
    else if (code > last) low = mid + 1;
    else return true;
  }
  return false;
}

/** Step 1 of stringprep: non-ASCII spaces become U+0020, "commonly mapped to nothing" characters vanish. */
function mapCodePoints(codes: readonly number[]): number[] {
  const mapped: number[] = [];
  for (const code of codes) {
    if (inTable(code, NON_ASCII_SPACE)) mapped.push(0x20);
    else if (!inTable(code, MAPPED_TO_NOTHING)) mapped.push(code);
  }
  return mapped;
}

/** RFC 3454 section 6: a string with any R/AL character has no L character and starts and ends with R/AL. */
function bidiIsValid(codes: readonly number[]): boolean {
  if (!codes.some((code) => inTable(code, RAND_AL_CAT))) return true;
  if (codes.some((code) => inTable(code, L_CAT))) return false;
  return inTable(codes[0] ?? 0, RAND_AL_CAT) && inTable(codes[codes.length - 1] ?? 0, RAND_AL_CAT);
}

/**
 * Prepare a password for SCRAM exactly as PostgreSQL's `pg_saslprep()` does, returning the string whose
 * UTF-8 bytes feed PBKDF2.
 *
 * - pure ASCII passwords are used as they are (no mapping, not even of control characters);
 * - otherwise: map (C.1.2 spaces to U+0020, B.1 to nothing), normalize NFKC, then check the mapped code
 *   points (PostgreSQL checks them before normalization, not after) against the prohibited-output and
 *   Unicode 3.2 unassigned tables and the bidirectional rule;
 * - any failure, an empty mapped string, or a lone surrogate (not encodable as UTF-8) gives back the raw
 *   password.
 */
export function saslPrep(password: string): string {
  // eslint-disable-next-line no-control-regex -- the ASCII range test is the point
  if (/^[\x00-\x7f]*$/.test(password)) return password;
  if (/\p{Cs}/u.test(password)) return password;
  const codes = Array.from(password, (ch) => ch.codePointAt(0) ?? 0);
  const mapped = mapCodePoints(codes);
  if (mapped.length === 0) return password;
  for (const code of mapped) {
    if (inTable(code, PROHIBITED_OUTPUT) || inTable(code, UNASSIGNED)) return password;
  }
  if (!bidiIsValid(mapped)) return password;
  return mapped
    .map((code) => String.fromCodePoint(code))
    .join('')
    .normalize('NFKC');
}
