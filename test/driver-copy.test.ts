/**
 * COPY with real drivers and in every message order the protocol allows, run the same way
 * directly against the primary and through rwsplit: the responses must match, and the
 * statement after the COPY must run where it belongs (a write on the primary) without a hang.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import postgres from 'postgres';
import {
  decodeErrorFields,
  encodeParse,
  encodeQuery,
  encodeStartupMessage,
  FrameReader,
  SYNC,
} from '../src/pg/protocol/index.js';
import { startStack, type Stack } from './support/stack.js';

function frame(type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.write(type, 0, 'latin1');
  head.writeInt32BE(4 + body.length, 1);
  return Buffer.concat([head, body]);
}
/** Bind of the unnamed portal to the unnamed statement with text parameters. */
function bind(params: string[] = []): Buffer {
  const parts = [Buffer.from('\0\0'), Buffer.from([0, 0]), Buffer.alloc(2)];
  parts[2]!.writeInt16BE(params.length);
  for (const p of params) {
    const len = Buffer.alloc(4);
    len.writeInt32BE(Buffer.byteLength(p));
    parts.push(len, Buffer.from(p));
  }
  parts.push(Buffer.from([0, 0]));
  return frame('B', Buffer.concat(parts));
}
const EXECUTE = frame('E', Buffer.from([0, 0, 0, 0, 0]));
const copyData = (text: string): Buffer => frame('d', Buffer.from(text));
const COPY_DONE = frame('c', Buffer.alloc(0));
const copyFail = (why: string): Buffer => frame('f', Buffer.from(`${why}\0`));
const NO_TYPES = Buffer.from([0, 0]);
/** Parse/Bind/Execute of an unnamed statement. */
function extended(sql: string, params: string[] = []): Buffer {
  const types = Buffer.alloc(2 + params.length * 4);
  types.writeInt16BE(params.length);
  return Buffer.concat([encodeParse('', sql, params.length ? types : NO_TYPES), bind(params), EXECUTE]);
}

/** One step of a scenario: bytes to send, then frames to wait for before the next step. */
interface Step {
  send: Buffer;
  /** wait until this many more frames of `type` arrived */
  until: { type: string; count: number };
}

/**
 * Runs the steps on a fresh raw connection and returns what the server said, one string per
 * frame (type, plus the tag, SQLSTATE, status or data that tells answers apart).
 */
async function runRaw(port: number, steps: Step[], name = ''): Promise<string[]> {
  const s = net.connect({ host: '127.0.0.1', port });
  const reader = new FrameReader({ maxFrameBytes: 1 << 20 });
  const log: string[] = [];
  const seen = new Map<string, number>();
  let loggedIn = false;
  let step = -1;
  let target = 0;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      s.destroy();
      reject(
        new Error(`${name} on port ${port}: no answer in 10 s after step ${step}; got ${log.join(' ')}`),
      );
    }, 10_000);
    const next = (): void => {
      step++;
      if (step === steps.length) {
        clearTimeout(timer);
        s.end();
        resolve(log);
        return;
      }
      const st = steps[step]!;
      target = (seen.get(st.until.type) ?? 0) + st.until.count;
      s.write(st.send);
      // Nothing to wait for (stray messages the server ignores): the next step follows at once.
      if (st.until.count === 0) setImmediate(next);
    };
    s.on('error', reject);
    s.on('connect', () => s.write(encodeStartupMessage({ user: 'postgres', database: 'postgres' })));
    s.on('data', (chunk) =>
      reader.push(chunk, (type, f) => {
        const t = String.fromCharCode(type);
        if (!loggedIn) {
          if (t === 'Z') {
            loggedIn = true;
            next();
          }
          return;
        }
        if (t === 'S' || t === 'N') return;
        if (t === 'C') log.push(`C:${f.subarray(5, f.length - 1).toString()}`);
        else if (t === 'E') log.push(`E:${decodeErrorFields(f).get('C') ?? ''}`);
        else if (t === 'Z') log.push(`Z:${String.fromCharCode(f[5]!)}`);
        else if (t === 'd') log.push(`d:${f.subarray(5).toString()}`);
        else if (t === 'D') log.push(`D:${f.subarray(11).toString()}`);
        else log.push(t);
        seen.set(t, (seen.get(t) ?? 0) + 1);
        if (step < steps.length && t === steps[step]!.until.type && seen.get(t) === target) next();
      }),
    );
  });
}

const z = (count = 1): Step['until'] => ({ type: 'Z', count });
const G = { type: 'G', count: 1 };

describe('COPY through rwsplit, compared with the server', () => {
  let stack: Stack;
  let primaryPort: number;
  before(async () => {
    stack = await startStack({ postgres: { pool: { size: 4 } } });
    primaryPort = stack.cluster.primary.port;
    console.log('ports', primaryPort, stack.pgPort);
    const c = await stack.client();
    await c.query('CREATE TABLE t (a int, b text)');
    await stack.cluster.waitForReplication();
  });
  after(async () => stack?.stop());

  /** Runs the same scenario directly and through rwsplit; each ends with a write that names its server. */
  async function compare(name: string, steps: Step[]): Promise<void> {
    const write = (k: number): Step[] => [
      {
        send: encodeQuery(
          `INSERT INTO t VALUES (${k}, 'simple') RETURNING inet_server_port() = ${primaryPort}`,
        ),
        until: z(),
      },
      {
        send: Buffer.concat([
          extended(`INSERT INTO t VALUES ($1, $2) RETURNING inet_server_port() = ${primaryPort}`, [
            String(k),
            'extended',
          ]),
          SYNC,
        ]),
        until: z(),
      },
    ];
    const direct = await runRaw(primaryPort, [...steps, ...write(1)], `${name} (direct)`);
    const proxied = await runRaw(stack.pgPort, [...steps, ...write(1)], `${name} (rwsplit)`);
    assert.deepEqual(proxied, direct, `${name}: same answers through rwsplit as directly`);
    assert.deepEqual(
      direct.slice(-8).filter((f) => f.startsWith('D:')),
      ['D:t', 'D:t'],
      `${name}: the writes after the COPY ran on the primary`,
    );
  }

  const rows = copyData('1\tx\n2\ty\n');
  const FROM_STDIN = 'COPY t FROM STDIN';

  test('simple protocol: COPY FROM STDIN ended by CopyDone, by CopyFail, with a stray Sync inside', async () => {
    await compare('simple, CopyDone', [
      { send: encodeQuery(FROM_STDIN), until: G },
      { send: Buffer.concat([rows, COPY_DONE]), until: z() },
    ]);
    await compare('simple, CopyFail', [
      { send: encodeQuery(FROM_STDIN), until: G },
      { send: Buffer.concat([rows, copyFail('stop')]), until: z() },
    ]);
    await compare('simple, Sync inside the COPY', [
      { send: encodeQuery(FROM_STDIN), until: G },
      { send: Buffer.concat([rows, SYNC, COPY_DONE]), until: z() },
    ]);
    await compare('simple, pipelined with the data', [
      { send: Buffer.concat([encodeQuery(FROM_STDIN), rows, COPY_DONE]), until: z() },
    ]);
  });

  test('extended protocol: Sync before the data, after CopyDone, both, and CopyFail', async () => {
    const start = extended(FROM_STDIN);
    // libpq: Sync right after Execute (ignored by the COPY) and one after CopyDone.
    await compare('Sync before and after', [
      { send: Buffer.concat([start, SYNC]), until: G },
      { send: Buffer.concat([rows, COPY_DONE, SYNC]), until: z() },
    ]);
    // Sync only after CopyDone.
    await compare('Sync after only', [
      { send: start, until: G },
      { send: Buffer.concat([rows, COPY_DONE, SYNC]), until: z() },
    ]);
    // Sync only before the data: the COPY's CommandComplete waits in the server's buffer and
    // no ReadyForQuery answers it; the next statements run in the same implicit transaction.
    await compare('Sync before only', [
      { send: Buffer.concat([start, SYNC]), until: G },
      { send: Buffer.concat([rows, COPY_DONE]), until: { type: 'C', count: 0 } },
    ]);
    await compare('all pipelined, Sync before and after', [
      { send: Buffer.concat([start, SYNC, rows, COPY_DONE, SYNC]), until: z() },
    ]);
    await compare('CopyFail, Sync before and after', [
      { send: Buffer.concat([start, SYNC]), until: G },
      { send: Buffer.concat([rows, copyFail('stop'), SYNC]), until: z() },
    ]);
    await compare('CopyFail, Sync after only', [
      { send: start, until: G },
      { send: Buffer.concat([rows, copyFail('stop'), SYNC]), until: z() },
    ]);
    await compare('bad data, Sync after', [
      { send: Buffer.concat([start, SYNC]), until: G },
      { send: Buffer.concat([copyData('x\n'), COPY_DONE, SYNC]), until: z() },
    ]);
    await compare('stray CopyFail and CopyData after the COPY', [
      { send: Buffer.concat([start, SYNC]), until: G },
      { send: Buffer.concat([rows, COPY_DONE, SYNC]), until: z() },
      { send: Buffer.concat([copyFail('late'), copyData('9\tz\n')]), until: { type: 'Z', count: 0 } },
    ]);
  });

  test('COPY TO STDOUT, simple and extended', async () => {
    const out = 'COPY (SELECT 1, 2) TO STDOUT';
    await compare('simple', [{ send: encodeQuery(out), until: z() }]);
    await compare('extended', [{ send: Buffer.concat([extended(out), SYNC]), until: z() }]);
  });

  test('node-postgres with pg-copy-streams: the statements after COPY FROM/TO run on the primary', async () => {
    for (const port of [primaryPort, stack.pgPort]) {
      const c = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
      await c.connect();
      try {
        await pipeline(Readable.from(['10\tcopy\n', '11\tcopy\n']), c.query(copyFrom('COPY t FROM STDIN')));
        const a = await c.query(`INSERT INTO t VALUES (12, 'after') RETURNING inet_server_port() AS p`);
        const b = await c.query(`INSERT INTO t VALUES ($1, $2) RETURNING inet_server_port() AS p`, [
          13,
          'after',
        ]);
        let dumped = '';
        const stream = c.query(
          copyTo('COPY (SELECT a FROM t WHERE a BETWEEN 10 AND 13 ORDER BY a) TO STDOUT'),
        );
        for await (const chunk of stream) dumped += String(chunk);
        const d = await c.query(`INSERT INTO t VALUES ($1, $2) RETURNING inet_server_port() AS p`, [
          14,
          'after',
        ]);
        assert.deepEqual(
          [a.rows[0].p, b.rows[0].p, d.rows[0].p],
          [primaryPort, primaryPort, primaryPort],
          `port ${port}`,
        );
        assert.match(dumped, /^10\n11\n12\n13\n/);
        await c.query('DELETE FROM t WHERE a BETWEEN 10 AND 14');
      } finally {
        await c.end();
      }
    }
  });

  test('postgres.js writable()/readable(): the statements after the COPY run on the primary', async () => {
    for (const port of [primaryPort, stack.pgPort]) {
      const sql = postgres({
        host: '127.0.0.1',
        port,
        user: 'postgres',
        database: 'postgres',
        max: 1,
        onnotice: () => undefined,
      });
      try {
        const w = await sql`COPY t FROM STDIN`.writable();
        await pipeline(Readable.from(['20\tcopy\n', '21\tcopy\n']), w);
        const a = await sql`INSERT INTO t VALUES (22, 'after') RETURNING inet_server_port() AS p`;
        const b = await sql`INSERT INTO t VALUES (${23}, ${'after'}) RETURNING inet_server_port() AS p`;
        let dumped = '';
        const r = await sql`COPY (SELECT a FROM t WHERE a BETWEEN 20 AND 23 ORDER BY a) TO STDOUT`.readable();
        for await (const chunk of r) dumped += String(chunk);
        const d = await sql`INSERT INTO t VALUES (${24}, ${'after'}) RETURNING inet_server_port() AS p`;
        // A failed COPY (the stream destroyed: CopyFail) and the statement after it.
        const w2 = await sql`COPY t FROM STDIN`.writable();
        const failed = new Promise<void>((resolve) => w2.on('error', () => resolve()));
        w2.write('25\tlost\n');
        w2.destroy(new Error('client gave up'));
        await failed;
        const e = await sql`INSERT INTO t VALUES (${26}, ${'after'}) RETURNING inet_server_port() AS p`;
        assert.deepEqual(
          [a[0]!.p, b[0]!.p, d[0]!.p, e[0]!.p],
          [primaryPort, primaryPort, primaryPort, primaryPort],
          `port ${port}`,
        );
        assert.equal(dumped, '20\n21\n22\n23\n');
        const lost = await sql`SELECT count(*)::int AS n FROM t WHERE a = 25`;
        assert.equal(lost[0]!.n, 0, 'the failed COPY wrote nothing');
        await sql`DELETE FROM t WHERE a BETWEEN 20 AND 26`;
      } finally {
        await sql.end({ timeout: 1 });
      }
    }
  });
});
