import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startStack, type Stack } from './support/stack.js';

const isAuthFailure = (e: { code?: string }): boolean => e.code === '28P01';

for (const method of ['scram-sha-256', 'md5'] as const) {
  describe(`authentication: clients by SCRAM at the proxy, backends by ${method}`, () => {
    let stack: Stack;
    before(async () => {
      stack = await startStack({
        cluster: { replicas: 1, password: 'backend-secret', authMethod: method },
        postgres: {
          auth: {
            method: 'scram-sha-256',
            users: [
              { name: 'postgres', password: 'backend-secret' },
              { name: 'app', password: 'app-secret' },
            ],
          },
          backend: { user: 'postgres', password: 'backend-secret' },
        },
      });
    });
    after(async () => stack?.stop());

    test('the right password logs in and queries reach both node kinds', async () => {
      const c = await stack.client({ user: 'app', password: 'app-secret' });
      assert.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1);
      assert.equal(
        (await c.query('SELECT count(*)::int AS n FROM pg_class /* rwsplit:primary */')).rows.length,
        1,
      );
    });

    test('a wrong password gets SQLSTATE 28P01', async () => {
      await assert.rejects(stack.client({ user: 'app', password: 'nope' }), isAuthFailure);
    });

    test('an unknown user gets SQLSTATE 28P01 too (no user enumeration)', async () => {
      await assert.rejects(stack.client({ user: 'mallory', password: 'app-secret' }), isAuthFailure);
    });
  });
}
