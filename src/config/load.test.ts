import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConfigError, validateConfig } from './load.js';

const node = { id: 'a', host: '127.0.0.1' };

describe('validateConfig', () => {
  test('fills defaults', () => {
    const c = validateConfig({ postgres: { nodes: [node] } });
    assert.equal(c.listen.postgres.port, 6432);
    assert.equal(c.postgres!.nodes[0]!.port, 5432);
    assert.equal(c.postgres!.routing.balance, 'round-robin');
    assert.equal(c.postgres!.staleness.whenAllLagging, 'fallback');
  });

  test('names an unknown key and where it is', () => {
    assert.throws(
      () => validateConfig({ postgres: { nodes: [node], routing: { balanse: 'weighted' } } }, 'f.yaml'),
      (e: Error) =>
        e instanceof ConfigError && /f\.yaml: unknown key balanse in postgres\.routing/.test(e.message),
    );
  });

  test('names the key of a wrong value', () => {
    assert.throws(
      () => validateConfig({ postgres: { nodes: [{ ...node, port: 70000 }] } }),
      (e: Error) => /postgres\.nodes\.0\.port/.test(e.message),
    );
  });

  test('refuses duplicate node ids and SCRAM without users', () => {
    assert.throws(() => validateConfig({ postgres: { nodes: [node, node] } }), /duplicate node id "a"/);
    assert.throws(
      () => validateConfig({ postgres: { nodes: [node], auth: { method: 'scram-sha-256' } } }),
      /needs at least one user/,
    );
  });

  test('requires at least one node', () => {
    assert.throws(() => validateConfig({ postgres: { nodes: [] } }), /postgres\.nodes/);
    assert.throws(() => validateConfig({}), /postgres/);
  });
});
