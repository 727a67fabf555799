import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ScramClient } from './scram-client.js';
import { ScramServer } from './scram-server.js';
import { makeScramVerifier } from './scram-common.js';
import type { ScramVerifier } from './scram-common.js';

/** RFC 7677 section 3: user "user", password "pencil". */
const RFC = {
  clientNonce: 'rOprNGfwEbeRWgbNEkqO',
  serverNonce: '%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0',
  salt: Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64'),
  clientFirst: 'n,,n=user,r=rOprNGfwEbeRWgbNEkqO',
  serverFirst: 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096',
  clientFinal:
    'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=',
  serverFinal: 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=',
};

/** Run a whole exchange; returns what the server answered last (null = rejected). */
function exchange(client: ScramClient, server: ScramServer): Buffer | null {
  const serverFirst = server.handleClientFirst(client.clientFirstMessage());
  return server.handleClientFinal(client.handleServerFirst(serverFirst));
}

describe('RFC 7677 test vector', () => {
  test('ScramClient produces the exact client messages and accepts the server signature', () => {
    const client = new ScramClient('pencil', { user: 'user', nonce: RFC.clientNonce });
    assert.equal(client.clientFirstMessage().toString(), RFC.clientFirst);
    assert.equal(client.handleServerFirst(Buffer.from(RFC.serverFirst)).toString(), RFC.clientFinal);
    assert.doesNotThrow(() => client.handleServerFinal(Buffer.from(RFC.serverFinal)));
  });

  test('ScramServer produces the exact server messages', () => {
    const verifier = makeScramVerifier('pencil', { salt: RFC.salt, iterations: 4096 });
    const server = new ScramServer(verifier, { nonce: RFC.serverNonce });
    assert.equal(server.handleClientFirst(Buffer.from(RFC.clientFirst)).toString(), RFC.serverFirst);
    assert.equal(server.handleClientFinal(Buffer.from(RFC.clientFinal))?.toString(), RFC.serverFinal);
  });

  test('client and server drive each other to the same messages', () => {
    const client = new ScramClient('pencil', { user: 'user', nonce: RFC.clientNonce });
    const server = new ScramServer(makeScramVerifier('pencil', { salt: RFC.salt }), {
      nonce: RFC.serverNonce,
    });
    const serverFinal = exchange(client, server);
    assert.equal(serverFinal?.toString(), RFC.serverFinal);
    client.handleServerFinal(serverFinal ?? Buffer.alloc(0));
  });
});

describe('ScramClient ↔ ScramServer', () => {
  test('a random password authenticates both ways', () => {
    const password = randomBytes(24).toString('base64');
    const client = new ScramClient(password);
    const server = new ScramServer(makeScramVerifier(password));
    const first = client.clientFirstMessage().toString();
    assert.match(first, /^n,,n=\*,r=[A-Za-z0-9+/]{24}$/);
    const serverFinal = exchange(client, server);
    assert.ok(serverFinal);
    assert.doesNotThrow(() => client.handleServerFinal(serverFinal));
  });

  test('a non-ASCII password prepared the same way on both sides authenticates', () => {
    const server = new ScramServer(makeScramVerifier('p\u00e4ssw\u00f6rd', { iterations: 64 }));
    assert.ok(exchange(new ScramClient('pa\u0308ssw\u00f6rd'), server));
  });

  test('a wrong password makes handleClientFinal return null', () => {
    const server = new ScramServer(makeScramVerifier('right', { iterations: 64 }));
    assert.equal(exchange(new ScramClient('wrong'), server), null);
  });

  test('an unknown user goes through the whole exchange and gets null at the end', () => {
    const server = new ScramServer(null, { user: 'nobody' });
    const client = new ScramClient('anything');
    const serverFirst = server.handleClientFirst(client.clientFirstMessage()).toString();
    assert.match(serverFirst, /^r=[^,]+,s=[A-Za-z0-9+/]{22}==,i=4096$/);
    assert.equal(server.handleClientFinal(client.handleServerFirst(Buffer.from(serverFirst))), null);
  });

  test('an unknown user gets the same salt on every attempt, and another one a different salt', () => {
    const saltOf = (user: string): string => {
      const server = new ScramServer(null, { user });
      const serverFirst = server.handleClientFirst(Buffer.from('n,,n=,r=abc')).toString();
      return serverFirst.split(',')[1] ?? '';
    };
    assert.equal(saltOf('ghost'), saltOf('ghost'));
    assert.notEqual(saltOf('ghost'), saltOf('phantom'));
  });

  test('an unknown user is refused whatever the password, even an empty one', () => {
    // Whatever the client does, a null verifier never authenticates.
    const server = new ScramServer(null, { user: 'ghost' });
    assert.equal(exchange(new ScramClient(''), server), null);
  });

  test('a tampered server signature makes ScramClient throw ScramError', () => {
    const client = new ScramClient('pw');
    const serverFinal = exchange(client, new ScramServer(makeScramVerifier('pw', { iterations: 64 })));
    assert.ok(serverFinal);
    const tampered = Buffer.from(serverFinal);
    tampered[5] = (tampered[5] ?? 0) === 0x41 ? 0x42 : 0x41;
    assert.throws(() => client.handleServerFinal(tampered), { name: 'ScramError', code: 'SCRAM_PROTOCOL' });
  });

  test('a signature from a server that does not know the password is refused', () => {
    const client = new ScramClient('pw');
    const impostor = new ScramServer(makeScramVerifier('other', { iterations: 64 }));
    const serverFirst = impostor.handleClientFirst(client.clientFirstMessage());
    client.handleServerFirst(serverFirst);
    const forged = makeScramVerifier('other', { iterations: 64 }).serverKey.toString('base64');
    assert.throws(() => client.handleServerFinal(Buffer.from(`v=${forged}`)), /server signature is wrong/);
  });

  test('a server error e= surfaces as ScramError', () => {
    const client = new ScramClient('pw', { nonce: 'abc' });
    client.clientFirstMessage();
    client.handleServerFirst(Buffer.from('r=abcdef,s=c2FsdA==,i=16'));
    assert.throws(() => client.handleServerFinal(Buffer.from('e=invalid-proof')), /invalid-proof/);
  });
});

describe('replays across exchanges', () => {
  test('a client-final-message replayed into a new exchange is refused (fresh server nonce)', () => {
    const verifier: ScramVerifier = makeScramVerifier('pw', { iterations: 64 });
    const client = new ScramClient('pw', { nonce: 'fixed' });
    const first = client.clientFirstMessage();
    const final = client.handleServerFirst(new ScramServer(verifier).handleClientFirst(first));
    const second = new ScramServer(verifier);
    second.handleClientFirst(first);
    assert.throws(() => second.handleClientFinal(final), /nonce mismatch/);
  });
});
