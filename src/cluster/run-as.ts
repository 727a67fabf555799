/**
 * Which OS user runs the PostgreSQL binaries, and a helper to run one of them to completion.
 *
 * PostgreSQL refuses to run as root ("root" execution of the PostgreSQL server is not
 * permitted), and tests/CI run as root, so as root every binary runs as the `postgres` system
 * user the Debian package creates. As any other user, the binaries run as that user.
 */
import { execFileSync, spawn } from 'node:child_process';
import { chownSync, readFileSync } from 'node:fs';

import { ClusterError } from './errors.js';

/** The identity PostgreSQL processes run under; `undefined` ids mean "the current user". */
export interface RunAs {
  uid: number | undefined;
  gid: number | undefined;
  /** HOME for the child processes. */
  home: string | undefined;
}

const PG_SYSTEM_USER = 'postgres';

function lookupInPasswd(user: string): RunAs | undefined {
  let passwd: string;
  try {
    passwd = readFileSync('/etc/passwd', 'utf8');
  } catch {
    return undefined;
  }
  for (const line of passwd.split('\n')) {
    // name:password:uid:gid:gecos:home:shell
    const fields = line.split(':');
    if (fields[0] !== user || fields.length < 7) continue;
    return { uid: Number(fields[2]), gid: Number(fields[3]), home: fields[5] };
  }
  return undefined;
}

function lookupWithId(user: string): RunAs | undefined {
  // Covers users that come from NSS (LDAP, sssd) rather than /etc/passwd.
  try {
    const id = (flag: string): number =>
      Number(
        execFileSync('id', [flag, user], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim(),
      );
    const uid = id('-u');
    const gid = id('-g');
    return Number.isInteger(uid) && Number.isInteger(gid) ? { uid, gid, home: undefined } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The user PostgreSQL binaries must run as: the `postgres` system user when we are root,
 * else the current user.
 *
 * @throws ClusterError `PG_USER_MISSING` when root and no `postgres` user exists (none is created).
 */
export function resolvePgRunAs(): RunAs {
  if (process.getuid?.() !== 0) return { uid: undefined, gid: undefined, home: undefined };
  const found = lookupInPasswd(PG_SYSTEM_USER) ?? lookupWithId(PG_SYSTEM_USER);
  if (found !== undefined) return found;
  throw new ClusterError(
    'PG_USER_MISSING',
    'running as root, and PostgreSQL refuses to run as root, but there is no `postgres` user ' +
      'to run it as: create one (e.g. `adduser --system --group postgres`, which the Debian ' +
      '`postgresql` package does) or run as a non-root user',
  );
}

/** Gives `file` to the PostgreSQL user (a no-op when not root). */
export function chownToRunAs(file: string, runAs: RunAs): void {
  if (runAs.uid !== undefined && runAs.gid !== undefined) chownSync(file, runAs.uid, runAs.gid);
}

/**
 * Environment for PostgreSQL children: ours minus the libpq/server variables that would
 * silently redirect a tool (PGDATA, PGPORT, PGHOST…), with messages in untranslated English
 * so log tails in errors are readable.
 */
export function pgChildEnv(runAs: RunAs, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('PG')) env[key] = value;
  }
  env['LC_ALL'] = 'C';
  if (runAs.home !== undefined) env['HOME'] = runAs.home;
  return { ...env, ...extra };
}

/** Options of {@link runPgTool}. */
export interface RunToolOptions {
  runAs: RunAs;
  cwd: string;
  env?: Record<string, string>;
}

/**
 * Runs a PostgreSQL tool (initdb, pg_basebackup) as the PostgreSQL user and resolves with its
 * stdout.
 *
 * @throws ClusterError `COMMAND_FAILED` with the tool's stderr when it exits non-zero.
 */
export function runPgTool(file: string, args: string[], opts: RunToolOptions): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      cwd: opts.cwd,
      env: pgChildEnv(opts.runAs, opts.env),
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(opts.runAs.uid !== undefined ? { uid: opts.runAs.uid, gid: opts.runAs.gid } : {}),
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.once('error', (err) =>
      reject(new ClusterError('COMMAND_FAILED', `cannot run ${file}: ${err.message}`, { cause: err })),
    );
    child.once('close', (code, signal) => {
      if (code === 0) return resolve(stdout);
      const status = signal !== null ? `signal ${signal}` : `exit code ${code}`;
      const detail = stderr.trim() || stdout.trim();
      reject(new ClusterError('COMMAND_FAILED', `${file} ${args.join(' ')} failed (${status}): ${detail}`));
    });
  });
}
