/**
 * `CLIENT …` through the proxy. A client's connection is to rwsplit, and the server
 * connections behind it are shared, so the subcommands that describe or act on "this
 * connection" are answered about the client's connection to rwsplit (ids, names, CLIENT
 * LIST/INFO/KILL over rwsplit's own clients, in Redis's formats); the ones that would act on
 * a shared server connection or on every client of a server are refused with the reason.
 * docs/REDIS-CONNECTIONS.md lists them.
 */
import { arityError, clientNameError, notSupportedError, syntaxError, usageError } from '../errors.js';
import { encodeBulk, encodeInteger, encodeSimple } from '../resp/index.js';

/** What CLIENT LIST/INFO shows about one client of the proxy. */
export interface ClientView {
  id: number;
  addr: string;
  laddr: string;
  fd: number;
  name: string | null;
  /** seconds since the connection was accepted / since its last command */
  age: number;
  idle: number;
  /** Redis's flag letters: N normal, P pub/sub, x MULTI, O monitor */
  flags: string;
  db: number;
  sub: number;
  psub: number;
  multi: number;
  cmd: string;
  user: string;
  resp: number;
}

/** One client of the proxy, as CLIENT LIST/KILL sees it. */
export interface ClientHandle {
  view(): ClientView;
  /** Closes the client's connection (after the current reply when it is the caller). */
  kill(): void;
}

export interface ClientContext {
  readonly id: number;
  readonly name: string | null;
  /** CLIENT SETNAME (and HELLO SETNAME): an empty name clears it */
  setName(name: Buffer): void;
  readonly resp3: boolean;
  /** CLIENT REPLY: ON answers, OFF answers nothing, SKIP skips the next command's reply */
  setReplyMode(mode: 'on' | 'off' | 'skip'): void;
  /** every client of this proxy, this one included */
  clients(): Iterable<ClientHandle>;
  /** CLIENT TRACKINGINFO's reply, and CLIENT GETREDIR's (see session-tracking.ts) */
  trackingInfo(): Buffer;
  getredir(): number;
}

const REFUSED: Record<string, string> = {
  pause:
    'CLIENT PAUSE is not supported through rwsplit: it would pause every client of the server, not only this proxy; run it on the servers',
  unpause:
    'CLIENT UNPAUSE is not supported through rwsplit: CLIENT PAUSE is not either; run it on the servers',
  // Outside MULTI these three are run by the session (client-session.ts, session-tracking.ts).
  unblock:
    'CLIENT UNBLOCK inside MULTI is not supported through rwsplit: it acts on server connections of other clients; send it outside MULTI',
  tracking:
    "CLIENT TRACKING inside MULTI is not supported through rwsplit: it opens server connections of the client's own; send it outside MULTI",
  caching:
    'CLIENT CACHING inside MULTI is not supported through rwsplit (CLIENT TRACKING is not either); send it outside MULTI',
  'no-touch':
    'CLIENT NO-TOUCH is not supported through rwsplit: reads run on server connections shared with other clients',
};

/** The reply to `CLIENT <sub> …` (`args[0]` is CLIENT); null when nothing must be answered. */
export function clientCommand(s: ClientContext, args: Buffer[]): Buffer | null {
  const sub = args[1]?.toString().toLowerCase();
  if (sub === undefined) return arityError('client');
  const refused = REFUSED[sub];
  if (refused !== undefined) return notSupportedError(refused);
  switch (sub) {
    case 'id':
      return args.length === 2 ? encodeInteger(s.id) : arityError('client|id');
    case 'setname': {
      if (args.length !== 3) return arityError('client|setname');
      const name = args[2]!;
      if (!validName(name)) return clientNameError();
      s.setName(name);
      return encodeSimple('OK');
    }
    case 'getname':
      return args.length === 2 ? encodeBulk(s.name) : arityError('client|getname');
    case 'setinfo':
      return setinfo(args);
    case 'info':
      if (args.length !== 2) return arityError('client|info');
      return verbatim(s.resp3, line(mine(s).view()));
    case 'list':
      return list(s, args);
    case 'kill':
      return kill(s, args);
    case 'reply': {
      const mode = args.length === 3 ? args[2]!.toString().toLowerCase() : '';
      if (mode !== 'on' && mode !== 'off' && mode !== 'skip') return syntaxError();
      s.setReplyMode(mode);
      return mode === 'on' ? encodeSimple('OK') : null;
    }
    case 'no-evict': {
      // rwsplit's server connections are shared; the proxy itself never evicts a client.
      const v = args.length === 3 ? args[2]!.toString().toLowerCase() : '';
      return v === 'on' || v === 'off' ? encodeSimple('OK') : syntaxError();
    }
    case 'getredir':
      return encodeInteger(s.getredir());
    case 'trackinginfo':
      return s.trackingInfo();
    default:
      return usageError(`unknown subcommand '${args[1]!.toString().slice(0, 128)}'. Try CLIENT HELP.`);
  }
}

/** Redis's rule for client names (and SETINFO values): printable ASCII, no space. */
function validName(b: Buffer): boolean {
  for (const c of b) if (c < 0x21 || c > 0x7e) return false;
  return true;
}

function setinfo(args: Buffer[]): Buffer {
  if (args.length !== 4) return arityError('client|setinfo');
  const attr = args[2]!.toString().toLowerCase();
  if (attr !== 'lib-name' && attr !== 'lib-ver')
    return usageError(`Unrecognized option '${args[2]!.toString()}'`);
  if (!validName(args[3]!)) {
    return usageError(`${attr} cannot contain spaces, newlines or special characters.`);
  }
  return encodeSimple('OK');
}

function mine(s: ClientContext): ClientHandle {
  for (const c of s.clients()) if (c.view().id === s.id) return c;
  throw new Error(`client ${s.id} is not registered`);
}

/** One line of CLIENT LIST, in Redis 7.0's field order. */
export function line(v: ClientView): string {
  return (
    `id=${v.id} addr=${v.addr} laddr=${v.laddr} fd=${v.fd} name=${v.name ?? ''} age=${v.age} idle=${v.idle} ` +
    `flags=${v.flags} db=${v.db} sub=${v.sub} psub=${v.psub} ssub=0 multi=${v.multi} qbuf=0 qbuf-free=0 ` +
    `argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd=${v.cmd} user=${v.user} ` +
    `redir=-1 resp=${v.resp}\n`
  );
}

/** A bulk string in RESP2, a verbatim `txt` string in RESP3 (what Redis sends for CLIENT LIST/INFO). */
function verbatim(resp3: boolean, text: string): Buffer {
  if (!resp3) return encodeBulk(text);
  const body = Buffer.from(`txt:${text}`);
  return Buffer.concat([Buffer.from(`=${body.length}\r\n`), body, Buffer.from('\r\n')]);
}

const TYPES = new Set(['normal', 'master', 'replica', 'slave', 'pubsub']);

function typeMatches(v: ClientView, type: string): boolean {
  if (type === 'pubsub') return v.flags.includes('P');
  if (type === 'normal') return !v.flags.includes('P') && !v.flags.includes('O');
  return type === 'replica' || type === 'slave' ? v.flags.includes('O') : false;
}

function list(s: ClientContext, args: Buffer[]): Buffer {
  let type: string | null = null;
  let ids: Set<number> | null = null;
  if (args.length > 2) {
    const opt = args[2]!.toString().toLowerCase();
    if (opt === 'type' && args.length === 4) {
      type = args[3]!.toString().toLowerCase();
      if (!TYPES.has(type)) return usageError(`Unknown client type '${args[3]!.toString()}'`);
    } else if (opt === 'id' && args.length >= 4) {
      ids = new Set();
      for (const a of args.slice(3)) {
        const n = Number(a.toString());
        if (!Number.isSafeInteger(n) || n <= 0) return usageError('Invalid client ID');
        ids.add(n);
      }
    } else return syntaxError();
  }
  let text = '';
  for (const c of s.clients()) {
    const v = c.view();
    if (type !== null && !typeMatches(v, type)) continue;
    if (ids !== null && !ids.has(v.id)) continue;
    text += line(v);
  }
  return verbatim(s.resp3, text);
}

/** CLIENT KILL addr (old form: +OK or an error) and CLIENT KILL <filter> <value> … (a count). */
function kill(s: ClientContext, args: Buffer[]): Buffer {
  if (args.length === 3) {
    const addr = args[2]!.toString();
    for (const c of s.clients()) {
      if (c.view().addr === addr) {
        c.kill(); // the old form may kill the caller itself
        return encodeSimple('OK');
      }
    }
    return usageError('No such client');
  }
  if (args.length < 3 || args.length % 2 !== 0) return syntaxError();
  const tests: ((v: ClientView) => boolean)[] = [];
  let skipMe = true;
  for (let i = 2; i < args.length; i += 2) {
    const key = args[i]!.toString().toLowerCase();
    const value = args[i + 1]!.toString();
    switch (key) {
      case 'id': {
        const n = Number(value);
        if (!/^\d+$/.test(value) || n <= 0) return usageError('client-id should be greater than 0');
        tests.push((v) => v.id === n);
        break;
      }
      case 'type': {
        const t = value.toLowerCase();
        if (!TYPES.has(t)) return usageError(`Unknown client type '${value}'`);
        tests.push((v) => typeMatches(v, t));
        break;
      }
      case 'addr':
        tests.push((v) => v.addr === value);
        break;
      case 'laddr':
        tests.push((v) => v.laddr === value);
        break;
      case 'user':
        tests.push((v) => v.user === value);
        break;
      case 'skipme': {
        const yes = value.toLowerCase();
        if (yes !== 'yes' && yes !== 'no') return syntaxError();
        skipMe = yes === 'yes';
        break;
      }
      default:
        return syntaxError();
    }
  }
  let killed = 0;
  for (const c of [...s.clients()]) {
    const v = c.view();
    if (skipMe && v.id === s.id) continue;
    if (!tests.every((t) => t(v))) continue;
    c.kill();
    killed++;
  }
  return encodeInteger(killed);
}
