// DOM helpers: build elements with text (never HTML), write a node only when
// its value changed, and keep a keyed list of nodes in order while reusing
// them, so an update touches only what moved and memory stays flat.
(function (M) {
  'use strict';

  // Every text the page shows passes here: hidden and bidirectional characters
  // come out escaped (format.js), whichever view set the text.
  const visible = M.format.visible;

  // An element with a class and text content. Text from traffic goes through
  // textContent only: the page never parses data as HTML.
  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = visible(String(text));
    return node;
  }

  // Skips the write (and the style/layout work it causes) when unchanged.
  // The element keeps one Text child whose data is changed in place: a new
  // text node (textContent) would also cost a style recalc and a layout
  // object of its own. counts.text: writes done, for the page's statistics.
  const counts = { text: 0 };
  function setText(node, text) {
    if (node.__text === text) return;
    node.__text = text;
    counts.text += 1;
    if (typeof text === 'string') text = visible(text);
    const child = node.__textNode;
    if (child !== undefined && child.parentNode === node) {
      child.data = text;
      return;
    }
    const fresh = document.createTextNode(text);
    node.replaceChildren(fresh);
    node.__textNode = fresh;
  }

  // A title is shown (as a tooltip): escaped as text is. Other attributes
  // (data-row-pod...) keep the exact value, for matching.
  function setAttr(node, name, value) {
    const key = '__a_' + name;
    if (node[key] !== value) {
      node[key] = value;
      node.setAttribute(name, name === 'title' && typeof value === 'string' ? visible(value) : value);
    }
  }

  // Setting `hidden` again to the value it has still invalidates style.
  function setHidden(node, hidden) {
    if (node.hidden !== hidden) node.hidden = hidden;
  }

  // One class from a set of alternatives, e.g. level-ok / level-warn / level-bad.
  function setVariant(node, prefix, value) {
    const key = '__v_' + prefix;
    const old = node[key];
    if (old === value) return;
    if (old !== undefined) node.classList.remove(prefix + old);
    node.classList.add(prefix + value);
    node[key] = value;
  }

  // A bar's length as a fraction (0-1) of its track. A CSSOM write like this
  // is allowed under style-src 'self'; a style="" attribute would not be.
  function setFraction(node, prop, fraction) {
    const pct = Math.max(0, Math.min(1, Number.isFinite(fraction) ? fraction : 0)) * 100;
    const text = pct.toFixed(1) + '%';
    const key = '__s_' + prop;
    if (node[key] !== text) {
      node[key] = text;
      node.style[prop] = text;
    }
  }

  function setWidth(node, fraction) { setFraction(node, 'width', fraction); }

  // A bar that fills its track from the bottom, drawn by a transform: a
  // change then costs a repaint of the bar, no layout.
  function setFill(node, fraction) {
    const f = Math.max(0, Math.min(1, Number.isFinite(fraction) ? fraction : 0));
    const text = 'scaleY(' + f.toFixed(2) + ')';
    if (node.__fill !== text) {
      node.__fill = text;
      node.style.transform = text;
    }
  }

  // Which elements are on screen (or nearly), so views can skip the DOM
  // writes, style and layout of rows and cards nobody can see, and draw them
  // when they scroll into view. Off-screen rows then cost a comparison only.
  class Visibility {
    constructor() {
      this.shown = new WeakSet();
      this.onShow = new WeakMap();
      this.io = typeof IntersectionObserver === 'function'
        ? new IntersectionObserver((entries) => this.changed(entries), { rootMargin: '200px 0px' })
        : null;
    }

    changed(entries) {
      for (const entry of entries) {
        const el = entry.target;
        if (!entry.isIntersecting) {
          this.shown.delete(el);
        } else if (!this.shown.has(el)) {
          this.shown.add(el);
          const show = this.onShow.get(el);
          if (show) show();
        }
      }
    }

    watch(el, onShow) {
      if (!this.io) return;
      this.onShow.set(el, onShow);
      this.io.observe(el);
    }

    unwatch(el) {
      if (!this.io) return;
      this.io.unobserve(el);
      this.shown.delete(el);
    }

    visible(el) {
      return this.io === null || this.shown.has(el);
    }
  }

  const visibility = new Visibility();

  // A record (with `el`) drawn by draw(record, item): now if it is on screen
  // or was never drawn, else when it next scrolls into view.
  function watchRecord(rec, draw) {
    rec.behind = false;
    rec.drawn = false;
    visibility.watch(rec.el, () => {
      if (rec.behind) {
        rec.behind = false;
        draw(rec, rec.item);
      }
    });
  }

  function drawIfVisible(rec, item, draw) {
    rec.item = item;
    if (rec.drawn && !visibility.visible(rec.el)) {
      rec.behind = true;
      return;
    }
    rec.drawn = true;
    rec.behind = false;
    draw(rec, item);
  }

  function unwatchRecord(rec) {
    visibility.unwatch(rec.el);
  }

  // Indices (into `seq`) of a longest strictly increasing subsequence of the
  // non-negative values of `seq`: the nodes that can stay where they are.
  function longestIncreasing(seq) {
    const tails = []; // tails[k]: index in seq of the smallest tail of a run of length k+1
    const prev = new Array(seq.length);
    for (let i = 0; i < seq.length; i += 1) {
      const v = seq[i];
      if (v < 0) continue;
      let lo = 0;
      let hi = tails.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (seq[tails[mid]] < v) lo = mid + 1;
        else hi = mid;
      }
      prev[i] = lo > 0 ? tails[lo - 1] : -1;
      tails[lo] = i;
    }
    const keep = new Set();
    for (let i = tails.length ? tails[tails.length - 1] : -1; i >= 0; i = prev[i]) keep.add(i);
    return keep;
  }

  // Keeps `container`'s children equal to one node per item, in item order.
  // create(key, item) returns a record with an `el`; update(record, item)
  // refreshes it; remove(record), if given, runs when its key disappears.
  // Reordering moves as few nodes as possible (those off the longest run
  // already in order): a moved node is laid out and painted again.
  class KeyedList {
    constructor(container, create, update, remove) {
      this.container = container;
      this.create = create;
      this.update = update;
      this.remove = remove || null;
      this.records = new Map();
      this.order = []; // records in their DOM order
    }

    render(items, keyOf) {
      const next = [];
      const seen = new Set();
      for (const item of items) {
        const key = keyOf(item);
        if (seen.has(key)) continue;
        seen.add(key);
        let rec = this.records.get(key);
        if (rec === undefined) {
          rec = this.create(key, item);
          rec.__pos = -1;
          this.records.set(key, rec);
        }
        this.update(rec, item);
        next.push(rec);
      }
      if (seen.size !== this.records.size) {
        for (const [key, rec] of this.records) {
          if (!seen.has(key)) {
            rec.el.remove();
            this.records.delete(key);
            if (this.remove) this.remove(rec);
          }
        }
      }
      const old = this.order;
      for (let i = 0; i < old.length; i += 1) old[i].__pos = i;
      const positions = next.map((rec) => (rec.el.parentNode === this.container ? rec.__pos : -1));
      const keep = longestIncreasing(positions);
      // Place from the end, each node before the one that follows it.
      let anchor = null;
      for (let i = next.length - 1; i >= 0; i -= 1) {
        const el = next[i].el;
        if (!keep.has(i)) this.container.insertBefore(el, anchor);
        anchor = el;
      }
      for (const rec of next) rec.__pos = -1;
      this.order = next;
    }

    get size() { return this.records.size; }
  }

  // Keeps `container`'s children equal to one node per item by position:
  // row i shows item i. For ranked lists whose members change every update
  // (a pod's busiest routes, the newest exchanges): rewriting a row's text
  // costs far less than creating, removing or moving rows, each of which
  // means new style, new layout objects and a repaint. create() returns a
  // record with an `el`; update(record, item) fills it; remove(record), if
  // given, runs when a row goes.
  class SlotList {
    constructor(container, create, update, remove) {
      this.container = container;
      this.create = create;
      this.update = update;
      this.remove = remove || null;
      this.records = [];
    }

    render(items) {
      const recs = this.records;
      while (recs.length > items.length) {
        const rec = recs.pop();
        rec.el.remove();
        if (this.remove) this.remove(rec);
      }
      if (recs.length < items.length) {
        const added = document.createDocumentFragment();
        while (recs.length < items.length) {
          const rec = this.create();
          recs.push(rec);
          added.append(rec.el);
        }
        this.container.append(added);
      }
      for (let i = 0; i < items.length; i += 1) this.update(recs[i], items[i]);
    }

    get size() { return this.records.length; }
  }

  M.dom = {
    el, setText, setAttr, setHidden, setVariant, setWidth, setFill, KeyedList, SlotList, Visibility, visibility, counts,
    watchRecord, drawIfVisible, unwatchRecord,
  };
})(window.Mothership = window.Mothership || {});
