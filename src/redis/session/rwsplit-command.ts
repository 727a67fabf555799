/**
 * `RWSPLIT …`: the one command rwsplit adds to Redis, answered by the proxy itself, about
 * the client's own connection:
 * - `RWSPLIT CONSISTENCY` → the connection's level (bulk string);
 * - `RWSPLIT CONSISTENCY <eventual|bounded|read-your-writes|strong>` → `+OK`;
 * - `RWSPLIT TOKEN` → the connection's causal token (bulk string), nil before any write;
 * - `RWSPLIT TOKEN <token>` → `+OK`: reads of this connection now also see the writes that
 *   token covers (handed over from another connection or another rwsplit instance); a
 *   PostgreSQL token (`SHOW rwsplit.causal_token`: `v1:…` or a bare LSN) makes reads of keys a
 *   change stream feeds wait until the stream has applied it (src/stream/stream-reads.ts).
 */
import { consistencyLevels, type ConsistencyLevel } from '../../config/schema.js';
import { advanceToken, CausalTokenError as PgTokenError, parsePgToken } from '../../core/causal.js';
import { CausalTokenError, parseCausalToken } from '../routing/causal-token.js';
import { rwsplitCommandError } from '../errors.js';
import { encodeBulk, encodeSimple } from '../resp/index.js';
import type { SessionCausal } from './session-causal.js';

/** An answer now, or "answer with the token once the connection's writes have their positions". */
export type RwsplitAction = { reply: Buffer } | { tokenWanted: true };

/** A PostgreSQL causal token (src/core/causal.ts): `v1:shard@X/Y,…` or a bare `X/Y`. */
const PG_TOKEN = /^(v1:|[0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8}$)/;

const USAGE = 'use RWSPLIT CONSISTENCY [eventual|bounded|read-your-writes|strong] or RWSPLIT TOKEN [token]';

/** Runs `RWSPLIT …` (`args[0]` is the command name) for one connection. */
export function rwsplitCommand(
  args: readonly Buffer[],
  causal: SessionCausal,
  shardNames: readonly string[],
): RwsplitAction {
  const sub = args[1]?.toString().toLowerCase();
  if (sub === 'consistency') {
    if (args.length === 2) return { reply: encodeBulk(causal.level) };
    if (args.length !== 3) return { reply: rwsplitCommandError(`wrong number of arguments: ${USAGE}`) };
    const level = args[2]!.toString().toLowerCase();
    if (!(consistencyLevels as readonly string[]).includes(level)) {
      return {
        reply: rwsplitCommandError(
          `unknown consistency level '${level.slice(0, 64)}': use ${consistencyLevels.join(', ')}`,
        ),
      };
    }
    causal.level = level as ConsistencyLevel;
    return { reply: encodeSimple('OK') };
  }
  if (sub === 'token') {
    if (args.length === 2) return { tokenWanted: true };
    if (args.length !== 3) return { reply: rwsplitCommandError(`wrong number of arguments: ${USAGE}`) };
    const text = args[2]!.toString();
    if (PG_TOKEN.test(text)) {
      try {
        causal.pgToken ??= new Map();
        for (const [shard, lsn] of parsePgToken(text, 'default')) advanceToken(causal.pgToken, shard, lsn);
      } catch (err) {
        if (err instanceof PgTokenError) return { reply: rwsplitCommandError(err.message) };
        throw err;
      }
      return { reply: encodeSimple('OK') };
    }
    try {
      causal.token.adopt(parseCausalToken(args[2]!.toString(), shardNames));
    } catch (err) {
      if (err instanceof CausalTokenError) return { reply: rwsplitCommandError(err.message) };
      throw err;
    }
    return { reply: encodeSimple('OK') };
  }
  return { reply: rwsplitCommandError(`unknown RWSPLIT subcommand '${(sub ?? '').slice(0, 64)}': ${USAGE}`) };
}
