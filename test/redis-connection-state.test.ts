/**
 * Connection state through the Redis proxy, compared with a direct server: MONITOR on
 * connections of its own (never handed to another client), everything queued inside MULTI,
 * RESET, CLIENT subcommands, CLIENT REPLY, SELECT with one shard (and refused with several),
 * and ACL users in passthrough auth mode.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { ReplyReader } from '../src/redis/resp/index.js';
import { startRedisStack, type RedisStack } from './support/redis-stack.js';

const END = '$7\r\n__end__\r\n';

/** A raw RESP connection: `run` sends commands (inline) and returns their raw replies. */
class Raw {
  private readonly reader = new ReplyReader();
  private replies: string[] = [];
  private waiter: (() => void) | null = null;
  closed = false;
  readonly socket: net.Socket;

  private constructor(port: number) {
    this.socket = net.connect({ host: '127.0.0.1', port });
    this.socket.on('data', (d: Buffer) =>
      this.reader.push(d, (r) => {
        this.replies.push(r.toString('latin1'));
        this.waiter?.();
      }),
    );
    this.socket.on('error', () => undefined);
    this.socket.on('close', () => {
      this.closed = true;
      this.waiter?.();
    });
  }

  static async open(port: number): Promise<Raw> {
    const r = new Raw(port);
    await new Promise<void>((resolve, reject) => {
      r.socket.once('connect', resolve);
      r.socket.once('error', reject);
    });
    return r;
  }

  /** Sends `commands` (arrays of arguments) then `PING __end__` (allowed while subscribed too), and returns every reply before it. */
  async run(...commands: string[][]): Promise<string[]> {
    const all = [...commands, ['PING', '__end__']];
    this.socket.write(
      all
        .map((c) => `*${c.length}\r\n${c.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`)
        .join(''),
    );
    for (;;) {
      const i = this.replies.findIndex((r) => r.endsWith(END));
      if (i >= 0) {
        const out = this.replies.slice(0, i);
        this.replies = this.replies.slice(i + 1);
        return out;
      }
      if (this.closed) throw new Error(`connection closed; replies so far: ${JSON.stringify(this.replies)}`);
      await new Promise<void>((resolve) => (this.waiter = resolve));
    }
  }

  /** Waits for `n` unsolicited replies (MONITOR lines, messages). */
  async next(match: (r: string) => boolean): Promise<string> {
    for (;;) {
      const i = this.replies.findIndex(match);
      if (i >= 0) return this.replies.splice(i, 1)[0]!;
      if (this.closed) throw new Error('connection closed');
      await new Promise<void>((resolve) => (this.waiter = resolve));
    }
  }

  close(): void {
    this.socket.destroy();
  }
}

function redisCli(port: number, ...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args]);
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('close', () => resolve(out.trim()));
  });
}

describe('Redis connection state: one shard, passthrough auth', () => {
  let stack: RedisStack;
  let direct: number;
  const opened: { close(): void }[] = [];
  const raw = async (port: number): Promise<Raw> => {
    const r = await Raw.open(port);
    opened.push(r);
    return r;
  };
  const io = (port: number, opts: Record<string, unknown> = {}): Redis => {
    const c = new Redis({
      host: '127.0.0.1',
      port,
      maxRetriesPerRequest: 1,
      retryStrategy: () => null,
      ...opts,
    });
    opened.push({ close: () => c.disconnect() });
    return c;
  };
  /** the same commands on a new connection to the server and to rwsplit */
  const both = async (...commands: string[][]): Promise<[string[], string[]]> => {
    const [d, p] = await Promise.all([raw(direct), raw(stack.port)]);
    return [await d.run(...commands), await p.run(...commands)];
  };

  before(async () => {
    stack = await startRedisStack({
      cluster: { shards: 1, replicas: 1 },
      redis: { auth: { mode: 'passthrough' } },
    });
    direct = stack.redis.shard(stack.redis.shardNames[0]!).primary.port;
  });
  after(async () => {
    for (const o of opened) o.close();
    await stack?.stop();
  });

  test('MONITOR: a client that monitors and leaves poisons no connection; MONITOR shows other clients', async () => {
    for (let round = 0; round < 3; round++) {
      const m = await raw(stack.port);
      assert.deepEqual(await m.run(['MONITOR']), ['+OK\r\n']);
      m.close();
    }
    const clients = Array.from({ length: 5 }, () => io(stack.port));
    const ref = io(direct);
    let ok = 0;
    for (let i = 0; i < 50; i++) {
      const c = clients[i % clients.length]!;
      const [set, get] = [await c.set(`mon:${i}`, `v${i}`), await c.get(`mon:${i}`)];
      assert.equal(set, 'OK');
      assert.equal(get, `v${i}`);
      assert.equal(await ref.get(`mon:${i}`), `v${i}`, 'the server holds what rwsplit acknowledged');
      ok++;
    }
    assert.equal(ok, 50, 'all 50 SET/GET pairs of other clients succeeded');

    const m = await raw(stack.port);
    assert.deepEqual(await m.run(['MONITOR']), ['+OK\r\n']);
    await clients[0]!.set('mon:seen', 'x');
    const line = await m.next((r) => r.includes('"mon:seen"'));
    assert.match(line, /^\+\d+\.\d+ \[0 [^\]]+\] "set" "mon:seen" "x"/i);
    // A monitoring connection cannot touch the keyspace, as on the server.
    const d = await raw(direct);
    await d.run(['MONITOR']);
    const [dGet, pGet] = [await d.run(['GET', 'mon:1']), await m.run(['GET', 'mon:1'])];
    assert.deepEqual(
      pGet.filter((r) => r.startsWith('-')),
      dGet.filter((r) => r.startsWith('-')),
    );
    assert.equal(pGet.filter((r) => r.startsWith('-')).length, 1);
  });

  test('inside MULTI every command is queued, those rwsplit answers itself included (vs direct)', async () => {
    const [d, p] = await both(
      ['MULTI'],
      ['PING'],
      ['ECHO', 'hi'],
      ['SET', 'tx:a', '1'],
      ['CLIENT', 'SETNAME', 'txname'],
      ['CLIENT', 'GETNAME'],
      ['SELECT', '99'],
      ['INCR', 'tx:a'],
      ['WATCH', 'tx:a'],
      ['PING', 'x'],
      ['EXEC'],
      ['CLIENT', 'GETNAME'],
    );
    assert.deepEqual(p, d);
    assert.ok(p.includes('+QUEUED\r\n'));
    assert.equal(p.at(-2)!.split('\r\n')[0], '*8', "EXEC's reply holds the 8 queued replies");
    // The issue's case, a transaction of commands rwsplit answers itself, DISCARD.
    const [d2, p2] = await both(
      ['MULTI'],
      ['PING'],
      ['EXEC'],
      ['MULTI'],
      ['CLIENT', 'GETNAME'],
      ['SELECT', '0'],
      ['EXEC'],
      ['MULTI'],
      ['PING'],
      ['DISCARD'],
    );
    assert.deepEqual(p2.slice(0, 3), ['+OK\r\n', '+QUEUED\r\n', '*1\r\n+PONG\r\n']);
    assert.deepEqual(p2, d2);
  });

  test('RESET clears the name, protocol, database, consistency and transaction', async () => {
    const p = await raw(stack.port);
    const d = await raw(direct);
    const steps = [
      ['HELLO', '3'],
      ['CLIENT', 'SETNAME', 'r1'],
      ['SELECT', '3'],
      ['SET', 'reset:k', 'db3'],
    ];
    await p.run(...steps, ['RWSPLIT', 'CONSISTENCY', 'strong']);
    await d.run(...steps);
    const after = [['MULTI'], ['RESET'], ['CLIENT', 'GETNAME'], ['GET', 'reset:k'], ['PING']];
    assert.deepEqual(await p.run(...after), await d.run(...after));
    assert.deepEqual(await p.run(['RWSPLIT', 'CONSISTENCY']), ['$16\r\nread-your-writes\r\n']);
    // RESET ends a subscription too (RESP2: only a few commands are allowed while subscribed).
    await p.run(['SUBSCRIBE', 'reset-ch']);
    await p.next((r) => r.includes('subscribe'));
    const afterSub = [['RESET'], ['GET', 'reset:k']];
    await d.run(['SUBSCRIBE', 'reset-ch']);
    assert.deepEqual(await p.run(...afterSub), await d.run(...afterSub));
  });

  test('CLIENT subcommands: names, ids, INFO, LIST, KILL, REPLY, refusals', async () => {
    const [d, p] = await both(
      ['CLIENT', 'SETNAME', 'a b'],
      ['CLIENT', 'SETNAME', 'ok-name'],
      ['CLIENT', 'GETNAME'],
      ['CLIENT', 'SETNAME', ''],
      ['CLIENT', 'GETNAME'],
      ['CLIENT', 'KILL', 'ID', '999999'],
      ['CLIENT', 'KILL', 'TYPE', 'foo'],
      ['CLIENT', 'KILL', '1.2.3.4:5'],
      ['CLIENT', 'KILL', 'FOO', 'bar'],
      ['CLIENT', 'REPLY', 'x'],
      ['CLIENT', 'NO-EVICT', 'on'],
      ['CLIENT', 'FOO'],
      ['CLIENT', 'REPLY', 'OFF'],
      ['PING', 'lost'],
      ['CLIENT', 'REPLY', 'ON'],
      ['CLIENT', 'REPLY', 'SKIP'],
      ['PING', 'skipped'],
      ['PING', 'seen'],
    );
    assert.deepEqual(p, d);
    assert.ok(!p.some((r) => r.includes('lost') || r.includes('skipped')));

    const a = await raw(stack.port);
    const b = await raw(stack.port);
    const [idA] = await a.run(['CLIENT', 'ID']);
    const [idB] = await b.run(['CLIENT', 'ID']);
    await b.run(['CLIENT', 'SETNAME', 'victim']);
    const [info] = await a.run(['CLIENT', 'INFO']);
    assert.match(
      info!,
      new RegExp(
        `id=${idA!.slice(1, -2)} addr=127\\.0\\.0\\.1:\\d+ laddr=.* name= .*cmd=client\\|info user=default redir=-1 resp=2\\n`,
      ),
    );
    const [list] = await a.run(['CLIENT', 'LIST']);
    assert.match(list!, new RegExp(`id=${idB!.slice(1, -2)} .* name=victim `));
    assert.deepEqual(await a.run(['CLIENT', 'KILL', 'ID', idB!.slice(1, -2)]), [':1\r\n']);
    await assert.rejects(b.run(['PING']), /closed/);
    const c = await raw(stack.port);
    const [cInfo] = await c.run(['CLIENT', 'INFO']);
    const addr = /addr=(\S+)/.exec(cInfo!)![1]!;
    assert.deepEqual(await a.run(['CLIENT', 'KILL', addr]), ['+OK\r\n']);
    await assert.rejects(c.run(['PING']), /closed/);
    for (const sub of [['PAUSE', '100'], ['UNPAUSE'], ['TRACKING', 'on'], ['UNBLOCK', '1']]) {
      const [r] = await a.run(['CLIENT', ...sub]);
      assert.match(r!, /^-ERR CLIENT \w+ is not supported through rwsplit: /);
    }
    assert.deepEqual(await a.run(['CLIENT', 'SETINFO', 'lib-name', 'ioredis']), ['+OK\r\n']);
    // A client may kill itself: the reply comes first, then the connection closes (as direct).
    for (const port of [direct, stack.port]) {
      const self = await raw(port);
      const [id] = await self.run(['CLIENT', 'ID']);
      await assert.rejects(
        self.run(['CLIENT', 'KILL', 'ID', id!.slice(1, -2), 'SKIPME', 'no']),
        /connection closed; replies so far: \[":1\\r\\n"\]/,
      );
    }
  });

  test('SELECT n with one shard: ioredis db option and redis-cli -n, vs direct', async () => {
    const viaProxy = io(stack.port, { db: 3 });
    assert.equal(await viaProxy.set('db:key', 'in-3'), 'OK');
    assert.equal(await viaProxy.get('db:key'), 'in-3');
    assert.equal(await io(direct, { db: 3 }).get('db:key'), 'in-3');
    assert.equal(await io(direct).get('db:key'), null);
    assert.equal(await io(stack.port).get('db:key'), null, 'database 0 through rwsplit does not see it');
    assert.equal(await redisCli(stack.port, '-n', '3', 'GET', 'db:key'), 'in-3');
    assert.equal(await viaProxy.move('db:key', 4), 1);
    assert.equal(await io(direct, { db: 4 }).get('db:key'), 'in-3');
    const [d, p] = await both(
      ['SELECT', 'x'],
      ['SELECT', '99'],
      ['SELECT', '-1'],
      ['SELECT', '4'],
      ['GET', 'db:key'],
    );
    assert.deepEqual(p, d);
  });

  test('ACL users in passthrough mode: the servers check the credentials and the rules', async () => {
    for (const n of stack.redis.nodes) {
      await stack.redis.command(
        n.id,
        'ACL',
        'SETUSER',
        'alice',
        'on',
        '>pw',
        '~cache:*',
        '+get',
        '+set',
        '+ping',
      );
    }
    const steps = [
      ['AUTH', 'alice', 'wrong'],
      ['AUTH', 'nopass-given'],
      ['AUTH', 'alice', 'pw'],
      ['SET', 'cache:1', 'v1'],
      ['GET', 'cache:1'],
      ['SET', 'other:1', 'x'],
      ['GET', 'other:1'],
      ['DEL', 'cache:1'],
    ];
    const [d, p] = await both(...steps);
    assert.deepEqual(p, d);
    assert.deepEqual(p.slice(0, 5), [
      '-WRONGPASS invalid username-password pair or user is disabled.\r\n',
      '-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n',
      '+OK\r\n',
      '+OK\r\n',
      '$2\r\nv1\r\n',
    ]);
    assert.match(p[5]!, /^-NOPERM /);
    const alice = io(stack.port, { username: 'alice', password: 'pw', enableReadyCheck: false });
    assert.equal(await alice.set('cache:2', 'v2'), 'OK');
    assert.equal(await alice.get('cache:2'), 'v2');
    await assert.rejects(alice.get('other:2'), /NOPERM/);
    const hello = await raw(stack.port);
    const [h] = await hello.run(['HELLO', '3', 'AUTH', 'alice', 'pw']);
    assert.match(h!, /^%7\r\n/);
    const [h2] = await (await raw(stack.port)).run(['HELLO', '3', 'AUTH', 'alice', 'nope']);
    const [h2d] = await (await raw(direct)).run(['HELLO', '3', 'AUTH', 'alice', 'nope']);
    assert.equal(h2, h2d);
  });
});

describe('Redis connection state: two shards', () => {
  let stack: RedisStack;
  before(async () => {
    stack = await startRedisStack({ cluster: { shards: 2, replicas: 0 } });
  });
  after(async () => stack?.stop());

  test('SELECT n, SWAPDB and MOVE are refused as Redis Cluster refuses them, saying why', async () => {
    const r = await Raw.open(stack.port);
    try {
      const replies = await r.run(
        ['SELECT', '0'],
        ['SELECT', '3'],
        ['SWAPDB', '0', '1'],
        ['MOVE', 'k', '1'],
        ['AUTH', 'pw'],
      );
      assert.equal(replies[0], '+OK\r\n');
      for (const [i, what] of [
        [1, 'SELECT'],
        [2, 'SWAPDB'],
        [3, 'MOVE'],
      ] as const) {
        assert.match(
          replies[i]!,
          new RegExp(`^-ERR ${what} is not allowed in cluster mode: rwsplit spreads keys over 2 shards`),
        );
      }
      // proxy auth mode with no password: what Redis answers
      assert.equal(
        replies[4],
        '-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n',
      );
    } finally {
      r.close();
    }
  });
});
