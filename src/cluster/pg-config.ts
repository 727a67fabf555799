/**
 * The configuration files the launcher writes: settings appended to postgresql.conf and the
 * whole pg_hba.conf. Pure functions, so the generated text is unit-tested without a server.
 */

/** Client authentication method for TCP connections. */
export type AuthMethod = 'trust' | 'md5' | 'scram-sha-256';

/**
 * Settings every node gets. Durability is traded for speed (fsync=off, full_page_writes=off):
 * these clusters are throwaway test and demo fixtures, and replication behaves the same.
 */
const BASE_SETTINGS: Record<string, string> = {
  wal_level: 'replica',
  max_wal_senders: '10',
  max_replication_slots: '10',
  hot_standby: 'on',
  hot_standby_feedback: 'on',
  fsync: 'off',
  full_page_writes: 'off',
  synchronous_commit: 'on',
  shared_buffers: '64MB',
  max_connections: '200',
  wal_keep_size: '256MB',
  // A replica whose primary restarted reconnects after this delay (default 5 s); tests that
  // crash and restart a primary should not wait that long.
  wal_retrieve_retry_interval: '200ms',
  listen_addresses: '127.0.0.1',
  logging_collector: 'off',
  log_checkpoints: 'off',
  log_line_prefix: '%m [%p] ',
  log_min_messages: 'warning',
  lc_messages: 'C',
  // One time zone for every node's log, so timestamps compare across nodes.
  log_timezone: 'UTC',
};

/** Quotes a value for postgresql.conf: a single-quoted string with `'` doubled. */
export function quoteConfValue(value: string): string {
  return `'${value.replaceAll('\\', '\\\\').replaceAll("'", "''")}'`;
}

/** Inputs of {@link postgresqlConfSettings}. */
export interface ConfInput {
  socketDir: string;
  authMethod: AuthMethod;
  userSettings: Record<string, string>;
}

/** The settings appended to every node's postgresql.conf, base settings first, user settings last (they win). */
export function postgresqlConfSettings(input: ConfInput): Record<string, string> {
  const settings: Record<string, string> = { ...BASE_SETTINGS, unix_socket_directories: input.socketDir };
  // md5 auth needs md5-hashed passwords: a SCRAM verifier cannot answer an md5 challenge.
  settings['password_encryption'] = input.authMethod === 'md5' ? 'md5' : 'scram-sha-256';
  const merged = { ...settings, ...input.userSettings };
  // rwsplit's two-phase commit leaves one prepared transaction per participant session until
  // COMMIT PREPARED, so every connection may hold one: as many slots as connections unless the
  // caller sets its own. (A standby needs at least the primary's value; base backups copy it.)
  if (input.userSettings['max_prepared_transactions'] === undefined) {
    merged['max_prepared_transactions'] = merged['max_connections'] ?? '100';
  }
  return merged;
}

/** Renders settings as postgresql.conf lines; names are checked, every value is quoted. */
export function renderConf(settings: Record<string, string>): string {
  const lines = ['', '# --- added by rwsplit cluster launcher ---'];
  for (const [name, value] of Object.entries(settings)) {
    if (!/^[A-Za-z_][A-Za-z0-9_.]*$/.test(name)) throw new Error(`invalid setting name: ${name}`);
    lines.push(`${name} = ${quoteConfValue(value)}`);
  }
  return lines.join('\n') + '\n';
}

/**
 * pg_hba.conf: Unix-socket connections trusted (only local users reach the socket directory),
 * TCP connections from 127.0.0.1 — ordinary and replication — with `authMethod`.
 */
export function renderPgHba(authMethod: AuthMethod): string {
  return [
    '# TYPE  DATABASE     USER  ADDRESS       METHOD (written by rwsplit cluster launcher)',
    'local   all          all                 trust',
    'local   replication  all                 trust',
    `host    all          all   127.0.0.1/32  ${authMethod}`,
    `host    replication  all   127.0.0.1/32  ${authMethod}`,
    '',
  ].join('\n');
}

/** Quotes a standby name for synchronous_standby_names unless it is a plain lower-case identifier. */
function quoteStandbyName(name: string): string {
  return /^[a-z_][a-z0-9_]*$/.test(name) ? name : `"${name.replaceAll('"', '""')}"`;
}

/** `synchronous_standby_names` for quorum commit: a commit waits for any one of the named standbys. */
export function quorumStandbyNames(applicationNames: string[]): string {
  return `ANY 1 (${applicationNames.map(quoteStandbyName).join(', ')})`;
}
