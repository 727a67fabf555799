/**
 * `POST /api/reload` with data-plane workers (`rwsplit start --workers 2`, the file saying
 * otherwise): the reload reports only what changed in the file (`--workers` keeps overriding
 * it, so `workers` is not "needs restart"), and a staleness bound applied live reaches the
 * sessions of both workers (the controller judges, every worker routes on its verdict).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { pino } from 'pino';
import { Rwsplit } from '../src/app.js';
import { PgCluster } from '../src/cluster/pg-cluster.js';
import { loadConfigFile } from '../src/config/load.js';
import { FIRST_PROCESS_ID } from '../src/pg/proxy.js';
import { waitFor } from './support/stack.js';

const TOKEN = 'reload-workers-token-0123456789';

describe('reload with data-plane workers', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rwsplit-workers-reload-'));
  const file = path.join(dir, 'rwsplit.yaml');
  let cluster: PgCluster;
  let app: Rwsplit;

  const writeConfig = (maxLagBytes: number): void =>
    writeFileSync(
      file,
      [
        // What the file says; the command line (--workers 2) overrides it.
        'workers: 1',
        'listen:',
        '  postgres: { host: 127.0.0.1, port: 0 }',
        '  http: { host: 127.0.0.1, port: 0 }',
        `admin: { token: ${TOKEN} }`,
        'postgres:',
        '  nodes:',
        ...cluster.nodes.map((n) => `    - { id: ${n.id}, host: 127.0.0.1, port: ${n.port} }`),
        '  monitor: { intervalMs: 200, timeoutMs: 1000 }',
        `  staleness: { maxLagBytes: ${maxLagBytes}, maxLagMs: null }`,
        'logging: { level: warn }',
        '',
      ].join('\n'),
    );

  before(async () => {
    cluster = await PgCluster.start({ replicas: 1 });
    writeConfig(1024 * 1024 * 1024);
    // As `rwsplit start --config FILE --workers 2` does.
    const config = loadConfigFile(file);
    config.workers = 2;
    app = await Rwsplit.start(config, {
      configPath: file,
      workers: 2,
      log: pino({ level: process.env.RWSPLIT_TEST_LOG ?? 'silent' }),
    });
  });
  after(async () => {
    await app?.stop();
    await cluster?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('a staleness bound reloaded live reaches the sessions of both workers', async () => {
    assert.equal(app.workers?.count, 2);
    const clients: pg.Client[] = [];
    for (let i = 0; i < 2; i++) {
      const c = new pg.Client({ host: '127.0.0.1', port: app.pgAddress!.port, user: 'postgres' });
      await c.connect();
      clients.push(c);
    }
    const workerOf = (c: pg.Client): number =>
      ((c as unknown as { processID: number }).processID - FIRST_PROCESS_ID) % 2;
    assert.deepEqual(clients.map(workerOf).sort(), [0, 1], 'one session on each worker');
    const primary = cluster.primary;
    const replica = cluster.nodes.find((n) => n.id !== primary.id)!;
    const direct = new pg.Client({ connectionString: primary.connectionString });
    const replicaDirect = new pg.Client({ connectionString: replica.connectionString });
    await Promise.all([direct.connect(), replicaDirect.connect()]);
    const ports = async (): Promise<number[]> =>
      Promise.all(
        clients.map(async (c) => (await c.query<{ p: number }>('SELECT inet_server_port() AS p')).rows[0]!.p),
      );
    try {
      await replicaDirect.query('SELECT pg_wal_replay_pause()');
      // WAL the replica does not replay: some kilobytes of lag, far within the bound of 1 GiB.
      await direct.query('CREATE TABLE filler AS SELECT g FROM generate_series(1, 2000) g');
      await waitFor(
        'the lag seen by the monitor',
        () => (app.topology.get(replica.id)?.lagBytes ?? 0) > 1000,
      );
      assert.deepEqual(await ports(), [replica.port, replica.port], 'both sessions read on the replica');

      writeConfig(1000);
      const res = await fetch(`http://127.0.0.1:${app.httpAddress!.port}/api/reload`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TOKEN}` },
      });
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), {
        applied: ['postgres.staleness.maxLagBytes'],
        needsRestart: [],
      });
      await waitFor('the replica out of rotation', () => app.topology.get(replica.id)?.lagging === true);
      // Every worker's sessions follow the controller's verdict (sent within one state interval).
      await waitFor('both sessions read on the primary', async () =>
        (await ports()).every((p) => p === primary.port),
      );
    } finally {
      await replicaDirect.query('SELECT pg_wal_replay_resume()');
      await Promise.all([direct.end(), replicaDirect.end(), ...clients.map((c) => c.end())]);
    }
  });
});
