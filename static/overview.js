// The overview: the header's fleet totals, and one row per app followed by
// its pods (requests/s, success, p95, CPU and memory, each with its trend).
// Stale pods are greyed; a click on a row points the charts at that scope.
(function (M) {
  'use strict';

  const F = M.format;
  const D = M.dom;

  function byName(key) {
    return (a, b) => (a[key] < b[key] ? -1 : a[key] > b[key] ? 1 : 0);
  }

  function worst(levels) {
    if (levels.includes('bad')) return 'bad';
    if (levels.includes('warn')) return 'warn';
    if (levels.includes('ok')) return 'ok';
    return 'none';
  }

  // The header strip: fleet-wide numbers.
  class Totals {
    constructor(root) {
      this.fields = {};
      for (const node of root.querySelectorAll('[data-total]')) this.fields[node.dataset.total] = node;
    }

    render(totals) {
      const t = totals || {};
      const f = this.fields;
      if (f.rps) D.setText(f.rps, F.rate(t.rps));
      if (f.success) {
        D.setText(f.success, F.ratio(t.success));
        D.setVariant(f.success, 'level-', F.successLevel(t.success));
      }
      if (f.p95) {
        D.setText(f.p95, F.ms(t.p95));
        D.setVariant(f.p95, 'level-', F.latencyLevel(t.p95));
      }
      if (f.p99) {
        D.setText(f.p99, F.ms(t.p99));
        D.setVariant(f.p99, 'level-', F.latencyLevel(t.p99));
      }
      if (f.apps) D.setText(f.apps, F.count(t.apps));
      if (f.pods) D.setText(f.pods, F.count(t.pods));
      if (f.dropped) {
        D.setText(f.dropped, F.count(t.dropped || 0));
        D.setVariant(f.dropped, 'level-', t.dropped > 0 ? 'warn' : 'none');
      }
    }
  }

  function metricCell(variant) {
    const td = D.el('span', 'dc num metric');
    const val = D.el('span', 'val');
    const spark = new M.Sparkline(variant);
    td.append(val, spark.el);
    return { td, val, spark };
  }

  class OverviewTable {
    constructor(tbody, onSelect) {
      this.tbody = tbody;
      this.onSelect = onSelect;
      this.collapsed = new Set();
      this.selected = 'all';
      const draw = (rec, item) => this.updateRow(rec, item);
      this.list = new D.KeyedList(tbody, (key, item) => {
        const rec = this.createRow(key, item);
        D.watchRecord(rec, draw);
        return rec;
      }, (rec, item) => D.drawIfVisible(rec, item, draw), D.unwatchRecord);
    }

    createRow(key, item) {
      const tr = D.el('div', 'drow ov-row ov-' + item.kind);
      const nameTd = D.el('span', 'dc name');
      const caret = D.el('button', 'caret');
      caret.type = 'button';
      if (item.kind === 'app') {
        caret.title = 'show or hide pods';
        caret.addEventListener('click', (event) => {
          event.stopPropagation();
          const app = rec.name;
          if (this.collapsed.has(app)) this.collapsed.delete(app);
          else this.collapsed.add(app);
          if (this.last) this.render(this.last);
        });
      } else {
        caret.disabled = true;
        caret.tabIndex = -1;
      }
      const dot = D.el('span', 'dot');
      const name = D.el('span', 'label');
      const sub = D.el('span', 'sub');
      const stale = D.el('span', 'badge badge-stale', 'stale');
      const dropped = D.el('span', 'badge badge-dropped');
      nameTd.append(caret, dot, name, sub, stale, dropped);
      const rps = metricCell('rps');
      const success = D.el('span', 'dc num success');
      const p95 = metricCell('p95');
      const cpu = metricCell('cpu');
      const mem = metricCell('memory');
      tr.append(nameTd, rps.td, success, p95.td, cpu.td, mem.td);
      const rec = { el: tr, kind: item.kind, name: '', scope: key, caret, dot, label: name, sub, stale, dropped,
        rps, success, p95, cpu, mem };
      tr.addEventListener('click', () => this.onSelect(rec.scope));
      tr.tabIndex = 0; // rows are chosen with the keyboard too
      tr.addEventListener('keydown', (event) => {
        if (event.key === 'Enter' || event.key === ' ') {
          event.preventDefault();
          this.onSelect(rec.scope);
        }
      });
      return rec;
    }

    updateRow(rec, item) {
      const d = item.data;
      const name = item.kind === 'app' ? d.app : d.pod;
      rec.name = name;
      D.setText(rec.label, String(name));
      D.setAttr(rec.el, 'title', item.kind === 'app' ? 'app ' + name : 'pod ' + name);
      if (item.kind === 'app') {
        const n = Array.isArray(d.pods) ? d.pods.length : 0;
        D.setText(rec.sub, n + (n === 1 ? ' pod' : ' pods'));
        D.setText(rec.caret, this.collapsed.has(name) ? '\u25b8' : '\u25be');
        D.setAttr(rec.el, 'data-row-app', String(name));
      } else {
        D.setText(rec.sub, '');
        D.setAttr(rec.el, 'data-row-pod', String(name));
      }
      const stale = Boolean(d.stale);
      rec.el.classList.toggle('is-stale', stale);
      D.setHidden(rec.stale, !stale);
      const dropped = Number(d.dropped) || 0;
      D.setHidden(rec.dropped, !(dropped > 0));
      if (dropped > 0) D.setText(rec.dropped, F.count(dropped) + ' dropped');
      rec.el.classList.toggle('is-selected', rec.scope === this.selected);

      const trend = d.trend || {};
      D.setText(rec.rps.val, F.rate(d.rps));
      rec.rps.spark.update(trend.rps, null);
      D.setText(rec.success, F.ratio(d.success));
      D.setVariant(rec.success, 'level-', F.successLevel(d.success));
      D.setText(rec.p95.val, F.ms(d.p95));
      D.setVariant(rec.p95.val, 'level-', F.latencyLevel(d.p95));
      rec.p95.spark.update(trend.p95, null);
      D.setText(rec.cpu.val, F.percent(d.cpu));
      rec.cpu.spark.update(trend.cpu, 100);
      const limit = F.isNum(d.memory_limit) && d.memory_limit > 0 ? d.memory_limit : null;
      D.setText(rec.mem.val, limit && F.isNum(d.memory) ? F.bytes(d.memory) + ' \u00b7 ' + Math.round((d.memory / limit) * 100) + '%'
        : F.bytes(d.memory));
      D.setAttr(rec.mem.val, 'title', limit ? 'limit ' + F.bytes(limit) : 'no memory limit known');
      D.setVariant(rec.mem.val, 'level-', limit && d.memory / limit > 0.9 ? 'bad' : limit && d.memory / limit > 0.75 ? 'warn' : 'none');
      rec.mem.spark.update(trend.memory, limit, true);
      D.setVariant(rec.dot, 'level-', stale ? 'none' : worst([F.successLevel(d.success), F.latencyLevel(d.p95)]));
    }

    render(overview) {
      this.last = overview;
      const apps = (overview.apps || []).slice().sort(byName('app'));
      const podsByApp = new Map();
      for (const pod of overview.pods || []) {
        const list = podsByApp.get(pod.app);
        if (list) list.push(pod);
        else podsByApp.set(pod.app, [pod]);
      }
      const items = [];
      const known = new Set();
      for (const app of apps) {
        known.add(app.app);
        items.push({ kind: 'app', key: 'app:' + app.app, data: app });
        if (this.collapsed.has(app.app)) continue;
        const pods = (podsByApp.get(app.app) || []).sort(byName('pod'));
        for (const pod of pods) items.push({ kind: 'pod', key: 'pod:' + pod.pod, data: pod });
      }
      // Pods whose app is missing from `apps` still show, on their own.
      for (const [app, pods] of podsByApp) {
        if (known.has(app)) continue;
        for (const pod of pods.sort(byName('pod'))) items.push({ kind: 'pod', key: 'pod:' + pod.pod, data: pod });
      }
      this.list.render(items, (item) => item.key);
    }

    select(scope) {
      this.selected = scope;
      for (const rec of this.list.records.values()) rec.el.classList.toggle('is-selected', rec.scope === scope);
    }
  }

  M.Totals = Totals;
  M.OverviewTable = OverviewTable;
})(window.Mothership = window.Mothership || {});
