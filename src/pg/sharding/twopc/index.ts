/**
 * Two-phase commit across PostgreSQL shards: the coordinator, its decision log (a table on
 * one shard's primary), recovery of what a dead coordinator left prepared, and the fault
 * points tests use to kill it at the worst moments.
 */
export {
  TwoPhaseCoordinator,
  type CommitResult,
  type Participant,
  type TwoPhaseCoordinatorOptions,
} from './coordinator.js';
export {
  DecisionLogTimeoutError,
  DecisionLogUnavailableError,
  LOG_TABLE,
  PgDecisionStore,
  type Decision,
  type DecisionStore,
  type PgDecisionStoreOptions,
} from './decision-log.js';
export { TwoPhaseError, TwoPhaseSqlState, type TwoPhaseErrorCode } from './errors.js';
export {
  FAULT_POINTS,
  FaultInjectedError,
  FaultPoints,
  FaultSpecError,
  parseFaultSpec,
  type FaultPoint,
  type FaultProbabilities,
} from './fault-points.js';
export { GID_PREFIX, newGid, parseGid } from './gid.js';
export { MemoryDecisionStore } from './memory-store.js';
export {
  TwoPhaseRecovery,
  type PreparedRef,
  type RecoveryReport,
  type RecoveryShard,
  type TwoPhaseRecoveryOptions,
} from './recovery.js';
export type { SqlClient } from './sql-client.js';
