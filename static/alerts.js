// The dashboard's own alerts on the page: the list of what is firing, and the
// alert dot of each app and pod they touch turned into a state (critical or
// warning) with its reason and since when. Fed by the `alerts` message of /ws
// (docs/live-protocol.md); everything from the server is set as text.
(function (M) {
  'use strict';

  const F = M.format;
  const D = M.dom;
  const LEVEL = { critical: 'bad', warning: 'warn' };

  class AlertView {
    constructor(section, list, count) {
      this.section = section;
      this.list = list;
      this.count = count;
      this.health = { firing: [], apps: {}, pods: {} };
      this.marked = new Map(); // dot -> its badge, for the dots marked now
    }

    render(data) {
      this.health = {
        firing: Array.isArray(data.firing) ? data.firing : [],
        apps: data.apps && typeof data.apps === 'object' ? data.apps : {},
        pods: data.pods && typeof data.pods === 'object' ? data.pods : {},
      };
      const firing = this.health.firing;
      D.setHidden(this.section, firing.length === 0);
      D.setText(this.count, firing.length + ' firing');
      const items = firing.map((a) => {
        const li = D.el('li', 'alert-item');
        li.setAttribute('data-severity', String(a.severity));
        const badge = D.el('span', 'badge badge-' + (LEVEL[a.severity] || 'warn'), String(a.severity));
        const name = D.el('b', 'alert-name', String(a.alertname));
        const where = D.el('span', 'alert-where', a.pod ? String(a.pod) + ' (' + String(a.app) + ')' : String(a.app));
        const reason = D.el('span', 'alert-reason', String(a.reason));
        const since = D.el('span', 'alert-since', 'since ' + F.clock(Number(a.since)));
        li.append(badge, name, where, reason, since);
        return li;
      });
      this.list.replaceChildren(...items);
      this.mark(document);
    }

    // Called after every render of the cards and the overview: new rows get their state too.
    mark(root) {
      const { apps, pods } = this.health;
      if (this.marked.size === 0 && Object.keys(apps).length === 0 && Object.keys(pods).length === 0) return;
      const want = new Map();
      for (const row of root.querySelectorAll('[data-row-app]')) {
        const state = apps[row.getAttribute('data-row-app')];
        if (state) want.set(row.querySelector('.dot'), state);
      }
      const podDots = [...root.querySelectorAll('article.card[data-pod]')].map((c) => [c.getAttribute('data-pod'), c.querySelector('.card-head .dot')]);
      for (const row of root.querySelectorAll('[data-row-pod]')) podDots.push([row.getAttribute('data-row-pod'), row.querySelector('.dot')]);
      for (const [pod, dot] of podDots) {
        if (pods[pod]) want.set(dot, pods[pod]);
      }
      for (const [dot, badge] of this.marked) {
        if (!want.has(dot)) {
          dot.classList.remove('health-critical', 'health-warning');
          dot.removeAttribute('title');
          badge.remove();
          this.marked.delete(dot);
        }
      }
      for (const [dot, state] of want) {
        if (!dot) continue;
        const severity = state.state === 'critical' ? 'critical' : 'warning';
        dot.classList.toggle('health-critical', severity === 'critical');
        dot.classList.toggle('health-warning', severity === 'warning');
        const text = severity + ' since ' + F.clock(Number(state.since));
        D.setAttr(dot, 'title', text + ': ' + String(state.reason));
        let badge = this.marked.get(dot);
        if (!badge) {
          badge = D.el('span', 'badge badge-alert');
          dot.after(badge);
          this.marked.set(dot, badge);
        }
        badge.className = 'badge badge-alert badge-' + LEVEL[severity];
        D.setText(badge, text);
        D.setAttr(badge, 'title', String(state.reason));
      }
    }
  }

  M.AlertView = AlertView;
})(window.Mothership = window.Mothership || {});
