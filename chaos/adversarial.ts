/**
 * The adversarial suite: clients that misbehave on purpose (a subscriber that never reads, a
 * flood of silent connections, a pipeline that never reads its replies, garbage at a high
 * connection rate, a client that hoards connections, a PostgreSQL client that stops reading a
 * large result) against rwsplit running as a child process, while well-behaved clients
 * (pgbench, redis-benchmark, and the publisher of the pub/sub flood) run beside them.
 *
 * Per scenario: the errors the well-behaved clients saw (the goal is 0), rwsplit's resident
 * memory (start, peak, end, sampled from /proc every 250 ms), and what happened to the offender.
 * One stack (PostgreSQL primary + replica, one Redis shard of primary + replica, one rwsplit)
 * serves every scenario in turn.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';

import { makeOwnRunDir } from '../bench/peers.js';
import { freePorts } from '../src/cluster/free-port.js';
import { pgBinary } from '../src/cluster/pg-binaries.js';
import { PgCluster } from '../src/cluster/pg-cluster.js';
import { RedisCluster } from '../src/cluster/redis-cluster.js';
import { encodeQuery, encodeStartupMessage } from '../src/pg/protocol/index.js';
import { encodeCommand, ReplyReader } from '../src/redis/resp/index.js';
import { MONITOR_CONFIG, RwsplitChild } from './stacks.js';

/** How big and long each scenario is: the full suite's or the short one in `npm test`. */
export interface AdversarialSettings {
  /** length of the floods (slow subscriber, pipeline, garbage), in ms */
  floodMs: number;
  /** silent connections opened on the PostgreSQL port */
  silentConnections: number;
  /** `postgres.limits.loginTimeoutMs` of the stack (the default, 60000, in the full suite) */
  pgLoginTimeoutMs: number;
  /** how long after opening the silent connections a psql client starts */
  psqlAfterMs: number;
  /** bytes of commands the pipelining client tries to send without reading */
  pipelineBytes: number;
  /** garbage connections opened per second, on both ports */
  garbagePerSecond: number;
  /** `redis.limits.maxClients` of the stack (the hoarder runs into it) */
  redisMaxClients: number;
  /** rows of 1,000 bytes the unread PostgreSQL result has */
  pgResultRows: number;
}

export const FULL_SETTINGS: AdversarialSettings = {
  floodMs: 30_000,
  silentConnections: 10_000,
  pgLoginTimeoutMs: 60_000,
  psqlAfterMs: 65_000,
  pipelineBytes: 1024 * 1024 * 1024,
  garbagePerSecond: 1000,
  redisMaxClients: 10_000,
  pgResultRows: 1_000_000,
};

export const SHORT_SETTINGS: AdversarialSettings = {
  floodMs: 3_000,
  silentConnections: 2_000,
  pgLoginTimeoutMs: 2_000,
  psqlAfterMs: 3_000,
  pipelineBytes: 64 * 1024 * 1024,
  garbagePerSecond: 300,
  redisMaxClients: 1_000,
  pgResultRows: 300_000,
};

const MiB = 1024 * 1024;
/** the bound: rwsplit stays within 200 MiB of its start whatever a client does */
const MAX_GROWTH_MIB = 200;
/** what "memory returns to its baseline" allows for the allocator and the garbage collector */
const BASELINE_SLACK_MIB = 50;

export interface AdversarialResult {
  scenario: string;
  description: string;
  /** errors the well-behaved clients saw, by client */
  wellBehavedErrors: Record<string, number>;
  /** operations the well-behaved clients completed, by client */
  wellBehavedOps: Record<string, number>;
  /** rwsplit's resident memory in MiB */
  rss: { startMiB: number; peakMiB: number; endMiB: number };
  /** what happened to the offender, in words */
  offender: string;
  /** the scenario's own claims (the test asserts them) */
  checks: { name: string; ok: boolean; detail: string }[];
  durationMs: number;
  /** set when the scenario could not run to its end */
  error: string | null;
}

export interface AdversarialScenario {
  name: string;
  description: string;
  run(stack: AdversarialStack, s: AdversarialSettings, out: ScenarioOutput): Promise<void>;
}

/** What a scenario fills in while it runs. */
interface ScenarioOutput {
  offender: string;
  checks: { name: string; ok: boolean; detail: string }[];
  /** well-behaved clients beyond the standard load (the publisher) */
  errors: Record<string, number>;
  ops: Record<string, number>;
}

// ---- the stack ------------------------------------------------------------------------------

export class AdversarialStack {
  private constructor(
    readonly pg: PgCluster,
    readonly redis: RedisCluster,
    readonly proxy: RwsplitChild,
  ) {}

  static async start(s: AdversarialSettings): Promise<AdversarialStack> {
    const [pg, redis] = await Promise.all([
      PgCluster.start({ replicas: 1 }),
      RedisCluster.start({ shards: 1, replicas: 1 }),
    ]);
    let proxy: RwsplitChild | undefined;
    try {
      const [pgPort, httpPort, redisPort] = (await freePorts(3)) as [number, number, number];
      const host = '127.0.0.1';
      const shard = redis.shard('s1');
      const config = {
        listen: {
          postgres: { host, port: pgPort },
          http: { host, port: httpPort },
          redis: { host, port: redisPort },
        },
        postgres: {
          nodes: pg.nodes.map((n) => ({ id: n.id, host: n.host, port: n.port })),
          monitor: MONITOR_CONFIG,
          limits: { loginTimeoutMs: s.pgLoginTimeoutMs },
        },
        redis: {
          shards: [
            {
              name: 's1',
              nodes: [shard.primary, ...shard.replicas].map((n) => ({
                id: n.id,
                host: n.host,
                port: n.port,
              })),
            },
          ],
          monitor: MONITOR_CONFIG,
          limits: { maxClients: s.redisMaxClients },
        },
        logging: { level: 'warn' },
      };
      proxy = new RwsplitChild(makeOwnRunDir('rwsplit-adversarial-'), config, pgPort, httpPort, redisPort);
      await proxy.ready(pg.nodes.length, redis.nodes.length);
      const stack = new AdversarialStack(pg, redis, proxy);
      await stack.pgbench(['-i', '-s', '1', '-q']);
      await redisOnce(redisPort, ['SET', 'adversarial:big', 'x'.repeat(10_000)]);
      return stack;
    } catch (err) {
      await proxy?.stop().catch(() => undefined);
      await Promise.allSettled([pg.stop(), redis.stop()]);
      throw err;
    }
  }

  /** rwsplit's resident set size in MiB. */
  rssMiB(): number {
    const status = readFileSync(`/proc/${this.proxy.pid}/status`, 'utf8');
    const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
    return kb / 1024;
  }

  /** A Prometheus counter or gauge summed over the label sets matching `labels`. */
  async metric(name: string, labels: Record<string, string> = {}): Promise<number> {
    const text = await (await fetch(`http://127.0.0.1:${this.proxy.httpPort}/metrics`)).text();
    let sum = 0;
    for (const line of text.split('\n')) {
      if (!line.startsWith(name)) continue;
      const m = /^([a-z_]+)(\{[^}]*\})? ([\d.e+-]+)$/.exec(line);
      if (!m || m[1] !== name) continue;
      if (Object.entries(labels).every(([k, v]) => (m[2] ?? '').includes(`${k}="${v}"`))) sum += Number(m[3]);
    }
    return sum;
  }

  pgbench(args: string[]): Promise<{ code: number | null; output: string }> {
    return run(pgBinary('pgbench'), [
      '-h',
      '127.0.0.1',
      '-p',
      String(this.proxy.pgPort),
      '-U',
      'postgres',
      ...args,
      'postgres',
    ]);
  }

  async stop(): Promise<void> {
    await this.proxy.stop().catch(() => undefined);
    await Promise.allSettled([this.pg.stop(), this.redis.stop()]);
  }
}

function run(file: string, args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
  });
}

/** One command on a fresh connection; resolves with the raw reply. */
function redisOnce(port: number, args: string[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const reader = new ReplyReader();
    socket.on('error', reject);
    socket.on('data', (chunk: Buffer) =>
      reader.push(chunk, (raw) => {
        socket.end();
        resolve(Buffer.from(raw));
      }),
    );
    socket.write(encodeCommand(args));
  });
}

// ---- the well-behaved clients ---------------------------------------------------------------

/**
 * pgbench (tpcb-like, 2 clients) and, with `redisBenchmark`, redis-benchmark (SET/GET, 4
 * clients, in rounds: each round connects anew) for `ms`.
 */
class StandardLoad {
  readonly errors: Record<string, number> = { pgbench: 0, 'redis-benchmark': 0 };
  readonly ops: Record<string, number> = { pgbench: 0, 'redis-benchmark': 0 };
  private readonly done: Promise<void>;
  private stopping = false;
  private bench: ChildProcess | null = null;

  constructor(
    private readonly stack: AdversarialStack,
    ms: number,
    redisBenchmark: boolean,
  ) {
    if (!redisBenchmark) {
      delete this.errors['redis-benchmark'];
      delete this.ops['redis-benchmark'];
    }
    this.done = Promise.all([this.runPgbench(ms), redisBenchmark ? this.runRedisBenchmark(ms) : null]).then(
      () => undefined,
    );
  }

  private async runPgbench(ms: number): Promise<void> {
    const r = await this.stack.pgbench([
      '-n',
      '-c',
      '2',
      '-j',
      '1',
      '-T',
      String(Math.max(1, Math.round(ms / 1000))),
    ]);
    const processed = Number(/number of transactions actually processed: (\d+)/.exec(r.output)?.[1] ?? 0);
    const failed = Number(/number of failed transactions: (\d+)/.exec(r.output)?.[1] ?? 0);
    const errorLines = r.output.split('\n').filter((l) => /error|FATAL/i.test(l)).length;
    this.ops.pgbench = processed;
    this.errors.pgbench = failed + errorLines + (r.code === 0 ? 0 : 1);
  }

  /**
   * redis-benchmark in rounds of 200 requests until the time is up. Only whole rounds count,
   * so rounds are small: a round slowed by a flood still shows the client's progress.
   */
  private async runRedisBenchmark(ms: number): Promise<void> {
    const until = Date.now() + ms;
    const n = 200;
    while (Date.now() < until && !this.stopping) {
      const child = spawn(
        'redis-benchmark',
        [
          '-h',
          '127.0.0.1',
          '-p',
          String(this.stack.proxy.redisPort),
          '-c',
          '4',
          '-n',
          String(n),
          '-t',
          'set,get',
          '-q',
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      this.bench = child;
      let output = '';
      child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
      child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
      // The time is up in the middle of a round: that round is stopped, not waited for.
      let cut = false;
      const timer = setTimeout(
        () => {
          cut = true;
          child.kill('SIGKILL');
        },
        Math.max(0, until - Date.now()),
      );
      const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
      clearTimeout(timer);
      this.bench = null;
      const completed = (output.match(/requests per second/g) ?? []).length;
      this.ops['redis-benchmark']! += completed * n;
      // Progress lines are rewritten with \r; an error is a line of its own.
      this.errors['redis-benchmark']! +=
        output.split(/[\r\n]/).filter((l) => /error/i.test(l)).length + (code === 0 || cut ? 0 : 1);
    }
  }

  finished(): Promise<void> {
    return this.done;
  }

  stop(): void {
    this.stopping = true;
    this.bench?.kill('SIGKILL');
  }
}

/** Samples rwsplit's RSS every 250 ms. */
class RssSampler {
  readonly start: number;
  peak: number;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly stack: AdversarialStack) {
    this.start = stack.rssMiB();
    this.peak = this.start;
    this.timer = setInterval(() => {
      try {
        this.peak = Math.max(this.peak, stack.rssMiB());
      } catch {
        // the process is gone: the scenario reports it
      }
    }, 250);
  }

  stop(): number {
    clearInterval(this.timer);
    const end = this.stack.rssMiB();
    this.peak = Math.max(this.peak, end);
    return end;
  }
}

// ---- the offenders --------------------------------------------------------------------------

/** Opens a connection; resolves once connected (or rejects). */
function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.off('error', reject);
      s.on('error', () => undefined);
      resolve(s);
    });
    s.once('error', reject);
  });
}

/** Resolves true when `socket` is closed within `ms` (reading whatever is left), else false. */
function closedWithin(socket: net.Socket, ms: number): Promise<boolean> {
  if (socket.destroyed || socket.readableEnded) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
    socket.resume();
  });
}

const slowSubscriber: AdversarialScenario = {
  name: 'slow-subscriber',
  description: 'a client SUBSCRIBEs and never reads while another PUBLISHes 10 KB messages as fast as it can',
  async run(stack, s, out) {
    const port = stack.proxy.redisPort;
    const sub = await connect(port);
    sub.write(encodeCommand(['SUBSCRIBE', 'flood']));
    await delay(200);
    sub.pause(); // never reads again
    const killedBefore = await stack.metric('rwsplit_clients_killed_total', {
      reason: 'output-buffer-limit',
      class: 'pubsub',
    });
    // The publisher: pipelines 64 PUBLISH at a time and reads every reply.
    const pub = await connect(port);
    const reader = new ReplyReader();
    const message = 'm'.repeat(10_000);
    const batch = Buffer.concat(
      Array.from({ length: 64 }, () => encodeCommand(['PUBLISH', 'flood', message])),
    );
    let published = 0;
    let errors = 0;
    let outstanding = 0;
    let more: (() => void) | null = null;
    pub.on('data', (chunk: Buffer) =>
      reader.push(chunk, (raw, info) => {
        if (info.isError) errors++;
        published++;
        if (--outstanding === 0) more?.();
      }),
    );
    const pubClosed = new Promise<void>((resolve) => pub.once('close', () => resolve()));
    const until = Date.now() + s.floodMs;
    // On a slow box the flood may need longer than floodMs to pass the limit: it goes on
    // (up to 4 × floodMs) until rwsplit counts the subscriber cut off.
    const latest = Date.now() + 4 * s.floodMs;
    let lostPublisher = false;
    void pubClosed.then(() => {
      lostPublisher = true;
      more?.();
    });
    const kills = (): Promise<number> =>
      stack.metric('rwsplit_clients_killed_total', { reason: 'output-buffer-limit', class: 'pubsub' });
    let cut = false;
    const watch = setInterval(() => {
      void kills().then((n) => (cut ||= n > killedBefore));
    }, 500);
    while (!lostPublisher && (Date.now() < until || (!cut && Date.now() < latest))) {
      outstanding += 64;
      const answered = new Promise<void>((resolve) => (more = resolve));
      pub.write(batch);
      await answered;
    }
    clearInterval(watch);
    pub.end();
    out.errors.publisher = errors + (lostPublisher ? 1 : 0);
    out.ops.publisher = published;
    const killed =
      (await stack.metric('rwsplit_clients_killed_total', {
        reason: 'output-buffer-limit',
        class: 'pubsub',
      })) - killedBefore;
    const subClosed = await closedWithin(sub, 5000);
    out.offender = subClosed
      ? `disconnected by rwsplit (output buffer limit, class pubsub; ${killed} kill counted) after ${published} messages published`
      : `still connected after ${published} messages published`;
    out.checks.push({ name: 'subscriber disconnected', ok: subClosed && killed >= 1, detail: out.offender });
    sub.destroy();
  },
};

const silentConnections: AdversarialScenario = {
  name: 'silent-connections',
  description:
    'connections to the PostgreSQL port that never send a startup packet; a psql client starts later',
  async run(stack, s, out) {
    const sockets: net.Socket[] = [];
    let refused = 0;
    for (let i = 0; i < s.silentConnections; i += 100) {
      const batch = Array.from({ length: Math.min(100, s.silentConnections - i) }, () =>
        connect(stack.proxy.pgPort),
      );
      for (const r of await Promise.allSettled(batch)) {
        if (r.status === 'rejected') {
          refused++;
          continue;
        }
        r.value.resume(); // reads what rwsplit sends (its FATAL) so that its close is seen
        sockets.push(r.value);
      }
    }
    const opened = sockets.length;
    await delay(Math.max(0, s.psqlAfterMs - 500));
    const closedBefore = sockets.filter((x) => x.destroyed || x.readableEnded).length;
    const psql = await run(pgBinary('psql'), [
      '-h',
      '127.0.0.1',
      '-p',
      String(stack.proxy.pgPort),
      '-U',
      'postgres',
      '-d',
      'postgres',
      '-Atc',
      'SELECT 42',
    ]);
    const psqlOk = psql.code === 0 && psql.output.trim() === '42';
    out.errors.psql = psqlOk ? 0 : 1;
    out.ops.psql = psqlOk ? 1 : 0;
    await delay(1000);
    const closed = sockets.filter((x) => x.destroyed || x.readableEnded).length;
    for (const x of sockets) x.destroy();
    out.offender = `${opened} silent connections opened (${refused} refused), ${closedBefore} closed by rwsplit when psql started, ${closed} a second later`;
    out.checks.push({
      name: 'silent connections closed by the login timeout',
      ok: closed === opened,
      detail: out.offender,
    });
    out.checks.push({
      name: 'psql connects afterwards',
      ok: psqlOk,
      detail: psql.output.trim().slice(0, 300),
    });
  },
};

const pipelineNoRead: AdversarialScenario = {
  name: 'pipeline-no-read',
  description: 'a client pipelines GET of a 10 KB value without ever reading a reply',
  async run(stack, s, out) {
    const sock = await connect(stack.proxy.redisPort);
    sock.pause();
    const chunk = Buffer.concat(
      Array.from({ length: 2048 }, () => encodeCommand(['GET', 'adversarial:big'])),
    );
    let sent = 0;
    const until = Date.now() + s.floodMs;
    let stalled = false;
    while (sent < s.pipelineBytes && Date.now() < until && !sock.destroyed) {
      if (!sock.write(chunk)) {
        // rwsplit stopped reading (backpressure) once the kernel buffers filled: wait a while.
        const drained = await Promise.race([
          new Promise<boolean>((r) => sock.once('drain', () => r(true))),
          delay(Math.max(0, until - Date.now())).then(() => false),
        ]);
        if (!drained) {
          stalled = true;
          break;
        }
      }
      sent += chunk.length;
    }
    const mb = (sent / MiB).toFixed(1);
    out.offender = stalled
      ? `stopped by backpressure after ${mb} MiB of commands sent (rwsplit stopped reading it)`
      : sock.destroyed
        ? `disconnected after ${mb} MiB`
        : `sent ${mb} MiB of commands`;
    sock.destroy();
  },
};

const garbage: AdversarialScenario = {
  name: 'garbage-connections',
  description: 'connections to both ports at a high rate, each sending random bytes, then closing',
  async run(stack, s, out) {
    const ports = [stack.proxy.pgPort, stack.proxy.redisPort];
    const until = Date.now() + s.floodMs;
    let opened = 0;
    let answeredOrClosed = 0;
    const tick = 50;
    const pending: Promise<void>[] = [];
    while (Date.now() < until) {
      const n = Math.max(1, Math.round((s.garbagePerSecond * tick) / 1000));
      for (let i = 0; i < n; i++) {
        const port = ports[opened % 2]!;
        opened++;
        pending.push(
          new Promise<void>((resolve) => {
            const sock = net.connect({ host: '127.0.0.1', port });
            sock.on('error', () => undefined);
            sock.on('data', () => undefined);
            sock.once('connect', () => {
              const bytes = Buffer.alloc(1 + Math.floor(Math.random() * 512));
              for (let k = 0; k < bytes.length; k++) bytes[k] = Math.floor(Math.random() * 256);
              sock.write(bytes);
              setTimeout(() => sock.destroy(), 200);
            });
            sock.once('close', () => {
              answeredOrClosed++;
              resolve();
            });
          }),
        );
      }
      await delay(tick);
    }
    await Promise.all(pending);
    out.offender = `${opened} garbage connections (${s.garbagePerSecond}/s), all ${answeredOrClosed} closed`;
  },
};

const hoarder: AdversarialScenario = {
  name: 'connection-hoarder',
  description: 'a client opens Redis connections, pings on each, and never closes them',
  async run(stack, s, out) {
    // A well-behaved client connected before the hoarder: it must go on working. (One that
    // connects once every slot is taken is refused, as by Redis itself: that is maxClients.)
    const steady = new SteadyRedisClient(await connect(stack.proxy.redisPort));
    const sockets: net.Socket[] = [];
    let refusedAt = -1;
    let refusal = '';
    for (let i = 0; i < s.redisMaxClients + 50 && refusedAt < 0; i++) {
      const sock = await connect(stack.proxy.redisPort);
      sockets.push(sock);
      const reply = await new Promise<string>((resolve) => {
        sock.once('data', (d: Buffer) => resolve(d.toString().trim()));
        sock.once('close', () => resolve('(closed)'));
        sock.write(encodeCommand(['PING']));
      });
      if (reply !== '+PONG') {
        refusedAt = i;
        refusal = reply;
      }
    }
    const publisherOk = await redisOnce(stack.proxy.redisPort, ['PING']).then(
      (r) => r.toString().trim(),
      (e: Error) => e.message,
    );
    await delay(500);
    for (const x of sockets) x.destroy();
    const steadyResult = await steady.stop();
    out.errors['steady redis client'] = steadyResult.errors;
    out.ops['steady redis client'] = steadyResult.ops;
    out.offender =
      refusedAt >= 0
        ? `held ${refusedAt} connections; the next was refused: ${refusal.slice(0, 120)}`
        : `held ${sockets.length} connections, none refused`;
    out.checks.push({
      name: 'hoarder stopped at redis.limits.maxClients',
      ok: refusedAt >= 0 && refusal.includes('maxClients'),
      detail: `${out.offender}; a new client then got: ${publisherOk.slice(0, 80)}`,
    });
  },
};

/** SET then GET in a loop on one connection opened beforehand; counts errors and round trips. */
class SteadyRedisClient {
  private ops = 0;
  private errors = 0;
  private stopped = false;
  private readonly loop: Promise<void>;

  constructor(private readonly socket: net.Socket) {
    const reader = new ReplyReader();
    let waiting: ((r: Buffer | null) => void) | null = null;
    socket.on('data', (chunk: Buffer) => reader.push(chunk, (raw) => waiting?.(Buffer.from(raw))));
    socket.once('close', () => waiting?.(null));
    const ask = (args: string[]): Promise<Buffer | null> =>
      new Promise((resolve) => {
        waiting = resolve;
        socket.write(encodeCommand(args));
      });
    this.loop = (async () => {
      for (let i = 0; !this.stopped; i++) {
        const set = await ask(['SET', 'adversarial:steady', String(i)]);
        const get = await ask(['GET', 'adversarial:steady']);
        if (set === null || get === null) {
          this.errors++;
          return;
        }
        if (!set.toString().startsWith('+OK') || !get.toString().includes(String(i))) this.errors++;
        this.ops += 2;
        await delay(5);
      }
    })();
  }

  async stop(): Promise<{ ops: number; errors: number }> {
    this.stopped = true;
    await this.loop;
    this.socket.destroy();
    return { ops: this.ops, errors: this.errors };
  }
}

const unreadResult: AdversarialScenario = {
  name: 'pg-unread-result',
  description: 'a PostgreSQL client asks for a large result (1,000-byte rows) and stops reading it',
  async run(stack, s, out) {
    const sock = await connect(stack.proxy.pgPort);
    sock.write(encodeStartupMessage({ user: 'postgres', database: 'postgres' }));
    await new Promise<void>((resolve) => {
      let seen = '';
      const onData = (d: Buffer): void => {
        seen += d.toString('latin1');
        if (seen.includes('Z\0\0\0\x05')) {
          sock.off('data', onData);
          resolve();
        }
      };
      sock.on('data', onData);
    });
    sock.pause();
    const resultMiB = (s.pgResultRows * 1000) / MiB;
    const before = stack.rssMiB();
    sock.write(encodeQuery(`SELECT repeat('x', 1000) FROM generate_series(1, ${s.pgResultRows})`));
    let peak = before;
    const until = Date.now() + s.floodMs;
    while (Date.now() < until) {
      await delay(250);
      peak = Math.max(peak, stack.rssMiB());
    }
    const growth = peak - before;
    sock.destroy();
    out.offender = `asked for ${resultMiB.toFixed(0)} MiB and read none of it; rwsplit grew ${growth.toFixed(0)} MiB meanwhile`;
    out.checks.push({
      name: 'memory growth well below the result size',
      ok: growth < resultMiB / 4,
      detail: out.offender,
    });
  },
};

export const ADVERSARIAL_SCENARIOS: AdversarialScenario[] = [
  slowSubscriber,
  silentConnections,
  pipelineNoRead,
  garbage,
  hoarder,
  unreadResult,
];

/** Runs one scenario on `stack` with the standard well-behaved load beside it. */
export async function runAdversarial(
  stack: AdversarialStack,
  scenario: AdversarialScenario,
  s: AdversarialSettings,
): Promise<AdversarialResult> {
  const started = Date.now();
  const rss = new RssSampler(stack);
  const out: ScenarioOutput = { offender: '', checks: [], errors: {}, ops: {} };
  const planned =
    scenario.name === 'silent-connections'
      ? s.psqlAfterMs + 3000
      : scenario.name === 'connection-hoarder'
        ? 5000
        : s.floodMs;
  const load = new StandardLoad(stack, planned, scenario.name !== 'connection-hoarder');
  let error: string | null = null;
  try {
    await delay(1000); // the well-behaved clients connect first
    await scenario.run(stack, s, out);
  } catch (err) {
    error = err instanceof Error ? err.message : String(err);
  }
  await load.finished().catch((err: Error) => (error ??= `load: ${err.message}`));
  load.stop();
  await delay(1000); // let closed sockets be collected before the last sample
  const end = rss.stop();
  const ops = { ...load.ops, ...out.ops };
  const idle = Object.entries(ops).filter(([, n]) => n === 0);
  out.checks.push({
    name: 'every well-behaved client made progress',
    ok: idle.length === 0,
    detail: idle.length === 0 ? 'yes' : `no operation completed by ${idle.map(([k]) => k).join(', ')}`,
  });
  out.checks.push({
    name: `rwsplit's peak memory within ${MAX_GROWTH_MIB} MiB of its start`,
    ok: rss.peak - rss.start < MAX_GROWTH_MIB,
    detail: `${round(rss.start)} → ${round(rss.peak)} MiB`,
  });
  if (scenario.name === 'silent-connections')
    out.checks.push({
      name: `memory back to its start (within ${BASELINE_SLACK_MIB} MiB) once the silent connections are gone`,
      ok: end - rss.start < BASELINE_SLACK_MIB,
      detail: `${round(rss.start)} → ${round(end)} MiB`,
    });
  return {
    scenario: scenario.name,
    description: scenario.description,
    wellBehavedErrors: { ...load.errors, ...out.errors },
    wellBehavedOps: ops,
    rss: { startMiB: round(rss.start), peakMiB: round(rss.peak), endMiB: round(end) },
    offender: out.offender,
    checks: out.checks,
    durationMs: Date.now() - started,
    error,
  };
}

function round(n: number): number {
  return Math.round(n * 10) / 10;
}
