/**
 * First packets with an impossible length, compared with PostgreSQL itself: a client that
 * connects and leaves at once sends Terminate (`X\0\0\0\4`) where the startup packet belongs.
 * PostgreSQL answers nothing and closes (it only logs "invalid length of startup packet");
 * rwsplit must do the same, byte for byte.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { encodeStartupMessage, SSL_REQUEST, TERMINATE } from '../src/pg/protocol/index.js';
import { startStack, type Stack } from './support/stack.js';

interface Exchange {
  /** what the server sent back, as hex */
  received: string;
  /** the server closed the connection (rather than leaving it open) */
  closed: boolean;
}

/**
 * Sends the first of `steps` on a fresh connection, each next one once the server answered,
 * and collects the answers until the server closes (or 5 s pass).
 */
function exchange(port: number, ...steps: Buffer[]): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = net.connect({ host: '127.0.0.1', port }, () => s.write(steps.shift()!));
    const done = (closed: boolean): void => {
      clearTimeout(timer);
      s.destroy();
      resolve({ received: Buffer.concat(chunks).toString('hex'), closed });
    };
    // A server that keeps the connection open is a difference too, reported rather than awaited.
    const timer = setTimeout(() => done(false), 5000);
    s.on('data', (d: Buffer) => {
      chunks.push(d);
      const next = steps.shift();
      if (next) s.write(next);
    });
    s.on('end', () => done(true));
    s.on('close', () => done(true));
    s.on('error', (err: NodeJS.ErrnoException) => {
      // A reset after the server closed is still a close.
      if (err.code === 'ECONNRESET') done(true);
      else reject(err);
    });
  });
}

const cases: [string, Buffer[]][] = [
  ['Terminate before the startup packet', [TERMINATE]],
  ['a length of 2^31 - 1', [Buffer.from([0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0])]],
  ['a length below 8', [Buffer.from([0, 0, 0, 4, 0, 3, 0, 0])]],
  // After the server's 'N': a client that gives up on a server without TLS.
  ['SSLRequest refused, then Terminate', [SSL_REQUEST, TERMINATE]],
];

describe('a first packet with an impossible length: closed silently, as PostgreSQL does', () => {
  let stack: Stack;
  let directPort: number;
  before(async () => {
    stack = await startStack({ cluster: { replicas: 0 } });
    directPort = stack.cluster.nodes[0]!.port;
  });
  after(async () => stack?.stop());

  for (const [what, steps] of cases) {
    test(what, async () => {
      const direct = await exchange(directPort, ...steps);
      const proxied = await exchange(stack.pgPort, ...steps);
      assert.equal(direct.closed, true, 'PostgreSQL closes the connection');
      assert.deepEqual(proxied, direct);
    });
  }

  test('a startup packet after all that still logs in', async () => {
    const c = await stack.client();
    assert.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1);
    // And a well-formed startup for a protocol nobody speaks still gets PostgreSQL's FATAL (not silence).
    const bad = encodeStartupMessage({ user: 'postgres' });
    bad.writeUInt32BE(0x00090000, 4);
    const direct = await exchange(directPort, bad);
    const proxied = await exchange(stack.pgPort, bad);
    assert.equal(direct.received.slice(0, 2), '45', 'PostgreSQL answers an ErrorResponse');
    assert.equal(proxied.received.slice(0, 2), '45');
    assert.equal(proxied.closed, true);
  });
});
