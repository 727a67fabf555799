/**
 * Global transaction identifiers of rwsplit's two-phase commits:
 * `rwsplit:<instanceId>:<unique>`. The fixed prefix is what recovery looks for in
 * `pg_prepared_xacts`; the instance id says which rwsplit prepared it (for people reading
 * the log, never for deciding: any instance may resolve any gid).
 *
 * PostgreSQL limits a gid to fewer than 200 bytes (GIDSIZE in src/backend/access/transam/twophase.c)
 * and a gid is unique in the whole server, across databases.
 */
import { randomBytes } from 'node:crypto';

/** What every gid of ours starts with; recovery's `LIKE 'rwsplit:%'` depends on it. */
export const GID_PREFIX = 'rwsplit:';

/** Longest gid PostgreSQL accepts (GIDSIZE is 200 including the terminating zero byte). */
export const MAX_GID_BYTES = 199;

/** Characters allowed in an instance id: no quote, no backslash, no ':', so a gid needs no escaping. */
const INSTANCE_ID = /^[A-Za-z0-9._-]{1,64}$/;
/** A whole gid of ours; anything else with our prefix is left alone by recovery. */
const GID = /^rwsplit:([A-Za-z0-9._-]{1,64}):([a-z0-9]+-[a-z0-9]+-[a-f0-9]+)$/;

let counter = 0;

/** @throws RangeError when `instanceId` has characters outside `[A-Za-z0-9._-]` or is longer than 64. */
export function checkInstanceId(instanceId: string): string {
  if (!INSTANCE_ID.test(instanceId)) {
    throw new RangeError(
      `2PC instance id '${instanceId}' must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' or '-'`,
    );
  }
  return instanceId;
}

/**
 * A new gid, unique across instances and restarts: the time in ms, a per-process counter and
 * 48 random bits. At most 8 + 64 + 1 + 9 + 1 + 8 + 1 + 12 bytes, well under {@link MAX_GID_BYTES}.
 */
export function newGid(instanceId: string): string {
  checkInstanceId(instanceId);
  counter = (counter + 1) % 0x7fffffff;
  const unique = `${Date.now().toString(36)}-${counter.toString(36)}-${randomBytes(6).toString('hex')}`;
  return `${GID_PREFIX}${instanceId}:${unique}`;
}

/** The parts of a gid of ours, or null for anything else (another tool's gid, a hand-made one). */
export function parseGid(gid: string): { instanceId: string; unique: string } | null {
  const m = GID.exec(gid);
  if (m === null || m[1] === undefined || m[2] === undefined) return null;
  return { instanceId: m[1], unique: m[2] };
}

/**
 * A gid as an SQL string literal. Only gids that {@link parseGid} accepts are quoted: their
 * characters need no escaping, whatever `standard_conforming_strings` says.
 *
 * @throws RangeError for any other string.
 */
export function gidLiteral(gid: string): string {
  if (parseGid(gid) === null) throw new RangeError(`not an rwsplit 2PC gid: ${JSON.stringify(gid)}`);
  return `'${gid}'`;
}
