/**
 * Functions whose call changes where a statement may run.
 *
 * A `SELECT` is normally safe on a hot standby, but some functions write (WAL, sequences, large objects),
 * act on the server (signals, configuration reload) or leave state behind in the backend that the next
 * statement of the same client expects to find. Those calls send the statement to the primary, and the
 * last group also pins the session there.
 *
 * Names are lower case and matched against the last part of the called name, so `pg_catalog.nextval(...)`
 * and `"nextval"(...)` match while `"NEXTVAL"(...)` (a different, case-sensitive name) does not.
 *
 * @module
 */

/**
 * Default list of functions that make a statement a write. Why each group is here:
 * - Sequences: `nextval`/`setval` write the sequence (a standby raises "cannot execute nextval() in a
 *   read-only transaction"). `currval`/`lastval` only read, but what they read is the value the *same
 *   backend* got from `nextval`, and `nextval` ran on the primary, so they must go there too. They do not
 *   pin: `nextval` is mostly called implicitly by column defaults, which no lexer can see, so pinning on
 *   the explicit calls would be both expensive and incomplete. Clients that need `currval` after an
 *   autocommit `INSERT` should use `INSERT ... RETURNING` or keep both in one transaction.
 * - Transaction ids: `txid_current`, `pg_current_xact_id` assign an xid, impossible during recovery.
 * - Advisory locks: all of them go to the primary so that every client contends on the same lock table;
 *   the session-level ones also pin (see {@link SESSION_PIN_FUNCTIONS}).
 * - `pg_notify`, `set_config` (a GUC change; pins unless `is_local` is the literal `true`).
 * - WAL, backup and replication control, server signals and configuration, statistics resets.
 * - Large objects: creating, importing, opening, writing or removing one writes `pg_largeobject`.
 * - dblink: `dblink_exec` runs arbitrary commands; `dblink_connect` opens a named connection kept by the
 *   backend for later calls (pin).
 */
export const DEFAULT_WRITE_FUNCTIONS: readonly string[] = Object.freeze([
  'nextval',
  'setval',
  'currval',
  'lastval',
  'txid_current',
  'pg_current_xact_id',
  'pg_advisory_lock',
  'pg_advisory_lock_shared',
  'pg_try_advisory_lock',
  'pg_try_advisory_lock_shared',
  'pg_advisory_unlock',
  'pg_advisory_unlock_shared',
  'pg_advisory_unlock_all',
  'pg_advisory_xact_lock',
  'pg_advisory_xact_lock_shared',
  'pg_try_advisory_xact_lock',
  'pg_try_advisory_xact_lock_shared',
  'pg_notify',
  'set_config',
  'pg_switch_wal',
  'pg_create_restore_point',
  'pg_backup_start',
  'pg_backup_stop',
  'pg_promote',
  'pg_create_physical_replication_slot',
  'pg_create_logical_replication_slot',
  'pg_drop_replication_slot',
  'pg_copy_physical_replication_slot',
  'pg_copy_logical_replication_slot',
  'pg_logical_slot_get_changes',
  'pg_logical_slot_get_binary_changes',
  'pg_logical_emit_message',
  'pg_replication_slot_advance',
  'pg_terminate_backend',
  'pg_cancel_backend',
  'pg_reload_conf',
  'pg_rotate_logfile',
  'pg_log_backend_memory_contexts',
  'pg_stat_reset',
  'pg_stat_reset_shared',
  'pg_stat_reset_single_table_counters',
  'pg_stat_reset_single_function_counters',
  'pg_stat_statements_reset',
  'lo_create',
  'lo_creat',
  'lo_import',
  'lo_export',
  'lo_unlink',
  'lo_open',
  'lo_put',
  'lo_from_bytea',
  'lowrite',
  'lo_truncate',
  'lo_truncate64',
  'dblink_exec',
  'dblink_connect',
  'dblink_connect_u',
]);

/**
 * Functions whose effect outlives the statement inside the backend, so the session must stay on that
 * backend (the primary). Pins are detected whatever the configured write list says: they are about
 * correctness, not about where writes go.
 * - Session-level advisory locks are held until unlocked or the session ends; on a pooled backend the lock
 *   would leak to another client and the unlock would run elsewhere.
 * - `pg_backup_start` begins a non-exclusive backup that only the same session can stop.
 * - `dblink_connect` keeps a named connection in the backend.
 * (`set_config(name, value, false)` is handled separately: it pins unless the third argument is the
 * literal `true`.)
 */
export const SESSION_PIN_FUNCTIONS: ReadonlyMap<string, string> = new Map([
  ['pg_advisory_lock', 'advisory lock'],
  ['pg_advisory_lock_shared', 'advisory lock'],
  ['pg_try_advisory_lock', 'advisory lock'],
  ['pg_try_advisory_lock_shared', 'advisory lock'],
  ['pg_backup_start', 'backup'],
  ['dblink_connect', 'dblink connection'],
  ['dblink_connect_u', 'dblink connection'],
]);
