#!/usr/bin/env node
// Builds rwsplit's optional native forwarding core (native/, Node-API, node-gyp) against
// Node's own headers. Optional by design: without a C compiler, without Node's headers, or
// when the build fails, it prints a warning and exits 0, and rwsplit runs its JavaScript data
// plane (`dataPlane: auto`). Run by `npm ci` (postinstall) and before the tests.
//
//   node scripts/build-native.js           # build native/build/Release/rwsplit_native.node
//   RWSPLIT_NATIVE_ASAN=1 node scripts/build-native.js   # AddressSanitizer build, apart:
//       native/build-asan/build/Release/rwsplit_native.node; run with
//       RWSPLIT_NATIVE_PATH=<that file> LD_PRELOAD=$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0
//   RWSPLIT_NATIVE_BUILD=0 ...             # skip
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const asan = process.env.RWSPLIT_NATIVE_ASAN === '1';
const sources = path.join(root, 'native');
// The AddressSanitizer build goes apart, so it never replaces the addon running processes use.
const dir = asan ? path.join(sources, 'build-asan') : sources;
const warn = (msg) =>
  console.warn(`rwsplit: native core not built: ${msg}; the JavaScript data plane will be used`);

function has(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

function main() {
  if (process.env.RWSPLIT_NATIVE_BUILD === '0') {
    console.warn('rwsplit: native core build skipped (RWSPLIT_NATIVE_BUILD=0)');
    return;
  }
  if (!existsSync(path.join(sources, 'binding.gyp'))) return; // an install without the sources
  if (asan) {
    mkdirSync(dir, { recursive: true });
    cpSync(path.join(sources, 'binding.gyp'), path.join(dir, 'binding.gyp'));
    cpSync(path.join(sources, 'src'), path.join(dir, 'src'), { recursive: true });
  }
  if (!has('cc') && !has('gcc') && !has('clang')) {
    warn('no C compiler (on Debian/Ubuntu: apt-get install build-essential)');
    return;
  }
  if (!has('make') || !has('python3')) {
    warn('node-gyp needs make and python3');
    return;
  }
  // Node's headers: the installed ones when present (no download), else node-gyp's own cache.
  const nodedir =
    process.env.npm_config_nodedir ||
    (existsSync(path.join(path.dirname(process.execPath), '..', 'include', 'node', 'node_api.h'))
      ? path.resolve(path.dirname(process.execPath), '..')
      : null);
  const gyp = path.join(root, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  if (!existsSync(gyp)) {
    warn('node-gyp is not installed (a devDependency: run npm ci in a clone)');
    return;
  }
  const args = [gyp, 'rebuild', ...(nodedir ? [`--nodedir=${nodedir}`] : [])];
  const r = spawnSync(process.execPath, args, {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
    encoding: 'utf8',
    timeout: 300_000,
  });
  if (r.status !== 0) {
    const tail = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n').slice(-8).join('\n');
    warn(`the build failed:\n${tail}`);
    return;
  }
  const built = path.relative(root, path.join(dir, 'build', 'Release', 'rwsplit_native.node'));
  console.log(`rwsplit: native core built${asan ? ' with AddressSanitizer' : ''} (${built})`);
}

main();
