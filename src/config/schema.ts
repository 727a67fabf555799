/**
 * The configuration file's schema (YAML, validated with zod at start). Every key here is
 * documented in docs/CONFIG.md; keep the two in step.
 */
import { z } from 'zod';

// 0 asks the OS for any free port (tests use it).
const port = z.number().int().min(0).max(65535);
const host = z.string().min(1);

const listenAddress = z.strictObject({ host: host.default('127.0.0.1'), port });

const pgNode = z.strictObject({
  id: z
    .string()
    .regex(/^[A-Za-z0-9_.-]+$/, 'use letters, digits, "_", "." or "-"')
    .min(1),
  host,
  port: port.default(5432),
  weight: z.number().min(0).default(1),
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

const redisSchema = z.strictObject({
  shards: z
    .array(
      z.strictObject({
        name: z.string().regex(/^[A-Za-z0-9_.:-]+$/, 'use letters, digits, "_", ".", ":" or "-"'),
        weight: z.number().int().min(1).default(1),
        nodes: z
          .array(pgNode.extend({ port: port.default(6379) }))
          .min(1, 'list at least one node (the primary)'),
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
  balance: z.enum(['round-robin', 'weighted', 'least-outstanding', 'lowest-latency']).default('round-robin'),
  auth: z
    .strictObject({
      password: z.string().min(1).optional(),
      users: z.array(z.strictObject({ name: z.string().min(1), password: z.string().min(1) })).default([]),
    })
    .default({ users: [] }),
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
    })
    .default({ maxBulkBytes: 512 * 1024 * 1024, maxArrayLength: 1_048_576, maxClients: 10_000 }),
});

export const configSchema = z.strictObject({
  listen: z
    .strictObject({
      postgres: listenAddress.default({ host: '127.0.0.1', port: 6432 }),
      http: listenAddress.default({ host: '127.0.0.1', port: 8432 }),
      redis: listenAddress.default({ host: '127.0.0.1', port: 6479 }),
    })
    .default({
      postgres: { host: '127.0.0.1', port: 6432 },
      http: { host: '127.0.0.1', port: 8432 },
      redis: { host: '127.0.0.1', port: 6479 },
    }),
  postgres: z.strictObject({
    nodes: z.array(pgNode).min(1, 'list at least one node (the primary)'),
    auth: z
      .strictObject({
        method: z.enum(['trust', 'scram-sha-256']).default('trust'),
        users: z.array(pgUser).default([]),
      })
      .default({ method: 'trust', users: [] }),
    backend: z
      .strictObject({
        user: z.string().min(1).optional(),
        password: z.string().min(1).optional(),
      })
      .default({}),
    tls: tlsServer.optional(),
    pool: z
      .strictObject({
        size: z.number().int().min(1).default(20),
        acquireTimeoutMs: z.number().int().min(1).default(5000),
        connectTimeoutMs: z.number().int().min(1).default(3000),
        idleTimeoutMs: z.number().int().min(0).default(300_000),
      })
      .default({ size: 20, acquireTimeoutMs: 5000, connectTimeoutMs: 3000, idleTimeoutMs: 300_000 }),
    routing: z
      .strictObject({
        balance: z
          .enum(['round-robin', 'weighted', 'least-outstanding', 'lowest-latency'])
          .default('round-robin'),
        primaryReads: z.enum(['never', 'fallback', 'always']).default('fallback'),
        writeFunctions: z.array(z.string().min(1)).optional(),
        retryReads: z.boolean().default(true),
      })
      .default({ balance: 'round-robin', primaryReads: 'fallback', retryReads: true }),
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
      })
      .default({ maxFrameBytes: 64 * 1024 * 1024, maxClients: 10_000, maxBatchBytes: 1024 * 1024 }),
  }),
  admin: z
    .strictObject({
      token: z
        .string()
        .min(16, 'use at least 16 characters (for example the output of `openssl rand -hex 16`)')
        .optional(),
    })
    .default({}),
  redis: redisSchema.optional(),
  logging: z
    .strictObject({
      level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    })
    .default({ level: 'info' }),
});

/** The validated configuration, defaults filled in. */
export type Config = z.infer<typeof configSchema>;
export type PgConfig = NonNullable<Config['postgres']>;
export type RedisConfig = NonNullable<Config['redis']>;
