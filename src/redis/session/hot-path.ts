/**
 * Which commands take the session's hot path: a command with exactly one key, at argument 1
 * (GET, SET, INCR, HGET, LPUSH, …), that nothing in the session handles by name. Such a
 * command goes to its key's shard (a replica when it is read-only, else the primary) with a
 * reused reply slot and no closure (client-session.ts). Everything else takes the general
 * path, which gives the same result.
 *
 * The command's name is found from its bytes without a string per command: names of up to 6
 * bytes (most of the data commands) are packed, lower-cased, into one number.
 */
import { CommandTable, type CommandInfo } from '../routing/command-table.js';

export const enum HotKind {
  /** read-only: a replica of the key's shard (read-planner.ts) */
  Read,
  /** the primary, changes nothing */
  Primary,
  /** the primary, may change data: followed by its position (write-path.ts) */
  Write,
}

export interface HotCommand {
  /** lower case, as the command table names it */
  readonly name: string;
  readonly kind: HotKind;
}

/**
 * Commands the session handles by name (client-session.ts `dispatchOne`, `routeSpecial`,
 * `routeKeyed`, local-commands.ts): never on the hot path, whatever their key positions.
 */
const BY_NAME = new Set([
  'auth',
  'hello',
  'quit',
  'reset',
  'ping',
  'echo',
  'monitor',
  'sync',
  'psync',
  'replconf',
  'client',
  'select',
  'swapdb',
  'move',
  'rwsplit',
  'config',
  'multi',
  'exec',
  'discard',
  'watch',
  'unwatch',
  'wait',
  'waitaof',
  'publish',
  'spublish',
  'pubsub',
  'keys',
  'dbsize',
  'flushall',
  'flushdb',
  'randomkey',
  'script',
  'function',
  'object',
  'slowlog',
  'fcall_ro',
  'eval_ro',
  'evalsha_ro',
]);

const MAX_PACKED = 6;

/** The hot-path entry of a command, or null when it takes the general path. */
function classify(name: string, info: CommandInfo | undefined): HotCommand | null {
  if (info === undefined || BY_NAME.has(name)) return null;
  if (info.subcommands || info.movableKeys || info.blocking || info.pubsub) return null;
  if (info.firstKey !== 1 || info.lastKey !== 1) return null;
  const kind =
    info.readonly && !info.write
      ? HotKind.Read
      : CommandTable.mayWrite(info)
        ? HotKind.Write
        : HotKind.Primary;
  return { name, kind };
}

/** The hot-path entries of one command table, by packed name. */
export class HotCommands {
  private readonly byKey = new Map<number, HotCommand | null>();

  constructor(private readonly table: CommandTable) {}

  /** The hot-path entry of the command named by `name` (the client's bytes), or null. */
  lookup(name: Buffer): HotCommand | null {
    return this.lookupIn(name, 0, name.length);
  }

  /** The hot-path entry of the command named by `bytes[start, end)`, or null. */
  lookupIn(bytes: Buffer, start: number, end: number): HotCommand | null {
    const n = end - start;
    if (n === 0 || n > MAX_PACKED) return null;
    let key = n;
    for (let i = start; i < end; i++) {
      let c = bytes[i]!;
      if (c >= 0x41 && c <= 0x5a) c |= 0x20;
      key = key * 256 + c;
    }
    const hit = this.byKey.get(key);
    if (hit !== undefined) return hit;
    const lower = bytes.toString('latin1', start, end).toLowerCase();
    const info = this.table.get(lower);
    // Only names of the table are remembered: garbage names must not grow the map.
    if (info === undefined) return null;
    const entry = classify(lower, info);
    this.byKey.set(key, entry);
    return entry;
  }
}

const byTable = new WeakMap<CommandTable, HotCommands>();

/** The hot-path entries of `table` (one per table, shared by every session). */
export function hotCommands(table: CommandTable): HotCommands {
  let hot = byTable.get(table);
  if (hot === undefined) byTable.set(table, (hot = new HotCommands(table)));
  return hot;
}
