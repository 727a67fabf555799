/**
 * What the controller and its data-plane workers say to each other over the IPC channel
 * (`process.send`; client sockets travel as the message's handle). Plain JSON.
 */
import type { ConnectionCounts } from '../core/cluster-view.js';
import type { Config } from '../config/schema.js';
import type { ReplicationInfo } from '../redis/ha/replication-info.js';
import type { TopologySnapshot } from './topology-mirror.js';

/** Which listener a client socket came from. */
export type ClientProtocol = 'postgres' | 'redis';

/** Per-node traffic totals of one worker (since it started). */
export interface WorkerTotals {
  queries: number;
  reads: number | null;
  writes: number | null;
}

/** What a worker reports about itself, every stats interval and with each sync. */
export interface WorkerStats {
  clients: Record<ClientProtocol, number>;
  /** backend connections per node, per protocol */
  pools: Record<ClientProtocol, [string, ConnectionCounts][]>;
  totals: [string, WorkerTotals][];
  decisions: Record<string, number>;
  /** reads of each change stream's keys since the previous report (the controller adds them up) */
  streamReads: [string, number][];
}

/** What a drain did with the sessions of one protocol. */
export interface DrainCounts {
  handedOver: number;
  atBoundary: number;
  atTimeout: number;
}

export type ToWorker =
  | {
      t: 'init';
      /** the worker's config: the instance's, with pool sizes and limits split (split-limits.ts) */
      config: Config;
      index: number;
      count: number;
      /** the controller's log level (its logger may be set in code, not by the config) */
      logLevel: string;
      /** the controller's topologies: PostgreSQL first (when configured), then each Redis shard */
      topologies: TopologySnapshot[];
      /**
       * a graceful restart's successor: the first PostgreSQL process id this worker hands out
       * (owned by `index`, past those of the sessions handed over); absent: FIRST_PROCESS_ID + index
       */
      firstProcessId?: number;
    }
  | {
      t: 'state';
      topologies: TopologySnapshot[];
      /** each change stream's applied position (decimal LSN), when known: reads it covers need not ask */
      streams: [string, string][];
      /**
       * the controller's Redis position book (its monitor's probes): read-your-writes reads on
       * a worker, a replacement's from its start, know the replicas' positions without asking
       */
      book: [string, ReplicationInfo][];
    }
  /** answered with `synced` once every earlier message is applied */
  | { t: 'sync'; seq: number }
  /** a client socket (the handle) accepted on a listener */
  | { t: 'client'; protocol: ClientProtocol }
  /** a CancelRequest another worker received for a session of this one */
  | { t: 'cancel'; processId: number; secretKey: number }
  | { t: 'log-level'; level: string }
  /**
   * graceful restart: at its next boundary, each session of a protocol in `handOver` is handed
   * over to the new process (`handover`), any other closed; then report `drained`
   */
  | { t: 'drain'; timeoutMs: number; handOver: ClientProtocol[] }
  /** the answer to `handover`: whether the client is on its way to the new process */
  | { t: 'handed'; seq: number; ok: boolean }
  /** graceful restart, new process: a client (the handle) handed over with its session's state */
  | { t: 'adopt-handed'; protocol: ClientProtocol; state: unknown }
  | { t: 'metrics'; seq: number }
  /** the answer to `stream-wait`: null once the stream has applied the position, else why not */
  | { t: 'stream-applied'; seq: number; error: string | null };

export type FromWorker =
  | { t: 'ready' }
  | { t: 'failed'; error: string }
  | { t: 'synced'; seq: number; stats: WorkerStats }
  | { t: 'stats'; stats: WorkerStats }
  /** the data path saw a node fail (a broken connection): the controller marks it down */
  | { t: 'node-down'; node: string; reason: string }
  /** a CancelRequest for a session this worker does not hold */
  | { t: 'cancel'; processId: number; secretKey: number }
  /**
   * graceful restart: a client (the handle, no longer read) at its boundary, with its session's
   * state (session-handover.ts), for the new process; answered with `handed`
   */
  | { t: 'handover'; seq: number; protocol: ClientProtocol; state: unknown }
  | { t: 'drained'; postgres: DrainCounts; redis: DrainCounts }
  | { t: 'metrics'; seq: number; metrics: unknown[] }
  /** a read with a PostgreSQL causal token waits for the controller's change stream to apply `lsn` */
  | { t: 'stream-wait'; seq: number; stream: string; lsn: string };
