// The chart's data for one scope and window: columns of numbers keyed by the
// time `t` (epoch seconds). Merges a full series (the answer to a subscribe)
// and the 30-second tails that follow it, point by point on `t`, and drops
// what falls out of the window, so its size stays bounded for hours.
(function (M) {
  'use strict';

  const CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx', 'none'];
  const LINES = ['p50', 'p95', 'p99', 'cpu', 'memory'];
  const MAX_POINTS = 4000; // far above 3600 s / 1 s and any history series (720 points); a guard

  class SeriesBuffer {
    constructor() {
      this.cols = {};
      this.reset('all', 300);
    }

    reset(scope, windowSeconds) {
      this.scope = scope;
      this.window = windowSeconds;
      this.range = null; // {start, end} (epoch s) when the charts show a chosen range, not up to now
      this.step = null;
      this.memoryLimit = null;
      // Arrays are emptied in place: charts hold references to them.
      if (this.t) this.t.length = 0;
      else this.t = [];
      for (const name of CLASSES.concat(LINES)) {
        if (this.cols[name]) this.cols[name].length = 0;
        else this.cols[name] = [];
      }
      this.version = 0;
    }

    matches(scope, windowSeconds) {
      return scope === this.scope && Number(windowSeconds) === this.window;
    }

    static pick(series, name, j) {
      const source = CLASSES.includes(name) ? (series.rps || {})[name] : series[name];
      const v = Array.isArray(source) ? source[j] : null;
      return typeof v === 'number' && Number.isFinite(v) ? v : null;
    }

    // Index of the first point with time >= t (binary search).
    lowerBound(t) {
      let lo = 0;
      let hi = this.t.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (this.t[mid] < t) lo = mid + 1;
        else hi = mid;
      }
      return lo;
    }

    merge(series) {
      const times = Array.isArray(series.t) ? series.t : [];
      const names = Object.keys(this.cols);
      if (typeof series.step === 'number') this.step = series.step;
      if ('memory_limit' in series) {
        this.memoryLimit = typeof series.memory_limit === 'number' ? series.memory_limit : null;
      }
      for (let j = 0; j < times.length; j += 1) {
        const t = times[j];
        if (typeof t !== 'number' || !Number.isFinite(t)) continue;
        const n = this.t.length;
        if (n === 0 || t > this.t[n - 1]) {
          this.t.push(t);
          for (const name of names) this.cols[name].push(SeriesBuffer.pick(series, name, j));
          continue;
        }
        const i = this.lowerBound(t);
        if (this.t[i] === t) {
          for (const name of names) this.cols[name][i] = SeriesBuffer.pick(series, name, j);
        } else {
          this.t.splice(i, 0, t);
          for (const name of names) this.cols[name].splice(i, 0, SeriesBuffer.pick(series, name, j));
        }
      }
      this.trim();
      this.version += 1;
    }

    trim() {
      const n = this.t.length;
      if (n === 0) return;
      const cutoff = this.t[n - 1] - this.window;
      let drop = this.lowerBound(cutoff + 1e-9);
      if (n - drop > MAX_POINTS) drop = n - MAX_POINTS;
      if (drop > 0) {
        this.t.splice(0, drop);
        for (const name of Object.keys(this.cols)) this.cols[name].splice(0, drop);
      }
    }

    get length() { return this.t.length; }

    hasData(name) {
      const col = this.cols[name];
      for (let i = 0; i < col.length; i += 1) if (col[i]) return true;
      return false;
    }
  }

  M.SeriesBuffer = SeriesBuffer;
  M.SeriesBuffer.CLASSES = CLASSES;
})(window.Mothership = window.Mothership || {});
