/**
 * The dashboard's Streams panel in a real browser (Debian's headless Chromium, as
 * test/dashboard.test.ts): a stream under write load shows as streaming with changes applied
 * per second and its two charts moving; a stream whose table does not exist shows as `error`
 * with the message and its error count, and its event is in the timeline; a Redis primary
 * stopped with SIGSTOP makes the lag (changes, bytes, ms) show, and it drains after SIGCONT.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import type { Page } from 'playwright-core';
import { pino } from 'pino';
import { Rwsplit } from '../src/app.js';
import { PgCluster } from '../src/cluster/pg-cluster.js';
import { RedisCluster } from '../src/cluster/redis-cluster.js';
import { validateConfig } from '../src/config/load.js';
import { launchChromium } from './support/chromium.js';
import { waitFor } from './support/stack.js';

describe('dashboard: the Streams panel in headless Chromium', () => {
  let pgc: PgCluster;
  let redis: RedisCluster;
  let app: Rwsplit;
  let db: pg.Client;
  let browser: Awaited<ReturnType<typeof launchChromium>> | undefined;
  let page: Page;
  let running = true;
  let load: Promise<void> = Promise.resolve();

  before(async () => {
    [pgc, redis] = await Promise.all([
      PgCluster.start({ replicas: 0, settings: { wal_level: 'logical' } }),
      RedisCluster.start({ shards: 1, replicas: 0 }),
    ]);
    db = new pg.Client({ connectionString: pgc.nodes[0]!.connectionString });
    await db.connect();
    await db.query('CREATE TABLE items (id bigserial PRIMARY KEY, name text NOT NULL)');
    const s = redis.shard(redis.shardNames[0]!);
    app = await Rwsplit.start(
      validateConfig({
        workers: 1,
        listen: {
          postgres: { host: '127.0.0.1', port: 0 },
          http: { host: '127.0.0.1', port: 0 },
          redis: { host: '127.0.0.1', port: 0 },
        },
        postgres: {
          nodes: pgc.nodes.map((n) => ({ id: n.id, host: n.host, port: n.port })),
          monitor: { intervalMs: 200, timeoutMs: 1000 },
        },
        redis: {
          shards: [{ name: 's1', nodes: [{ id: s.primary.id, host: s.primary.host, port: s.primary.port }] }],
          monitor: { intervalMs: 200, timeoutMs: 1000 },
        },
        streams: {
          statusIntervalMs: 200,
          list: [
            { name: 'items', table: 'items', key: 'items:{id}' },
            { name: 'broken', table: 'no_such_table', key: 'nst:{id}' },
          ],
        },
      }),
      { log: pino({ level: process.env.RWSPLIT_TEST_LOG ?? 'silent' }) },
    );
    // A steady trickle of inserts: the stream has changes to apply every second.
    load = (async () => {
      while (running) {
        await db.query("INSERT INTO items (name) VALUES ('ü ' || now())");
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    browser = await launchChromium();
    page = await browser.context.newPage();
  });

  after(async () => {
    running = false;
    await load.catch(() => undefined);
    await browser?.close();
    await db?.end();
    await app?.stop();
    await Promise.all([redis?.stop(), pgc?.stop()]);
  });

  const field = (stream: string, name: string): Promise<string> =>
    page.locator(`.stream[data-stream="${stream}"] dd[data-field="${name}"]`).innerText();
  /** the lag card's three figures: changes, bytes, ms */
  const lag = async (): Promise<{ changes: number; text: string }> => {
    const text = await field('items', 'lag');
    const m = /^(\d+) changes · .+ · [\d.]+ ms$/.exec(text);
    return { changes: m ? Number(m[1]) : -1, text };
  };

  test('a streaming stream, a stopped one with its error, live charts, and the lag of a stalled Redis', async () => {
    await page.goto(`http://127.0.0.1:${app.httpAddress!.port}/`);
    await page.waitForSelector('.stream[data-stream="items"][data-state="streaming"]', { timeout: 30_000 });
    await waitFor(
      'items applied/s above 0',
      async () => Number(await field('items', 'applied/s')) > 0,
      15_000,
    );
    const shown = await lag();
    assert.ok(shown.changes >= 0, `lag shows changes, bytes and ms: ${shown.text}`);

    // The stream that cannot start: state, message, error count, and its event.
    await page.waitForSelector('.stream[data-stream="broken"][data-state="error"]', { timeout: 15_000 });
    assert.match(
      await page.locator('.stream[data-stream="broken"] [data-field="error"]').innerText(),
      /table no_such_table does not exist/,
    );
    assert.equal(await field('broken', 'errors'), '1');
    await page.waitForSelector('tr[data-type="stream-error"]', { timeout: 5000 });

    // Two charts, one line per stream, gaining points; the node charts are still four.
    assert.equal(await page.locator('#stream-charts .chart canvas').count(), 2);
    assert.equal(await page.locator('#charts .chart canvas').count(), 4);
    const points = async (): Promise<number> =>
      Number(await page.locator('#stream-charts').getAttribute('data-points'));
    const first = await points();
    await waitFor('a new stream chart point', async () => (await points()) > first, 5000);

    // A stalled Redis: changes arrive and are not applied; the panel shows the lag.
    const id = redis.shard(redis.shardNames[0]!).primary.id;
    redis.signal(id, 'SIGSTOP');
    try {
      await waitFor('a lag in changes shown', async () => (await lag()).changes > 20, 20_000);
      const text = (await lag()).text;
      assert.doesNotMatch(text, / 0 B /, `lag in bytes: ${text}`);
      assert.doesNotMatch(text, / 0\.00 ms$/, `lag in ms: ${text}`);
    } finally {
      redis.signal(id, 'SIGCONT');
    }
    await waitFor(
      'the lag drained',
      async () => {
        const l = await lag();
        return l.changes >= 0 && l.changes < 20;
      },
      30_000,
    );
    assert.equal(await page.locator('.stream[data-stream="items"]').getAttribute('data-state'), 'streaming');
  });
});
