/**
 * Differential test of the ketama ring against the real twemproxy (Debian's `nutcracker`
 * 0.5): three redis-server processes behind nutcracker, >10,000 keys written through the
 * proxy, then each server asked directly which keys it holds. `KetamaRing.locate` must name
 * the same server for every key, with both key hashes, named and unnamed servers, and
 * unequal weights.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';

import { freePorts } from '../src/cluster/free-port.js';
import { hashTagged } from '../src/sharding/hash-tag.js';
import { KetamaRing } from '../src/sharding/ketama.js';
import { twemproxyServerName, type ShardServer } from '../src/sharding/servers.js';
import { pino } from 'pino';
import { Rwsplit } from '../src/app.js';
import { PgCluster } from '../src/cluster/pg-cluster.js';
import { validateConfig } from '../src/config/load.js';

const HOST = '127.0.0.1';
const START_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 5_000;

/** Finds a system binary at its Debian path or on PATH; fails with the fix if absent. */
function systemBinary(debianPath: string): string {
  const name = path.basename(debianPath);
  const dirs = [path.dirname(debianPath), ...(process.env.PATH ?? '').split(path.delimiter)];
  for (const dir of dirs) {
    if (dir !== '' && existsSync(path.join(dir, name))) return path.join(dir, name);
  }
  assert.fail(
    `${name} is not installed: run scripts/ensure-system-deps.sh (Debian packages redis-server, nutcracker)`,
  );
}

// ---------------------------------------------------------------- a minimal RESP client

type Reply = string | number | Buffer | null | Error | Reply[];

function encodeCommand(args: readonly (string | Buffer)[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const arg of args) {
    const bytes = typeof arg === 'string' ? Buffer.from(arg) : arg;
    parts.push(Buffer.from(`$${bytes.length}\r\n`), bytes, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

/** Parses one RESP2 reply at `at`; undefined when the buffer does not hold all of it yet. */
function parseReply(buf: Buffer, at: number): { value: Reply; next: number } | undefined {
  const eol = buf.indexOf('\r\n', at);
  if (eol < 0) return undefined;
  const line = buf.toString('latin1', at + 1, eol);
  const afterLine = eol + 2;
  switch (String.fromCharCode(buf[at] as number)) {
    case '+':
      return { value: line, next: afterLine };
    case '-':
      return { value: new Error(line), next: afterLine };
    case ':':
      return { value: Number(line), next: afterLine };
    case '$': {
      const len = Number(line);
      if (len < 0) return { value: null, next: afterLine };
      if (buf.length < afterLine + len + 2) return undefined;
      return { value: buf.subarray(afterLine, afterLine + len), next: afterLine + len + 2 };
    }
    case '*': {
      const count = Number(line);
      if (count < 0) return { value: null, next: afterLine };
      const items: Reply[] = [];
      let next = afterLine;
      for (let i = 0; i < count; i++) {
        const item = parseReply(buf, next);
        if (item === undefined) return undefined;
        items.push(item.value);
        next = item.next;
      }
      return { value: items, next };
    }
    default:
      throw new Error(`bad RESP reply byte ${buf[at]}`);
  }
}

/** One connection; `pipeline` writes all commands at once and resolves with all replies. */
class RespConnection {
  private pending: Buffer = Buffer.alloc(0);
  private waiter: {
    count: number;
    replies: Reply[];
    resolve: (r: Reply[]) => void;
    reject: (e: Error) => void;
  } | null = null;

  private constructor(private readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => this.fail(new Error('connection closed')));
  }

  static connect(port: number): Promise<RespConnection> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: HOST, port });
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new RespConnection(socket));
      });
    });
  }

  pipeline(commands: readonly (readonly (string | Buffer)[])[]): Promise<Reply[]> {
    assert.equal(this.waiter, null, 'one pipeline at a time');
    return new Promise((resolve, reject) => {
      this.waiter = { count: commands.length, replies: [], resolve, reject };
      this.socket.write(Buffer.concat(commands.map(encodeCommand)));
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    let at = 0;
    for (;;) {
      const reply = this.pending.length > at ? parseReply(this.pending, at) : undefined;
      if (reply === undefined) break;
      at = reply.next;
      this.waiter?.replies.push(reply.value);
    }
    // Copy the unparsed tail: replies handed out keep views of the old buffer.
    this.pending = Buffer.from(this.pending.subarray(at));
    const w = this.waiter;
    if (w !== null && w.replies.length >= w.count) {
      this.waiter = null;
      w.resolve(w.replies);
    }
  }

  private fail(err: Error): void {
    const w = this.waiter;
    this.waiter = null;
    w?.reject(err);
  }
}

/** Runs commands in pipelined batches on a fresh connection. */
async function runPipelined(port: number, commands: (string | Buffer)[][], batch = 2_000): Promise<Reply[]> {
  const conn = await RespConnection.connect(port);
  try {
    const replies: Reply[] = [];
    for (let i = 0; i < commands.length; i += batch) {
      replies.push(...(await conn.pipeline(commands.slice(i, i + batch))));
    }
    return replies;
  } finally {
    conn.close();
  }
}

// ---------------------------------------------------------------- processes

interface Child {
  proc: ChildProcess;
  output: () => string;
}

function startProcess(binary: string, args: string[], cwd: string): Child {
  const proc = spawn(binary, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (chunk: Buffer): void => {
    output = (output + chunk.toString('utf8')).slice(-4_000);
  };
  proc.stdout?.on('data', keep);
  proc.stderr?.on('data', keep);
  proc.on('error', (err) => keep(Buffer.from(String(err))));
  return { proc, output: () => output };
}

/** Waits until `port` answers PING with PONG (redis-server and nutcracker both do). */
async function waitReady(child: Child, port: number, what: string): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (child.proc.exitCode !== null || child.proc.signalCode !== null) {
      assert.fail(`${what} exited during start-up:\n${child.output()}`);
    }
    try {
      const [pong] = await runPipelined(port, [['PING']]);
      if (pong === 'PONG') return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) assert.fail(`${what} not ready on port ${port}:\n${child.output()}`);
    await delay(50);
  }
}

async function stopProcess(child: Child): Promise<void> {
  const { proc } = child;
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  proc.kill('SIGTERM');
  const stopped = await Promise.race([exited.then(() => true), delay(STOP_TIMEOUT_MS).then(() => false)]);
  if (!stopped) {
    proc.kill('SIGKILL');
    await exited;
  }
}

// ---------------------------------------------------------------- keys

/** Deterministic PRNG (mulberry32) so a failure reproduces. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Over 10,000 distinct keys: plain, `{tag}` keys sharing tags, empty and unclosed tags, a tag
 * after a stray `}`, UTF-8, random binary keys (bytes >= 0x80 exercise twemproxy's signed
 * `char` in FNV), and the empty key (which twemproxy hashes as 0).
 */
function testKeys(): Buffer[] {
  const keys = new Map<string, Buffer>();
  const add = (k: Buffer | string): void => {
    const b = typeof k === 'string' ? Buffer.from(k, 'utf8') : k;
    keys.set(b.toString('hex'), b);
  };
  add('');
  for (let i = 0; i < 4_000; i++) add(`key:${i}`);
  for (let i = 0; i < 3_000; i++) add(`{user:${i % 300}}:field:${i}`);
  for (let i = 0; i < 500; i++) add(`{}empty-tag:${i}`);
  for (let i = 0; i < 500; i++) add(`x{}y{z}:${i}`);
  for (let i = 0; i < 300; i++) add(`a}b{c${i % 50}}d:${i}`);
  for (let i = 0; i < 300; i++) add(`{unclosed:${i}`);
  for (let i = 0; i < 400; i++) add(`ключ:{группа${i % 40}}:${i}`);
  for (let i = 0; i < 200; i++) add(`clé-${i}-🙂`);
  const random = prng(0x5eed);
  while (keys.size < 11_000) {
    const len = 1 + Math.floor(random() * 40);
    add(Buffer.from(Array.from({ length: len }, () => Math.floor(random() * 256))));
  }
  return [...keys.values()];
}

// ---------------------------------------------------------------- the test

interface PoolCase {
  label: string;
  hash: 'fnv1a_64' | 'md5';
  weights: number[];
  /** Server names on the `servers:` lines; undefined = unnamed (hashed as host:port). */
  names?: string[];
}

const CASES: PoolCase[] = [
  {
    label: 'fnv1a_64, named servers, weights 1,2,1',
    hash: 'fnv1a_64',
    weights: [1, 2, 1],
    names: ['name1', 'name2', 'name3'],
  },
  {
    label: 'md5, named servers, weights 1,2,1',
    hash: 'md5',
    weights: [1, 2, 1],
    names: ['name1', 'name2', 'name3'],
  },
  { label: 'fnv1a_64, unnamed servers, weights 3,5,7', hash: 'fnv1a_64', weights: [3, 5, 7] },
  { label: 'md5, unnamed servers, equal weights', hash: 'md5', weights: [1, 1, 1] },
];

function nutcrackerConfig(listenPort: number, redisPorts: number[], c: PoolCase): string {
  const servers = redisPorts.map((port, i) => {
    const name = c.names?.[i];
    return `   - ${HOST}:${port}:${c.weights[i]}${name === undefined ? '' : ` ${name}`}`;
  });
  return [
    'pool:',
    `  listen: ${HOST}:${listenPort}`,
    `  hash: ${c.hash}`,
    '  hash_tag: "{}"',
    '  distribution: ketama',
    '  redis: true',
    '  auto_eject_hosts: false',
    '  timeout: 5000',
    '  servers:',
    ...servers,
    '',
  ].join('\n');
}

describe('KetamaRing places keys exactly like twemproxy (nutcracker 0.5)', () => {
  const redisServer = systemBinary('/usr/bin/redis-server');
  const nutcracker = systemBinary('/usr/sbin/nutcracker');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rwsplit-ketama-'));
  const redis: Child[] = [];
  let redisPorts: number[] = [];
  const keys = testKeys();

  let pg: PgCluster | null = null;

  before(async () => {
    pg = await PgCluster.start({ replicas: 0 }); // rwsplit's config needs a PostgreSQL node
    redisPorts = await freePorts(3);
    for (const port of redisPorts) {
      const args = [
        '--port',
        String(port),
        '--bind',
        HOST,
        '--save',
        '',
        '--appendonly',
        'no',
        '--daemonize',
        'no',
      ];
      redis.push(startProcess(redisServer, args, dir));
    }
    await Promise.all(redis.map((child, i) => waitReady(child, redisPorts[i] as number, 'redis-server')));
  });

  after(async () => {
    await pg?.stop();
    await Promise.all(redis.map(stopProcess));
    rmSync(dir, { recursive: true, force: true });
  });

  for (const c of CASES) {
    test(c.label, async () => {
      await Promise.all(redisPorts.map((port) => runPipelined(port, [['FLUSHALL']])));
      const [listenPort, statsPort] = (await freePorts(2)) as [number, number];
      const confFile = path.join(dir, `nutcracker-${listenPort}.yml`);
      writeFileSync(confFile, nutcrackerConfig(listenPort, redisPorts, c));
      const args = ['-c', confFile, '-s', String(statsPort), '-a', HOST, '-p', `${confFile}.pid`, '-v', '4'];
      const proxy = startProcess(nutcracker, args, dir);
      try {
        await waitReady(proxy, listenPort, 'nutcracker');
        const writes = await runPipelined(
          listenPort,
          keys.map((k) => ['SET', k, '1']),
        );
        const failed = writes.filter((r) => r !== 'OK');
        assert.equal(failed.length, 0, `SET through nutcracker failed: ${String(failed[0])}`);
      } finally {
        await stopProcess(proxy);
      }

      const holders = await Promise.all(
        redisPorts.map((port) =>
          runPipelined(
            port,
            keys.map((k) => ['EXISTS', k]),
          ),
        ),
      );
      const servers: ShardServer[] = redisPorts.map((port, i) => ({
        name: twemproxyServerName(HOST, port, c.names?.[i]),
        weight: c.weights[i] as number,
      }));
      const ring = new KetamaRing(servers, c.hash);
      const perServer = [0, 0, 0];
      const mismatches: string[] = [];
      keys.forEach((key, k) => {
        const actual = holders.flatMap((replies, server) => (replies[k] === 1 ? [server] : []));
        const expected = ring.locate(hashTagged(key));
        if (actual.length !== 1 || actual[0] !== expected) {
          mismatches.push(
            `key ${key.toString('hex')}: on servers [${actual.join(',')}], ring says ${expected}`,
          );
        }
        perServer[expected] = (perServer[expected] ?? 0) + 1;
      });
      assert.equal(
        mismatches.length,
        0,
        `${mismatches.length} of ${keys.length} keys misplaced:\n${mismatches.slice(0, 10).join('\n')}`,
      );
      // Sanity: the case really spreads keys over all three servers.
      for (const count of perServer)
        assert.ok(count > keys.length / 10, `uneven spread ${perServer.join(',')}`);

      // End to end: every key twemproxy wrote is found through rwsplit with the same pool.
      const app = await Rwsplit.start(
        validateConfig({
          workers: 1,
          listen: { postgres: { port: 0 }, http: { port: 0 }, redis: { port: 0 } },
          postgres: { nodes: pg!.nodes.map((n) => ({ id: n.id, host: n.host, port: n.port })) },
          redis: {
            hash: { distribution: 'ketama', function: c.hash },
            shards: servers.map((s, i) => ({
              name: s.name,
              weight: s.weight,
              nodes: [{ id: `r${i}`, host: HOST, port: redisPorts[i] }],
            })),
          },
        }),
        { log: pino({ level: 'silent' }) },
      );
      try {
        const reads = await runPipelined(
          app.redis!.address!.port,
          keys.map((k) => ['GET', k]),
        );
        const missing = reads.filter((r) => r !== '1' && !(Buffer.isBuffer(r) && r.toString() === '1'));
        assert.equal(missing.length, 0, `${missing.length} of ${keys.length} keys not found through rwsplit`);
      } finally {
        await app.stop();
      }
    });
  }
});
