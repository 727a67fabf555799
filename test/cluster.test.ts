/**
 * Integration test of the local cluster launcher: real initdb, postgres and pg_basebackup
 * processes (run as the `postgres` user when the suite runs as root).
 */
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';

import pg from 'pg';

import { ClusterError } from '../src/cluster/errors.js';
import { PgCluster, type PgNodeHandle } from '../src/cluster/pg-cluster.js';
import { childPids } from '../src/cluster/process-tree.js';

async function query<R extends pg.QueryResultRow>(
  node: PgNodeHandle | string,
  text: string,
  values: unknown[] = [],
): Promise<R[]> {
  const client = new pg.Client({ connectionString: typeof node === 'string' ? node : node.connectionString });
  client.on('error', () => {});
  await client.connect();
  try {
    return (await client.query<R>(text, values)).rows;
  } finally {
    await client.end();
  }
}

async function scalar<T>(node: PgNodeHandle, text: string): Promise<T> {
  const [row] = await query<{ v: T }>(node, text);
  assert.ok(row !== undefined, `no row from ${text}`);
  return row.v;
}

/** Polls `check` until it returns true; fails the test after `timeoutMs`. */
async function eventually(what: string, check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for: ${what}`);
    await delay(50);
  }
}

function processGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

function isClusterError(code: string): (err: unknown) => boolean {
  return (err) => err instanceof ClusterError && err.code === code;
}

function byId(cluster: PgCluster, id: string): PgNodeHandle {
  const node = cluster.nodes.find((n) => n.id === id);
  assert.ok(node !== undefined, `no node ${id}`);
  return node;
}

describe('PgCluster, async replication, default options', () => {
  let cluster: PgCluster;

  before(async () => {
    cluster = await PgCluster.start();
  });

  after(async () => {
    await cluster?.stop();
  });

  test('starts a primary and two replicas on distinct ports, each with a postmaster pid', () => {
    assert.deepEqual(
      cluster.nodes.map((n) => [n.id, n.role]),
      [
        ['pg-primary', 'primary'],
        ['pg-replica1', 'replica'],
        ['pg-replica2', 'replica'],
      ],
    );
    assert.equal(cluster.primary.id, 'pg-primary');
    assert.deepEqual(
      cluster.replicas.map((r) => r.id),
      ['pg-replica1', 'pg-replica2'],
    );
    assert.equal(new Set(cluster.nodes.map((n) => n.port)).size, 3);
    for (const node of cluster.nodes) {
      assert.equal(node.host, '127.0.0.1');
      assert.ok(typeof node.pid === 'number' && !processGone(node.pid), `${node.id} pid`);
      assert.ok(node.dataDir.startsWith(cluster.dir + path.sep));
    }
  });

  test('pg_is_in_recovery() is false on the primary, true on each replica; each answers on its own port', async () => {
    for (const node of cluster.nodes) {
      assert.equal(await scalar<boolean>(node, 'SELECT pg_is_in_recovery() AS v'), node.role === 'replica');
      assert.equal(await scalar<number>(node, 'SELECT inet_server_port() AS v'), node.port);
    }
  });

  test('runs the server as the postgres user when root, and logs to postgres.log in each data dir', async () => {
    const user = await scalar<string>(cluster.primary, 'SELECT current_setting($$data_directory$$) AS v');
    assert.equal(user, cluster.primary.dataDir);
    if (process.getuid?.() === 0) {
      const uid = readFileSync(`/proc/${cluster.primary.pid}/status`, 'utf8').match(/^Uid:\s+(\d+)/m)?.[1];
      assert.notEqual(uid, '0');
    }
    await eventually('a log line in pg-primary/postgres.log', async () => {
      const log = readFileSync(path.join(cluster.primary.dataDir, 'postgres.log'), 'utf8');
      return log.includes('database system is ready to accept connections');
    });
  });

  test('a row written on the primary is visible on both replicas after waitForReplication()', async () => {
    await query(cluster.primary, 'CREATE TABLE t (id int PRIMARY KEY, note text)');
    await query(cluster.primary, `INSERT INTO t VALUES (1, 'one')`);
    await cluster.waitForReplication();
    for (const replica of cluster.replicas) {
      assert.deepEqual(await query(replica, 'SELECT id, note FROM t'), [{ id: 1, note: 'one' }]);
    }
  });

  test('pg_wal_replay_pause() on a replica stops it seeing new rows; resume brings them', async () => {
    const [paused, other] = cluster.replicas;
    assert.ok(paused !== undefined && other !== undefined);
    await query(paused, 'SELECT pg_wal_replay_pause()');
    await eventually('replay paused', async () => {
      return (await scalar<string>(paused, 'SELECT pg_get_wal_replay_pause_state() AS v')) === 'paused';
    });
    await query(cluster.primary, `INSERT INTO t VALUES (2, 'two')`);
    await eventually('row 2 on the other replica', async () => {
      return (await scalar<string>(other, 'SELECT count(*) AS v FROM t')) === '2';
    });
    assert.equal(await scalar<string>(paused, 'SELECT count(*) AS v FROM t'), '1');
    await assert.rejects(cluster.waitForReplication(300), isClusterError('REPLICATION_TIMEOUT'));

    await query(paused, 'SELECT pg_wal_replay_resume()');
    await cluster.waitForReplication();
    assert.equal(await scalar<string>(paused, 'SELECT count(*) AS v FROM t'), '2');
  });

  test('signal() reaches the postmaster: SIGSTOP stops it, SIGCONT resumes it', async () => {
    const replica = byId(cluster, 'pg-replica1');
    const state = (): string | undefined =>
      readFileSync(`/proc/${replica.pid}/stat`, 'utf8').split(') ')[1]?.[0];
    cluster.signal(replica.id, 'SIGSTOP');
    await eventually('postmaster stopped', async () => state() === 'T');
    cluster.signal(replica.id, 'SIGCONT');
    await eventually('postmaster running again', async () => state() !== 'T');
    assert.throws(() => cluster.signal('pg-nope', 'SIGCONT'), isClusterError('UNKNOWN_NODE'));
  });

  test('kill() makes a replica refuse connections; restart() brings it back streaming', async () => {
    const replica = byId(cluster, 'pg-replica2');
    const oldPid = replica.pid;
    assert.ok(oldPid !== undefined);
    await cluster.kill(replica.id);
    assert.equal(replica.pid, undefined);
    assert.ok(processGone(oldPid), 'old postmaster still exists');
    await assert.rejects(
      query(replica, 'SELECT 1'),
      (err: NodeJS.ErrnoException) => err.code === 'ECONNREFUSED',
    );

    await query(cluster.primary, `INSERT INTO t VALUES (3, 'three')`);
    await cluster.waitForReplication(); // a killed replica is not waited for

    await cluster.restart(replica.id);
    assert.ok(replica.pid !== undefined && replica.pid !== oldPid);
    assert.equal(await scalar<boolean>(replica, 'SELECT pg_is_in_recovery() AS v'), true);
    await eventually('wal receiver streaming', async () => {
      return (await scalar<string>(replica, 'SELECT status AS v FROM pg_stat_wal_receiver')) === 'streaming';
    });
    await cluster.waitForReplication();
    assert.equal(await scalar<string>(replica, 'SELECT count(*) AS v FROM t'), '3');
  });

  test('a postmaster killed with signal() loses its pid and restart() brings the node back', async () => {
    const replica = byId(cluster, 'pg-replica1');
    const oldPid = replica.pid;
    cluster.signal(replica.id, 'SIGKILL');
    await eventually('pid cleared', async () => replica.pid === undefined);
    assert.ok(oldPid !== undefined && processGone(oldPid));
    await cluster.restart(replica.id);
    assert.equal(await scalar<boolean>(replica, 'SELECT pg_is_in_recovery() AS v'), true);
    await cluster.waitForReplication();
    assert.equal(await scalar<string>(replica, 'SELECT count(*) AS v FROM t'), '3');
  });

  test('a killed and restarted primary recovers its data and the replicas stream from it again', async () => {
    await cluster.kill('pg-primary');
    await assert.rejects(
      query(cluster.primary, 'SELECT 1'),
      (err: NodeJS.ErrnoException) => err.code === 'ECONNREFUSED',
    );
    await cluster.restart('pg-primary');
    assert.equal(await scalar<boolean>(cluster.primary, 'SELECT pg_is_in_recovery() AS v'), false);
    await query(cluster.primary, `INSERT INTO t VALUES (4, 'four')`);
    await cluster.waitForReplication(20_000);
    for (const replica of cluster.replicas) {
      assert.equal(await scalar<string>(replica, 'SELECT count(*) AS v FROM t'), '4');
    }
  });

  test('stop() ends every postgres process, removes the directory, and is idempotent', async () => {
    const pids = cluster.nodes.flatMap((n) => (n.pid !== undefined ? [n.pid, ...childPids(n.pid)] : []));
    assert.ok(pids.length > 3, 'postmasters and their children were found');
    await cluster.stop();
    for (const pid of pids) assert.ok(processGone(pid), `pid ${pid} still exists`);
    assert.deepEqual(
      cluster.nodes.map((n) => n.pid),
      [undefined, undefined, undefined],
    );
    assert.equal(existsSync(cluster.dir), false);
    await cluster.stop();
  });
});

describe('PgCluster, synchronous replication with a password', () => {
  let cluster: PgCluster;

  before(async () => {
    cluster = await PgCluster.start({ replication: 'sync', password: "s3cret 'quoted' @/:" });
  });

  after(async () => {
    await cluster?.stop();
  });

  test('the primary has synchronous_standby_names = ANY 1 (replica1, replica2)', async () => {
    assert.equal(
      await scalar<string>(cluster.primary, `SELECT current_setting('synchronous_standby_names') AS v`),
      'ANY 1 (replica1, replica2)',
    );
  });

  test("pg_stat_replication shows both replicas with sync_state 'quorum'", async () => {
    const rows = await query<{ application_name: string; sync_state: string; state: string }>(
      cluster.primary,
      'SELECT application_name, sync_state, state FROM pg_stat_replication ORDER BY application_name',
    );
    assert.deepEqual(rows, [
      { application_name: 'replica1', sync_state: 'quorum', state: 'streaming' },
      { application_name: 'replica2', sync_state: 'quorum', state: 'streaming' },
    ]);
  });

  test('commits complete and replicate', async () => {
    await query(cluster.primary, 'CREATE TABLE s (id int)');
    await query(cluster.primary, 'INSERT INTO s VALUES (1)');
    await cluster.waitForReplication();
    for (const replica of cluster.replicas) {
      assert.equal(await scalar<string>(replica, 'SELECT count(*) AS v FROM s'), '1');
    }
  });

  test('TCP connections need the password (scram-sha-256); the connection strings carry it', async () => {
    for (const node of cluster.nodes) {
      assert.equal(await scalar<number>(node, 'SELECT 1 AS v'), 1);
      const wrong = `postgresql://postgres:wrong@127.0.0.1:${node.port}/postgres`;
      await assert.rejects(query(wrong, 'SELECT 1'), (err: { code?: string }) => err.code === '28P01');
    }
    const method = await query<{ auth_method: string }>(
      cluster.primary,
      `SELECT auth_method FROM pg_hba_file_rules WHERE type = 'host' AND 'all' = ANY(database)`,
    );
    assert.deepEqual(method, [{ auth_method: 'scram-sha-256' }]);
  });
});

describe('PgCluster options', () => {
  test('a given dir (kept, then reused), settings, md5 auth, one replica and a log callback', async () => {
    const parent = mkdtempSync(path.join(os.tmpdir(), 'rwsplit-cluster-test-'));
    chmodSync(parent, 0o755); // the postgres user must traverse it when we are root
    const dir = path.join(parent, 'cluster');
    const lines: string[] = [];
    try {
      const cluster = await PgCluster.start({
        dir,
        replicas: 1,
        settings: { max_connections: '50' },
        password: 'pw',
        authMethod: 'md5',
        log: (nodeId, line) => lines.push(`${nodeId}: ${line}`),
      });
      try {
        assert.equal(cluster.dir, dir);
        assert.equal(cluster.replicas.length, 1);
        for (const node of cluster.nodes) {
          assert.equal(await scalar<string>(node, `SELECT current_setting('max_connections') AS v`), '50');
        }
        const rules = await query<{ auth_method: string }>(
          cluster.primary,
          `SELECT DISTINCT auth_method FROM pg_hba_file_rules WHERE type = 'host'`,
        );
        assert.deepEqual(rules, [{ auth_method: 'md5' }]);
        const stored = await scalar<string>(
          cluster.primary,
          `SELECT rolpassword AS v FROM pg_authid WHERE rolname = 'postgres'`,
        );
        assert.match(stored, /^md5[0-9a-f]{32}$/);
        assert.ok(
          lines.some((l) => l.startsWith('pg-primary: ') && l.includes('ready to accept connections')),
        );
        assert.ok(lines.some((l) => l.startsWith('pg-replica1: ')));
        await query(cluster.primary, 'CREATE TABLE from_first_run (id int)');
      } finally {
        await cluster.stop();
      }
      assert.ok(existsSync(path.join(dir, 'pg-primary', 'PG_VERSION')), 'a caller-given dir is kept');

      // Starting again in the same dir (the demo's --dir) replaces the previous run's nodes.
      const again = await PgCluster.start({ dir, replicas: 1 });
      try {
        const [row] = await query<{ t: string | null }>(
          again.primary,
          `SELECT to_regclass('from_first_run') AS t`,
        );
        assert.equal(row?.t, null);
        assert.equal(
          await scalar<boolean>(again.replicas[0] ?? again.primary, 'SELECT pg_is_in_recovery() AS v'),
          true,
        );
      } finally {
        await again.stop();
      }
    } finally {
      rmSync(parent, { recursive: true, force: true });
    }
  });

  test('rejects impossible options before starting anything', async () => {
    await assert.rejects(
      PgCluster.start({ replicas: 0, replication: 'sync' }),
      isClusterError('BAD_OPTIONS'),
    );
    await assert.rejects(PgCluster.start({ replicas: 2, ports: [1, 2] }), isClusterError('BAD_OPTIONS'));
    await assert.rejects(PgCluster.start({ authMethod: 'md5' }), isClusterError('BAD_OPTIONS'));
  });
});
