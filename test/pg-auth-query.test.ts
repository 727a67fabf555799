/**
 * postgres.auth.authQuery (PgBouncer's auth_query) and SCRAM pass-through: roles created in the
 * database, never listed in rwsplit's config, log in through rwsplit with their own passwords,
 * and their reads run on the replica and their writes on the primary as themselves, although
 * rwsplit never learns the password. Differential: the same logins with node-postgres,
 * postgres.js and psql directly against the primary and through rwsplit; a wrong password and
 * an unknown user get the server's own error; a password changed with ALTER ROLE counts from
 * the next login.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import postgres from 'postgres';
import { formatScramVerifier, makeScramVerifier } from '../src/pg/auth/index.js';
import { pgBinary } from '../src/cluster/pg-binaries.js';
import { startStack, type Stack } from './support/stack.js';

const ADMIN_PASSWORD = 'backend-secret';
/** carol is listed in the config by her verifier only (what pg_authid holds), not her password */
const CAROL_VERIFIER = formatScramVerifier(makeScramVerifier('carol-pw'));

interface LoginError {
  code: string | undefined;
  severity: string | undefined;
  message: string;
}

/** node-postgres login; the server's error fields when it is refused. */
async function pgLogin(
  port: number,
  user: string,
  password: string,
  extra: Partial<pg.ClientConfig> = {},
): Promise<pg.Client | LoginError> {
  const c = new pg.Client({ host: '127.0.0.1', port, user, password, database: 'postgres', ...extra });
  c.on('error', () => undefined);
  try {
    await c.connect();
    return c;
  } catch (err) {
    const e = err as pg.DatabaseError;
    return { code: e.code, severity: e.severity, message: e.message };
  }
}

function isError(x: pg.Client | LoginError): x is LoginError {
  return !(x instanceof pg.Client);
}

/** postgres.js: the error of the first query when the login is refused. */
async function postgresJsLoginError(port: number, user: string, password: string): Promise<LoginError> {
  const sql = postgres({ host: '127.0.0.1', port, user, password, database: 'postgres', max: 1 });
  try {
    await sql`SELECT 1`;
    throw new Error(`postgres.js logged in as ${user} with a wrong password`);
  } catch (err) {
    const e = err as { code?: string; severity?: string; message: string };
    return { code: e.code, severity: e.severity, message: e.message };
  } finally {
    await sql.end({ timeout: 1 });
  }
}

/** psql -c with PGPASSWORD; output with the address of the server blanked (it differs by design). */
function psql(
  port: number,
  user: string,
  password: string,
  sql: string,
): Promise<{ status: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      pgBinary('psql'),
      ['-X', '-Atq', '-h', '127.0.0.1', '-p', String(port), '-U', user, '-d', 'postgres', '-c', sql],
      { env: { ...process.env, PGPASSWORD: password, PGCONNECT_TIMEOUT: '10' } },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('close', (status) =>
      resolve({ status, out: out.trim().replaceAll(`port ${port}`, 'port <port>') }),
    );
  });
}

describe('passthrough logins: postgres.auth.authQuery and SCRAM pass-through', () => {
  let stack: Stack;
  let primaryPort: number;
  let admin: pg.Client;

  before(async () => {
    stack = await startStack({
      cluster: { replicas: 1, password: ADMIN_PASSWORD },
      postgres: {
        auth: {
          method: 'scram-sha-256',
          // The administrator (also the monitor) and carol are listed; alice and bob are not.
          users: [
            { name: 'postgres', password: ADMIN_PASSWORD },
            { name: 'carol', password: CAROL_VERIFIER },
          ],
          authQuery: { user: 'postgres', password: ADMIN_PASSWORD },
        },
        // Neither fallback nor retries: a read that ran on the primary would show it.
        routing: { primaryReads: 'never', retryReads: false },
      },
    });
    primaryPort = stack.cluster.primary.port;
    const a = await pgLogin(primaryPort, 'postgres', ADMIN_PASSWORD);
    assert.ok(!isError(a), 'the administrator logs in directly');
    admin = a;
    const scram = await admin.query<{ p: string }>("SELECT current_setting('password_encryption') AS p");
    assert.equal(scram.rows[0]!.p, 'scram-sha-256');
    await admin.query(`CREATE ROLE alice LOGIN PASSWORD 'alice-pw-1'`);
    await admin.query(`CREATE ROLE bob LOGIN PASSWORD 'bob-pw-1'`);
    // PostgreSQL stores a password given as a SCRAM verifier as it is.
    await admin.query(`CREATE ROLE carol LOGIN PASSWORD '${CAROL_VERIFIER}'`);
    await admin.query('CREATE TABLE pass_items (id serial PRIMARY KEY, who text DEFAULT current_user)');
    await admin.query('GRANT ALL ON pass_items, pass_items_id_seq TO alice, bob, carol');
    await stack.cluster.waitForReplication();
  });
  after(async () => {
    await admin?.end();
    await stack?.stop();
  });

  test('node-postgres: reads on the replica and writes on the primary as that role (simple and extended protocol)', async () => {
    const c = await pgLogin(stack.pgPort, 'alice', 'alice-pw-1');
    assert.ok(!isError(c), `alice logs in through rwsplit: ${JSON.stringify(c)}`);
    try {
      const simple = await c.query('SELECT current_user AS u, pg_is_in_recovery() AS r');
      assert.deepEqual(simple.rows[0], { u: 'alice', r: true });
      const extended = await c.query('SELECT current_user AS u, pg_is_in_recovery() AS r, $1::int AS x', [7]);
      assert.deepEqual(extended.rows[0], { u: 'alice', r: true, x: 7 });
      const w1 = await c.query(
        'INSERT INTO pass_items DEFAULT VALUES RETURNING who, pg_is_in_recovery() AS r',
      );
      assert.deepEqual(w1.rows[0], { who: 'alice', r: false });
      const w2 = await c.query(
        'INSERT INTO pass_items (who) VALUES ($1) RETURNING current_user AS u, pg_is_in_recovery() AS r',
        ['x'],
      );
      assert.deepEqual(w2.rows[0], { u: 'alice', r: false });
    } finally {
      await c.end();
    }
  });

  test('postgres.js: the same, two roles at once, each on its own pool', async () => {
    const open = (user: string, password: string): postgres.Sql =>
      postgres({ host: '127.0.0.1', port: stack.pgPort, user, password, database: 'postgres', max: 2 });
    const alice = open('alice', 'alice-pw-1');
    const bob = open('bob', 'bob-pw-1');
    try {
      const reads = await Promise.all(
        [alice, bob, alice, bob].map((sql) => sql`SELECT current_user AS u, pg_is_in_recovery() AS r`),
      );
      assert.deepEqual(
        reads.map((r) => [r[0]!['u'], r[0]!['r']]),
        [
          ['alice', true],
          ['bob', true],
          ['alice', true],
          ['bob', true],
        ],
      );
      const [wa] = await alice`INSERT INTO pass_items DEFAULT VALUES RETURNING who, pg_is_in_recovery() AS r`;
      const [wb] = await bob`INSERT INTO pass_items DEFAULT VALUES RETURNING who, pg_is_in_recovery() AS r`;
      assert.deepEqual(
        [wa, wb],
        [
          { who: 'alice', r: false },
          { who: 'bob', r: false },
        ],
      );
    } finally {
      await Promise.all([alice.end({ timeout: 1 }), bob.end({ timeout: 1 })]);
    }
  });

  test('psql: the same answers as a direct login, reads on the replica, writes on the primary', async () => {
    const read = await psql(stack.pgPort, 'bob', 'bob-pw-1', 'SELECT current_user, pg_is_in_recovery()');
    assert.deepEqual(read, { status: 0, out: 'bob|t' });
    const write = await psql(
      stack.pgPort,
      'bob',
      'bob-pw-1',
      'INSERT INTO pass_items DEFAULT VALUES RETURNING who, pg_is_in_recovery()',
    );
    assert.deepEqual(write, { status: 0, out: 'bob|f' });
    const direct = await psql(primaryPort, 'bob', 'bob-pw-1', 'SELECT current_user');
    assert.deepEqual(direct, { status: 0, out: 'bob' });
  });

  test('a wrong password and an unknown user: the server error, word for word, with every client', async () => {
    for (const [user, password] of [
      ['alice', 'wrong'],
      ['mallory', 'alice-pw-1'],
    ] as const) {
      const direct = await pgLogin(primaryPort, user, password);
      const proxied = await pgLogin(stack.pgPort, user, password);
      assert.ok(isError(direct) && isError(proxied));
      assert.deepEqual(proxied, direct);
      assert.deepEqual(direct, {
        code: '28P01',
        severity: 'FATAL',
        message: `password authentication failed for user "${user}"`,
      });
      assert.deepEqual(
        await postgresJsLoginError(stack.pgPort, user, password),
        await postgresJsLoginError(primaryPort, user, password),
      );
      const psqlDirect = await psql(primaryPort, user, password, 'SELECT 1');
      const psqlProxied = await psql(stack.pgPort, user, password, 'SELECT 1');
      assert.equal(psqlDirect.status, 2);
      assert.match(psqlDirect.out, new RegExp(`FATAL: +password authentication failed for user "${user}"`));
      assert.deepEqual(psqlProxied, psqlDirect);
    }
  });

  test('ALTER ROLE … PASSWORD counts from the next login, on the primary and on the replica', async () => {
    await admin.query(`ALTER ROLE alice PASSWORD 'alice-pw-2'`);
    await stack.cluster.waitForReplication();
    for (const port of [primaryPort, stack.pgPort]) {
      const old = await pgLogin(port, 'alice', 'alice-pw-1');
      assert.ok(isError(old));
      assert.equal(old.code, '28P01');
    }
    // A new application_name is a new pool: its server connections are opened with the new keys.
    const c = await pgLogin(stack.pgPort, 'alice', 'alice-pw-2', { application_name: 'after-change' });
    assert.ok(!isError(c), `alice logs in with the new password: ${JSON.stringify(c)}`);
    try {
      const read = await c.query(
        'SELECT current_user AS u, pg_is_in_recovery() AS r, current_setting($1) AS app',
        ['application_name'],
      );
      assert.deepEqual(read.rows[0], { u: 'alice', r: true, app: 'after-change' });
      const write = await c.query(
        'INSERT INTO pass_items DEFAULT VALUES RETURNING who, pg_is_in_recovery() AS r',
      );
      assert.deepEqual(write.rows[0], { who: 'alice', r: false });
    } finally {
      await c.end();
    }
  });

  test('a user listed with only its verifier logs into the servers with its SCRAM keys too', async () => {
    const c = await pgLogin(stack.pgPort, 'carol', 'carol-pw');
    assert.ok(!isError(c), `carol logs in through rwsplit: ${JSON.stringify(c)}`);
    try {
      const read = await c.query('SELECT current_user AS u, pg_is_in_recovery() AS r');
      assert.deepEqual(read.rows[0], { u: 'carol', r: true });
      const write = await c.query(
        'INSERT INTO pass_items DEFAULT VALUES RETURNING who, pg_is_in_recovery() AS r',
      );
      assert.deepEqual(write.rows[0], { who: 'carol', r: false });
    } finally {
      await c.end();
    }
    const wrong = await pgLogin(stack.pgPort, 'carol', 'nope');
    assert.ok(isError(wrong));
    assert.equal(wrong.code, '28P01');
  });

  test('a database that does not exist: the password is checked first, then the server says so', async () => {
    for (const password of ['bob-pw-1', 'wrong']) {
      const direct = await pgLogin(primaryPort, 'bob', password, { database: 'no_such_db' });
      const proxied = await pgLogin(stack.pgPort, 'bob', password, { database: 'no_such_db' });
      assert.ok(isError(direct) && isError(proxied));
      assert.equal(direct.code, password === 'wrong' ? '28P01' : '3D000');
      assert.deepEqual(proxied, direct);
    }
  });
});

describe('passthrough logins when the auth query cannot run', () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack({
      cluster: { replicas: 0, password: ADMIN_PASSWORD },
      postgres: {
        auth: {
          method: 'scram-sha-256',
          users: [{ name: 'postgres', password: ADMIN_PASSWORD }],
          authQuery: { user: 'postgres', password: 'not-the-password' },
        },
      },
    });
  });
  after(async () => stack?.stop());

  test('an unlisted user gets 57P03 naming postgres.auth.authQuery; listed users are not affected', async () => {
    const refused = await pgLogin(stack.pgPort, 'someone', 'whatever');
    assert.ok(isError(refused));
    assert.equal(refused.code, '57P03');
    assert.equal(refused.severity, 'FATAL');
    assert.match(
      refused.message,
      /^rwsplit cannot look up the password of user "someone" \(postgres\.auth\.authQuery\): .*password authentication failed for user "postgres"/,
    );
    const listed = await pgLogin(stack.pgPort, 'postgres', ADMIN_PASSWORD);
    assert.ok(!isError(listed), `a listed user logs in: ${JSON.stringify(listed)}`);
    assert.equal((await listed.query('SELECT current_user AS u')).rows[0].u, 'postgres');
    await listed.end();
  });
});
