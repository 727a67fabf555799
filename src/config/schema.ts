/**
 * The configuration file's schema (YAML, validated with zod at start). Every key here is
 * documented in docs/CONFIG.md; keep the two in step.
 */
import { z } from 'zod';

// 0 asks the OS for any free port (tests use it).
const port = z.number().int().min(0).max(65535);
const host = z.string().min(1);

const listenAddress = z.strictObject({ host: host.default('127.0.0.1'), port });
/** The PostgreSQL listener may also take a Unix socket: `<socketDir>/.s.PGSQL.<port>`. */
const pgListenAddress = listenAddress.extend({ socketDir: z.string().min(1).optional() });

const pgNode = z.strictObject({
  id: z
    .string()
    .regex(/^[A-Za-z0-9_.-]+$/, 'use letters, digits, "_", "." or "-"')
    .min(1),
  host,
  port: port.default(5432),
  weight: z.number().min(0).default(1),
});

/** TLS toward PostgreSQL servers, libpq's `sslmode` values (src/pg/backend/backend-tls.ts). */
export const sslModes = ['disable', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;
export type SslMode = (typeof sslModes)[number];

/** A PostgreSQL node: a pgNode with the shard it belongs to (one shard, "default", unless sharded). */
const pgShardNode = pgNode.extend({
  shard: z
    .string()
    .regex(/^[A-Za-z0-9_.-]+$/, 'use letters, digits, "_", "." or "-"')
    .default('default'),
  /** this node's own TLS mode and CA file (default: postgres.backend.sslmode / sslrootcert) */
  sslmode: z.enum(sslModes).optional(),
  sslrootcert: z.string().min(1).optional(),
});

/** Read consistency levels (read-your-writes and its neighbours); a session may change its own. */
export const consistencyLevels = ['eventual', 'bounded', 'read-your-writes', 'strong'] as const;
export type ConsistencyLevel = (typeof consistencyLevels)[number];

/**
 * Who replaces a dead primary. `auto`: this instance promotes the most advanced replica,
 * re-points the others and fences the old primary; `follow`: roles are only observed
 * (another instance, Patroni or Redis Sentinel decides); `off`: writes go to the first
 * configured node only and roles are never followed.
 */
const failoverFields = {
  mode: z.enum(['auto', 'follow', 'off']).default('follow'),
  /** how long a primary must stay unreachable (and at least two probes fail) before promotion */
  detectMs: z.number().int().min(100).default(1500),
  /** how long new writes wait for a new primary instead of failing */
  bufferMs: z.number().int().min(0).default(5000),
  /** longest wait for a promoted node to accept writes */
  promoteTimeoutMs: z.number().int().min(100).default(10_000),
};
/** `failover: auto` is shorthand for `failover: { mode: auto }`; an absent key takes every default. */
const asFailoverObject = (v: unknown): unknown => (typeof v === 'string' ? { mode: v } : (v ?? {}));

/** `postgres.pool.acquireTimeoutMs` is the first name of `queryWaitTimeoutMs`, still accepted. */
const renamedPoolKeys = (v: unknown): unknown => {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || !('acquireTimeoutMs' in v) || 'queryWaitTimeoutMs' in v) return v;
  const { acquireTimeoutMs, ...rest } = v as Record<string, unknown>;
  return { ...rest, queryWaitTimeoutMs: acquireTimeoutMs };
};

const pgFailover = z.preprocess(
  asFailoverObject,
  z.strictObject({
    ...failoverFields,
    /**
     * The login replicas use to stream from a new primary (written to their primary_conninfo);
     * default: the monitor's login.
     */
    replicationUser: z.string().min(1).optional(),
    replicationPassword: z.string().min(1).optional(),
  }),
);

const redisFailover = z.preprocess(
  asFailoverObject,
  z.strictObject({
    ...failoverFields,
    /** Redis Sentinels to follow (mode `follow`): each shard's `sentinelName` is asked for its primary */
    sentinels: z.array(z.strictObject({ host, port: port.default(26379) })).default([]),
  }),
);

/** PgBouncer's classic auth_query: `$1` is the user name, the answer is (name, verifier). */
export const DEFAULT_AUTH_QUERY = 'SELECT usename, passwd FROM pg_shadow WHERE usename = $1';
/** A key template: literal text and `{column}` placeholders, e.g. `items:{id}` (src/stream/key-template.ts). */
const keyTemplate = z
  .string()
  .min(1)
  .regex(
    /\{[A-Za-z_][A-Za-z0-9_$]*\}/,
    'name at least one primary-key column as {column}, e.g. "items:{id}"',
  );

/**
 * A change stream: a PostgreSQL table mirrored into Redis by logical replication (pgoutput,
 * a persistent slot and a publication per stream; src/stream/).
 */
const stream = z.strictObject({
  name: z
    .string()
    .regex(/^[a-z][a-z0-9_]{0,39}$/, 'use lower-case letters, digits and "_" (it names the slot)'),
  /** the source table, `name` or `schema.name` */
  table: z
    .string()
    .regex(/^([A-Za-z_][A-Za-z0-9_$]*\.)?[A-Za-z_][A-Za-z0-9_$]*$/, 'use "table" or "schema.table"'),
  /** the PostgreSQL shard whose primary holds the table */
  shard: z.string().min(1).default('default'),
  key: keyTemplate,
  /** `hash`: one field per column, PostgreSQL's text output; `json`: one string, typed JSON values */
  format: z.enum(['hash', 'json']).default('hash'),
  /** columns copied into Redis (default: all) */
  columns: z.array(z.string().min(1)).min(1).optional(),
});

const streamsSchema = z
  .strictObject({
    /** a login with the REPLICATION attribute (default: postgres.monitor's login) */
    user: z.string().min(1).optional(),
    password: z.string().min(1).optional(),
    database: z.string().min(1).optional(),
    /** transactions sent to Redis and not yet answered; past it the replication socket is paused */
    maxInFlight: z.number().int().min(1).default(64),
    /** how often the applied position is reported to PostgreSQL (standby status update) */
    statusIntervalMs: z.number().int().min(50).default(1000),
    list: z.array(stream).default([]),
  })
  .refine((s) => new Set(s.list.map((x) => x.name)).size === s.list.length, {
    message: 'two streams have the same name',
  });

const pgUser = z.strictObject({
  name: z.string().min(1),
  /** Plain password (used for client SCRAM and for logging into backends) or a SCRAM verifier (clients only). */
  password: z.string().min(1),
});

const tlsServer = z.strictObject({
  cert: z.string().min(1),
  key: z.string().min(1),
});

const staleness = z
  .strictObject({
    maxLagBytes: z
      .number()
      .int()
      .min(0)
      .nullable()
      .default(16 * 1024 * 1024),
    maxLagMs: z.number().int().min(0).nullable().default(10_000),
    whenAllLagging: z.enum(['fallback', 'error']).default('fallback'),
    breachesToLeave: z.number().int().min(1).default(2),
    samplesToReturn: z.number().int().min(1).default(3),
    returnRatio: z.number().gt(0).max(1).default(0.5),
  })
  .default({
    maxLagBytes: 16 * 1024 * 1024,
    maxLagMs: 10_000,
    whenAllLagging: 'fallback',
    breachesToLeave: 2,
    samplesToReturn: 3,
    returnRatio: 0.5,
  });

/** How often each node is probed, how long a probe may take, answers before a node returns. */
const probeTiming = {
  intervalMs: z.number().int().min(50).default(500),
  timeoutMs: z.number().int().min(50).default(1000),
  upAfter: z.number().int().min(1).default(2),
};

const MiB = 1024 * 1024;

/** One class of client-output-buffer-limit: 0 disables a bound. */
const outputLimit = z.strictObject({
  hardBytes: z.number().int().min(0),
  softBytes: z.number().int().min(0),
  softSeconds: z.number().int().min(0),
});

const defaultOutputLimits = {
  normal: { hardBytes: 0, softBytes: 0, softSeconds: 0 },
  pubsub: { hardBytes: 32 * MiB, softBytes: 8 * MiB, softSeconds: 60 },
  monitor: { hardBytes: 256 * MiB, softBytes: 64 * MiB, softSeconds: 60 },
  blocked: { hardBytes: 0, softBytes: 0, softSeconds: 0 },
};

const redisSchema = z.strictObject({
  shards: z
    .array(
      z.strictObject({
        name: z.string().regex(/^[A-Za-z0-9_.:-]+$/, 'use letters, digits, "_", ".", ":" or "-"'),
        weight: z.number().int().min(1).default(1),
        nodes: z
          .array(pgNode.extend({ port: port.default(6379) }))
          .min(1, 'list at least one node (the primary)'),
        /** the name Redis Sentinel knows this shard's primary by (failover.mode follow + sentinels) */
        sentinelName: z.string().min(1).optional(),
      }),
    )
    .min(1, 'list at least one shard'),
  hash: z
    .strictObject({
      distribution: z.enum(['ketama', 'jump', 'rendezvous']).default('ketama'),
      function: z.enum(['fnv1a_64', 'md5']).default('fnv1a_64'),
      tag: z.string().default('{}'),
    })
    .default({ distribution: 'ketama', function: 'fnv1a_64', tag: '{}' }),
  readFrom: z.enum(['primary', 'replica', 'prefer-replica']).default('prefer-replica'),
  consistency: z.enum(consistencyLevels).default('read-your-writes'),
  /** how long a read-your-writes read waits for a replica to reach the session's token */
  causalWaitMs: z.number().int().min(0).default(100),
  /**
   * Zero-loss option: after each write, `WAIT numReplicas timeoutMs` before the client is
   * answered; a write not acknowledged by that many replicas in time gets an error.
   */
  waitReplicas: z
    .strictObject({ numReplicas: z.number().int().min(1), timeoutMs: z.number().int().min(1).default(1000) })
    .optional(),
  failover: redisFailover,
  balance: z.enum(['round-robin', 'weighted', 'least-outstanding', 'lowest-latency']).default('round-robin'),
  auth: z
    .strictObject({
      /**
       * `proxy`: rwsplit checks clients' AUTH against `password`/`users`; `passthrough`: the
       * servers check them (ACL users), on server connections pooled per user.
       */
      mode: z.enum(['proxy', 'passthrough']).default('proxy'),
      password: z.string().min(1).optional(),
      users: z.array(z.strictObject({ name: z.string().min(1), password: z.string().min(1) })).default([]),
    })
    .refine((a) => a.mode === 'proxy' || (a.password === undefined && a.users.length === 0), {
      message:
        'redis.auth.password and redis.auth.users are for mode proxy; with mode passthrough the servers check the credentials (remove them)',
    })
    .default({ mode: 'proxy', users: [] }),
  backend: z
    .strictObject({ user: z.string().min(1).optional(), password: z.string().min(1).optional() })
    .default({}),
  pool: z
    .strictObject({
      size: z.number().int().min(1).max(64).default(2),
      connectTimeoutMs: z.number().int().min(1).default(3000),
    })
    .default({ size: 2, connectTimeoutMs: 3000 }),
  staleness,
  monitor: z.strictObject(probeTiming).default({ intervalMs: 500, timeoutMs: 1000, upAfter: 2 }),
  limits: z
    .strictObject({
      maxBulkBytes: z
        .number()
        .int()
        .min(1024)
        .default(512 * 1024 * 1024),
      maxArrayLength: z.number().int().min(16).default(1_048_576),
      maxClients: z.number().int().min(1).default(10_000),
      /** a client that has not authenticated this long after connecting is closed (only when AUTH is required) */
      loginTimeoutMs: z.number().int().min(1).default(60_000),
      /** a client with nothing in flight that sends nothing this long is closed; 0: never */
      idleClientTimeoutMs: z.number().int().min(0).default(0),
      /** Redis's client-output-buffer-limit, per class of client */
      clientOutputBufferLimit: z
        .strictObject({
          normal: outputLimit.default({ hardBytes: 0, softBytes: 0, softSeconds: 0 }),
          pubsub: outputLimit.default({ hardBytes: 32 * MiB, softBytes: 8 * MiB, softSeconds: 60 }),
          monitor: outputLimit.default({ hardBytes: 256 * MiB, softBytes: 64 * MiB, softSeconds: 60 }),
          blocked: outputLimit.default({ hardBytes: 0, softBytes: 0, softSeconds: 0 }),
        })
        .default(defaultOutputLimits),
    })
    .default({
      maxBulkBytes: 512 * 1024 * 1024,
      maxArrayLength: 1_048_576,
      maxClients: 10_000,
      loginTimeoutMs: 60_000,
      idleClientTimeoutMs: 0,
      clientOutputBufferLimit: defaultOutputLimits,
    }),
});

const fullSchema = z.strictObject({
  listen: z
    .strictObject({
      postgres: pgListenAddress.default({ host: '127.0.0.1', port: 6432 }),
      http: listenAddress.default({ host: '127.0.0.1', port: 8432 }),
      redis: listenAddress.default({ host: '127.0.0.1', port: 6479 }),
    })
    .default({
      postgres: { host: '127.0.0.1', port: 6432 },
      http: { host: '127.0.0.1', port: 8432 },
      redis: { host: '127.0.0.1', port: 6479 },
    }),
  postgres: z.strictObject({
    nodes: z.array(pgShardNode).min(1, 'list at least one node (the primary)'),
    failover: pgFailover,
    sharding: z
      .strictObject({
        /** how `/* rwsplit:key=… *\/` and table rules map a key to a shard (shard names are the ring's servers) */
        hash: z
          .strictObject({
            distribution: z.enum(['ketama', 'jump', 'rendezvous']).default('ketama'),
            function: z.enum(['fnv1a_64', 'md5']).default('fnv1a_64'),
          })
          .default({ distribution: 'ketama', function: 'fnv1a_64' }),
        /** where statements whose shard cannot be determined go; unset: they get an error */
        defaultShard: z.string().min(1).optional(),
        /** `table → column`: simple statements on these tables are routed by that column's value */
        tables: z.array(z.strictObject({ table: z.string().min(1), column: z.string().min(1) })).default([]),
        /** unsharded tables every shard holds in full: reads go to any shard, writes to all (two-phase commit) */
        referenceTables: z.array(z.string().min(1)).default([]),
        twoPhase: z
          .strictObject({
            /** the shard whose primary keeps the coordinator log (table rwsplit_2pc_log) */
            logShard: z.string().min(1).optional(),
            /** a prepared transaction with no decision is rolled back after this long */
            decisionTimeoutMs: z.number().int().min(100).default(30_000),
            /** how often prepared transactions left behind are looked for */
            recoveryIntervalMs: z.number().int().min(100).default(5_000),
          })
          .default({ decisionTimeoutMs: 30_000, recoveryIntervalMs: 5_000 }),
      })
      .optional(),
    auth: z
      .strictObject({
        method: z.enum(['trust', 'scram-sha-256']).default('trust'),
        users: z.array(pgUser).default([]),
        /**
         * Users not in `users` log in with their own database password (PgBouncer's auth_query):
         * `user` runs `query` on the primary to fetch the SCRAM verifier, and the client's proof
         * then logs it into every node as itself (SCRAM pass-through).
         */
        authQuery: z
          .strictObject({
            user: z.string().min(1),
            password: z.string().min(1).optional(),
            query: z.string().min(1).default(DEFAULT_AUTH_QUERY),
            /** the database the query runs in; default: the one the client logs into */
            database: z.string().min(1).optional(),
          })
          .optional(),
      })
      .default({ method: 'trust', users: [] }),
    backend: z
      .strictObject({
        user: z.string().min(1).optional(),
        password: z.string().min(1).optional(),
        /** TLS toward every node (a node's own `sslmode` wins) */
        sslmode: z.enum(sslModes).default('disable'),
        /** PEM file of the CA(s) that sign the servers' certificates (verify-ca, verify-full) */
        sslrootcert: z.string().min(1).optional(),
      })
      .default({ sslmode: 'disable' }),
    tls: tlsServer.optional(),
    pool: z.preprocess(
      renamedPoolKeys,
      z.strictObject({
        size: z.number().int().min(1).default(20),
        /** how long a client waits for a connection of a busy pool (PgBouncer's query_wait_timeout) */
        queryWaitTimeoutMs: z.number().int().min(1).default(5000),
        connectTimeoutMs: z.number().int().min(1).default(3000),
        idleTimeoutMs: z.number().int().min(0).default(300_000),
        /** a client idle inside a transaction longer than this is disconnected (25P03); 0 = never */
        idleInTransactionTimeoutMs: z.number().int().min(0).default(0),
      }),
    ),
    routing: z
      .strictObject({
        balance: z
          .enum(['round-robin', 'weighted', 'least-outstanding', 'lowest-latency'])
          .default('round-robin'),
        primaryReads: z.enum(['never', 'fallback', 'always']).default('fallback'),
        writeFunctions: z.array(z.string().min(1)).optional(),
        retryReads: z.boolean().default(true),
        consistency: z.enum(consistencyLevels).default('read-your-writes'),
        /** how long a read-your-writes read waits for a replica to replay the session's token */
        causalWaitMs: z.number().int().min(0).default(100),
      })
      .default({
        balance: 'round-robin',
        primaryReads: 'fallback',
        retryReads: true,
        consistency: 'read-your-writes',
        causalWaitMs: 100,
      }),
    staleness,
    monitor: z
      .strictObject({
        ...probeTiming,
        database: z.string().min(1).default('postgres'),
        user: z.string().min(1).optional(),
        password: z.string().min(1).optional(),
      })
      .default({ intervalMs: 500, timeoutMs: 1000, upAfter: 2, database: 'postgres' }),
    limits: z
      .strictObject({
        maxFrameBytes: z
          .number()
          .int()
          .min(1024)
          .max(1024 * 1024 * 1024)
          .default(64 * 1024 * 1024),
        maxClients: z.number().int().min(1).default(10_000),
        maxBatchBytes: z
          .number()
          .int()
          .min(1024)
          .default(1024 * 1024),
        /** startup and authentication must finish this long after connecting (authentication_timeout) */
        loginTimeoutMs: z.number().int().min(1).default(60_000),
        /** a session with nothing in flight that sends nothing this long is closed; 0: never */
        idleClientTimeoutMs: z.number().int().min(0).default(0),
      })
      .default({
        maxFrameBytes: 64 * 1024 * 1024,
        maxClients: 10_000,
        maxBatchBytes: 1024 * 1024,
        loginTimeoutMs: 60_000,
        idleClientTimeoutMs: 0,
      }),
  }),
  /** instance-wide limits over every protocol */
  limits: z
    .strictObject({
      /** bytes buffered for clients and backends over all sessions; past it the biggest holder is cut off; 0: no budget */
      maxBufferedBytes: z
        .number()
        .int()
        .min(0)
        .default(1024 * MiB),
    })
    .default({ maxBufferedBytes: 1024 * MiB }),
  /**
   * What moves the bytes of the common case: `native` the optional native forwarding core
   * (native/, built at install when a C compiler is there), `js` the TypeScript data plane,
   * `auto` the core when it is built and loads, else js
   */
  dataPlane: z.enum(['auto', 'native', 'js']).default('auto'),
  admin: z
    .strictObject({
      token: z
        .string()
        .min(16, 'use at least 16 characters (for example the output of `openssl rand -hex 16`)')
        .optional(),
    })
    .default({}),
  redis: redisSchema.optional(),
  streams: streamsSchema.optional(),
  /**
   * data-plane processes: `1` runs everything in one process; N > 1 runs a
   * controller (monitors, failover, admin, …) and N workers holding the client sessions;
   * `auto` (the default) is the number of cores, at most 8 (src/workers/, docs/CONFIG.md)
   */
  workers: z.union([z.literal('auto'), z.number().int().min(1).max(64)]).default('auto'),
  /** graceful restart (`rwsplit restart`, SIGUSR2): the old process hands its sockets over and drains */
  restart: z
    .strictObject({
      /** how long the old process lets sessions reach a transaction boundary before closing them anyway */
      drainTimeoutMs: z.number().int().min(0).default(30_000),
      /** how long the new process may take to serve before the restart is given up */
      startTimeoutMs: z.number().int().min(1000).default(60_000),
    })
    .default({ drainTimeoutMs: 30_000, startTimeoutMs: 60_000 }),
  logging: z
    .strictObject({
      level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    })
    .default({ level: 'info' }),
});

/** `postgres` may be absent: a Redis-only instance (the loader then requires `redis`). */
export const configSchema = fullSchema.partial({ postgres: true });

/** The validated configuration, defaults filled in. */
export type Config = z.infer<typeof configSchema>;
export type PgConfig = NonNullable<Config['postgres']>;
export type RedisConfig = NonNullable<Config['redis']>;
export type StreamsConfig = NonNullable<Config['streams']>;
export type StreamConfig = StreamsConfig['list'][number];
