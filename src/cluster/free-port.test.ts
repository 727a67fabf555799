import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, test } from 'node:test';

import { freePort, freePorts } from './free-port.js';

function listenOn(port: number): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port }, () => resolve(server));
  });
}

describe('freePort', () => {
  test('returns a TCP port number that can be listened on at once', async () => {
    const port = await freePort();
    assert.ok(Number.isInteger(port) && port > 0 && port < 65536, `bad port ${port}`);
    const server = await listenOn(port);
    const address = server.address();
    assert.ok(address !== null && typeof address === 'object');
    assert.equal(address.port, port);
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  test('does not return a port that is in use', async () => {
    const busy = await listenOn(0);
    const address = busy.address();
    assert.ok(address !== null && typeof address === 'object');
    const ports = await freePorts(20);
    assert.ok(!ports.includes(address.port));
    await new Promise<void>((resolve) => busy.close(() => resolve()));
  });

  test('freePorts returns distinct ports', async () => {
    const ports = await freePorts(8);
    assert.equal(ports.length, 8);
    assert.equal(new Set(ports).size, 8);
  });

  test('freePorts(0) returns nothing', async () => {
    assert.deepEqual(await freePorts(0), []);
  });
});
