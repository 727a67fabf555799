/**
 * Locates the PostgreSQL server and client binaries. On Debian they live in
 * `/usr/lib/postgresql/<major>/bin`, which is not on PATH (only wrappers for the client tools
 * are), so PATH lookup is not enough.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';

import { ClusterError } from './errors.js';

/** Environment variable that overrides where the PostgreSQL binaries are looked up. */
export const PG_BINDIR_ENV = 'RWSPLIT_PG_BINDIR';

const DEBIAN_PG_ROOT = '/usr/lib/postgresql';

/** The Debian package that ships each binary we use, for the "install this" message. */
const PACKAGE_OF: Record<string, string> = {
  initdb: 'postgresql',
  postgres: 'postgresql',
  pg_basebackup: 'postgresql',
  pg_ctl: 'postgresql',
  pgbench: 'postgresql-contrib',
  psql: 'postgresql-client',
};

const INSTALL_HINT =
  'install the PostgreSQL server (Debian/Ubuntu: `apt-get install postgresql`), ' +
  `or set ${PG_BINDIR_ENV} to the directory holding initdb and postgres`;

function hasServer(dir: string): boolean {
  return existsSync(path.join(dir, 'initdb')) && existsSync(path.join(dir, 'postgres'));
}

function bindirFromPgConfig(): string | undefined {
  try {
    const out = execFileSync('pg_config', ['--bindir'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    const dir = out.trim();
    return dir !== '' && hasServer(dir) ? dir : undefined;
  } catch {
    return undefined; // pg_config not installed (it ships with libpq-dev / postgresql-common)
  }
}

function bindirFromDebianLayout(): string | undefined {
  let majors: number[];
  try {
    majors = readdirSync(DEBIAN_PG_ROOT)
      .map((name) => Number(name))
      .filter((n) => Number.isInteger(n) && n > 0);
  } catch {
    return undefined;
  }
  majors.sort((a, b) => b - a);
  for (const major of majors) {
    const dir = path.join(DEBIAN_PG_ROOT, String(major), 'bin');
    if (hasServer(dir)) return dir;
  }
  return undefined;
}

/**
 * Returns the directory holding initdb, postgres, pg_basebackup, pg_ctl, psql and pgbench:
 * `$RWSPLIT_PG_BINDIR` when set, else `pg_config --bindir`, else the highest
 * `/usr/lib/postgresql/<major>/bin`.
 *
 * @throws ClusterError `PG_BINARIES_MISSING` naming the Debian package to install.
 */
export function findPgBinDir(): string {
  const fromEnv = process.env[PG_BINDIR_ENV];
  if (fromEnv !== undefined && fromEnv !== '') {
    if (hasServer(fromEnv)) return fromEnv;
    // An explicit setting that is wrong must not silently fall back to another install.
    throw new ClusterError(
      'PG_BINARIES_MISSING',
      `${PG_BINDIR_ENV}=${fromEnv} does not contain initdb and postgres; fix or unset it`,
    );
  }
  const found = bindirFromPgConfig() ?? bindirFromDebianLayout();
  if (found !== undefined) return found;
  throw new ClusterError('PG_BINARIES_MISSING', `PostgreSQL server binaries not found: ${INSTALL_HINT}`);
}

/**
 * Absolute path of one PostgreSQL binary (e.g. `initdb`, `pgbench`) in {@link findPgBinDir}.
 *
 * @throws ClusterError `PG_BINARIES_MISSING` when that binary is absent, naming its package.
 */
export function pgBinary(name: string): string {
  const file = path.join(findPgBinDir(), name);
  if (existsSync(file)) return file;
  const pkg = PACKAGE_OF[name] ?? 'postgresql';
  throw new ClusterError(
    'PG_BINARIES_MISSING',
    `${file} not found: install it (Debian/Ubuntu: \`apt-get install ${pkg}\`)`,
  );
}
