// The four live charts (requests/s by status class, latency percentiles,
// CPU, memory) drawn with the vendored Chart.js from one SeriesBuffer. The
// charts share the buffer's arrays, so an update is one redraw without
// animation ('none'), and their memory is bounded by the buffer's window.
(function (M) {
  'use strict';

  const F = M.format;

  function cssVar(name, fallback) {
    const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return v || fallback;
  }

  function alpha(color, a) {
    // #rrggbb -> rgba(); other forms are used as they are.
    const m = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(color);
    if (!m) return color;
    return 'rgba(' + parseInt(m[1], 16) + ',' + parseInt(m[2], 16) + ',' + parseInt(m[3], 16) + ',' + a + ')';
  }

  function baseOptions(theme, formatY) {
    return {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      normalized: true,
      spanGaps: false,
      interaction: { mode: 'index', intersect: false },
      elements: { point: { radius: 0, hitRadius: 6, hoverRadius: 3 }, line: { borderWidth: 1.5, tension: 0 } },
      layout: { padding: { top: 4, right: 6 } },
      plugins: {
        legend: {
          position: 'top',
          align: 'end',
          labels: { color: theme.muted, boxWidth: 10, boxHeight: 10, padding: 8, font: { size: 11 } },
        },
        tooltip: {
          backgroundColor: theme.panel,
          borderColor: theme.grid,
          borderWidth: 1,
          titleColor: theme.text,
          bodyColor: theme.text,
          callbacks: {
            title: (items) => (items.length ? F.clock(items[0].parsed.x * 1000) : ''),
            label: (item) => item.dataset.label + ': ' + formatY(item.parsed.y),
          },
        },
      },
      scales: {
        x: {
          type: 'linear',
          grid: { color: theme.grid, drawTicks: false },
          border: { display: false },
          ticks: {
            color: theme.muted, maxTicksLimit: 6, maxRotation: 0, padding: 4, font: { size: 10 },
            callback: (value) => F.clock(value * 1000),
          },
        },
        y: {
          beginAtZero: true,
          grid: { color: theme.grid, drawTicks: false },
          border: { display: false },
          ticks: { color: theme.muted, maxTicksLimit: 5, padding: 4, font: { size: 10 }, callback: (v) => formatY(v) },
        },
      },
    };
  }

  class LiveCharts {
    constructor(canvases, buffer) {
      this.buffer = buffer;
      this.limitCol = [];
      const theme = {
        text: cssVar('--text', '#d6dde6'),
        muted: cssVar('--muted', '#8b96a5'),
        grid: cssVar('--grid', '#232a33'),
        panel: cssVar('--panel', '#161b22'),
      };
      const color = {
        '1xx': cssVar('--c-1xx', '#8b96a5'),
        '2xx': cssVar('--ok', '#3fb950'),
        '3xx': cssVar('--c-3xx', '#58a6ff'),
        '4xx': cssVar('--warn', '#d29922'),
        '5xx': cssVar('--bad', '#f85149'),
        none: cssVar('--c-none', '#bc8cff'),
        p50: cssVar('--c-p50', '#58a6ff'),
        p95: cssVar('--warn', '#d29922'),
        p99: cssVar('--bad', '#f85149'),
        cpu: cssVar('--c-cpu', '#39c5cf'),
        memory: cssVar('--c-mem', '#bc8cff'),
        limit: cssVar('--muted', '#8b96a5'),
      };
      const cols = buffer.cols;
      const labels = buffer.t;
      const line = (label, data, c, extra) => Object.assign({
        label, data, borderColor: c, backgroundColor: alpha(c, 0.15), fill: false,
      }, extra || {});

      // With no traffic yet, these keep the axes' labels sensible (not "1 B").
      const floorOf = (options, max) => { options.scales.y.suggestedMax = max; return options; };
      const rpsOptions = baseOptions(theme, F.rate);
      rpsOptions.scales.y.stacked = true;
      rpsOptions.scales.y.suggestedMax = 1;
      rpsOptions.plugins.legend.labels.filter = (item) => {
        const name = item.text === 'no response' ? 'none' : item.text;
        return name === '2xx' || buffer.hasData(name);
      };
      this.rps = new window.Chart(canvases.rps, {
        type: 'line',
        data: {
          labels,
          datasets: M.SeriesBuffer.CLASSES.map((klass, i) => line(
            klass === 'none' ? 'no response' : klass, cols[klass], color[klass],
            { fill: i === 0 ? 'origin' : '-1', backgroundColor: alpha(color[klass], 0.35), stack: 'rps' },
          )),
        },
        options: rpsOptions,
      });

      this.latency = new window.Chart(canvases.latency, {
        type: 'line',
        data: {
          labels,
          datasets: [
            line('p50', cols.p50, color.p50),
            line('p95', cols.p95, color.p95),
            line('p99', cols.p99, color.p99),
          ],
        },
        options: floorOf(baseOptions(theme, F.ms), 10),
      });

      this.cpu = new window.Chart(canvases.cpu, {
        type: 'line',
        data: { labels, datasets: [line('CPU', cols.cpu, color.cpu, { fill: 'origin' })] },
        options: floorOf(baseOptions(theme, F.percent), 10),
      });

      const memOptions = floorOf(baseOptions(theme, F.bytes), 64 * 1024 * 1024);
      memOptions.plugins.legend.labels.filter = (item) => item.text !== 'limit' || this.limitCol.length > 0;
      this.memCaption = canvases.memory.closest('figure').querySelector('figcaption');
      this.memory = new window.Chart(canvases.memory, {
        type: 'line',
        data: {
          labels,
          datasets: [
            line('memory', cols.memory, color.memory, { fill: 'origin' }),
            line('limit', this.limitCol, color.limit, { borderDash: [4, 4], borderWidth: 1 }),
          ],
        },
        options: memOptions,
      });
      this.all = [this.rps, this.latency, this.cpu, this.memory];
    }

    render() {
      const b = this.buffer;
      const n = b.t.length;
      // The limit line: one value per point, rebuilt in place. A limit far
      // above the usage would flatten the line, so it is then only named.
      this.limitCol.length = 0;
      let memMax = 0;
      for (const v of b.cols.memory) if (v !== null && v > memMax) memMax = v;
      const limit = b.memoryLimit;
      if (limit !== null && memMax >= limit * 0.2) for (let i = 0; i < n; i += 1) this.limitCol.push(limit);
      M.dom.setText(this.memCaption, limit !== null ? 'memory \u00b7 limit ' + F.bytes(limit) : 'memory');
      // A fixed window on x, so a new scope's first points do not fill the width.
      const max = n ? b.t[n - 1] : Date.now() / 1000;
      const min = max - b.window;
      for (const chart of this.all) {
        chart.options.scales.x.min = min;
        chart.options.scales.x.max = max;
        chart.update('none');
      }
    }
  }

  M.LiveCharts = LiveCharts;
})(window.Mothership = window.Mothership || {});
