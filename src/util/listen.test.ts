import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { holdConnections, listenServer, releaseHandedServer } from './listen.js';

function listening(server: net.Server): Promise<number> {
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)),
  );
}

test('connections a handed-over socket accepted early reach the server that takes it over, with what they sent', async () => {
  // A stands for the server Node makes of a socket received over IPC: already accepting.
  const handed = net.createServer();
  const port = await listening(handed);
  holdConnections(handed);
  const early = net.connect(port, '127.0.0.1');
  early.write('sent before the takeover');
  await new Promise((r) => early.once('connect', r));
  await new Promise((r) => setTimeout(r, 50)); // accepted and parked by now

  const got: string[] = [];
  const real = net.createServer((s) => s.on('data', (d: Buffer) => got.push(d.toString())));
  const address = await listenServer(real, '127.0.0.1', port, handed);
  assert.equal(address.port, port);
  const late = net.connect(port, '127.0.0.1');
  late.write('sent after');
  const deadline = Date.now() + 5000;
  while (got.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(got.sort(), ['sent after', 'sent before the takeover']);
  early.destroy();
  late.destroy();
  await new Promise((r) => real.close(r));
});

test('a handed-over socket no server takes is closed, with its parked clients', async () => {
  const handed = net.createServer();
  const port = await listening(handed);
  holdConnections(handed);
  const client = net.connect(port, '127.0.0.1');
  await new Promise((r) => client.once('connect', r));
  await new Promise((r) => setTimeout(r, 50));
  const closed = new Promise((r) => client.once('close', r));
  client.on('error', () => undefined);
  releaseHandedServer(handed);
  await closed;
  assert.equal(handed.listening, false);
});
