/**
 * The admin API's actions and their errors. Draining works on any node of the ClusterView
 * (any engine, any shard): a drained node is `fenced`, which the read router and
 * `Topology.primary()` already skip, so it takes no new requests; requests in flight finish.
 */
import type { ClusterView } from '../core/cluster-view.js';
import type { NodeStatus } from '../core/topology.js';
import { FailoverError, type FailoverErrorCode } from '../pg/ha/failover-plan.js';

/** What a successful reload changed (key paths, never values: a key may be a secret). */
export interface ReloadPlan {
  /** changed keys now in effect */
  applied: string[];
  /** changed keys that take effect only after a restart (ignored until then) */
  needsRestart: string[];
}

/** The body of `POST /api/switchover`: both keys optional (shard `default`, the most advanced replica). */
export interface SwitchoverRequest {
  shard?: string;
  to?: string;
}

/** The operations behind `POST /api/nodes/:id/drain|undrain`, `POST /api/reload` and `POST /api/switchover`. */
export interface AdminActions {
  /** Takes a node out of rotation; returns false when it already was drained. */
  drain(id: string): boolean;
  /** Puts a drained node back; returns false when it was not drained. */
  undrain(id: string): boolean;
  /** Re-reads the config file; throws ConfigError (answered 400) when the file is invalid. */
  reload(): ReloadPlan;
  /** Planned switchover of a PostgreSQL shard's primary; answers what happened. */
  switchover(req: SwitchoverRequest): Promise<object>;
}

export type AdminActionCode =
  | 'NODE_NOT_FOUND'
  | 'NODE_IS_PRIMARY'
  | 'FENCED_ELSEWHERE'
  | 'RELOAD_UNAVAILABLE'
  | 'BAD_REQUEST'
  | 'SWITCHOVER_UNAVAILABLE'
  | 'RESTART_UNAVAILABLE'
  | 'RESTART_RUNNING'
  | 'RESTART_FAILED'
  | FailoverErrorCode;

const STATUS: Record<AdminActionCode, number> = {
  NODE_NOT_FOUND: 404,
  NODE_IS_PRIMARY: 409,
  FENCED_ELSEWHERE: 409,
  RELOAD_UNAVAILABLE: 409,
  BAD_REQUEST: 400,
  SWITCHOVER_UNAVAILABLE: 409,
  RESTART_UNAVAILABLE: 409,
  RESTART_RUNNING: 409,
  RESTART_FAILED: 502,
  // switchover (src/pg/ha/failover-plan.ts): the request's fault, the cluster's state, or the servers'
  UNKNOWN_SHARD: 400,
  BAD_TARGET: 400,
  FAILOVER_RUNNING: 409,
  NOT_AUTO: 409,
  NO_PRIMARY: 409,
  NO_CANDIDATE: 409,
  CATCHUP_TIMEOUT: 504,
  PROMOTION_FAILED: 502,
};

/** An action refused; `status` is the HTTP status it is answered with. */
export class AdminActionError extends Error {
  readonly status: number;
  constructor(
    readonly code: AdminActionCode,
    message: string,
  ) {
    super(message);
    this.name = new.target.name;
    this.status = STATUS[code];
  }
}

/** A failover controller's refusal as an admin action error (its code kept, an HTTP status added). */
export function asActionError(err: unknown): unknown {
  return err instanceof FailoverError ? new AdminActionError(err.code, err.message) : err;
}

/**
 * Reads `POST /api/switchover`'s JSON body (empty: all defaults).
 * @throws AdminActionError BAD_REQUEST naming what is wrong
 */
export function parseSwitchoverRequest(body: string): SwitchoverRequest {
  if (body.trim() === '') return {};
  let v: unknown;
  try {
    v = JSON.parse(body);
  } catch {
    throw new AdminActionError('BAD_REQUEST', 'the body must be JSON: {"shard"?: string, "to"?: node id}');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new AdminActionError(
      'BAD_REQUEST',
      'the body must be a JSON object: {"shard"?: string, "to"?: node id}',
    );
  const out: SwitchoverRequest = {};
  for (const [k, val] of Object.entries(v)) {
    if (k !== 'shard' && k !== 'to')
      throw new AdminActionError('BAD_REQUEST', `unknown key "${k}"; the keys are "shard" and "to"`);
    if (typeof val !== 'string' || val === '')
      throw new AdminActionError('BAD_REQUEST', `"${k}" must be a non-empty string`);
    out[k] = val;
  }
  return out;
}

/**
 * Drain and undrain over the view. Remembers which nodes it drained so that undrain never
 * lifts a fence it did not set (an old primary fenced by a failover stays fenced).
 */
export class ViewDrainer {
  private readonly drained = new Set<string>();

  constructor(private readonly view: ClusterView) {}

  drain(id: string): boolean {
    const n = this.find(id);
    if (this.drained.has(id)) return false;
    if (n.fenced) throw new AdminActionError('FENCED_ELSEWHERE', `node ${id} is already fenced`);
    // Fencing the primary would stop every write of its shard: that is a switchover's job.
    if (n.role === 'primary')
      throw new AdminActionError(
        'NODE_IS_PRIMARY',
        `node ${id} is the primary of shard ${n.spec.shard}; drain takes replicas out of read rotation`,
      );
    n.fenced = true;
    this.drained.add(id);
    return true;
  }

  undrain(id: string): boolean {
    const n = this.find(id);
    if (!this.drained.has(id)) {
      if (n.fenced)
        throw new AdminActionError(
          'FENCED_ELSEWHERE',
          `node ${id} was fenced by rwsplit itself (failover), not drained; it returns when it rejoins as a replica`,
        );
      return false;
    }
    this.drained.delete(id);
    n.fenced = false;
    return true;
  }

  private find(id: string): NodeStatus {
    const n = this.view.nodes.find((x) => x.spec.id === id);
    if (!n) {
      const known = this.view.nodes.map((x) => x.spec.id).join(', ');
      throw new AdminActionError('NODE_NOT_FOUND', `no node ${id}; the nodes are: ${known}`);
    }
    return n;
  }
}
