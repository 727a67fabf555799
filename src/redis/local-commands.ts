/**
 * Commands the proxy answers itself: connection state that belongs to the client's
 * connection to the proxy, not to any server (PING, ECHO, QUIT, AUTH, HELLO, SELECT,
 * CLIENT SETNAME/GETNAME/ID, RESET).
 */
import { encodeArrayHeader, encodeBulk, encodeError, encodeInteger, encodeSimple } from './resp/index.js';

export interface LocalContext {
  resp3: boolean;
  authenticated: boolean;
  name: string | null;
  readonly id: number;
  readonly serverVersion: string;
  checkPassword(user: string | null, password: string): boolean;
  quit(): void;
}

/**
 * The reply to a command the proxy handles itself; `null` when it replied (or will) on its
 * own; `undefined` when the command is not local.
 */
export function localReply(s: LocalContext, name: string, args: Buffer[]): Buffer | null | undefined {
  switch (name) {
    case 'ping':
      if (args.length > 2) return arity(name);
      return args.length === 2 ? encodeBulk(args[1]!) : encodeSimple('PONG');
    case 'echo':
      return args.length === 2 ? encodeBulk(args[1]!) : arity(name);
    case 'quit':
      s.quit();
      return null;
    case 'auth':
      return auth(s, args);
    case 'hello':
      return hello(s, args);
    case 'select':
      if (!s.authenticated) return undefined;
      return args[1]?.toString() === '0'
        ? encodeSimple('OK')
        : encodeError(
            'rwsplit serves database 0 only (like twemproxy); use key prefixes or hash tags instead',
          );
    case 'client':
      return client(s, args);
    default:
      return undefined;
  }
}

function arity(name: string): Buffer {
  return encodeError(`wrong number of arguments for '${name}' command`);
}

function auth(s: LocalContext, args: Buffer[]): Buffer {
  if (args.length < 2 || args.length > 3) return arity('auth');
  const user = args.length === 3 ? args[1]!.toString() : null;
  const password = args[args.length - 1]!.toString();
  if (s.checkPassword(user, password)) {
    s.authenticated = true;
    return encodeSimple('OK');
  }
  return encodeError('invalid username-password pair or user is disabled.', 'WRONGPASS');
}

function hello(s: LocalContext, args: Buffer[]): Buffer {
  let i = 1;
  if (args.length > 1) {
    const v = Number(args[1]!.toString());
    if (v !== 2 && v !== 3) return encodeError('unsupported protocol version', 'NOPROTO');
    s.resp3 = v === 3;
    i = 2;
  }
  for (; i < args.length; i++) {
    const opt = args[i]!.toString().toUpperCase();
    if (opt === 'AUTH' && i + 2 < args.length) {
      if (!s.checkPassword(args[i + 1]!.toString(), args[i + 2]!.toString())) {
        return encodeError('invalid username-password pair or user is disabled.', 'WRONGPASS');
      }
      s.authenticated = true;
      i += 2;
    } else if (opt === 'SETNAME' && i + 1 < args.length) {
      s.name = args[++i]!.toString();
    } else {
      return encodeError(`syntax error in HELLO option '${opt}'`);
    }
  }
  if (!s.authenticated) return encodeError('Authentication required.', 'NOAUTH');
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

function client(s: LocalContext, args: Buffer[]): Buffer {
  const sub = args[1]?.toString().toLowerCase();
  switch (sub) {
    case 'setname':
      if (args.length !== 3) return arity('client|setname');
      s.name = args[2]!.toString();
      return encodeSimple('OK');
    case 'getname':
      return encodeBulk(s.name);
    case 'id':
      return encodeInteger(s.id);
    case 'setinfo':
      return encodeSimple('OK');
    default:
      return encodeError(
        `CLIENT ${sub ?? ''} is not supported through rwsplit (it concerns one server connection)`,
      );
  }
}
