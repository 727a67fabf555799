/**
 * TLS toward the servers: a PostgreSQL cluster started with `ssl = on` and a certificate made
 * here (a CA, and a server certificate for 127.0.0.1 and localhost, with the openssl CLI).
 * rwsplit's data connections and its monitor show as encrypted in `pg_stat_ssl`; verify-full
 * refuses a certificate for another name with an error that says so.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { pino } from 'pino';
import { Rwsplit } from '../src/app.js';
import { PgCluster } from '../src/cluster/pg-cluster.js';
import { chownToRunAs, resolvePgRunAs } from '../src/cluster/run-as.js';
import { validateConfig } from '../src/config/load.js';
import { BackendConnection } from '../src/pg/backend/backend-connection.js';
import { backendTlsByNode } from '../src/pg/backend/backend-tls.js';
import { waitFor } from './support/stack.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'rwsplit-tls-'));
const file = (name: string): string => path.join(dir, name);

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { stdio: 'pipe' });
}

/** A server key and certificate signed by the test CA, for the names in `san`. */
function serverCert(name: string, cn: string, san: string): void {
  openssl(
    'req',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    file(`${name}.key`),
    '-out',
    file(`${name}.csr`),
    '-subj',
    `/CN=${cn}`,
  );
  writeFileSync(file(`${name}.ext`), `subjectAltName=${san}\n`);
  openssl(
    'x509',
    '-req',
    '-in',
    file(`${name}.csr`),
    '-CA',
    file('ca.crt'),
    '-CAkey',
    file('ca.key'),
    '-CAcreateserial',
    '-days',
    '2',
    '-out',
    file(`${name}.crt`),
    '-extfile',
    file(`${name}.ext`),
  );
}

/** Puts `name`'s certificate where the servers read theirs (owned by the server's user, key 0600). */
function install(name: string): void {
  const runAs = resolvePgRunAs();
  for (const [from, to] of [
    [`${name}.crt`, 'server.crt'],
    [`${name}.key`, 'server.key'],
  ] as const) {
    copyFileSync(file(from), file(to));
    chownToRunAs(file(to), runAs);
    chmodSync(file(to), 0o600);
  }
}

describe('TLS toward PostgreSQL servers', () => {
  let cluster: PgCluster;
  let app: Rwsplit;

  before(async () => {
    chmodSync(dir, 0o755); // the server's user reads its certificate from here
    openssl(
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      file('ca.key'),
      '-out',
      file('ca.crt'),
      '-days',
      '2',
      '-subj',
      '/CN=rwsplit test CA',
    );
    serverCert('right', '127.0.0.1', 'IP:127.0.0.1,DNS:localhost');
    serverCert('wrong', 'elsewhere.invalid', 'DNS:elsewhere.invalid');
    install('right');
    cluster = await PgCluster.start({
      replicas: 1,
      settings: { ssl: 'on', ssl_cert_file: file('server.crt'), ssl_key_file: file('server.key') },
    });
    app = await Rwsplit.start(
      validateConfig({
        workers: 1,
        listen: { postgres: { host: '127.0.0.1', port: 0 }, http: { host: '127.0.0.1', port: 0 } },
        postgres: {
          nodes: cluster.nodes.map((n) => ({ id: n.id, host: n.host, port: n.port })),
          backend: { sslmode: 'verify-full', sslrootcert: file('ca.crt') },
          monitor: { intervalMs: 200, timeoutMs: 1000 },
        },
      }),
      { log: pino({ level: process.env.RWSPLIT_TEST_LOG ?? 'silent' }) },
    );
  });

  after(async () => {
    await app?.stop();
    await cluster?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('verify-full: reads and writes through rwsplit run on encrypted connections, the monitor too', async () => {
    const c = new pg.Client({
      host: '127.0.0.1',
      port: app.pgAddress!.port,
      user: 'postgres',
      database: 'postgres',
    });
    await c.connect();
    try {
      await c.query('CREATE TABLE tls_t (id int)');
      const w = await c.query<{ ssl: boolean }>(
        'INSERT INTO tls_t SELECT 1 WHERE (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()) RETURNING true AS ssl',
      );
      assert.deepEqual(w.rows, [{ ssl: true }], 'the write ran over TLS');
      for (let i = 0; i < 4; i++) {
        const r = await c.query<{ ssl: boolean; version: string }>(
          'SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()',
        );
        assert.equal(r.rows[0]!.ssl, true);
        assert.match(r.rows[0]!.version, /^TLSv1\.[23]$/);
      }
    } finally {
      await c.end();
    }
    // Every client connection rwsplit holds on each node is encrypted (the checker's own is not).
    for (const n of cluster.nodes) {
      const direct = new pg.Client({ host: n.host, port: n.port, user: 'postgres', database: 'postgres' });
      await direct.connect();
      try {
        const r = await direct.query<{ application_name: string; ssl: boolean }>(
          `SELECT a.application_name, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
            WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()`,
        );
        assert.ok(
          r.rows.some((row) => row.application_name === 'rwsplit-monitor'),
          `the monitor is connected to ${n.id}`,
        );
        assert.deepEqual(
          r.rows.filter((row) => !row.ssl),
          [],
          `every rwsplit connection to ${n.id} is encrypted`,
        );
      } finally {
        await direct.end();
      }
    }
  });

  test('verify-full refuses a certificate for another name, verify-ca and require accept it', async () => {
    install('wrong');
    const primary = cluster.nodes[0]!;
    const admin = new pg.Client({
      host: primary.host,
      port: primary.port,
      user: 'postgres',
      database: 'postgres',
    });
    await admin.connect();
    try {
      for (const n of cluster.nodes) {
        const c = new pg.Client({ host: n.host, port: n.port, user: 'postgres', database: 'postgres' });
        await c.connect();
        await c.query('SELECT pg_reload_conf()');
        await c.end();
      }
      const connect = (sslmode: string): Promise<BackendConnection> => {
        const tls = backendTlsByNode(
          validateConfig({
            workers: 1,
            postgres: {
              nodes: [{ id: primary.id, host: primary.host, port: primary.port }],
              backend: { sslmode, sslrootcert: file('ca.crt') },
            },
          }).postgres!,
        ).get(primary.id)!;
        return BackendConnection.connect(
          { nodeId: primary.id, host: primary.host, port: primary.port, tls },
          { user: 'postgres', database: 'postgres', params: {} },
          { connectTimeoutMs: 5000, maxFrameBytes: 1 << 20 },
        );
      };
      // The reload is asynchronous: wait until a new connection presents the new certificate.
      await waitFor('the servers to present the new certificate', async () =>
        connect('verify-full').then(
          (c) => {
            c.destroy();
            return false;
          },
          () => true,
        ),
      );
      await assert.rejects(connect('verify-full'), (err: Error) => {
        assert.match(
          err.message,
          /^TLS with pg-primary \(127\.0\.0\.1:\d+\) failed \(sslmode verify-full, sslrootcert /,
        );
        assert.match(err.message, /does not match certificate's altnames/);
        return true;
      });
      for (const mode of ['verify-ca', 'require', 'prefer']) {
        const c = await connect(mode);
        assert.ok(c.processId > 0, `${mode} logs in`);
        c.destroy();
      }
      // A server without TLS: prefer carries on in plain, require refuses and says why.
      await admin.query('ALTER SYSTEM SET ssl = off');
      await admin.query('SELECT pg_reload_conf()');
      await waitFor('the primary to stop offering TLS', async () =>
        connect('require').then(
          (c) => {
            c.destroy();
            return false;
          },
          () => true,
        ),
      );
      const plain = await connect('prefer');
      assert.ok(plain.processId > 0, 'prefer logs in without TLS');
      plain.destroy();
      await assert.rejects(
        connect('require'),
        /does not accept TLS connections \(ssl = off\) and postgres sslmode is require/,
      );
      await admin.query('ALTER SYSTEM RESET ssl');
      await admin.query('SELECT pg_reload_conf()');
      // The running instance's monitor opens new connections only when one breaks: break them,
      // and it reports the refused certificate as the node's error.
      await admin.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'rwsplit-monitor'",
      );
      await waitFor('the monitor to report the refused certificate', async () => {
        const nodes = (await (await fetch(`http://127.0.0.1:${app.httpAddress!.port}/api/nodes`)).json()) as {
          id: string;
          lastError: string | null;
        }[];
        return nodes.some(
          (n) => n.id === primary.id && /does not match certificate's altnames/.test(n.lastError ?? ''),
        );
      });
    } finally {
      await admin.end();
    }
  });
});
