import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SCRAM_MECHANISM, ScramClient, ScramError } from './scram-client.js';

function isScramError(message: RegExp): (err: unknown) => boolean {
  return (err) => err instanceof ScramError && err.code === 'SCRAM_PROTOCOL' && message.test(err.message);
}

function afterFirst(nonce = 'abc'): ScramClient {
  const client = new ScramClient('pw', { nonce });
  client.clientFirstMessage();
  return client;
}

describe('ScramClient', () => {
  test('names the mechanism PostgreSQL expects', () => {
    assert.equal(SCRAM_MECHANISM, 'SCRAM-SHA-256');
  });

  test("sends n=* by default, as PostgreSQL ignores the name, and escapes ',' and '=' in a given one", () => {
    assert.equal(new ScramClient('pw', { nonce: 'abc' }).clientFirstMessage().toString(), 'n,,n=*,r=abc');
    const named = new ScramClient('pw', { nonce: 'abc', user: 'a,b=c' });
    assert.equal(named.clientFirstMessage().toString(), 'n,,n=a=2Cb=3Dc,r=abc');
  });

  test('generates a fresh printable nonce per instance', () => {
    const a = new ScramClient('pw').clientFirstMessage().toString();
    const b = new ScramClient('pw').clientFirstMessage().toString();
    assert.notEqual(a, b);
    assert.match(a, /^n,,n=\*,r=[\x21-\x2b\x2d-\x7e]{24}$/);
  });

  test('rejects an invalid nonce option', () => {
    assert.throws(() => new ScramClient('pw', { nonce: '' }), RangeError);
    assert.throws(() => new ScramClient('pw', { nonce: 'a,b' }), RangeError);
  });

  const badServerFirst: ReadonlyArray<[string, string, RegExp]> = [
    ['no server nonce', 's=c2FsdA==,i=4096', /expected r=/],
    ['a nonce equal to ours', 'r=abc,s=c2FsdA==,i=4096', /does not extend/],
    ['a nonce not starting with ours', 'r=xyzabc,s=c2FsdA==,i=4096', /does not extend/],
    ['an empty salt', 'r=abcdef,s=,i=4096', /salt/],
    ['a salt that is not base64', 'r=abcdef,s=c2F!sdA=,i=4096', /salt/],
    ['zero iterations', 'r=abcdef,s=c2FsdA==,i=0', /iteration count/],
    ['non-numeric iterations', 'r=abcdef,s=c2FsdA==,i=4k', /iteration count/],
    ['too many iterations', 'r=abcdef,s=c2FsdA==,i=4294967296', /iteration count/],
    ['a mandatory extension', 'm=ext,r=abcdef,s=c2FsdA==,i=4096', /mandatory extension/],
    ['attributes out of order', 's=c2FsdA==,r=abcdef,i=4096', /expected r=/],
  ];
  for (const [what, message, expected] of badServerFirst) {
    test(`rejects a server-first-message with ${what}`, () => {
      assert.throws(() => afterFirst().handleServerFirst(Buffer.from(message)), isScramError(expected));
    });
  }

  test('ignores extensions after i= in the server-first-message', () => {
    const final = afterFirst().handleServerFirst(Buffer.from('r=abcdef,s=c2FsdA==,i=16,x=y')).toString();
    assert.match(final, /^c=biws,r=abcdef,p=[A-Za-z0-9+/]{43}=$/);
  });

  test('rejects a malformed server-final-message', () => {
    for (const [message, expected] of [
      ['', /expected an attribute/],
      ['x=1', /expected v=/],
      ['v=AAAA', /signature is wrong/],
    ] as const) {
      const client = afterFirst();
      client.handleServerFirst(Buffer.from('r=abcdef,s=c2FsdA==,i=16'));
      assert.throws(() => client.handleServerFinal(Buffer.from(message)), isScramError(expected));
    }
  });

  test('enforces the order of the exchange', () => {
    const client = new ScramClient('pw', { nonce: 'abc' });
    assert.throws(
      () => client.handleServerFirst(Buffer.from('r=abcdef,s=c2FsdA==,i=16')),
      isScramError(/order/),
    );
    client.clientFirstMessage();
    assert.throws(() => client.handleServerFinal(Buffer.from('v=AAAA')), isScramError(/order/));
    client.handleServerFirst(Buffer.from('r=abcdef,s=c2FsdA==,i=16'));
    assert.throws(
      () => client.handleServerFirst(Buffer.from('r=abcdef,s=c2FsdA==,i=16')),
      isScramError(/order/),
    );
    assert.throws(() => client.clientFirstMessage(), isScramError(/moved on/));
  });
});
