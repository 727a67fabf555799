/**
 * SCRAM-SHA-256 client side: the proxy authenticating itself to a PostgreSQL backend. Only the SASL
 * payloads are produced here; the caller sends them in SASLInitialResponse (with mechanism
 * {@link SCRAM_MECHANISM}) and SASLResponse, and passes in the data of AuthenticationSASLContinue and
 * AuthenticationSASLFinal. See https://www.postgresql.org/docs/current/sasl-authentication.html.
 */
import { timingSafeEqual } from 'node:crypto';
import {
  ScramError,
  clientKeyOf,
  decodeBase64,
  decodeMessage,
  h,
  hmac,
  isValidNonce,
  parseAttributes,
  randomNonce,
  saltedPassword,
  serverKeyOf,
  xor,
} from './scram-common.js';
import type { ScramKeys } from './scram-common.js';

export { SCRAM_MECHANISM, ScramError } from './scram-common.js';

/** GS2 header without channel binding: 'n' = client does not support it, no authorization identity. */
const GS2_HEADER = 'n,,';

/** RFC 5802 `saslname`: ',' and '=' are escaped as '=2C' and '=3D'. */
function escapeSaslName(name: string): string {
  return name.replace(/=/g, '=3D').replace(/,/g, '=2C');
}

/** The salt and iteration count of a server-first-message, with the combined nonce. */
interface ServerFirst {
  nonce: string;
  salt: Buffer;
  iterations: number;
}

/** Parse `r=<nonce>,s=<salt>,i=<iterations>[,ext...]` and check the nonce extends ours. */
function parseServerFirst(message: string, clientNonce: string): ServerFirst {
  const attrs = parseAttributes(message, 'server-first-message');
  const [nonce, salt, iter] = attrs;
  if (nonce?.name === 'm') throw new ScramError('SCRAM mandatory extension (m=) is not supported');
  if (nonce?.name !== 'r' || salt?.name !== 's' || iter?.name !== 'i') {
    throw new ScramError('malformed SCRAM server-first-message: expected r=...,s=...,i=...');
  }
  if (!isValidNonce(nonce.value) || !nonce.value.startsWith(clientNonce) || nonce.value === clientNonce) {
    throw new ScramError('SCRAM server nonce does not extend the client nonce');
  }
  const saltBytes = decodeBase64(salt.value);
  if (!saltBytes || saltBytes.length === 0) throw new ScramError('SCRAM server salt is not valid base64');
  const iterations = /^[1-9][0-9]{0,9}$/.test(iter.value) ? Number(iter.value) : 0;
  if (iterations < 1 || iterations > 0x7fffffff) {
    throw new ScramError('SCRAM server iteration count is not an integer from 1 to 2147483647');
  }
  return { nonce: nonce.value, salt: saltBytes, iterations };
}

type ClientState = 'initial' | 'first-sent' | 'final-sent' | 'done';

/**
 * One SCRAM-SHA-256 exchange as the client. Use a new instance per connection attempt.
 */
export class ScramClient {
  /** the password, or the keys a client proved it has (SCRAM pass-through: no password known) */
  readonly #secret: string | ScramKeys;
  readonly #nonce: string;
  readonly #user: string;
  #state: ClientState = 'initial';
  #clientFirstBare = '';
  #expectedServerSignature: Buffer | null = null;

  /**
   * @param secret the backend user's password (SASLprep'd as PostgreSQL does), or the user's
   *   {@link ScramKeys} taken from that user's own exchange with the proxy: they answer only a server whose
   *   verifier has the same salt and iteration count (any other answers "password authentication failed").
   * @param opts.nonce the client nonce (default: base64 of 18 random bytes), for tests.
   * @param opts.user the name put in `n=`; default '*': PostgreSQL ignores it and takes the user from the
   *   startup message.
   */
  constructor(secret: string | ScramKeys, opts: { nonce?: string; user?: string } = {}) {
    this.#secret = secret;
    this.#nonce = opts.nonce ?? randomNonce();
    this.#user = opts.user ?? '*';
    if (!isValidNonce(this.#nonce)) throw new RangeError('SCRAM nonce must be printable ASCII without ","');
  }

  /**
   * The client-first-message `n,,n=*,r=<nonce>`: the data of SASLInitialResponse (whose mechanism field
   * is {@link SCRAM_MECHANISM}); the caller frames it.
   */
  clientFirstMessage(): Buffer {
    if (this.#state !== 'initial' && this.#state !== 'first-sent') {
      throw new ScramError('SCRAM client-first-message requested after the exchange moved on');
    }
    this.#clientFirstBare = `n=${escapeSaslName(this.#user)},r=${this.#nonce}`;
    this.#state = 'first-sent';
    return Buffer.from(GS2_HEADER + this.#clientFirstBare, 'utf8');
  }

  /**
   * Consume the server-first-message (data of AuthenticationSASLContinue) and return the
   * client-final-message `c=biws,r=<nonce>,p=<proof>` to send in SASLResponse.
   * Throws {@link ScramError} on a malformed message or a nonce that does not extend ours.
   */
  handleServerFirst(data: Buffer): Buffer {
    if (this.#state !== 'first-sent') throw new ScramError('SCRAM server-first-message out of order');
    this.#state = 'final-sent';
    const serverFirst = decodeMessage(data, 'server-first-message');
    const { nonce, salt, iterations } = parseServerFirst(serverFirst, this.#nonce);
    const withoutProof = `c=${Buffer.from(GS2_HEADER).toString('base64')},r=${nonce}`;
    const authMessage = `${this.#clientFirstBare},${serverFirst},${withoutProof}`;
    const { clientKey, serverKey } = this.#keys(salt, iterations);
    // ClientProof := ClientKey XOR HMAC(H(ClientKey), AuthMessage), RFC 5802 section 3.
    const proof = xor(clientKey, hmac(h(clientKey), authMessage));
    this.#expectedServerSignature = hmac(serverKey, authMessage);
    return Buffer.from(`${withoutProof},p=${proof.toString('base64')}`, 'utf8');
  }

  /** The keys for the server's salt and iteration count: derived from the password, or given. */
  #keys(salt: Buffer, iterations: number): ScramKeys {
    if (typeof this.#secret !== 'string') return this.#secret;
    const salted = saltedPassword(this.#secret, salt, iterations);
    return { clientKey: clientKeyOf(salted), serverKey: serverKeyOf(salted) };
  }

  /**
   * Consume the server-final-message (data of AuthenticationSASLFinal). Throws {@link ScramError} when the
   * server reports an error (`e=`) or its signature is wrong: the server does not know the password, so
   * the connection must not be used.
   */
  handleServerFinal(data: Buffer): void {
    const expected = this.#expectedServerSignature;
    if (this.#state !== 'final-sent' || expected === null) {
      throw new ScramError('SCRAM server-final-message out of order');
    }
    this.#state = 'done';
    const [first] = parseAttributes(decodeMessage(data, 'server-final-message'), 'server-final-message');
    if (first?.name === 'e')
      throw new ScramError(`SCRAM authentication failed on the server: ${first.value}`);
    if (first?.name !== 'v') throw new ScramError('malformed SCRAM server-final-message: expected v=');
    const signature = decodeBase64(first.value);
    if (!signature || signature.length !== expected.length || !timingSafeEqual(signature, expected)) {
      throw new ScramError('SCRAM server signature is wrong: the server does not know the password');
    }
  }
}
