// A small SVG trend line for a row of the overview: one path for the line and
// one for the area under it; gaps (null) break the line. Redraws only when
// the numbers changed, since a trend moves once per 5 s point.
(function (M) {
  'use strict';

  const SVGNS = 'http://www.w3.org/2000/svg';
  const W = 100;
  const H = 24;

  // Gaps are null, or NaN in a Float64Array (as the live feed sends them).
  function sameValues(a, b) {
    if (!a || !b || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i += 1) if (a[i] !== b[i] && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) return false;
    return true;
  }

  class Sparkline {
    constructor(variant) {
      this.el = document.createElementNS(SVGNS, 'svg');
      this.el.setAttribute('class', 'spark spark-' + variant);
      this.el.setAttribute('viewBox', '0 0 ' + W + ' ' + H);
      this.el.setAttribute('preserveAspectRatio', 'none');
      this.el.setAttribute('aria-hidden', 'true');
      this.area = document.createElementNS(SVGNS, 'path');
      this.area.setAttribute('class', 'spark-area');
      this.line = document.createElementNS(SVGNS, 'path');
      this.line.setAttribute('class', 'spark-line');
      this.el.append(this.area, this.line);
      this.values = null;
      this.ceiling = null;
    }

    // values: numbers or gaps (null, NaN), oldest first. ceiling: the least top (e.g. a
    // memory limit or 100 % CPU) so rows compare; else the line's own max.
    // fromMin: scale from the line's own minimum, for values (memory with no
    // limit) whose movement is small next to their size.
    update(values, ceiling, fromMin) {
      const top = Number.isFinite(ceiling) && ceiling > 0 ? ceiling : null;
      if (sameValues(values, this.values) && top === this.ceiling) return;
      this.values = values ? values.slice() : null;
      this.ceiling = top;
      const n = values ? values.length : 0;
      // The ceiling is a floor for the top: a pod above its CPU share still fits.
      let max = top || 0;
      let min = Infinity;
      for (let i = 0; i < n; i += 1) {
        const v = values[i];
        if (typeof v !== 'number' || !Number.isFinite(v)) continue;
        if (v > max) max = v;
        if (v < min) min = v;
      }
      const floor = fromMin && top === null && min < max ? min - (max - min) * 0.15 : 0;
      if (n < 2 || max <= floor) {
        this.line.setAttribute('d', n ? 'M0 ' + (H - 1) + 'H' + W : '');
        this.area.setAttribute('d', '');
        return;
      }
      const dx = W / (n - 1);
      const scale = (H - 2) / (max - floor);
      let line = '';
      let area = '';
      let runStart = -1;
      let prevX = 0;
      for (let i = 0; i <= n; i += 1) {
        const v = i < n ? values[i] : null;
        if (typeof v === 'number' && Number.isFinite(v)) {
          const x = (i * dx).toFixed(1);
          const y = (H - 1 - (Math.min(v, max) - floor) * scale).toFixed(1);
          if (runStart < 0) {
            line += 'M' + x + ' ' + y;
            area += 'M' + x + ' ' + H + 'L' + x + ' ' + y;
            runStart = i;
          } else {
            line += 'L' + x + ' ' + y;
            area += 'L' + x + ' ' + y;
          }
          prevX = x;
        } else if (runStart >= 0) {
          area += 'L' + prevX + ' ' + H + 'Z';
          runStart = -1;
        }
      }
      this.line.setAttribute('d', line);
      this.area.setAttribute('d', area);
    }
  }

  M.Sparkline = Sparkline;
})(window.Mothership = window.Mothership || {});
