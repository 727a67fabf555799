/**
 * Commands the proxy answers itself: connection state that belongs to the client's
 * connection to the proxy, not to any server (PING, ECHO, QUIT, AUTH, HELLO, SELECT,
 * CLIENT …; RESET is in client-session.ts). In passthrough auth mode (`redis.auth.mode`)
 * AUTH and HELLO's AUTH are checked by the servers instead (see `login`).
 */
import { clientCommand, type ClientContext } from './client-command.js';
import {
  arityError,
  clientNameError,
  noAuthError,
  noProtoError,
  notIntegerError,
  notSupportedError,
  usageError,
  wrongPassError,
} from '../errors.js';
import { encodeArrayHeader, encodeBulk, encodeInteger, encodeSimple } from '../resp/index.js';

export interface LocalContext extends ClientContext {
  readonly resp3: boolean;
  readonly authenticated: boolean;
  /** the database SELECTed (one shard only) */
  readonly db: number;
  /** SELECT: the database the client's later commands run in */
  select(db: number): void;
  /** AUTH (or HELLO AUTH) accepted */
  loggedIn(): void;
  /** HELLO 2 or 3: the protocol of the client's later replies */
  useProtocol(version: 2 | 3): void;
  readonly serverVersion: string;
  /** how many databases the servers have (`databases`), and how many shards there are */
  readonly databases: number;
  readonly shardCount: number;
  /** passthrough auth mode: credentials are checked by the servers */
  readonly passthrough: boolean;
  /** proxy mode: whether the default user has a password (AUTH <password> means something) */
  readonly defaultPasswordSet: boolean;
  checkPassword(user: string | null, password: string): boolean;
  /**
   * Passthrough mode: logs in on a server with these credentials; answers the server's error
   * when it refuses them, else `then()` (which applies what follows the login).
   */
  login(user: string | null, password: string, then: () => Buffer): void;
  quit(): void;
}

/**
 * The reply to a command the proxy handles itself; `null` when it replied (or will) on its
 * own; `undefined` when the command is not local.
 */
export function localReply(s: LocalContext, name: string, args: Buffer[]): Buffer | null | undefined {
  switch (name) {
    case 'ping':
      if (args.length > 2) return arityError(name);
      return args.length === 2 ? encodeBulk(args[1]!) : encodeSimple('PONG');
    case 'echo':
      return args.length === 2 ? encodeBulk(args[1]!) : arityError(name);
    case 'quit':
      s.quit();
      return null;
    case 'auth':
      return auth(s, args);
    case 'hello':
      return hello(s, args);
    case 'select':
      return select(s, args);
    case 'swapdb':
    case 'move':
      // With several shards there is database 0 only, as in Redis Cluster.
      return s.shardCount > 1 ? notInCluster(s, name.toUpperCase()) : undefined;
    case 'client':
      return clientCommand(s, args);
    default:
      return undefined;
  }
}

function notInCluster(s: LocalContext, what: string): Buffer {
  return notSupportedError(
    `${what} is not allowed in cluster mode: rwsplit spreads keys over ${s.shardCount} shards, like Redis Cluster, which has database 0 only`,
  );
}

function select(s: LocalContext, args: Buffer[]): Buffer {
  if (args.length !== 2) return arityError('select');
  const text = args[1]!.toString();
  const n = Number(text);
  if (!/^-?\d+$/.test(text) || !Number.isSafeInteger(n)) return notIntegerError();
  if (s.shardCount > 1 && n !== 0) return notInCluster(s, 'SELECT');
  if (n < 0 || n >= s.databases) return usageError('DB index is out of range');
  s.select(n);
  return encodeSimple('OK');
}

function auth(s: LocalContext, args: Buffer[]): Buffer | null {
  if (args.length < 2 || args.length > 3) return arityError('auth');
  const user = args.length === 3 ? args[1]!.toString() : null;
  const password = args[args.length - 1]!.toString();
  if (s.passthrough) {
    s.login(user, password, () => encodeSimple('OK'));
    return null;
  }
  if (user === null && !s.defaultPasswordSet) {
    // What Redis answers when the default user has no password.
    return usageError(
      'AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?',
    );
  }
  if (s.checkPassword(user, password)) {
    s.loggedIn();
    return encodeSimple('OK');
  }
  return wrongPassError();
}

function hello(s: LocalContext, args: Buffer[]): Buffer | null {
  let version: 2 | 3 | null = null;
  let login: [string, string] | null = null;
  let setname: Buffer | null = null;
  let i = 1;
  if (args.length > 1) {
    const v = Number(args[1]!.toString());
    if (v !== 2 && v !== 3) return noProtoError();
    version = v;
    i = 2;
  }
  for (; i < args.length; i++) {
    const opt = args[i]!.toString().toUpperCase();
    if (opt === 'AUTH' && i + 2 < args.length) {
      login = [args[i + 1]!.toString(), args[i + 2]!.toString()];
      i += 2;
    } else if (opt === 'SETNAME' && i + 1 < args.length) {
      setname = args[++i]!;
    } else {
      return usageError(`syntax error in HELLO option '${opt}'`);
    }
  }
  if (setname && /[^\x21-\x7e]/.test(setname.toString('latin1'))) {
    return clientNameError();
  }
  // Nothing changes unless the login (when there is one) succeeds, as in Redis.
  const apply = (): Buffer => {
    if (!s.authenticated) return noAuthError();
    if (version !== null) s.useProtocol(version);
    if (setname) s.setName(setname);
    return helloReply(s);
  };
  if (login && s.passthrough) {
    s.login(login[0], login[1], apply);
    return null;
  }
  if (login) {
    if (!s.checkPassword(login[0], login[1])) return wrongPassError();
    s.loggedIn();
  }
  return apply();
}

function helloReply(s: LocalContext): Buffer {
  const fields: [string, Buffer][] = [
    ['server', encodeBulk('redis')],
    ['version', encodeBulk(s.serverVersion)],
    ['proto', encodeInteger(s.resp3 ? 3 : 2)],
    ['id', encodeInteger(s.id)],
    ['mode', encodeBulk('standalone')],
    ['role', encodeBulk('master')],
    ['modules', encodeArrayHeader(0)],
  ];
  const head = s.resp3 ? Buffer.from(`%${fields.length}\r\n`) : encodeArrayHeader(fields.length * 2);
  return Buffer.concat([head, ...fields.flatMap(([k, v]) => [encodeBulk(k), v])]);
}
