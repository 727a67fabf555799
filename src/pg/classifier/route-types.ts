/**
 * The two answers of classification that the statement rules produce, apart from classify.ts so
 * the rules and the classifier that calls them do not import each other.
 */
/** Where a statement may run by itself. */
export type Route = 'read' | 'write';

/** The transaction-control effect of a statement. */
export type TxAction =
  /** `BEGIN` / `START TRANSACTION` (read-write, unspecified, or read-only but serializable). */
  | 'begin'
  /** `BEGIN READ ONLY` / `START TRANSACTION READ ONLY`, modes in any order. */
  | 'begin-read-only'
  /** `SET TRANSACTION READ ONLY` inside a transaction. */
  | 'set-tx-read-only'
  /** `COMMIT` / `END` / `COMMIT AND CHAIN` (not `COMMIT PREPARED`). */
  | 'commit'
  /** `ROLLBACK` / `ABORT` (not `ROLLBACK TO SAVEPOINT`, not `ROLLBACK PREPARED`). */
  | 'rollback'
  | null;
