import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConninfoError, formatConninfo, parseConninfo, repointConninfo } from './conninfo.js';

// What pg_basebackup -R wrote on PostgreSQL 15 (see the launcher's baseBackupReplica).
const BASEBACKUP =
  "user=postgres passfile='/var/lib/postgresql/.pgpass' channel_binding=prefer host=127.0.0.1 " +
  'port=46879 application_name=replica1 sslmode=prefer sslcompression=0 target_session_attrs=any';

describe('parseConninfo', () => {
  test('reads keyword=value pairs, quoted values, escapes and spaces around =', () => {
    const info = parseConninfo(`host = db1  port=5433 application_name='a b\\'c' x=\\\\y`);
    assert.equal(info.get('host'), 'db1');
    assert.equal(info.get('port'), '5433');
    assert.equal(info.get('application_name'), "a b'c");
    assert.equal(info.get('x'), '\\y');
  });

  test("reads pg_basebackup's output in order", () => {
    const info = parseConninfo(BASEBACKUP);
    assert.deepEqual([...info.keys()].slice(0, 5), ['user', 'passfile', 'channel_binding', 'host', 'port']);
    assert.equal(info.get('passfile'), '/var/lib/postgresql/.pgpass');
    assert.equal(info.get('application_name'), 'replica1');
  });

  test('reads the URI form', () => {
    const info = parseConninfo('postgresql://rep%40l:s3cr%2Ft@[::1]:5444/postgres?application_name=r2');
    assert.equal(info.get('user'), 'rep@l');
    assert.equal(info.get('password'), 's3cr/t');
    assert.equal(info.get('host'), '::1');
    assert.equal(info.get('port'), '5444');
    assert.equal(info.get('dbname'), 'postgres');
    assert.equal(info.get('application_name'), 'r2');
  });

  test('rejects what libpq rejects', () => {
    assert.throws(() => parseConninfo('host'), ConninfoError);
    assert.throws(() => parseConninfo("host='db1"), /unterminated/);
    assert.throws(() => parseConninfo('=x'), ConninfoError);
    // libpq has no '' escape (that is postgresql.conf's): "'s'" is then a keyword without "="
    assert.throws(() => parseConninfo("password='it''s'"), ConninfoError);
  });
});

describe('formatConninfo / repointConninfo', () => {
  test('round-trips values that need quoting', () => {
    const info = new Map([
      ['password', "a'b\\c d"],
      ['host', 'h'],
    ]);
    assert.deepEqual(parseConninfo(formatConninfo(info)), info);
  });

  test('replaces host and port, drops hostaddr, keeps application_name and the rest', () => {
    const out = parseConninfo(
      repointConninfo(`${BASEBACKUP} hostaddr=10.0.0.1`, { host: '127.0.0.1', port: 5999 }),
    );
    assert.equal(out.get('host'), '127.0.0.1');
    assert.equal(out.get('port'), '5999');
    assert.equal(out.has('hostaddr'), false);
    assert.equal(out.get('application_name'), 'replica1');
    assert.equal(out.get('user'), 'postgres', 'the login is kept when none is configured');
    assert.equal(out.get('passfile'), '/var/lib/postgresql/.pgpass');
  });

  test('sets the configured replication login', () => {
    const out = parseConninfo(
      repointConninfo('host=a port=1 user=old', { host: 'b', port: 2, user: 'repl', password: "p'w" }),
    );
    assert.deepEqual(Object.fromEntries(out), { host: 'b', port: '2', user: 'repl', password: "p'w" });
  });
});
