import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ScramError, ScramServer } from './scram-server.js';
import { makeScramVerifier } from './scram-common.js';

const verifier = makeScramVerifier('pw', { iterations: 32, salt: Buffer.alloc(16, 1) });

function isScramError(message: RegExp): (err: unknown) => boolean {
  return (err) => err instanceof ScramError && err.code === 'SCRAM_PROTOCOL' && message.test(err.message);
}

describe('ScramServer.handleClientFirst', () => {
  test('accepts the user name forms PostgreSQL clients send, and ignores the name', () => {
    for (const first of [
      'n,,n=,r=abc',
      'n,,n=*,r=abc',
      'n,,n=alice,r=abc',
      'y,,n=,r=abc',
      'n,,n=,r=abc,x=ext',
    ]) {
      const server = new ScramServer(verifier, { nonce: 'SRV' });
      const reply = server.handleClientFirst(Buffer.from(first)).toString();
      assert.equal(reply, 'r=abcSRV,s=AQEBAQEBAQEBAQEBAQEBAQ==,i=32', first);
    }
  });

  const malformed: ReadonlyArray<[string, string | Buffer, RegExp]> = [
    ['channel binding p=', 'p=tls-server-end-point,,n=,r=abc', /channel binding/],
    ['an authorization identity', 'n,a=bob,n=,r=abc', /authorization identity/],
    ['an empty message', '', /malformed/],
    ['an unknown GS2 flag', 'x,,n=,r=abc', /malformed/],
    ['a missing comma after the flag', 'nn,n=,r=abc', /malformed/],
    ['a bad GS2 header', 'n,b,n=,r=abc', /malformed/],
    ['a mandatory extension', 'n,,m=ext,n=,r=abc', /mandatory extension/],
    ['no user attribute', 'n,,r=abc', /expected n=/],
    ['no nonce', 'n,,n=', /expected r=/],
    ['an empty nonce', 'n,,n=,r=', /expected r=/],
    ['a nonce with a space', 'n,,n=,r=a c', /expected r=/],
    ['a nonce with non-ASCII', 'n,,n=,r=ab\u00e9', /expected r=/],
    ['garbage attributes', 'n,,n=,r=abc,garbage', /expected an attribute/],
    ['invalid UTF-8', Buffer.from([0x6e, 0x2c, 0x2c, 0xff]), /UTF-8/],
  ];
  for (const [what, message, expected] of malformed) {
    test(`rejects ${what} with ScramError`, () => {
      const server = new ScramServer(verifier);
      const data = typeof message === 'string' ? Buffer.from(message) : message;
      assert.throws(() => server.handleClientFirst(data), isScramError(expected));
    });
  }

  test('refuses a second client-first-message', () => {
    const server = new ScramServer(verifier);
    server.handleClientFirst(Buffer.from('n,,n=,r=abc'));
    assert.throws(() => server.handleClientFirst(Buffer.from('n,,n=,r=abc')), isScramError(/twice/));
  });

  test('an unknown user fails malformed messages the same way', () => {
    assert.throws(
      () => new ScramServer(null).handleClientFirst(Buffer.from('p=x,,n=,r=a')),
      isScramError(/channel/),
    );
  });

  test('rejects an invalid server nonce option', () => {
    assert.throws(() => new ScramServer(verifier, { nonce: 'a,b' }), RangeError);
  });
});

describe('ScramServer.handleClientFinal', () => {
  function started(gs2 = 'n,,'): ScramServer {
    const server = new ScramServer(verifier, { nonce: 'SRV' });
    server.handleClientFirst(Buffer.from(`${gs2}n=,r=abc`));
    return server;
  }
  const proof = Buffer.alloc(32, 9).toString('base64');

  const malformed: ReadonlyArray<[string, string, RegExp]> = [
    ['no proof', 'c=biws,r=abcSRV', /missing proof/],
    ['a short proof', `c=biws,r=abcSRV,p=${Buffer.alloc(16).toString('base64')}`, /32 bytes/],
    ['a proof that is not base64', 'c=biws,r=abcSRV,p=!!!!', /32 bytes/],
    ['no channel-binding attribute', `r=abcSRV,p=${proof}`, /expected c=/],
    ['channel-binding data of another header', `c=eSws,r=abcSRV,p=${proof}`, /does not match/],
    ['channel-binding data that is not base64', `c=b!ws,r=abcSRV,p=${proof}`, /does not match/],
    ['the client nonce only', `c=biws,r=abc,p=${proof}`, /nonce mismatch/],
    ['another nonce', `c=biws,r=abcSRW,p=${proof}`, /nonce mismatch/],
  ];
  for (const [what, message, expected] of malformed) {
    test(`rejects ${what} with ScramError`, () => {
      assert.throws(() => started().handleClientFinal(Buffer.from(message)), isScramError(expected));
    });
  }

  test("checks c= against the 'y,,' header when the client sent that", () => {
    assert.equal(started('y,,').handleClientFinal(Buffer.from(`c=eSws,r=abcSRV,p=${proof}`)), null);
    assert.throws(
      () => started('y,,').handleClientFinal(Buffer.from(`c=biws,r=abcSRV,p=${proof}`)),
      isScramError(/does not match/),
    );
  });

  test('a well-formed message with a wrong proof returns null', () => {
    assert.equal(started().handleClientFinal(Buffer.from(`c=biws,r=abcSRV,p=${proof}`)), null);
  });

  test('refuses a final message before the first one and a second final message', () => {
    const message = Buffer.from(`c=biws,r=abcSRV,p=${proof}`);
    assert.throws(() => new ScramServer(verifier).handleClientFinal(message), isScramError(/out of order/));
    const server = started();
    server.handleClientFinal(message);
    assert.throws(() => server.handleClientFinal(message), isScramError(/out of order/));
  });
});
