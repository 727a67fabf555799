/**
 * A tiny RESP2 client for the launcher and the tests: one connection per command, no
 * pipelining beyond `AUTH`, no library. It is a tool for driving local test servers (readiness
 * probes, `INFO replication`, `REPLICAOF`), not the proxy's codec (that is `src/redis/resp/`).
 *
 * Wire format (https://redis.io/docs/reference/protocol-spec/): a request is an array of bulk
 * strings (`*<n>\r\n` then `$<len>\r\n<bytes>\r\n` per argument); a reply starts with a type
 * byte: `+` simple string, `-` error, `:` integer, `$` bulk string (`$-1` = nil), `*` array
 * (`*-1` = nil array).
 */
import net from 'node:net';

import { ClusterError } from './errors.js';

/** One decoded RESP2 reply. Integers stay text: replication offsets need no arithmetic here. */
export type RespReply =
  | { kind: 'simple'; text: string }
  | { kind: 'error'; text: string }
  | { kind: 'integer'; text: string }
  | { kind: 'bulk'; text: string | null }
  | { kind: 'array'; items: RespReply[] | null };

/** Where to send a command. */
export interface RedisTarget {
  /** Default '127.0.0.1'. */
  host?: string;
  port: number;
  /** Sent with `AUTH` before the command when set. */
  password?: string;
  /** Connect + reply idle timeout (default 5000 ms): a SIGSTOPped server accepts but never answers. */
  timeoutMs?: number;
}

const CRLF = '\r\n';
const DEFAULT_TIMEOUT_MS = 5000;

/** Encodes one command as a RESP array of bulk strings. */
export function encodeCommand(args: readonly string[]): Buffer {
  let out = `*${args.length}${CRLF}`;
  for (const arg of args) out += `$${Buffer.byteLength(arg)}${CRLF}${arg}${CRLF}`;
  return Buffer.from(out);
}

function readLine(buf: Buffer, offset: number): { line: string; next: number } | undefined {
  const end = buf.indexOf(CRLF, offset);
  return end < 0 ? undefined : { line: buf.toString('utf8', offset, end), next: end + 2 };
}

function parseLength(line: string): number {
  const n = Number(line);
  if (!Number.isInteger(n) || n < -1) throw new Error(`bad RESP length '${line}'`);
  return n;
}

/**
 * Parses one reply starting at `offset`.
 *
 * @returns the reply and the offset after it, or undefined when `buf` holds only part of it.
 * @throws Error on bytes that are not RESP2.
 */
export function parseReply(buf: Buffer, offset = 0): { reply: RespReply; next: number } | undefined {
  const typeByte = buf[offset];
  if (typeByte === undefined) return undefined;
  const head = readLine(buf, offset + 1);
  if (head === undefined) return undefined;
  switch (String.fromCharCode(typeByte)) {
    case '+':
      return { reply: { kind: 'simple', text: head.line }, next: head.next };
    case '-':
      return { reply: { kind: 'error', text: head.line }, next: head.next };
    case ':':
      return { reply: { kind: 'integer', text: head.line }, next: head.next };
    case '$': {
      const len = parseLength(head.line);
      if (len < 0) return { reply: { kind: 'bulk', text: null }, next: head.next };
      if (buf.length < head.next + len + 2) return undefined;
      return {
        reply: { kind: 'bulk', text: buf.toString('utf8', head.next, head.next + len) },
        next: head.next + len + 2,
      };
    }
    case '*':
      return parseArray(buf, parseLength(head.line), head.next);
    default:
      throw new Error(`not a RESP2 reply: type byte 0x${typeByte.toString(16)}`);
  }
}

function parseArray(
  buf: Buffer,
  count: number,
  offset: number,
): { reply: RespReply; next: number } | undefined {
  if (count < 0) return { reply: { kind: 'array', items: null }, next: offset };
  const items: RespReply[] = [];
  let next = offset;
  for (let i = 0; i < count; i++) {
    const item = parseReply(buf, next);
    if (item === undefined) return undefined;
    items.push(item.reply);
    next = item.next;
  }
  return { reply: { kind: 'array', items }, next };
}

/**
 * Renders a reply as text, as `redis-cli --raw` prints it: strings and integers as they are,
 * nil as '', array items one per line (nested arrays flattened), an error as its message.
 */
export function replyText(reply: RespReply): string {
  switch (reply.kind) {
    case 'array':
      return (reply.items ?? []).map(replyText).join('\n');
    default:
      return reply.text ?? '';
  }
}

/**
 * Sends one command (after `AUTH <password>` when a password is given) and resolves with its
 * reply, an error reply included.
 *
 * @throws ClusterError `NODE_UNREACHABLE` when the connection fails, times out or closes early;
 * `REDIS_ERROR_REPLY` when `AUTH` is refused.
 */
export function redisRequest(target: RedisTarget, args: readonly string[]): Promise<RespReply> {
  const { host = '127.0.0.1', port, password, timeoutMs = DEFAULT_TIMEOUT_MS } = target;
  const commands = password !== undefined ? [['AUTH', password], args] : [args];
  const where = `${host}:${port}`;
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    const fail = (message: string, cause?: unknown): void => {
      socket.destroy();
      reject(new ClusterError('NODE_UNREACHABLE', `redis ${where}: ${message}`, { cause }));
    };
    let buffered = Buffer.alloc(0);
    socket.setTimeout(timeoutMs, () => fail(`no reply to ${args[0] ?? '?'} within ${timeoutMs} ms`));
    socket.once('connect', () => socket.write(Buffer.concat(commands.map(encodeCommand))));
    socket.on('error', (err) => fail(err.message, err));
    socket.once('close', () => fail('connection closed before the reply'));
    socket.on('data', (chunk: Buffer) => {
      // Replies here are small (INFO is a few KB): re-parsing from the start on each chunk is fine.
      buffered = Buffer.concat([buffered, chunk]);
      let replies: RespReply[];
      try {
        const parsed = parseAll(buffered, commands.length);
        if (parsed === undefined) return;
        replies = parsed;
      } catch (err) {
        fail(`malformed reply: ${(err as Error).message}`, err);
        return;
      }
      socket.destroy(); // 'close' then calls fail(), a no-op once the promise settled
      const [auth, reply] = replies.length === 2 ? replies : [undefined, replies[0]];
      if (auth?.kind === 'error') {
        reject(new ClusterError('REDIS_ERROR_REPLY', `redis ${where} refused AUTH: ${auth.text}`));
      } else if (reply !== undefined) resolve(reply);
    });
  });
}

function parseAll(buf: Buffer, count: number): RespReply[] | undefined {
  const replies: RespReply[] = [];
  let offset = 0;
  while (replies.length < count) {
    const parsed = parseReply(buf, offset);
    if (parsed === undefined) return undefined;
    replies.push(parsed.reply);
    offset = parsed.next;
  }
  return replies;
}

/**
 * Sends one command and resolves with its reply as text ({@link replyText}).
 *
 * @throws ClusterError `REDIS_ERROR_REPLY` with the server's message (e.g. `NOAUTH …`) when the
 * reply is an error; `NODE_UNREACHABLE` as {@link redisRequest}.
 */
export async function redisCommand(target: RedisTarget, ...args: string[]): Promise<string> {
  const reply = await redisRequest(target, args);
  if (reply.kind === 'error') {
    throw new ClusterError(
      'REDIS_ERROR_REPLY',
      `redis ${target.host ?? '127.0.0.1'}:${target.port} ${args[0] ?? ''}: ${reply.text}`,
    );
  }
  return replyText(reply);
}

/** Parses `INFO` text into its `field:value` pairs (section headers and blank lines skipped). */
export function parseInfo(text: string): Map<string, string> {
  const fields = new Map<string, string>();
  for (const line of text.split(/\r?\n/)) {
    if (line === '' || line.startsWith('#')) continue;
    const colon = line.indexOf(':');
    if (colon > 0) fields.set(line.slice(0, colon), line.slice(colon + 1));
  }
  return fields;
}
