#!/usr/bin/env node
// Fuzzes the native core's framing, response tracking and client-side framing and fingerprint
// (native/fuzz/pgtrack_fuzz.c) with libFuzzer, under AddressSanitizer and
// UndefinedBehaviorSanitizer. Needs clang (Debian: apt-get install clang); without it, says so
// and exits 0 unless --require is given.
//
//   node scripts/fuzz-native.js [seconds=300] [--require]
// The bounded run in the tests uses a few seconds; a finding is left as native/build-fuzz/crash-*.
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const mustRun = args.includes('--require');
const seconds = Number(args.find((a) => /^\d+$/.test(a)) ?? 300);

if (spawnSync('sh', ['-c', 'command -v clang'], { stdio: 'ignore' }).status !== 0) {
  console.log('rwsplit: fuzzing skipped: clang is not installed (Debian/Ubuntu: apt-get install clang)');
  process.exit(mustRun ? 1 : 0);
}
const out = path.join(root, 'native', 'build-fuzz');
mkdirSync(path.join(out, 'corpus'), { recursive: true });
const bin = path.join(out, 'pgtrack_fuzz');
const cc = spawnSync(
  'clang',
  [
    '-g',
    '-O1',
    '-fsanitize=fuzzer,address,undefined',
    '-fno-sanitize-recover=undefined',
    path.join(root, 'native', 'fuzz', 'pgtrack_fuzz.c'),
    path.join(root, 'native', 'src', 'pgtrack.c'),
    path.join(root, 'native', 'src', 'pgclient.c'),
    '-o',
    bin,
  ],
  { stdio: 'inherit' },
);
if (cc.status !== 0) {
  console.error('rwsplit: the fuzz target did not compile');
  process.exit(1);
}
const run = spawnSync(
  bin,
  [`-max_total_time=${seconds}`, '-max_len=70000', `-artifact_prefix=${out}/`, path.join(out, 'corpus')],
  { stdio: ['ignore', 'inherit', 'pipe'], encoding: 'utf8' },
);
const log = run.stderr ?? '';
const done = log.split('\n').filter((l) => /^(#\d+\s+DONE|Done \d+ runs)/.test(l));
if (run.status !== 0) {
  console.error(log.split('\n').slice(-40).join('\n'));
  console.error('rwsplit: the fuzzer found a failure (input saved under native/build-fuzz/)');
  process.exit(1);
}
console.log(`rwsplit: fuzzed the native framing for ${seconds} s: ${done.join('; ') || 'clean'}`);
