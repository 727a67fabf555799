/**
 * `rwsplit demo` fails over: started as a user would (the CLI, as test/cli.test.ts does), the
 * banner names the primaries' pids; `kill -9` of the PostgreSQL primary, then of the Redis
 * shard primary, and writes through the demo's own ports work again on another node, while
 * the dashboard (headless Chromium) shows the promotion and the new primary's role.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import type { Page } from 'playwright-core';
import { freePorts } from '../src/cluster/free-port.js';
import { redisCommand } from '../src/cluster/redis-client.js';
import { launchChromium } from './support/chromium.js';
import { waitFor } from './support/stack.js';

const bin = path.resolve('bin/rwsplit.js');

interface ApiNode {
  id: string;
  kind: string;
  shard: string;
  role: string;
  state: string;
  port: number;
}

/** Kill → first acknowledged write, retrying every 20 ms; each attempt on a fresh connection. */
async function firstWriteAfter(killedAt: number, write: () => Promise<void>): Promise<number> {
  const deadline = killedAt + 30_000;
  let last = '';
  while (Date.now() < deadline) {
    try {
      await write();
      return Date.now() - killedAt;
    } catch (err) {
      last = (err as Error).message;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  throw new Error(`no write acknowledged within 30 s of the kill; last error: ${last}`);
}

describe('rwsplit demo: automatic failover', () => {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'rwsplit-demo-failover-'));
  let child: ChildProcess;
  let out = '';
  let exited: Promise<number | null>;
  let pgPort: number;
  let httpPort: number;
  let redisPort: number;
  let browser: Awaited<ReturnType<typeof launchChromium>> | undefined;
  let page: Page;

  const nodes = async (): Promise<ApiNode[]> =>
    (await (await fetch(`http://127.0.0.1:${httpPort}/api/nodes`)).json()) as ApiNode[];

  before(async () => {
    [pgPort, httpPort, redisPort] = (await freePorts(3)) as [number, number, number];
    child = spawn(
      process.execPath,
      [
        bin,
        'demo',
        '--dir',
        path.join(tmp, 'demo'),
        '--replicas',
        '1',
        '--pg-port',
        String(pgPort),
        '--http-port',
        String(httpPort),
        '--redis-port',
        String(redisPort),
        '--redis-shards',
        '1',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
    await waitFor('the demo banner', () => out.includes('Press Ctrl-C') || child.exitCode !== null, 90_000);
    assert.match(out, /rwsplit demo is running/, out);
    await waitFor('every node up', async () => (await nodes()).every((n) => n.state === 'up'), 15_000);
    browser = await launchChromium();
    page = await browser.context.newPage();
    await page.goto(`http://127.0.0.1:${httpPort}/`);
  });

  after(async () => {
    await browser?.close();
    if (child && child.exitCode === null) {
      child.kill('SIGINT');
      await exited;
    }
    rmSync(tmp, { recursive: true, force: true });
  });

  test('the banner says failover is automatic and names the primaries to kill', () => {
    assert.match(out, /Failover is automatic \(failover: auto for PostgreSQL and Redis\)/);
    assert.match(out, /kill -9 \d+\s+# PostgreSQL primary pg-primary/);
    assert.match(out, /kill -9 \d+\s+# Redis primary \S+/);
  });

  test('kill -9 of the PostgreSQL primary: writes through the demo port resume on the promoted replica', async (t) => {
    const pid = Number(/kill -9 (\d+)\s+# PostgreSQL primary/.exec(out)![1]);
    const login = { host: '127.0.0.1', port: pgPort, user: 'postgres', database: 'postgres' };
    const setup = new pg.Client(login);
    await setup.connect();
    await setup.query('CREATE TABLE demo_failover (id serial PRIMARY KEY, port int)');
    const before = await setup.query<{ port: number }>(
      'INSERT INTO demo_failover (port) VALUES (inet_server_port()) RETURNING port',
    );
    await setup.end();
    const oldPort = before.rows[0]!.port;
    await page.waitForSelector('.node[data-node="pg-primary"] .role:text-is("primary")', { timeout: 5000 });

    process.kill(pid, 'SIGKILL');
    const killedAt = Date.now();
    let newPort = 0;
    let lateOnOld = 0;
    const ms = await firstWriteAfter(killedAt, async () => {
      const c = new pg.Client({ ...login, connectionTimeoutMillis: 2000 });
      c.on('error', () => undefined);
      try {
        await c.connect();
        const r = await c.query<{ port: number }>(
          'INSERT INTO demo_failover (port) VALUES (inet_server_port()) RETURNING port',
        );
        newPort = r.rows[0]!.port;
        // kill -9 of the postmaster alone leaves its backends running until they notice
        // (PostgreSQL's own behaviour): a pooled connection may still take a write in the
        // first milliseconds. What this test waits for is the first write on the new primary.
        if (newPort === oldPort) {
          lateOnOld++;
          throw new Error('acknowledged by a backend of the killed postmaster');
        }
      } finally {
        await c.end().catch(() => undefined);
      }
    });
    t.diagnostic(
      `PostgreSQL: first write on the promoted node ${ms} ms after kill -9 of the primary (${lateOnOld} taken by the dying one before)`,
    );
    const promoted = (await nodes()).find((n) => n.kind === 'postgres' && n.port === newPort);
    assert.equal(promoted?.role, 'primary', `rwsplit reports ${promoted?.id} as the primary`);

    // The dashboard shows the promotion (banner and timeline) and the new roles.
    await page.waitForSelector(`.failover[data-state="done"]:has-text("postgres shard default")`, {
      timeout: 5000,
    });
    await page.waitForSelector(`tr[data-type="failover-end"][data-node="${promoted!.id}"]`, {
      timeout: 5000,
    });
    await page.waitForSelector(`.node[data-node="${promoted!.id}"] .role:text-is("primary")`, {
      timeout: 5000,
    });
  });

  test('kill -9 of the Redis shard primary: writes through the demo port resume on the promoted replica', async (t) => {
    const m = /kill -9 (\d+)\s+# Redis primary (\S+)/.exec(out)!;
    const [pid, oldId] = [Number(m[1]), m[2]!];
    const proxy = { port: redisPort, timeoutMs: 2000 };
    assert.equal(await redisCommand(proxy, 'SET', 'demo:before', '1'), 'OK');

    process.kill(pid, 'SIGKILL');
    const killedAt = Date.now();
    const ms = await firstWriteAfter(killedAt, async () => {
      const reply = await redisCommand(proxy, 'SET', 'demo:after', 'written');
      if (reply !== 'OK') throw new Error(reply);
    });
    t.diagnostic(`Redis: first write acknowledged ${ms} ms after kill -9 of the shard primary`);
    const primary = (await nodes()).find(
      (n) => n.kind === 'redis' && n.role === 'primary' && n.state === 'up',
    );
    assert.ok(primary, 'rwsplit reports a Redis primary that is up');
    assert.notEqual(primary.id, oldId, 'a replica was promoted');
    // The write is on the promoted server itself, read directly.
    assert.equal(await redisCommand({ port: primary.port }, 'GET', 'demo:after'), 'written');
    await page.waitForSelector(`.failover[data-state="done"]:has-text("redis shard s1")`, { timeout: 5000 });
    await page.waitForSelector(`.node[data-node="${primary.id}"] .role:text-is("primary")`, {
      timeout: 5000,
    });
  });

  test('the demo still stops cleanly on SIGINT', async () => {
    child.kill('SIGINT');
    assert.equal(await exited, 0, out);
    assert.match(out, /rwsplit demo: stopped/);
    const used = /using (\S+) instead/.exec(out)?.[1] ?? path.join(tmp, 'demo');
    const ps = spawnSync('pgrep', ['-f', `postgres -D ${used}`], { encoding: 'utf8' });
    assert.equal(ps.stdout.trim(), '', 'no postgres of the demo is left running');
  });
});
