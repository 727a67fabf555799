import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

/**
 * CommonJS consumers: `require('rwsplit/pg')` and `require('rwsplit/redis')` from a .cjs file
 * load the ES modules themselves (the same instance `import` gives), and a Node.js that cannot
 * require() an ES module gets an error that says what to do.
 */
const run = promisify(execFile);
// Inside the package (dist/test), so 'rwsplit/…' resolves to this package by its own name.
const here = dirname(fileURLToPath(import.meta.url));

async function runCjs(source: string, flags: string[] = []): Promise<string> {
  const file = join(here, `require-check-${process.pid}.cjs`);
  await writeFile(file, source);
  try {
    const { stdout } = await run(process.execPath, [...flags, file]);
    return stdout.trim();
  } finally {
    await rm(file, { force: true });
  }
}

test('require() of rwsplit/pg and rwsplit/redis from a .cjs file gives the ES modules', async () => {
  const out = await runCjs(`
    const pg = require('rwsplit/pg');
    const redis = require('rwsplit/redis');
    import('rwsplit/pg').then((esm) => {
      console.log(JSON.stringify({
        createPool: typeof pg.createPool,
        createRedis: typeof redis.createRedis,
        sameInstance: esm.createPool === pg.createPool && esm.RwsplitPool === pg.RwsplitPool,
      }));
    });
  `);
  assert.deepEqual(JSON.parse(out), { createPool: 'function', createRedis: 'function', sameInstance: true });
});

test('a Node.js that cannot require() ES modules gets a clear error', async () => {
  await assert.rejects(
    runCjs(`require('rwsplit/pg');`, ['--no-experimental-require-module']),
    (err: { stderr?: string }) => {
      assert.match(
        err.stderr ?? '',
        /rwsplit\/pg is an ES module and this Node\.js .* cannot require\(\) it: use import/,
      );
      return true;
    },
  );
});
