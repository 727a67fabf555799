import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ScramClient } from './scram-client.js';
import { ScramServer } from './scram-server.js';
import { makeScramVerifier } from './scram-common.js';

/** Run a whole exchange; returns what the server answered last (null = rejected). */
function exchange(client: ScramClient, server: ScramServer): Buffer | null {
  const serverFirst = server.handleClientFirst(client.clientFirstMessage());
  const serverFinal = server.handleClientFinal(client.handleServerFirst(serverFirst));
  if (serverFinal) client.handleServerFinal(serverFinal);
  return serverFinal;
}

describe('SCRAM pass-through: the keys of a client that proved itself', () => {
  const verifier = makeScramVerifier('s3cret');

  test('authenticate to another server holding the same verifier, without the password', () => {
    const front = new ScramServer(verifier);
    assert.equal(front.keys, null, 'no keys before the proof');
    assert.ok(exchange(new ScramClient('s3cret'), front));
    const keys = front.keys;
    assert.ok(keys);
    // The "backend": another server, same verifier, its own nonce.
    const back = new ScramServer(verifier);
    assert.ok(exchange(new ScramClient(keys), back), 'the backend accepts the proof made from the keys');
  });

  test('a wrong password yields no keys', () => {
    const front = new ScramServer(verifier);
    assert.equal(exchange(new ScramClient('wrong'), front), null);
    assert.equal(front.keys, null);
  });

  test('an unknown user (mock verifier) yields no keys, even with a proof matching nothing', () => {
    const front = new ScramServer(null, { user: 'nobody' });
    assert.equal(exchange(new ScramClient('s3cret'), front), null);
    assert.equal(front.keys, null);
  });

  test('keys for one verifier do not open a server whose verifier has another salt (password changed)', () => {
    const front = new ScramServer(verifier);
    assert.ok(exchange(new ScramClient('s3cret'), front));
    const otherSalt = new ScramServer(makeScramVerifier('s3cret'));
    assert.equal(exchange(new ScramClient(front.keys!), otherSalt), null);
  });

  test('a server without the right ServerKey is refused by the pass-through client', () => {
    const front = new ScramServer(verifier);
    assert.ok(exchange(new ScramClient('s3cret'), front));
    const keys = front.keys!;
    const client = new ScramClient({ clientKey: keys.clientKey, serverKey: Buffer.alloc(32) });
    const back = new ScramServer(verifier);
    const serverFirst = back.handleClientFirst(client.clientFirstMessage());
    const serverFinal = back.handleClientFinal(client.handleServerFirst(serverFirst));
    assert.ok(serverFinal);
    assert.throws(() => client.handleServerFinal(serverFinal), /server signature is wrong/);
  });
});
