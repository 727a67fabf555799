import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { pino } from 'pino';
import { Rwsplit } from '../src/app.js';
import { PgCluster } from '../src/cluster/pg-cluster.js';
import { RedisCluster } from '../src/cluster/redis-cluster.js';
import { loadConfigFile } from '../src/config/load.js';
import { waitFor } from './support/stack.js';

const TOKEN = 'test-token-0123456789abcdef';

/** A config file for both clusters: PostgreSQL and one Redis shard, so /metrics has every metric. */
function configYaml(
  cluster: PgCluster,
  redis: RedisCluster,
  opts: { token?: string; maxLagMs?: number; poolSize?: number } = {},
): string {
  const node = (n: { id: string; port: number }): string =>
    `    - { id: ${n.id}, host: 127.0.0.1, port: ${n.port} }`;
  const shard = redis.shard(redis.shardNames[0]!);
  return [
    'workers: 1',
    'listen:',
    '  postgres: { host: 127.0.0.1, port: 0 }',
    '  redis: { host: 127.0.0.1, port: 0 }',
    '  http: { host: 127.0.0.1, port: 0 }',
    'postgres:',
    '  nodes:',
    ...cluster.nodes.map(node),
    '  monitor: { intervalMs: 200 }',
    `  pool: { size: ${opts.poolSize ?? 20} }`,
    `  staleness: { maxLagMs: ${opts.maxLagMs ?? 10000} }`,
    'redis:',
    '  shards:',
    `    - name: ${redis.shardNames[0]}`,
    '      nodes:',
    ...[shard.primary, ...shard.replicas].map((n) => `  ${node(n)}`),
    '  monitor: { intervalMs: 200 }',
    ...(opts.token ? ['admin:', `  token: ${opts.token}`] : []),
    'logging: { level: warn }',
    '',
  ].join('\n');
}

describe('admin API: actions, events, metrics, stream', () => {
  let cluster: PgCluster;
  let redis: RedisCluster;
  let app: Rwsplit;
  let open: Rwsplit;
  let base: string;
  let dir: string;
  let file: string;
  let client: pg.Client;
  const silent = pino({ level: 'silent' });

  const post = (p: string, token: string | null = TOKEN, url = base): Promise<Response> =>
    fetch(url + p, { method: 'POST', headers: token ? { authorization: `Bearer ${token}` } : {} });
  const get = async <T>(p: string): Promise<T> => (await (await fetch(base + p)).json()) as T;
  const where = async (): Promise<string> => {
    const r = await client.query<{ port: number }>('SELECT inet_server_port() AS port');
    return cluster.nodes.find((n) => n.port === Number(r.rows[0]!.port))!.id;
  };

  before(async () => {
    [cluster, redis] = await Promise.all([
      PgCluster.start({ replicas: 2 }),
      RedisCluster.start({ shards: 1, replicas: 1 }),
    ]);
    dir = mkdtempSync(path.join(os.tmpdir(), 'rwsplit-admin-'));
    file = path.join(dir, 'rwsplit.yaml');
    writeFileSync(file, configYaml(cluster, redis, { token: TOKEN }));
    app = await Rwsplit.start(loadConfigFile(file), { log: silent, configPath: file });
    base = `http://127.0.0.1:${app.httpAddress!.port}`;
    // A second instance with no admin.token, for the 403.
    writeFileSync(path.join(dir, 'open.yaml'), configYaml(cluster, redis));
    open = await Rwsplit.start(loadConfigFile(path.join(dir, 'open.yaml')), { log: silent });
    client = new pg.Client({
      host: '127.0.0.1',
      port: app.pgAddress!.port,
      user: 'postgres',
      database: 'postgres',
    });
    await client.connect();
  });
  after(async () => {
    await client?.end();
    await Promise.allSettled([app?.stop(), open?.stop()]);
    await Promise.allSettled([cluster?.stop(), redis?.stop()]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('actions: 403 without a configured token, 401 without or with a wrong one', async () => {
    const replica = cluster.replicas[0]!.id;
    const r403 = await post(
      `/api/nodes/${replica}/drain`,
      TOKEN,
      `http://127.0.0.1:${open.httpAddress!.port}`,
    );
    assert.equal(r403.status, 403);
    assert.match(((await r403.json()) as { message: string }).message, /admin\.token/);
    for (const token of [null, 'wrong-token-0123456789']) {
      const r = await post(`/api/nodes/${replica}/drain`, token);
      assert.equal(r.status, 401, `token ${token}`);
      assert.match(r.headers.get('www-authenticate') ?? '', /^Bearer/);
    }
    const reload = await post('/api/reload', null);
    assert.equal(reload.status, 401);
    const nodes = await get<Array<{ id: string; state: string }>>('/api/nodes');
    assert.equal(nodes.find((n) => n.id === replica)!.state, 'up', 'a refused drain changed nothing');
  });

  test('drain takes a replica out of read rotation, undrain brings it back; both are events', async () => {
    const [r1, r2] = cluster.replicas.map((r) => r.id);
    const start = Date.now() - 1;
    const res = await post(`/api/nodes/${r1}/drain`);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { node: r1, drained: true, changed: true });
    const nodes = await get<Array<{ id: string; state: string }>>('/api/nodes');
    assert.equal(nodes.find((n) => n.id === r1)!.state, 'fenced');
    const seen = new Set<string>();
    for (let i = 0; i < 20; i++) seen.add(await where());
    assert.deepEqual([...seen], [r2], 'reads went only to the other replica');

    assert.equal((await post(`/api/nodes/${r1}/undrain`)).status, 200);
    seen.clear();
    for (let i = 0; i < 20; i++) seen.add(await where());
    assert.deepEqual([...seen].sort(), [r1, r2].sort(), 'both replicas serve reads again');

    const events = await get<Array<{ node: string; type: string }>>(`/api/events?since=${start}`);
    assert.deepEqual(
      events.filter((e) => e.node === r1).map((e) => e.type),
      ['drained', 'undrained'],
    );
  });

  test('drain refuses the primary and unknown nodes', async () => {
    const p = await post(`/api/nodes/${cluster.primary.id}/drain`);
    assert.equal(p.status, 409);
    assert.match(((await p.json()) as { message: string }).message, /primary/);
    assert.equal((await post('/api/nodes/nope/drain')).status, 404);
    assert.equal((await post('/api/nodes/nope/explode')).status, 404);
  });

  test('reload: a bad file answers 400 and changes nothing; a good one applies the live keys', async () => {
    const before = structuredClone(app.config);
    writeFileSync(file, configYaml(cluster, redis, { token: TOKEN }).replace('pool: {', 'pool: { sise: 3,'));
    const bad = await post('/api/reload');
    assert.equal(bad.status, 400);
    assert.match(((await bad.json()) as { message: string }).message, /unknown key sise in postgres\.pool/);
    assert.deepEqual(app.config, before, 'the running config is unchanged');

    const NEW_TOKEN = 'new-token-abcdef0123456789';
    writeFileSync(file, configYaml(cluster, redis, { token: NEW_TOKEN, maxLagMs: 2500, poolSize: 7 }));
    const ok = await post('/api/reload');
    assert.equal(ok.status, 200);
    const plan = (await ok.json()) as { applied: string[]; needsRestart: string[] };
    assert.deepEqual(plan.applied.sort(), ['admin.token', 'postgres.staleness.maxLagMs']);
    assert.deepEqual(plan.needsRestart, ['postgres.pool.size']);
    assert.equal(app.config.postgres!.staleness.maxLagMs, 2500);
    assert.equal(app.config.postgres!.pool.size, 20, 'a restart-only key keeps its running value');
    assert.equal((await post('/api/reload', TOKEN)).status, 401, 'the old token no longer works');
    const events = await get<Array<{ type: string; detail: string }>>('/api/events');
    const types = events.map((e) => e.type);
    assert.ok(types.includes('config-reload-failed') && types.includes('config-reload'), types.join());
    assert.ok(!events.some((e) => e.detail.includes(NEW_TOKEN)), 'the token never appears in events');
    writeFileSync(file, configYaml(cluster, redis, { token: TOKEN }));
    assert.equal((await post('/api/reload', NEW_TOKEN)).status, 200);
  });

  test('every metric in /metrics is documented in docs/METRICS.md, with its type', async () => {
    await client.query('SELECT 1');
    const text = await (await fetch(`${base}/metrics`)).text();
    const exposed = new Map([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1]!, m[2]!]));
    const doc = readFileSync('docs/METRICS.md', 'utf8');
    const documented = new Map(
      [...doc.matchAll(/^\| `(rwsplit_[a-z0-9_]+)` +\| (\w+) +\|/gm)].map((m) => [m[1]!, m[2]!]),
    );
    assert.ok(exposed.size >= 10, `found ${exposed.size} metrics`);
    assert.deepEqual(
      [...exposed].sort(([a], [b]) => a.localeCompare(b)),
      [...documented].sort(([a], [b]) => a.localeCompare(b)),
    );
  });

  test('shards and stats report every node, decisions and connections', async () => {
    for (let i = 0; i < 10; i++) await client.query('SELECT 1');
    const shards =
      await get<Array<{ kind: string; shard: string; primary: string; nodes: unknown[] }>>('/api/shards');
    const redisShard = redis.shard(redis.shardNames[0]!);
    assert.deepEqual(
      shards.map((s) => [s.kind, s.shard, s.primary, s.nodes.length]),
      [
        ['postgres', 'default', cluster.primary.id, 3],
        ['redis', redis.shardNames[0], redisShard.primary.id, 2],
      ],
    );
    const stats = await get<{
      decisions: Record<string, number>;
      clients: Record<string, number>;
      nodes: Array<{ id: string; queries: number; p99Ms: number | null }>;
    }>('/api/stats');
    assert.ok((stats.decisions.read ?? 0) >= 10, JSON.stringify(stats.decisions));
    assert.deepEqual(stats.clients, { postgres: 1, redis: 0 });
    const replicaIds = cluster.replicas.map((r) => r.id);
    const replicaQueries = stats.nodes.filter((n) => replicaIds.includes(n.id));
    assert.equal(replicaQueries.length, 2);
    assert.ok(replicaQueries.every((n) => n.queries > 0 && n.p99Ms !== null && n.p99Ms > 0));
  });

  test('the stream delivers snapshots with rates, and events as they happen', async () => {
    const ac = new AbortController();
    const res = await fetch(`${base}/api/stream`, { signal: ac.signal });
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    const messages: Array<{ event: string; data: unknown }> = [];
    const reading = (async () => {
      let buf = '';
      const decoder = new TextDecoder();
      for await (const chunk of res.body!) {
        buf += decoder.decode(chunk as Uint8Array, { stream: true });
        let i: number;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (event && data) messages.push({ event, data: JSON.parse(data) });
        }
      }
    })().catch(() => undefined);
    try {
      const snapshots = (): Array<{ sampleAt: number; nodes: Array<{ id: string; rates: unknown }> }> =>
        messages.filter((m) => m.event === 'snapshot').map((m) => m.data as never);
      await waitFor('a first snapshot', () => snapshots().length > 0, 3000);
      assert.equal(snapshots()[0]!.nodes.length, 5, 'three PostgreSQL nodes and two Redis nodes');
      assert.ok(
        messages.some((m) => m.event === 'events'),
        'the log is sent on connect',
      );
      const load = setInterval(() => void client.query('SELECT 1').catch(() => undefined), 20);
      try {
        await waitFor(
          'a sampled snapshot with rates',
          () => new Set(snapshots().map((s) => s.sampleAt)).size >= 2,
          4000,
        );
      } finally {
        clearInterval(load);
      }
      const last = snapshots().at(-1)!;
      assert.ok(last.nodes.every((n) => n.rates !== null && typeof n.rates === 'object'));
      const replica = cluster.replicas[1]!.id;
      await post(`/api/nodes/${replica}/drain`);
      await waitFor(
        'the drain event on the stream',
        () => messages.some((m) => m.event === 'event' && (m.data as { type: string }).type === 'drained'),
        2000,
      );
      await post(`/api/nodes/${replica}/undrain`);
    } finally {
      ac.abort();
      await reading;
    }
  });

  test('rwsplit events and rwsplit status print the log and the node table', async () => {
    // Asynchronously: the admin server answering the CLI runs in this process.
    const run = async (args: string[]): Promise<string> => {
      const r = await promisify(execFile)(process.execPath, [path.resolve('bin/rwsplit.js'), ...args], {
        encoding: 'utf8',
        timeout: 15_000,
      });
      return r.stdout;
    };
    const events = await run(['events', '--http', base, '--since', '10m']);
    assert.match(events.split('\n')[0]!, /^TIME +NODE +EVENT +DETAIL$/);
    assert.match(events, new RegExp(`${cluster.replicas[0]!.id} +drained`));
    assert.match(events, /config-reload /);
    assert.equal(
      (await run(['events', '--http', base, '--since', String(Date.now() + 60_000)])).trim(),
      'no events',
    );
    const status = await run(['status', '--http', base]);
    for (const n of cluster.nodes) assert.match(status, new RegExp(`^${n.id} `, 'm'));
  });
});
