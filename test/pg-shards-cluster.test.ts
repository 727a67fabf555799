/**
 * Integration test of the sharded PostgreSQL launcher (PgShardedCluster) and of
 * `rwsplit demo --pg-shards 2`: real initdb, postgres and pg_basebackup processes.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';

import pg from 'pg';

import { ClusterError } from '../src/cluster/errors.js';
import { freePorts } from '../src/cluster/free-port.js';
import { pgBinary } from '../src/cluster/pg-binaries.js';
import type { PgNodeHandle } from '../src/cluster/pg-cluster.js';
import { PgShardedCluster } from '../src/cluster/pg-shards.js';

async function query<R extends pg.QueryResultRow>(node: PgNodeHandle, text: string): Promise<R[]> {
  const client = new pg.Client({ connectionString: node.connectionString });
  client.on('error', () => {});
  await client.connect();
  try {
    return (await client.query<R>(text)).rows;
  } finally {
    await client.end();
  }
}

function postgresRunningIn(dir: string): string {
  return spawnSync('pgrep', ['-f', `postgres -D ${dir}`], { encoding: 'utf8' }).stdout.trim();
}

describe('PgShardedCluster: 2 shards of a primary + 1 replica', () => {
  let shards: PgShardedCluster;

  before(async () => {
    shards = await PgShardedCluster.start({ shards: 2, replicas: 1 });
  });

  after(async () => {
    await shards?.stop();
  });

  test('node ids, roles and shards as documented; one port per node', () => {
    assert.deepEqual(shards.shardNames, ['s1', 's2']);
    assert.deepEqual(
      shards.nodes.map((n) => [n.id, n.shard, n.role]),
      [
        ['pg-s1-primary', 's1', 'primary'],
        ['pg-s1-replica1', 's1', 'replica'],
        ['pg-s2-primary', 's2', 'primary'],
        ['pg-s2-replica1', 's2', 'replica'],
      ],
    );
    assert.equal(new Set(shards.nodes.map((n) => n.port)).size, 4);
    assert.deepEqual(
      shards.primaries.map((p) => p.id),
      ['pg-s1-primary', 'pg-s2-primary'],
    );
    assert.equal(shards.shard('s2').primary.id, 'pg-s2-primary');
    assert.ok(shards.nodes.every((n) => n.dataDir.startsWith(path.join(shards.dir, n.shard) + path.sep)));
    assert.throws(
      () => shards.shard('s3'),
      (e) => e instanceof ClusterError && e.code === 'UNKNOWN_NODE',
    );
    assert.throws(() => shards.clusterOf('pg-primary'), /no node 'pg-primary'/);
  });

  test('each shard replicates its own primary, and only it', async () => {
    for (const name of shards.shardNames) {
      await query(
        shards.shard(name).primary,
        `CREATE TABLE only_${name} (v text); INSERT INTO only_${name} VALUES ('${name}')`,
      );
    }
    await shards.waitForReplication();
    for (const name of shards.shardNames) {
      const [replica] = shards.shard(name).replicas;
      assert.ok(replica);
      const rows = await query<{ v: string; standby: boolean }>(
        replica,
        `SELECT v, pg_is_in_recovery() AS standby FROM only_${name}`,
      );
      assert.deepEqual(rows, [{ v: name, standby: true }]);
      const other = name === 's1' ? 's2' : 's1';
      const tables = await query<{ n: string }>(
        replica,
        `SELECT count(*)::text AS n FROM pg_class WHERE relname = 'only_${other}'`,
      );
      assert.deepEqual(tables, [{ n: '0' }], `${replica.id} has no table of shard ${other}`);
    }
  });

  test('every node allows a prepared transaction per connection', async () => {
    for (const node of shards.nodes) {
      const [row] = await query<{ prepared: string; connections: string }>(
        node,
        "SELECT current_setting('max_prepared_transactions') AS prepared, current_setting('max_connections') AS connections",
      );
      assert.ok(row && Number(row.prepared) >= Number(row.connections), `${node.id}: ${JSON.stringify(row)}`);
    }
    const primary = shards.shard('s1').primary;
    await query(primary, "BEGIN; INSERT INTO only_s1 VALUES ('p'); PREPARE TRANSACTION 'shards-test'");
    await query(primary, "COMMIT PREPARED 'shards-test'");
    const rows = await query<{ v: string }>(primary, "SELECT v FROM only_s1 WHERE v = 'p'");
    assert.equal(rows.length, 1);
  });

  test('kill and restart by node id reach the right shard', async () => {
    const replica = shards.shard('s2').replicas[0];
    assert.ok(replica);
    await shards.kill('pg-s2-replica1');
    assert.equal(replica.pid, undefined);
    assert.ok(
      shards.shard('s1').nodes.every((n) => n.pid !== undefined),
      'shard s1 untouched',
    );
    await shards.restart('pg-s2-replica1');
    await query(shards.shard('s2').primary, "INSERT INTO only_s2 VALUES ('after')");
    await shards.shard('s2').waitForReplication(15_000);
    const rows = await query<{ v: string }>(replica, "SELECT v FROM only_s2 WHERE v = 'after'");
    assert.equal(rows.length, 1);
  });

  test('stop leaves no postgres running and removes its directory', async () => {
    const dir = shards.dir;
    assert.notEqual(postgresRunningIn(dir), '');
    await shards.stop();
    assert.equal(postgresRunningIn(dir), '');
    assert.equal(existsSync(dir), false);
  });
});

describe('rwsplit demo --pg-shards 2', () => {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'rwsplit-pgs-demo-'));
  after(() => rmSync(tmp, { recursive: true, force: true }));

  test('starts 2 shards behind the proxy, lists every node with its shard, stops everything', async () => {
    const [pgPort, httpPort, redisPort] = await freePorts(3);
    const dir = path.join(tmp, 'demo');
    const args = ['demo', '--dir', dir, '--replicas', '1', '--pg-shards', '2', '--redis-shards', '0'];
    args.push(
      '--pg-port',
      String(pgPort),
      '--http-port',
      String(httpPort),
      '--redis-port',
      String(redisPort),
    );
    const child = spawn(process.execPath, [path.resolve('bin/rwsplit.js'), ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    let exitCode: number | null | undefined;
    const exited = new Promise<number | null>((resolve) =>
      child.on('exit', (code) => {
        exitCode = code;
        resolve(code);
      }),
    );
    try {
      const deadline = Date.now() + 90_000;
      while (!out.includes('rwsplit demo is running') && exitCode === undefined && Date.now() < deadline) {
        await delay(100);
      }
      assert.match(out, /rwsplit demo is running/, out);
      assert.match(out, /2 shards of 1 primary \+ 1 replicas/);
      assert.match(out, /^\s+pg-s2-replica1\s+s2\s+replica\s+127\.0\.0\.1:\d+$/m, out);

      const res = await fetch(`http://127.0.0.1:${httpPort}/api/nodes`);
      const nodes = (await res.json()) as { id: string; kind: string; shard: string; port: number }[];
      const pgNodes = nodes.filter((n) => n.kind === 'postgres');
      assert.deepEqual(
        pgNodes.map((n) => [n.id, n.shard]),
        [
          ['pg-s1-primary', 's1'],
          ['pg-s1-replica1', 's1'],
          ['pg-s2-primary', 's2'],
          ['pg-s2-replica1', 's2'],
        ],
      );
      const ports = new Set(pgNodes.map((n) => n.port));

      // Routing through the shards is the session's; here: the proxy answers on a shard's node.
      const sql = '/* rwsplit:shard=s2 */ SELECT inet_server_port() AS port';
      const client = new pg.Client({
        host: '127.0.0.1',
        port: pgPort,
        user: 'postgres',
        database: 'postgres',
      });
      await client.connect();
      const [row] = (await client.query<{ port: number }>(sql)).rows;
      await client.end();
      assert.ok(row && ports.has(row.port), `answered by a node of the shards: ${JSON.stringify(row)}`);
      const psql = spawnSync(
        pgBinary('psql'),
        [
          '-X',
          '-A',
          '-t',
          '-h',
          '127.0.0.1',
          '-p',
          String(pgPort),
          '-U',
          'postgres',
          '-d',
          'postgres',
          '-c',
          sql,
        ],
        { encoding: 'utf8', timeout: 20_000 },
      );
      assert.equal(psql.status, 0, psql.stderr);
      assert.ok(ports.has(Number(psql.stdout.trim())), psql.stdout);
    } finally {
      child.kill('SIGINT');
    }
    assert.equal(await exited, 0, out);
    const used = /using (\S+) instead/.exec(out)?.[1] ?? dir;
    assert.equal(postgresRunningIn(used), '', 'no postgres of the demo is left running');
  });
});
