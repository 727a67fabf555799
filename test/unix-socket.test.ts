/**
 * listen.postgres.socketDir: rwsplit on a Unix socket, used by psql and node-postgres the way
 * they reach PostgreSQL's own socket, with the same routing as over TCP; a stale socket file is
 * replaced at start and the file is gone after stop.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { pino } from 'pino';
import { Rwsplit } from '../src/app.js';
import { PgCluster } from '../src/cluster/pg-cluster.js';
import { pgBinary } from '../src/cluster/pg-binaries.js';
import { validateConfig } from '../src/config/load.js';

function psql(dir: string, port: number, sql: string): Promise<{ status: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(pgBinary('psql'), [
      '-X',
      '-Atq',
      '-h',
      dir,
      '-p',
      String(port),
      '-U',
      'postgres',
      '-d',
      'postgres',
      '-c',
      sql,
    ]);
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, out: out.trim() }));
  });
}

/** A process that listens on `file` and is killed with SIGKILL: the socket file stays behind. */
async function leaveStaleSocket(file: string): Promise<void> {
  const child = spawn(process.execPath, [
    '-e',
    `require('net').createServer().listen(${JSON.stringify(file)}, () => console.log('up'))`,
  ]);
  await new Promise<void>((resolve, reject) => {
    child.stdout.once('data', () => resolve());
    child.once('error', reject);
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
}

describe('Unix socket listener', () => {
  let cluster: PgCluster;
  let app: Rwsplit;
  let port: number;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rws-sock-'));
  let socketFile: string;

  const start = async (): Promise<Rwsplit> =>
    Rwsplit.start(
      validateConfig({
        workers: 1,
        listen: {
          postgres: { host: '127.0.0.1', port, socketDir: dir },
          http: { host: '127.0.0.1', port: 0 },
        },
        postgres: {
          nodes: cluster.nodes.map((n) => ({ id: n.id, host: n.host, port: n.port })),
          monitor: { intervalMs: 200, timeoutMs: 1000 },
        },
      }),
      { log: pino({ level: 'silent' }) },
    );

  before(async () => {
    cluster = await PgCluster.start({ replicas: 1 });
    // A fixed free port, and a stale socket file at that name (a server that died without cleanup).
    port = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    socketFile = path.join(dir, `.s.PGSQL.${port}`);
    // A live listener on that name: rwsplit must refuse rather than take it over.
    const live = net.createServer();
    await new Promise<void>((resolve) => live.listen(socketFile, resolve));
    await assert.rejects(start(), /another server is listening on/);
    await new Promise<void>((resolve) => live.close(() => resolve()));
    await leaveStaleSocket(socketFile);
    assert.equal(existsSync(socketFile), true, 'a stale socket file is there');
    app = await start();
  });
  after(async () => {
    await app?.stop();
    await cluster?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('psql -h <dir> -p <port> reaches rwsplit: reads on the replica, writes on the primary', async () => {
    assert.equal(app.pgSocket, socketFile);
    const write = await psql(
      dir,
      port,
      'CREATE TABLE sock (x int); INSERT INTO sock VALUES (1); SELECT pg_is_in_recovery()',
    );
    assert.equal(write.status, 0, write.out);
    assert.equal(write.out, 'f', 'the write batch ran on the primary');
    await cluster.waitForReplication();
    const read = await psql(dir, port, 'SELECT pg_is_in_recovery(), count(*) FROM sock');
    assert.equal(read.status, 0, read.out);
    assert.equal(read.out, 't|1', 'the read ran on the replica');
  });

  test('node-postgres with host set to the directory: extended protocol through the socket', async () => {
    const connect = async (): Promise<pg.Client> => {
      const c = new pg.Client({ host: dir, port, user: 'postgres', database: 'postgres' });
      await c.connect();
      return c;
    };
    const writer = await connect();
    const reader = await connect();
    try {
      const w = await writer.query('INSERT INTO sock VALUES ($1) RETURNING pg_is_in_recovery() AS r', [2]);
      assert.equal(w.rows[0].r, false);
      await cluster.waitForReplication();
      const r = await reader.query(
        'SELECT pg_is_in_recovery() AS r, count(*)::int AS n FROM sock WHERE x > $1',
        [0],
      );
      assert.deepEqual(r.rows[0], { r: true, n: 2 });
    } finally {
      await Promise.all([writer.end(), reader.end()]);
    }
  });

  test('the socket file is removed at stop and replaced when stale at start', async () => {
    await app.stop();
    assert.equal(existsSync(socketFile), false, 'removed at stop');
    app = await start();
    const r = await psql(dir, port, 'SELECT 1');
    assert.equal(r.out, '1');
  });
});
