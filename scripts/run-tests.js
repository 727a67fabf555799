#!/usr/bin/env node
// Runs the compiled test files with node's built-in runner: unit tests (next to the code,
// dist/src/**/*.test.js, the benchmark's parsers in dist/bench, the chaos checker in
// dist/chaos) and integration tests against real servers (dist/test/*.test.js).
// Node 20's runner takes no globs, so the files are listed here.
// Usage: node scripts/run-tests.js [unit|integration] [extra node --test flags]
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';

function find(dir) {
  let out = [];
  let entries = [];
  try {
    entries = readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of entries) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) out = out.concat(find(p));
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out.sort();
}

const which = process.argv[2] === 'unit' || process.argv[2] === 'integration' ? process.argv[2] : 'all';
const extra = process.argv.slice(which === 'all' ? 2 : 3);
const files = [
  ...(which !== 'integration' ? [...find('dist/src'), ...find('dist/bench'), ...find('dist/chaos')] : []),
  ...(which !== 'unit' ? find('dist/test') : []),
];
if (files.length === 0) {
  console.error('no compiled test files found: run `npm run build` first');
  process.exit(1);
}
// Two files at a time: each integration file starts its own PostgreSQL cluster, and the
// machines this runs on have two cores.
const concurrency = process.env.RWSPLIT_TEST_CONCURRENCY ?? '2';
const r = spawnSync(process.execPath, ['--test', `--test-concurrency=${concurrency}`, ...extra, ...files], {
  stdio: 'inherit',
});
// The files that touch routing, failover, causal reads and two-phase commit run a second time
// with two data-plane workers (`workers: 2`, read by test/support from RWSPLIT_TEST_WORKERS).
const BOTH_WAYS = [
  'routing',
  'failover',
  'switchover',
  'session-failover',
  'causal',
  'shards',
  'redis-failover',
  'redis-causal',
].map((name) => `dist/test/${name}.test.js`);
let workersStatus = 0;
if (which !== 'unit' && !process.env.RWSPLIT_TEST_WORKERS) {
  console.log(`\n# again with workers: 2 (${BOTH_WAYS.length} files)`);
  const w = spawnSync(
    process.execPath,
    ['--test', `--test-concurrency=${concurrency}`, ...extra, ...BOTH_WAYS],
    {
      stdio: 'inherit',
      env: { ...process.env, RWSPLIT_TEST_WORKERS: '2' },
    },
  );
  workersStatus = w.status ?? 1;
}
// The files that pin down routing, read-your-writes, protocol fidelity and failover run once
// more on the native forwarding core (dataPlane: native) when it is built, so both data planes
// are held to the same behaviour. Fewer write-then-read pairs there: the full count ran above.
const NATIVE_FILES = ['routing', 'causal', 'protocol', 'session-failover'].map(
  (name) => `dist/test/${name}.test.js`,
);
let nativeStatus = 0;
const nativeBuilt = existsSync(
  process.env.RWSPLIT_NATIVE_PATH ?? path.join('native', 'build', 'Release', 'rwsplit_native.node'),
);
if (which !== 'unit' && !process.env.RWSPLIT_DATA_PLANE) {
  if (!nativeBuilt)
    console.log(
      '\n# not again with dataPlane: native: the native core is not built (node scripts/build-native.js)',
    );
  else {
    console.log(`\n# again with dataPlane: native (${NATIVE_FILES.length} files)`);
    const n = spawnSync(
      process.execPath,
      ['--test', `--test-concurrency=${concurrency}`, ...extra, ...NATIVE_FILES],
      {
        stdio: 'inherit',
        env: {
          ...process.env,
          RWSPLIT_DATA_PLANE: 'native',
          RWSPLIT_RYW_PAIRS: process.env.RWSPLIT_RYW_PAIRS ?? '2000',
        },
      },
    );
    nativeStatus = n.status ?? 1;
  }
}
process.exit((r.status ?? 1) || workersStatus || nativeStatus);
