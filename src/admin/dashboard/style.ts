/** The dashboard's stylesheet. State colours: up green, lagging amber, down red, fenced grey. */
export const DASHBOARD_CSS = `
:root {
  --up: #1f9d4c; --lagging: #d99a00; --down: #d43f3f; --fenced: #8c8c8c;
  --ink: #1d2330; --muted: #6b7280; --line: #e3e6eb; --card: #fff; --bg: #f5f6f8;
}
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, sans-serif; color: var(--ink); background: var(--bg); }
header { display: flex; align-items: baseline; gap: 16px; padding: 12px 24px; background: #1d2330; color: #fff; }
header h1 { margin: 0; font-size: 20px; }
.conn { font-size: 12px; padding: 2px 8px; border-radius: 10px; background: var(--up); }
.conn.off { background: var(--down); }
.summary { color: #c9ced8; }
main { padding: 8px 24px 24px; }
h2 { font-size: 15px; margin: 18px 0 8px; }
h2 small { font-weight: normal; color: var(--muted); }
.topology { display: flex; flex-wrap: wrap; gap: 12px; }
.shard { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 8px 12px 12px; }
.shard h3 { margin: 0 0 8px; font-size: 13px; color: var(--muted); font-weight: 600; }
.nodes { display: flex; flex-wrap: wrap; gap: 10px; }
.node { width: 210px; border: 1px solid var(--line); border-left: 6px solid var(--fenced); border-radius: 6px; padding: 6px 10px; }
.node.up { border-left-color: var(--up); }
.node.lagging { border-left-color: var(--lagging); background: #fff9e8; }
.node.down { border-left-color: var(--down); background: #fdeeee; }
.node.fenced { border-left-color: var(--fenced); background: #f0f0f0; color: var(--muted); }
.node-head { display: flex; align-items: center; gap: 6px; }
.node-head .role { margin-left: auto; font-size: 12px; color: var(--muted); }
.node .state { font-weight: 600; text-transform: uppercase; font-size: 12px; }
.node.up .state { color: var(--up); }
.node.lagging .state { color: var(--lagging); }
.node.down .state { color: var(--down); }
.node .addr { font-size: 12px; color: var(--muted); }
.node dl { display: grid; grid-template-columns: auto 1fr; gap: 0 8px; margin: 4px 0 0; font-size: 12px; }
.node dt { color: var(--muted); }
.node dd { margin: 0; font-variant-numeric: tabular-nums; }
.legend { font-size: 12px; color: var(--muted); }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin: 0 4px 0 10px; vertical-align: -1px; }
.swatch.up { background: var(--up); } .swatch.lagging { background: var(--lagging); }
.swatch.down { background: var(--down); } .swatch.fenced { background: var(--fenced); }
.node.stream { width: 300px; }
.stream-error { margin-top: 4px; font-size: 12px; color: var(--down); overflow-wrap: anywhere; }
.stream-charts { margin-top: 12px; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 12px; }
.chart { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 6px; min-width: 0; }
.events { width: 100%; border-collapse: collapse; background: var(--card); border: 1px solid var(--line); }
.events th, .events td { text-align: left; padding: 4px 10px; border-bottom: 1px solid var(--line); font-size: 13px; }
.events td.time { font-variant-numeric: tabular-nums; white-space: nowrap; color: var(--muted); }
.tag { padding: 1px 6px; border-radius: 4px; font-size: 12px; background: #e8eaee; }
.tag.down { background: var(--down); color: #fff; }
.tag.up, .tag.caught-up, .tag.undrained { background: var(--up); color: #fff; }
.tag.lagging { background: var(--lagging); color: #fff; }
.tag.drained, .tag.fenced { background: var(--fenced); color: #fff; }
.tag.config-reload-failed { background: var(--down); color: #fff; }
.tag.stream-error, .tag.stream-interrupted { background: var(--down); color: #fff; }
.tag.stream-started, .tag.stream-recovered { background: var(--up); color: #fff; }
.tag.stream-resynced { background: var(--lagging); color: #fff; }
.tag.failover-start, .tag.writes-held { background: var(--down); color: #fff; }
.tag.failover-end, .tag.writes-released, .tag.role-change { background: #2563eb; color: #fff; }
.failover { margin: 10px 0 0; padding: 8px 12px; border-radius: 6px; color: #fff; }
.failover.running { background: var(--down); }
.failover.done { background: var(--up); }
footer { padding: 8px 24px 24px; font-size: 12px; color: var(--muted); }
`;
