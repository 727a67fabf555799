import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, test } from 'node:test';
import {
  FAULT_POINTS,
  FaultInjectedError,
  FaultPoints,
  FaultSpecError,
  parseFaultSpec,
} from './fault-points.js';

describe('fault points', () => {
  test('RWSPLIT_FAULTS parses into probabilities per point', () => {
    assert.deepEqual(parseFaultSpec(' 2pc-after-prepare=0.05, 2pc-between-commits=1 ,'), {
      '2pc-after-prepare': 0.05,
      '2pc-between-commits': 1,
    });
  });

  test('a malformed spec names the valid points or the bad probability', () => {
    assert.throws(
      () => parseFaultSpec('2pc-after-prepar=0.1'),
      (e: unknown) => {
        assert.ok(e instanceof FaultSpecError);
        assert.equal(e.code, 'BAD_FAULT_SPEC');
        for (const p of FAULT_POINTS) assert.match(e.message, new RegExp(p));
        return true;
      },
    );
    for (const bad of [
      '2pc-after-decision=1.5',
      '2pc-after-decision=',
      '2pc-after-decision=x',
      '2pc-after-decision',
    ]) {
      assert.throws(() => parseFaultSpec(bad), FaultSpecError, bad);
    }
  });

  test('no variable, no fault points; a bad seed is refused', () => {
    assert.equal(FaultPoints.fromEnv({}), undefined);
    assert.equal(FaultPoints.fromEnv({ RWSPLIT_FAULTS: '  ' }), undefined);
    const armed = FaultPoints.fromEnv({ RWSPLIT_FAULTS: '2pc-after-decision=0.5', RWSPLIT_FAULTS_SEED: '7' });
    assert.equal(armed?.seed, 7);
    assert.throws(
      () => FaultPoints.fromEnv({ RWSPLIT_FAULTS: '2pc-after-decision=0.5', RWSPLIT_FAULTS_SEED: 'abc' }),
      FaultSpecError,
    );
  });

  test('probability 0 never fires, 1 always fires, and a throwing point says which', () => {
    const faults = FaultPoints.throwing({ '2pc-after-prepare': 0, '2pc-after-decision': 1 });
    for (let i = 0; i < 100; i++) faults.pass('2pc-after-prepare');
    faults.pass('2pc-between-commits'); // not armed
    assert.throws(
      () => faults.pass('2pc-after-decision'),
      (e: unknown) => e instanceof FaultInjectedError && e.point === '2pc-after-decision',
    );
    assert.deepEqual(faults.fired, {
      '2pc-after-prepare': 0,
      '2pc-after-decision': 1,
      '2pc-between-commits': 0,
    });
  });

  test('the same seed fires at the same passings; about p of them fire', () => {
    const pattern = (seed: number): boolean[] => {
      const faults = FaultPoints.throwing({ '2pc-between-commits': 0.3 }, seed);
      return Array.from({ length: 1000 }, () => {
        try {
          faults.pass('2pc-between-commits');
          return false;
        } catch {
          return true;
        }
      });
    };
    assert.deepEqual(pattern(42), pattern(42));
    assert.notDeepEqual(pattern(42), pattern(43));
    const fired = pattern(42).filter(Boolean).length;
    assert.ok(fired > 200 && fired < 400, `fired ${fired} of 1000 at p=0.3`);
  });
});

describe('fault points from RWSPLIT_FAULTS', () => {
  test('a firing point kills the process with SIGKILL at once, saying where', () => {
    const moduleUrl = new URL('./fault-points.js', import.meta.url).href;
    const script =
      `import { FaultPoints } from ${JSON.stringify(moduleUrl)};\n` +
      `const faults = FaultPoints.fromEnv();\n` +
      `faults.pass('2pc-after-prepare');\n` +
      `console.log('passed the unarmed point');\n` +
      `faults.pass('2pc-after-decision');\n` +
      `console.log('survived');\n`;
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      env: { ...process.env, RWSPLIT_FAULTS: '2pc-after-decision=1', RWSPLIT_FAULTS_SEED: '3' },
      encoding: 'utf8',
    });
    assert.equal(child.signal, 'SIGKILL');
    assert.equal(child.stdout.trim(), 'passed the unarmed point');
    assert.match(child.stderr, /fault injected at 2pc-after-decision \(RWSPLIT_FAULTS_SEED=3\)/);
  });
});
