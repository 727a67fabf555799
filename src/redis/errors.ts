/**
 * Every error reply rwsplit itself sends to a Redis client, in one place: what kind of error
 * it is (what the metrics count), the prefix clients branch on (`ERR`, `CLUSTERDOWN`,
 * `CROSSSLOT`, …) and the text, which names the `redis.*` setting to change where one governs
 * it. The servers' own errors pass through untouched and are not counted here.
 *
 * Texts that repeat redis-server's own answer to a malformed command (arity, syntax, a bad
 * value) are kept byte for byte as Redis writes them, so clients react as they would to a
 * server. The failover errors (no primary, a lost connection) are built in ha/failover-errors.ts
 * from the shard's state, on this catalogue.
 */
import { encodeError } from './resp/index.js';

/** The catalogue: each kind of error rwsplit sends, with its RESP error prefix. */
export const REDIS_ERROR_KINDS = {
  /** redis-server's own answer to a malformed command: arity, syntax, a value out of range, an unknown subcommand */
  usage: 'ERR',
  /** a command name the servers do not know (Redis's text, the arguments quoted as sent) */
  unknownCommand: 'ERR',
  /** bytes that break RESP, or a length above `redis.limits` (the connection is closed) */
  protocol: 'ERR',
  /** a command before AUTH when `redis.auth` requires it */
  noAuth: 'NOAUTH',
  /** AUTH or HELLO with credentials `redis.auth` does not know */
  wrongPass: 'WRONGPASS',
  /** HELLO with a protocol version other than 2 or 3 */
  noProto: 'NOPROTO',
  /** a command rwsplit refuses although a server would run it (it would change a shared connection, or span shards) */
  notSupported: 'ERR',
  /** a transaction, WATCH or multi-key command whose keys are on different shards */
  crossShard: 'CROSSSLOT',
  /** EXEC of a transaction that had a refused command */
  execAbort: 'EXECABORT',
  /** no writable primary for a shard (after waiting `redis.failover.bufferMs`) */
  noPrimary: 'CLUSTERDOWN',
  /** no node could take the command: none reachable, a connection that could not be opened */
  unavailable: 'CLUSTERDOWN',
  /** the connection to the node died before its reply: the command may or may not have run */
  lostConnection: 'ERR',
  /** a write not confirmed by `redis.waitReplicas` replicas in time */
  notReplicated: 'ERR',
  /** a read held for a PostgreSQL token (change streams) that could not be honoured */
  tryAgain: 'TRYAGAIN',
  /** a client cut off by a limit: `redis.limits.maxClients`, `loginTimeoutMs`, the output buffer limits */
  limit: 'ERR',
  /** the RWSPLIT command (consistency level, causal token) given a bad argument */
  rwsplitCommand: 'ERR',
  /** what should not happen: a server's answer that does not match what rwsplit sent */
  internal: 'ERR',
} as const satisfies Record<string, string>;

export type RedisErrorKind = keyof typeof REDIS_ERROR_KINDS;

/**
 * Errors made so far in this process, by kind. Each is made only to be sent, so this counts
 * the errors sent (`rwsplit_redis_client_errors_total`). Process-wide rather than per proxy:
 * the error texts are built in helpers that have no proxy at hand, and a process runs one
 * instance (each data-plane worker counts its own; the metrics add them up).
 */
const made = Object.fromEntries(Object.keys(REDIS_ERROR_KINDS).map((k) => [k, 0])) as Record<
  RedisErrorKind,
  number
>;

/** The counts by kind, for the metrics. */
export function redisErrorCounts(): Readonly<Record<RedisErrorKind, number>> {
  return made;
}

/** `-<prefix> <message>` for an error of `kind`, counted. `latin1`: the message's characters are bytes. */
export function redisError(kind: RedisErrorKind, message: string, encoding?: 'utf8' | 'latin1'): Buffer {
  made[kind]++;
  return encodeError(message, REDIS_ERROR_KINDS[kind], encoding);
}

// ---- redis-server's own texts ---------------------------------------------------------

/** `-ERR wrong number of arguments for '<name>' command` (`name` as Redis prints it, e.g. `client|caching`) */
export function arityError(name: string): Buffer {
  return redisError('usage', `wrong number of arguments for '${name}' command`);
}

export function syntaxError(): Buffer {
  return redisError('usage', 'syntax error');
}

export function notIntegerError(): Buffer {
  return redisError('usage', 'value is not an integer or out of range');
}

/** CLIENT SETNAME's and HELLO SETNAME's refusal of a name with spaces or control characters */
export function clientNameError(): Buffer {
  return redisError('usage', 'Client names cannot contain spaces, newlines or special characters.');
}

/** Any other answer of redis-server to a bad argument, its text as Redis writes it. */
export function usageError(redisText: string): Buffer {
  return redisError('usage', redisText);
}

// ---- the client's session -------------------------------------------------------------

/** RESP that cannot be read (the connection is closed after it, as redis-server does). */
export function protocolViolationError(why: string): Buffer {
  return redisError('protocol', `Protocol error: ${why}`);
}

export function noAuthError(): Buffer {
  return redisError('noAuth', 'Authentication required.');
}

export function wrongPassError(): Buffer {
  return redisError('wrongPass', 'invalid username-password pair or user is disabled.');
}

export function noProtoError(): Buffer {
  return redisError('noProto', 'unsupported protocol version');
}

/** A command rwsplit refuses, `why` saying what it would break and what to do instead. */
export function notSupportedError(why: string): Buffer {
  return redisError('notSupported', why);
}

/** A multi-key command whose keys rwsplit cannot find, with more than one shard to choose from. */
export function keysUnknownError(command: string): Buffer {
  return redisError('notSupported', `rwsplit cannot locate the keys of '${command}' with these arguments`);
}

/** A transaction or WATCH spanning shards; `what` names it ("this transaction", "WATCH", …). */
export function crossShardError(what: string): Buffer {
  return redisError(
    'crossShard',
    `Keys in ${what} don't hash to the same shard; put them under one hash tag, e.g. {user:42}:a and {user:42}:b`,
  );
}

export function execAbortError(): Buffer {
  return redisError('execAbort', 'Transaction discarded because of previous errors.');
}

export function rwsplitCommandError(message: string): Buffer {
  return redisError('rwsplitCommand', message);
}

// ---- the nodes ------------------------------------------------------------------------

/** `-CLUSTERDOWN <why>`: no node could take the command (`why` names the shard or node). */
export function unavailableError(why: string): Buffer {
  return redisError('unavailable', why);
}

/** The text of the errors for a link to `nodeId` that died before the reply, where no shard context adds to it. */
export function lostLinkText(nodeId: string): string {
  return `lost the connection to ${nodeId}`;
}

/** A link that died before the reply, `text` from ha/failover-errors.ts's lostConnectionMessage or lostLinkText. */
export function lostConnectionError(text: string): Buffer {
  return redisError('lostConnection', text);
}

/** EXEC's link died: the client cannot know whether the transaction ran. */
export function execLostError(): Buffer {
  return redisError('lostConnection', 'connection lost during EXEC; the transaction may or may not have run');
}

/** A write not confirmed by `redis.waitReplicas` in time; `what` says what WAIT answered. */
export function notReplicatedError(
  nodeId: string,
  wait: { numReplicas: number; timeoutMs: number },
  what: string,
): Buffer {
  return redisError(
    'notReplicated',
    `the write was not confirmed by ${wait.numReplicas} replica(s) within ${wait.timeoutMs} ms ` +
      `(redis.waitReplicas; ${what}); it may still exist on ${nodeId}`,
  );
}

/** A read held for a PostgreSQL token whose wait failed (`why` from the change streams). */
export function tryAgainError(why: string): Buffer {
  return redisError('tryAgain', why);
}

// ---- limits ---------------------------------------------------------------------------

export function maxClientsError(maxClients: number): Buffer {
  return redisError('limit', `max number of clients reached (redis.limits.maxClients = ${maxClients})`);
}

export function loginTimeoutError(loginTimeoutMs: number): Buffer {
  return redisError(
    'limit',
    `authentication did not finish in time (redis.limits.loginTimeoutMs = ${loginTimeoutMs})`,
  );
}

/** A client cut off for a limit (`why` names it and its setting: output buffer, buffered bytes). */
export function cutOffError(why: string): Buffer {
  return redisError('limit', why);
}

/** A reply rwsplit could not pair with its command (a server's answer shorter than announced). */
export function internalError(why: string): Buffer {
  return redisError('internal', why);
}
