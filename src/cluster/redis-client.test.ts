import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, test } from 'node:test';

import { ClusterError } from './errors.js';
import { encodeCommand, parseInfo, parseReply, redisCommand, replyText } from './redis-client.js';

describe('RESP2 codec of the launcher client', () => {
  test('encodes a command as an array of bulk strings, lengths in bytes', () => {
    assert.equal(encodeCommand(['SET', 'k', 'é']).toString(), '*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\né\r\n');
    assert.equal(
      encodeCommand(['CONFIG', 'SET', 'save', '']).toString(),
      '*4\r\n$6\r\nCONFIG\r\n$3\r\nSET\r\n$4\r\nsave\r\n$0\r\n\r\n',
    );
  });

  test('parses each reply type and says where the next one starts', () => {
    const buf = Buffer.from('+PONG\r\n-ERR bad\r\n:42\r\n$3\r\nabc\r\n$-1\r\n*-1\r\n');
    const kinds: string[] = [];
    let offset = 0;
    while (offset < buf.length) {
      const parsed = parseReply(buf, offset);
      assert.ok(parsed !== undefined, `incomplete at ${offset}`);
      kinds.push(`${parsed.reply.kind}:${replyText(parsed.reply)}`);
      offset = parsed.next;
    }
    assert.deepEqual(kinds, ['simple:PONG', 'error:ERR bad', 'integer:42', 'bulk:abc', 'bulk:', 'array:']);
  });

  test('a bulk string may hold CRLF; nested arrays render one item per line', () => {
    const role = Buffer.from(
      '*3\r\n$6\r\nmaster\r\n:10\r\n*1\r\n*3\r\n$9\r\n127.0.0.1\r\n$4\r\n6380\r\n$2\r\n10\r\n',
    );
    const parsed = parseReply(role);
    assert.ok(parsed !== undefined);
    assert.equal(parsed.next, role.length);
    assert.equal(replyText(parsed.reply), 'master\n10\n127.0.0.1\n6380\n10');
    const crlf = parseReply(Buffer.from('$4\r\na\r\nb\r\n'));
    assert.equal(crlf?.reply.kind === 'bulk' ? crlf.reply.text : undefined, 'a\r\nb');
  });

  test('returns undefined for every strict prefix of a reply', () => {
    const full = Buffer.from('*2\r\n$5\r\nhello\r\n:7\r\n');
    for (let cut = 0; cut < full.length; cut++) {
      assert.equal(parseReply(full.subarray(0, cut)), undefined, `prefix of ${cut} bytes`);
    }
    assert.ok(parseReply(full) !== undefined);
  });

  test('rejects bytes that are not RESP2', () => {
    assert.throws(() => parseReply(Buffer.from('?what\r\n')), /not a RESP2 reply/);
    assert.throws(() => parseReply(Buffer.from('$x\r\n')), /bad RESP length/);
  });

  test('parseInfo keeps field:value lines and skips section headers', () => {
    const info = parseInfo('# Replication\r\nrole:slave\r\nmaster_port:6379\r\n\r\nslave0:ip=1,port=2\r\n');
    assert.deepEqual(
      [...info],
      [
        ['role', 'slave'],
        ['master_port', '6379'],
        ['slave0', 'ip=1,port=2'],
      ],
    );
  });
});

describe('redisCommand against a scripted server', () => {
  /** A one-shot server that answers every chunk with `reply`, split in two writes. */
  async function withServer(
    reply: string,
    run: (port: number, received: () => string) => Promise<void>,
  ): Promise<void> {
    let received = '';
    const server = net.createServer((socket) => {
      socket.on('data', (chunk) => {
        received += chunk.toString();
        socket.write(reply.slice(0, 3));
        setTimeout(() => socket.write(reply.slice(3)), 5);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    assert.ok(address !== null && typeof address === 'object');
    try {
      await run(address.port, () => received);
    } finally {
      server.close();
    }
  }

  test('sends AUTH first when a password is given, and assembles a reply split across packets', async () => {
    await withServer('+OK\r\n$5\r\nvalue\r\n', async (port, received) => {
      assert.equal(await redisCommand({ port, password: 'pw' }, 'GET', 'k'), 'value');
      assert.equal(received(), '*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n');
    });
  });

  test('an error reply rejects with REDIS_ERROR_REPLY and the server message', async () => {
    await withServer('-NOAUTH Authentication required.\r\n', async (port) => {
      await assert.rejects(
        redisCommand({ port }, 'GET', 'k'),
        (err) =>
          err instanceof ClusterError && err.code === 'REDIS_ERROR_REPLY' && /NOAUTH/.test(err.message),
      );
    });
  });

  test('a server that never answers rejects with NODE_UNREACHABLE after the timeout', async () => {
    const server = net.createServer(() => {});
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    assert.ok(address !== null && typeof address === 'object');
    try {
      await assert.rejects(
        redisCommand({ port: address.port, timeoutMs: 100 }, 'PING'),
        (err) =>
          err instanceof ClusterError && err.code === 'NODE_UNREACHABLE' && /within 100 ms/.test(err.message),
      );
    } finally {
      server.close();
    }
  });
});
