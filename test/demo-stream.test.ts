/**
 * `rwsplit demo` runs a change stream: started as a user would (the CLI), its banner names
 * the stream and one shell command that writes a row through the PostgreSQL proxy and reads
 * it back through the Redis proxy with the write's causal token. The test runs exactly that
 * command from the banner, several times: each run must show the row as that run left it
 * (read-your-writes across the stream, never the previous value).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { workersLine } from '../src/cli/demo.js';
import { freePorts } from '../src/cluster/free-port.js';
import { workerCount } from '../src/workers/split-limits.js';
import { waitFor } from './support/stack.js';

const bin = path.resolve('bin/rwsplit.js');

describe('rwsplit demo: the change stream', () => {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'rwsplit-demo-stream-'));
  let child: ChildProcess;
  let out = '';
  let exited: Promise<number | null>;
  let httpPort: number;

  before(async () => {
    let pgPort: number;
    let redisPort: number;
    [pgPort, httpPort, redisPort] = (await freePorts(3)) as [number, number, number];
    const args = ['demo', '--dir', path.join(tmp, 'demo'), '--replicas', '1', '--redis-shards', '2'];
    args.push(
      '--pg-port',
      String(pgPort),
      '--http-port',
      String(httpPort),
      '--redis-port',
      String(redisPort),
    );
    child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
    await waitFor('the demo banner', () => out.includes('Press Ctrl-C') || child.exitCode !== null, 90_000);
    assert.match(out, /rwsplit demo is running/, out);
    // The default, workers: auto (the stream in the controller, the reads in the workers).
    assert.ok(out.includes(`data plane         ${workersLine(workerCount('auto'))}`), out);
  });

  after(async () => {
    if (child.exitCode === null) {
      child.kill('SIGINT');
      await exited;
    }
    rmSync(tmp, { recursive: true, force: true });
  });

  test("the banner's command shows each write in Redis at once, through the proxies", async (t) => {
    assert.match(
      out,
      /Change stream "items": the PostgreSQL table items is kept in Redis as hashes items:<id>/,
    );
    const line = out.split('\n').find((l) => l.trimStart().startsWith('T=$(psql'));
    assert.ok(line, `a command to try the stream in the banner:\n${out}`);
    const command = line.trim();
    t.diagnostic(command);
    // The stream is up (its table copied) before the first try.
    await waitFor(
      'the stream streaming',
      async () => {
        const [s] = (await (await fetch(`http://127.0.0.1:${httpPort}/api/streams`)).json()) as {
          state: string;
        }[];
        return s?.state === 'streaming';
      },
      30_000,
    );
    // The first run inserts qty 5; each later one adds 1 (ON CONFLICT): every read shows its own write.
    for (let run = 0; run < 5; run++) {
      const r = spawnSync('bash', ['-c', command], { encoding: 'utf8', timeout: 30_000 });
      assert.equal(r.status, 0, `run ${run}: ${r.stderr}`);
      const lines = r.stdout.trim().split('\n');
      assert.equal(lines[0], 'OK', `RWSPLIT TOKEN answered: ${r.stdout}`);
      const fields = new Map<string, string>();
      for (let i = 1; i + 1 < lines.length; i += 2) fields.set(lines[i]!, lines[i + 1]!);
      assert.equal(fields.get('id'), '1', r.stdout);
      assert.equal(fields.get('name'), 'apple', r.stdout);
      assert.equal(fields.get('qty'), String(5 + run), `run ${run} reads its own write: ${r.stdout}`);
      assert.ok(fields.has('updated_at'), r.stdout);
    }
    const [report] = (await (await fetch(`http://127.0.0.1:${httpPort}/api/streams`)).json()) as {
      name: string;
      state: string;
      readRate: number;
    }[];
    assert.equal(report!.name, 'items');
    assert.equal(report!.state, 'streaming');
  });

  test('the demo stops cleanly on SIGINT', async () => {
    child.kill('SIGINT');
    assert.equal(await exited, 0, out);
    assert.match(out, /rwsplit demo: stopped/);
  });
});
