/**
 * Redis behaviours compared with the server itself (one shard, one replica): errors at MULTI
 * queue time, unknown command texts, deeply nested script replies, BUSY scripts killed through
 * rwsplit, OBJECT on the primary, SLOWLOG without rwsplit's probes, CONFIG SET refused,
 * protocol error texts.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { rawRedis, type RawRedis } from './support/raw-redis.js';
import { startRedisStack, type RedisStack } from './support/redis-stack.js';
import { nodeStates, waitFor } from './support/stack.js';

/** A Lua script returning `ARGV[1]` nested one-element arrays around a string. */
const NESTED =
  "local t = {} local cur = t for i = 1, tonumber(ARGV[1]) do local n = {} cur[1] = n cur = n end cur[1] = 'leaf' return t";

/** What a server answers to raw bytes before closing (protocol errors). */
function rawBytes(port: number, bytes: string): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => s.write(bytes));
    let out = '';
    s.on('data', (d) => (out += d.toString('latin1')));
    s.on('error', () => undefined);
    s.on('close', () => resolve(out));
  });
}

describe('Redis compatibility: rwsplit answers as the server does', () => {
  let stack: RedisStack;
  let direct: RawRedis;
  let proxy: RawRedis;
  let primaryId = '';
  before(async () => {
    stack = await startRedisStack({ cluster: { shards: 1, replicas: 1 } });
    const primary = stack.redis.shard('s1').primary;
    primaryId = primary.id;
    direct = await rawRedis(primary.port, 'direct');
    proxy = await rawRedis(stack.port, 'rwsplit');
  });
  after(async () => {
    direct?.close();
    proxy?.close();
    await stack?.stop();
  });

  /** Runs the same commands on a fresh connection of each side and returns both reply lists. */
  async function both(steps: (string | Buffer)[][]): Promise<{ want: string[]; got: string[] }> {
    const d = await rawRedis(stack.redis.shard('s1').primary.port, 'direct');
    const p = await rawRedis(stack.port, 'rwsplit');
    try {
      const want: string[] = [];
      const got: string[] = [];
      for (const s of steps) want.push(await d.call(...s));
      for (const s of steps) got.push(await p.call(...s));
      return { want, got };
    } finally {
      d.close();
      p.close();
    }
  }

  test('MULTI: wrong arity, unknown commands and subcommands are refused at once, then EXECABORT', async () => {
    for (const steps of [
      [['MULTI'], ['SET', 'foo'], ['FOO', 'x'], ['GET', 'a'], ['EXEC']],
      [['MULTI'], ['OBJECT', 'nope', 'k'], ['EXEC']],
      [['MULTI'], ['SET', 'm1', '1'], ['EVAL', 'return 1', 'x'], ['GET', 'm1'], ['EXEC']],
      [['MULTI'], ['SCRIPT', 'EXISTS', 'abc'], ['SCRIPT', 'NOPE'], ['DISCARD']],
      [['MULTI'], ['SCRIPT', 'EXISTS', 'abc'], ['FUNCTION', 'STATS'], ['EXEC']],
    ]) {
      const { want, got } = await both(steps);
      assert.deepEqual(got, want, steps.map((s) => s.join(' ')).join(' / '));
    }
    const { want } = await both([['MULTI'], ['SET', 'foo'], ['EXEC']]);
    assert.deepEqual(want, [
      '+OK\r\n',
      "-ERR wrong number of arguments for 'set' command\r\n",
      '-EXECABORT Transaction discarded because of previous errors.\r\n',
    ]);
  });

  test('unknown command names and arguments are echoed byte for byte', async () => {
    const { want, got } = await both([
      ['héllo', 'wörld'],
      ['FOO', 'a', 'b'],
      ['x'.repeat(300), 'y'.repeat(100), 'z'.repeat(100)],
      [Buffer.from([0xe3, 0x81, 0x82]), 'a\r\nb'],
    ]);
    assert.deepEqual(got, want);
    // Raw replies are latin1 text: the UTF-8 bytes of the name, as sent.
    const utf8 = (x: string): string => Buffer.from(x, 'utf8').toString('latin1');
    assert.equal(want[0], utf8("-ERR unknown command 'héllo', with args beginning with: 'wörld' \r\n"));
  });

  test('redis-cli shows a UTF-8 command name the same directly and through rwsplit', async () => {
    const cli = (port: number): Promise<string> =>
      new Promise((resolve, reject) => {
        const child = spawn('redis-cli', ['-h', '127.0.0.1', '-p', String(port), 'ちゃお', 'wörld']);
        let out = '';
        child.stdout.on('data', (d: Buffer) => (out += d.toString()));
        child.on('error', reject);
        child.on('close', () => resolve(out.trim()));
      });
    const want = await cli(stack.redis.shard('s1').primary.port);
    assert.match(want, /unknown command 'ちゃお'/);
    assert.equal(await cli(stack.port), want);
  });

  test('a script reply nested about 8,000 levels deep comes through, and the connection stays', async () => {
    // Redis 7's Lua converts replies up to its stack limit (about 7,990 levels on 7.0).
    const levels = '7900';
    const want = await direct.call('EVAL', NESTED, '0', levels);
    assert.ok(want.startsWith('*1\r\n*1\r\n'), 'the server returned the nesting');
    assert.equal(want.split('*1\r\n').length - 1, 7901);
    assert.equal(await proxy.call('EVAL', NESTED, '0', levels), want);
    assert.equal(
      await proxy.call('EVAL', NESTED, '0', '100000'),
      await direct.call('EVAL', NESTED, '0', '100000'),
    );
    assert.equal(await proxy.call('PING'), '+PONG\r\n');
  });

  test('a busy script keeps its node in rotation and SCRIPT KILL / FUNCTION KILL through rwsplit stop it', async () => {
    assert.equal(await direct.call('CONFIG', 'SET', 'busy-reply-threshold', '100'), '+OK\r\n');
    assert.equal(
      await proxy.call(
        'FUNCTION',
        'LOAD',
        'REPLACE',
        "#!lua name=spin\nredis.register_function('spin', function() while true do end end)",
      ),
      '$4\r\nspin\r\n',
    );
    // Nothing to kill: the server's own NOTBUSY.
    assert.equal(await proxy.call('SCRIPT', 'KILL'), await direct.call('SCRIPT', 'KILL'));
    assert.equal(await proxy.call('FUNCTION', 'KILL'), await direct.call('FUNCTION', 'KILL'));

    const start = Date.now();
    for (const [run, kill] of [
      [
        ['EVAL', 'while true do end', '0'],
        ['SCRIPT', 'KILL'],
      ],
      [
        ['FCALL', 'spin', '0'],
        ['FUNCTION', 'KILL'],
      ],
    ] as const) {
      // Directly first: what the killed client is told.
      const watcher = await rawRedis(stack.redis.shard('s1').primary.port, 'watcher');
      const spinner = await rawRedis(stack.redis.shard('s1').primary.port, 'spinner');
      const killedDirect = spinner.call(...run);
      await waitFor('the script to be busy', async () => (await watcher.call('PING')).startsWith('-BUSY'));
      assert.equal(await watcher.call(...kill), '+OK\r\n');
      const wantError = await killedDirect;
      spinner.close();

      const client = await rawRedis(stack.port, 'rwsplit-spinner');
      const killed = client.call(...run);
      await waitFor('the script to be busy', async () => (await watcher.call('PING')).startsWith('-BUSY'));
      // Several monitor rounds (every 200 ms) see BUSY from the primary.
      const busySince = Date.now();
      await waitFor('three monitor intervals', () => Date.now() - busySince > 600);
      const states = await nodeStates(stack.httpPort);
      assert.equal(states.find((n) => n.id === primaryId)?.state, 'up', 'the busy primary stays in rotation');
      assert.equal(await proxy.call(...kill), '+OK\r\n');
      assert.equal(await killed, wantError, 'the killed client gets the server own error');
      client.close();
      watcher.close();
    }
    const events = (await (
      await fetch(`http://127.0.0.1:${stack.httpPort}/api/events?since=${start}`)
    ).json()) as {
      node: string;
      type: string;
    }[];
    assert.deepEqual(
      events.filter((e) => e.node === primaryId && e.type === 'down'),
      [],
      'no down event for the busy primary',
    );
    assert.equal(await proxy.call('PING'), '+PONG\r\n');
  });

  test('OBJECT runs on the primary (where the writes and their accesses are)', async () => {
    await proxy.call('SET', 'obj', 'value');
    const before = await stack.calls('object\\|idletime');
    for (let i = 0; i < 5; i++) assert.match(await proxy.call('OBJECT', 'IDLETIME', 'obj'), /^:\d+\r\n$/);
    assert.equal(
      await proxy.call('OBJECT', 'ENCODING', 'obj'),
      await direct.call('OBJECT', 'ENCODING', 'obj'),
    );
    const afterCalls = await stack.calls('object\\|idletime');
    for (const n of stack.redis.nodes) {
      const ran = afterCalls.get(n.id)! - before.get(n.id)!;
      assert.equal(ran, n.id === primaryId ? 5 : 0, `${n.id} ran ${ran} OBJECT IDLETIME`);
    }
  });

  test("SLOWLOG GET through rwsplit leaves out rwsplit's own monitor probes", async () => {
    assert.equal(await direct.call('CONFIG', 'SET', 'slowlog-log-slower-than', '0'), '+OK\r\n');
    try {
      await direct.call('SLOWLOG', 'RESET');
      await waitFor('a monitor probe in the slow log', async () =>
        (await direct.call('SLOWLOG', 'GET', '128')).includes('rwsplit-monitor'),
      );
      await proxy.call('SET', 'slow', '1');
      const got = await proxy.call('SLOWLOG', 'GET', '128');
      assert.ok(!got.includes('rwsplit-monitor'), 'no monitor entry through rwsplit');
      assert.ok(got.includes('slow'), "the client's own command is listed");
    } finally {
      await direct.call('CONFIG', 'SET', 'slowlog-log-slower-than', '10000');
    }
  });

  test('CONFIG SET is refused with the reason; CONFIG GET answers', async () => {
    assert.match(
      await proxy.call('CONFIG', 'SET', 'maxmemory', '0'),
      /^-ERR CONFIG SET is refused by rwsplit: .*each server directly/,
    );
    assert.equal(
      await proxy.call('CONFIG', 'GET', 'maxmemory'),
      await direct.call('CONFIG', 'GET', 'maxmemory'),
    );
  });

  test('protocol errors for bad bulk and multibulk lengths begin with Redis own texts', async () => {
    const port = stack.redis.shard('s1').primary.port;
    for (const bytes of [
      '*1\r\n$-5\r\n',
      '*1\r\n$abc\r\n',
      '*abc\r\n',
      '*1\r\n$999999999999\r\n',
      '*99999999999\r\n',
    ]) {
      const want = (await rawBytes(port, bytes)).trim();
      const got = await rawBytes(stack.port, bytes);
      assert.match(want, /^-ERR Protocol error: invalid (multi)?bulk length$/);
      assert.ok(got.startsWith(want), `${JSON.stringify(bytes)}: ${got.trim()} begins with ${want}`);
    }
  });
});
