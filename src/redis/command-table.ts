/**
 * What the proxy knows about each Redis command, learned from the server itself (`COMMAND`)
 * at start, so a new Redis version works without a code change: whether it only reads,
 * whether it blocks, and where its keys are.
 * https://redis.io/docs/latest/commands/command/
 */
import { parseReply, RespErrorValue, type RespValue } from './resp/index.js';

export interface CommandInfo {
  name: string;
  readonly: boolean;
  write: boolean;
  /** may write through what it runs (EVAL, FCALL, PUBLISH): flag `may_replicate` */
  mayReplicate: boolean;
  blocking: boolean;
  pubsub: boolean;
  /** first key position, last key position (negative = from the end), step; 0 = no keys */
  firstKey: number;
  lastKey: number;
  keyStep: number;
  /** key positions depend on the arguments (EVAL numkeys, XREAD STREAMS, …) */
  movableKeys: boolean;
}

export class CommandTable {
  private readonly byName = new Map<string, CommandInfo>();

  /** Builds the table from a raw `COMMAND` reply. */
  static fromReply(raw: Buffer): CommandTable {
    const table = new CommandTable();
    const value = parseReply(raw);
    if (!Array.isArray(value)) throw new Error('COMMAND did not return an array');
    for (const entry of value) {
      if (!Array.isArray(entry) || entry.length < 6) continue;
      const name = text(entry[0]).toLowerCase();
      const flags = new Set((Array.isArray(entry[2]) ? entry[2] : []).map((f) => text(f).toLowerCase()));
      table.byName.set(name, {
        name,
        readonly: flags.has('readonly'),
        write: flags.has('write'),
        mayReplicate: flags.has('may_replicate'),
        blocking: flags.has('blocking'),
        pubsub: flags.has('pubsub'),
        firstKey: Number(entry[3]),
        lastKey: Number(entry[4]),
        keyStep: Number(entry[5]),
        movableKeys: flags.has('movablekeys'),
      });
    }
    return table;
  }

  get size(): number {
    return this.byName.size;
  }

  get(name: string): CommandInfo | undefined {
    return this.byName.get(name);
  }

  /**
   * Positions of the key arguments of a command (args[0] is the command name), or null when
   * they cannot be found (a movable-keys command this proxy does not know).
   */
  /**
   * Whether a command sent to a primary may change data there: such a command is followed by
   * WAIT (zero-loss mode) and by the causal position; INFO, CLIENT, CONFIG GET are not. A
   * command with keys that is not read-only counts as a write: EVAL, EVALSHA and FCALL carry
   * no `write` flag (Redis 7.0: "we cannot tell how the keys will be used").
   */
  static mayWrite(info: CommandInfo): boolean {
    return info.write || info.mayReplicate || (!info.readonly && (info.firstKey > 0 || info.movableKeys));
  }

  keyPositions(info: CommandInfo, args: readonly Buffer[]): number[] | null {
    if (info.movableKeys) return movableKeyPositions(info.name, args);
    if (info.firstKey <= 0) return [];
    const last = info.lastKey < 0 ? args.length + info.lastKey : info.lastKey;
    const out: number[] = [];
    for (let i = info.firstKey; i <= last && i < args.length; i += Math.max(1, info.keyStep)) out.push(i);
    return out;
  }
}

function text(v: RespValue | undefined): string {
  if (Buffer.isBuffer(v)) return v.toString();
  if (v instanceof RespErrorValue) return v.message;
  return String(v);
}

function int(b: Buffer | undefined): number {
  const n = b === undefined ? NaN : Number(b.toString());
  return Number.isInteger(n) && n >= 0 ? n : -1;
}

function range(from: number, count: number, max: number): number[] | null {
  if (count < 0 || from + count > max) return null;
  return Array.from({ length: count }, (_, i) => from + i);
}

/** Keys of the movable-keys commands clients use most; others are refused with a clear error. */
function movableKeyPositions(name: string, args: readonly Buffer[]): number[] | null {
  switch (name) {
    case 'eval':
    case 'evalsha':
    case 'eval_ro':
    case 'evalsha_ro':
    case 'fcall':
    case 'fcall_ro':
    case 'zunion':
    case 'zinter':
    case 'zdiff':
    case 'sintercard':
    case 'zintercard':
    case 'lmpop':
    case 'zmpop':
      return range(3, int(args[2]), args.length);
    case 'blmpop':
    case 'bzmpop':
      return range(3, int(args[2]), args.length);
    case 'zunionstore':
    case 'zinterstore':
    case 'zdiffstore': {
      const keys = range(3, int(args[2]), args.length);
      return keys ? [1, ...keys] : null;
    }
    case 'xread':
    case 'xreadgroup': {
      const at = args.findIndex((a, i) => i > 0 && a.toString().toUpperCase() === 'STREAMS');
      if (at < 0) return null;
      const n = (args.length - at - 1) / 2;
      return Number.isInteger(n) && n > 0 ? range(at + 1, n, args.length) : null;
    }
    default:
      return null;
  }
}
