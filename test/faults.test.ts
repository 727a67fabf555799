import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { pgbench, summary } from './support/pgbench.js';
import { nodeStates, startStack, waitFor, type Stack } from './support/stack.js';

/** Connects a raw socket, sends `bytes`, and resolves with what came back before the proxy closed it. */
function sendRaw(
  port: number,
  parts: Buffer[],
  timeoutMs = 5000,
): Promise<{ reply: Buffer; closed: boolean }> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ reply: Buffer.concat(chunks), closed: false });
    }, timeoutMs);
    s.on('connect', () => {
      for (const p of parts) s.write(p);
    });
    s.on('data', (d) => chunks.push(d));
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ reply: Buffer.concat(chunks), closed: true });
    });
  });
}

function startupPacket(user: string): Buffer {
  const body = Buffer.from(`user\0${user}\0database\0postgres\0\0`);
  const head = Buffer.alloc(8);
  head.writeInt32BE(8 + body.length, 0);
  head.writeInt32BE(196608, 4);
  return Buffer.concat([head, body]);
}

/** The SQLSTATE of the first ErrorResponse in a reply, if any. */
function sqlstate(reply: Buffer): string | null {
  const i = reply.indexOf(0x45);
  if (i < 0) return null;
  const m = /C([0-9A-Z]{5})\0/.exec(reply.subarray(i).toString('latin1'));
  return m?.[1] ?? null;
}

describe('faults: a dead replica and hostile clients', () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack({ postgres: { limits: { maxFrameBytes: 1024 * 1024 } } });
    const init = await pgbench(stack.cluster.primary.port, ['-i', '-s', '1', '-q']);
    assert.equal(init.code, 0, init.output);
    await stack.cluster.waitForReplication();
  });
  after(async () => stack?.stop());

  test('garbage, a malformed startup packet and a 2 GiB message close only their own connections', async () => {
    const load = pgbench(stack.pgPort, ['-n', '-S', '-c', '16', '-j', '2', '-T', '5']);
    await new Promise((r) => setTimeout(r, 1000));
    const garbage = await sendRaw(stack.pgPort, [
      Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'),
      Buffer.alloc(64, 0xff),
    ]);
    assert.ok(garbage.closed, 'garbage connection closed');
    const badStartup = Buffer.alloc(8);
    badStartup.writeInt32BE(8, 0);
    badStartup.writeInt32BE(0x12345678, 4);
    const malformed = await sendRaw(stack.pgPort, [badStartup]);
    assert.ok(malformed.closed, 'malformed startup closed');
    assert.equal(sqlstate(malformed.reply), '08P01');
    const huge = Buffer.alloc(5);
    huge[0] = 0x51; // 'Q'
    huge.writeUInt32BE(0x80000000, 1);
    const oversized = await sendRaw(stack.pgPort, [startupPacket('postgres'), huge]);
    assert.ok(oversized.closed, '2 GiB message closed the connection');
    assert.equal(sqlstate(oversized.reply), '08P01', oversized.reply.toString('latin1'));
    assert.match(oversized.reply.toString('latin1'), /exceeds the limit/);
    const r = await load;
    assert.equal(r.code, 0, summary(r));
    assert.equal(r.failed, 0, summary(r));
    assert.ok(r.processed > 0);
  });

  test('SIGSTOP of a replica under load: reads move to the other nodes, zero failed transactions', async () => {
    const victim = stack.cluster.replicas[1]!;
    const load = pgbench(stack.pgPort, ['-n', '-S', '-c', '16', '-j', '2', '-T', '6']);
    await new Promise((r) => setTimeout(r, 1500));
    stack.cluster.signalTree(victim.id, 'SIGSTOP');
    try {
      await waitFor(`${victim.id} reported down`, async () => {
        const nodes = await nodeStates(stack.httpPort);
        return nodes.find((n) => n.id === victim.id)?.state === 'down';
      });
      const r = await load;
      assert.equal(r.code, 0, summary(r));
      assert.equal(r.failed, 0, summary(r));
    } finally {
      stack.cluster.signalTree(victim.id, 'SIGCONT');
    }
    await waitFor(`${victim.id} back up`, async () => {
      const nodes = await nodeStates(stack.httpPort);
      return nodes.find((n) => n.id === victim.id)?.state === 'up';
    });
  });

  test('kill -9 of a replica under 16 select-only clients: zero failed transactions', async () => {
    const victim = stack.cluster.replicas[0]!;
    const load = pgbench(stack.pgPort, ['-n', '-S', '-c', '16', '-j', '2', '-T', '10']);
    await new Promise((r) => setTimeout(r, 3000));
    await stack.cluster.kill(victim.id);
    const r = await load;
    assert.equal(r.code, 0, summary(r));
    assert.equal(r.failed, 0, summary(r));
    assert.doesNotMatch(r.output, /aborted|error/i, summary(r));
    const nodes = await nodeStates(stack.httpPort);
    assert.equal(nodes.find((n) => n.id === victim.id)?.state, 'down');
    // It comes back into rotation once it answers again.
    await stack.cluster.restart(victim.id);
    await waitFor(`${victim.id} back up`, async () => {
      const again = await nodeStates(stack.httpPort);
      return again.find((n) => n.id === victim.id)?.state === 'up';
    });
  });
});
