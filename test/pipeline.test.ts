import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { encodeParse, encodeStartupMessage, FrameReader, SYNC } from '../src/pg/protocol/index.js';
import { pgbench, summary } from './support/pgbench.js';
import { startStack, type Stack } from './support/stack.js';

/** Bind of the unnamed portal to `statement`, no parameters, text results. */
function bind(statement: string): Buffer {
  const body = Buffer.concat([Buffer.from(`\0${statement}\0`), Buffer.alloc(6)]);
  const head = Buffer.alloc(5);
  head[0] = 0x42;
  head.writeInt32BE(4 + body.length, 1);
  return Buffer.concat([head, body]);
}

function execute(): Buffer {
  return Buffer.from([0x45, 0, 0, 0, 9, 0, 0, 0, 0, 0]);
}

/** Sends `groups` of extended-protocol messages in ONE write and returns each group's first DataRow value. */
async function pipelined(port: number, groups: Buffer[][]): Promise<string[]> {
  const s = net.connect({ host: '127.0.0.1', port });
  const reader = new FrameReader({ maxFrameBytes: 1 << 20 });
  const values: string[] = [];
  let ready = 0;
  let loggedIn = false;
  return new Promise((resolve, reject) => {
    s.on('error', reject);
    s.on('connect', () => s.write(encodeStartupMessage({ user: 'postgres', database: 'postgres' })));
    s.on('data', (chunk) =>
      reader.push(chunk, (type, frame) => {
        if (type === 0x45) reject(new Error(frame.subarray(5).toString('latin1')));
        if (type === 0x44) values.push(frame.subarray(11, 11 + frame.readInt32BE(7)).toString());
        if (type !== 0x5a) return;
        if (!loggedIn) {
          loggedIn = true;
          s.write(Buffer.concat(groups.flat()));
          return;
        }
        if (++ready === groups.length) {
          s.end();
          resolve(values);
        }
      }),
    );
  });
}

describe('pipelining', () => {
  let stack: Stack;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rwsplit-pipeline-'));
  before(async () => {
    stack = await startStack();
    const init = await pgbench(stack.cluster.primary.port, ['-i', '-s', '1', '-q']);
    assert.equal(init.code, 0, init.output);
    const c = await stack.client();
    await c.query('CREATE TABLE marks (port int)');
    await stack.cluster.waitForReplication();
  });
  after(async () => {
    await stack?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('a read group then a write group in one pipeline: the read on a replica, the write on the primary', async () => {
    const read = [
      encodeParse('', 'SELECT inet_server_port()::text', Buffer.alloc(2)),
      bind(''),
      execute(),
      SYNC,
    ];
    const write = [
      encodeParse('', 'INSERT INTO marks VALUES (inet_server_port()) RETURNING port::text', Buffer.alloc(2)),
      bind(''),
      execute(),
      SYNC,
    ];
    const [readPort, writePort, readAgain] = await pipelined(stack.pgPort, [read, write, read]);
    const replicas = stack.cluster.replicas.map((r) => String(r.port));
    assert.ok(replicas.includes(readPort!), `read ran on ${readPort}`);
    assert.equal(writePort, String(stack.cluster.primary.port));
    assert.ok(readAgain !== undefined, 'the read after the write is answered too, in order');
  });

  test('pgbench pipelines (\\startpipeline … \\endpipeline) of reads and writes: zero errors', async () => {
    const script = path.join(dir, 'pipeline.sql');
    writeFileSync(
      script,
      [
        '\\set aid random(1, 100000)',
        '\\set delta random(-5000, 5000)',
        '\\startpipeline',
        'SELECT abalance FROM pgbench_accounts WHERE aid = :aid;',
        'UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;',
        'SELECT abalance FROM pgbench_accounts WHERE aid = :aid;',
        '\\endpipeline',
        '',
      ].join('\n'),
    );
    for (const mode of ['extended', 'prepared']) {
      const r = await pgbench(stack.pgPort, [
        '-n',
        '-M',
        mode,
        '-f',
        script,
        '-c',
        '8',
        '-j',
        '2',
        '-T',
        '2',
      ]);
      assert.equal(r.code, 0, summary(r));
      assert.equal(r.failed, 0, summary(r));
      assert.ok(r.processed > 0, summary(r));
    }
  });
});
