/**
 * Sharded PostgreSQL through one rwsplit endpoint: two shards (primary + replica each),
 * statements placed by table rule, hint or `SET rwsplit.shard_key`, reads of every shard, and
 * transactions that span shards committed with two-phase commit — by node-postgres and psql,
 * with nothing of ours on the client side. Where rows landed is checked on each shard directly.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import pg from 'pg';
import { pino } from 'pino';
import { Rwsplit } from '../src/app.js';
import { PgShardedCluster } from '../src/cluster/pg-shards.js';
import { pgBinary } from '../src/cluster/pg-binaries.js';
import { validateConfig } from '../src/config/load.js';
import { ShardResolver } from '../src/pg/sharding/shard-resolver.js';
import { testWorkers, waitFor } from './support/stack.js';

const ACCOUNTS = 200;
const SHARDING = {
  tables: [{ table: 'accounts', column: 'id' }],
  twoPhase: { logShard: 's1', decisionTimeoutMs: 2000, recoveryIntervalMs: 300 },
};

describe('sharded PostgreSQL with two-phase commit', () => {
  let cluster: PgShardedCluster;
  let app: Rwsplit;
  let resolver: ShardResolver;
  const clients: pg.Client[] = [];
  const direct = new Map<string, pg.Client>();

  const connect = async (port = app.pgAddress!.port): Promise<pg.Client> => {
    const c = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
    c.on('error', () => undefined);
    await c.connect();
    clients.push(c);
    return c;
  };
  const balances = async (): Promise<Map<number, number>> => {
    const out = new Map<number, number>();
    for (const c of direct.values()) {
      const r = await c.query<{ id: number; balance: number }>('SELECT id, balance FROM accounts');
      for (const row of r.rows) out.set(row.id, row.balance);
    }
    return out;
  };
  const prepared = async (): Promise<number> => {
    let n = 0;
    for (const c of direct.values())
      n += Number(
        (await c.query("SELECT count(*) AS n FROM pg_prepared_xacts WHERE gid LIKE 'rwsplit:%'")).rows[0].n,
      );
    return n;
  };
  /** two account ids on different shards */
  const crossPair = (): [number, number] => {
    for (let a = 1; a <= ACCOUNTS; a++)
      for (let b = a + 1; b <= ACCOUNTS; b++)
        if (resolver.shardForKey(String(a)) !== resolver.shardForKey(String(b))) return [a, b];
    throw new Error('no cross-shard pair');
  };

  before(async () => {
    cluster = await PgShardedCluster.start({ shards: 2, replicas: 1 });
    for (const p of cluster.primaries) {
      const c = new pg.Client({ host: '127.0.0.1', port: p.port, user: 'postgres', database: 'postgres' });
      c.on('error', () => undefined); // one of these servers is killed on purpose
      await c.connect();
      await c.query('CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL)');
      direct.set(p.shard, c);
    }
    await cluster.waitForReplication();
    const config = validateConfig({
      listen: { postgres: { host: '127.0.0.1', port: 0 }, http: { host: '127.0.0.1', port: 0 } },
      postgres: {
        nodes: cluster.nodes.map((n) => ({ id: n.id, host: n.host, port: n.port, shard: n.shard })),
        monitor: { intervalMs: 200, timeoutMs: 1000 },
        sharding: SHARDING,
      },
      ...testWorkers(),
    });
    app = await Rwsplit.start(config, { log: pino({ level: process.env.RWSPLIT_TEST_LOG ?? 'silent' }) });
    resolver = new ShardResolver(cluster.shardNames, config.postgres!.sharding!);
  });

  after(async () => {
    await Promise.allSettled(clients.map((c) => c.end()));
    for (const c of direct.values()) await c.end().catch(() => undefined);
    await app?.stop();
    await cluster?.stop();
  });

  test('table rule places each row on its shard (simple and extended protocol)', async () => {
    const c = await connect();
    for (let id = 1; id <= ACCOUNTS; id++) {
      if (id % 2 === 0) await c.query(`INSERT INTO accounts (id, balance) VALUES (${id}, 100)`);
      else await c.query('INSERT INTO accounts (id, balance) VALUES ($1, $2)', [id, 100]);
    }
    const perShard = new Map<string, number>();
    for (const [shard, d] of direct) {
      const ids = (await d.query<{ id: number }>('SELECT id FROM accounts')).rows.map((r) => r.id);
      perShard.set(shard, ids.length);
      for (const id of ids)
        assert.equal(resolver.shardForKey(String(id)), shard, `account ${id} on ${shard}`);
    }
    assert.equal(
      [...perShard.values()].reduce((a, b) => a + b, 0),
      ACCOUNTS,
    );
    assert.ok(
      [...perShard.values()].every((n) => n > 0),
      'both shards hold accounts',
    );
    // Reads by key go to that shard; parameters work.
    const r = await c.query<{ balance: number }>('SELECT balance FROM accounts WHERE id = $1', [7]);
    assert.equal(r.rows[0]!.balance, 100);
  });

  test('a statement with no shard gets an error naming the three ways to give one', async () => {
    const c = await connect();
    // An INSERT without its key column (a keyless read would run on every shard, merged).
    await assert.rejects(c.query('INSERT INTO accounts (balance) VALUES (1)'), (err: Error) => {
      assert.match(err.message + ((err as pg.DatabaseError).hint ?? ''), /rwsplit:shard=/);
      assert.match(err.message + ((err as pg.DatabaseError).hint ?? ''), /shard_key/);
      assert.match(err.message + ((err as pg.DatabaseError).hint ?? ''), /tables/);
      return true;
    });
    // The session carries on.
    const r = await c.query('/* rwsplit:shard=s2 */ SELECT 1 AS one');
    assert.equal(r.rows[0].one, 1);
  });

  test('statements that read no table run on any shard, without a hint (simple and extended)', async () => {
    const c = await connect();
    const ports = new Set<number>();
    for (let i = 0; i < 8; i++) {
      ports.add(Number((await c.query('SELECT inet_server_port() AS port')).rows[0].port));
      ports.add(Number((await c.query('SELECT inet_server_port() AS port, $1::int AS i', [i])).rows[0].port));
    }
    const shardOfPort = new Map(cluster.nodes.map((n) => [n.port, n.shard]));
    assert.deepEqual(
      new Set([...ports].map((p) => shardOfPort.get(p))),
      new Set(['s1', 's2']),
      'such reads are spread over both shards',
    );
    assert.match((await c.query('SELECT version() AS v')).rows[0].v, /PostgreSQL/);
    assert.match((await c.query('SHOW server_version')).rows[0].server_version, /^\d+/);
    assert.equal((await c.query('SELECT 1 AS one, $1::text AS t', ['x'])).rows[0].one, 1);
    const cat = await c.query(
      "SELECT count(*)::int AS n FROM pg_catalog.pg_class WHERE relname = 'accounts'",
    );
    assert.equal(cat.rows[0].n, 1);
    // A write with no table names no shard: still the error, never a guess.
    await assert.rejects(c.query("SELECT nextval('accounts_seq_nowhere')"), /cannot tell which shard/);
    const run = promisify(execFile);
    const out = await run(pgBinary('psql'), [
      '-X',
      '-At',
      '-h',
      '127.0.0.1',
      '-p',
      String(app.pgAddress!.port),
      '-U',
      'postgres',
      '-d',
      'postgres',
      '-c',
      'select 1',
    ]);
    assert.equal(out.stdout.trim(), '1');
  });

  test('/* rwsplit:all-shards */ returns the rows of every shard', async () => {
    const c = await connect();
    const r = await c.query<{ id: number }>('/* rwsplit:all-shards */ SELECT id FROM accounts');
    assert.equal(r.rowCount, ACCOUNTS);
    assert.equal(new Set(r.rows.map((x) => x.id)).size, ACCOUNTS);
  });

  test('node-postgres: a transfer across shards commits on both, ROLLBACK leaves both', async () => {
    const [a, b] = crossPair();
    const c = await connect();
    await c.query('BEGIN');
    await c.query('UPDATE accounts SET balance = balance - 10 WHERE id = $1', [a]);
    await c.query('UPDATE accounts SET balance = balance + 10 WHERE id = $1', [b]);
    await c.query('COMMIT');
    let bal = await balances();
    assert.equal(bal.get(a), 90);
    assert.equal(bal.get(b), 110);
    await c.query('BEGIN');
    await c.query(`UPDATE accounts SET balance = balance - 10 WHERE id = ${a}`);
    await c.query(`UPDATE accounts SET balance = balance + 10 WHERE id = ${b}`);
    await c.query('ROLLBACK');
    bal = await balances();
    assert.equal(bal.get(a), 90);
    assert.equal(bal.get(b), 110);
    // A failed statement on one shard makes COMMIT roll back everywhere.
    await c.query('BEGIN');
    await c.query(`UPDATE accounts SET balance = balance - 10 WHERE id = ${a}`);
    await assert.rejects(c.query(`UPDATE accounts SET balance = balance / 0 WHERE id = ${b}`));
    const end = await c.query('COMMIT');
    assert.equal(end.command, 'ROLLBACK');
    bal = await balances();
    assert.equal(bal.get(a), 90);
    assert.equal(bal.get(b), 110);
    assert.equal(await prepared(), 0);
  });

  test('psql: a cross-shard transaction with SET rwsplit.shard_key only', async () => {
    const [a, b] = crossPair();
    // -f: psql sends each statement of the file as its own query (-c would send one).
    const file = path.join(await mkdtemp(path.join(tmpdir(), 'rwsplit-psql-')), 'transfer.sql');
    const script = [
      'BEGIN;',
      `SET rwsplit.shard_key = '${a}';`,
      'UPDATE accounts SET balance = balance - 5 WHERE balance >= 0 AND id > 0;',
      `SET rwsplit.shard_key = '${b}';`,
      'UPDATE accounts SET balance = balance + 5 WHERE balance >= 0 AND id > 0;',
      'COMMIT;',
      'RESET rwsplit.shard_key;',
    ].join('\n');
    await writeFile(file, script);
    const before = await balances();
    const sumOn = (bal: Map<number, number>, key: number): number =>
      [...bal]
        .filter(([id]) => resolver.shardForKey(String(id)) === resolver.shardForKey(String(key)))
        .reduce((s, [, v]) => s + v, 0);
    const run = promisify(execFile);
    const out = await run(pgBinary('psql'), [
      '-X',
      '-v',
      'ON_ERROR_STOP=1',
      '-h',
      '127.0.0.1',
      '-p',
      String(app.pgAddress!.port),
      '-U',
      'postgres',
      '-d',
      'postgres',
      '-f',
      file,
    ]).catch((err: { stderr?: string }) => {
      throw new Error(`psql failed: ${err.stderr ?? String(err)}`);
    });
    assert.match(out.stdout, /COMMIT/);
    const after = await balances();
    const countOn = (key: number): number =>
      [...after.keys()].filter((id) => resolver.shardForKey(String(id)) === resolver.shardForKey(String(key)))
        .length;
    assert.equal(sumOn(after, a), sumOn(before, a) - 5 * countOn(a));
    assert.equal(sumOn(after, b), sumOn(before, b) + 5 * countOn(b));
    assert.equal(await prepared(), 0);
  });

  test('a participant primary killed during COMMIT: the transfer ends all-or-nothing after recovery', async () => {
    const [a, b] = crossPair();
    const before = await balances();
    const c = await connect();
    await c.query('BEGIN');
    await c.query(`UPDATE accounts SET balance = balance - 1 WHERE id = ${a}`);
    await c.query(`UPDATE accounts SET balance = balance + 1 WHERE id = ${b}`);
    const victim = cluster.primaries.find((p) => p.shard === resolver.shardForKey(String(b)))!;
    // Stop b's primary so its PREPARE hangs, then kill it outright while the commit waits.
    cluster.signalTree(victim.id, 'SIGSTOP');
    const commit = c.query('COMMIT').then(
      () => 'committed',
      (err: Error) => `error: ${err.message}`,
    );
    await new Promise((r) => setTimeout(r, 300));
    cluster.signalTree(victim.id, 'SIGCONT');
    await cluster.kill(victim.id);
    await cluster.restart(victim.id);
    const outcome = await commit;
    const reconnect = new pg.Client({
      host: '127.0.0.1',
      port: victim.port,
      user: 'postgres',
      database: 'postgres',
    });
    reconnect.on('error', () => undefined);
    await reconnect.connect();
    await direct
      .get(victim.shard)!
      .end()
      .catch(() => undefined);
    direct.set(victim.shard, reconnect);
    await waitFor('no prepared rwsplit transaction left', async () => (await prepared()) === 0, 30_000);
    const after = await balances();
    const movedA = before.get(a)! - after.get(a)!;
    const movedB = after.get(b)! - before.get(b)!;
    assert.equal(movedA, movedB, `all or nothing (client saw: ${outcome})`);
    assert.ok(movedA === 0 || movedA === 1);
  });
});
