import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { pgBinary } from '../src/cluster/pg-binaries.js';
import { startStack, type Stack } from './support/stack.js';

describe('TLS toward clients', () => {
  let stack: Stack;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rwsplit-tls-'));
  before(async () => {
    const made = spawnSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-subj',
        '/CN=localhost',
        '-days',
        '2',
        '-keyout',
        `${dir}/key.pem`,
        '-out',
        `${dir}/cert.pem`,
      ],
      { encoding: 'utf8' },
    );
    assert.equal(made.status, 0, made.stderr);
    stack = await startStack({
      cluster: { replicas: 1 },
      postgres: { tls: { cert: `${dir}/cert.pem`, key: `${dir}/key.pem` } },
    });
  });
  after(async () => {
    await stack?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('node-postgres with ssl gets an encrypted session that works', async () => {
    const c = await stack.client({ ssl: { rejectUnauthorized: false } });
    const stream = (c as unknown as { connection: { stream: tls.TLSSocket } }).connection.stream;
    assert.equal(stream.encrypted, true);
    assert.match(stream.getProtocol() ?? '', /TLS/);
    assert.equal((await c.query('SELECT 40 + 2 AS n')).rows[0].n, 42);
  });

  test('psql with sslmode=require connects over TLS', async () => {
    const out = await new Promise<{ code: number | null; text: string }>((resolve) => {
      const child = spawn(pgBinary('psql'), [
        `host=127.0.0.1 port=${stack.pgPort} user=postgres dbname=postgres sslmode=require`,
        '-XAtc',
        'SELECT 1',
      ]);
      let text = '';
      child.stdout.on('data', (d: Buffer) => (text += d.toString()));
      child.stderr.on('data', (d: Buffer) => (text += d.toString()));
      child.on('close', (code) => resolve({ code, text }));
    });
    assert.equal(out.code, 0, out.text);
    assert.equal(out.text.trim(), '1');
  });

  test('a client without TLS is still served in clear', async () => {
    const c = await stack.client({ ssl: false });
    assert.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1);
  });
});
