// The four live charts (requests/s by status class, latency percentiles,
// CPU, memory) drawn with the vendored Chart.js from one SeriesBuffer. Each
// line's points are {x, y} objects reused from one update to the next and
// handed over unparsed (parsing: false), so an update is a copy of numbers
// and one redraw without animation ('none'); a status class with no traffic
// has no points at all. Memory is bounded by the buffer's window. Dragging
// across a chart picks a range (drag-to-zoom): `onZoom(start, end)`, epoch s.
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

  // Makes `points` the n points (t[i], values[i]), or (t[i], constant) when
  // values is null, reusing the objects already there. Elements are set by
  // index: Chart.js watches push and splice on its data arrays. With `sums`
  // (one running total per point) the line is stacked on the ones before it:
  // y is the total so far and v the line's own value (for the tooltip).
  function copyPoints(points, t, values, constant, n, sums) {
    for (let i = points.length; i < n; i += 1) points[i] = { x: 0, y: null, v: null };
    points.length = n;
    for (let i = 0; i < n; i += 1) {
      const p = points[i];
      const v = values ? values[i] : constant;
      p.x = t[i];
      p.v = v;
      if (sums && v !== null) {
        sums[i] += v;
        p.y = sums[i];
      } else {
        p.y = v;
      }
    }
  }

  // Clock time, with the day once a chart spans more than one.
  function when(seconds, span) {
    if (span <= 86400) return F.clock(seconds * 1000);
    const d = new Date(seconds * 1000);
    return d.toLocaleDateString([], { month: 'short', day: 'numeric' }) + ' ' + F.clock(seconds * 1000).slice(0, 5);
  }

  function baseOptions(theme, formatY, buffer) {
    const span = () => (buffer.range ? buffer.range.end - buffer.range.start : buffer.window);
    return {
      animation: false,
      parsing: false,
      responsive: true,
      maintainAspectRatio: false,
      normalized: true,
      spanGaps: false,
      interaction: { mode: 'index', intersect: false },
      elements: { point: { radius: 0, hitRadius: 6, hoverRadius: 3 }, line: { borderWidth: 1.5, tension: 0 } },
      layout: { padding: { top: 4, right: 6 } },
      plugins: {
        title: false,
        subtitle: false,
        colors: false,
        decimation: false,
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
            title: (items) => (items.length ? when(items[0].parsed.x, span()) : ''),
            label: (item) => item.dataset.label + ': ' + formatY(item.raw.v),
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
            callback: (value) => when(value, span()),
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

  // A band follows the pointer while the button is down over a chart's plot; released, the band's
  // two edges are read back as times on the chart's own x scale.
  function attachZoom(chart, onZoom) {
    const canvas = chart.canvas;
    const band = document.createElement('div');
    band.className = 'zoom-band';
    band.hidden = true;
    canvas.parentNode.append(band);
    let from = null;
    const at = (event) => {
      const area = chart.chartArea;
      const x = event.clientX - canvas.getBoundingClientRect().left;
      return Math.min(Math.max(x, area.left), area.right);
    };
    canvas.addEventListener('mousedown', (event) => {
      if (event.button !== 0 || !chart.chartArea) return;
      from = at(event);
      event.preventDefault();
    });
    window.addEventListener('mousemove', (event) => {
      if (from === null) return;
      const x = at(event);
      const area = chart.chartArea;
      band.hidden = false;
      band.style.left = Math.min(from, x) + 'px';
      band.style.width = Math.abs(x - from) + 'px';
      band.style.top = area.top + 'px';
      band.style.height = (area.bottom - area.top) + 'px';
    });
    window.addEventListener('mouseup', (event) => {
      if (from === null) return;
      const x = at(event);
      const left = Math.min(from, x);
      const right = Math.max(from, x);
      from = null;
      band.hidden = true;
      if (right - left < 4) return; // a click, not a drag
      onZoom(chart.scales.x.getValueForPixel(left), chart.scales.x.getValueForPixel(right));
    });
  }

  class LiveCharts {
    constructor(canvases, buffer, onZoom) {
      this.buffer = buffer;
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
      // One dataset per line; `source` names its column in the buffer.
      this.lines = [];
      // `stackIndex`: the dataset's index in requests/s by status, whose
      // lines are stacked.
      const line = (source, label, c, extra, stackIndex) => {
        const dataset = Object.assign({ label, data: [], borderColor: c, backgroundColor: alpha(c, 0.15), fill: false },
          extra || {});
        const stacked = stackIndex !== undefined;
        this.lines.push({ source, dataset, points: dataset.data, none: [], stacked, stackIndex });
        return dataset;
      };

      // With no traffic yet, these keep the axes' labels sensible (not "1 B").
      const floorOf = (options, max) => { options.scales.y.suggestedMax = max; return options; };
      const rpsOptions = baseOptions(theme, F.rate, buffer);
      rpsOptions.scales.y.suggestedMax = 1;
      rpsOptions.plugins.legend.labels.filter = (item) => {
        const name = item.text === 'no response' ? 'none' : item.text;
        return name === '2xx' || buffer.hasData(name);
      };
      this.rps = new window.Chart(canvases.rps, {
        type: 'line',
        data: {
          datasets: M.SeriesBuffer.CLASSES.map((klass, i) => line(
            klass, klass === 'none' ? 'no response' : klass, color[klass],
            { fill: 'origin', backgroundColor: alpha(color[klass], 0.35) }, i,
          )),
        },
        options: rpsOptions,
      });

      this.latency = new window.Chart(canvases.latency, {
        type: 'line',
        data: {
          datasets: [
            line('p50', 'p50', color.p50),
            line('p95', 'p95', color.p95),
            line('p99', 'p99', color.p99),
          ],
        },
        options: floorOf(baseOptions(theme, F.ms, buffer), 10),
      });

      this.cpu = new window.Chart(canvases.cpu, {
        type: 'line',
        data: { datasets: [line('cpu', 'CPU', color.cpu, { fill: 'origin' })] },
        options: floorOf(baseOptions(theme, F.percent, buffer), 10),
      });

      const memOptions = floorOf(baseOptions(theme, F.bytes, buffer), 64 * 1024 * 1024);
      this.limitShown = false;
      memOptions.plugins.legend.labels.filter = (item) => item.text !== 'limit' || this.limitShown;
      this.memCaption = canvases.memory.closest('figure').querySelector('figcaption');
      this.memory = new window.Chart(canvases.memory, {
        type: 'line',
        data: {
          datasets: [
            line('memory', 'memory', color.memory, { fill: 'origin' }),
            line('limit', 'limit', color.limit, { borderDash: [4, 4], borderWidth: 1 }),
          ],
        },
        options: memOptions,
      });
      this.all = [this.rps, this.latency, this.cpu, this.memory];
      if (onZoom) for (const chart of this.all) attachZoom(chart, onZoom);
    }

    render() {
      const b = this.buffer;
      const n = b.t.length;
      // The limit line is drawn while the usage is within sight of it; a
      // limit far above the usage would flatten the line, so it is then only named.
      let memMax = 0;
      for (const v of b.cols.memory) if (v !== null && v > memMax) memMax = v;
      const limit = b.memoryLimit;
      this.limitShown = limit !== null && memMax >= limit * 0.2;
      M.dom.setText(this.memCaption, limit !== null ? 'memory \u00b7 limit ' + F.bytes(limit) : 'memory');
      // Requests/s by status class is stacked here rather than by Chart.js:
      // each class fills down to the class drawn before it. A class with no
      // traffic has no points (and no legend entry).
      const sums = new Array(n).fill(0);
      let below = null;
      for (const l of this.lines) {
        let shown = n > 0;
        if (l.source === 'limit') shown = shown && this.limitShown;
        else if (l.stacked) shown = shown && (l.source === '2xx' || b.hasData(l.source));
        if (shown) copyPoints(l.points, b.t, l.source === 'limit' ? null : b.cols[l.source], limit, n, l.stacked ? sums : null);
        const data = shown ? l.points : l.none;
        if (l.dataset.data !== data) l.dataset.data = data;
        if (l.stacked && shown) {
          l.dataset.fill = below === null ? 'origin' : below;
          below = l.stackIndex;
        }
      }
      // A fixed window on x, so a new scope's first points do not fill the width; a chosen range as it is.
      const max = b.range ? b.range.end : (n ? b.t[n - 1] : Date.now() / 1000);
      const min = b.range ? b.range.start : max - b.window;
      for (const chart of this.all) {
        chart.options.scales.x.min = min;
        chart.options.scales.x.max = max;
        chart.update('none');
      }
    }
  }

  M.LiveCharts = LiveCharts;
})(window.Mothership = window.Mothership || {});
