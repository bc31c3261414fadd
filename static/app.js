// The page's entry point: connects to the dashboard's WebSocket, hands each
// snapshot or update to the views and each series to the charts, and keeps
// the scope and window choice. It measures its own work per update and
// publishes it on window.__mothership for tests and the benchmark. Windows
// past the live hour (6 h, 24 h, 7 d) and ranges picked by dragging across a
// chart come from the dashboard's history over HTTP, with that range's routes.
(function (M) {
  'use strict';

  const F = M.format;
  const D = M.dom;
  const LIVE_WINDOWS = [300, 900, 3600]; // over the WebSocket, moving every second
  const HISTORY_WINDOWS = [21600, 86400, 604800]; // from history over HTTP, asked again every minute
  const WINDOWS = LIVE_WINDOWS.concat(HISTORY_WINDOWS);
  const HISTORY_REFRESH_MS = 60000;
  const MIN_RANGE = 60; // seconds: the shortest range a drag picks
  const KEEP_TIMINGS = 120;
  const SERIES_FALLBACK_MS = 4000; // no series by then: ask over HTTP instead

  // window.__mothership, read by tests, the benchmark and users' own scripts:
  //   state: 'connecting' | 'live' | 'reconnecting' | 'offline' (as #live-status's data-state)
  //   snapshots, updates, series: messages handled; reconnects: times live again after a loss
  //   lastUpdateMs, maxUpdateMs, updateTimes[]: work per snapshot/update (parse, DOM, style and
  //     layout), ms, and parseTimes[] beside them; lastSeriesMs, maxSeriesMs: the same for series
  //     messages (the charts)
  //   parts: ms per view in the last update (parse: JSON.parse, in the worker when inWorker;
  //     receive: taking the message in on the page); pods, routes, tailLength, chartPoints: sizes
  //   scope, window: what the charts show; range: {start, end} (epoch s) of a zoomed or past range, or null;
  //   chartValues: points with a p50; historyFetches: series and routes asked of history; routesRange: rows of the range's routes table;
  //   lastError: the server's last error message
  //   replay(msg): handle a message as if from the socket (benchmarks)
  const stats = {
    state: 'connecting',
    snapshots: 0,
    updates: 0,
    series: 0,
    reconnects: 0,
    lastUpdateMs: 0,
    maxUpdateMs: 0,
    lastSeriesMs: 0,
    maxSeriesMs: 0,
    updateTimes: [], // the last KEEP_TIMINGS update durations, ms
    parseTimes: [], // and their JSON.parse times (in the worker when inWorker)
    lastMessageAt: 0,
    pods: 0,
    routes: 0,
    chartPoints: 0,
    tailLength: 0,
    scope: 'all',
    window: 300,
    range: null,
    historyFetches: 0,
    routesRange: null,
    errors: [],
    lastError: '',
    parts: {}, // ms per view in the last update, and style+layout
    inWorker: false, // the socket and JSON.parse run in a Web Worker
    bytes: 0, // size of the last update
    textWrites: 0, // text nodes the last update changed
  };
  window.__mothership = stats;
  window.addEventListener('error', (event) => {
    if (stats.errors.length < 20) stats.errors.push(String(event.message));
  });

  function readHash() {
    const params = new URLSearchParams(location.hash.slice(1));
    const scope = params.get('scope');
    const win = Number(params.get('window'));
    const from = Number(params.get('from'));
    const to = Number(params.get('to'));
    return {
      scope: scope && /^(all|app:.+|pod:.+)$/.test(scope) ? scope : 'all',
      window: WINDOWS.includes(win) ? win : 300,
      range: from > 0 && to - from >= MIN_RANGE ? { start: from, end: to } : null,
    };
  }

  function writeHash(scope, win, range) {
    const params = new URLSearchParams();
    if (scope !== 'all') params.set('scope', scope);
    if (win !== 300) params.set('window', String(win));
    if (range) {
      params.set('from', String(range.start));
      params.set('to', String(range.end));
    }
    const hash = params.toString();
    history.replaceState(null, '', hash ? '#' + hash : location.pathname + location.search);
  }

  function wsUrl() {
    const url = new URL('ws', location.href);
    url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    url.search = '';
    url.hash = '';
    return url.href;
  }

  function scopeExists(ov, scope) {
    if (scope === 'all') return true;
    const name = scope.slice(4);
    if (scope.startsWith('app:')) return (ov.apps || []).some((a) => a.app === name);
    return (ov.pods || []).some((p) => p.pod === name);
  }

  function scopeLabel(scope) {
    if (scope === 'all') return 'all apps and pods';
    return scope.startsWith('app:') ? 'app ' + scope.slice(4) : 'pod ' + scope.slice(4);
  }

  function start() {
    const $ = (id) => document.getElementById(id);
    const initial = readHash();
    let scope = initial.scope;
    let win = initial.window;
    let range = initial.range; // a zoomed or past range, or null: up to now
    let historyTimer = null;
    let historyAsk = 0; // the latest history request: answers to older ones are dropped
    let latest = null;
    let overviewDirty = false;
    let chartsDirty = false;
    let lastSeriesAt = 0;
    let seriesFetch = null;
    let fallbackTimer = null;
    let awaitingScope = null;

    const totals = new M.Totals($('totals'));
    const overview = new M.OverviewTable($('overview-body'), (s) => setScope(s));
    const cards = new M.PodCards($('pod-cards'), (s) => setScope(s));
    const routes = new M.RoutesTable($('routes'), $('routes-body'), $('route-filter'), $('routes-count'));
    const tail = new M.LiveTail($('tail-body'), {
      pause: $('tail-pause'), pod: $('tail-pod'), route: $('tail-route'), status: $('tail-status'), count: $('tail-count'),
    });
    const slowest = new M.SlowestList($('slowest-body'));
    const alerts = new M.AlertView($('alerts'), $('alert-list'), $('alerts-count'));
    const buffer = new M.SeriesBuffer();
    buffer.reset(scope, win);
    let charts = null;
    if (typeof window.Chart === 'function') {
      charts = new M.LiveCharts({
        rps: $('chart-rps'), latency: $('chart-latency'), cpu: $('chart-cpu'), memory: $('chart-memory'),
      }, buffer, (a, b) => setRange(a, b));
    } else {
      $('charts').classList.add('no-charts');
    }

    // The scope picker: all, then one option per app and per pod.
    const scopeSelect = $('scope');
    const appGroup = $('scope-apps');
    const podGroup = $('scope-pods');
    const option = (key) => {
      const o = D.el('option', null, key.slice(4));
      o.value = key;
      return { el: o };
    };
    const appOptions = new D.KeyedList(appGroup, option, () => {});
    const podOptions = new D.KeyedList(podGroup, option, () => {});
    function renderScopeOptions(ov) {
      const apps = (ov.apps || []).map((a) => 'app:' + a.app).sort();
      const pods = (ov.pods || []).map((p) => 'pod:' + p.pod).sort();
      // The chosen scope stays selectable while it has no data.
      if (scope.startsWith('app:') && !apps.includes(scope)) apps.push(scope);
      if (scope.startsWith('pod:') && !pods.includes(scope)) pods.push(scope);
      appOptions.render(apps, (k) => k);
      podOptions.render(pods, (k) => k);
      if (scopeSelect.value !== scope) scopeSelect.value = scope;
    }
    scopeSelect.addEventListener('change', () => setScope(scopeSelect.value));

    for (const button of document.querySelectorAll('[data-window]')) {
      button.addEventListener('click', () => setWindow(Number(button.dataset.window)));
    }

    function showChoice() {
      for (const button of document.querySelectorAll('[data-window]')) {
        button.setAttribute('aria-pressed', !range && Number(button.dataset.window) === win ? 'true' : 'false');
      }
      D.setText($('scope-title'), scopeLabel(scope));
      D.setText($('charts-mode'), range || HISTORY_WINDOWS.includes(win) ? 'History' : 'Live');
      D.setHidden($('range-bar'), !range);
      if (range) {
        const day = (s) => new Date(s * 1000).toLocaleDateString([], { month: 'short', day: 'numeric' });
        D.setText($('range-label'), day(range.start) + ' ' + F.clock(range.start * 1000) + ' \u2013 '
          + (day(range.end) !== day(range.start) ? day(range.end) + ' ' : '') + F.clock(range.end * 1000));
      }
      D.setText($('routes-range'), range ? 'over the chosen range (from history)' : '');
      stats.range = range;
      if (latest) renderScopeOptions(latest);
      else if (scopeSelect.value !== scope && scope === 'all') scopeSelect.value = 'all';
      overview.select(scope);
      stats.scope = scope;
      stats.window = win;
    }

    // Charts off screen (scrolled away, or a hidden tab) are drawn when seen again.
    function renderCharts() {
      if (!charts) return;
      if (document.hidden || !D.visibility.visible($('charts'))) { chartsDirty = true; return; }
      chartsDirty = false;
      charts.render();
      $('charts').classList.toggle('is-empty', buffer.length === 0);
      stats.chartPoints = buffer.length;
      stats.chartValues = buffer.cols.p50.filter((v) => v !== null).length;
    }

    function fromHistory() { return range !== null || HISTORY_WINDOWS.includes(win); }

    // A history window or range: its series (and a range's routes) over HTTP.
    function fetchHistory() {
      const ask = ++historyAsk;
      const span = range ? range.end - range.start : win;
      let url = 'api/series?scope=' + encodeURIComponent(scope) + '&window=' + span;
      if (range) url += '&end=' + range.end;
      stats.historyFetches += 1;
      fetch(url, { credentials: 'same-origin', cache: 'no-store' })
        .then((r) => r.json().then((body) => ({ ok: r.ok, body })))
        .then(({ ok, body }) => {
          if (ask !== historyAsk) return;
          if (!ok) { stats.lastError = String(body.error || ''); return; }
          buffer.merge(body);
          renderCharts();
        })
        .catch(() => {});
      if (!range) return;
      let routesUrl = 'api/routes?start=' + range.start + '&end=' + range.end;
      if (scope.startsWith('app:')) routesUrl += '&app=' + encodeURIComponent(scope.slice(4));
      fetch(routesUrl, { credentials: 'same-origin', cache: 'no-store' })
        .then((r) => r.json().then((body) => ({ ok: r.ok, body })))
        .then(({ ok, body }) => {
          if (ask !== historyAsk || !range) return;
          if (!ok) {
            D.setText($('routes-range'), String(body.error || 'history could not be read'));
            return;
          }
          stats.routesRange = body.routes.length;
          routes.render({ now: range.end * 1000, routes: body.routes });
        })
        .catch(() => {});
    }

    function subscribe() {
      awaitingScope = null;
      buffer.reset(scope, range ? range.end - range.start : win);
      buffer.range = range;
      renderCharts();
      clearInterval(historyTimer);
      historyTimer = null;
      if (fromHistory()) {
        clearTimeout(fallbackTimer);
        fetchHistory();
        if (!range) historyTimer = setInterval(fetchHistory, HISTORY_REFRESH_MS);
        return;
      }
      conn.send({ type: 'subscribe', scope, window: win });
      clearTimeout(fallbackTimer);
      fallbackTimer = setTimeout(() => {
        if (buffer.length === 0) fetchSeries();
      }, SERIES_FALLBACK_MS);
    }

    // A server that does not answer subscribe over the socket still serves
    // /api/series; this keeps the charts useful with one.
    function fetchSeries() {
      if (fromHistory()) return;
      if (seriesFetch || !latest || !scopeExists(latest, scope)) return; // an unknown scope is a 404
      const want = { scope, win };
      const url = 'api/series?scope=' + encodeURIComponent(scope) + '&window=' + win;
      seriesFetch = fetch(url, { credentials: 'same-origin', cache: 'no-store' })
        .then((r) => (r.ok ? r.json() : null))
        .then((series) => {
          if (series && buffer.matches(want.scope, want.win)) {
            buffer.merge(series);
            lastSeriesAt = Date.now();
            renderCharts();
          }
        })
        .catch(() => {})
        .finally(() => { seriesFetch = null; });
    }

    function setScope(next) {
      if (!next || next === scope) return;
      scope = next;
      writeHash(scope, win, range);
      showChoice();
      subscribe();
    }

    function setWindow(next) {
      if (!WINDOWS.includes(next) || (next === win && !range)) return;
      win = next;
      leaveRange();
    }

    // Drag-to-zoom: the charts and the routes table show [start, end) from history until "back to live".
    function setRange(start, end) {
      if (!Number.isFinite(start) || !Number.isFinite(end)) return;
      const now = Date.now() / 1000;
      let a = Math.floor(start);
      let b = Math.min(Math.ceil(end), Math.ceil(now));
      if (b - a < MIN_RANGE) a = b - MIN_RANGE;
      range = { start: a, end: b };
      writeHash(scope, win, range);
      showChoice();
      subscribe();
    }

    function leaveRange() {
      range = null;
      stats.routesRange = null;
      writeHash(scope, win, null);
      showChoice();
      subscribe();
      if (latest) routes.render(latest);
    }
    $('range-reset').addEventListener('click', () => leaveRange());

    function renderOverview() {
      overviewDirty = false;
      const ov = latest;
      const parts = stats.parts;
      let mark = performance.now();
      const lap = (name) => {
        const now = performance.now();
        parts[name] = now - mark;
        mark = now;
      };
      totals.render(ov.totals);
      overview.render(ov);
      lap('overview');
      cards.render(ov);
      lap('cards');
      if (!range) routes.render(ov); // a chosen range keeps its own rows
      lap('routes');
      tail.setPods(ov.pods || []);
      tail.render(false);
      lap('tail');
      slowest.render(ov);
      alerts.mark(document);
      renderScopeOptions(ov);
      lap('other');
      D.setText($('updated'), 'updated ' + F.clock(ov.now || Date.now()));
      showCardCount();
      D.setHidden($('overview-empty'), (ov.apps || []).length + (ov.pods || []).length > 0);
    }

    function showCardCount() {
      const total = (latest.pods || []).length;
      D.setHidden($('pods-empty'), total > 0);
      D.setText($('cards-count'), cards.filter ? cards.shown + ' of ' + total + ' pods' : total + (total === 1 ? ' pod' : ' pods'));
    }
    $('card-filter').addEventListener('input', () => {
      cards.setFilter($('card-filter').value.trim().toLowerCase());
      if (latest) showCardCount();
    });

    function record(kind, ms, parseMs) {
      if (kind === 'series') {
        stats.lastSeriesMs = ms;
        if (ms > stats.maxSeriesMs) stats.maxSeriesMs = ms;
        return;
      }
      stats.lastUpdateMs = ms;
      if (ms > stats.maxUpdateMs) stats.maxUpdateMs = ms;
      stats.updateTimes.push(ms);
      stats.parseTimes.push(parseMs);
      if (stats.updateTimes.length > KEEP_TIMINGS) {
        stats.updateTimes.shift();
        stats.parseTimes.shift();
      }
    }

    // info.t0: when the message reached the page; info.parseMs: JSON.parse (in
    // the worker when info.inWorker, so not part of the page's own work).
    function onMessage(msg, info) {
      const t0 = info.t0;
      if (!msg || typeof msg !== 'object') return;
      stats.lastMessageAt = Date.now();
      stats.inWorker = info.inWorker;
      if ((msg.type === 'snapshot' || msg.type === 'update') && msg.data && typeof msg.data === 'object') {
        stats.parts.parse = info.parseMs;
        stats.parts.receive = performance.now() - t0; // copy out of the worker, or the parse here
        stats.bytes = info.bytes;
        latest = msg.data;
        if (msg.type === 'snapshot') stats.snapshots += 1;
        else stats.updates += 1;
        stats.pods = (latest.pods || []).length;
        stats.routes = (latest.routes || []).length;
        tail.ingest(latest.recent);
        stats.tailLength = tail.buffer.length;
        if (document.hidden) {
          overviewDirty = true;
        } else {
          const writes = D.counts.text;
          renderOverview();
          stats.textWrites = D.counts.text - writes;
          const beforeLayout = performance.now();
          void document.body.offsetHeight; // count style and layout in this update's time
          stats.parts.layout = performance.now() - beforeLayout;
        }
        if (awaitingScope === scope && scopeExists(latest, scope)) {
          awaitingScope = null;
          subscribe();
        } else if (Date.now() - lastSeriesAt > 2 * SERIES_FALLBACK_MS && buffer.length > 0) {
          fetchSeries();
        }
        record('update', performance.now() - t0, info.parseMs);
      } else if (msg.type === 'alerts' && msg.data && typeof msg.data === 'object') {
        alerts.render(msg.data);
      } else if (msg.type === 'error') {
        // The server refused our subscribe: most often a pod or app that has
        // not reported yet. Ask again once it shows up in an update.
        stats.lastError = String(msg.error || '');
        awaitingScope = scope;
      } else if (msg.type === 'series' && msg.data && typeof msg.data === 'object') {
        stats.series += 1;
        const s = msg.scope !== undefined ? msg.scope : msg.data.scope;
        const w = msg.window !== undefined ? msg.window : msg.data.window;
        if (!fromHistory() && buffer.matches(s, w)) {
          buffer.merge(msg.data);
          lastSeriesAt = Date.now();
          renderCharts();
        }
        record('series', performance.now() - t0);
      }
    }

    // The connection indicator, with a countdown while waiting to retry.
    const status = $('live-status');
    const statusText = $('live-status-text');
    let countdown = null;
    function showState(state, c) {
      stats.state = state;
      stats.reconnects = c.reconnects;
      status.dataset.state = state;
      document.body.classList.toggle('is-disconnected', state !== 'live');
      clearInterval(countdown);
      countdown = null;
      const paint = () => {
        const left = Math.max(0, Math.ceil((c.retryAt - Date.now()) / 1000));
        if (state === 'live') D.setText(statusText, 'live');
        else if (state === 'connecting') D.setText(statusText, 'connecting\u2026');
        else D.setText(statusText, state + (left > 0 ? ' \u00b7 retry in ' + left + 's' : '\u2026'));
      };
      paint();
      if (state === 'reconnecting' || state === 'offline') countdown = setInterval(paint, 1000);
      status.title = state === 'live' ? 'connected: updates arrive as they happen' : 'click to retry now';
    }
    status.addEventListener('click', () => conn.retryNow());

    D.visibility.watch($('charts'), () => { if (chartsDirty) renderCharts(); });
    document.addEventListener('visibilitychange', () => {
      if (document.hidden) return;
      if (overviewDirty && latest) renderOverview();
      if (chartsDirty) renderCharts();
    });

    const conn = new M.LiveFeed(wsUrl(), {
      onOpen: () => subscribe(),
      onMessage,
      onState: showState,
    }, document.documentElement.dataset.liveWorker);
    // For benchmarks: hand the page a message as if it came from the socket
    // (page_bench --replay times the page apart from a busy server).
    stats.replay = (msg) => onMessage(M.digestMessage(msg), { t0: performance.now(), parseMs: 0, bytes: 0,
      inWorker: stats.inWorker });
    showChoice();
    renderCharts();
    conn.start();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})(window.Mothership = window.Mothership || {});
