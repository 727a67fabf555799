import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, test } from 'node:test';

import { ClusterError } from './errors.js';
import { findPgBinDir, PG_BINDIR_ENV, pgBinary } from './pg-binaries.js';

describe('findPgBinDir', () => {
  const saved = process.env[PG_BINDIR_ENV];
  afterEach(() => {
    if (saved === undefined) delete process.env[PG_BINDIR_ENV];
    else process.env[PG_BINDIR_ENV] = saved;
  });

  test('finds a directory with initdb and postgres on this machine', () => {
    delete process.env[PG_BINDIR_ENV];
    const dir = findPgBinDir();
    assert.ok(existsSync(path.join(dir, 'initdb')));
    assert.equal(pgBinary('pg_basebackup'), path.join(dir, 'pg_basebackup'));
  });

  test(`an explicit ${PG_BINDIR_ENV} without the server is an error, not a silent fallback`, () => {
    const empty = mkdtempSync(path.join(os.tmpdir(), 'rwsplit-nobin-'));
    try {
      process.env[PG_BINDIR_ENV] = empty;
      assert.throws(
        () => findPgBinDir(),
        (err: unknown) =>
          err instanceof ClusterError && err.code === 'PG_BINARIES_MISSING' && err.message.includes(empty),
      );
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });

  test('a missing binary names the package to install', () => {
    delete process.env[PG_BINDIR_ENV];
    assert.throws(
      () => pgBinary('no_such_pg_tool'),
      (err: unknown) => err instanceof ClusterError && /apt-get install postgresql/.test(err.message),
    );
  });
});
