/** The dashboard page: a skeleton the script fills from `GET /api/stream`. */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>rwsplit</title>
<link rel="stylesheet" href="/assets/uPlot.min.css">
<link rel="stylesheet" href="/assets/dashboard.css">
</head>
<body>
<header>
  <h1>rwsplit</h1>
  <span id="conn" class="conn off">connecting…</span>
  <span id="summary" class="summary"></span>
</header>
<main>
  <div id="failovers" class="failovers"></div>
  <section>
    <h2>Topology</h2>
    <div id="topology" class="topology"></div>
    <p class="legend">
      <span class="swatch up"></span>up <span class="swatch lagging"></span>lagging
      <span class="swatch down"></span>down <span class="swatch fenced"></span>fenced / drained
    </p>
  </section>
  <section>
    <h2>Live <small>(one point a second, last 3 minutes)</small></h2>
    <div id="charts" class="charts" data-points="0"></div>
  </section>
  <section id="streams-section" hidden>
    <h2>Streams <small>(PostgreSQL tables kept in Redis)</small></h2>
    <div id="streams" class="topology"></div>
    <div id="stream-charts" class="charts stream-charts" data-points="0"></div>
  </section>
  <section>
    <h2>Events</h2>
    <table class="events">
      <thead><tr><th>time</th><th>node</th><th>event</th><th>detail</th></tr></thead>
      <tbody id="events"></tbody>
    </table>
  </section>
</main>
<footer>
  <a href="/api/nodes">/api/nodes</a> · <a href="/api/shards">/api/shards</a> ·
  <a href="/api/stats">/api/stats</a> · <a href="/api/events">/api/events</a> ·
  <a href="/api/streams">/api/streams</a> ·
  <a href="/metrics">/metrics</a>
</footer>
<script src="/assets/uPlot.iife.min.js"></script>
<script src="/assets/dashboard.js"></script>
</body>
</html>
`;
