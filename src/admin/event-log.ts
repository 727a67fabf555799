/**
 * The event log the admin API, the stream and the dashboard show: every topology's events
 * (node down/up, lag breach/recovery, role changes, …) merged with the events of the admin
 * actions themselves (drain, undrain, config reload), which belong to no topology.
 */
import { EventEmitter } from 'node:events';
import type { ClusterView } from '../core/cluster-view.js';
import type { TopologyEvent } from '../core/topology.js';

/** Events recorded by the admin server's actions. */
export type AdminEventType =
  | 'drained'
  | 'undrained'
  | 'config-reload'
  | 'config-reload-failed'
  /** a client cut off by a limit (output buffer, buffer budget, login or idle timeout) */
  | 'client-killed'
  /**
   * a change stream (src/stream/) started, copied its table again, stopped on an error,
   * was interrupted by a failure it retries, or applies again after one
   */
  | 'stream-started'
  | 'stream-resynced'
  | 'stream-error'
  | 'stream-interrupted'
  | 'stream-recovered'
  /** a data-plane worker process died (its clients' connections closed with it) and was replaced */
  | 'worker-exited';

/** One entry of `GET /api/events`. `node` is null for instance-wide events (a reload). */
export interface LogEvent {
  at: number;
  node: string | null;
  type: TopologyEvent['type'] | AdminEventType;
  detail: string;
}

const OWN_LOG_SIZE = 200;

/** Emits `event` (a LogEvent) for every new entry, topology or admin. */
export class EventLog extends EventEmitter {
  private readonly own: LogEvent[] = [];

  constructor(private readonly view: ClusterView) {
    super();
    view.on('event', (e: TopologyEvent) => this.emit('event', e));
  }

  /** Records an admin event and announces it. */
  record(node: string | null, type: AdminEventType, detail: string): LogEvent {
    const e: LogEvent = { at: Date.now(), node, type, detail };
    this.own.push(e);
    if (this.own.length > OWN_LOG_SIZE) this.own.splice(0, this.own.length - OWN_LOG_SIZE);
    this.emit('event', e);
    return e;
  }

  /** Every event, oldest first; with `since` (epoch ms), only those strictly after it. */
  list(since?: number): LogEvent[] {
    const all: LogEvent[] = [...this.view.events, ...this.own].sort((a, b) => a.at - b.at);
    return since === undefined ? all : all.filter((e) => e.at > since);
  }
}
