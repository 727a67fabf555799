import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  postgresqlConfSettings,
  quorumStandbyNames,
  quoteConfValue,
  renderConf,
  renderPgHba,
} from './pg-config.js';

describe('pg-config', () => {
  test('quoteConfValue doubles quotes and escapes backslashes', () => {
    assert.equal(quoteConfValue('64MB'), "'64MB'");
    assert.equal(quoteConfValue("it's"), "'it''s'");
    assert.equal(quoteConfValue('a\\b'), "'a\\\\b'");
  });

  test('user settings override the base settings; md5 auth stores md5 passwords', () => {
    const settings = postgresqlConfSettings({
      socketDir: '/tmp/x/run',
      authMethod: 'md5',
      userSettings: { max_connections: '50', work_mem: '8MB' },
    });
    assert.equal(settings['max_connections'], '50');
    assert.equal(settings['work_mem'], '8MB');
    assert.equal(settings['wal_level'], 'replica');
    assert.equal(settings['unix_socket_directories'], '/tmp/x/run');
    assert.equal(settings['password_encryption'], 'md5');
    const scram = postgresqlConfSettings({ socketDir: '/s', authMethod: 'trust', userSettings: {} });
    assert.equal(scram['password_encryption'], 'scram-sha-256');
  });

  test('max_prepared_transactions follows max_connections unless set', () => {
    const base = postgresqlConfSettings({ socketDir: '/s', authMethod: 'trust', userSettings: {} });
    assert.equal(base['max_prepared_transactions'], base['max_connections']);
    assert.ok(Number(base['max_prepared_transactions']) >= 100);
    const more = postgresqlConfSettings({
      socketDir: '/s',
      authMethod: 'trust',
      userSettings: { max_connections: '300' },
    });
    assert.equal(more['max_prepared_transactions'], '300');
    const own = postgresqlConfSettings({
      socketDir: '/s',
      authMethod: 'trust',
      userSettings: { max_connections: '300', max_prepared_transactions: '0' },
    });
    assert.equal(own['max_prepared_transactions'], '0');
  });

  test('renderConf writes one quoted line per setting and rejects odd names', () => {
    const text = renderConf({ fsync: 'off', 'auto_explain.log_min_duration': '0' });
    assert.match(text, /^fsync = 'off'$/m);
    assert.match(text, /^auto_explain\.log_min_duration = '0'$/m);
    assert.throws(() => renderConf({ 'bad name': 'x' }), /invalid setting name/);
    assert.throws(() => renderConf({ "x = 'y'\nfsync": 'on' }), /invalid setting name/);
  });

  test('renderPgHba trusts the socket and uses the method for TCP and replication', () => {
    const hba = renderPgHba('scram-sha-256');
    assert.match(hba, /^local\s+all\s+all\s+trust$/m);
    assert.match(hba, /^host\s+all\s+all\s+127\.0\.0\.1\/32\s+scram-sha-256$/m);
    assert.match(hba, /^host\s+replication\s+all\s+127\.0\.0\.1\/32\s+scram-sha-256$/m);
  });

  test('quorumStandbyNames lists plain names bare and quotes the rest', () => {
    assert.equal(quorumStandbyNames(['replica1', 'replica2']), 'ANY 1 (replica1, replica2)');
    assert.equal(quorumStandbyNames(['pg-replica1']), 'ANY 1 ("pg-replica1")');
  });
});
