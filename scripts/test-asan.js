#!/usr/bin/env node
// Runs the integration suite (or the named compiled test files) on the native forwarding core
// built with AddressSanitizer: dataPlane native, the ASan build loaded instead of the usual one,
// ASan's runtime preloaded into the test processes (the core takes it out of the environment
// of the servers they start). A finding aborts the test process that hit it with ASan's report.
//
//   npm run test:asan                               # the whole integration suite (minutes)
//   node scripts/test-asan.js dist/test/routing.test.js [...]   # some files (after npm run build)
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const addon = path.join(root, 'native', 'build-asan', 'build', 'Release', 'rwsplit_native.node');

const build = spawnSync(process.execPath, [path.join(root, 'scripts', 'build-native.js')], {
  stdio: 'inherit',
  env: { ...process.env, RWSPLIT_NATIVE_ASAN: '1' },
});
if (build.status !== 0 || !existsSync(addon)) {
  console.error('rwsplit: the AddressSanitizer build of the native core failed (see above)');
  process.exit(1);
}
const lib = spawnSync('gcc', ['-print-file-name=libasan.so'], { encoding: 'utf8' }).stdout?.trim() ?? '';
if (!lib || !path.isAbsolute(lib) || !existsSync(lib)) {
  console.error('rwsplit: libasan.so not found (gcc -print-file-name=libasan.so)');
  process.exit(1);
}
const files = process.argv.slice(2);
const env = {
  ...process.env,
  RWSPLIT_DATA_PLANE: 'native',
  RWSPLIT_NATIVE_PATH: addon,
  LD_PRELOAD: lib,
  // Node itself is not built for leak checking; the core's own errors are what matter here.
  ASAN_OPTIONS: process.env.ASAN_OPTIONS ?? 'detect_leaks=0:abort_on_error=1',
};
const args =
  files.length > 0
    ? ['--test', '--test-concurrency=2', ...files]
    : [path.join(root, 'scripts', 'run-tests.js'), 'integration'];
const r = spawnSync(process.execPath, args, { stdio: 'inherit', env, cwd: root });
process.exit(r.status ?? 1);
