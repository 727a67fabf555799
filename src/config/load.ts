/**
 * Loading and validating the YAML config. A bad file yields one ConfigError whose message
 * names the key and the problem; the CLI prints it and exits with code 2.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { z } from 'zod';
import { TableRuleError, TableRules } from '../pg/sharding/shard-rules.js';
import { configSchema, type Config, type PgConfig, type StreamsConfig } from './schema.js';

/** A configuration problem; `message` is meant for the user as-is. */
export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
}

/** Validates an already parsed object (also used by the demo, which builds its config in code). */
export function validateConfig(raw: unknown, source = 'config'): Config {
  const result = configSchema.safeParse(withDataPlaneFromEnv(raw ?? {}));
  if (result.success) {
    checkCrossFields(result.data, source);
    return result.data;
  }
  throw new ConfigError(describeIssue(result.error, source));
}

/** Reads and validates a YAML config file. */
export function loadConfigFile(path: string): Config {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${(err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    const where = err instanceof YAMLParseError && err.linePos ? ` at line ${err.linePos[0].line}` : '';
    throw new ConfigError(`${path}: not valid YAML${where}: ${(err as Error).message.split('\n')[0]}`);
  }
  return validateConfig(raw, path);
}

/**
 * RWSPLIT_DATA_PLANE (auto, native or js) stands for `dataPlane` when the config does not set
 * it: the test suite runs once per data plane with the same configs.
 */
function withDataPlaneFromEnv(raw: unknown): unknown {
  const env = process.env['RWSPLIT_DATA_PLANE'];
  if (!env || typeof raw !== 'object' || raw === null || 'dataPlane' in raw) return raw;
  return { ...raw, dataPlane: env };
}

function describeIssue(error: z.ZodError, source: string): string {
  const issue = error.issues[0];
  if (!issue) return `${source}: invalid configuration`;
  const key = issue.path.map(String).join('.') || '(top level)';
  if (issue.code === 'unrecognized_keys') {
    const keys = issue.keys.join(', ');
    const at = issue.path.length ? issue.path.map(String).join('.') : '(top level)';
    return `${source}: unknown key ${keys} in ${at}; see docs/CONFIG.md for the keys it accepts`;
  }
  return `${source}: ${key}: ${issue.message}`;
}

function checkCrossFields(config: Config, source: string): void {
  if (!config.postgres && !config.redis) {
    throw new ConfigError(
      `${source}: nothing to proxy: add a postgres section (postgres.nodes), a redis section (redis.shards), or both`,
    );
  }
  if (config.postgres) checkPostgres(config, config.postgres, source);
  if (config.streams) checkStreams(config, config.streams, source);
}

/** A stream reads a PostgreSQL shard and writes Redis: both sections must be there. */
function checkStreams(config: Config, streams: StreamsConfig, source: string): void {
  if (streams.list.length === 0) return;
  if (!config.postgres || !config.redis)
    throw new ConfigError(
      `${source}: streams: a stream needs both a postgres section (its source) and a redis section (its target)`,
    );
  const shards = new Set(config.postgres.nodes.map((n) => n.shard));
  streams.list.forEach((s, i) => {
    if (!shards.has(s.shard))
      throw new ConfigError(
        `${source}: streams.list.${i}.shard: no postgres node has shard "${s.shard}" (${[...shards].join(', ')})`,
      );
  });
}

function checkPostgres(config: Config, pg: PgConfig, source: string): void {
  const ids = new Set<string>();
  for (const [i, node] of pg.nodes.entries()) {
    if (ids.has(node.id))
      throw new ConfigError(`${source}: postgres.nodes.${i}.id: duplicate node id "${node.id}"`);
    ids.add(node.id);
  }
  checkShards(pg, source);
  const { auth } = pg;
  if (auth.method === 'scram-sha-256' && auth.users.length === 0 && !auth.authQuery) {
    throw new ConfigError(
      `${source}: postgres.auth.users: method scram-sha-256 needs at least one user (name and password), or postgres.auth.authQuery`,
    );
  }
  if (auth.authQuery && auth.method !== 'scram-sha-256') {
    throw new ConfigError(
      `${source}: postgres.auth.authQuery: needs postgres.auth.method scram-sha-256 (with trust, rwsplit checks no password)`,
    );
  }
  const { postgres: pgListen, http: httpListen } = config.listen;
  if (pgListen.port !== 0 && pgListen.port === httpListen.port && pgListen.host === httpListen.host) {
    throw new ConfigError(
      `${source}: listen.http.port: same address as listen.postgres; choose another port`,
    );
  }
}

/**
 * PostgreSQL shards: the shard names are those the nodes use, so every shard has a node; more
 * than one name needs a `postgres.sharding` section, and the shards it names must exist.
 */
function checkShards(pg: PgConfig, source: string): void {
  const { nodes, sharding } = pg;
  const shards = [...new Set(nodes.map((n) => n.shard))];
  const known = `shards of postgres.nodes: ${shards.join(', ')}`;
  if (sharding === undefined) {
    if (shards.length > 1) {
      throw new ConfigError(
        `${source}: postgres.sharding: the nodes use ${shards.length} shards (${shards.join(', ')}); ` +
          'add a postgres.sharding section (it may be empty: {}) to say how statements find their shard',
      );
    }
    return;
  }
  const named: [string, string | undefined][] = [
    ['postgres.sharding.defaultShard', sharding.defaultShard],
    ['postgres.sharding.twoPhase.logShard', sharding.twoPhase.logShard],
  ];
  for (const [key, shard] of named) {
    if (shard !== undefined && !shards.includes(shard)) {
      throw new ConfigError(`${source}: ${key}: no node has shard "${shard}" (${known})`);
    }
  }
  try {
    new TableRules(sharding.tables);
  } catch (err) {
    if (err instanceof TableRuleError) throw new ConfigError(`${source}: ${err.message}`);
    throw err;
  }
}
