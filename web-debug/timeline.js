// The timeline under the player: recorded ranges and the gaps between them, the live edge, the playhead (moving),
// tick labels in local time, and an export selection. A click or a drag seeks (a click in a gap goes to the next
// recorded instant); with "select" on (or Shift held) a drag selects a range instead. Built from DOM elements
// (createElement/textContent), so each range and gap is an element a test or a screen reader can find.

import { el, localTime } from "./dom.js";
import { ZOOMS } from "./url-state.js";

const TICKS = { "1m": 10e3, "10m": 60e3, "1h": 600e3, "6h": 3600e3, "24h": 3 * 3600e3 };
/** Room kept right of the live edge, as a share of the window. */
const LEAD = 0.04;

export class Timeline {
  /** `onSeek(ms)` when the user picks an instant; `onSelect([start, end] | null)` when a selection changes. */
  constructor(root, { onSeek, onSelect }) {
    this.onSeek = onSeek;
    this.onSelect = onSelect;
    this.zoom = "10m";
    this.ranges = [];
    this.liveEdgeMs = null;
    this.positionMs = null;
    this.live = true;
    this.center = null; // null: the window follows the live edge
    this.selection = null;
    this.selectMode = false;
    this.prevSelection = null;
    this.drag = null;
    this.hoverMs = null;
    this.track = el("div", { class: "tl-track", role: "slider", "aria-label": "timeline" });
    this.ticks = el("div", { class: "tl-ticks" });
    root.replaceChildren(this.track, this.ticks);
    this.track.addEventListener("pointerdown", (e) => this.down(e));
    this.track.addEventListener("pointermove", (e) => this.move(e));
    this.track.addEventListener("pointerup", (e) => this.up(e));
    this.track.addEventListener("pointerleave", () => { if (!this.drag) { this.hoverMs = null; this.render(); } });
  }

  setZoom(key) {
    this.zoom = key in ZOOMS ? key : "10m";
    this.render();
  }

  /** Centres the window on `ms` (a jump); `null` follows the live edge again. */
  focus(ms) {
    this.center = ms;
    this.render();
  }

  setSelection(sel) {
    this.selection = sel;
    this.render();
  }

  /** Newest data: recorded ranges (`{start_ms, end_ms}`), the live edge, the playhead, live or not. */
  update({ ranges, liveEdgeMs, positionMs, live }) {
    if (ranges) this.ranges = ranges;
    if (liveEdgeMs !== undefined) this.liveEdgeMs = liveEdgeMs;
    if (positionMs !== undefined) this.positionMs = positionMs;
    if (live !== undefined) {
      if (live && !this.live) this.center = null;
      this.live = live;
    }
    this.render();
  }

  /** The instants the window shows, `[start, end]`. */
  view() {
    const span = ZOOMS[this.zoom];
    const edge = this.liveEdgeMs ?? Date.now();
    if (!this.live && this.positionMs !== null) {
      const c = this.center;
      // The playhead keeps inside the window: when it leaves, the window re-centres on it.
      if (c === null || Math.abs(this.positionMs - c) > span * 0.45) this.center = this.positionMs;
    }
    if (this.center === null) {
      const end = edge + span * LEAD;
      return [end - span, end];
    }
    return [this.center - span / 2, this.center + span / 2];
  }

  msAt(clientX) {
    const r = this.track.getBoundingClientRect();
    const [a, b] = this.view();
    const x = Math.min(Math.max(clientX - r.left, 0), r.width);
    return a + ((b - a) * x) / r.width;
  }

  /** The recorded instant nearest to `ms` going forward: `ms` itself, the next range's start, or null. */
  snap(ms) {
    for (const r of this.ranges) {
      if (ms < r.start_ms) return r.start_ms;
      if (ms < r.end_ms) return ms;
    }
    return null;
  }

  down(e) {
    if (e.button !== 0) return;
    this.track.setPointerCapture(e.pointerId);
    this.drag = { from: this.msAt(e.clientX), select: this.selectMode || e.shiftKey, x: e.clientX };
    this.hoverMs = this.drag.from;
    this.prevSelection = this.selection;
    this.render();
  }

  move(e) {
    this.hoverMs = this.msAt(e.clientX);
    if (this.drag && this.drag.select) {
      const a = this.drag.from;
      const b = this.hoverMs;
      this.selection = [Math.min(a, b), Math.max(a, b)];
    }
    this.render();
  }

  up(e) {
    const drag = this.drag;
    this.drag = null;
    if (!drag) return;
    const at = this.msAt(e.clientX);
    if (drag.select && Math.abs(e.clientX - drag.x) > 3) {
      this.selection = [Math.round(Math.min(drag.from, at)), Math.round(Math.max(drag.from, at))];
      this.onSelect(this.selection);
    } else {
      // A click (no drag) seeks in either mode; the selection stays for the export.
      this.selection = this.prevSelection;
      const target = this.snap(at);
      if (target !== null) this.onSeek(Math.round(target));
    }
    this.render();
  }

  render() {
    const [a, b] = this.view();
    const pct = (ms) => `${(100 * (Math.min(Math.max(ms, a), b) - a)) / (b - a)}%`;
    const span = (cls, from, to, attrs = {}) => {
      const d = el("div", { class: cls, ...attrs });
      d.style.left = pct(from);
      d.style.width = `calc(${pct(to)} - ${pct(from)})`;
      return d;
    };
    const parts = [];
    const visible = this.ranges.filter((r) => r.end_ms > a && r.start_ms < b);
    this.ranges.forEach((r, i) => {
      const next = this.ranges[i + 1];
      if (next && next.start_ms > a && r.end_ms < b) {
        parts.push(span("tl-gap", r.end_ms, next.start_ms, {
          title: `gap ${localTime(r.end_ms)} – ${localTime(next.start_ms)}`,
          "data-start-ms": r.end_ms, "data-end-ms": next.start_ms,
        }));
      }
    });
    for (const r of visible) {
      parts.push(span("tl-range", r.start_ms, r.end_ms, {
        title: `recorded ${localTime(r.start_ms)} – ${localTime(r.end_ms)}`,
        "data-start-ms": r.start_ms, "data-end-ms": r.end_ms,
      }));
    }
    if (this.selection) parts.push(span("tl-selection", this.selection[0], this.selection[1]));
    const mark = (cls, ms, label) => {
      const m = el("div", { class: cls, "data-ms": Math.round(ms) });
      m.style.left = pct(ms);
      if (label) m.append(el("span", {}, label));
      return m;
    };
    if (this.liveEdgeMs !== null && this.liveEdgeMs >= a && this.liveEdgeMs <= b) {
      parts.push(mark("tl-live", this.liveEdgeMs, "live"));
    }
    if (this.positionMs !== null && this.positionMs >= a && this.positionMs <= b) {
      parts.push(mark("tl-playhead", this.positionMs));
    }
    if (this.hoverMs !== null) parts.push(mark("tl-hover", this.hoverMs, localTime(this.hoverMs)));
    this.track.replaceChildren(...parts);
    this.track.dataset.viewStart = String(Math.round(a));
    this.track.dataset.viewEnd = String(Math.round(b));
    this.track.dataset.ranges = String(visible.length);
    const step = TICKS[this.zoom];
    const ticks = [];
    for (let t = Math.ceil(a / step) * step; t <= b; t += step) {
      const tick = el("span", { class: "tl-tick" }, localTime(t).slice(0, step >= 60e3 ? 5 : 8));
      tick.style.left = pct(t);
      ticks.push(tick);
    }
    this.ticks.replaceChildren(...ticks);
  }
}
