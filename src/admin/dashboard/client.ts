/**
 * The dashboard's browser script, served as /assets/dashboard.js. Plain JavaScript for any
 * current browser, no build step; it lives in a string so `tsc` ships it in dist/. (It uses
 * no template literals of its own, so this file needs no escaping.)
 *
 * It opens `GET /api/stream` (Server-Sent Events): `snapshot` every second (nodes, their
 * state, lag and rates) redraws the topology and appends one point to each chart; `events`
 * (the whole log, on connect) and `event` (each new entry) fill the timeline and the failover
 * banner (a promotion under way, then the new primary). A snapshot's `streams` (the change
 * streams, as GET /api/streams reports them) fill the Streams panel: a card per stream (state,
 * lag in changes, bytes and ms, rates, freshness, errors and the last one) and two charts.
 */
export const DASHBOARD_JS = String.raw`(function () {
  'use strict';
  var WINDOW = 180; // points per chart: 3 minutes at one a second
  var COLORS = ['#2563eb', '#16a34a', '#db2777', '#ea580c', '#7c3aed', '#0891b2', '#65a30d', '#b45309', '#4b5563'];
  function rate(field) { return function (n) { return n.rates ? n.rates[field] : null; }; }
  // Each chart draws its lines once per node.
  var CHARTS = [
    { key: 'reads', title: 'reads/s', lines: [{ pick: rate('readsPerSec') }] },
    { key: 'writes', title: 'writes/s', lines: [{ pick: rate('writesPerSec') }] },
    { key: 'lag', title: 'replication lag (ms)', lines: [{ pick: function (n) { return n.role === 'replica' ? n.lagMs : null; } }] },
    { key: 'latency', title: 'latency: p99 and p50 (dashed), ms', lines: [
      { name: ' p99', pick: rate('p99Ms') },
      { name: ' p50', pick: rate('p50Ms'), dash: [5, 4] },
    ] },
  ];
  // The change streams' charts: one line per stream.
  var STREAM_CHARTS = [
    { key: 'stream-applied', title: 'streams: changes applied/s', pick: function (s) { return s.writeRate; } },
    { key: 'stream-lag', title: 'streams: lag (ms)', pick: function (s) { return s.lagMs; } },
  ];
  var STREAM_CLASS = { streaming: 'up', starting: 'lagging', copying: 'lagging', retrying: 'lagging', error: 'down', stopped: 'fenced' };
  var ss = { names: [], times: [], values: {}, plots: {}, boxes: {}, lastSample: null };
  var MAX_EVENTS = 200;
  var st = { ids: [], times: [], values: {}, plots: {}, boxes: {}, lastSample: null, events: [], groups: {} };
  var SHOW_DONE_MS = 60000; // a finished failover stays in the banner this long

  /** Builds an element; text goes in as text nodes, never as HTML. */
  function h(tag, attrs, children) {
    var el = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === 'class') el.className = attrs[k];
      else el.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) {
      if (c !== null && c !== undefined) el.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
    });
    return el;
  }

  function num(v, unit) {
    if (v === null || v === undefined) return '–';
    var s = v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
    return s + (unit || '');
  }
  function bytes(v) {
    if (v === null || v === undefined) return '–';
    if (v < 1024) return v + ' B';
    if (v < 1048576) return (v / 1024).toFixed(1) + ' KiB';
    return (v / 1048576).toFixed(1) + ' MiB';
  }
  function two(n) { return n < 10 ? '0' + n : String(n); }
  function clock(ms) {
    var d = new Date(ms);
    return two(d.getHours()) + ':' + two(d.getMinutes()) + ':' + two(d.getSeconds());
  }

  function nodeCard(n) {
    var r = n.rates;
    var rows = [
      ['lag', n.role === 'replica' && n.state !== 'down' ? bytes(n.lagBytes) + ' · ' + num(n.lagMs, ' ms') : '–'],
      ['reads/s', r ? num(r.readsPerSec) : '–'],
      ['writes/s', r ? num(r.writesPerSec) : '–'],
      ['p50 / p99', r ? num(r.p50Ms) + ' / ' + num(r.p99Ms, ' ms') : '–'],
      ['backends', n.connections.active + ' active, ' + n.connections.idle + ' idle'],
    ];
    var dl = h('dl', null, []);
    rows.forEach(function (row) {
      dl.appendChild(h('dt', null, [row[0]]));
      dl.appendChild(h('dd', { 'data-field': row[0] }, [row[1]]));
    });
    return h('div', { class: 'node ' + n.state, 'data-node': n.id, 'data-state': n.state, title: n.lastError || '' }, [
      h('div', { class: 'node-head' }, [h('strong', null, [n.id]), h('span', { class: 'role' }, [n.role])]),
      h('div', { class: 'addr' }, [n.host + ':' + n.port]),
      h('div', { class: 'state' }, [n.state]),
      dl,
    ]);
  }

  function renderTopology(snap) {
    var shards = new Map();
    snap.nodes.forEach(function (n) {
      var key = n.kind + ' · shard ' + n.shard;
      if (!shards.has(key)) shards.set(key, []);
      shards.get(key).push(n);
    });
    var boxes = [];
    shards.forEach(function (nodes, key) {
      nodes.sort(function (a, b) { return (a.role === 'primary' ? 0 : 1) - (b.role === 'primary' ? 0 : 1); });
      boxes.push(h('div', { class: 'shard' }, [h('h3', null, [key]), h('div', { class: 'nodes' }, nodes.map(nodeCard))]));
    });
    document.getElementById('topology').replaceChildren.apply(document.getElementById('topology'), boxes);
    snap.nodes.forEach(function (n) { st.groups[n.id] = n.kind + ' shard ' + n.shard; });
    var up = snap.nodes.filter(function (n) { return n.state === 'up'; }).length;
    var clients = Object.keys(snap.clients).map(function (k) { return k + ' ' + snap.clients[k]; }).join(', ');
    var workers = snap.workers && snap.workers.length > 0
      ? ' · workers: ' + snap.workers.map(function (w) { return '#' + w.index + ' ' + (w.ready ? w.clients + ' clients' : 'starting'); }).join(', ')
      : '';
    document.getElementById('summary').textContent =
      snap.nodes.length + ' nodes, ' + up + ' up · clients: ' + (clients || 'none') + workers;
  }

  function chartWidth(box) { return Math.max(300, box.clientWidth - 12); }

  /** (Re)creates the charts when the set of nodes changes; the series start over. */
  function ensureCharts(ids) {
    if (ids.join('\n') === st.ids.join('\n')) return;
    st.ids = ids;
    st.times = [];
    var root = document.getElementById('charts');
    root.replaceChildren();
    CHARTS.forEach(function (c) {
      var series = [{}];
      st.values[c.key] = [];
      ids.forEach(function (id, i) {
        c.lines.forEach(function (line) {
          series.push({
            label: id + (line.name || ''),
            stroke: COLORS[i % COLORS.length],
            width: 1.5,
            dash: line.dash,
            points: { show: false },
          });
          st.values[c.key].push([]);
        });
      });
      var box = h('div', { class: 'chart', 'data-chart': c.key }, []);
      root.appendChild(box);
      st.boxes[c.key] = box;
      var opts = {
        title: c.title,
        width: chartWidth(box),
        height: 170,
        scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.15 : 1]; } } },
        series: series,
        axes: [{}, { size: 56 }],
        legend: { live: false },
      };
      st.plots[c.key] = new uPlot(opts, [st.times].concat(st.values[c.key]), box);
    });
  }

  function addPoint(snap) {
    if (snap.sampleAt === st.lastSample) return; // a snapshot sent for an event: no new sample
    st.lastSample = snap.sampleAt;
    var byId = {};
    snap.nodes.forEach(function (n) { byId[n.id] = n; });
    st.times.push(snap.sampleAt / 1000);
    var trim = st.times.length > WINDOW;
    if (trim) st.times.shift();
    CHARTS.forEach(function (c) {
      st.values[c.key].forEach(function (arr, k) {
        var n = byId[st.ids[Math.floor(k / c.lines.length)]];
        arr.push(n ? c.lines[k % c.lines.length].pick(n) : null);
        if (trim) arr.shift();
      });
      st.plots[c.key].setData([st.times].concat(st.values[c.key]));
    });
    var root = document.getElementById('charts');
    root.setAttribute('data-points', String(st.times.length));
    root.setAttribute('data-sample-at', String(snap.sampleAt));
  }

  function streamCard(s) {
    var lag = (s.lagChanges === null || s.lagChanges === undefined ? '–' : s.lagChanges + ' changes') +
      ' · ' + bytes(s.lagBytes) + ' · ' + num(s.lagMs, ' ms');
    var rows = [
      ['lag', lag],
      ['applied/s', num(s.writeRate)],
      ['decoded/s', num(s.arrivalRate)],
      ['reads/s', num(s.readRate)],
      ['freshness p50 / p99', num(s.freshnessP50Ms) + ' / ' + num(s.freshnessP99Ms, ' ms')],
      ['errors', String(s.errors)],
      ['applied up to', s.appliedLsn || '–'],
    ];
    var dl = h('dl', null, []);
    rows.forEach(function (row) {
      dl.appendChild(h('dt', null, [row[0]]));
      dl.appendChild(h('dd', { 'data-field': row[0] }, [row[1]]));
    });
    return h('div', { class: 'node stream ' + (STREAM_CLASS[s.state] || 'fenced'), 'data-stream': s.name, 'data-state': s.state }, [
      h('div', { class: 'node-head' }, [h('strong', null, [s.name]), h('span', { class: 'role' }, ['table ' + s.table])]),
      h('div', { class: 'state' }, [s.state]),
      dl,
      s.error ? h('div', { class: 'stream-error', 'data-field': 'error' }, [s.error]) : null,
    ]);
  }

  /** The Streams panel: hidden without streams; cards, and one chart point per sample. */
  function renderStreams(snap) {
    var list = snap.streams || [];
    document.getElementById('streams-section').hidden = list.length === 0;
    if (list.length === 0) return;
    var box = document.getElementById('streams');
    box.replaceChildren.apply(box, list.map(streamCard));
    var names = list.map(function (s) { return s.name; });
    var root = document.getElementById('stream-charts');
    if (names.join('\n') !== ss.names.join('\n')) {
      ss.names = names;
      ss.times = [];
      root.replaceChildren();
      STREAM_CHARTS.forEach(function (c) {
        ss.values[c.key] = names.map(function () { return []; });
        var chart = h('div', { class: 'chart', 'data-chart': c.key }, []);
        root.appendChild(chart);
        ss.boxes[c.key] = chart;
        ss.plots[c.key] = new uPlot({
          title: c.title,
          width: chartWidth(chart),
          height: 170,
          scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.15 : 1]; } } },
          series: [{}].concat(names.map(function (n, i) {
            return { label: n, stroke: COLORS[i % COLORS.length], width: 1.5, points: { show: false } };
          })),
          axes: [{}, { size: 56 }],
          legend: { live: false },
        }, [ss.times].concat(ss.values[c.key]), chart);
      });
    }
    if (snap.sampleAt === ss.lastSample) return;
    ss.lastSample = snap.sampleAt;
    ss.times.push(snap.sampleAt / 1000);
    var trim = ss.times.length > WINDOW;
    if (trim) ss.times.shift();
    STREAM_CHARTS.forEach(function (c) {
      ss.values[c.key].forEach(function (arr, i) {
        arr.push(c.pick(list[i]));
        if (trim) arr.shift();
      });
      ss.plots[c.key].setData([ss.times].concat(ss.values[c.key]));
    });
    root.setAttribute('data-points', String(ss.times.length));
  }

  function renderEvents() {
    var rows = st.events.slice(-MAX_EVENTS).reverse().map(function (e) {
      return h('tr', { class: 'ev', 'data-type': e.type, 'data-node': e.node || '' }, [
        h('td', { class: 'time', title: new Date(e.at).toISOString() }, [clock(e.at)]),
        h('td', null, [e.node || '–']),
        h('td', null, [h('span', { class: 'tag ' + e.type }, [e.type])]),
        h('td', null, [e.detail]),
      ]);
    });
    var body = document.getElementById('events');
    body.replaceChildren.apply(body, rows);
  }

  /**
   * The failover banner: per shard, the last failover event decides. After failover-start
   * (the primary is lost, writes wait) it says a promotion is under way; after failover-end
   * it names the new primary for a minute. The node cards show the new roles from the
   * snapshot every event brings.
   */
  function renderFailovers() {
    var last = {};
    st.events.forEach(function (e) {
      if (e.type !== 'failover-start' && e.type !== 'failover-end' && e.type !== 'writes-released') return;
      last[st.groups[e.node] || e.node] = e;
    });
    var now = Date.now();
    var items = [];
    Object.keys(last).forEach(function (group) {
      var e = last[group];
      if (e.type === 'failover-start')
        items.push(h('div', { class: 'failover running', 'data-state': 'running' }, [
          h('strong', null, ['failover of ' + group + ': ']), e.node + ' lost, promoting a replica… (' + e.detail + ')',
        ]));
      else if (e.type === 'failover-end' && now - e.at < SHOW_DONE_MS)
        items.push(h('div', { class: 'failover done', 'data-state': 'done' }, [
          h('strong', null, ['failover of ' + group + ' done at ' + clock(e.at) + ': ']), e.node + ' is the primary (' + e.detail + ')',
        ]));
    });
    var box = document.getElementById('failovers');
    box.replaceChildren.apply(box, items);
  }

  function setLive(live) {
    var el = document.getElementById('conn');
    el.textContent = live ? 'live' : 'reconnecting…';
    el.className = 'conn' + (live ? '' : ' off');
  }

  var es = new EventSource('/api/stream');
  es.onopen = function () { setLive(true); };
  es.onerror = function () { setLive(false); };
  es.addEventListener('snapshot', function (m) {
    var snap = JSON.parse(m.data);
    renderTopology(snap);
    renderFailovers();
    ensureCharts(snap.nodes.map(function (n) { return n.id; }));
    addPoint(snap);
    renderStreams(snap);
  });
  es.addEventListener('events', function (m) {
    st.events = JSON.parse(m.data);
    renderEvents();
    renderFailovers();
  });
  es.addEventListener('event', function (m) {
    st.events.push(JSON.parse(m.data));
    if (st.events.length > MAX_EVENTS) st.events.shift();
    renderEvents();
    renderFailovers();
  });
  window.addEventListener('resize', function () {
    CHARTS.forEach(function (c) {
      if (st.plots[c.key]) st.plots[c.key].setSize({ width: chartWidth(st.boxes[c.key]), height: 170 });
    });
    STREAM_CHARTS.forEach(function (c) {
      if (ss.plots[c.key]) ss.plots[c.key].setSize({ width: chartWidth(ss.boxes[c.key]), height: 170 });
    });
  });
})();
`;
