/**
 * `rwsplit demo --pg-shards 2` as a new user tries it: the banner's commands run as printed
 * (psql, pgbench -i and a pgbench run), `psql -c 'select 1'` answers, and pgbench's own
 * scripts run through the sharded endpoint with every protocol mode: no failed transaction,
 * pgbench's invariant (the sums of account, teller, branch and history deltas agree), and
 * every row on the shard its key names.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import pg from 'pg';
import { freePorts } from '../src/cluster/free-port.js';
import { pgBinary } from '../src/cluster/pg-binaries.js';
import { ShardResolver } from '../src/pg/sharding/shard-resolver.js';
import { pgbench, summary } from './support/pgbench.js';

describe('sharded demo: banner commands, psql and pgbench', () => {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'rwsplit-shard-bench-'));
  after(() => rmSync(tmp, { recursive: true, force: true }));

  test('pgbench -i, tpcb-like and select-only (simple, extended, prepared) through 2 shards', async () => {
    const [pgPort, httpPort, redisPort] = (await freePorts(3)) as [number, number, number];
    const args = ['demo', '--dir', path.join(tmp, 'demo'), '--replicas', '0', '--pg-shards', '2'];
    args.push('--redis-shards', '0', '--pg-port', String(pgPort), '--http-port', String(httpPort));
    args.push('--redis-port', String(redisPort));
    const child = spawn(process.execPath, [path.resolve('bin/rwsplit.js'), ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    let exited = false;
    const exit = new Promise<void>((resolve) =>
      child.on('exit', () => {
        exited = true;
        resolve();
      }),
    );
    const clients: pg.Client[] = [];
    try {
      const deadline = Date.now() + 90_000;
      while (!out.includes('Press Ctrl-C') && !exited && Date.now() < deadline) await delay(100);
      assert.match(out, /rwsplit demo is running/, out);
      const env = { ...process.env, PATH: `${path.dirname(pgBinary('psql'))}:${process.env.PATH ?? ''}` };
      const psql = spawnSync(
        'psql',
        ['-X', '-At', '-h', '127.0.0.1', '-p', String(pgPort), '-U', 'postgres', '-c', 'select 1'],
        { encoding: 'utf8', env, timeout: 30_000 },
      );
      assert.equal(psql.status, 0, psql.stderr);
      assert.equal(psql.stdout.trim(), '1');

      // The banner's psql and pgbench lines, run as printed by a shell.
      const tryIt = out.slice(out.indexOf('Try it:'));
      const lines = tryIt
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l.startsWith('psql ') || l.startsWith('pgbench '));
      assert.equal(lines.length, 4, tryIt);
      const results: string[] = [];
      for (const line of lines) {
        const r = spawnSync('sh', ['-c', line], { encoding: 'utf8', env, timeout: 120_000 });
        assert.equal(r.status, 0, `${line}\n${r.stdout}\n${r.stderr}`);
        results.push(r.stdout);
      }
      assert.match(results[2]!, /^\s+1 \|\s+100$/m, 'the merged count and sum of the inserted row');
      assert.match(results[3]!, /number of failed transactions: 0 /);

      const runs: [string[], number][] = [];
      for (const mode of ['simple', 'extended', 'prepared']) {
        for (const script of [[], ['-S']]) {
          const a = ['-n', '-c', '2', '-t', '25', '-M', mode, ...script];
          const r = await pgbench(pgPort, a);
          assert.equal(r.code, 0, summary(r));
          assert.equal(r.failed, 0, summary(r));
          assert.equal(r.processed, 50, summary(r));
          runs.push([a, r.processed]);
        }
      }

      // pgbench's invariant across shards, and each row where its key belongs.
      const c = new pg.Client({ host: '127.0.0.1', port: pgPort, user: 'postgres', database: 'postgres' });
      await c.connect();
      clients.push(c);
      // One keyless read per table, each merged across the shards.
      const one = async (sql: string): Promise<string> =>
        String(Object.values((await c.query(sql)).rows[0] as Record<string, unknown>)[0]);
      const s = {
        a: await one('SELECT sum(abalance) FROM pgbench_accounts'),
        b: await one('SELECT sum(bbalance) FROM pgbench_branches'),
        t: await one('SELECT sum(tbalance) FROM pgbench_tellers'),
        h: await one('SELECT sum(delta) FROM pgbench_history'),
        n: await one('SELECT count(*) FROM pgbench_history'),
      };
      assert.deepEqual([s.b, s.t, s.h], [s.a, s.a, s.a], JSON.stringify(s));
      // the banner's run (-T) and the three tpcb-like runs of 50 each
      assert.ok(Number(s.n) >= 150, JSON.stringify(s));

      const nodes = (await (await fetch(`http://127.0.0.1:${httpPort}/api/nodes`)).json()) as {
        kind: string;
        shard: string;
        port: number;
      }[];
      const resolver = new ShardResolver(['s1', 's2'], {
        hash: { distribution: 'ketama', function: 'fnv1a_64' },
        tables: [],
      });
      let accounts = 0;
      for (const n of nodes.filter((x) => x.kind === 'postgres')) {
        const d = new pg.Client({ host: '127.0.0.1', port: n.port, user: 'postgres', database: 'postgres' });
        await d.connect();
        clients.push(d);
        for (const [table, column] of [
          ['pgbench_accounts', 'aid'],
          ['pgbench_tellers', 'tid'],
          ['pgbench_branches', 'bid'],
          ['pgbench_history', 'aid'],
        ] as const) {
          const { rows } = await d.query<{ k: string }>(`SELECT ${column}::text AS k FROM ${table}`);
          const misplaced = rows.filter((r) => resolver.shardForKey(r.k) !== n.shard);
          assert.equal(
            misplaced.length,
            0,
            `${table} on ${n.shard}: ${JSON.stringify(misplaced.slice(0, 3))}`,
          );
          if (table === 'pgbench_accounts') {
            accounts += rows.length;
            assert.ok(rows.length > 0, `accounts on ${n.shard}`);
          }
        }
      }
      assert.equal(accounts, 100_000);
      assert.equal(runs.length, 6);
    } finally {
      await Promise.allSettled(clients.map((x) => x.end()));
      if (!exited) child.kill('SIGINT');
      await exit;
    }
  });
});
