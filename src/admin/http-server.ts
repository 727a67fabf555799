/**
 * The admin HTTP server. Read endpoints: `GET /api/nodes`, `/api/shards`, `/api/events`,
 * `/api/stats`, `/api/stream` (Server-Sent Events), `/metrics` (Prometheus text),
 * `/healthz`, and the dashboard at `/`. Actions (`POST /api/nodes/:id/drain|undrain`,
 * `POST /api/reload`, `POST /api/switchover`, `POST /api/restart`) need
 * `Authorization: Bearer <admin.token>`.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type net from 'node:net';
import type { Logger } from 'pino';
import { ConfigError } from '../config/load.js';
import type { ClusterView } from '../core/cluster-view.js';
import {
  AdminActionError,
  asActionError,
  parseSwitchoverRequest,
  ViewDrainer,
  type AdminActions,
  type ReloadPlan,
  type SwitchoverRequest,
} from './actions.js';
import { loadDashboardAssets, type Asset } from './dashboard/assets.js';
import { EventLog, type AdminEventType, type LogEvent } from './event-log.js';
import { LiveStats, type NodeRates } from './live-stats.js';
import type { Metrics } from './metrics.js';
import { nodeReports, shardReports, statsReport, type NodeReport } from './reports.js';
import { EventStream } from './sse.js';
import { listenServer } from '../util/listen.js';

export { nodeReports, type NodeReport } from './reports.js';

/** What `GET /api/stream` pushes every second (event `snapshot`). */
export interface Snapshot {
  at: number;
  /** when the rates were sampled; a snapshot sent for an event repeats the last sample */
  sampleAt: number;
  nodes: Array<NodeReport & { rates: NodeRates | null }>;
  clients: Record<string, number>;
  /** the change streams, as `GET /api/streams` reports them (the dashboard's Streams panel) */
  streams: object[];
  /** the data-plane worker processes (`workers` > 1); empty in one process */
  workers: WorkerReport[];
}

/** One entry of `GET /api/workers`: a data-plane worker process (src/workers/). */
export interface WorkerReport {
  index: number;
  pid: number | null;
  ready: boolean;
  startedAt: number;
  clients: number;
  /** client connections handed to it since it started */
  accepted: number;
}

export interface AdminServerOptions {
  /** `admin.token`; null or absent: actions answer 403 */
  token?: string | null;
  /** `POST /api/reload`; absent: answered 409 (the instance was not started from a file) */
  reload?: () => ReloadPlan;
  /** `POST /api/switchover` (the PostgreSQL failover controller); absent: answered 409 */
  switchover?: (req: SwitchoverRequest) => Promise<object>;
  /** `POST /api/restart` (graceful restart, answered once the new process serves); absent: 409 */
  restart?: () => Promise<object>;
  /** replaces the default drain/undrain over the view */
  actions?: Partial<AdminActions>;
  log?: Logger;
  /** `GET /api/streams`: the change streams' reports (src/stream/); absent: an empty list */
  streams?: () => object[];
  /** `GET /api/workers`: the data-plane workers (`workers` > 1); absent: an empty list */
  workers?: () => WorkerReport[];
  /** snapshot period of `/api/stream` (default 1000 ms) */
  sampleIntervalMs?: number;
}

type Handler = (req: http.IncomingMessage, res: http.ServerResponse, url: URL) => Promise<void> | void;
/** An action: runs with the request body, answers the response body. */
type Action = (body: string) => object | Promise<object>;

/** Largest action request body read (a switchover request is a few dozen bytes). */
const MAX_BODY_BYTES = 16 * 1024;

export class AdminServer {
  /** The event log (topology events and admin actions); `on('event')` for new ones. */
  readonly events: EventLog;
  private readonly server: http.Server;
  private readonly stream = new EventStream();
  private readonly live: LiveStats;
  private readonly actions: AdminActions;
  private readonly assets: Map<string, Asset>;
  private tokenHash: Buffer | null = null;

  constructor(
    private readonly view: ClusterView,
    private readonly metrics: Metrics,
    private readonly opts: AdminServerOptions = {},
  ) {
    this.setToken(opts.token ?? null);
    this.events = new EventLog(view);
    this.live = new LiveStats(view, metrics);
    this.assets = loadDashboardAssets();
    const drainer = new ViewDrainer(view);
    this.actions = {
      drain: (id) => drainer.drain(id),
      undrain: (id) => drainer.undrain(id),
      reload: () => {
        if (!opts.reload)
          throw new AdminActionError(
            'RELOAD_UNAVAILABLE',
            'this instance was not started from a config file (rwsplit start --config FILE): nothing to reload',
          );
        return opts.reload();
      },
      switchover: (req) => {
        if (!opts.switchover)
          throw new AdminActionError(
            'SWITCHOVER_UNAVAILABLE',
            'this instance has no PostgreSQL failover controller: switchover is not available',
          );
        return opts.switchover(req);
      },
      ...opts.actions,
    };
    this.events.on('event', (e: LogEvent) => {
      this.stream.broadcast('event', e);
      // A state change shows at once, not at the next tick.
      if (this.stream.size > 0) this.stream.broadcast('snapshot', this.snapshot());
    });
    this.server = http.createServer((req, res) => {
      Promise.resolve(this.handle(req, res)).catch((err: Error) => {
        if (res.headersSent) return void res.destroy();
        sendJson(res, 500, { error: 'INTERNAL', message: err.message });
      });
    });
  }

  /** Replaces the token actions need (config reload); null refuses every action. */
  setToken(token: string | null): void {
    // Compared as SHA-256 digests: equal lengths for timingSafeEqual, whatever was sent.
    this.tokenHash = token === null ? null : sha256(token);
  }

  /** `inherited`: the listening socket a graceful restart handed over (used when on `port`). */
  async listen(host: string, port: number, inherited?: net.Server): Promise<AddressInfo> {
    const address = await listenServer(this.server, host, port, inherited);
    const ms = this.opts.sampleIntervalMs ?? 1000;
    this.live.start(ms, () => {
      if (this.stream.size > 0) this.stream.broadcast('snapshot', this.snapshot());
    });
    return address;
  }

  /** The listening socket, for a graceful restart to hand over. */
  get listener(): net.Server {
    return this.server;
  }

  /**
   * Graceful restart: stop accepting (the new process serves the port), end the event
   * streams (browsers reconnect, to the new process) and idle keep-alive connections; requests
   * under way finish.
   */
  stopAccepting(): void {
    this.server.close();
    this.stream.closeAll();
    this.server.closeIdleConnections();
  }

  close(): Promise<void> {
    this.live.stop();
    this.stream.closeAll();
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  /** The body of one `snapshot` stream message. */
  snapshot(): Snapshot {
    const sample = this.live.latest;
    return {
      at: Date.now(),
      sampleAt: sample.at,
      nodes: nodeReports(this.view).map((n) => ({ ...n, rates: sample.nodes[n.id] ?? null })),
      clients: Object.fromEntries(this.view.clientCounts()),
      streams: this.opts.streams?.() ?? [],
      workers: this.opts.workers?.() ?? [],
    };
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> | void {
    const url = new URL(req.url ?? '/', 'http://admin');
    if (req.method === 'POST') {
      const action = this.postRoute(url.pathname);
      if (!action) {
        req.resume();
        return sendError(res, 404, 'NOT_FOUND', `no action at ${url.pathname}`);
      }
      if (!this.authorized(req, res)) {
        req.resume();
        return;
      }
      return this.runAction(req, res, action);
    }
    if (req.method !== 'GET' && req.method !== 'HEAD')
      return sendError(res, 405, 'METHOD_NOT_ALLOWED', 'use GET, or POST for actions');
    const handler = this.getRoutes()[url.pathname];
    if (handler) return handler(req, res, url);
    const asset = this.assets.get(url.pathname);
    if (asset) return sendAsset(res, asset);
    return sendError(
      res,
      404,
      'NOT_FOUND',
      `no such endpoint ${url.pathname}; try /, /api/nodes, /api/shards, /api/events, /api/stats, /api/stream or /metrics`,
    );
  }

  private getRoutes(): Record<string, Handler> {
    return {
      '/api/nodes': (_q, res) => sendJson(res, 200, nodeReports(this.view)),
      '/api/shards': (_q, res) => sendJson(res, 200, shardReports(nodeReports(this.view))),
      '/api/events': (_q, res, url) => {
        const since = url.searchParams.get('since');
        if (since !== null && !/^\d+$/.test(since))
          return sendError(res, 400, 'BAD_REQUEST', 'since must be a time in milliseconds since the epoch');
        sendJson(res, 200, this.events.list(since === null ? undefined : Number(since)));
      },
      '/api/stats': (_q, res) => sendJson(res, 200, statsReport(this.view, this.metrics)),
      '/api/streams': (_q, res) => sendJson(res, 200, this.opts.streams?.() ?? []),
      '/api/workers': (_q, res) => sendJson(res, 200, this.opts.workers?.() ?? []),
      '/api/stream': (req, res) =>
        this.stream.open(req, res, [
          ['snapshot', this.snapshot()],
          ['events', this.events.list()],
        ]),
      '/metrics': async (_q, res) =>
        send(res, 200, this.metrics.registry.contentType, await this.metrics.exposition()),
      '/healthz': (_q, res) => send(res, 200, 'text/plain', 'ok\n'),
    };
  }

  /** The action a POST path names, as a function answering the response body. */
  private postRoute(path: string): Action | null {
    if (path === '/api/reload') return () => this.reload();
    if (path === '/api/switchover') return (body) => this.switchover(body);
    if (path === '/api/restart') return () => this.restart();
    const m = /^\/api\/nodes\/([^/]+)\/(drain|undrain)$/.exec(path);
    if (!m) return null;
    const id = decodeURIComponent(m[1]!);
    if (m[2] === 'drain')
      return () => {
        const changed = this.actions.drain(id);
        if (changed) this.record(id, 'drained', 'drained by an operator: no new requests');
        return { node: id, drained: true, changed };
      };
    return () => {
      const changed = this.actions.undrain(id);
      if (changed) this.record(id, 'undrained', 'back in rotation (undrained by an operator)');
      return { node: id, drained: false, changed };
    };
  }

  private reload(): ReloadPlan {
    let plan: ReloadPlan;
    try {
      plan = this.actions.reload();
    } catch (err) {
      if (err instanceof ConfigError) this.record(null, 'config-reload-failed', err.message);
      throw err;
    }
    const parts = [
      `applied: ${plan.applied.join(', ') || 'nothing changed'}`,
      ...(plan.needsRestart.length ? [`needs a restart: ${plan.needsRestart.join(', ')}`] : []),
    ];
    this.record(null, 'config-reload', parts.join('; '));
    return plan;
  }

  private async switchover(body: string): Promise<object> {
    const req = parseSwitchoverRequest(body);
    const who = `shard ${req.shard ?? 'default'}${req.to ? ` to ${req.to}` : ''}`;
    this.opts.log?.info({ request: req }, 'switchover requested');
    try {
      return await this.actions.switchover(req);
    } catch (err) {
      this.opts.log?.warn({ err: (err as Error).message }, `switchover of ${who} refused or failed`);
      throw asActionError(err);
    }
  }

  private async restart(): Promise<object> {
    if (!this.opts.restart)
      throw new AdminActionError(
        'RESTART_UNAVAILABLE',
        'this instance was not started with rwsplit start --config FILE: it cannot start its successor',
      );
    this.opts.log?.info('graceful restart requested');
    return this.opts.restart();
  }

  private async runAction(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    action: Action,
  ): Promise<void> {
    try {
      sendJson(res, 200, await action(await readBody(req)));
    } catch (err) {
      if (err instanceof AdminActionError) return sendError(res, err.status, err.code, err.message);
      if (err instanceof ConfigError) return sendError(res, 400, err.code, err.message);
      throw err;
    }
  }

  private record(node: string | null, type: AdminEventType, detail: string): void {
    const e = this.events.record(node, type, detail);
    this.opts.log?.info(e, node ? `node ${node} ${e.type}` : e.type);
  }

  /** Answers 403/401 itself and returns false when the request may not act. */
  private authorized(req: http.IncomingMessage, res: http.ServerResponse): boolean {
    if (this.tokenHash === null) {
      sendError(
        res,
        403,
        'ACTIONS_DISABLED',
        'admin actions are disabled: set admin.token in the config file (at least 16 characters) and send it as Authorization: Bearer <token>',
      );
      return false;
    }
    const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    if (!m || !timingSafeEqual(sha256(m[1]!), this.tokenHash)) {
      res.setHeader('www-authenticate', 'Bearer realm="rwsplit"');
      sendError(res, 401, 'UNAUTHORIZED', 'send the admin token as Authorization: Bearer <admin.token>');
      return false;
    }
    return true;
  }
}

/** The request body as text, at most MAX_BODY_BYTES. */
function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        req.destroy();
        reject(new AdminActionError('BAD_REQUEST', `request body over ${MAX_BODY_BYTES} bytes`));
      } else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

function send(res: http.ServerResponse, status: number, type: string, body: string | Buffer): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  send(res, status, 'application/json', JSON.stringify(body));
}

function sendError(res: http.ServerResponse, status: number, error: string, message: string): void {
  sendJson(res, status, { error, message });
}

function sendAsset(res: http.ServerResponse, asset: Asset): void {
  res.writeHead(asset.status, {
    'content-type': asset.type,
    'cache-control': 'no-cache',
    'x-content-type-options': 'nosniff',
    // The page loads only its own scripts, styles and stream: no inline code, no CDN.
    'content-security-policy': "default-src 'self'; img-src 'self' data:",
  });
  res.end(asset.body);
}
