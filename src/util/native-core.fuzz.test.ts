/**
 * The native core parses bytes from servers: its framing and response tracking
 * (native/src/pgtrack.c) are fuzzed with libFuzzer under ASan and UBSan for a bounded time
 * here (RWSPLIT_FUZZ_SECONDS, default 15), longer with `node scripts/fuzz-native.js`. Without
 * clang the test is skipped and says why.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const clang = spawnSync('sh', ['-c', 'command -v clang'], { stdio: 'ignore' }).status === 0;
if (!clang) console.log('# native fuzzing skipped: clang is not installed (apt-get install clang)');

test(
  'the native framing and response tracking survive a bounded libFuzzer run',
  { skip: clang ? false : 'clang is not installed (apt-get install clang)', timeout: 300_000 },
  () => {
    const seconds = process.env['RWSPLIT_FUZZ_SECONDS'] ?? '15';
    const r = spawnSync(
      process.execPath,
      [path.join(root, 'scripts', 'fuzz-native.js'), seconds, '--require'],
      {
        encoding: 'utf8',
      },
    );
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /fuzzed the native framing/);
  },
);
