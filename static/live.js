// The live feed: the WebSocket to the dashboard, reconnecting with
// exponential backoff (with jitter, so a restarted dashboard is not hit by
// every open tab at once). Where the browser allows, the socket lives in a
// Web Worker started from this same file: receiving and parsing each update
// (megabytes with hundreds of pods) then happens off the page's main thread,
// and the worker drops what the page never shows (each pod's routes beyond
// its busiest, fields no view reads) and packs the trend lines into typed
// arrays before handing a message over. The server sends a fresh
// snapshot on every connection, so nothing is replayed.
(function (scope) {
  'use strict';

  const BASE_DELAY_MS = 500;
  const MAX_DELAY_MS = 10000;
  const OFFLINE_AFTER = 4; // failed attempts in a row before saying "offline"
  const ROUTES_PER_POD = 8; // what a pod card shows; the routes table has every route

  function backoffDelay(attempt) {
    const raw = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * Math.pow(2, attempt));
    return Math.round(raw * (0.8 + Math.random() * 0.4));
  }

  // What the page reads of a pod's route (its card) and of an app's (the routes table).
  const POD_ROUTE_FIELDS = ['route', 'method', 'count', 'avg', 'p95', 'errors', 'error_rate'];
  const ROUTE_FIELDS = ['app', 'route', 'method', 'protocol', 'rps', 'p50', 'p95', 'p99', 'errors', 'error_rate',
    'grpc', 'last_seen'];

  function pick(item, fields) {
    const out = {};
    for (const name of fields) if (name in item) out[name] = item[name];
    return out;
  }

  // Trend lines (numbers or null) become Float64Arrays, NaN for null: a typed
  // array crosses to the page as one block of memory, not number by number.
  function packTrend(item) {
    const trend = item.trend;
    if (!trend || typeof trend !== 'object') return;
    for (const key of Object.keys(trend)) {
      const values = trend[key];
      if (Array.isArray(values)) trend[key] = Float64Array.from(values, (v) => (typeof v === 'number' ? v : NaN));
    }
  }

  // Keeps each pod's busiest routes only, and says how many it had; keeps
  // only the fields the page reads, so that handing a message over (and the
  // garbage it leaves) costs the page as little as it can.
  function digest(msg) {
    if (!msg || (msg.type !== 'snapshot' && msg.type !== 'update') || !msg.data) return msg;
    const data = msg.data;
    for (const pod of Array.isArray(data.pods) ? data.pods : []) {
      if (!pod || typeof pod !== 'object') continue;
      packTrend(pod);
      const routes = pod.routes;
      if (!Array.isArray(routes)) continue;
      if (routes.length > ROUTES_PER_POD) {
        if (typeof pod.route_count !== 'number') pod.route_count = routes.length;
        routes.sort((a, b) => (b.count || 0) - (a.count || 0) || (a.route < b.route ? -1 : a.route > b.route ? 1 : 0));
        routes.length = ROUTES_PER_POD;
      }
      pod.routes = routes.map((r) => pick(r, POD_ROUTE_FIELDS));
    }
    for (const app of Array.isArray(data.apps) ? data.apps : []) if (app && typeof app === 'object') packTrend(app);
    if (Array.isArray(data.routes)) data.routes = data.routes.map((r) => pick(r, ROUTE_FIELDS));
    return msg;
  }

  // The socket and its reconnects. No DOM: it runs in a worker or a page.
  // handlers: onOpen(), onText(text), onState(state, connection)
  // state: 'connecting' | 'live' | 'reconnecting' | 'offline'
  class LiveConnection {
    constructor(url, handlers) {
      this.url = url;
      this.handlers = handlers;
      this.ws = null;
      this.state = 'connecting';
      this.failures = 0; // attempts since the page was last live
      this.reconnects = 0; // times live again after a loss
      this.everLive = false;
      this.retryAt = 0;
      this.timer = null;
    }

    start() {
      this.connect();
    }

    setState(state) {
      this.state = state;
      this.handlers.onState(state, this);
    }

    connect() {
      this.timer = null;
      let ws;
      try {
        ws = new WebSocket(this.url);
      } catch (err) {
        this.lost();
        return;
      }
      this.ws = ws;
      ws.onopen = () => this.handlers.onOpen();
      // Live from the first message (the snapshot), not from the handshake: a
      // server that accepts and then drops the socket keeps backing off.
      ws.onmessage = (event) => {
        if (this.state !== 'live') {
          if (this.everLive) this.reconnects += 1;
          this.everLive = true;
          this.failures = 0;
          this.setState('live');
        }
        if (typeof event.data === 'string') this.handlers.onText(event.data);
      };
      ws.onclose = () => {
        if (this.ws === ws) this.lost();
      };
      ws.onerror = () => {}; // always followed by close
    }

    lost() {
      this.ws = null;
      this.failures += 1;
      const delay = backoffDelay(this.failures - 1);
      this.retryAt = Date.now() + delay;
      this.timer = setTimeout(() => this.connect(), delay);
      this.setState(this.failures > OFFLINE_AFTER || scope.navigator.onLine === false ? 'offline' : 'reconnecting');
    }

    // The network came back, the tab shows again or the user asked: skip the wait.
    retryNow() {
      if (this.timer === null) return;
      clearTimeout(this.timer);
      this.connect();
    }

    send(message) {
      if (this.ws && this.ws.readyState === WebSocket.OPEN) {
        this.ws.send(JSON.stringify(message));
        return true;
      }
      return false;
    }
  }

  function parse(text) {
    const t0 = performance.now();
    let msg = null;
    try {
      msg = digest(JSON.parse(text));
    } catch (err) {
      msg = null;
    }
    return { msg, parseMs: performance.now() - t0, bytes: text.length };
  }

  // --- in the worker: the socket, parse and digest; the page gets objects ---
  if (typeof WorkerGlobalScope !== 'undefined' && scope instanceof WorkerGlobalScope) {
    let conn = null;
    const stateOf = (c) => ({ kind: 'state', state: c.state, reconnects: c.reconnects, retryAt: c.retryAt });
    scope.onmessage = (event) => {
      const order = event.data || {};
      if (order.kind === 'start' && conn === null) {
        conn = new LiveConnection(order.url, {
          onOpen: () => scope.postMessage({ kind: 'open' }),
          onText: (text) => {
            const parsed = parse(text);
            if (parsed.msg) scope.postMessage({ kind: 'message', msg: parsed.msg, parseMs: parsed.parseMs, bytes: parsed.bytes });
          },
          onState: (state, c) => scope.postMessage(stateOf(c)),
        });
        conn.start();
      } else if (order.kind === 'send' && conn) {
        conn.send(order.message);
      } else if (order.kind === 'retry' && conn) {
        conn.retryNow();
      }
    };
    return;
  }

  // --- in the page -----------------------------------------------------------
  const M = scope.Mothership = scope.Mothership || {};

  // What the page talks to: the same calls whether the socket is in a worker
  // (workerUrl given and allowed) or, as a fallback, on the main thread.
  // handlers: onOpen(), onMessage(msg, info {t0, parseMs, bytes, inWorker}), onState(state, {reconnects, retryAt})
  class LiveFeed {
    constructor(url, handlers, workerUrl) {
      this.url = url;
      this.handlers = handlers;
      this.workerUrl = workerUrl || '';
      this.worker = null;
      this.conn = null;
      scope.addEventListener('online', () => this.retryNow());
      document.addEventListener('visibilitychange', () => {
        if (!document.hidden) this.retryNow();
      });
    }

    get inWorker() { return this.worker !== null; }

    start() {
      if (this.workerUrl && typeof Worker === 'function') {
        try {
          this.startWorker();
          return;
        } catch (err) {
          this.worker = null;
        }
      }
      this.startHere();
    }

    startWorker() {
      const worker = new Worker(this.workerUrl);
      this.worker = worker;
      worker.onmessage = (event) => {
        const t0 = performance.now(); // the copy out of the worker counts as the page's work
        const note = event.data;
        if (note.kind === 'message') {
          this.handlers.onMessage(note.msg, { t0, parseMs: note.parseMs, bytes: note.bytes, inWorker: true });
        } else if (note.kind === 'state') {
          this.handlers.onState(note.state, note);
        } else if (note.kind === 'open') {
          this.handlers.onOpen();
        }
      };
      // A worker that cannot start (blocked, broken) leaves the socket to the page.
      worker.onerror = (event) => {
        if (event && event.preventDefault) event.preventDefault();
        if (this.worker !== worker) return;
        worker.terminate();
        this.worker = null;
        this.startHere();
      };
      worker.postMessage({ kind: 'start', url: this.url });
    }

    startHere() {
      if (this.conn) return;
      this.conn = new LiveConnection(this.url, {
        onOpen: () => this.handlers.onOpen(),
        onText: (text) => {
          const t0 = performance.now();
          const parsed = parse(text);
          if (parsed.msg) {
            this.handlers.onMessage(parsed.msg, { t0, parseMs: parsed.parseMs, bytes: parsed.bytes, inWorker: false });
          }
        },
        onState: (state, c) => this.handlers.onState(state, c),
      });
      this.conn.start();
    }

    send(message) {
      if (this.worker) this.worker.postMessage({ kind: 'send', message });
      else if (this.conn) this.conn.send(message);
    }

    retryNow() {
      if (this.worker) this.worker.postMessage({ kind: 'retry' });
      else if (this.conn) this.conn.retryNow();
    }
  }

  M.LiveFeed = LiveFeed;
  M.LiveConnection = LiveConnection;
  M.backoffDelay = backoffDelay;
  M.digestMessage = digest;
})(self);
