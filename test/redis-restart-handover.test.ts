/**
 * Graceful restart with Redis clients that never resend: rwsplit runs as `bin/rwsplit.js start
 * --config` (a child process) in front of a Redis primary + replica and is restarted twice
 * (POST /api/restart, then SIGUSR2 to the new process) while clients work. The clients count
 * every command and every reply on their own sockets: one sends a command and waits for its
 * reply (read-your-writes, database 2, a name), one pipelines 16 commands at a time (RESP3,
 * database 3, a name), plus ioredis with its resend turned off (what hung before clients were
 * handed over) and redis-benchmark loops, unpipelined and with -P 16, on long-lived
 * connections. A subscriber (state that does not move) is closed at a reply boundary.
 *
 * Asserted: every command sent before, during and after the restarts got exactly one reply,
 * within a bounded wait; no reply is an error; no connection of the counting clients was closed
 * (they were handed over, with their database, name and RESP version); INCR answers count up
 * by one each time (each command ran once); every acknowledged SET is on the primary
 * afterwards in its database; a read-your-writes GET always saw its own SET.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { stringify } from 'yaml';
import { freePorts } from '../src/cluster/free-port.js';
import { isProcessAlive } from '../src/cluster/process-tree.js';
import { RedisCluster } from '../src/cluster/redis-cluster.js';
import {
  encodeCommand,
  parseReply,
  ReplyReader,
  RespErrorValue,
  type RespValue,
} from '../src/redis/resp/index.js';
import { testWorkers, waitFor } from './support/stack.js';

const bin = path.resolve('bin/rwsplit.js');
const TOKEN = 'redis-handover-test-token';
/** A reply not there after this long counts as a hang (the restarts themselves take ~1 s). */
const REPLY_WAIT_MS = 15_000;

/** A RESP client on a raw socket that counts what it sends and receives; it never resends. */
class CountingClient {
  sent = 0;
  replies = 0;
  /** replies that arrived with no command waiting for them */
  extra = 0;
  /** commands still unanswered when the connection closed */
  lostAtClose = 0;
  closed = false;
  hung = 0;
  errors: string[] = [];
  /** sent while the restarts ran (from the first request to the last old process's exit) */
  sentDuringRestart = 0;
  private readonly waiting: ((reply: RespValue | Error) => void)[] = [];
  private readonly reader = new ReplyReader();

  private constructor(private readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) =>
      this.reader.push(chunk, (raw) => {
        this.replies++;
        const w = this.waiting.shift();
        if (!w) this.extra++;
        else w(parseReply(raw));
      }),
    );
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.closed = true;
      this.lostAtClose = this.waiting.length;
      for (const w of this.waiting.splice(0)) w(new Error('connection closed'));
    });
  }

  static connect(port: number): Promise<CountingClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(new CountingClient(s)));
      s.once('error', reject);
    });
  }

  /** Sends the commands in one write; resolves with their replies (an Error for a hang or a close). */
  send(commands: (string | number)[][], restarting: boolean): Promise<(RespValue | Error)[]> {
    this.sent += commands.length;
    if (restarting) this.sentDuringRestart += commands.length;
    const replies = commands.map(
      () =>
        new Promise<RespValue | Error>((resolve) => {
          const timer = setTimeout(() => {
            this.hung++;
            resolve(new Error('no reply'));
          }, REPLY_WAIT_MS);
          this.waiting.push((r) => {
            clearTimeout(timer);
            resolve(r);
          });
        }),
    );
    this.socket.write(Buffer.concat(commands.map((c) => encodeCommand(c.map(String)))));
    return Promise.all(replies);
  }

  /** One command; an error reply or a lost reply is recorded. */
  async call(command: (string | number)[], restarting = false): Promise<RespValue | null> {
    const [r] = await this.send([command], restarting);
    return this.check(command, r!);
  }

  check(command: (string | number)[], r: RespValue | Error): RespValue | null {
    if (r instanceof RespErrorValue || r instanceof Error) {
      this.errors.push(`${command[0]}: ${r.message}`);
      return null;
    }
    return r;
  }

  close(): void {
    this.socket.destroy();
  }
}

const text = (v: RespValue | null): string | null =>
  Buffer.isBuffer(v) ? v.toString() : (v as string | null);

/** What a load acknowledged: SET keys with their values, and its INCR count. */
interface Acked {
  sets: Map<string, string>;
  incrs: number;
  /** INCR answers that were not the previous one plus one */
  incrOutOfStep: number;
  staleReads: number;
}

/** One command at a time: SET, GET of it (read-your-writes), INCR. */
async function unpipelined(
  c: CountingClient,
  name: string,
  running: () => boolean,
  restarting: () => boolean,
) {
  const acked: Acked = { sets: new Map(), incrs: 0, incrOutOfStep: 0, staleReads: 0 };
  for (let i = 0; running() && !c.closed; i++) {
    const key = `ho:${name}:${i}`;
    if ((await c.call(['SET', key, i], restarting())) === null) continue;
    acked.sets.set(key, String(i));
    const got = await c.call(['GET', key], restarting());
    if (text(got) !== String(i)) acked.staleReads++;
    const n = await c.call(['INCR', `ho:${name}:count`], restarting());
    if (n === null) continue;
    if (Number(n) !== ++acked.incrs) acked.incrOutOfStep++;
    await new Promise((r) => setTimeout(r, 2));
  }
  return acked;
}

/** Pipelines of 16: SET and INCR alternating. */
async function pipelined(c: CountingClient, name: string, running: () => boolean, restarting: () => boolean) {
  const acked: Acked = { sets: new Map(), incrs: 0, incrOutOfStep: 0, staleReads: 0 };
  for (let batch = 0; running() && !c.closed; batch++) {
    const commands: (string | number)[][] = [];
    for (let j = 0; j < 8; j++) {
      commands.push(['SET', `ho:${name}:${batch}:${j}`, batch * 8 + j]);
      commands.push(['INCR', `ho:${name}:count`]);
    }
    const replies = await c.send(commands, restarting());
    replies.forEach((r, k) => {
      const cmd = commands[k]!;
      if (c.check(cmd, r) === null) return;
      if (cmd[0] === 'SET') acked.sets.set(String(cmd[1]), String(cmd[2]));
      else if (Number(r) !== ++acked.incrs) acked.incrOutOfStep++;
    });
    await new Promise((r) => setTimeout(r, 2));
  }
  return acked;
}

/** redis-benchmark over and over on long-lived connections (-k 1) until stopped. */
async function benchmarkLoop(port: number, pipeline: number, running: () => boolean): Promise<string[]> {
  const bad: string[] = [];
  while (running()) {
    const r = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn(
        'redis-benchmark',
        [
          '-h',
          '127.0.0.1',
          '-p',
          String(port),
          '-k',
          '1',
          '-c',
          '2',
          '-n',
          '4000',
          '-P',
          String(pipeline),
        ].concat(['-t', 'set,get', '-q']),
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      // A run that hangs on a reply never ends: bounded.
      const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      child.on('close', (code) => {
        clearTimeout(timer);
        resolve({ code, out });
      });
    });
    if (r.code !== 0 || /error|closed/i.test(r.out))
      bad.push(`-P ${pipeline}: exit ${r.code}: ${r.out.slice(-300)}`);
  }
  return bad;
}

describe('graceful restart hands Redis clients over', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rwsplit-redis-handover-'));
  let redis: RedisCluster;
  let first: ChildProcess;
  let firstExit: Promise<number | null>;
  let httpPort: number;
  let redisPort: number;
  const successors: number[] = [];

  before(async () => {
    redis = await RedisCluster.start({ shards: 1, replicas: 1 });
    [httpPort, redisPort] = (await freePorts(2)) as [number, number];
    const shard = redis.shard(redis.shardNames[0]!);
    const config = {
      // RWSPLIT_TEST_WORKERS=2: the clients are handed over from worker to worker.
      ...testWorkers(),
      listen: { http: { host: '127.0.0.1', port: httpPort }, redis: { host: '127.0.0.1', port: redisPort } },
      redis: {
        shards: [
          {
            name: 's1',
            nodes: [shard.primary, ...shard.replicas].map((n) => ({ id: n.id, host: n.host, port: n.port })),
          },
        ],
      },
      admin: { token: TOKEN },
      restart: { drainTimeoutMs: 20_000 },
      logging: { level: 'info' },
    };
    writeFileSync(path.join(dir, 'rwsplit.yaml'), stringify(config));
    const log = path.join(dir, 'rwsplit.log');
    writeFileSync(log, '');
    const fd = openSync(log, 'a');
    first = spawn(process.execPath, [bin, 'start', '--config', path.join(dir, 'rwsplit.yaml')], {
      stdio: ['ignore', fd, fd],
    });
    firstExit = new Promise((resolve) => first.on('exit', (code) => resolve(code)));
    await waitFor(
      'rwsplit serving both nodes',
      async () => {
        const nodes = (await fetch(`http://127.0.0.1:${httpPort}/api/nodes`)
          .then((r) => r.json())
          .catch(() => [])) as { state: string }[];
        return nodes.length === 2 && nodes.every((n) => n.state === 'up');
      },
      30_000,
    );
  });

  after(async () => {
    if (first.exitCode === null) first.kill('SIGKILL');
    for (const pid of successors) if (isProcessAlive(pid)) process.kill(pid, 'SIGTERM');
    await waitFor('rwsplit processes gone', () => successors.every((p) => !isProcessAlive(p)), 10_000).catch(
      () => successors.forEach((p) => isProcessAlive(p) && process.kill(p, 'SIGKILL')),
    );
    await redis?.stop();
    if (process.env.RWSPLIT_KEEP_LOGS) console.log(readFileSync(path.join(dir, 'rwsplit.log'), 'utf8'));
    rmSync(dir, { recursive: true, force: true });
  });

  test('two restarts: every command answered once, none hangs, no client closed, no write lost', async (t) => {
    let running = true;
    let restarting = false;
    const isRunning = (): boolean => running;
    const isRestarting = (): boolean => restarting;

    // Connection state that must move with the socket.
    const one = await CountingClient.connect(redisPort);
    assert.equal(await one.call(['SELECT', 2]), 'OK');
    assert.equal(await one.call(['CLIENT', 'SETNAME', 'one-at-a-time']), 'OK');
    assert.equal(await one.call(['RWSPLIT', 'CONSISTENCY', 'read-your-writes']), 'OK');
    const piped = await CountingClient.connect(redisPort);
    assert.ok((await piped.call(['HELLO', 3])) instanceof Map, 'HELLO 3 answers a RESP3 map');
    assert.equal(await piped.call(['SELECT', 3]), 'OK');
    assert.equal(await piped.call(['CLIENT', 'SETNAME', 'pipelined']), 'OK');
    // State that cannot move: closed at a reply boundary (its SUBSCRIBE was answered).
    const subscriber = await CountingClient.connect(redisPort);
    assert.ok(Array.isArray(await subscriber.call(['SUBSCRIBE', 'ho-channel'])));

    const loads = [
      unpipelined(one, 'one', isRunning, isRestarting),
      pipelined(piped, 'piped', isRunning, isRestarting),
    ] as const;
    // ioredis as the chaos loader runs it: no resend of a command in flight when a connection closes.
    const io = new Redis({
      host: '127.0.0.1',
      port: redisPort,
      lazyConnect: true,
      autoResendUnfulfilledCommands: false,
      maxRetriesPerRequest: 1,
      commandTimeout: REPLY_WAIT_MS,
    });
    io.on('error', () => undefined);
    await io.connect();
    const ioErrors: string[] = [];
    let ioAcked = 0;
    const ioLoad = (async () => {
      for (let i = 0; running; i++) {
        try {
          await io.set(`ho:io:${i}`, String(i));
          ioAcked++;
        } catch (err) {
          ioErrors.push((err as Error).message);
        }
        await new Promise((r) => setTimeout(r, 2));
      }
    })();
    const benchmarks = [benchmarkLoop(redisPort, 1, isRunning), benchmarkLoop(redisPort, 16, isRunning)];

    // A failed assertion must stop the loads, or the test would wait for them forever.
    t.after(() => {
      running = false;
    });
    await new Promise((r) => setTimeout(r, 1000));
    restarting = true;
    const res = await fetch(`http://127.0.0.1:${httpPort}/api/restart`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    assert.equal(res.status, 200, await res.clone().text());
    const second = ((await res.json()) as { pid: number }).pid;
    successors.push(second);
    assert.equal(await firstExit, 0, 'the old process drained and exited on its own');
    await waitFor('the subscriber closed', () => subscriber.closed, 10_000);

    // Second restart: the clients handed over once are handed over again.
    await new Promise((r) => setTimeout(r, 1000));
    process.kill(second, 'SIGUSR2');
    await waitFor('the second old process gone', () => !isProcessAlive(second), 30_000);
    restarting = false;
    const log = readFileSync(path.join(dir, 'rwsplit.log'), 'utf8');
    const pids = [...log.matchAll(/"newPid":(\d+)[^\n]*the new process serves/g)].map((x) => Number(x[1]));
    assert.equal(pids.length, 2, 'both restarts logged the new pid');
    successors.push(pids[1]!);
    const handed = [...log.matchAll(/"redis":\{"handedOver":(\d+),"atBoundary":(\d+)/g)].map((x) => [
      Number(x[1]),
      Number(x[2]),
    ]);
    assert.equal(handed.length, 2, 'both old processes logged their drain');
    // The two counting clients and ioredis at least, each time; the first also closed the subscriber.
    assert.ok(
      handed.every(([n]) => n! >= 3),
      `clients handed over: ${JSON.stringify(handed)}`,
    );
    assert.ok(handed[0]![1]! >= 1, 'the subscriber was closed at a boundary');

    const sentBefore = one.sent + piped.sent;
    await new Promise((r) => setTimeout(r, 1000));
    assert.ok(one.sent + piped.sent > sentBefore, 'the clients go on through the third process');
    // The state moved with the sockets (twice).
    const info = text(await one.call(['CLIENT', 'INFO']));
    assert.match(info ?? '', / name=one-at-a-time /);
    assert.match(info ?? '', / db=2 /);
    assert.match(info ?? '', /\bresp=2\b/);
    assert.equal(text(await one.call(['RWSPLIT', 'CONSISTENCY'])), 'read-your-writes');
    const pipedInfo = text(await piped.call(['CLIENT', 'INFO']));
    assert.match(pipedInfo ?? '', / name=pipelined /);
    assert.match(pipedInfo ?? '', / db=3 /);
    assert.match(pipedInfo ?? '', /\bresp=3\b/);

    running = false;
    const [oneAcked, pipedAcked] = await Promise.all(loads);
    await ioLoad;
    io.disconnect();
    const bad = (await Promise.all(benchmarks)).flat();

    t.diagnostic(
      `one at a time: ${one.sent} commands (${one.sentDuringRestart} during the restarts); ` +
        `pipelined: ${piped.sent} (${piped.sentDuringRestart}); ioredis: ${ioAcked} SETs; ` +
        `handed over / closed at a boundary: ${JSON.stringify(handed)}`,
    );
    for (const [name, c] of [
      ['one at a time', one],
      ['pipelined', piped],
    ] as const) {
      assert.ok(c.sentDuringRestart > 0, `${name}: commands sent during the restarts`);
      assert.equal(c.closed, false, `${name}: its connection was never closed`);
      assert.equal(c.hung, 0, `${name}: commands without a reply after ${REPLY_WAIT_MS} ms`);
      assert.deepEqual(c.errors, [], `${name}: error replies`);
      assert.equal(c.extra, 0, `${name}: replies to no command`);
      assert.equal(c.replies, c.sent, `${name}: one reply per command`);
    }
    assert.equal(subscriber.lostAtClose, 0, 'the subscriber had nothing in flight when closed');
    assert.equal(subscriber.replies, subscriber.sent);
    assert.deepEqual(ioErrors, [], 'ioredis without resend: no command failed or timed out');
    assert.ok(ioAcked > 0);
    assert.deepEqual(bad, [], 'redis-benchmark runs without an error');

    for (const [name, a] of [
      ['one at a time', oneAcked],
      ['pipelined', pipedAcked],
    ] as const) {
      assert.equal(
        a.incrOutOfStep,
        0,
        `${name}: INCR answers out of step (a command ran twice or not at all)`,
      );
      assert.equal(a.staleReads, 0, `${name}: reads that missed the session's own write`);
      assert.ok(a.sets.size > 0 && a.incrs > 0, `${name}: work done`);
    }
    // Every acknowledged write is on the primary, in the client's database.
    const primary = redis.shard(redis.shardNames[0]!).primary;
    const direct = new Redis({ host: primary.host, port: primary.port, lazyConnect: true });
    await direct.connect();
    for (const [db, a, counter] of [
      [2, oneAcked, 'ho:one:count'],
      [3, pipedAcked, 'ho:piped:count'],
    ] as const) {
      await direct.select(db);
      const keys = [...a.sets.keys()];
      const values = await direct.mget(keys);
      const missing = keys.filter((k, i) => values[i] !== a.sets.get(k));
      assert.deepEqual(missing.slice(0, 5), [], `db ${db}: ${missing.length} acknowledged SETs missing`);
      assert.equal(Number(await direct.get(counter)), a.incrs, `db ${db}: the counter counts each INCR once`);
    }
    direct.disconnect();
    one.close();
    piped.close();
  });
});
