/**
 * A backend connection's reads land in memory the connection owns (net.Socket's onread): a
 * frame handed on must keep its bytes however many reads come after it, since listeners may
 * keep it (a client socket queuing it, a helper holding it). A scripted server in the test
 * logs the connection in, then sends numbered frames in separate writes.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { it } from 'node:test';
import {
  BackendCode,
  encodeBackendKeyData,
  encodeCommandComplete,
  encodeQuery,
  readyForQuery,
} from '../protocol/index.js';
import { BackendConnection, type BackendListener } from './backend-connection.js';

const AUTH_OK = Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 0]);
const FRAMES = 5000;

it('keeps the bytes of every frame it handed on while later reads arrive', async () => {
  // Tags of growing length, so reads do not line up with the slab's size.
  const tag = (i: number): string => `SELECT ${i} ${'x'.repeat(i % 97)}`;
  const server = net.createServer((socket) => {
    socket.setNoDelay(true);
    socket.on('error', () => socket.destroy());
    socket.once('data', () => {
      socket.write(Buffer.concat([AUTH_OK, encodeBackendKeyData(1, 2), readyForQuery(0x49)]));
      // The frames start once the test, listening now, sends its first request.
      socket.once('data', () => start());
    });
    const start = (): void => {
      let i = 0;
      // One write per turn of the event loop: many separate reads on the proxy's side.
      const next = (): void => {
        if (i === FRAMES) return;
        socket.write(encodeCommandComplete(tag(i++)));
        setImmediate(next);
      };
      setImmediate(next);
    };
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const conn = await BackendConnection.connect(
    { nodeId: 'scripted', host: '127.0.0.1', port },
    { user: 'app', database: 'app', params: {} },
    { connectTimeoutMs: 5000, maxFrameBytes: 1 << 20 },
  );
  const kept: Buffer[] = [];
  await new Promise<void>((resolve, reject) => {
    const listener: BackendListener = {
      onBackendFrame(type, frame) {
        assert.equal(type, BackendCode.CommandComplete);
        kept.push(frame); // the view itself, not a copy
        if (kept.length === FRAMES) resolve();
      },
      onBackendChunkEnd() {},
      onBackendClose(_conn, reason) {
        reject(new Error(reason));
      },
    };
    conn.listener = listener;
    conn.write(encodeQuery('SELECT'));
  });
  conn.terminate();
  server.close();
  // More bytes than a read can take (64 KiB) several times over: reads came one after another
  // into the connection's memory, so a reused buffer would have overwritten kept frames.
  const bytes = kept.reduce((n, f) => n + f.length, 0);
  assert.ok(bytes > 3 * 64 * 1024, `only ${bytes} bytes sent`);
  const wrong = kept.filter((f, i) => !f.equals(encodeCommandComplete(tag(i))));
  assert.equal(wrong.length, 0, `${wrong.length} of ${FRAMES} kept frames changed after later reads`);
});
