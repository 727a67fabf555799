/**
 * What the proxy knows about each Redis command, learned from the server itself (`COMMAND`)
 * at start, so a new Redis version works without a code change: whether it only reads,
 * whether it blocks, and where its keys are.
 * https://redis.io/docs/latest/commands/command/
 */
import { parseReply, RespErrorValue, type RespValue } from '../resp/index.js';
import { redisError } from '../errors.js';

/**
 * Where a key spec starts looking for keys (Redis 7 `begin_search`): at a fixed argument, or
 * after a keyword (searched forwards from `startFrom`, backwards from the end when negative);
 * `unknown`: the keys cannot be found from the arguments (SORT's BY/GET patterns).
 */
export type BeginSearch =
  | { type: 'index'; index: number }
  | { type: 'keyword'; keyword: string; startFrom: number }
  | { type: 'unknown' };

/**
 * How many keys a key spec covers from where it begins (Redis 7 `find_keys`): a range
 * (`lastKey` relative to the first key, negative = from the end, `limit` divides what is left)
 * or a count read from an argument (`numkeys`).
 */
export type FindKeys =
  | { type: 'range'; lastKey: number; keyStep: number; limit: number }
  | { type: 'keynum'; keyNumIdx: number; firstKey: number; keyStep: number }
  | { type: 'unknown' };

/** One key spec of `COMMAND`'s reply (https://redis.io/docs/latest/develop/reference/key-specs/). */
export interface KeySpec {
  begin: BeginSearch;
  find: FindKeys;
  /** flag `incomplete`: the spec may miss keys (MIGRATE's KEYS) */
  incomplete: boolean;
}

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
  /** argument count including the name; negative: at least that many (absent: not checked) */
  arity?: number;
  /** Redis 7 key specs (absent before Redis 7) */
  keySpecs?: readonly KeySpec[];
  /** container commands (CONFIG, OBJECT, XINFO, …): their subcommands, by lower-case subcommand name */
  subcommands?: ReadonlyMap<string, CommandInfo>;
}

/**
 * Where a command's keys are: their argument positions; `null` when nobody can tell from the
 * arguments (a key spec of type `unknown` this proxy has no rule for); `malformed` when the
 * arguments contradict the key specs (a non-integer or out-of-range numkeys, an odd STREAMS
 * list): the server refuses such a command before touching any key, so it may run anywhere
 * and its own error reaches the client (Redis Cluster does the same).
 */
export type KeyPositions = number[] | null | 'malformed';

export class CommandTable {
  private readonly byName = new Map<string, CommandInfo>();

  /** Builds the table from a raw `COMMAND` reply. */
  static fromReply(raw: Buffer): CommandTable {
    const table = new CommandTable();
    const value = parseReply(raw);
    if (!Array.isArray(value)) throw new Error('COMMAND did not return an array');
    for (const entry of value) {
      const info = commandInfo(entry);
      if (info) table.byName.set(info.name, info);
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
   * The entry that describes this call: a container's subcommand (`object|encoding`) when the
   * command has subcommands and the subcommand is known, else the command itself.
   */
  static resolve(info: CommandInfo, args: readonly Buffer[]): CommandInfo {
    if (!info.subcommands || args.length < 2) return info;
    return info.subcommands.get(`${info.name}|${args[1]!.toString('latin1').toLowerCase()}`) ?? info;
  }

  /**
   * Redis's own refusal of a call before it runs (and before MULTI queues it): unknown
   * subcommand, wrong number of arguments; null when the call passes these checks.
   * `info` is the command's own entry (not resolved).
   */
  static refusal(info: CommandInfo, args: readonly Buffer[]): string | null {
    let entry = info;
    if (info.subcommands && args.length >= 2) {
      const sub = CommandTable.resolve(info, args);
      if (sub === info) {
        return `unknown subcommand '${truncate(args[1]!, 128)}'. Try ${info.name.toUpperCase()} HELP.`;
      }
      entry = sub;
    }
    const arity = entry.arity;
    if (arity !== undefined && (arity > 0 ? args.length !== arity : args.length < -arity)) {
      return `wrong number of arguments for '${entry.name}' command`;
    }
    return null;
  }

  /**
   * Whether a command sent to a primary may change data there: such a command is followed by
   * WAIT (zero-loss mode) and by the causal position; INFO, CLIENT, CONFIG GET are not. A
   * command with keys that is not read-only counts as a write: EVAL, EVALSHA and FCALL carry
   * no `write` flag (Redis 7.0: "we cannot tell how the keys will be used").
   */
  static mayWrite(info: CommandInfo): boolean {
    return info.write || info.mayReplicate || (!info.readonly && (info.firstKey > 0 || info.movableKeys));
  }

  /** Positions of the key arguments of a command (args[0] is the command name); see {@link KeyPositions}. */
  keyPositions(info: CommandInfo, args: readonly Buffer[]): KeyPositions {
    if (info.movableKeys) return movableKeyPositions(info, args);
    if (info.firstKey <= 0) return [];
    const last = info.lastKey < 0 ? args.length + info.lastKey : info.lastKey;
    const out: number[] = [];
    for (let i = info.firstKey; i <= last && i < args.length; i += Math.max(1, info.keyStep)) out.push(i);
    return out;
  }
}

/** Error texts quote at most `max` bytes of an argument, as Redis's `%.128s` does. */
export function truncate(arg: Buffer, max: number): string {
  return arg.subarray(0, max).toString('latin1');
}

function commandInfo(entry: RespValue): CommandInfo | null {
  if (!Array.isArray(entry) || entry.length < 6) return null;
  const name = text(entry[0]).toLowerCase();
  const flags = new Set((Array.isArray(entry[2]) ? entry[2] : []).map((f) => text(f).toLowerCase()));
  const info: CommandInfo = {
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
    arity: typeof entry[1] === 'number' ? entry[1] : undefined,
  };
  if (Array.isArray(entry[8])) info.keySpecs = entry[8].map(keySpec);
  if (Array.isArray(entry[9]) && entry[9].length > 0) {
    const subs = new Map<string, CommandInfo>();
    for (const sub of entry[9]) {
      const s = commandInfo(sub);
      if (s) subs.set(s.name, s);
    }
    info.subcommands = subs;
  }
  return info;
}

/** Fields of a RESP2 flat key/value array or a RESP3 map, by name. */
function fields(v: RespValue | undefined): Map<string, RespValue> {
  const out = new Map<string, RespValue>();
  if (v instanceof Map) for (const [k, x] of v) out.set(text(k), x);
  else if (Array.isArray(v)) for (let i = 0; i + 1 < v.length; i += 2) out.set(text(v[i]), v[i + 1]!);
  return out;
}

function num(v: RespValue | undefined): number {
  return typeof v === 'number' ? v : Number(text(v));
}

function keySpec(v: RespValue): KeySpec {
  const f = fields(v);
  const flags = Array.isArray(f.get('flags')) ? (f.get('flags') as RespValue[]).map((x) => text(x)) : [];
  const bs = fields(f.get('begin_search'));
  const bsSpec = fields(bs.get('spec'));
  const fk = fields(f.get('find_keys'));
  const fkSpec = fields(fk.get('spec'));
  const bsType = text(bs.get('type'));
  const fkType = text(fk.get('type'));
  const begin: BeginSearch =
    bsType === 'index'
      ? { type: 'index', index: num(bsSpec.get('index')) }
      : bsType === 'keyword'
        ? { type: 'keyword', keyword: text(bsSpec.get('keyword')), startFrom: num(bsSpec.get('startfrom')) }
        : { type: 'unknown' };
  const find: FindKeys =
    fkType === 'range'
      ? {
          type: 'range',
          lastKey: num(fkSpec.get('lastkey')),
          keyStep: num(fkSpec.get('keystep')),
          limit: num(fkSpec.get('limit')),
        }
      : fkType === 'keynum'
        ? {
            type: 'keynum',
            keyNumIdx: num(fkSpec.get('keynumidx')),
            firstKey: num(fkSpec.get('firstkey')),
            keyStep: num(fkSpec.get('keystep')),
          }
        : { type: 'unknown' };
  return { begin, find, incomplete: flags.some((x) => x.toLowerCase() === 'incomplete') };
}

function text(v: RespValue | undefined): string {
  if (Buffer.isBuffer(v)) return v.toString();
  if (v instanceof RespErrorValue) return v.message;
  return String(v);
}

function same(arg: Buffer | undefined, word: string): boolean {
  return arg !== undefined && arg.length === word.length && arg.toString('latin1').toLowerCase() === word;
}

/**
 * Keys of a movable-keys command. SORT and MIGRATE have key specs that cannot say where all
 * their keys are (`unknown`, `incomplete`): they get Redis's own rules (sortGetKeys,
 * migrateGetKeys in redis' db.c); every other command is read from its key specs, the way
 * redis' getKeysUsingKeySpecs does.
 */
function movableKeyPositions(info: CommandInfo, args: readonly Buffer[]): KeyPositions {
  if (info.name === 'sort' || info.name === 'sort_ro') return sortKeys(args);
  if (info.name === 'migrate') return migrateKeys(args);
  const specs = info.keySpecs;
  if (!specs) return null;
  const out: number[] = [];
  for (const spec of specs) {
    const keys = specKeys(spec, args);
    if (keys === null || keys === 'malformed') return keys;
    for (const k of keys) if (!out.includes(k)) out.push(k);
  }
  return out.sort((a, b) => a - b);
}

function specKeys(spec: KeySpec, args: readonly Buffer[]): KeyPositions {
  const argc = args.length;
  let first: number;
  const begin = spec.begin;
  if (begin.type === 'index') {
    first = begin.index;
  } else if (begin.type === 'keyword') {
    const start = begin.startFrom > 0 ? begin.startFrom : argc + begin.startFrom;
    const word = begin.keyword.toLowerCase();
    const step = begin.startFrom > 0 ? 1 : -1;
    // Forwards, the last argument is not searched: a keyword there has no key after it.
    const end = begin.startFrom > 0 ? argc - 1 : argc;
    first = 0;
    for (let i = start; i >= 1 && i < end; i += step) {
      if (same(args[i], word)) {
        first = i + 1;
        break;
      }
    }
    if (first === 0) return []; // an optional keyword that is absent (GEORADIUS without STORE)
  } else {
    return null;
  }
  const find = spec.find;
  let last: number;
  let step: number;
  if (find.type === 'range') {
    step = find.keyStep;
    if (find.lastKey >= 0) last = first + find.lastKey;
    else if (find.limit === 0) last = argc + find.lastKey;
    else last = first + (Math.floor((argc - first) / find.limit) + find.lastKey);
  } else if (find.type === 'keynum') {
    step = find.keyStep;
    const at = first + find.keyNumIdx;
    const n = at < argc ? integer(args[at]!) : null;
    if (n === null || n < 0) return 'malformed';
    if (n === 0) return []; // EVAL/FCALL with no keys; LMPOP 0 is refused by the server itself
    first += find.firstKey;
    last = first + n - 1;
  } else {
    return null;
  }
  if (last >= argc || last < first || first >= argc || step < 1) return 'malformed';
  const out: number[] = [];
  for (let i = first; i <= last; i += step) out.push(i);
  return out;
}

/** A whole decimal integer argument (Redis's string2ll), else null. */
function integer(arg: Buffer): number | null {
  const s = arg.toString('latin1');
  if (!/^-?(0|[1-9][0-9]*)$/.test(s)) return null;
  const n = Number(s);
  return Number.isSafeInteger(n) ? n : null;
}

/**
 * SORT key [BY pattern] [LIMIT offset count] [GET pattern …] [ASC|DESC] [ALPHA] [STORE dest]:
 * the sorted key and the STORE destination (the last STORE wins), as redis' sortGetKeys.
 * BY/GET patterns name keys derived from the sorted values, which nobody can locate before
 * the command runs: they are read on the shard of the sorted key (documented).
 */
function sortKeys(args: readonly Buffer[]): KeyPositions {
  if (args.length < 2) return 'malformed';
  const out = [1];
  let store = -1;
  for (let i = 2; i < args.length; i++) {
    if (same(args[i], 'limit')) i += 2;
    else if (same(args[i], 'get') || same(args[i], 'by')) i += 1;
    else if (same(args[i], 'store') && i + 1 < args.length) {
      store = i + 1;
      i++;
    }
  }
  if (store > 0) out.push(store);
  return out;
}

/**
 * MIGRATE host port key|"" db timeout [COPY] [REPLACE] [AUTH pw | AUTH2 user pw] [KEYS k …]:
 * the key, or with an empty key the keys after KEYS, as redis' migrateGetKeys.
 */
function migrateKeys(args: readonly Buffer[]): KeyPositions {
  if (args.length < 6) return 'malformed';
  if (args[3]!.length > 0) return [3];
  for (let i = 6; i < args.length; i++) {
    if (same(args[i], 'keys')) return Array.from({ length: args.length - i - 1 }, (_, j) => i + 1 + j);
    if (same(args[i], 'auth')) i += 1;
    else if (same(args[i], 'auth2')) i += 2;
  }
  return [];
}

/**
 * Redis's answer to a command name it does not know, byte for byte: the name and up to 128
 * bytes of arguments quoted as sent (UTF-8 names stay UTF-8), CR and LF shown as spaces.
 */
export function unknownCommandError(args: readonly Buffer[]): Buffer {
  let quoted = '';
  for (let i = 1; i < args.length && quoted.length < 128; i++) {
    quoted += `'${truncate(args[i]!, 128 - quoted.length)}' `;
  }
  const message = `unknown command '${truncate(args[0]!, 128)}', with args beginning with: ${quoted}`;
  return redisError('unknownCommand', message.replace(/[\r\n]/g, ' '), 'latin1');
}

/**
 * Commands rwsplit refuses although the server would run them, with the reason (null: not
 * refused). CONFIG SET would change one node of one shard, leaving the others as they were.
 */
export function proxyRefusal(name: string, args: readonly Buffer[]): string | null {
  if (name === 'config' && same(args[1], 'set')) {
    return 'CONFIG SET is refused by rwsplit: it would change one server of one shard only; run it on each server directly';
  }
  return null;
}
