// The routes table: every app's routes with rate, latency percentiles and
// errors, sortable by a click on a column and filtered by text. Only the top
// rows are in the DOM, which keeps an update cheap with hundreds of routes.
(function (M) {
  'use strict';

  const F = M.format;
  const D = M.dom;
  const MAX_ROWS = 100;

  const NUMERIC = new Set(['rps', 'avg', 'p50', 'p95', 'p99', 'errors', 'error_rate', 'count']);

  function num(v) { return F.isNum(v) ? v : -1; }

  class RoutesTable {
    constructor(table, body, filterInput, countLabel) {
      this.table = table;
      this.filterInput = filterInput;
      this.countLabel = countLabel;
      this.sortKey = 'rps';
      this.sortDesc = true;
      this.filter = '';
      const draw = (rec, r) => this.updateRow(rec, r);
      // Rows by rank: re-sorting moves texts, not nodes.
      this.list = new D.SlotList(body, () => {
        const rec = this.createRow();
        D.watchRecord(rec, draw);
        return rec;
      }, (rec, r) => D.drawIfVisible(rec, r, draw), D.unwatchRecord);
      for (const th of table.querySelectorAll('[data-sort]')) {
        th.tabIndex = 0;
        const pick = () => this.sortBy(th.dataset.sort);
        th.addEventListener('click', pick);
        th.addEventListener('keydown', (event) => {
          if (event.key === 'Enter' || event.key === ' ') { event.preventDefault(); pick(); }
        });
      }
      filterInput.addEventListener('input', () => {
        this.filter = filterInput.value.trim().toLowerCase();
        if (this.last) this.render(this.last);
      });
      this.showSort();
    }

    sortBy(key) {
      if (this.sortKey === key) this.sortDesc = !this.sortDesc;
      else {
        this.sortKey = key;
        this.sortDesc = NUMERIC.has(key);
      }
      this.showSort();
      if (this.last) this.render(this.last);
    }

    showSort() {
      for (const th of this.table.querySelectorAll('[data-sort]')) {
        const on = th.dataset.sort === this.sortKey;
        th.setAttribute('aria-sort', on ? (this.sortDesc ? 'descending' : 'ascending') : 'none');
      }
    }

    createRow() {
      const tr = D.el('div', 'drow');
      const cells = {};
      for (const name of ['app', 'method', 'protocol', 'route', 'rps', 'p50', 'p95', 'p99', 'errors', 'error_rate', 'grpc',
        'last_seen']) {
        const td = D.el('span', NUMERIC.has(name) || name === 'last_seen' ? 'dc num col-' + name : 'dc col-' + name);
        cells[name] = td;
        tr.append(td);
      }
      const dot = D.el('span', 'dot');
      const text = D.el('span', 'path');
      cells.route.append(dot, text);
      return { el: tr, cells, dot, text };
    }

    updateRow(rec, r) {
      const c = rec.cells;
      D.setText(c.app, String(r.app || ''));
      D.setText(c.method, String(r.method || ''));
      D.setText(c.protocol, String(r.protocol || ''));
      const codes = F.grpcCodes(r.grpc, 2);
      D.setText(c.grpc, codes.text);
      D.setAttr(c.grpc, 'title', codes.title);
      D.setVariant(c.grpc, 'level-', r.grpc && Object.keys(r.grpc).some((k) => k !== '0') ? 'warn' : 'none');
      D.setText(rec.text, String(r.route));
      D.setAttr(c.route, 'title', String(r.route));
      D.setVariant(rec.dot, 'level-', F.latencyLevel(r.p95));
      D.setText(c.rps, F.rate(r.rps));
      D.setText(c.p50, F.ms(r.p50));
      D.setText(c.p95, F.ms(r.p95));
      D.setVariant(c.p95, 'level-', F.latencyLevel(r.p95));
      D.setText(c.p99, F.ms(r.p99));
      D.setVariant(c.p99, 'level-', F.latencyLevel(r.p99));
      D.setText(c.errors, F.count(r.errors || 0));
      D.setVariant(c.errors, 'level-', (r.errors || 0) > 0 ? 'bad' : 'none');
      D.setText(c.error_rate, F.isNum(r.error_rate) ? (r.error_rate * 100).toFixed(r.error_rate < 0.1 ? 2 : 1) + '%' : F.DASH);
      D.setText(c.last_seen, F.ago(r.last_seen, this.now));
    }

    render(overview) {
      this.last = overview;
      this.now = overview.now;
      let rows = Array.isArray(overview.routes) ? overview.routes : [];
      if (this.filter) {
        const f = this.filter;
        rows = rows.filter((r) => String(r.route).toLowerCase().includes(f) || String(r.app).toLowerCase().includes(f)
          || String(r.method).toLowerCase() === f || String(r.protocol || '').toLowerCase().includes(f));
      } else {
        rows = rows.slice();
      }
      const key = this.sortKey;
      const sign = this.sortDesc ? -1 : 1;
      if (NUMERIC.has(key) || key === 'last_seen') {
        rows.sort((a, b) => sign * (num(a[key]) - num(b[key])) || (a.route < b.route ? -1 : a.route > b.route ? 1 : 0));
      } else {
        rows.sort((a, b) => {
          const x = String(a[key]);
          const y = String(b[key]);
          return sign * (x < y ? -1 : x > y ? 1 : 0);
        });
      }
      const total = rows.length;
      if (rows.length > MAX_ROWS) rows.length = MAX_ROWS;
      this.list.render(rows);
      D.setText(this.countLabel, total > MAX_ROWS ? 'top ' + MAX_ROWS + ' of ' + total : total + (total === 1 ? ' route' : ' routes'));
    }
  }

  M.RoutesTable = RoutesTable;
})(window.Mothership = window.Mothership || {});
