/**
 * Graceful restart with PostgreSQL clients that keep their connections: rwsplit runs as
 * `bin/rwsplit.js start --config` (a child process) in front of a PostgreSQL primary + replica,
 * on TCP and on a Unix socket (listen.postgres.socketDir), and is restarted twice
 * (POST /api/restart, then SIGUSR2 to the new process) while clients work: pgbench with the
 * simple, extended and prepared (named statements) protocols, one of them over the Unix
 * socket; node-postgres sessions with a session SET (which pins the session to its server),
 * rwsplit's own settings and a named prepared statement; one with a temporary table and one
 * over TLS, which cannot move.
 *
 * Asserted: no pgbench run has a failed transaction, an error or a refused connection; the
 * node-postgres sessions never see an error nor lose their connection, keep their cancel key
 * (BackendKeyData), their SET value (SHOW), rwsplit's settings and their prepared statement
 * (run again by name), and a CancelRequest with the key of the first process still cancels a
 * statement on the third; the sessions with a temporary table or TLS are closed at a
 * transaction boundary with 57P01; every acknowledged row is there; each old
 * process logs the sessions it handed over and exits on its own.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { stringify } from 'yaml';
import { freePorts } from '../src/cluster/free-port.js';
import { isProcessAlive } from '../src/cluster/process-tree.js';
import { PgCluster } from '../src/cluster/pg-cluster.js';
import { encodeCancelRequest } from '../src/pg/protocol/index.js';
import { pgbench, summary, type PgbenchResult } from './support/pgbench.js';
import { testWorkers, waitFor } from './support/stack.js';

const bin = path.resolve('bin/rwsplit.js');
const TOKEN = 'pg-handover-test-token';
/** An answer not there after this long counts as a hang (the restarts themselves take ~1 s). */
const QUERY_WAIT_MS = 15_000;

/** What one node-postgres session saw. */
interface SessionLoad {
  client: pg.Client;
  acked: number[];
  errors: string[];
  closed: boolean;
  /** the connection's BackendKeyData, as node-postgres keeps it */
  processID: number;
  secretKey: number;
}

async function connect(port: number): Promise<SessionLoad> {
  const client = new pg.Client({
    host: '127.0.0.1',
    port,
    user: 'postgres',
    database: 'postgres',
    query_timeout: QUERY_WAIT_MS,
  });
  const s: SessionLoad = { client, acked: [], errors: [], closed: false, processID: 0, secretKey: 0 };
  client.on('error', (err: Error) => s.errors.push(`connection: ${err.message}`));
  client.on('end', () => (s.closed = true));
  await client.connect();
  const keys = client as unknown as { processID: number; secretKey: number };
  s.processID = keys.processID;
  s.secretKey = keys.secretKey;
  return s;
}

/**
 * Autocommit INSERTs through the named prepared statement `ins` (node-postgres prepares it
 * once per connection, then only binds it: after a move, the new process must know it), and
 * every 20th a transaction that checks the session's SET on the way.
 */
async function sessionLoop(s: SessionLoad, first: number, setting: string, running: () => boolean) {
  for (let id = first; running(); id++) {
    try {
      if (id % 20 === 0) {
        await s.client.query('BEGIN');
        const shown = await s.client.query<{ work_mem: string }>('SHOW work_mem');
        if (shown.rows[0]?.work_mem !== setting) s.errors.push(`SHOW work_mem: ${shown.rows[0]?.work_mem}`);
        await s.client.query({
          name: 'ins',
          text: 'INSERT INTO handover_rows (id) VALUES ($1)',
          values: [id],
        });
        await s.client.query('COMMIT');
      } else {
        await s.client.query({
          name: 'ins',
          text: 'INSERT INTO handover_rows (id) VALUES ($1)',
          values: [id],
        });
      }
      s.acked.push(id);
    } catch (err) {
      s.errors.push(`${(err as { code?: string }).code ?? ''} ${(err as Error).message}`);
      if (s.closed) return;
    }
    await new Promise((r) => setTimeout(r, 3));
  }
}

/** pgbench runs of 2 s each, over and over until stopped. */
async function pgbenchLoop(target: string, port: number, mode: string, running: () => boolean) {
  const runs: PgbenchResult[] = [];
  while (running()) {
    runs.push(await pgbench(port, ['-n', '-N', '-M', mode, '-c', '2', '-j', '1', '-T', '2', '-h', target]));
  }
  return runs;
}

/** Sends a CancelRequest for (processID, secretKey) to the proxy, as libpq does. */
function sendCancel(port: number, processID: number, secretKey: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.end(encodeCancelRequest(processID, secretKey)));
    s.on('close', () => resolve());
    s.on('error', reject);
  });
}

describe('graceful restart hands PostgreSQL clients over', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rwsplit-pgho-'));
  let cluster: PgCluster;
  let first: ChildProcess;
  let firstExit: Promise<number | null>;
  let pgPort: number;
  let httpPort: number;
  const successors: number[] = [];

  before(async () => {
    const made = spawnSync(
      'openssl',
      ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-days', '2'].concat([
        '-keyout',
        `${dir}/key.pem`,
        '-out',
        `${dir}/cert.pem`,
      ]),
      { encoding: 'utf8' },
    );
    assert.equal(made.status, 0, made.stderr);
    // pgbench (libpq) would take TLS when offered (sslmode=prefer): these runs are the plain ones.
    process.env.PGSSLMODE = 'disable';
    cluster = await PgCluster.start({ replicas: 1 });
    [pgPort, httpPort] = (await freePorts(2)) as [number, number];
    const config = {
      listen: {
        postgres: { host: '127.0.0.1', port: pgPort, socketDir: dir },
        http: { host: '127.0.0.1', port: httpPort },
      },
      postgres: {
        nodes: cluster.nodes.map((n) => ({ id: n.id, host: n.host, port: n.port })),
        monitor: { intervalMs: 200, timeoutMs: 1000 },
        tls: { cert: `${dir}/cert.pem`, key: `${dir}/key.pem` },
      },
      admin: { token: TOKEN },
      restart: { drainTimeoutMs: 20_000 },
      logging: { level: 'info' },
      // RWSPLIT_TEST_WORKERS=2: the clients are handed over from worker to worker.
      ...testWorkers(),
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
      'rwsplit serving both nodes',
      async () => {
        const nodes = (await fetch(`http://127.0.0.1:${httpPort}/api/nodes`)
          .then((r) => r.json())
          .catch(() => [])) as { state: string }[];
        return nodes.length === 2 && nodes.every((n) => n.state === 'up');
      },
      30_000,
    );
    const init = await pgbench(cluster.primary.port, ['-i', '-s', '1', '-q']);
    assert.equal(init.code, 0, summary(init));
    const setup = new pg.Client({ host: '127.0.0.1', port: pgPort, user: 'postgres', database: 'postgres' });
    await setup.connect();
    await setup.query('CREATE TABLE handover_rows (id bigint PRIMARY KEY)');
    await setup.end();
  });

  after(async () => {
    if (first.exitCode === null) first.kill('SIGKILL');
    for (const pid of successors) if (isProcessAlive(pid)) process.kill(pid, 'SIGTERM');
    await waitFor('rwsplit processes gone', () => successors.every((p) => !isProcessAlive(p)), 10_000).catch(
      () => successors.forEach((p) => isProcessAlive(p) && process.kill(p, 'SIGKILL')),
    );
    await cluster?.stop();
    if (process.env.RWSPLIT_KEEP_LOGS) console.log(readFileSync(path.join(dir, 'rwsplit.log'), 'utf8'));
    rmSync(dir, { recursive: true, force: true });
  });

  test('two restarts: no failed transaction, sessions keep their state and cancel key, none hangs', async (t) => {
    let running = true;
    const isRunning = (): boolean => running;
    t.after(() => {
      running = false;
    });

    // Pinned by a session SET, with rwsplit's own setting and a named prepared statement.
    const pinned = await connect(pgPort);
    await pinned.client.query("SET work_mem = '7MB'");
    await pinned.client.query("SET rwsplit.consistency = 'strong'");
    // Not pinned: its SET is rwsplit's own (answered by the proxy), reads follow its writes.
    const plain = await connect(pgPort);
    await plain.client.query("SET rwsplit.consistency = 'read-your-writes'");
    // A temporary table lives in its server connection, which cannot move: closed at a boundary.
    const temp = await connect(pgPort);
    await temp.client.query('CREATE TEMP TABLE scratch (x int)');
    const tempEnded = new Promise<string>((resolve) =>
      temp.client.on('error', (err: Error & { code?: string }) => resolve(err.code ?? err.message)),
    );
    // TLS: the encryption state stays in the old process; closed at a boundary.
    const secure = new pg.Client({
      host: '127.0.0.1',
      port: pgPort,
      user: 'postgres',
      database: 'postgres',
      ssl: { rejectUnauthorized: false },
    });
    const secureEnded = new Promise<string>((resolve) =>
      secure.on('error', (err: Error & { code?: string }) => resolve(err.code ?? err.message)),
    );
    await secure.connect();
    assert.equal((await secure.query<{ one: number }>('SELECT 1 AS one')).rows[0]?.one, 1);

    const loads = [
      sessionLoop(pinned, 1_000_000, '7MB', isRunning),
      sessionLoop(plain, 2_000_000, '4MB', isRunning),
    ];
    const benches = [
      pgbenchLoop('127.0.0.1', pgPort, 'simple', isRunning),
      pgbenchLoop('127.0.0.1', pgPort, 'extended', isRunning),
      pgbenchLoop(dir, pgPort, 'prepared', isRunning),
    ];

    await new Promise((r) => setTimeout(r, 1500));
    const res = await fetch(`http://127.0.0.1:${httpPort}/api/restart`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    assert.equal(res.status, 200, await res.clone().text());
    const second = ((await res.json()) as { pid: number }).pid;
    successors.push(second);
    assert.equal(await firstExit, 0, 'the old process drained and exited on its own');
    assert.equal(
      await tempEnded,
      '57P01',
      'the session with a temporary table was closed with admin_shutdown',
    );
    assert.equal(await secureEnded, '57P01', 'the TLS session was closed with admin_shutdown');

    // Second restart: the sessions handed over once are handed over again.
    await new Promise((r) => setTimeout(r, 1500));
    process.kill(second, 'SIGUSR2');
    await waitFor('the second old process gone', () => !isProcessAlive(second), 30_000);
    const log = readFileSync(path.join(dir, 'rwsplit.log'), 'utf8');
    const pids = [...log.matchAll(/"newPid":(\d+)[^\n]*the new process serves/g)].map((x) => Number(x[1]));
    assert.equal(pids.length, 2, 'both restarts logged the new pid');
    successors.push(pids[1]!);
    const drains = [
      ...log.matchAll(/"postgres":\{"handedOver":(\d+),"atBoundary":(\d+),"atTimeout":(\d+)/g),
    ].map((x) => [Number(x[1]), Number(x[2]), Number(x[3])]);
    assert.equal(drains.length, 2, 'both old processes logged their drain');

    const acked = [pinned.acked.length, plain.acked.length];
    await new Promise((r) => setTimeout(r, 1000));
    assert.ok(
      pinned.acked.length > acked[0]! && plain.acked.length > acked[1]!,
      'the sessions go on through the third process',
    );
    running = false;
    await Promise.all(loads);
    const runs = (await Promise.all(benches)).flat();

    t.diagnostic(
      `handed over / closed at a boundary / at the timeout, per drain: ${JSON.stringify(drains)}; ` +
        `pgbench: ${runs.length} runs, ${runs.reduce((n, r) => n + r.processed, 0)} transactions; ` +
        `node-postgres: ${pinned.acked.length + plain.acked.length} INSERTs`,
    );
    // The two sessions at least, each time (pgbench's connections too, unless between runs).
    assert.ok(
      drains.every(([handed]) => handed! >= 2),
      `sessions handed over: ${JSON.stringify(drains)}`,
    );
    assert.ok(drains[0]![1]! >= 2, 'the sessions with a temporary table and TLS were closed at a boundary');
    assert.ok(
      drains.every(([, , timeout]) => timeout === 0),
      'no session waited for the drain timeout',
    );
    for (const r of runs) {
      assert.equal(r.code, 0, summary(r));
      assert.equal(r.failed, 0, summary(r));
      assert.ok(r.processed > 0, summary(r));
      assert.doesNotMatch(r.output, /error|FATAL|refused/i, summary(r));
    }
    assert.ok(runs.length >= 3 * 3, `pgbench runs: ${runs.length}`);

    for (const [name, s] of [
      ['pinned', pinned],
      ['plain', plain],
    ] as const) {
      assert.deepEqual(s.errors, [], `${name}: errors`);
      assert.equal(s.closed, false, `${name}: its connection was never closed`);
      // The session state moved with the socket (twice).
      const executed = await s.client.query({
        name: 'ins',
        text: 'INSERT INTO handover_rows (id) VALUES ($1)',
        values: [-s.processID],
      });
      assert.equal(executed.rowCount, 1, `${name}: the prepared statement runs by name`);
    }
    const show = async (c: pg.Client, setting: string): Promise<string> =>
      Object.values((await c.query(`SHOW ${setting}`)).rows[0] as Record<string, string>)[0]!;
    assert.equal(await show(pinned.client, 'work_mem'), '7MB');
    assert.equal(await show(pinned.client, 'rwsplit.consistency'), 'strong');
    assert.equal(await show(plain.client, 'work_mem'), '4MB', 'the unpinned session has no SET of its own');
    assert.equal(await show(plain.client, 'rwsplit.consistency'), 'read-your-writes');
    assert.match(await show(plain.client, 'rwsplit.causal_token'), /^v1:default@/, 'its causal token moved');

    // The cancel key handed out by the first process cancels a statement on the third.
    for (const s of [pinned, plain]) {
      const sleeping = s.client.query('SELECT pg_sleep(60)').then(
        () => 'completed',
        (err: Error & { code?: string }) => err.code ?? err.message,
      );
      await new Promise((r) => setTimeout(r, 300));
      await sendCancel(pgPort, s.processID, s.secretKey);
      assert.equal(await sleeping, '57014', 'query_canceled');
    }

    // Every acknowledged row is on the primary.
    const check = new pg.Client({
      host: '127.0.0.1',
      port: cluster.primary.port,
      user: 'postgres',
      database: 'postgres',
    });
    await check.connect();
    const rows = new Set(
      (await check.query<{ id: string }>('SELECT id FROM handover_rows')).rows.map((r) => Number(r.id)),
    );
    await check.end();
    for (const s of [pinned, plain]) {
      const missing = s.acked.filter((i) => !rows.has(i));
      assert.deepEqual(missing.slice(0, 5), [], `${missing.length} acknowledged rows missing`);
      await s.client.end();
    }
  });
});
