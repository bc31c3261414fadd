// Formatting for the page: numbers, latencies, sizes, clock times and the
// alert level of a latency. Pure functions: no DOM, no state.
(function (M) {
  'use strict';

  const DASH = '\u2013';

  function isNum(v) {
    return typeof v === 'number' && Number.isFinite(v);
  }

  function rate(v) {
    if (!isNum(v)) return DASH;
    if (v === 0) return '0';
    if (v < 0.1) return v.toFixed(3);
    if (v < 10) return v.toFixed(2);
    if (v < 1000) return v.toFixed(1);
    if (v < 1e6) return (v / 1e3).toFixed(v < 1e4 ? 2 : 1) + 'k';
    return (v / 1e6).toFixed(2) + 'M';
  }

  function ms(v) {
    if (!isNum(v)) return DASH;
    if (v < 1) return v.toFixed(2) + ' ms';
    if (v < 10) return v.toFixed(1) + ' ms';
    if (v < 1000) return Math.round(v) + ' ms';
    if (v < 60000) return (v / 1000).toFixed(v < 10000 ? 2 : 1) + ' s';
    return (v / 60000).toFixed(1) + ' min';
  }

  // A success ratio (0-1) as a percentage that keeps the interesting digits:
  // 99.95% and 100% must not both read "100%".
  function ratio(v) {
    if (!isNum(v)) return DASH;
    if (v >= 1) return '100%';
    const pct = v * 100;
    return (pct >= 99 ? pct.toFixed(2) : pct.toFixed(1)) + '%';
  }

  function percent(v) {
    if (!isNum(v)) return DASH;
    return (v < 10 ? v.toFixed(1) : Math.round(v)) + '%';
  }

  const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  function bytes(v) {
    if (!isNum(v)) return DASH;
    let i = 0;
    while (v >= 1024 && i < UNITS.length - 1) { v /= 1024; i += 1; }
    return (i === 0 || v >= 100 ? Math.round(v) : v.toFixed(1)) + ' ' + UNITS[i];
  }

  function count(v) {
    if (!isNum(v)) return DASH;
    if (v < 10000) return String(Math.round(v));
    if (v < 1e6) return (v / 1e3).toFixed(1) + 'k';
    return (v / 1e6).toFixed(2) + 'M';
  }

  function pad2(n) { return n < 10 ? '0' + n : String(n); }

  // Local wall-clock time of an epoch-ms instant, HH:MM:SS.
  function clock(epochMs) {
    if (!isNum(epochMs)) return DASH;
    const d = new Date(epochMs);
    return pad2(d.getHours()) + ':' + pad2(d.getMinutes()) + ':' + pad2(d.getSeconds());
  }

  function ago(epochMs, nowMs) {
    if (!isNum(epochMs) || !isNum(nowMs)) return DASH;
    const s = Math.max(0, Math.round((nowMs - epochMs) / 1000));
    if (s < 60) return s + 's ago';
    if (s < 3600) return Math.floor(s / 60) + 'm ago';
    return Math.floor(s / 3600) + 'h ago';
  }

  // The article's alert dot: green under 100 ms, yellow to 1 s, red above.
  function latencyLevel(v) {
    if (!isNum(v)) return 'none';
    if (v < 100) return 'ok';
    if (v <= 1000) return 'warn';
    return 'bad';
  }

  // Success ratio level: what makes an app's row turn yellow or red.
  function successLevel(v) {
    if (!isNum(v)) return 'none';
    if (v >= 0.99) return 'ok';
    if (v >= 0.95) return 'warn';
    return 'bad';
  }

  function statusClass(status) {
    return status >= 100 && status <= 599 ? Math.floor(status / 100) + 'xx' : 'none';
  }

  // gRPC status codes by number (grpc/doc/statuscodes.md).
  const GRPC_CODES = ['OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND',
    'ALREADY_EXISTS', 'PERMISSION_DENIED', 'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED',
    'OUT_OF_RANGE', 'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS', 'UNAUTHENTICATED'];

  function grpcName(code) {
    if (!isNum(code)) return DASH;
    return code >= 0 && code < GRPC_CODES.length ? GRPC_CODES[code] : 'code ' + code;
  }

  // gRPC calls by status code ({"0": 6, "5": 3}) as "OK 6 · NOT_FOUND 3", most first, at most
  // `limit` of them in `text` and all in `title`.
  function grpcCodes(codes, limit) {
    if (!codes || typeof codes !== 'object') return { text: '', title: '' };
    const pairs = Object.keys(codes).map((k) => [Number(k), codes[k]]).filter((p) => isNum(p[0]) && isNum(p[1]) && p[1] > 0);
    pairs.sort((a, b) => b[1] - a[1] || a[0] - b[0]);
    const words = pairs.map((p) => grpcName(p[0]) + ' ' + count(p[1]));
    if (!words.length) return { text: DASH, title: 'no gRPC calls in the window' };
    const shown = words.slice(0, limit);
    if (words.length > limit) shown.push('+' + (words.length - limit));
    return { text: shown.join(' \u00b7 '), title: words.join('\n') };
  }

  // Characters that change how text around them reads or that cannot be seen: C0 and C1 controls
  // (tab and newline kept), bidirectional marks, embeddings, overrides and isolates, zero-width
  // spaces, word joiners, the soft hyphen, BOM and line separators. A pod named
  // "zz-\u202Eevil-no-pdf" read "zz-fdp-on-live"; shown escaped, it reads as sent. (Zero-width
  // joiners, which some scripts and emoji need, are left alone.)
  const HIDDEN = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b\u200e\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb]/;
  const HIDDEN_ALL = new RegExp(HIDDEN.source, 'g');

  function escapeHidden(c) {
    return '\\u' + c.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0');
  }

  // Text from traffic as it should be shown: every hidden character written as \uXXXX.
  function visible(text) {
    return HIDDEN.test(text) ? text.replace(HIDDEN_ALL, escapeHidden) : text;
  }

  // Connections relayed as opaque bytes: they have no HTTP status.
  function isOpaque(protocol) {
    return protocol === 'tls' || protocol === 'tcp';
  }

  M.format = {
    DASH, isNum, rate, ms, ratio, percent, bytes, count, clock, ago,
    latencyLevel, successLevel, statusClass, grpcName, grpcCodes, isOpaque, visible,
  };
})(window.Mothership = window.Mothership || {});
