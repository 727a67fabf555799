import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConfigError, validateConfig } from './load.js';
import { DEFAULT_AUTH_QUERY } from './schema.js';

const node = { id: 'a', host: '127.0.0.1' };

describe('postgres.auth.authQuery', () => {
  test('is enough for scram-sha-256 without listed users, with PgBouncer defaults', () => {
    const c = validateConfig({
      postgres: { nodes: [node], auth: { method: 'scram-sha-256', authQuery: { user: 'pgbouncer' } } },
    });
    const q = c.postgres!.auth.authQuery!;
    assert.equal(q.user, 'pgbouncer');
    assert.equal(q.query, DEFAULT_AUTH_QUERY);
    assert.equal(q.database, undefined, 'the client database by default');
  });

  test('with trust is refused, naming the key and the method to set', () => {
    assert.throws(
      () =>
        validateConfig({ postgres: { nodes: [node], auth: { authQuery: { user: 'pgbouncer' } } } }, 'f.yaml'),
      (e: Error) =>
        e instanceof ConfigError &&
        /f\.yaml: postgres\.auth\.authQuery: needs postgres\.auth\.method scram-sha-256/.test(e.message),
    );
  });

  test('needs a user', () => {
    assert.throws(
      () =>
        validateConfig({
          postgres: { nodes: [node], auth: { method: 'scram-sha-256', authQuery: { query: 'SELECT 1' } } },
        }),
      /postgres\.auth\.authQuery\.user/,
    );
  });
});
