/**
 * Graceful restart that changes the number of data-plane workers: rwsplit runs as
 * `bin/rwsplit.js start --config` with `workers: 2`, then the file says `workers: 1` and it is
 * restarted (one process takes over the workers' clients), then `workers: 3` and it is
 * restarted again (three workers take over one process's clients). Meanwhile node-postgres
 * sessions (each pinned by its own SET, with rwsplit's own setting and a named prepared
 * statement) and a pgbench loop (extended protocol) work.
 *
 * Asserted: no pgbench run has a failed transaction or an error; the sessions never see an
 * error nor lose their connection, and keep their SET, rwsplit's setting and their prepared
 * statement; the cancel key each got from the first process cancels a statement on the third
 * (the session sits on the worker its process id names, whatever the count); a session opened
 * on the third process gets a process id no handed-over session has, and its key cancels too.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
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
import { waitFor } from './support/stack.js';

const bin = path.resolve('bin/rwsplit.js');
const TOKEN = 'pg-handover-workers-token';
const SESSIONS = 4;

interface Session {
  client: pg.Client;
  errors: string[];
  closed: boolean;
  acked: number;
  processID: number;
  secretKey: number;
  workMem: string;
}

async function connect(port: number, workMem: string): Promise<Session> {
  const client = new pg.Client({
    host: '127.0.0.1',
    port,
    user: 'postgres',
    database: 'postgres',
    query_timeout: 15_000,
  });
  const s: Session = { client, errors: [], closed: false, acked: 0, processID: 0, secretKey: 0, workMem };
  client.on('error', (err: Error) => s.errors.push(`connection: ${err.message}`));
  client.on('end', () => (s.closed = true));
  await client.connect();
  const keys = client as unknown as { processID: number; secretKey: number };
  s.processID = keys.processID;
  s.secretKey = keys.secretKey;
  await client.query(`SET work_mem = '${workMem}'`);
  await client.query("SET rwsplit.consistency = 'strong'");
  return s;
}

/** The named prepared statement, and now and then a transaction that checks the SET. */
async function sessionLoop(s: Session, running: () => boolean): Promise<void> {
  for (let i = 1; running(); i++) {
    try {
      if (i % 10 === 0) {
        await s.client.query('BEGIN');
        const shown = await s.client.query<{ work_mem: string }>('SHOW work_mem');
        if (shown.rows[0]?.work_mem !== s.workMem) s.errors.push(`SHOW work_mem: ${shown.rows[0]?.work_mem}`);
        await s.client.query('COMMIT');
      }
      const r = await s.client.query({ name: 'sel', text: 'SELECT $1::int + 1 AS n', values: [i] });
      if (r.rows[0]?.n !== i + 1) s.errors.push(`answer ${JSON.stringify(r.rows[0])} for ${i}`);
      s.acked++;
    } catch (err) {
      s.errors.push(`${(err as { code?: string }).code ?? ''} ${(err as Error).message}`);
      if (s.closed) return;
    }
    await new Promise((r) => setTimeout(r, 5));
  }
}

function sendCancel(port: number, processID: number, secretKey: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.end(encodeCancelRequest(processID, secretKey)));
    s.on('close', () => resolve());
    s.on('error', reject);
  });
}

async function cancels(port: number, s: Session): Promise<string> {
  const sleeping = s.client.query('SELECT pg_sleep(60)').then(
    () => 'completed',
    (err: Error & { code?: string }) => err.code ?? err.message,
  );
  await new Promise((r) => setTimeout(r, 300));
  await sendCancel(port, s.processID, s.secretKey);
  return sleeping;
}

describe('graceful restart hands PostgreSQL clients over when the worker count changes', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rwsplit-pghow-'));
  const configPath = path.join(dir, 'rwsplit.yaml');
  let cluster: PgCluster;
  let first: ChildProcess;
  let firstExit: Promise<number | null>;
  let pgPort: number;
  let httpPort: number;
  const successors: number[] = [];
  const writeConfig = (workers: number): void =>
    writeFileSync(
      configPath,
      stringify({
        workers,
        listen: {
          postgres: { host: '127.0.0.1', port: pgPort },
          http: { host: '127.0.0.1', port: httpPort },
        },
        postgres: {
          nodes: cluster.nodes.map((n) => ({ id: n.id, host: n.host, port: n.port })),
          monitor: { intervalMs: 200, timeoutMs: 1000 },
        },
        admin: { token: TOKEN },
        restart: { drainTimeoutMs: 20_000 },
        logging: { level: 'info' },
      }),
    );

  before(async () => {
    process.env.PGSSLMODE = 'disable';
    cluster = await PgCluster.start({ replicas: 1 });
    [pgPort, httpPort] = (await freePorts(2)) as [number, number];
    writeConfig(2);
    const log = path.join(dir, 'rwsplit.log');
    writeFileSync(log, '');
    const fd = openSync(log, 'a');
    first = spawn(process.execPath, [bin, 'start', '--config', configPath], { stdio: ['ignore', fd, fd] });
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

  test('2 workers, then 1 process, then 3 workers: sessions, cancel keys and pgbench carry on', async (t) => {
    let running = true;
    const isRunning = (): boolean => running;
    t.after(() => {
      running = false;
    });
    const sessions: Session[] = [];
    for (let i = 0; i < SESSIONS; i++) sessions.push(await connect(pgPort, `${5 + i}MB`));
    // Round robin over 2 workers: ids of both.
    assert.equal(new Set(sessions.map((s) => s.processID % 2)).size, 2, 'sessions on both workers');
    const loads = sessions.map((s) => sessionLoop(s, isRunning));
    const bench = (async () => {
      const runs: PgbenchResult[] = [];
      while (running)
        runs.push(await pgbench(pgPort, ['-n', '-N', '-M', 'extended', '-c', '2', '-j', '1', '-T', '2']));
      return runs;
    })();

    // 2 workers → 1 process.
    await new Promise((r) => setTimeout(r, 1000));
    writeConfig(1);
    const res = await fetch(`http://127.0.0.1:${httpPort}/api/restart`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    assert.equal(res.status, 200, await res.clone().text());
    const second = ((await res.json()) as { pid: number }).pid;
    successors.push(second);
    assert.equal(await firstExit, 0, 'the old process drained and exited on its own');

    // 1 process → 3 workers.
    await new Promise((r) => setTimeout(r, 1000));
    writeConfig(3);
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

    const acked = sessions.map((s) => s.acked);
    await new Promise((r) => setTimeout(r, 1000));
    running = false;
    await Promise.all(loads);
    const runs = await bench;
    t.diagnostic(
      `handed over / closed at a boundary / at the timeout, per drain: ${JSON.stringify(drains)}; ` +
        `pgbench: ${runs.length} runs, ${runs.reduce((n, r) => n + r.processed, 0)} transactions; ` +
        `sessions: ${sessions.map((s) => s.acked).join(', ')} statements`,
    );
    sessions.forEach((s, i) => assert.ok(s.acked > acked[i]!, `session ${i} goes on on the third process`));
    assert.ok(
      drains.every(([handed, boundary, timeout]) => handed! >= SESSIONS && boundary === 0 && timeout === 0),
      `every session handed over each time: ${JSON.stringify(drains)}`,
    );
    for (const r of runs) {
      assert.equal(r.code, 0, summary(r));
      assert.equal(r.failed, 0, summary(r));
      assert.doesNotMatch(r.output, /error|FATAL|refused/i, summary(r));
    }
    assert.ok(runs.length >= 3, `pgbench runs: ${runs.length}`);

    const show = async (c: pg.Client, setting: string): Promise<string> =>
      Object.values((await c.query(`SHOW ${setting}`)).rows[0] as Record<string, string>)[0]!;
    for (const [i, s] of sessions.entries()) {
      assert.deepEqual(s.errors, [], `session ${i}: errors`);
      assert.equal(s.closed, false, `session ${i}: its connection was never closed`);
      assert.equal(await show(s.client, 'work_mem'), s.workMem);
      assert.equal(await show(s.client, 'rwsplit.consistency'), 'strong');
      const r = await s.client.query({ name: 'sel', text: 'SELECT $1::int + 1 AS n', values: [41] });
      assert.equal(r.rows[0]?.n, 42, `session ${i}: the prepared statement runs by name`);
      // The key the first process (2 workers) handed out, on 3 workers.
      assert.equal(await cancels(pgPort, s), '57014', `session ${i}: query_canceled`);
    }
    // A new session's id is none of the handed-over ones, and its own key cancels.
    const fresh = await connect(pgPort, '9MB');
    assert.ok(!sessions.some((s) => s.processID === fresh.processID), `fresh id ${fresh.processID}`);
    assert.equal(await cancels(pgPort, fresh), '57014', 'the new session: query_canceled');
    for (const s of [...sessions, fresh]) await s.client.end();
  });
});
