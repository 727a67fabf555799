/** `rwsplit status`: fetches /api/nodes from a running instance and prints a table. */
import { fetchAdminJson } from './admin-client.js';
import type { NodeReport } from '../admin/reports.js';
import type { WorkerReport } from '../admin/http-server.js';

export function formatNodeTable(nodes: readonly NodeReport[]): string {
  const header = ['NODE', 'KIND', 'SHARD', 'ROLE', 'ADDRESS', 'STATE', 'LAG BYTES', 'LAG MS', 'CONNS'];
  const rows = nodes.map((n) => [
    n.id,
    n.kind,
    n.shard,
    n.role,
    `${n.host}:${n.port}`,
    n.state,
    n.lagBytes === null ? '-' : String(n.lagBytes),
    n.lagMs === null ? '-' : String(n.lagMs),
    `${n.connections.active}/${n.connections.active + n.connections.idle}`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [header, ...rows]
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** The data-plane workers, one line (`workers: 1` when one process serves the clients). */
export function formatWorkers(workers: readonly WorkerReport[]): string {
  if (workers.length === 0) return 'workers: 1 (one process)';
  const each = workers.map(
    (w) => `#${w.index} pid ${w.pid ?? '-'} ${w.ready ? `${w.clients} clients` : 'starting'}`,
  );
  return `workers: ${workers.length} (${each.join(', ')})`;
}

export async function printStatus(base: string): Promise<void> {
  console.log(formatNodeTable(await fetchAdminJson<NodeReport[]>(base, '/api/nodes')));
  console.log(formatWorkers(await fetchAdminJson<WorkerReport[]>(base, '/api/workers')));
}
