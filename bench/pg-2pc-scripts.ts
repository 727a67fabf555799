/**
 * The cross-shard benchmark's data and pgbench scripts. Each shard holds its own range of a
 * pgbench-like `accounts` table (shard s1 ids 1…N, s2 ids N+1…2N, …), so a statement's shard
 * is given by a `/* rwsplit:shard=sN *\/` hint and the ring plays no part.
 *
 * pgbench (-M simple) substitutes `:name` anywhere in a statement's text, comments included
 * (pgbench.c, assignVariables); a `:name` whose variable is not set is left as it is. So
 * `rwsplit:shard=s:sh` becomes `rwsplit:shard=s2` when `sh` is 2, and `:shard` stays, since no
 * variable of that name is ever set. Block comments reach the server (psqlscan keeps them),
 * which is what rwsplit reads the hint from.
 */

/** Accounts on each shard. */
export const ACCOUNTS_PER_SHARD = 50_000;
/** Every account's balance before the runs; transfers keep the total. */
export const START_BALANCE = 1000;

/** What pgbench runs, and where. */
export type TransferKind = 'single' | 'cross' | 'single-direct';

/**
 * `amount` is ±1…100 (never 0, so a half-committed transfer always changes the total).
 * pgbench's random(lb, ub) is inclusive. The statements put it in parentheses: pgbench pastes
 * the value as text, and `balance - -5` is one character away from a `--` comment.
 */
const AMOUNT = '\\set amount random(1, 100) * (2 * random(0, 1) - 1)';

function transferStatements(
  debitShard: string,
  debitId: string,
  creditShard: string,
  creditId: string,
): string[] {
  return [
    'BEGIN;',
    `/* rwsplit:shard=${debitShard} */ UPDATE accounts SET balance = balance - (:amount) WHERE id = ${debitId};`,
    `/* rwsplit:shard=${creditShard} */ UPDATE accounts SET balance = balance + (:amount) WHERE id = ${creditId};`,
    'COMMIT;',
  ];
}

/** Two accounts on the shard numbered `:sh`, locked lowest id first so two transfers never deadlock. */
function singleShardScript(pickShard: string): string {
  const n = ACCOUNTS_PER_SHARD;
  return [
    pickShard,
    `\\set a random(1, ${n}) + (:sh - 1) * ${n}`,
    `\\set b random(1, ${n}) + (:sh - 1) * ${n}`,
    '\\set lo least(:a, :b)',
    '\\set hi greatest(:a, :b)',
    AMOUNT,
    ...transferStatements('s:sh', ':lo', 's:sh', ':hi'),
  ].join('\n');
}

/**
 * One account on s1 and one on s2, always s1 first: with one lock order across shards no two
 * transfers can wait on each other across shards, a deadlock no PostgreSQL server would see.
 */
function crossShardScript(): string {
  const n = ACCOUNTS_PER_SHARD;
  return [
    `\\set a random(1, ${n})`,
    `\\set b random(${n + 1}, ${2 * n})`,
    AMOUNT,
    ...transferStatements('s1', ':a', 's2', ':b'),
  ].join('\n');
}

/**
 * The pgbench script (`-f`) of one kind: `single` moves money between two accounts of one
 * shard picked at random per transaction, `cross` from an s1 account to an s2 account (two-phase
 * commit), `single-direct` is `single` on s1 only, for a server without rwsplit in front (the
 * hints are then plain comments).
 */
export function transferScript(kind: TransferKind, shards = 2): string {
  if (kind === 'cross') return crossShardScript() + '\n';
  const pick = kind === 'single' ? `\\set sh random(1, ${shards})` : '\\set sh 1';
  return singleShardScript(pick) + '\n';
}

/** SQL that creates and fills one shard's range of accounts (shard index from 0). */
export function accountsSetupSql(shardIndex: number): string[] {
  const first = shardIndex * ACCOUNTS_PER_SHARD + 1;
  const last = (shardIndex + 1) * ACCOUNTS_PER_SHARD;
  return [
    // filler as in pgbench_accounts, so a row is about as wide as pgbench's
    "CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL, filler char(84) NOT NULL DEFAULT '')",
    `INSERT INTO accounts (id, balance) SELECT g, ${START_BALANCE} FROM generate_series(${first}, ${last}) AS g`,
    'VACUUM ANALYZE accounts',
  ];
}

/**
 * Reads the average latency of the script's COMMIT from `pgbench -r` output: "statement
 * latencies in milliseconds" (PostgreSQL 15 adds a failures column after the latency).
 */
export function commitLatencyMs(output: string): number | null {
  const m = /^\s*([\d.]+)\s+(?:\d+\s+)?COMMIT;\s*$/m.exec(output);
  return m?.[1] === undefined ? null : Number(m[1]);
}
