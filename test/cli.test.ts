import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import pg from 'pg';
import { freePorts } from '../src/cluster/free-port.js';

const bin = path.resolve('bin/rwsplit.js');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'rwsplit-cli-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

function runCli(args: string[]): { status: number | null; stderr: string; stdout: string } {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, stderr: r.stderr, stdout: r.stdout };
}

function configFile(name: string, body: string): string {
  const f = path.join(tmp, name);
  writeFileSync(f, body);
  return f;
}

describe('rwsplit start: config validation', () => {
  test('an unknown key is named, with exit code 2', () => {
    const f = configFile(
      'unknown.yaml',
      'postgres:\n  nodes:\n    - { id: a, host: 127.0.0.1, port: 5 }\n  pool:\n    sise: 3\n',
    );
    const r = runCli(['start', '--config', f]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /unknown key sise in postgres\.pool/);
    assert.equal(r.stderr.trim().split('\n').length, 1, 'one clear message');
  });

  test('a wrong type names the key', () => {
    const f = configFile('type.yaml', "postgres:\n  nodes:\n    - { id: a, host: 127.0.0.1, port: 'x' }\n");
    const r = runCli(['start', '--config', f]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /postgres\.nodes\.0\.port/);
  });

  test('invalid YAML and a missing file', () => {
    const r1 = runCli(['start', '--config', configFile('bad.yaml', 'postgres: [\n')]);
    assert.equal(r1.status, 2);
    assert.match(r1.stderr, /not valid YAML/);
    const r2 = runCli(['start', '--config', path.join(tmp, 'missing.yaml')]);
    assert.equal(r2.status, 2);
    assert.match(r2.stderr, /cannot read config file/);
  });

  test('an unknown balance strategy lists the accepted ones', () => {
    const f = configFile(
      'enum.yaml',
      'postgres:\n  nodes:\n    - { id: a, host: 127.0.0.1 }\n  routing:\n    balance: random\n',
    );
    const r = runCli(['start', '--config', f]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /postgres\.routing\.balance: .*round-robin/);
  });
});

describe('rwsplit ring', () => {
  test('reports the keys a new shard would take: about 1/N, all to the new shard', () => {
    const f = configFile(
      'ring.yaml',
      [
        'postgres:',
        '  nodes: [{ id: a, host: 127.0.0.1 }]',
        'redis:',
        '  hash: { distribution: ketama, function: md5 }',
        '  shards:',
        '    - { name: s1, nodes: [{ id: r1, host: 127.0.0.1 }] }',
        '    - { name: s2, nodes: [{ id: r2, host: 127.0.0.1 }] }',
        '',
      ].join('\n'),
    );
    const r = runCli(['ring', '--config', f, '--add', 's3', '--keys', '20000']);
    assert.equal(r.status, 0, r.stderr);
    const m = /keys moved: (\d+) of 20000 sampled \(([\d.]+)%/.exec(r.stdout);
    assert.ok(m, r.stdout);
    const pct = Number(m[2]);
    assert.ok(pct > 25 && pct < 42, `moved ${pct}% (ideal 33%)`);
    assert.match(r.stdout, new RegExp(`to s3: ${m[1]}$`, 'm'), 'every moved key goes to the new shard');
  });
});

describe('rwsplit demo', () => {
  test('starts a cluster and the proxy, serves a query, and stops everything on SIGINT with exit 0', async () => {
    const [pgPort, httpPort, redisPort] = await freePorts(3);
    // A private directory (mode 0700, like /root) makes the demo fall back to the temp dir.
    const dir = path.join(tmp, 'demo');
    const child = spawn(
      process.execPath,
      [
        bin,
        'demo',
        '--dir',
        dir,
        '--replicas',
        '1',
        '--pg-port',
        String(pgPort),
        '--http-port',
        String(httpPort),
        '--redis-port',
        String(redisPort),
        '--redis-shards',
        '2',
      ],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    let exitCode: number | null | undefined;
    const exited = new Promise<number | null>((resolve) =>
      child.on('exit', (code) => {
        exitCode = code;
        resolve(code);
      }),
    );
    const deadline = Date.now() + 60_000;
    while (!out.includes('rwsplit demo is running') && exitCode === undefined && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.match(out, /rwsplit demo is running/, out);
    assert.match(out, new RegExp(`psql "host=127.0.0.1 port=${pgPort}`));

    const c = new pg.Client({ host: '127.0.0.1', port: pgPort, user: 'postgres', database: 'postgres' });
    await c.connect();
    const r = await c.query('SELECT pg_is_in_recovery() AS replica');
    assert.equal(r.rows[0].replica, true, 'the demo routes reads to its replica');
    await c.end();
    const cli = (...args: string[]): string =>
      spawnSync('redis-cli', ['-h', '127.0.0.1', '-p', String(redisPort), ...args], {
        encoding: 'utf8',
      }).stdout.trim();
    assert.equal(cli('SET', 'demo-key', 'demo-value'), 'OK');
    // The GET goes to a replica: give replication a moment.
    let got = '';
    for (let i = 0; i < 20 && got !== 'demo-value'; i++) {
      got = cli('--raw', 'GET', 'demo-key');
      if (got !== 'demo-value') await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(got, 'demo-value');
    const status = runCli(['status', '--http', `http://127.0.0.1:${httpPort}`]);
    assert.equal(status.status, 0, status.stderr);
    assert.match(status.stdout, /pg-primary\s+postgres\s+default\s+primary/);

    const pids = [...out.matchAll(/127\.0\.0\.1:(\d+)/g)].length;
    assert.ok(pids > 0);
    child.kill('SIGINT');
    assert.equal(await exited, 0, out);
    assert.match(out, /stopped/);
    const used = /using (\S+) instead/.exec(out)?.[1] ?? dir;
    const ps = spawnSync('pgrep', ['-f', `postgres -D ${used}`], { encoding: 'utf8' });
    assert.equal(ps.stdout.trim(), '', 'no postgres of the demo is left running');
  });
});
