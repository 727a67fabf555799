/**
 * Fault injection for tests: named points in the two-phase commit where the coordinator can
 * be made to die, to prove that recovery finishes whatever it left behind.
 *
 * Enabled only by the environment of the process (never by the config file):
 *   RWSPLIT_FAULTS='2pc-after-prepare=0.05,2pc-after-decision=0.05,2pc-between-commits=0.05'
 *   RWSPLIT_FAULTS_SEED=42            (optional; same seed, same sequence of draws)
 * Each value is the probability that one passing of that point fires. A firing point kills
 * the process at once with SIGKILL, as a crash would: no cleanup, no rollback, sockets closed
 * by the kernel. In-process tests use {@link FaultPoints.throwing} instead, whose firing
 * point throws a {@link FaultInjectedError} that the coordinator lets through untouched.
 */
import { writeSync } from 'node:fs';

/** Every fault point, in the order a commit passes them. */
export const FAULT_POINTS = ['2pc-after-prepare', '2pc-after-decision', '2pc-between-commits'] as const;

/**
 * - `2pc-after-prepare`: passed once per participant whose PREPARE TRANSACTION succeeded,
 *   so a firing leaves some or all participants prepared and no decision;
 * - `2pc-after-decision`: 'commit' is durable, no COMMIT PREPARED sent yet;
 * - `2pc-between-commits`: the first participant committed, the others still prepared.
 */
export type FaultPoint = (typeof FAULT_POINTS)[number];

/** Probability per passing, from 0 (never) to 1 (always). */
export type FaultProbabilities = Partial<Record<FaultPoint, number>>;

/** What a throwing fault point throws; the coordinator rethrows it without cleaning up. */
export class FaultInjectedError extends Error {
  override readonly name = 'FaultInjectedError';
  readonly code = 'FAULT_INJECTED';

  constructor(readonly point: FaultPoint) {
    super(`fault injected at ${point}`);
  }
}

/** A malformed RWSPLIT_FAULTS or RWSPLIT_FAULTS_SEED. */
export class FaultSpecError extends Error {
  override readonly name = 'FaultSpecError';
  readonly code = 'BAD_FAULT_SPEC';
}

/** Parses `name=probability,…`; the message of a bad spec lists the valid names. */
export function parseFaultSpec(spec: string): FaultProbabilities {
  const out: FaultProbabilities = {};
  for (const item of spec.split(',').map((s) => s.trim())) {
    if (item === '') continue;
    const [name, value, extra] = item.split('=').map((s) => s.trim());
    const point = FAULT_POINTS.find((p) => p === name);
    if (point === undefined || extra !== undefined) {
      throw new FaultSpecError(
        `RWSPLIT_FAULTS: '${item}' is not POINT=PROBABILITY with POINT one of ${FAULT_POINTS.join(', ')}`,
      );
    }
    const p = Number(value);
    if (value === undefined || value === '' || !Number.isFinite(p) || p < 0 || p > 1) {
      throw new FaultSpecError(
        `RWSPLIT_FAULTS: probability of ${point} must be a number from 0 to 1, got '${value}'`,
      );
    }
    out[point] = p;
  }
  return out;
}

/** mulberry32: a tiny seeded PRNG, enough for reproducible fault schedules. */
function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Dies like a crash. The line on stderr says where, so a test's log explains the restart. */
function killProcess(point: FaultPoint, seed: number): never {
  try {
    writeSync(2, `rwsplit: fault injected at ${point} (RWSPLIT_FAULTS_SEED=${seed}): SIGKILL\n`);
  } catch {
    // stderr closed: die anyway
  }
  process.kill(process.pid, 'SIGKILL');
  // SIGKILL to oneself is delivered before kill(2) returns; this only satisfies the type.
  throw new FaultInjectedError(point);
}

/** A set of armed fault points; see the module comment. */
export class FaultPoints {
  /** how many times each point fired */
  readonly fired: Record<FaultPoint, number> = {
    '2pc-after-prepare': 0,
    '2pc-after-decision': 0,
    '2pc-between-commits': 0,
  };
  private readonly random: () => number;

  constructor(
    private readonly probabilities: FaultProbabilities,
    readonly seed: number = (Date.now() ^ (process.pid << 16)) >>> 0,
    /** default: SIGKILL the process */
    private readonly onFire?: (point: FaultPoint) => void,
  ) {
    this.random = seededRandom(seed);
  }

  /**
   * The points armed by RWSPLIT_FAULTS, which kill the process; undefined when the variable is
   * unset or empty (the normal case: no fault injection at all).
   *
   * @throws FaultSpecError for a malformed variable, so a typo in a test fails loudly.
   */
  static fromEnv(env: NodeJS.ProcessEnv = process.env): FaultPoints | undefined {
    const spec = env.RWSPLIT_FAULTS?.trim();
    if (spec === undefined || spec === '') return undefined;
    const probabilities = parseFaultSpec(spec);
    const seedText = env.RWSPLIT_FAULTS_SEED?.trim();
    if (seedText === undefined || seedText === '') return new FaultPoints(probabilities);
    const seed = Number(seedText);
    if (!Number.isSafeInteger(seed)) {
      throw new FaultSpecError(`RWSPLIT_FAULTS_SEED must be an integer, got '${seedText}'`);
    }
    return new FaultPoints(probabilities, seed);
  }

  /** Points that throw {@link FaultInjectedError} instead of killing: for in-process tests. */
  static throwing(probabilities: FaultProbabilities, seed?: number): FaultPoints {
    return new FaultPoints(probabilities, seed, (point) => {
      throw new FaultInjectedError(point);
    });
  }

  /** One passing of `point`: fires with its probability (kills, or throws for {@link throwing}). */
  pass(point: FaultPoint): void {
    const p = this.probabilities[point] ?? 0;
    if (p <= 0 || this.random() >= p) return;
    this.fired[point]++;
    if (this.onFire !== undefined) this.onFire(point);
    else killProcess(point, this.seed);
  }
}
