/**
 * rwsplit's own session settings, spoken as PostgreSQL settings so any client can use
 * them: `SHOW rwsplit.causal_token`, `SET rwsplit.causal_token = '…'`,
 * `SET rwsplit.consistency = strong`, `RESET rwsplit.consistency`. The proxy answers these
 * itself (a SET forwarded to a server would pin the session and mean nothing there).
 */
import { advanceToken, formatPgToken, parsePgToken, type CausalToken } from '../../core/causal.js';
import { consistencyLevels, type ConsistencyLevel } from '../../config/schema.js';
import { RwsplitPgError, SqlState } from '../errors.js';
import { encodeCommandComplete, encodeDataRow, encodeRowDescription } from '../protocol/index.js';

export const SESSION_SETTINGS = ['causal_token', 'consistency', 'shard_key'] as const;
export type SessionSetting = (typeof SESSION_SETTINGS)[number];

export type SessionCommand =
  | { kind: 'show'; name: string }
  /** value null: RESET or SET … TO DEFAULT */
  | { kind: 'set'; name: string; value: string | null };

const QUERY_TEXT_AT = 5; // type byte + Int32 length

/**
 * Cheap byte test on a Query frame: does its text start (after blanks) with SET, SHOW or
 * RESET? Called for every dispatched Query, so it looks at a few bytes and decodes nothing.
 */
export function mayBeSessionCommand(frame: Buffer): boolean {
  let i = QUERY_TEXT_AT;
  while (
    i < frame.length &&
    (frame[i] === 0x20 || frame[i] === 0x0a || frame[i] === 0x09 || frame[i] === 0x0d)
  )
    i++;
  // Lower-cased first three letters: "set", "sho", "res" (SELECT, the common case, is "sel").
  const a = frame[i]! | 0x20;
  const b = frame[i + 1]! | 0x20;
  const c = frame[i + 2]! | 0x20;
  if (a === 0x73 /* s */) return (b === 0x65 && c === 0x74) /* et */ || (b === 0x68 && c === 0x6f); /* ho */
  return a === 0x72 /* r */ && b === 0x65 && c === 0x73; /* es */
}

// SET [SESSION|LOCAL] rwsplit.name { = | TO } value ; SHOW rwsplit.name ; RESET rwsplit.name
const SET_RE =
  /^\s*set\s+(?:(?:session|local)\s+)?rwsplit\.([a-z_]+)\s*(?:=|\s+to\s+)\s*('(?:[^']|'')*'|[^\s;']+)\s*;?\s*$/i;
const SHOW_RE = /^\s*show\s+rwsplit\.([a-z_]+)\s*;?\s*$/i;
const RESET_RE = /^\s*reset\s+rwsplit\.([a-z_]+)\s*;?\s*$/i;

/** Parses one of rwsplit's own SET/SHOW/RESET statements; null for anything else. */
export function parseSessionCommand(sql: string): SessionCommand | null {
  let m = SHOW_RE.exec(sql);
  if (m) return { kind: 'show', name: m[1]!.toLowerCase() };
  m = RESET_RE.exec(sql);
  if (m) return { kind: 'set', name: m[1]!.toLowerCase(), value: null };
  m = SET_RE.exec(sql);
  if (!m) return null;
  const raw = m[2]!;
  if (/^default$/i.test(raw)) return { kind: 'set', name: m[1]!.toLowerCase(), value: null };
  const value = raw.startsWith("'") ? raw.slice(1, -1).replace(/''/g, "'") : raw;
  return { kind: 'set', name: m[1]!.toLowerCase(), value };
}

export function isSessionSetting(name: string): name is SessionSetting {
  return (SESSION_SETTINGS as readonly string[]).includes(name);
}

/** What a session's own settings are; mutated by `applySessionCommand`. */
export interface SessionSettings {
  consistency: ConsistencyLevel;
  readonly defaultConsistency: ConsistencyLevel;
  token: CausalToken;
  shardKey: string | null;
}

/**
 * Runs a SHOW/SET/RESET of an rwsplit setting and returns the frames that answer it
 * (without the closing ReadyForQuery, whose status the session knows).
 */
export function applySessionCommand(cmd: SessionCommand, s: SessionSettings, defaultShard: string): Buffer[] {
  if (!isSessionSetting(cmd.name)) {
    return [
      new RwsplitPgError(
        'UNKNOWN_SETTING',
        SqlState.UndefinedObject,
        `unrecognized configuration parameter "rwsplit.${cmd.name}"`,
        `rwsplit's own settings are ${SESSION_SETTINGS.map((n) => `rwsplit.${n}`).join(', ')}.`,
      ).toFrame(),
    ];
  }
  if (cmd.kind === 'show') {
    const value =
      cmd.name === 'causal_token'
        ? s.token.size > 0
          ? formatPgToken(s.token)
          : ''
        : cmd.name === 'consistency'
          ? s.consistency
          : (s.shardKey ?? '');
    return [
      encodeRowDescription([{ name: `rwsplit.${cmd.name}` }]),
      encodeDataRow([value]),
      encodeCommandComplete('SHOW'),
    ];
  }
  try {
    setSetting(cmd.name, cmd.value, s, defaultShard);
  } catch (err) {
    if (err instanceof RwsplitPgError) return [err.toFrame()];
    throw err;
  }
  return [encodeCommandComplete(cmd.value === null ? 'RESET' : 'SET')];
}

function setSetting(
  name: SessionSetting,
  value: string | null,
  s: SessionSettings,
  defaultShard: string,
): void {
  switch (name) {
    case 'causal_token': {
      if (value === null) {
        s.token.clear();
        return;
      }
      let handed: CausalToken;
      try {
        handed = parsePgToken(value, defaultShard);
      } catch (err) {
        throw new RwsplitPgError(
          'CAUSAL_TOKEN_INVALID',
          SqlState.InvalidParameterValue,
          (err as Error).message,
        );
      }
      // A handed-over token adds to what this session has seen: it never moves backwards.
      for (const [shard, lsn] of handed) advanceToken(s.token, shard, lsn);
      return;
    }
    case 'consistency':
      if (value === null) {
        s.consistency = s.defaultConsistency;
        return;
      }
      if (!(consistencyLevels as readonly string[]).includes(value)) {
        throw new RwsplitPgError(
          'INVALID_CONSISTENCY',
          SqlState.InvalidParameterValue,
          `invalid value for parameter "rwsplit.consistency": "${value}"`,
          `Available values: ${consistencyLevels.join(', ')}.`,
        );
      }
      s.consistency = value as ConsistencyLevel;
      return;
    case 'shard_key':
      s.shardKey = value;
      return;
  }
}
