// One card per pod, as the article had them: each route with hits, average
// and p95 latency and an alert dot, a memory bar against the container's
// limit, and a load bar per core. Cards are keyed by pod and reused.
(function (M) {
  'use strict';

  const F = M.format;
  const D = M.dom;
  const ROUTES_PER_CARD = 8; // the busiest; the routes table has the rest

  function compareRoutes(a, b) {
    const d = (b.count || 0) - (a.count || 0);
    if (d !== 0) return d;
    return a.route < b.route ? -1 : a.route > b.route ? 1 : 0;
  }

  function byName(a, b) {
    return a.route < b.route ? -1 : a.route > b.route ? 1 : a.method < b.method ? -1 : a.method > b.method ? 1 : 0;
  }

  class PodCards {
    constructor(container, onSelect) {
      this.container = container;
      this.onSelect = onSelect;
      this.filter = '';
      this.shown = 0;
      const draw = (rec, pod) => this.updateCard(rec, pod);
      this.list = new D.KeyedList(container, (key, pod) => {
        const rec = this.createCard(key, pod);
        D.watchRecord(rec, draw);
        return rec;
      }, (rec, pod) => {
        // data-stale is kept current on every card, seen or not: scripts read it.
        const stale = Boolean(pod.stale);
        D.setAttr(rec.el, 'data-stale', stale ? 'true' : 'false');
        rec.el.classList.toggle('is-stale', stale);
        D.drawIfVisible(rec, pod, draw);
      }, D.unwatchRecord);
    }

    createCard(key, pod) {
      const card = D.el('article', 'card');
      card.setAttribute('data-pod', String(pod.pod));
      const head = D.el('header', 'card-head');
      const dot = D.el('span', 'dot');
      const title = D.el('button', 'card-title', String(pod.pod));
      title.type = 'button';
      title.title = 'chart this pod';
      title.addEventListener('click', () => this.onSelect('pod:' + pod.pod));
      // The pod's namespace beside its name, when its sidecar says it (POD_NAMESPACE).
      const ns = D.el('span', 'card-ns');
      ns.title = 'namespace';
      ns.hidden = true;
      const app = D.el('span', 'card-app');
      const stale = D.el('span', 'badge badge-stale', 'stale');
      const dropped = D.el('span', 'badge badge-dropped');
      head.append(dot, title, ns, app, stale, dropped);

      const stats = D.el('div', 'card-stats');
      const stat = (label) => {
        const box = D.el('span', 'stat');
        const val = D.el('b');
        box.append(val, D.el('small', null, label));
        stats.append(box);
        return val;
      };
      const rps = stat('req/s');
      const success = stat('success');
      const p95 = stat('p95');
      const seen = stat('seen');

      const table = D.el('table', 'card-routes');
      const thead = D.el('thead');
      const hr = D.el('tr');
      hr.append(D.el('th', 'dotcol'), D.el('th', 'route', 'route'), D.el('th', 'num', 'hits'),
        D.el('th', 'num', 'avg'), D.el('th', 'num', 'p95'));
      thead.append(hr);
      const tbody = D.el('tbody');
      table.append(thead, tbody);
      const more = D.el('div', 'card-more');
      const empty = D.el('div', 'card-empty', 'no traffic yet');

      const memRow = D.el('div', 'meter');
      const memLabel = D.el('span', 'meter-label', 'memory');
      const memTrack = D.el('div', 'bar');
      const memFill = D.el('div', 'fill');
      memTrack.append(memFill);
      const memVal = D.el('span', 'meter-val');
      memRow.append(memLabel, memTrack, memVal);

      const cpuRow = D.el('div', 'meter cores-row');
      const cpuLabel = D.el('span', 'meter-label', 'cores');
      const cores = D.el('div', 'cores');
      const cpuVal = D.el('span', 'meter-val');
      cpuRow.append(cpuLabel, cores, cpuVal);

      // The body has a fixed size (style.css): a change inside a card then
      // lays out that card alone, not the grid of all cards around it.
      const body = D.el('div', 'card-body');
      body.append(head, stats, table, more, empty, memRow, cpuRow);
      card.append(body);
      const routes = new D.SlotList(tbody, () => this.createRoute(), (rec, r) => this.updateRoute(rec, r));
      return { el: card, dot, ns, app, stale, dropped, rps, success, p95, seen, routes, more, empty, table,
        memFill, memVal, memTrack, cores, coreBars: [], cpuVal };
    }

    createRoute() {
      const tr = D.el('tr');
      const dotTd = D.el('td', 'dotcol');
      const dot = D.el('span', 'dot');
      dotTd.append(dot);
      const routeTd = D.el('td', 'route');
      const method = D.el('span', 'method');
      const path = D.el('span', 'path');
      routeTd.append(method, path);
      const hits = D.el('td', 'num');
      const avg = D.el('td', 'num');
      const p95 = D.el('td', 'num');
      tr.append(dotTd, routeTd, hits, avg, p95);
      return { el: tr, dot, method, path, routeTd, hits, avg, p95 };
    }

    updateRoute(rec, r) {
      D.setText(rec.method, String(r.method || ''));
      D.setText(rec.path, String(r.route));
      D.setText(rec.hits, F.count(r.count));
      D.setText(rec.avg, F.ms(r.avg));
      D.setText(rec.p95, F.ms(r.p95));
      D.setVariant(rec.dot, 'level-', F.latencyLevel(r.p95));
      // A route failing more than 5% of its exchanges is marked; a rare 500 is not.
      rec.el.classList.toggle('has-errors', F.isNum(r.error_rate) && r.error_rate > 0.05);
      D.setAttr(rec.routeTd, 'title', (r.method || '') + ' ' + r.route + (r.errors ? ' \u2013 ' + r.errors + ' errors' : ''));
    }

    updateCore(bar, value) {
      D.setFill(bar.fill, (F.isNum(value) ? value : 0) / 100);
      D.setVariant(bar.fill, 'level-', !F.isNum(value) ? 'none' : value > 90 ? 'bad' : value > 70 ? 'warn' : 'ok');
      D.setAttr(bar.el, 'title', F.percent(value));
    }

    updateCard(rec, pod) {
      const stale = Boolean(pod.stale);
      D.setAttr(rec.el, 'data-stale', stale ? 'true' : 'false');
      rec.el.classList.toggle('is-stale', stale);
      D.setText(rec.app, String(pod.app || ''));
      D.setText(rec.ns, String(pod.namespace || ''));
      D.setHidden(rec.ns, !pod.namespace);
      D.setHidden(rec.stale, !stale);
      const dropped = Number(pod.dropped) || 0;
      D.setHidden(rec.dropped, !(dropped > 0));
      if (dropped > 0) D.setText(rec.dropped, F.count(dropped) + ' dropped');
      D.setText(rec.rps, F.rate(pod.rps));
      D.setText(rec.success, F.ratio(pod.success));
      D.setVariant(rec.success, 'level-', F.successLevel(pod.success));
      D.setText(rec.p95, F.ms(pod.p95));
      D.setVariant(rec.p95, 'level-', F.latencyLevel(pod.p95));
      D.setText(rec.seen, F.ago(pod.seen, this.now));

      // The busiest routes, listed by name: rows that swap places every second
      // as counts jitter cannot be read at a glance.
      const routes = Array.isArray(pod.routes) ? pod.routes : [];
      const top = (routes.length > ROUTES_PER_CARD ? routes.slice().sort(compareRoutes).slice(0, ROUTES_PER_CARD)
        : routes.slice()).sort(byName);
      rec.routes.render(top);
      // A server may send only each pod's busiest routes and say how many it has.
      const known = F.isNum(pod.route_count) ? Math.max(pod.route_count, routes.length) : routes.length;
      const hidden = known - top.length;
      D.setHidden(rec.more, hidden <= 0);
      if (hidden > 0) D.setText(rec.more, '+ ' + hidden + ' more route' + (hidden === 1 ? '' : 's') + ' in the routes table');
      D.setHidden(rec.empty, routes.length > 0);
      D.setHidden(rec.table, routes.length === 0);
      let worst = 'none';
      for (const r of top) {
        const level = F.latencyLevel(r.p95);
        if (level === 'bad' || (level === 'warn' && worst !== 'bad') || (level === 'ok' && worst === 'none')) worst = level;
      }
      D.setVariant(rec.dot, 'level-', stale ? 'none' : worst);

      const limit = F.isNum(pod.memory_limit) && pod.memory_limit > 0 ? pod.memory_limit : null;
      rec.memTrack.classList.toggle('no-limit', limit === null);
      if (limit !== null && F.isNum(pod.memory)) {
        const used = pod.memory / limit;
        D.setWidth(rec.memFill, used);
        D.setVariant(rec.memFill, 'level-', used > 0.9 ? 'bad' : used > 0.75 ? 'warn' : 'ok');
        D.setText(rec.memVal, F.bytes(pod.memory) + ' / ' + F.bytes(limit) + ' (' + Math.round(used * 100) + '%)');
      } else {
        D.setWidth(rec.memFill, 0);
        D.setText(rec.memVal, F.isNum(pod.memory) ? F.bytes(pod.memory) + ' (no limit)' : F.DASH);
      }

      const cores = Array.isArray(pod.cores) ? pod.cores : [];
      while (rec.coreBars.length < cores.length) {
        const el = D.el('div', 'core');
        const fill = D.el('div', 'fill');
        el.append(fill);
        rec.cores.append(el);
        rec.coreBars.push({ el, fill });
      }
      while (rec.coreBars.length > cores.length) rec.coreBars.pop().el.remove();
      for (let i = 0; i < cores.length; i += 1) this.updateCore(rec.coreBars[i], cores[i]);
      D.setText(rec.cpuVal, F.percent(pod.cpu) + (cores.length ? ' \u00b7 ' + cores.length + ' core' + (cores.length === 1 ? '' : 's') : ''));
    }

    // Only pods whose name or app contains `text` (lower case) are shown.
    setFilter(text) {
      this.filter = text;
      if (this.last) this.render(this.last);
    }

    render(overview) {
      this.last = overview;
      this.now = overview.now;
      const f = this.filter;
      const all = overview.pods || [];
      const chosen = f ? all.filter((p) => String(p.pod).toLowerCase().includes(f) || String(p.app).toLowerCase().includes(f))
        : all.slice();
      this.shown = chosen.length;
      const pods = chosen.sort((a, b) => {
        if (a.app !== b.app) return a.app < b.app ? -1 : 1;
        return a.pod < b.pod ? -1 : a.pod > b.pod ? 1 : 0;
      });
      this.list.render(pods, (pod) => pod.pod);
    }
  }

  M.PodCards = PodCards;
})(window.Mothership = window.Mothership || {});
