/**
 * Graceful restart under load: rwsplit runs as `bin/rwsplit.js start --config` (a child
 * process, as in production) in front of a PostgreSQL primary + replica and a Redis shard, and
 * is restarted twice while clients work: once with `rwsplit restart` (POST /api/restart), once
 * with SIGUSR2 on the new process. Loads: node-postgres sessions (transactions and autocommit
 * writes, reconnecting when told to), a pg.Pool, ioredis (its own reconnect and resend), and
 * redis-benchmark -k 0 (a connection per request: every connect must succeed).
 *
 * Asserted: no connection refused anywhere; the only PostgreSQL error is 57P01 (admin
 * shutdown), only ever on the first statement of a transaction and for a statement that did
 * not run (its row is absent), so a retry is safe; no ioredis command fails; no statement
 * goes unanswered; a transaction open during the restart commits on the old process (and its
 * session then moves on to the new one); every acknowledged write is there afterwards; each old
 * process exits on its own (the first with code 0); the last new process answers and every load
 * goes on through it.
 */
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import pg from 'pg';
import { stringify } from 'yaml';
import { freePorts } from '../src/cluster/free-port.js';
import { isProcessAlive } from '../src/cluster/process-tree.js';
import { PgCluster } from '../src/cluster/pg-cluster.js';
import { RedisCluster } from '../src/cluster/redis-cluster.js';
import { waitFor } from './support/stack.js';

const bin = path.resolve('bin/rwsplit.js');
const execFileAsync = promisify(execFile);
const TOKEN = 'graceful-restart-test-token';

/** What every client saw. */
interface Tally {
  acked: number;
  /** 57P01 on a statement that opened a transaction or ran alone */
  restartErrors: number;
  /** 57P01 on an idle connection (between statements): reconnected */
  idleClosed: number;
  /** 57P01 after a statement of the same transaction had succeeded: a transaction lost */
  lostTransactions: number;
  refused: number;
  other: string[];
  unanswered: number;
  /** ids whose INSERT failed with 57P01 (must not exist afterwards) */
  failedIds: number[];
  ackedIds: number[];
}

function newTally(): Tally {
  return {
    acked: 0,
    restartErrors: 0,
    idleClosed: 0,
    lostTransactions: 0,
    refused: 0,
    other: [],
    unanswered: 0,
    failedIds: [],
    ackedIds: [],
  };
}

function classify(t: Tally, err: Error & { code?: string }): 'restart' | 'other' {
  if (err.code === '57P01') return 'restart';
  if (err.code === 'ECONNREFUSED' || /ECONNREFUSED/.test(err.message)) t.refused++;
  // node-postgres: "Query read timeout"; ioredis: "Command timed out"
  else if (/time(d)? ?out/i.test(err.message)) t.unanswered++;
  else t.other.push(`${err.code ?? ''} ${err.message}`);
  return 'other';
}

/**
 * One node-postgres session: transactions of two INSERTs (`tx`) or autocommit INSERTs, each
 * row with an id of its own; a new connection after the server (rwsplit) ended this one.
 */
async function pgSession(
  port: number,
  first: number,
  tx: boolean,
  t: Tally,
  running: () => boolean,
): Promise<void> {
  let id = first;
  let client: pg.Client | null = null;
  while (running()) {
    if (client === null) {
      const c = new pg.Client({
        host: '127.0.0.1',
        port,
        user: 'postgres',
        database: 'postgres',
        query_timeout: 10_000,
        connectionTimeoutMillis: 10_000,
      });
      // An idle connection closed by the old process (FATAL 57P01 between statements, as the
      // error event): the client is no longer queryable, so this session reconnects.
      const gone = (): void => {
        if (client === c) client = null;
      };
      // Its socket's end follows as a second error ("Connection terminated unexpectedly"):
      // only the first one says why.
      let broken = false;
      c.on('error', (err: Error & { code?: string }) => {
        if (broken) return;
        broken = true;
        if (classify(t, err) === 'restart') t.idleClosed++;
        gone();
      });
      c.on('end', gone);
      try {
        await c.connect();
        client = c;
      } catch (err) {
        classify(t, err as Error);
        await new Promise((r) => setTimeout(r, 50));
        continue;
      }
    }
    const c: pg.Client = client;
    const ids = tx ? [id, id + 1] : [id];
    id += ids.length;
    let step = 0;
    try {
      if (tx) {
        await c.query('BEGIN');
        step++;
      }
      for (const i of ids) {
        await c.query('INSERT INTO restart_rows (id) VALUES ($1)', [i]);
        step++;
      }
      if (tx) await c.query('COMMIT');
      t.acked++;
      t.ackedIds.push(...ids);
    } catch (err) {
      if (classify(t, err as Error) === 'restart') {
        if (step === 0) t.restartErrors++;
        else t.lostTransactions++;
        t.failedIds.push(...ids);
      }
      await c.end().catch(() => undefined);
      if (client === c) client = null;
    }
    await new Promise((r) => setTimeout(r, 3));
  }
  await (client as pg.Client | null)?.end().catch(() => undefined);
}

/** pg.Pool: a dropped idle connection is replaced by the pool; a 57P01 on a query is retried. */
async function poolLoad(pool: pg.Pool, first: number, t: Tally, running: () => boolean): Promise<void> {
  let id = first;
  while (running()) {
    const i = id++;
    try {
      await pool.query('INSERT INTO restart_rows (id) VALUES ($1)', [i]);
      t.acked++;
      t.ackedIds.push(i);
    } catch (err) {
      if (classify(t, err as Error) === 'restart') {
        t.restartErrors++;
        t.failedIds.push(i);
      }
    }
    await new Promise((r) => setTimeout(r, 3));
  }
}

/** ioredis as applications use it: reconnect and resend are its own. */
async function redisLoad(port: number, name: string, t: Tally, running: () => boolean): Promise<Redis> {
  const r = new Redis({ host: '127.0.0.1', port, lazyConnect: true, commandTimeout: 10_000 });
  r.on('error', (err: Error) => {
    if (/ECONNREFUSED/.test(err.message)) t.refused++;
  });
  await r.connect();
  void (async () => {
    let n = 0;
    while (running()) {
      const i = n++;
      try {
        // A pipeline of two writes, as clients batch them.
        const res = await r
          .pipeline()
          .set(`restart:${name}:${i}`, String(i))
          .incr(`restart:${name}:count`)
          .exec();
        if (res?.some(([e]) => e)) throw res.find(([e]) => e)![0]!;
        t.acked++;
        t.ackedIds.push(i);
      } catch (err) {
        classify(t, err as Error);
      }
      await new Promise((r2) => setTimeout(r2, 3));
    }
  })();
  return r;
}

/** redis-benchmark with a new connection per request, over and over until stopped. */
async function redisBenchmarkLoop(port: number, running: () => boolean): Promise<string[]> {
  const bad: string[] = [];
  while (running()) {
    const r = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn(
        'redis-benchmark',
        ['-h', '127.0.0.1', '-p', String(port), '-k', '0', '-c', '4', '-n', '400', '-t', 'set,get', '-q'],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      child.on('close', (code) => resolve({ code, out }));
    });
    if (r.code !== 0 || /error|refused/i.test(r.out)) bad.push(`exit ${r.code}: ${r.out.slice(-500)}`);
  }
  return bad;
}

describe('graceful restart under load', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rwsplit-restart-'));
  let cluster: PgCluster;
  let redis: RedisCluster;
  let first: ChildProcess;
  let firstExit: Promise<number | null>;
  let pgPort: number;
  let httpPort: number;
  let redisPort: number;
  /** pids of rwsplit processes started by a restart (not our children): stopped by pid */
  const successors: number[] = [];

  before(async () => {
    [cluster, redis] = await Promise.all([
      PgCluster.start({ replicas: 1 }),
      RedisCluster.start({ shards: 1, replicas: 1 }),
    ]);
    [pgPort, httpPort, redisPort] = (await freePorts(3)) as [number, number, number];
    const shard = redis.shard(redis.shardNames[0]!);
    const config = {
      workers: 1,
      listen: {
        postgres: { host: '127.0.0.1', port: pgPort },
        http: { host: '127.0.0.1', port: httpPort },
        redis: { host: '127.0.0.1', port: redisPort },
      },
      postgres: {
        nodes: cluster.nodes.map((n) => ({ id: n.id, host: n.host, port: n.port })),
        monitor: { intervalMs: 200, timeoutMs: 1000 },
        failover: 'auto',
      },
      redis: {
        shards: [
          {
            name: 's1',
            nodes: [shard.primary, ...shard.replicas].map((n) => ({ id: n.id, host: n.host, port: n.port })),
          },
        ],
        failover: 'auto',
      },
      admin: { token: TOKEN },
      restart: { drainTimeoutMs: 20_000 },
      logging: { level: 'info' },
    };
    writeFileSync(path.join(dir, 'rwsplit.yaml'), stringify(config));
    const log = path.join(dir, 'rwsplit.log');
    writeFileSync(log, '');
    const fd = openSync(log, 'a');
    first = spawn(process.execPath, [bin, 'start', '--config', path.join(dir, 'rwsplit.yaml')], {
      stdio: ['ignore', fd, fd],
    });
    firstExit = new Promise((resolve) => first.on('exit', (code) => resolve(code)));
    await waitFor(
      'rwsplit serving every node',
      async () => {
        const nodes = (await fetch(`http://127.0.0.1:${httpPort}/api/nodes`)
          .then((r) => r.json())
          .catch(() => [])) as { state: string }[];
        return nodes.length === 4 && nodes.every((n) => n.state === 'up');
      },
      30_000,
    );
    const setup = new pg.Client({ host: '127.0.0.1', port: pgPort, user: 'postgres', database: 'postgres' });
    await setup.connect();
    await setup.query('CREATE TABLE restart_rows (id bigint PRIMARY KEY)');
    await setup.end();
  });

  after(async () => {
    if (first.exitCode === null) first.kill('SIGKILL');
    for (const pid of successors) if (isProcessAlive(pid)) process.kill(pid, 'SIGTERM');
    await waitFor('rwsplit processes gone', () => successors.every((p) => !isProcessAlive(p)), 10_000).catch(
      () => successors.forEach((p) => isProcessAlive(p) && process.kill(p, 'SIGKILL')),
    );
    await Promise.allSettled([cluster?.stop(), redis?.stop()]);
    if (process.env.RWSPLIT_KEEP_LOGS) console.log(readFileSync(path.join(dir, 'rwsplit.log'), 'utf8'));
    rmSync(dir, { recursive: true, force: true });
  });

  test('two restarts (rwsplit restart, then SIGUSR2): no refusal, no lost transaction, nobody left hanging', async (t) => {
    let running = true;
    const isRunning = (): boolean => running;
    const pgTally = newTally();
    const poolTally = newTally();
    const redisTally = newTally();
    const sessions = [0, 1, 2, 3, 4, 5].map((k) =>
      pgSession(pgPort, 1 + k * 1_000_000, k % 2 === 0, pgTally, isRunning),
    );
    const pool = new pg.Pool({
      host: '127.0.0.1',
      port: pgPort,
      user: 'postgres',
      database: 'postgres',
      max: 4,
      query_timeout: 10_000,
    });
    pool.on('error', () => undefined);
    const pooled = [0, 1, 2, 3].map((k) => poolLoad(pool, 10_000_001 + k * 1_000_000, poolTally, isRunning));
    const ioredis = await Promise.all(
      ['a', 'b', 'c'].map((n) => redisLoad(redisPort, n, redisTally, isRunning)),
    );
    const benchmarks = redisBenchmarkLoop(redisPort, isRunning);

    // A transaction open across the restart finishes on the old process.
    const holder = new pg.Client({ host: '127.0.0.1', port: pgPort, user: 'postgres', database: 'postgres' });
    const holderErrors: string[] = [];
    holder.on('error', (err: Error & { code?: string }) => holderErrors.push(err.code ?? err.message));
    await holder.connect();
    await holder.query('BEGIN');
    await holder.query('INSERT INTO restart_rows (id) VALUES (-1)');

    await new Promise((r) => setTimeout(r, 1000));
    // Asynchronously: the loads keep running in this process during the handover.
    const cli = await execFileAsync(
      process.execPath,
      [bin, 'restart', '--http', `http://127.0.0.1:${httpPort}`],
      {
        encoding: 'utf8',
        env: { ...process.env, RWSPLIT_ADMIN_TOKEN: TOKEN },
        timeout: 120_000,
      },
    );
    const m = /pid (\d+) serves; pid (\d+) hands its clients over/.exec(cli.stdout);
    assert.ok(m, cli.stdout + cli.stderr);
    const second = Number(m[1]);
    successors.push(second);
    assert.equal(Number(m[2]), first.pid, 'the old process is the one we started');

    // The held transaction is still open on the old process: it commits there.
    await new Promise((r) => setTimeout(r, 300));
    await holder.query('INSERT INTO restart_rows (id) VALUES (-2)');
    await holder.query('COMMIT');
    assert.equal(await firstExit, 0, 'the old process drained and exited on its own');
    // At the transaction boundary it was handed over to the new process: it goes on there.
    assert.equal((await holder.query<{ one: number }>('SELECT 1 AS one')).rows[0]?.one, 1);
    assert.deepEqual(holderErrors, [], 'the session open across the restart was never closed');
    await holder.end();

    // Second restart: SIGUSR2 to the new process.
    await new Promise((r) => setTimeout(r, 1000));
    process.kill(second, 'SIGUSR2');
    await waitFor('the second old process gone', () => !isProcessAlive(second), 30_000);
    const log = readFileSync(path.join(dir, 'rwsplit.log'), 'utf8');
    const third = [...log.matchAll(/"newPid":(\d+)[^\n]*the new process serves/g)].map((x) => Number(x[1]));
    assert.equal(third.length, 2, 'both restarts logged the new pid');
    successors.push(third[1]!);
    assert.ok(isProcessAlive(third[1]!), 'the third process runs');
    // Both old processes are gone: whatever answers now is the third one, and the loads go on.
    const before = [pgTally.acked, poolTally.acked, redisTally.acked];
    const probe = new pg.Client({ host: '127.0.0.1', port: pgPort, user: 'postgres', database: 'postgres' });
    await probe.connect();
    assert.equal((await probe.query<{ one: number }>('SELECT 1 AS one')).rows[0]?.one, 1);
    await probe.end();
    const ping = new Redis({ host: '127.0.0.1', port: redisPort, lazyConnect: true });
    await ping.connect();
    assert.equal(await ping.ping(), 'PONG');
    ping.disconnect();
    await new Promise((r) => setTimeout(r, 1000));
    const grown = [pgTally.acked, poolTally.acked, redisTally.acked].map((n, i) => n > before[i]!);
    assert.deepEqual(grown, [true, true, true], 'every load acknowledged work on the third process');

    running = false;
    await Promise.all([...sessions, ...pooled]);
    await pool.end();
    const bad = await benchmarks;
    for (const r of ioredis) r.disconnect();

    t.diagnostic(
      `node-postgres sessions: ${pgTally.acked} acked, ${pgTally.restartErrors} 57P01 (retried), ` +
        `${pgTally.idleClosed} idle connections closed with 57P01, ` +
        `pool: ${poolTally.acked} acked, ${poolTally.restartErrors} 57P01; ioredis: ${redisTally.acked} pipelines;`,
    );
    for (const [name, x] of [
      ['sessions', pgTally],
      ['pool', poolTally],
      ['ioredis', redisTally],
    ] as const) {
      assert.equal(x.refused, 0, `${name}: connections refused`);
      assert.equal(x.unanswered, 0, `${name}: statements never answered`);
      assert.equal(x.lostTransactions, 0, `${name}: transactions ended by the restart after they began`);
      assert.deepEqual(x.other, [], `${name}: errors other than 57P01`);
      assert.ok(x.acked > 0, `${name}: work done`);
    }
    assert.equal(redisTally.restartErrors, 0);
    assert.deepEqual(bad, [], 'redis-benchmark runs without an error');

    // Every acknowledged write is there; no statement that got 57P01 ran.
    const check = new pg.Client({
      host: '127.0.0.1',
      port: cluster.primary.port,
      user: 'postgres',
      database: 'postgres',
    });
    await check.connect();
    const rows = new Set(
      (await check.query<{ id: string }>('SELECT id FROM restart_rows')).rows.map((r) => Number(r.id)),
    );
    await check.end();
    for (const x of [pgTally, poolTally]) {
      const missing = x.ackedIds.filter((i) => !rows.has(i));
      assert.deepEqual(missing.slice(0, 5), [], `${missing.length} acknowledged rows missing`);
      const ran = x.failedIds.filter((i) => rows.has(i));
      assert.deepEqual(ran.slice(0, 5), [], `${ran.length} rows whose INSERT got 57P01 exist: it ran`);
    }
    assert.ok(rows.has(-1) && rows.has(-2), 'the transaction open across the restart committed');
  });
});
