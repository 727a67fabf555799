/**
 * The admin HTTP server: `GET /api/nodes` (JSON, the node table), `GET /api/events`,
 * `GET /metrics` (Prometheus text), `GET /healthz`, and a minimal status page at `/`.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ClusterView } from '../core/cluster-view.js';
import { nodeState } from '../core/topology.js';
import type { Metrics } from './metrics.js';

/** One row of `GET /api/nodes` (the contract in DESIGN.md, plus details). */
export interface NodeReport {
  id: string;
  kind: 'postgres' | 'redis';
  shard: string;
  role: 'primary' | 'replica';
  host: string;
  port: number;
  state: 'up' | 'down' | 'lagging' | 'fenced';
  lagBytes: number | null;
  lagMs: number | null;
  timeline: number | null;
  position: string | null;
  outstanding: number;
  latencyMs: number | null;
  lastError: string | null;
  connections: { idle: number; active: number; waiting: number };
}

export function nodeReports(view: ClusterView): NodeReport[] {
  const stats = view.connectionStats();
  return view.nodes.map((n) => ({
    id: n.spec.id,
    kind: n.spec.kind,
    shard: n.spec.shard,
    role: n.role,
    host: n.spec.host,
    port: n.spec.port,
    state: nodeState(n),
    lagBytes: n.lagBytes,
    lagMs: n.lagMs,
    timeline: n.timeline,
    position: n.position,
    outstanding: n.outstanding,
    latencyMs: Number.isFinite(n.latency.value) ? Math.round(n.latency.value * 1000) / 1000 : null,
    lastError: n.lastError,
    connections: stats.get(n.spec.id) ?? { idle: 0, active: 0, waiting: 0 },
  }));
}

export class AdminServer {
  private readonly server: http.Server;

  constructor(
    private readonly view: ClusterView,
    private readonly metrics: Metrics,
  ) {
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((err: Error) => {
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(`internal error: ${err.message}\n`);
      });
    });
  }

  listen(host: string, port: number): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET') return send(res, 405, 'text/plain', 'only GET is supported here\n');
    switch (path) {
      case '/api/nodes':
        return send(res, 200, 'application/json', JSON.stringify(nodeReports(this.view)));
      case '/api/events':
        return send(res, 200, 'application/json', JSON.stringify(this.view.events));
      case '/metrics':
        return send(res, 200, this.metrics.registry.contentType, await this.metrics.registry.metrics());
      case '/healthz':
        return send(res, 200, 'text/plain', 'ok\n');
      case '/':
        return send(res, 200, 'text/html; charset=utf-8', statusPage(nodeReports(this.view)));
      default:
        return send(
          res,
          404,
          'text/plain',
          `no such endpoint ${path}; try /api/nodes, /api/events or /metrics\n`,
        );
    }
  }
}

function send(res: http.ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);
}

/** A plain status page; the live dashboard is a later piece of work. */
function statusPage(nodes: NodeReport[]): string {
  const rows = nodes
    .map(
      (n) =>
        `<tr><td>${escapeHtml(n.id)}</td><td>${n.kind}</td><td>${n.role}</td><td>${n.host}:${n.port}</td>` +
        `<td class="${n.state}">${n.state}</td><td>${n.lagBytes ?? ''}</td><td>${n.lagMs ?? ''}</td></tr>`,
    )
    .join('');
  return `<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="2"><title>rwsplit</title>
<style>body{font:14px system-ui;margin:2em}td,th{padding:4px 10px;text-align:left}.up{color:#080}.down{color:#c00}.lagging{color:#c80}.fenced{color:#888}</style>
<h1>rwsplit</h1><table><tr><th>node</th><th>kind</th><th>role</th><th>address</th><th>state</th><th>lag bytes</th><th>lag ms</th></tr>${rows}</table>
<p><a href="/api/nodes">/api/nodes</a> · <a href="/api/events">/api/events</a> · <a href="/metrics">/metrics</a></p>`;
}
