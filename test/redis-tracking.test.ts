/**
 * Commands that act on a connection of the client's own, through rwsplit and directly against
 * the shard's primary, compared: CLIENT TRACKING (RESP3 pushes, RESP2 REDIRECT to a subscribed
 * client, BCAST with a prefix, OPTIN with CLIENT CACHING), CLIENT UNBLOCK by the id CLIENT ID
 * gave, and WAIT counting the replicas that have the client's own last write (one replica,
 * then that replica SIGSTOPped).
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { ReplyReader } from '../src/redis/resp/index.js';
import { startRedisStack, type RedisStack } from './support/redis-stack.js';
import { waitFor } from './support/stack.js';

/** A raw RESP connection: replies in order, RESP3 pushes (`>`) kept apart. */
class Conn {
  private readonly reader = new ReplyReader();
  private readonly replies: string[] = [];
  readonly pushes: string[] = [];
  private waiter: (() => void) | null = null;
  private closed = false;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) =>
      this.reader.push(d, (r, info) => {
        (info.isPush ? this.pushes : this.replies).push(r.toString('latin1'));
        this.wake();
      }),
    );
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  /** Waits for the next reply or push; a guard against a hang (not a timing assertion). */
  private async arrival(what: string): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve, reject) => {
      this.waiter = resolve;
      timer = setTimeout(
        () =>
          reject(
            new Error(`nothing arrived in 10 s waiting for ${what}; pushes: ${JSON.stringify(this.pushes)}`),
          ),
        10_000,
      );
    }).finally(() => clearTimeout(timer));
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  static open(port: number): Promise<Conn> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port });
      s.once('connect', () => resolve(new Conn(s)));
      s.once('error', reject);
    });
  }

  /** Sends one command without waiting for its reply. */
  write(...args: string[]): void {
    this.socket.write(
      `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`,
    );
  }

  /** The next reply (not a push). */
  async reply(): Promise<string> {
    for (;;) {
      const r = this.replies.shift();
      if (r !== undefined) return r;
      if (this.closed) throw new Error('connection closed');
      await this.arrival('a reply');
    }
  }

  async call(...args: string[]): Promise<string> {
    this.write(...args);
    return this.reply();
  }

  /** Waits until `n` pushes arrived and returns them. */
  async push(n = 1): Promise<string[]> {
    for (;;) {
      if (this.pushes.length >= n) return this.pushes.slice(0, n);
      if (this.closed) throw new Error(`connection closed; pushes so far: ${JSON.stringify(this.pushes)}`);
      await this.arrival(`${n} push(es)`);
    }
  }

  close(): void {
    this.socket.destroy();
  }
}

const invalidate = (...keys: string[]): string =>
  `>2\r\n$10\r\ninvalidate\r\n*${keys.length}\r\n${keys.map((k) => `$${k.length}\r\n${k}\r\n`).join('')}`;

/** `:<n>` → n */
const int = (r: string): number => Number(/^:(-?\d+)\r\n$/.exec(r)?.[1] ?? NaN);

describe('Redis connection-owning commands: tracking, unblock, wait (one shard, one replica)', () => {
  let stack: RedisStack;
  let direct: number;
  const opened: Conn[] = [];
  const conn = async (port: number): Promise<Conn> => {
    const c = await Conn.open(port);
    opened.push(c);
    return c;
  };
  /** Runs `scenario` directly against the primary, then through rwsplit; returns both transcripts. */
  const both = async <T>(scenario: (port: number) => Promise<T>): Promise<[T, T]> => {
    const d = await scenario(direct);
    const p = await scenario(stack.port);
    return [d, p];
  };

  before(async () => {
    stack = await startRedisStack({ cluster: { shards: 1, replicas: 1 } });
    direct = stack.redis.shard(stack.redis.shardNames[0]!).primary.port;
  });
  after(async () => {
    for (const c of opened) c.close();
    await stack?.stop();
  });

  test('CLIENT TRACKING in RESP3: the invalidation push arrives as from the server', async () => {
    const [d, p] = await both(async (port) => {
      const writer = await conn(port);
      await writer.call('SET', 'tk:a', '1');
      const c = await conn(port);
      const out: string[] = [];
      await c.call('HELLO', '3');
      out.push(await c.call('CLIENT', 'TRACKING', 'ON'));
      out.push(await c.call('CLIENT', 'GETREDIR'));
      out.push(await c.call('CLIENT', 'TRACKINGINFO'));
      out.push(await c.call('GET', 'tk:a'));
      out.push(await writer.call('SET', 'tk:a', '2'));
      out.push(...(await c.push(1)));
      // A key written by the tracking client itself: invalidated too (no NOLOOP).
      out.push(await c.call('GET', 'tk:a'));
      out.push(await c.call('SET', 'tk:a', '3'));
      out.push((await c.push(2))[1]!);
      out.push(await c.call('CLIENT', 'TRACKING', 'OFF'));
      out.push(await c.call('CLIENT', 'TRACKINGINFO'));
      return out;
    });
    assert.equal(d[5], invalidate('tk:a'), 'the server sends the push this test expects');
    assert.deepEqual(p, d);
  });

  test("the tracking client's server connection is its own, and closed when it leaves", async () => {
    const trackingConns = async (): Promise<number> => {
      const list = await stack.redis.command(stack.redis.nodes[0]!.id, 'CLIENT', 'LIST');
      return list.split('\n').filter((l) => /flags=\S*t/.test(l)).length;
    };
    assert.equal(stack.redis.nodes[0]!.id, stack.redis.shard(stack.redis.shardNames[0]!).primary.id);
    const before = await trackingConns();
    const c = await conn(stack.port);
    await c.call('HELLO', '3');
    assert.equal(await c.call('CLIENT', 'TRACKING', 'ON'), '+OK\r\n');
    assert.equal(await trackingConns(), before + 1, 'one tracking connection on the primary');
    c.close();
    await waitFor('the tracking connection closed', async () => (await trackingConns()) === before);
  });

  test('CLIENT TRACKING REDIRECT in RESP2: invalidations reach the subscribed client as messages', async () => {
    const [d, p] = await both(async (port) => {
      const writer = await conn(port);
      await writer.call('DEL', 'tr:a', 'tr:b'); // the same keys in both runs
      const sub = await conn(port);
      const c = await conn(port);
      const out: string[] = [];
      const id = int(await sub.call('CLIENT', 'ID'));
      out.push(await sub.call('SUBSCRIBE', '__redis__:invalidate'));
      out.push(await c.call('CLIENT', 'TRACKING', 'ON', 'REDIRECT', '999999'));
      out.push(await c.call('CLIENT', 'TRACKING', 'ON', 'REDIRECT', String(id)));
      out.push((await c.call('CLIENT', 'GETREDIR')) === `:${id}\r\n` ? 'redirect id' : 'other id');
      out.push(await c.call('GET', 'tr:a'));
      out.push(await c.call('GET', 'tr:b'));
      out.push(await writer.call('DEL', 'tr:b'));
      out.push(await writer.call('SET', 'tr:b', 'x'));
      out.push(await sub.reply());
      // The tracking client itself, in RESP2 without pushes, gets nothing on its connection.
      out.push(await c.call('PING'));
      return out;
    });
    assert.equal(d[8], '*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*1\r\n$4\r\ntr:b\r\n');
    assert.deepEqual(p, d);
  });

  test('CLIENT TRACKING BCAST with a prefix, and OPTIN with CLIENT CACHING', async () => {
    const [d, p] = await both(async (port) => {
      const writer = await conn(port);
      await writer.call('DEL', 'to:untracked', 'to:tracked'); // the same keys in both runs
      const out: string[] = [];
      const b = await conn(port);
      await b.call('HELLO', '3');
      out.push(await b.call('CLIENT', 'TRACKING', 'ON', 'BCAST', 'PREFIX', 'tb:'));
      out.push(await writer.call('SET', 'other:1', 'x'));
      out.push(await writer.call('SET', 'tb:1', 'x'));
      out.push(...(await b.push(1)));
      const o = await conn(port);
      await o.call('HELLO', '3');
      out.push(await o.call('CLIENT', 'CACHING', 'yes'));
      out.push(await o.call('CLIENT', 'TRACKING', 'ON', 'OPTIN'));
      out.push(await o.call('GET', 'to:untracked'));
      out.push(await o.call('CLIENT', 'CACHING', 'maybe'));
      out.push(await o.call('CLIENT', 'CACHING', 'no'));
      out.push(await o.call('CLIENT', 'CACHING', 'yes'));
      out.push(await o.call('CLIENT', 'TRACKINGINFO'));
      out.push(await o.call('GET', 'to:tracked'));
      out.push(await writer.call('SET', 'to:untracked', 'x'));
      out.push(await writer.call('SET', 'to:tracked', 'x'));
      // Invalidations come in the order of the writes: only the tracked key's.
      out.push(...(await o.push(1)));
      out.push(await o.call('PING'));
      out.push(String(o.pushes.length));
      return out;
    });
    assert.equal(d[3], invalidate('tb:1'));
    assert.equal(d[14], invalidate('to:tracked'));
    assert.deepEqual(p, d);
  });

  test('CLIENT UNBLOCK with the id CLIENT ID gave unblocks a BLPOP, with TIMEOUT and with ERROR', async () => {
    const [d, p] = await both(async (port) => {
      const blocked = await conn(port);
      const other = await conn(port);
      const out: string[] = [];
      const id = int(await blocked.call('CLIENT', 'ID'));
      out.push(await other.call('CLIENT', 'UNBLOCK', String(id)));
      out.push(await other.call('CLIENT', 'UNBLOCK', 'x'));
      out.push(await other.call('CLIENT', 'UNBLOCK', String(id), 'later'));
      for (const mode of ['TIMEOUT', 'ERROR']) {
        blocked.write('BLPOP', 'ub:empty', '0');
        await waitFor('the client blocked', async () =>
          /flags=b /.test(await other.call('CLIENT', 'LIST', 'ID', String(id))),
        );
        out.push(await other.call('CLIENT', 'UNBLOCK', String(id), mode));
        out.push(await blocked.reply());
      }
      out.push(await blocked.call('PING'));
      return out;
    });
    assert.deepEqual(d.slice(3), [
      ':1\r\n',
      '*-1\r\n',
      ':1\r\n',
      '-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n',
      '+PONG\r\n',
    ]);
    assert.deepEqual(p, d);
  });

  test("WAIT counts the replicas that have the client's last write; 0 while the replica is stopped", async () => {
    const replica = stack.redis.shard(stack.redis.shardNames[0]!).replicas[0]!;
    const scenario = async (port: number): Promise<string[]> => {
      const c = await conn(port);
      return [await c.call('SET', 'w:1', 'x'), await c.call('WAIT', '1', '1000')];
    };
    const [d, p] = await both(scenario);
    assert.deepEqual(d, ['+OK\r\n', ':1\r\n']);
    assert.deepEqual(p, d);
    // Connections opened before the replica stops (a fresh one through rwsplit would be fine
    // too: writes need only the primary).
    const [dc, pc, bystander] = await Promise.all([conn(direct), conn(stack.port), conn(stack.port)]);
    process.kill(replica.pid!, 'SIGSTOP');
    try {
      const stopped = async (c: Conn): Promise<string[]> => [
        await c.call('SET', 'w:2', 'y'),
        await c.call('WAIT', '1', '1000'),
      ];
      const ds = await stopped(dc);
      const ps = await stopped(pc);
      assert.deepEqual(
        ds,
        ['+OK\r\n', ':0\r\n'],
        'the server counts no replica for a write it does not have',
      );
      assert.deepEqual(ps, ds);
      // A WAIT that blocks until unblocked holds up no other client, and CLIENT UNBLOCK reaches it.
      const id = int(await pc.call('CLIENT', 'ID'));
      pc.write('WAIT', '1', '0');
      await waitFor('the WAIT blocked', async () =>
        /flags=b /.test(await bystander.call('CLIENT', 'LIST', 'ID', String(id))),
      );
      assert.equal(await bystander.call('SET', 'w:3', 'z'), '+OK\r\n');
      assert.equal(await bystander.call('CLIENT', 'UNBLOCK', String(id)), ':1\r\n');
      assert.equal(await pc.reply(), ':0\r\n');
    } finally {
      process.kill(replica.pid!, 'SIGCONT');
    }
  });
});

describe('Redis connection-owning commands over two shards', () => {
  let stack: RedisStack;
  const opened: Conn[] = [];
  const conn = async (): Promise<Conn> => {
    const c = await Conn.open(stack.port);
    opened.push(c);
    return c;
  };
  /** one key per shard, in shard order, with `prefix` */
  const keysPerShard = async (prefix: string): Promise<string[]> => {
    const writer = await conn();
    const out: string[] = [];
    for (const name of stack.redis.shardNames) {
      const primary = stack.redis.shard(name).primary;
      for (let i = 0; ; i++) {
        const key = `${prefix}${i}`;
        await writer.call('SET', key, 'v');
        if ((await stack.redis.command(primary.id, 'EXISTS', key)) === '1') {
          out.push(key);
          break;
        }
      }
    }
    return out;
  };

  before(async () => {
    stack = await startRedisStack({ cluster: { shards: 2, replicas: 1 } });
  });
  after(async () => {
    for (const c of opened) c.close();
    await stack?.stop();
  });

  test('tracked reads on both shards, and BCAST on both, each invalidated once', async () => {
    const [k0, k1] = (await keysPerShard('ts:')) as [string, string];
    const writer = await conn();
    const c = await conn();
    await c.call('HELLO', '3');
    assert.equal(await c.call('CLIENT', 'TRACKING', 'ON'), '+OK\r\n');
    assert.deepEqual([await c.call('GET', k0), await c.call('GET', k1)], ['$1\r\nv\r\n', '$1\r\nv\r\n']);
    await writer.call('SET', k0, 'w');
    await writer.call('SET', k1, 'w');
    assert.deepEqual([...(await c.push(2))].sort(), [invalidate(k0), invalidate(k1)].sort());
    const [b0, b1] = (await keysPerShard('bc:')) as [string, string];
    const b = await conn();
    await b.call('HELLO', '3');
    assert.equal(await b.call('CLIENT', 'TRACKING', 'ON', 'BCAST', 'PREFIX', 'bc:'), '+OK\r\n');
    await writer.call('SET', b0, 'w');
    await writer.call('SET', b1, 'w');
    assert.deepEqual([...(await b.push(2))].sort(), [invalidate(b0), invalidate(b1)].sort());
  });

  test("WAIT after writes to both shards: the smallest count (0 while one shard's replica is stopped)", async () => {
    const [k0, k1] = (await keysPerShard('ws:')) as [string, string];
    const c = await conn();
    assert.deepEqual(
      [await c.call('SET', k0, 'x'), await c.call('SET', k1, 'x'), await c.call('WAIT', '1', '1000')],
      ['+OK\r\n', '+OK\r\n', ':1\r\n'],
    );
    const replica = stack.redis.shard(stack.redis.shardNames[1]!).replicas[0]!;
    process.kill(replica.pid!, 'SIGSTOP');
    try {
      assert.deepEqual(
        [await c.call('SET', k0, 'y'), await c.call('SET', k1, 'y'), await c.call('WAIT', '1', '1000')],
        ['+OK\r\n', '+OK\r\n', ':0\r\n'],
      );
    } finally {
      process.kill(replica.pid!, 'SIGCONT');
    }
  });
});

describe('Passthrough ACL users: PING and ECHO obey the servers', () => {
  let stack: RedisStack;
  const opened: Conn[] = [];
  before(async () => {
    stack = await startRedisStack({
      cluster: { shards: 1, replicas: 0 },
      redis: { auth: { mode: 'passthrough' } },
    });
    for (const n of stack.redis.nodes)
      await stack.redis.command(n.id, 'ACL', 'SETUSER', 'bob', 'on', '>pw', '~*', '+get');
  });
  after(async () => {
    for (const c of opened) c.close();
    await stack?.stop();
  });

  test('a user without +ping/+echo gets NOPERM for them, as directly', async () => {
    const run = async (port: number): Promise<string[]> => {
      const c = await Conn.open(port);
      opened.push(c);
      return [
        await c.call('PING'),
        await c.call('AUTH', 'bob', 'pw'),
        await c.call('PING'),
        await c.call('ECHO', 'hi'),
        await c.call('GET', 'k'),
      ];
    };
    const d = await run(stack.redis.nodes[0]!.port);
    const p = await run(stack.port);
    assert.equal(d[0], '+PONG\r\n');
    assert.match(d[2]!, /^-NOPERM /);
    assert.match(d[3]!, /^-NOPERM /);
    assert.deepEqual(p, d);
  });
});
