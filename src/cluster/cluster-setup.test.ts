import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';

import { prepareDirs, resolveOptions, untraversableAncestor } from './cluster-setup.js';
import { ClusterError } from './errors.js';
import { parseLsn } from './pg-cluster.js';

function badOptions(err: unknown): boolean {
  return err instanceof ClusterError && err.code === 'BAD_OPTIONS';
}

describe('resolveOptions', () => {
  test('defaults: two async replicas, trust, or scram when a password is given', () => {
    assert.deepEqual(resolveOptions({}), {
      replicas: 2,
      fixedPorts: undefined,
      settings: {},
      replication: 'async',
      password: undefined,
      authMethod: 'trust',
    });
    assert.equal(resolveOptions({ password: 'x' }).authMethod, 'scram-sha-256');
    assert.equal(resolveOptions({ password: 'x', authMethod: 'md5' }).authMethod, 'md5');
  });

  test('rejects what could only fail later', () => {
    assert.throws(() => resolveOptions({ replicas: -1 }), badOptions);
    assert.throws(() => resolveOptions({ replicas: 1.5 }), badOptions);
    assert.throws(() => resolveOptions({ replicas: 1, ports: [5000] }), badOptions);
    assert.throws(() => resolveOptions({ replicas: 1, ports: [5000, 5000] }), badOptions);
    assert.throws(() => resolveOptions({ replicas: 1, ports: [5000, 70000] }), badOptions);
    assert.throws(() => resolveOptions({ replicas: 0, replication: 'sync' }), badOptions);
    assert.throws(() => resolveOptions({ authMethod: 'scram-sha-256' }), badOptions);
    assert.deepEqual(resolveOptions({ replicas: 1, ports: [5000, 5001] }).fixedPorts, [5000, 5001]);
  });
});

describe('untraversableAncestor', () => {
  test('finds a parent another user cannot enter, and none once it is world-traversable', () => {
    const parent = mkdtempSync(path.join(os.tmpdir(), 'rwsplit-traverse-'));
    try {
      const dir = path.join(parent, 'inner', 'cluster');
      mkdirSync(dir, { recursive: true });
      const owner = statSync(parent);
      const other = { uid: owner.uid + 4242, gid: owner.gid + 4242, home: undefined };
      chmodSync(parent, 0o700);
      chmodSync(path.join(parent, 'inner'), 0o755);
      assert.equal(untraversableAncestor(dir, other), parent);
      chmodSync(parent, 0o711);
      assert.equal(untraversableAncestor(dir, other), undefined);
      chmodSync(path.join(parent, 'inner'), 0o750);
      assert.equal(untraversableAncestor(dir, other), path.join(parent, 'inner'));
      assert.equal(
        untraversableAncestor(dir, { uid: undefined, gid: undefined, home: undefined }),
        undefined,
      );
    } finally {
      rmSync(parent, { recursive: true, force: true });
    }
  });
});

describe('prepareDirs', () => {
  test("replaces a previous run's data directories of its own id prefix only", () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'rwsplit-prefix-'));
    try {
      const names = [
        'pg-s1-primary',
        'pg-s1-replica3',
        'pg-s1-replicax',
        'pg-primary',
        'pg-s2-primary',
        'notes',
      ];
      for (const name of names) {
        mkdirSync(path.join(dir, name));
        writeFileSync(path.join(dir, name, 'PG_VERSION'), '16\n');
      }
      const noSwitch = { uid: undefined, gid: undefined, home: undefined };
      const dirs = prepareDirs(dir, ['pg-s1-primary', 'pg-s1-replica1'], noSwitch, 'pg-s1');
      assert.equal(dirs.ownsDir, false);
      const left = names.filter((name) => existsSync(path.join(dir, name)));
      assert.deepEqual(left, ['pg-s1-replicax', 'pg-primary', 'pg-s2-primary', 'notes']);
      prepareDirs(dir, ['pg-primary'], noSwitch);
      assert.equal(existsSync(path.join(dir, 'pg-primary')), false, "default prefix 'pg'");
      assert.equal(existsSync(path.join(dir, 'pg-s2-primary')), true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('parseLsn', () => {
  test('orders LSNs by their 64-bit value, not as text', () => {
    assert.equal(parseLsn('0/0'), 0n);
    assert.equal(parseLsn('16/B374D848'), (0x16n << 32n) | 0xb374d848n);
    assert.ok(parseLsn('1/0') > parseLsn('0/FFFFFFFF'));
    assert.ok(parseLsn('0/A0') > parseLsn('0/9F'));
    assert.throws(() => parseLsn('nonsense'));
  });
});
