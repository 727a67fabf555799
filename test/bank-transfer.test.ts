/**
 * The bank-transfer check of two-phase commit (issue 5): accounts spread over two shards,
 * at least 1,000 concurrent transfers through rwsplit, most of them across shards, while the
 * rwsplit process kills itself (SIGKILL) at random 2PC points (RWSPLIT_FAULTS: after a
 * PREPARE, after the decision, between the COMMIT PREPAREDs) and is started again each time.
 * Afterwards no prepared transaction with rwsplit's prefix is left on any shard and the sum of
 * all balances is what it was.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { freePorts } from '../src/cluster/free-port.js';
import { PgShardedCluster } from '../src/cluster/pg-shards.js';
import { validateConfig } from '../src/config/load.js';
import { ShardResolver } from '../src/pg/sharding/shard-resolver.js';
import { waitFor } from './support/stack.js';

const TRANSFERS = 1000;
const WORKERS = 16;
const ACCOUNTS = 200;
const START_BALANCE = 1000;
/** chance per passing of each fault point that the process kills itself */
const FAULT_P = 0.006;
const bin = path.resolve('bin/rwsplit.js');

describe('bank transfers across shards while rwsplit is killed at 2PC points', () => {
  let cluster: PgShardedCluster;
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'rwsplit-bank-'));
  const direct = new Map<string, pg.Client>();
  let configPath: string;
  let pgPort: number;
  let child: ChildProcess | null = null;
  let supervising = true;
  let kills = 0;
  let starts = 0;

  const startProxy = (faults: boolean): void => {
    starts++;
    const env = { ...process.env };
    if (faults) {
      env.RWSPLIT_FAULTS = `2pc-after-prepare=${FAULT_P},2pc-after-decision=${FAULT_P},2pc-between-commits=${FAULT_P}`;
      env.RWSPLIT_FAULTS_SEED = String(starts);
    } else delete env.RWSPLIT_FAULTS;
    const c = spawn(process.execPath, [bin, 'start', '--config', configPath], { env, stdio: 'ignore' });
    child = c;
    c.on('exit', (_code, signal) => {
      if (signal === 'SIGKILL') kills++;
      if (supervising && child === c) startProxy(true);
    });
  };

  before(async () => {
    cluster = await PgShardedCluster.start({
      shards: 2,
      replicas: 0,
      settings: { max_connections: '100', max_prepared_transactions: '100' },
    });
    const [port, http] = await freePorts(2);
    pgPort = port!;
    const raw = {
      workers: 1,
      listen: { postgres: { host: '127.0.0.1', port: pgPort }, http: { host: '127.0.0.1', port: http } },
      postgres: {
        nodes: cluster.nodes.map((n) => ({ id: n.id, host: n.host, port: n.port, shard: n.shard })),
        monitor: { intervalMs: 200, timeoutMs: 1000 },
        pool: { size: 30 },
        sharding: {
          tables: [{ table: 'accounts', column: 'id' }],
          twoPhase: { logShard: 's1', decisionTimeoutMs: 1500, recoveryIntervalMs: 300 },
        },
      },
      logging: { level: 'warn' },
    };
    const config = validateConfig(raw);
    configPath = path.join(tmp, 'rwsplit.json');
    writeFileSync(configPath, JSON.stringify(raw)); // JSON is YAML
    const resolver = new ShardResolver(cluster.shardNames, config.postgres!.sharding!);
    for (const p of cluster.primaries) {
      const c = new pg.Client({ host: '127.0.0.1', port: p.port, user: 'postgres', database: 'postgres' });
      c.on('error', () => undefined);
      await c.connect();
      await c.query('CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL)');
      const ids = Array.from({ length: ACCOUNTS }, (_, i) => i + 1).filter(
        (id) => resolver.shardForKey(String(id)) === p.shard,
      );
      await c.query(`INSERT INTO accounts SELECT unnest($1::int[]), ${START_BALANCE}`, [ids]);
      direct.set(p.shard, c);
    }
  });

  after(async () => {
    supervising = false;
    child?.kill('SIGKILL');
    for (const c of direct.values()) await c.end().catch(() => undefined);
    await cluster?.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  test(`${TRANSFERS} transfers, ${WORKERS} at a time, most across shards`, async () => {
    const resolver = new ShardResolver(cluster.shardNames, {
      hash: { distribution: 'ketama', function: 'fnv1a_64' },
      tables: [{ table: 'accounts', column: 'id' }],
    });
    const byShard = new Map<string, number[]>();
    for (let id = 1; id <= ACCOUNTS; id++) {
      const s = resolver.shardForKey(String(id));
      byShard.set(s, [...(byShard.get(s) ?? []), id]);
    }
    const [s1, s2] = [...byShard.values()] as [number[], number[]];
    const pick = (list: number[]): number => list[Math.floor(Math.random() * list.length)]!;
    startProxy(true);
    let next = 0;
    const tally = { committed: 0, failed: 0, unknown: 0, cross: 0 };
    const connect = async (): Promise<pg.Client> => {
      for (;;) {
        const c = new pg.Client({ host: '127.0.0.1', port: pgPort, user: 'postgres', database: 'postgres' });
        c.on('error', () => undefined);
        try {
          await c.connect();
          return c;
        } catch {
          await new Promise((r) => setTimeout(r, 100)); // rwsplit is restarting
        }
      }
    };
    await Promise.all(
      Array.from({ length: WORKERS }, async () => {
        let c = await connect();
        while (next < TRANSFERS) {
          next++;
          const cross = Math.random() < 0.8;
          const a = pick(s1);
          let b = cross ? pick(s2) : pick(s1);
          if (b === a) b = a === s1[0] ? s1[1]! : s1[0]!;
          if (cross) tally.cross++;
          const amount = 1 + Math.floor(Math.random() * 10);
          // Lower id first everywhere: no distributed deadlock between two transfers.
          const [first, second] = a < b ? [a, b] : [b, a];
          const delta = (id: number): number => (id === a ? -amount : amount);
          let stage = 'begin';
          try {
            await c.query('BEGIN');
            await c.query('UPDATE accounts SET balance = balance + $1 WHERE id = $2', [delta(first), first]);
            await c.query('UPDATE accounts SET balance = balance + $1 WHERE id = $2', [
              delta(second),
              second,
            ]);
            stage = 'commit';
            const r = await c.query('COMMIT');
            if (r.command === 'COMMIT') tally.committed++;
            else tally.failed++;
          } catch {
            if (stage === 'commit') tally.unknown++;
            else tally.failed++;
            await c.end().catch(() => undefined);
            c = await connect();
          }
        }
        await c.end().catch(() => undefined);
      }),
    );
    supervising = false;
    const last = child!;
    last.kill('SIGKILL');
    await new Promise((r) =>
      last.exitCode !== null || last.signalCode !== null ? r(null) : last.once('exit', r),
    );
    // One more instance, without faults, whose recovery resolves whatever is left prepared.
    supervising = false;
    startProxy(false);
    const prepared = async (): Promise<number> => {
      let n = 0;
      for (const c of direct.values()) {
        const r = await c.query("SELECT count(*) AS n FROM pg_prepared_xacts WHERE gid LIKE 'rwsplit:%'");
        n += Number(r.rows[0].n);
      }
      return n;
    };
    await waitFor(
      'every prepared transaction resolved by recovery',
      async () => (await prepared()) === 0,
      30_000,
    );
    child!.kill('SIGTERM');
    let sum = 0n;
    for (const c of direct.values())
      sum += BigInt(
        (await c.query('SELECT coalesce(sum(balance), 0) AS s FROM accounts')).rows[0].s as string,
      );
    console.log(
      `bank: ${TRANSFERS} transfers (${tally.cross} across shards): ${tally.committed} committed, ` +
        `${tally.failed} failed, ${tally.unknown} with unknown outcome; rwsplit killed ${kills} times by fault points`,
    );
    assert.equal(await prepared(), 0);
    assert.equal(sum, BigInt(ACCOUNTS * START_BALANCE), 'money was created or destroyed');
    assert.ok(tally.committed > TRANSFERS / 2, 'most transfers should commit');
    assert.ok(kills >= 1, 'the fault points never fired: the test proved nothing');
  });
});
