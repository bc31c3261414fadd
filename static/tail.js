// The live tail of recent exchanges, newest first by start time (pausable,
// filtered by pod, route or status) and the list of the slowest exchanges.
// Samples arrive as the overview's `recent` list; duplicates across updates
// are dropped by a key, and the buffer is capped so a tab left open for
// hours stays small.
(function (M) {
  'use strict';

  const F = M.format;
  const D = M.dom;
  const MAX_BUFFER = 500; // kept for the filters and for browsing while paused
  // Rows in the DOM. Live, each update may replace them all, so only about a
  // screenful is kept; paused, nothing churns and the whole buffer can show.
  const LIVE_ROWS = 25;
  const PAUSED_ROWS = 200;

  function sampleKey(s) {
    const status = s.response ? s.response.status : 0;
    return s.pod + '\u0000' + s.started + '\u0000' + s.method + '\u0000' + s.endpoint + '\u0000' + s.time + '\u0000' + status;
  }

  function statusOf(s) {
    return s.response && F.isNum(s.response.status) ? s.response.status : 0;
  }

  function isFailure(s) {
    return statusOf(s) >= 500 || ['upstream_unavailable', 'upstream_timeout', 'upstream_reset'].includes(s.error);
  }

  function matchesStatus(s, wanted) {
    if (!wanted) return true;
    if (wanted === 'failures') return isFailure(s);
    return F.statusClass(statusOf(s)) === wanted;
  }

  // A row for one exchange, shared by the tail and the slowest list.
  function createSampleRow(withBar) {
    const tr = D.el('div', 'drow');
    const when = D.el('span', 'dc col-when');
    const pod = D.el('span', 'dc col-pod');
    const method = D.el('span', 'dc col-method');
    const protocol = D.el('span', 'dc col-protocol');
    const path = D.el('span', 'dc col-path');
    const status = D.el('span', 'dc num col-status');
    const time = D.el('span', 'dc num col-time');
    const timeText = D.el('span');
    time.append(timeText);
    let bar = null;
    if (withBar) {
      const track = D.el('span', 'inline-track');
      bar = D.el('span', 'inline-bar');
      track.append(bar);
      time.prepend(track);
    }
    const extra = D.el('span', 'dc col-extra');
    tr.append(when, pod, method, protocol, path, status, time, extra);
    return { el: tr, when, pod, method, protocol, path, status, timeText, bar, extra };
  }

  function updateSampleRow(rec, s, now) {
    D.setText(rec.when, now ? F.ago(s.started, now) : F.clock(s.started));
    D.setAttr(rec.when, 'title', new Date(s.started).toISOString());
    D.setText(rec.pod, String(s.pod));
    D.setText(rec.method, String(s.method || ''));
    D.setText(rec.path, String(s.endpoint));
    D.setAttr(rec.path, 'title', 'route ' + String(s.route));
    D.setText(rec.protocol, String(s.protocol || ''));
    const status = statusOf(s);
    const grpc = s.protocol === 'grpc';
    // A gRPC call shows its code's name (coloured by the HTTP status it maps to); an opaque
    // connection has no status at all.
    let text = status ? String(status) : F.DASH;
    let title = status ? 'HTTP ' + status : 'no response';
    if (grpc && F.isNum(s.grpc_status)) {
      text = F.grpcName(s.grpc_status);
      title = 'gRPC ' + s.grpc_status + ' ' + text + (status ? ' (HTTP ' + status + ')' : '');
    } else if (F.isOpaque(s.protocol)) {
      title = 'a connection relayed as opaque bytes: no status';
    }
    D.setText(rec.status, text);
    D.setAttr(rec.status, 'title', title);
    D.setVariant(rec.status, 'st-', F.isOpaque(s.protocol) && !isFailure(s) ? 'conn' : F.statusClass(status));
    D.setText(rec.timeText, F.ms(s.time));
    D.setVariant(rec.timeText, 'level-', F.latencyLevel(s.time));
    const bits = [];
    if (s.error) bits.push(String(s.error));
    if (grpc && s.grpc_message) bits.push(String(s.grpc_message));
    if (s.alpn) bits.push('alpn ' + String(s.alpn));
    if (s.untracked) bits.push('untracked');
    if (F.isNum(s.bytes_out) && s.bytes_out > 0) bits.push(F.bytes(s.bytes_out));
    if (s.probe) bits.push('probe');
    D.setText(rec.extra, bits.join(' \u00b7 '));
    rec.el.classList.toggle('is-failure', isFailure(s));
  }

  class LiveTail {
    constructor(tbody, controls) {
      this.controls = controls;
      this.buffer = [];
      this.keys = new Set();
      this.paused = false;
      this.unseen = 0;
      this.podFilter = '';
      this.routeFilter = '';
      this.statusFilter = '';
      // Rows by position: each update's newest exchanges rewrite the rows' text
      // rather than adding and removing nodes.
      this.list = new D.SlotList(tbody, () => createSampleRow(false), (rec, s) => updateSampleRow(rec, s, null));
      controls.pod.replaceChildren();
      this.podOptions = new D.KeyedList(controls.pod, (key) => {
        const option = D.el('option', null, key === '' ? 'all pods' : key);
        option.value = key;
        return { el: option };
      }, () => {});
      controls.pause.addEventListener('click', () => this.setPaused(!this.paused));
      controls.pod.addEventListener('change', () => { this.podFilter = controls.pod.value; this.render(true); });
      controls.route.addEventListener('input', () => {
        this.routeFilter = controls.route.value.trim().toLowerCase();
        this.render(true);
      });
      controls.status.addEventListener('change', () => { this.statusFilter = controls.status.value; this.render(true); });
    }

    setPaused(paused) {
      this.paused = paused;
      this.controls.pause.setAttribute('aria-pressed', paused ? 'true' : 'false');
      D.setText(this.controls.pause, paused ? 'resume' : 'pause');
      this.render(true);
    }

    ingest(recent) {
      if (!Array.isArray(recent)) return;
      for (const s of recent) {
        if (!s || typeof s !== 'object') continue;
        const key = sampleKey(s);
        if (this.keys.has(key)) continue;
        this.keys.add(key);
        s.__key = key;
        this.insert(s);
        if (this.paused) this.unseen += 1;
      }
      if (this.buffer.length > MAX_BUFFER) {
        for (const old of this.buffer.splice(0, this.buffer.length - MAX_BUFFER)) this.keys.delete(old.__key);
      }
    }

    // Kept in order of `started`: sidecars report in batches, so arrival
    // order interleaves pods by seconds. Most samples are the newest: the
    // search from the end is short.
    insert(s) {
      const t = F.isNum(s.started) ? s.started : 0;
      const b = this.buffer;
      let i = b.length;
      while (i > 0 && (F.isNum(b[i - 1].started) ? b[i - 1].started : 0) > t) i -= 1;
      if (i === b.length) b.push(s);
      else b.splice(i, 0, s);
    }

    setPods(pods) {
      // "" (all pods) first; a chosen pod stays listed after it has gone.
      const names = pods.map((p) => String(p.pod)).sort();
      if (this.podFilter && !names.includes(this.podFilter)) names.push(this.podFilter);
      this.podOptions.render([''].concat(names), (n) => n);
      if (this.controls.pod.value !== this.podFilter) this.controls.pod.value = this.podFilter;
    }

    render(force) {
      if (this.paused && !force) {
        D.setText(this.controls.count, this.unseen + ' new while paused');
        return;
      }
      if (!this.paused) this.unseen = 0;
      const rows = [];
      const limit = this.paused ? PAUSED_ROWS : LIVE_ROWS;
      for (let i = this.buffer.length - 1; i >= 0 && rows.length < limit; i -= 1) {
        const s = this.buffer[i];
        if (this.podFilter && s.pod !== this.podFilter) continue;
        if (!matchesStatus(s, this.statusFilter)) continue;
        if (this.routeFilter) {
          const f = this.routeFilter;
          if (!String(s.endpoint).toLowerCase().includes(f) && !String(s.route).toLowerCase().includes(f)
            && String(s.protocol || '').toLowerCase() !== f) continue;
        }
        rows.push(s);
      }
      if (!this.paused || force) this.list.render(rows);
      D.setText(this.controls.count, this.paused ? this.unseen + ' new while paused' : rows.length + ' shown');
    }
  }

  class SlowestList {
    constructor(tbody) {
      this.list = new D.SlotList(tbody, () => createSampleRow(true), (rec, s) => {
        updateSampleRow(rec, s, this.now);
        D.setWidth(rec.bar, this.max > 0 ? s.time / this.max : 0);
      });
    }

    render(overview) {
      const rows = Array.isArray(overview.slowest) ? overview.slowest.slice(0, 20) : [];
      this.now = overview.now;
      this.max = 0;
      for (const s of rows) if (F.isNum(s.time) && s.time > this.max) this.max = s.time;
      this.list.render(rows);
    }
  }

  M.LiveTail = LiveTail;
  M.SlowestList = SlowestList;
})(window.Mothership = window.Mothership || {});
