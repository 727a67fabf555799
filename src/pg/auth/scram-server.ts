/**
 * SCRAM-SHA-256 server side: the proxy authenticating a client against a stored verifier. Only the SASL
 * payloads are produced here; the caller wraps them in AuthenticationSASLContinue / AuthenticationSASLFinal
 * ('R' messages) and reads them from SASLInitialResponse / SASLResponse ('p' messages).
 * Behaviour follows PostgreSQL's `src/backend/libpq/auth-scram.c` where RFC 5802 leaves a choice.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import {
  DEFAULT_ITERATIONS,
  DEFAULT_SALT_LENGTH,
  KEY_LENGTH,
  ScramError,
  decodeBase64,
  decodeMessage,
  h,
  hmac,
  isValidNonce,
  parseAttributes,
  randomNonce,
  xor,
} from './scram-common.js';
import type { ScramKeys, ScramVerifier } from './scram-common.js';

export { ScramError } from './scram-common.js';

/**
 * Secret of this process for fake verifiers: the same unknown user gets the same salt on every attempt
 * (a changing salt would tell an attacker that the user does not exist), but the salt cannot be predicted
 * from outside. PostgreSQL does the same with `scram_mock_salt()` and its `mock_auth_nonce`.
 */
const MOCK_SECRET = randomBytes(32);

/** A verifier for a user that does not exist: shaped like a real one, matching no password. */
function mockVerifier(user: string): ScramVerifier {
  const seed = hmac(MOCK_SECRET, `mock:${user}`);
  return {
    iterations: DEFAULT_ITERATIONS,
    salt: seed.subarray(0, DEFAULT_SALT_LENGTH),
    storedKey: hmac(seed, 'StoredKey'),
    serverKey: hmac(seed, 'ServerKey'),
  };
}

/** What the first exchange left for the final one. */
interface FirstExchange {
  /** The GS2 header exactly as the client sent it ('n,,' or 'y,,'); `c=` must carry it back. */
  gs2Header: string;
  clientFirstBare: string;
  serverFirst: string;
  /** Client nonce followed by server nonce. */
  nonce: string;
}

/**
 * Parse the GS2 header at the start of client-first-message (RFC 5802 section 7, `gs2-header`).
 * 'y' means "I could do channel binding but think you can't": right for us, since we offer no -PLUS.
 */
function splitGs2Header(message: string): { gs2Header: string; bare: string } {
  const flag = message.charAt(0);
  if (flag === 'p') {
    throw new ScramError('SCRAM channel binding was requested, but the proxy offers only SCRAM-SHA-256');
  }
  if ((flag !== 'n' && flag !== 'y') || message.charAt(1) !== ',') {
    throw new ScramError("malformed SCRAM client-first-message: expected 'n,' or 'y,' at the start");
  }
  if (message.startsWith('a=', 2)) {
    // PostgreSQL rejects an authorization identity too: the user comes from the startup message.
    throw new ScramError('SCRAM authorization identity (a=) is not supported');
  }
  if (message.charAt(2) !== ',') {
    throw new ScramError('malformed SCRAM client-first-message: bad GS2 header');
  }
  return { gs2Header: message.slice(0, 3), bare: message.slice(3) };
}

/** Read `n=<user>,r=<nonce>[,ext...]` and return the client nonce; the user name is ignored, as in PostgreSQL. */
function readClientFirstBare(bare: string): string {
  const attrs = parseAttributes(bare, 'client-first-message');
  const [user, nonce] = attrs;
  if (user?.name === 'm') throw new ScramError('SCRAM mandatory extension (m=) is not supported');
  if (user?.name !== 'n') throw new ScramError('malformed SCRAM client-first-message: expected n=');
  if (nonce?.name !== 'r' || !isValidNonce(nonce.value)) {
    throw new ScramError('malformed SCRAM client-first-message: expected r=<printable nonce>');
  }
  return nonce.value;
}

/**
 * One SCRAM-SHA-256 exchange as the server. Use a new instance per authentication attempt.
 */
export class ScramServer {
  readonly #verifier: ScramVerifier;
  readonly #isMock: boolean;
  readonly #serverNonce: string;
  #first: FirstExchange | null = null;
  #done = false;
  #clientKey: Buffer | null = null;

  /**
   * @param verifier the user's stored verifier; `null` for an unknown user: the exchange then runs in full
   *   with a fake verifier (same messages, same work) and fails at the end, so nothing reveals that the
   *   user does not exist.
   * @param opts.nonce the server part of the nonce (default: base64 of 18 random bytes), for tests.
   * @param opts.user the user name from the startup message; with a null verifier it keeps the fake salt
   *   stable per user name.
   */
  constructor(verifier: ScramVerifier | null, opts: { nonce?: string; user?: string } = {}) {
    this.#verifier = verifier ?? mockVerifier(opts.user ?? '');
    this.#isMock = verifier === null;
    this.#serverNonce = opts.nonce ?? randomNonce();
    if (!isValidNonce(this.#serverNonce))
      throw new RangeError('SCRAM nonce must be printable ASCII without ","');
  }

  /**
   * Consume the client-first-message (the data of SASLInitialResponse) and return the server-first-message
   * `r=<client nonce><server nonce>,s=<salt>,i=<iterations>` for AuthenticationSASLContinue.
   * Throws {@link ScramError} on a malformed message, on channel binding `p=`, or when called twice.
   */
  handleClientFirst(data: Buffer): Buffer {
    if (this.#first !== null || this.#done) throw new ScramError('SCRAM client-first-message received twice');
    const message = decodeMessage(data, 'client-first-message');
    const { gs2Header, bare } = splitGs2Header(message);
    const nonce = readClientFirstBare(bare) + this.#serverNonce;
    const v = this.#verifier;
    const serverFirst = `r=${nonce},s=${v.salt.toString('base64')},i=${v.iterations}`;
    this.#first = { gs2Header, clientFirstBare: bare, serverFirst, nonce };
    return Buffer.from(serverFirst, 'utf8');
  }

  /**
   * Consume the client-final-message (the data of SASLResponse). Returns the server-final-message
   * `v=<ServerSignature>` for AuthenticationSASLFinal when the proof is right, or `null` when the password
   * is wrong or the user unknown (the caller then sends SQLSTATE 28P01). Throws {@link ScramError} on a
   * malformed message, a channel-binding or nonce mismatch, or a call out of order.
   */
  handleClientFinal(data: Buffer): Buffer | null {
    const first = this.#first;
    if (first === null || this.#done) throw new ScramError('SCRAM client-final-message out of order');
    this.#done = true;
    const message = decodeMessage(data, 'client-final-message');
    const proofAt = message.lastIndexOf(',p=');
    if (proofAt < 0) throw new ScramError('malformed SCRAM client-final-message: missing proof (p=)');
    const withoutProof = message.slice(0, proofAt);
    const proof = decodeBase64(message.slice(proofAt + 3));
    if (!proof || proof.length !== KEY_LENGTH) {
      throw new ScramError('malformed SCRAM client-final-message: proof is not the base64 of 32 bytes');
    }
    checkFinalAttributes(withoutProof, first);
    const authMessage = `${first.clientFirstBare},${first.serverFirst},${withoutProof}`;
    // ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage); the proof holds when H(ClientKey) = StoredKey.
    const clientKey = xor(proof, hmac(this.#verifier.storedKey, authMessage));
    const proofMatches = timingSafeEqual(h(clientKey), this.#verifier.storedKey);
    if (!proofMatches || this.#isMock) return null;
    this.#clientKey = clientKey;
    const serverSignature = hmac(this.#verifier.serverKey, authMessage);
    return Buffer.from(`v=${serverSignature.toString('base64')}`, 'utf8');
  }

  /**
   * The client's keys once its proof was accepted (null before, after a failure, and for an unknown user):
   * enough to authenticate as that client to a server that holds the same verifier.
   */
  get keys(): ScramKeys | null {
    return this.#clientKey && { clientKey: this.#clientKey, serverKey: this.#verifier.serverKey };
  }
}

/** `c=` must echo the GS2 header and `r=` the full nonce; extensions in between are ignored (as PostgreSQL). */
function checkFinalAttributes(withoutProof: string, first: FirstExchange): void {
  const attrs = parseAttributes(withoutProof, 'client-final-message');
  const [binding, nonce] = attrs;
  if (binding?.name !== 'c' || nonce?.name !== 'r') {
    throw new ScramError('malformed SCRAM client-final-message: expected c=...,r=...');
  }
  const echoed = decodeBase64(binding.value);
  if (!echoed || !echoed.equals(Buffer.from(first.gs2Header, 'utf8'))) {
    throw new ScramError('SCRAM channel-binding data (c=) does not match the client-first-message header');
  }
  if (nonce.value !== first.nonce) throw new ScramError('SCRAM nonce mismatch in client-final-message');
}
