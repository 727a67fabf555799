/**
 * FCALL_RO, EVAL_RO and EVALSHA_RO run on replicas (their `COMMAND` flags say read-only),
 * but a script flagged for writes (a `#!lua` shebang without `no-writes`, a function
 * registered without it) is refused before it runs: a replica says `READONLY You can't
 * write against a read only replica.`, the primary `ERR Can not execute a script with write
 * flag using *_ro command.`. A direct client on the primary sees the latter, so the proxy
 * and the library ask the primary again when a replica refuses such a script; the script
 * ran on neither, so nothing happens twice. (A script without flags that calls a write
 * gets `Write commands are not allowed from read-only scripts` from either server: that
 * reply is the same everywhere and is passed on as it is.)
 */

export const READ_ONLY_SCRIPTS: ReadonlySet<string> = new Set(['fcall_ro', 'eval_ro', 'evalsha_ro']);

/** Whether a replica's raw reply to a read-only script is its `-READONLY` refusal. */
export function refusedByReplica(raw: Buffer): boolean {
  return raw.subarray(0, 9).toString('latin1') === '-READONLY';
}
