/**
 * One change stream: a PostgreSQL table kept in Redis by logical replication.
 *
 * Start-up (each attempt, after any failure too): connect to every Redis shard's primary
 * and read the stream's state hash there (`rwsplit:stream:<name>`: slot, applied LSN, copy
 * done); open a walsender connection to the source shard's primary. If every shard holds a
 * finished copy for the slot and the slot exists, streaming resumes from the lowest applied
 * LSN. Otherwise (first start, a copy cut short, a slot lost in a PostgreSQL failover, a Redis
 * shard that lost its data) the stream starts over: drop the slot, delete the stream's keys,
 * create the slot with an exported snapshot, copy the table as of that snapshot, store the
 * slot's consistent point as the applied position, and stream from there: the copy and the
 * stream meet exactly.
 *
 * Streaming: changes of one PostgreSQL transaction are gathered until its Commit, then sent
 * to each Redis shard they touch inside MULTI/EXEC together with `HSET rwsplit:stream:<name>
 * lsn <commit end>`, so a shard holds a transaction's changes and its position, or neither.
 * A shard whose stored position is past a transaction's commit already has it and is skipped:
 * after a restart nothing is applied twice. PostgreSQL is told (standby status update) only
 * the end of the longest prefix of transactions every shard has answered EXEC for, so the slot
 * keeps whatever Redis does not hold yet. Backpressure: past `maxInFlight` transactions
 * decoded and not yet applied, the replication socket is paused.
 */
import { EventEmitter } from 'node:events';
import pg from 'pg';
import type { Logger } from 'pino';
import type { StreamConfig } from '../config/schema.js';
import { KeyTemplate } from './key-template.js';
import {
  decodePgoutput,
  decodeReplicationMessage,
  formatLsn,
  parseLsnText,
  type PgoutputMessage,
  type TupleValue,
} from './pgoutput.js';
import { ReplicationSession, type ReplicationLogin } from './replication-session.js';
import { ShardWriter, type RedisShardsView } from './redis-target.js';
import { outputColumns, rowCommands, type OutputColumn } from './row-format.js';
import { StreamFigures } from './stream-figures.js';

/** A problem retrying cannot fix (a missing table, a key column outside the primary key, …). */
export class StreamStopError extends Error {
  readonly code = 'STREAM_STOPPED';
}

export type StreamState = 'starting' | 'copying' | 'streaming' | 'retrying' | 'stopped' | 'error';

export interface ChangeStreamDeps {
  /** the source shard's primary now, or undefined (failover under way) */
  pgPrimary(): { nodeId: string; host: string; port: number } | undefined;
  login: ReplicationLogin;
  connectTimeoutMs: number;
  maxFrameBytes: number;
  redis: RedisShardsView;
  maxInFlight: number;
  statusIntervalMs: number;
  log: Logger;
  /** an event for the admin event log */
  event(type: StreamEventType, detail: string): void;
}

/**
 * What a stream tells the event log: it started, copied its table again (and why), stopped on
 * an error retrying cannot fix, was interrupted by a failure it retries (once per distinct
 * failure, not per retry), and applies changes again after one.
 */
export type StreamEventType =
  'stream-started' | 'stream-resynced' | 'stream-error' | 'stream-interrupted' | 'stream-recovered';

/** Size of a WAL page, and the longest page header (the first page of a segment). */
const WAL_PAGE = 8192n;
const LONG_PAGE_HEADER = 40n;

/**
 * A token taken with pg_current_wal_insert_lsn() right after a record that ended a WAL page
 * points past the next page's header, where no record ends; the walsender's position stops at
 * the page boundary. Any position inside a page header is the same point in the history: the
 * smallest record (24 bytes) after a header ends past it.
 */
export function pageStart(lsn: bigint): bigint {
  const offset = lsn % WAL_PAGE;
  return offset > 0n && offset <= LONG_PAGE_HEADER ? lsn - offset : lsn;
}

/**
 * A walsender error that retrying the same slot cannot get past: on PostgreSQL 15 a dropped
 * publication is looked up in the catalog as of each change, so recreating it does not help;
 * an invalidated slot (max_slot_wal_keep_size) has lost the WAL it needed. The stream then
 * starts over with a new slot and a copy.
 */
const UNUSABLE_SLOT =
  /publication "[^"]*" does not exist|slot .* (?:has been invalidated|can no longer get changes)/;

/** The hash on every Redis shard that holds a stream's state. */
export function stateKey(name: string): string {
  return `rwsplit:stream:${name}`;
}

/** First retry delay after a failure; it doubles up to MAX_RETRY_MS while failures repeat. */
const RETRY_MS = 500;
const MAX_RETRY_MS = 5000;
const COPY_BATCH = 1000;
/** how often a stream with waiting readers asks the server for its position */
const POLL_MS = 20;

interface PendingTxn {
  commitLsn: bigint;
  endLsn: bigint;
  commitTimeMs: number;
  changes: number;
  /** Redis commands per shard, in order */
  byShard: Map<number, string[][]>;
  /** set by a TRUNCATE: the keys to delete are scanned when the transaction's turn comes */
  truncate: { before: Map<number, number> } | null;
}

interface InFlight {
  endLsn: bigint;
  commitTimeMs: number;
  changes: number;
  waiting: number;
}

interface Relation {
  columns: OutputColumn[];
  /** index of each key-template column in the tuples */
  keyIndex: Map<string, number>;
}

export class ChangeStream extends EventEmitter {
  state: StreamState = 'starting';
  /** the last failure, kept until the stream has applied (or caught up) again */
  lastError: string | null = null;
  /** failures so far (every interrupted attempt, and the one that stopped the stream) */
  errors = 0;
  /** end of the last transaction every shard applied */
  appliedLsn: bigint | null = null;
  /** the server's WAL end as last reported (XLogData / keepalive) */
  serverLsn: bigint | null = null;
  /**
   * The server's position as reported on this attempt's connection. Never one from an earlier
   * attempt: those positions cover transactions the new connection has yet to send again.
   */
  private sentLsn: bigint | null = null;
  readonly figures = new StreamFigures();
  readonly template: KeyTemplate;
  readonly slot: string;
  readonly publication: string;
  private stopped = false;
  private repl: ReplicationSession | null = null;
  private writers: ShardWriter[] = [];
  /** per shard: the position its state hash held at start (transactions before it are there) */
  private shardApplied: bigint[] = [];
  private relations = new Map<number, Relation>();
  private txn: PendingTxn | null = null;
  private readonly queue: PendingTxn[] = [];
  private readonly inFlight: InFlight[] = [];
  private draining = false;
  private paused = false;
  private ackedLsn: bigint = 0n;
  private statusTimer: NodeJS.Timeout | null = null;
  private attemptDone: ((err: Error) => void) | null = null;
  private readonly waiters: { lsn: bigint; resolve: () => void }[] = [];
  /** the failure the event log was last told about; null once the stream is healthy again */
  private reported: string | null = null;
  /** set when the slot cannot be read any more (its publication dropped, …): the next attempt copies again */
  private resyncReason: string | null = null;
  private retryMs = RETRY_MS;
  /** after a failure: the server's position then; the stream is healthy again once it applied that far */
  private recoverAt: bigint | null = null;
  /** what was decoded and not applied when the last attempt failed: the lag while retrying */
  private stalled: { changes: number; oldestCommitMs: number | null } | null = null;

  constructor(
    readonly config: StreamConfig,
    private readonly deps: ChangeStreamDeps,
  ) {
    super();
    this.template = new KeyTemplate(config.key);
    this.slot = `rwsplit_${config.name}`;
    this.publication = `rwsplit_${config.name}`;
  }

  get name(): string {
    return this.config.name;
  }

  /** Bytes of WAL the server has sent past what Redis holds (0 when caught up). */
  get lagBytes(): number | null {
    if (this.serverLsn === null || this.appliedLsn === null) return null;
    return this.serverLsn > this.appliedLsn ? Number(this.serverLsn - this.appliedLsn) : 0;
  }

  /**
   * Row changes decoded and not yet in Redis. After a failure, until the stream applies again,
   * at least what was pending when it failed (the next attempt decodes it again); null before
   * anything is known.
   */
  get lagChanges(): number | null {
    return this.backlog()?.changes ?? null;
  }

  /**
   * Milliseconds since the commit of the oldest transaction decoded and not yet applied (0
   * when none is), counting after a failure the ones pending when it failed.
   */
  lagMs(now = Date.now()): number | null {
    const p = this.backlog();
    if (!p) return null;
    return p.oldestCommitMs === null ? 0 : Math.max(0, now - p.oldestCommitMs);
  }

  private backlog(): { changes: number; oldestCommitMs: number | null } | null {
    const live = this.state === 'streaming' ? this.pending() : null;
    const s = this.stalled;
    if (!live || !s) return live ?? s;
    const times = [live.oldestCommitMs, s.oldestCommitMs].filter((t): t is number => t !== null);
    return {
      changes: Math.max(live.changes, s.changes),
      oldestCommitMs: times.length > 0 ? Math.min(...times) : null,
    };
  }

  private pending(): { changes: number; oldestCommitMs: number | null } {
    let changes = this.txn?.changes ?? 0;
    let oldest = this.txn?.commitTimeMs ?? null;
    for (const t of [...this.inFlight, ...this.queue]) {
      changes += t.changes;
      if (oldest === null || t.commitTimeMs < oldest) oldest = t.commitTimeMs;
    }
    return { changes, oldestCommitMs: oldest };
  }

  start(): void {
    this.stopped = false;
    this.loop = this.run();
  }

  /**
   * Starts again after stop(), once the previous run has ended: a graceful restart stops the
   * stream before the new process starts its own (a slot serves one connection at a time), and
   * resumes it here if the new process failed to start.
   */
  async resume(): Promise<void> {
    await this.loop;
    if (this.stopped) this.start();
  }

  private loop: Promise<void> = Promise.resolve();

  async stop(): Promise<void> {
    this.stopped = true;
    this.state = 'stopped';
    this.attemptDone?.(new Error('stopped'));
    this.teardown('stream stopped');
  }

  /**
   * Resolves once every shard has applied the transactions up to `lsn` (a PostgreSQL causal
   * token), or rejects after `timeoutMs` with how far behind the read model is.
   */
  waitApplied(token: bigint, timeoutMs: number): Promise<void> {
    const lsn = pageStart(token);
    if (this.appliedLsn !== null && this.appliedLsn >= lsn) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const w = { lsn, resolve: () => (clearTimeout(timer), resolve()) };
      this.pollServer();
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        const behind =
          this.appliedLsn === null
            ? 'has applied nothing yet'
            : `is ${Number(lsn - this.appliedLsn)} bytes behind`;
        reject(new Error(`stream ${this.name}: the read model ${behind} after ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  /**
   * While readers wait, ask the server for a keepalive every few milliseconds: on a stream
   * with nothing to apply it carries the server's decoded position, which may cover them.
   */
  private pollServer(): void {
    if (this.pollTimer) return;
    const poll = (): void => {
      this.pollTimer = null;
      if (this.waiters.length === 0) return;
      this.repl?.acknowledge(this.ackedLsn, true);
      this.pollTimer = setTimeout(poll, POLL_MS);
    };
    poll();
  }

  private pollTimer: NodeJS.Timeout | null = null;

  private async run(): Promise<void> {
    while (!this.stopped) {
      try {
        await this.attempt();
      } catch (err) {
        const message = (err as Error).message;
        const stalled = this.backlog();
        this.teardown(message);
        if (this.stopped) return;
        this.stalled = stalled;
        this.recoverAt = this.serverLsn ?? this.appliedLsn;
        this.lastError = message;
        this.errors++;
        if (err instanceof StreamStopError) {
          this.state = 'error';
          this.reported = message;
          this.deps.log.error({ stream: this.name, err: message }, 'stream stopped');
          this.deps.event('stream-error', `stream ${this.name}: ${message}`);
          return;
        }
        this.state = 'retrying';
        if (UNUSABLE_SLOT.test(message) && this.resyncReason === null)
          this.resyncReason = `the slot ${this.slot} cannot be read any more (${message})`;
        if (message !== this.reported) {
          // Once per distinct failure: a Redis that refuses every write must not flood the event log.
          this.reported = message;
          this.deps.log.warn({ stream: this.name, err: message }, 'stream interrupted; retrying');
          this.deps.event(
            'stream-interrupted',
            `stream ${this.name}: ${message}; nothing is lost (the slot keeps what Redis does not hold), retrying`,
          );
        }
        await new Promise((r) => setTimeout(r, this.retryMs));
        this.retryMs = Math.min(this.retryMs * 2, MAX_RETRY_MS);
      }
    }
  }

  /**
   * The stream applied a transaction, or caught up with the server, in this attempt: the
   * failure that interrupted it is over.
   */
  private healthy(): void {
    // Applying older transactions again (a shard skipping what it holds) is no recovery yet.
    if (this.recoverAt !== null && (this.appliedLsn === null || this.appliedLsn < this.recoverAt)) return;
    this.recoverAt = null;
    this.retryMs = RETRY_MS;
    this.stalled = null;
    if (this.reported === null) return;
    const was = this.reported;
    this.reported = null;
    this.lastError = null;
    this.deps.log.info({ stream: this.name }, 'stream recovered');
    this.deps.event('stream-recovered', `stream ${this.name} applies changes again (after: ${was})`);
  }

  private teardown(reason: string): void {
    this.attemptDone = null;
    this.confirming = false;
    if (this.statusTimer) clearInterval(this.statusTimer);
    this.statusTimer = null;
    if (this.repl) {
      this.repl.onClose = null;
      this.repl.close(reason);
    }
    this.repl = null;
    for (const w of this.writers) w.close();
    this.writers = [];
    this.queue.length = 0;
    this.inFlight.length = 0;
    this.txn = null;
    this.draining = false;
    this.paused = false;
    this.sentLsn = null;
    this.relations = new Map();
  }

  /** One life of the stream: set up, then stream until something fails. */
  private async attempt(): Promise<void> {
    const { redis } = this.deps;
    this.state = 'starting';
    const node = this.deps.pgPrimary();
    if (!node) throw new Error(`no primary for shard ${this.config.shard} right now`);
    const opened = await Promise.allSettled(redis.names.map((_, i) => ShardWriter.open(redis, i)));
    for (const o of opened) if (o.status === 'fulfilled') this.writers.push(o.value);
    const refused = opened.find((o) => o.status === 'rejected');
    if (refused) throw refused.reason as Error;
    const failed = new Promise<never>((_, reject) => {
      this.attemptDone = reject;
      for (const w of this.writers) w.onClose = (reason) => reject(new Error(`redis ${w.nodeId}: ${reason}`));
    });
    failed.catch(() => undefined);
    const states = await Promise.all(this.writers.map((w) => w.hgetall(stateKey(this.name))));
    const repl = await ReplicationSession.open(node, this.deps.login, {
      connectTimeoutMs: this.deps.connectTimeoutMs,
      maxFrameBytes: this.deps.maxFrameBytes,
    });
    this.repl = repl;
    repl.onClose = (reason) => this.attemptDone?.(new Error(`postgres ${node.nodeId}: ${reason}`));
    await this.checkSource(repl);
    const slotRows = await repl.command(
      `SELECT 1 FROM pg_replication_slots WHERE slot_name = '${this.slot}'`,
    );
    const resumable =
      slotRows.length === 1 &&
      states.every((s) => s['copied'] === '1' && s['slot'] === this.slot && s['lsn']);
    let start: bigint;
    if (resumable && this.resyncReason === null) {
      this.shardApplied = states.map((s) => parseLsnText(s['lsn']!));
      start = this.shardApplied.reduce((a, b) => (b < a ? b : a));
    } else {
      const why = this.resyncReason ?? this.whyCopy(slotRows.length === 1, states);
      start = await this.resync(repl, node.nodeId, slotRows.length === 1, why);
      this.resyncReason = null;
      this.recoverAt = null; // a fresh copy: the failure's position belongs to the old slot
      this.shardApplied = this.writers.map(() => start);
    }
    this.appliedLsn = start;
    this.ackedLsn = start;
    this.resolveWaiters();
    repl.onCopyData = (payload) => this.onCopyData(payload);
    await repl.startReplication(this.slot, start, this.publication);
    this.state = 'streaming';
    this.deps.log.info({ stream: this.name, node: node.nodeId, from: formatLsn(start) }, 'stream started');
    // After a failure, the event waits until the stream applies again (healthy()): an attempt
    // that starts and fails at its first transaction (a Redis refusing writes) is no recovery.
    if (this.reported === null)
      this.deps.event('stream-started', `stream ${this.name} from ${formatLsn(start)} on ${node.nodeId}`);
    this.statusTimer = setInterval(() => this.acknowledge(), this.deps.statusIntervalMs);
    await failed;
  }

  /** wal_level, the table, its key columns and the publication: problems that retrying cannot fix. */
  private async checkSource(repl: ReplicationSession): Promise<void> {
    const [level] = await repl.command('SHOW wal_level');
    if (level?.['wal_level'] !== 'logical')
      throw new StreamStopError(
        `wal_level is '${level?.['wal_level'] ?? '?'}' on ${repl.nodeId}: set wal_level = logical in postgresql.conf and restart PostgreSQL`,
      );
    const table = this.config.table.replaceAll("'", "''");
    const rel = await repl.command(`SELECT to_regclass('${table}')::oid AS oid`);
    if (!rel[0]?.['oid'])
      throw new StreamStopError(`table ${this.config.table} does not exist on ${repl.nodeId}`);
    const keys = await repl.command(
      `SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
        WHERE i.indrelid = ${rel[0]['oid']} AND (i.indisreplident OR (i.indisprimary AND NOT EXISTS
          (SELECT 1 FROM pg_index r WHERE r.indrelid = i.indrelid AND r.indisreplident)))`,
    );
    const keyNames = new Set(keys.map((k) => k['attname']));
    for (const c of this.template.columns)
      if (!keyNames.has(c))
        throw new StreamStopError(
          `key template '${this.template.text}': column '${c}' is not in ${this.config.table}'s primary key (${[...keyNames].join(', ') || 'none'}); a delete only carries the key columns`,
        );
    const pub = await repl.command(`SELECT 1 FROM pg_publication WHERE pubname = '${this.publication}'`);
    if (pub.length === 0)
      await repl.command(`CREATE PUBLICATION ${this.publication} FOR TABLE ${this.config.table}`);
  }

  /** Why the stream cannot resume and copies its table again, for the event log. */
  private whyCopy(slotExists: boolean, states: Record<string, string>[]): string {
    if (states.every((s) => Object.keys(s).length === 0) && !slotExists) return 'first start';
    if (!slotExists)
      return `its slot ${this.slot} does not exist on the primary (dropped, or lost in a PostgreSQL failover)`;
    const i = states.findIndex((s) => !(s['copied'] === '1' && s['slot'] === this.slot && s['lsn']));
    return `redis shard ${this.deps.redis.names[i] ?? i} holds no finished copy (a copy cut short, or a node that lost its data)`;
  }

  /** A fresh start: new slot, keys deleted, the table copied from the slot's snapshot. Returns where streaming starts. */
  private async resync(
    repl: ReplicationSession,
    nodeId: string,
    slotExists: boolean,
    why: string,
  ): Promise<bigint> {
    this.state = 'copying';
    if (slotExists) await repl.command(`DROP_REPLICATION_SLOT ${this.slot} WAIT`);
    // Forget the old state first: a copy cut short must never look finished.
    await Promise.all(
      this.writers.map(async (w) => {
        await w.call(['DEL', stateKey(this.name)]);
        const keys = await w.scan(this.template.pattern());
        for (let i = 0; i < keys.length; i += 1000) await w.call(['DEL', ...keys.slice(i, i + 1000)]);
      }),
    );
    const [slot] = await repl.command(
      `CREATE_REPLICATION_SLOT ${this.slot} LOGICAL pgoutput (SNAPSHOT 'export')`,
    );
    const start = parseLsnText(slot!['consistent_point']!);
    const rows = await this.copyTable(nodeId, slot!['snapshot_name']!);
    await Promise.all(
      this.writers.map((w) =>
        w.exec([['HSET', stateKey(this.name), 'slot', this.slot, 'lsn', formatLsn(start), 'copied', '1']]),
      ),
    );
    this.deps.log.info({ stream: this.name, rows, at: formatLsn(start) }, 'stream copied its table');
    this.deps.event(
      'stream-resynced',
      `stream ${this.name}: copied ${rows} rows of ${this.config.table} as of ${formatLsn(start)} on ${nodeId} (${why})`,
    );
    return start;
  }

  /** Copies the table as of `snapshot` (the slot's), in batches; returns the row count. */
  private async copyTable(nodeId: string, snapshot: string): Promise<number> {
    const node = this.deps.pgPrimary();
    if (!node || node.nodeId !== nodeId) throw new Error('the primary changed during the copy');
    const client = new pg.Client({
      host: node.host,
      port: node.port,
      user: this.deps.login.user,
      database: this.deps.login.database,
      ...(this.deps.login.password !== undefined ? { password: this.deps.login.password } : {}),
      application_name: 'rwsplit-stream-copy',
    });
    client.on('error', () => undefined);
    await client.connect();
    const text = { getTypeParser: () => (v: string) => v };
    let count = 0;
    try {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      await client.query(`SET TRANSACTION SNAPSHOT '${snapshot}'`);
      const cols = this.config.columns
        ? this.config.columns.map((c) => pg.escapeIdentifier(c)).join(', ')
        : '*';
      await client.query(
        `DECLARE rwsplit_copy NO SCROLL CURSOR FOR SELECT ${cols} FROM ${this.config.table}`,
      );
      for (;;) {
        const res = await client.query<Record<string, string | null>>({
          text: `FETCH ${COPY_BATCH} FROM rwsplit_copy`,
          types: text,
          rowMode: 'array',
        } as pg.QueryConfig);
        if (res.rows.length === 0) break;
        const columns: OutputColumn[] = res.fields.map((f, index) => ({
          name: f.name,
          index,
          typeOid: f.dataTypeID,
        }));
        const keyIndex = new Map(
          this.template.columns.map((c) => [c, columns.findIndex((x) => x.name === c)]),
        );
        const byShard = new Map<number, string[][]>();
        for (const row of res.rows as unknown as (string | null)[]) {
          const values = row as unknown as (string | null)[];
          const tuple: TupleValue[] = values.map((v) =>
            v === null ? { kind: 'null' } : { kind: 'text', text: v },
          );
          const key = this.template.render((c) => values[keyIndex.get(c) ?? -1] ?? null);
          this.commandsFor(byShard, key).push(...rowCommands(this.config.format, key, columns, tuple, true));
        }
        await Promise.all([...byShard].map(([shard, cmds]) => this.writers[shard]!.exec(cmds)));
        count += res.rows.length;
      }
      await client.query('COMMIT');
    } finally {
      await client.end().catch(() => undefined);
    }
    return count;
  }

  private commandsFor(byShard: Map<number, string[][]>, key: string): string[][] {
    const shard = this.deps.redis.shardOf(key);
    let list = byShard.get(shard);
    if (!list) byShard.set(shard, (list = []));
    return list;
  }

  // --- streaming ---------------------------------------------------------------------------

  private serverAt(lsn: bigint): void {
    if (this.serverLsn === null || lsn > this.serverLsn) this.serverLsn = lsn;
    if (this.sentLsn === null || lsn > this.sentLsn) this.sentLsn = lsn;
  }

  private onCopyData(payload: Buffer): void {
    try {
      const msg = decodeReplicationMessage(payload);
      if (msg.kind === 'keepalive') {
        this.serverAt(msg.walEnd);
        this.advanceIdle();
        if (msg.replyRequested) this.acknowledge(true);
        return;
      }
      this.serverAt(msg.walEnd);
      this.onMessage(decodePgoutput(msg.data));
    } catch (err) {
      const e = err instanceof StreamStopError ? err : new StreamStopError((err as Error).message);
      this.attemptDone?.(e);
    }
  }

  private onMessage(m: PgoutputMessage): void {
    switch (m.tag) {
      case 'relation': {
        let columns: OutputColumn[];
        try {
          columns = outputColumns(m.columns, this.config.columns);
        } catch (err) {
          throw new StreamStopError(`table ${m.schema}.${m.name} changed: ${(err as Error).message}`);
        }
        const keyIndex = new Map<string, number>();
        for (const c of this.template.columns) {
          const i = m.columns.findIndex((x) => x.name === c && x.isKey);
          if (i < 0)
            throw new StreamStopError(
              `table ${m.schema}.${m.name} changed: key column '${c}' is no longer in its replica identity`,
            );
          keyIndex.set(c, i);
        }
        this.relations.set(m.relationOid, { columns, keyIndex });
        return;
      }
      case 'begin':
        this.txn = {
          commitLsn: m.finalLsn,
          endLsn: 0n,
          commitTimeMs: m.commitTimeMs,
          changes: 0,
          byShard: new Map(),
          truncate: null,
        };
        return;
      case 'insert':
      case 'update':
      case 'delete':
        this.onRowChange(m);
        return;
      case 'truncate': {
        const t = this.openTxn();
        t.changes++;
        this.figures.arrivals.add(1);
        // Keys written earlier in this transaction are deleted too (they are in `before`'s commands).
        t.truncate = { before: new Map([...t.byShard].map(([s, c]) => [s, c.length])) };
        return;
      }
      case 'commit': {
        const t = this.openTxn();
        t.endLsn = m.endLsn;
        this.txn = null;
        this.queue.push(t);
        this.pump();
        return;
      }
      default:
        return; // origin, type, message
    }
  }

  private openTxn(): PendingTxn {
    if (!this.txn) throw new StreamStopError('a change arrived outside a transaction');
    return this.txn;
  }

  private onRowChange(m: Extract<PgoutputMessage, { tag: 'insert' | 'update' | 'delete' }>): void {
    const t = this.openTxn();
    const rel = this.relations.get(m.relationOid);
    if (!rel) throw new StreamStopError(`a change of relation ${m.relationOid} came before its description`);
    t.changes++;
    this.figures.arrivals.add(1);
    const keyOf = (tuple: TupleValue[]): string =>
      this.template.render((c) => {
        const v = tuple[rel.keyIndex.get(c)!];
        return v?.kind === 'text' ? v.text : null;
      });
    if (m.tag === 'delete') {
      const key = keyOf(m.oldTuple);
      this.commandsFor(t.byShard, key).push(['DEL', key]);
      return;
    }
    const key = keyOf(m.newTuple);
    let replace = m.tag === 'insert';
    if (m.tag === 'update' && m.oldTuple) {
      const oldKey = keyOf(m.oldTuple);
      if (oldKey !== key) {
        // The primary key changed: the row moves to its new key.
        this.commandsFor(t.byShard, oldKey).push(['DEL', oldKey]);
        replace = true;
      }
    }
    this.commandsFor(t.byShard, key).push(
      ...rowCommands(this.config.format, key, rel.columns, m.newTuple, replace),
    );
  }

  /** Sends queued transactions to Redis while fewer than maxInFlight are unanswered. */
  private pump(): void {
    if (this.draining) return;
    while (this.queue.length > 0 && this.inFlight.length < this.deps.maxInFlight) {
      const t = this.queue[0]!;
      if (t.truncate) {
        // A TRUNCATE deletes keys found by SCAN: everything before it must be in Redis first.
        if (this.inFlight.length > 0) break;
        this.queue.shift();
        this.draining = true;
        void this.sendTruncate(t)
          .then(() => {
            this.draining = false;
            this.pump();
          })
          .catch((err: Error) => this.attemptDone?.(err));
        break;
      }
      this.queue.shift();
      this.send(t, t.byShard);
    }
    this.backpressure();
  }

  private async sendTruncate(t: PendingTxn): Promise<void> {
    const byShard = new Map<number, string[][]>();
    await Promise.all(
      this.writers.map(async (w, shard) => {
        const before = t.byShard.get(shard) ?? [];
        const cut = t.truncate!.before.get(shard) ?? 0;
        const keys = new Set(await w.scan(this.template.pattern()));
        const cmds = before.slice(0, cut);
        for (const c of cmds) if (c[1] !== undefined) keys.add(c[1]);
        const out = [...cmds];
        for (const k of keys) out.push(['DEL', k]);
        out.push(...before.slice(cut));
        byShard.set(shard, out);
      }),
    );
    this.send(t, byShard);
  }

  private send(t: PendingTxn, byShard: Map<number, string[][]>): void {
    const flight: InFlight = {
      endLsn: t.endLsn,
      commitTimeMs: t.commitTimeMs,
      changes: t.changes,
      waiting: 0,
    };
    this.inFlight.push(flight);
    for (const [shard, cmds] of byShard) {
      // This shard stored a position past this commit: it applied the transaction before a restart.
      if (t.commitLsn < this.shardApplied[shard]!) continue;
      if (cmds.length === 0) continue;
      flight.waiting++;
      this.writers[shard]!.exec([...cmds, ['HSET', stateKey(this.name), 'lsn', formatLsn(t.endLsn)]]).then(
        () => {
          flight.waiting--;
          this.settle();
        },
        (err: Error) => this.attemptDone?.(err),
      );
    }
    if (flight.waiting === 0) this.settle();
  }

  /** Transactions complete in commit order: the applied position moves over the answered prefix. */
  private settle(): void {
    const now = Date.now();
    let applied = false;
    while (this.inFlight.length > 0 && this.inFlight[0]!.waiting === 0) {
      const f = this.inFlight.shift()!;
      this.appliedLsn = f.endLsn;
      this.figures.writes.add(f.changes);
      if (f.changes > 0) this.figures.freshness(now - f.commitTimeMs);
      applied = true;
    }
    if (applied) this.healthy();
    this.resolveWaiters();
    this.pump();
  }

  private resolveWaiters(): void {
    if (this.appliedLsn === null) return;
    for (let i = this.waiters.length - 1; i >= 0; i--) {
      const w = this.waiters[i]!;
      if (w.lsn <= this.appliedLsn) {
        this.waiters.splice(i, 1);
        w.resolve();
      }
    }
  }

  /** Pauses the replication socket while too much is decoded and not yet applied. */
  private backpressure(): void {
    const backlog = this.queue.length + this.inFlight.length;
    if (!this.paused && backlog >= this.deps.maxInFlight * 2) {
      this.paused = true;
      this.repl?.pause();
    } else if (this.paused && backlog < this.deps.maxInFlight) {
      this.paused = false;
      this.repl?.resume();
    }
  }

  /** Nothing decoded and not yet applied. */
  private idle(): boolean {
    return this.txn === null && this.queue.length === 0 && this.inFlight.length === 0 && !this.draining;
  }

  /**
   * With nothing decoded and unapplied, everything up to the server's position (a keepalive's,
   * sent after all data before it) is in Redis: readers waiting for it may go.
   */
  private advanceIdle(): void {
    if (!this.idle() || this.appliedLsn === null || this.sentLsn === null) return;
    if (this.sentLsn > this.appliedLsn) {
      this.appliedLsn = this.sentLsn;
      this.resolveWaiters();
    }
    // Everything the server sent on this connection is in Redis: caught up.
    this.healthy();
  }

  /**
   * Standby status update: applied = flushed = written = the end of the last transaction all
   * shards applied and (for shards with replicas) at least one replica received, per WAIT. With nothing decoded and unapplied, the server's WAL end is reported, so an
   * idle stream's slot does not hold WAL back.
   */
  private acknowledge(force = false): void {
    if (!this.repl || this.appliedLsn === null) return;
    this.advanceIdle();
    if (force) this.repl.acknowledge(this.ackedLsn);
    if (this.appliedLsn <= this.ackedLsn || this.confirming) return;
    // Only what a replica of every shard also holds: a Redis failover must not lose what the slot forgot.
    const target = this.appliedLsn;
    const repl = this.repl;
    this.confirming = true;
    const replicated = this.writers.map((w) =>
      this.deps.redis.nodeCount(w.shard) > 1
        ? w.replicated(this.deps.statusIntervalMs)
        : Promise.resolve(true),
    );
    void Promise.all(replicated).then(
      (ok) => {
        this.confirming = false;
        if (this.repl !== repl || !ok.every(Boolean) || target <= this.ackedLsn) return;
        this.ackedLsn = target;
        repl.acknowledge(target);
      },
      () => (this.confirming = false),
    );
  }

  /** a WAIT for the shards' replicas is under way */
  private confirming = false;
}
