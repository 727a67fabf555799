/**
 * The Redis load of a chaos run, through rwsplit with ioredis: writers `SET chaos:w:<id>`,
 * read-your-writes sessions `SET` their own key then `GET` it on the same connection, and
 * readers. Redis does not say which server ran a command, so acknowledged writes carry no
 * node (the double-primary figure is PostgreSQL's only).
 */
import { Redis } from 'ioredis';

import type { Recorder } from './checker.js';
import {
  startSessions,
  type RunningLoad,
  type SessionDriver,
  type SessionLoopOptions,
} from './session-loop.js';

/** How many sessions of each kind, and where they connect. */
export interface RedisLoadOptions extends SessionLoopOptions {
  /** rwsplit's Redis port */
  port: number;
  writers: number;
  rywSessions: number;
  readers: number;
  /** client-side limit on one command (longer than rwsplit's failover.bufferMs) */
  commandTimeoutMs: number;
}

const WRITE_PREFIX = 'chaos:w:';
const RYW_PREFIX = 'chaos:ryw:';

/**
 * An ioredis client as an application that wants to see failures would set it up: it
 * reconnects by itself every `reconnectDelayMs`, commands issued while it does wait in the
 * offline queue but fail after one failed reconnection, and a command in flight when the
 * link broke is not silently resent (its outcome is unknown: the application sees an error).
 */
function redisClient(port: number, opts: RedisLoadOptions): Redis {
  return new Redis({
    host: '127.0.0.1',
    port,
    lazyConnect: true,
    enableOfflineQueue: true,
    autoResendUnfulfilledCommands: false,
    maxRetriesPerRequest: 1,
    retryStrategy: () => opts.reconnectDelayMs,
    commandTimeout: opts.commandTimeoutMs,
  });
}

/** Starts every session; writer ids come from one counter, unique and increasing. */
export function startRedisLoad(opts: RedisLoadOptions, rec: Recorder): RunningLoad {
  let nextId = 1;
  const ids = (): number => nextId++;
  const drivers: SessionDriver<Redis>[] = [];
  for (let i = 0; i < opts.writers; i++)
    drivers.push(redisDriver(opts, drivers.length, rec, writerStep(ids)));
  for (let i = 0; i < opts.rywSessions; i++) drivers.push(redisDriver(opts, drivers.length, rec, rywStep(i)));
  for (let i = 0; i < opts.readers; i++)
    drivers.push(redisDriver(opts, drivers.length, rec, readerStep(opts.rywSessions)));
  return startSessions(drivers as SessionDriver<unknown>[], rec, opts);
}

type RedisStep = (client: Redis, session: number, rec: Recorder) => Promise<void>;

function redisDriver(
  opts: RedisLoadOptions,
  session: number,
  rec: Recorder,
  step: RedisStep,
): SessionDriver<Redis> {
  return {
    connect: async () => {
      const client = redisClient(opts.port, opts);
      client.on('error', () => undefined); // each failed command is recorded where it fails
      try {
        await client.connect();
      } catch (err) {
        client.disconnect();
        throw err;
      }
      // ioredis reconnects by itself: count each time it is ready again.
      client.on('ready', () => rec.reconnected());
      return client;
    },
    step: async (client) => {
      await step(client, session, rec);
      return true;
    },
    close: async (client) => {
      client.disconnect();
    },
  };
}

function writerStep(ids: () => number): RedisStep {
  return async (client, session, rec) => {
    const id = ids();
    const sentAt = rec.now();
    try {
      await client.set(`${WRITE_PREFIX}${id}`, String(id));
      rec.ack({ key: `w:${id}`, value: id, session, sentAt, node: null });
    } catch (err) {
      rec.error(session, 'write', err);
    }
  };
}

function rywStep(row: number): RedisStep {
  let counter = 0;
  let lastAcked = 0;
  return async (client, session, rec) => {
    const value = ++counter;
    const sentAt = rec.now();
    try {
      await client.set(`${RYW_PREFIX}${row}`, String(value));
      rec.ack({ key: `ryw:${row}`, value, session, sentAt, node: null });
      lastAcked = value;
    } catch (err) {
      rec.error(session, 'write', err);
    }
    try {
      const seen = await client.get(`${RYW_PREFIX}${row}`);
      rec.read({ session, seen: seen === null ? null : Number(seen), expectedMin: lastAcked, node: null });
    } catch (err) {
      rec.error(session, 'read', err);
    }
  };
}

function readerStep(rows: number): RedisStep {
  let n = 0;
  return async (client, session, rec) => {
    try {
      const seen = await client.get(`${RYW_PREFIX}${n++ % Math.max(rows, 1)}`);
      rec.read({ session, seen: seen === null ? null : Number(seen), expectedMin: null, node: null });
    } catch (err) {
      rec.error(session, 'read', err);
    }
  };
}

/**
 * The final state of the keys `acked` names, read on a direct connection to `port` (the
 * surviving primary), in the checker's `w:<id>` / `ryw:<session>` form.
 */
export async function readRedisState(port: number, keys: Iterable<string>): Promise<Map<string, number>> {
  const client = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 1 });
  client.on('error', () => undefined);
  await client.connect();
  try {
    const wanted = [...new Set(keys)];
    const out = new Map<string, number>();
    for (let i = 0; i < wanted.length; i += 1000) {
      const chunk = wanted.slice(i, i + 1000);
      const values = await client.mget(...chunk.map(redisKey));
      chunk.forEach((k, j) => {
        const v = values[j];
        if (v !== null && v !== undefined) out.set(k, Number(v));
      });
    }
    return out;
  } finally {
    client.disconnect();
  }
}

/** The Redis key behind a checker key. */
function redisKey(checkerKey: string): string {
  if (checkerKey.startsWith('w:')) return `${WRITE_PREFIX}${checkerKey.slice(2)}`;
  return `${RYW_PREFIX}${checkerKey.slice(4)}`;
}
