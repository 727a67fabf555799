/**
 * Pieces shared by the SCRAM-SHA-256 client and server: the primitives of RFC 5802 section 2.2 instantiated
 * with SHA-256 (RFC 7677), the PostgreSQL stored-verifier format, and the attribute syntax of SCRAM messages.
 * See https://www.postgresql.org/docs/current/sasl-authentication.html.
 */
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import { saslPrep } from './saslprep.js';

export { saslPrep } from './saslprep.js';

/** The SASL mechanism name sent in SASLInitialResponse (the only one implemented; no `-PLUS`). */
export const SCRAM_MECHANISM = 'SCRAM-SHA-256';
/** PostgreSQL's default `scram_iterations` (and the only value before PostgreSQL 16). */
export const DEFAULT_ITERATIONS = 4096;
/** PostgreSQL's `SCRAM_DEFAULT_SALT_LEN`. */
export const DEFAULT_SALT_LENGTH = 16;
/** SHA-256 output length: the size of every key, signature and proof. */
export const KEY_LENGTH = 32;

/** A SCRAM exchange that cannot go on: malformed message, unsupported feature, wrong server signature. */
export class ScramError extends Error {
  readonly code = 'SCRAM_PROTOCOL';
  override readonly name = 'ScramError';
}

/** A stored SCRAM verifier string that does not have the form PostgreSQL writes in `pg_authid`. */
export class ScramVerifierError extends Error {
  readonly code = 'SCRAM_VERIFIER_INVALID';
  override readonly name = 'ScramVerifierError';
}

/** What a server stores for one user instead of the password (RFC 5802 section 3). */
export interface ScramVerifier {
  iterations: number;
  salt: Buffer;
  storedKey: Buffer;
  serverKey: Buffer;
}

/**
 * What a client proves it knows in a SCRAM exchange, without the password: the ClientKey a server
 * recovers from a correct proof (ClientProof XOR HMAC(StoredKey, AuthMessage)) and the ServerKey of the
 * same verifier. With them the proxy can run a SCRAM exchange as that client toward a server holding the
 * same verifier (same salt and iteration count): PgBouncer's SCRAM pass-through.
 */
export interface ScramKeys {
  clientKey: Buffer;
  serverKey: Buffer;
}

/** H(): SHA-256. */
export function h(data: Buffer): Buffer {
  return createHash('sha256').update(data).digest();
}

/** HMAC(key, text) with SHA-256. */
export function hmac(key: Buffer, text: Buffer | string): Buffer {
  return createHmac('sha256', key).update(text).digest();
}

/** Hi(str, salt, i): PBKDF2 with HMAC-SHA-256 as PRF and a one-block (32-byte) output, RFC 5802 section 2.2. */
export function hi(password: Buffer, salt: Buffer, iterations: number): Buffer {
  return pbkdf2Sync(password, salt, iterations, KEY_LENGTH, 'sha256');
}

/** Byte-wise XOR of two buffers of the same length. */
export function xor(a: Buffer, b: Buffer): Buffer {
  if (a.length !== b.length)
    throw new RangeError(`xor of buffers of different lengths (${a.length}, ${b.length})`);
  const out = Buffer.alloc(a.length);
  for (let i = 0; i < a.length; i++) out[i] = (a[i] ?? 0) ^ (b[i] ?? 0);
  return out;
}

/** SaltedPassword := Hi(Normalize(password), salt, i), with PostgreSQL's SASLprep as Normalize. */
export function saltedPassword(password: string, salt: Buffer, iterations: number): Buffer {
  return hi(Buffer.from(saslPrep(password), 'utf8'), salt, iterations);
}

/** ClientKey := HMAC(SaltedPassword, "Client Key"). */
export function clientKeyOf(salted: Buffer): Buffer {
  return hmac(salted, 'Client Key');
}

/** ServerKey := HMAC(SaltedPassword, "Server Key"). */
export function serverKeyOf(salted: Buffer): Buffer {
  return hmac(salted, 'Server Key');
}

/**
 * Compute the verifier a server stores for `password`.
 * @param opts.iterations PBKDF2 iterations, default 4096 (PostgreSQL's default).
 * @param opts.salt the salt, default 16 random bytes.
 */
export function makeScramVerifier(
  password: string,
  opts: { iterations?: number; salt?: Buffer } = {},
): ScramVerifier {
  const iterations = opts.iterations ?? DEFAULT_ITERATIONS;
  if (!Number.isSafeInteger(iterations) || iterations < 1) {
    throw new RangeError(`SCRAM iterations must be a positive integer, got ${iterations}`);
  }
  const salt = opts.salt ?? randomBytes(DEFAULT_SALT_LENGTH);
  const salted = saltedPassword(password, salt, iterations);
  return { iterations, salt, storedKey: h(clientKeyOf(salted)), serverKey: serverKeyOf(salted) };
}

/** `SCRAM-SHA-256$<iterations>:<salt b64>$<StoredKey b64>:<ServerKey b64>`, as in `pg_authid.rolpassword`. */
export function formatScramVerifier(v: ScramVerifier): string {
  const b64 = (b: Buffer): string => b.toString('base64');
  return `${SCRAM_MECHANISM}$${v.iterations}:${b64(v.salt)}$${b64(v.storedKey)}:${b64(v.serverKey)}`;
}

const VERIFIER_SHAPE = /^SCRAM-SHA-256\$([0-9]+):([^$:]+)\$([^$:]+):([^$:]+)$/;

/**
 * Parse a verifier in PostgreSQL's format. Throws {@link ScramVerifierError} naming the faulty part (never
 * echoing the string, which is a secret).
 */
export function parseScramVerifier(s: string): ScramVerifier {
  const m = VERIFIER_SHAPE.exec(s);
  if (!m) {
    throw new ScramVerifierError(
      "SCRAM verifier is not of the form 'SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>'",
    );
  }
  const [, iterText = '', saltText = '', storedText = '', serverText = ''] = m;
  const iterations = Number(iterText);
  if (!Number.isSafeInteger(iterations) || iterations < 1 || iterations > 0x7fffffff) {
    throw new ScramVerifierError('SCRAM verifier iteration count must be an integer from 1 to 2147483647');
  }
  const salt = decodeBase64(saltText);
  if (!salt || salt.length === 0) throw new ScramVerifierError('SCRAM verifier salt is not valid base64');
  const storedKey = decodeBase64(storedText);
  const serverKey = decodeBase64(serverText);
  if (!storedKey || storedKey.length !== KEY_LENGTH) {
    throw new ScramVerifierError('SCRAM verifier StoredKey is not the base64 of 32 bytes');
  }
  if (!serverKey || serverKey.length !== KEY_LENGTH) {
    throw new ScramVerifierError('SCRAM verifier ServerKey is not the base64 of 32 bytes');
  }
  return { iterations, salt, storedKey, serverKey };
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Strict base64 (padded, standard alphabet); null when `text` is not base64 (Buffer.from is lenient). */
export function decodeBase64(text: string): Buffer | null {
  return BASE64.test(text) ? Buffer.from(text, 'base64') : null;
}

/** One `name=value` attribute of a SCRAM message (RFC 5802 section 5.1). */
export interface ScramAttribute {
  name: string;
  value: string;
}

/**
 * Split a SCRAM message (or the part after the GS2 header) into its attributes. Values never contain ','
 * (RFC 5802 section 7), so splitting on ',' is exact. Throws {@link ScramError} on a part that is not
 * `<letter>=<value>`.
 */
export function parseAttributes(text: string, what: string): ScramAttribute[] {
  return text.split(',').map((part) => {
    if (!/^[A-Za-z]=/.test(part)) throw new ScramError(`malformed SCRAM ${what}: expected an attribute`);
    return { name: part.charAt(0), value: part.slice(2) };
  });
}

/**
 * A nonce is printable ASCII without ',' (RFC 5802 section 7, `printable`). PostgreSQL also sends only such
 * characters (base64 of 18 random bytes).
 */
export function isValidNonce(nonce: string): boolean {
  return /^[\x21-\x2b\x2d-\x7e]+$/.test(nonce);
}

/** A fresh nonce like PostgreSQL's: base64 of 18 random bytes (24 characters, no padding). */
export function randomNonce(): string {
  return randomBytes(18).toString('base64');
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** Decode a message as UTF-8 (RFC 5802 messages are UTF-8); {@link ScramError} when it is not. */
export function decodeMessage(data: Buffer, what: string): string {
  try {
    return UTF8.decode(data);
  } catch {
    throw new ScramError(`malformed SCRAM ${what}: not valid UTF-8`);
  }
}
