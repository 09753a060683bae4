// The grid view: 2×2 or 3×3 cameras live at once, each tile its own WHEP session (muted), its frames decoded
// counted from getStats(). A click on a tile opens that stream in the player. Which streams and which layout are
// in the URL (`view=grid&layout=3x3&streams=a,b,c`); without `streams`, the first streams of the list fill it.

import { api, viewerToken } from "./api.js";
import { $, el } from "./dom.js";
import { StreamVideo } from "./stream-video.js";
import { LAYOUTS, link, writeUrl } from "./url-state.js";

const STATS_MS = 1000;

export class Grid {
  constructor(state, page) {
    this.page = page;
    this.layout = state.layout;
    this.wanted = state.streams;
    this.tiles = [];
    this.all = [];
    this.timer = setInterval(() => this.sample(), STATS_MS);
    for (const b of document.querySelectorAll("[data-layout]")) {
      b.addEventListener("click", () => this.setLayout(b.dataset.layout));
    }
    this.build();
  }

  async build() {
    await this.stopTiles();
    for (const b of document.querySelectorAll("[data-layout]")) {
      b.setAttribute("aria-pressed", String(b.dataset.layout === this.layout));
    }
    const n = LAYOUTS[this.layout];
    try {
      this.all = (await api.listStreams()).map((s) => s.source_id);
    } catch (e) {
      // A viewer token cannot list streams: the URL's streams are all there is.
      if (!this.wanted.length) this.page.showError(e);
      this.all = [];
    }
    const ids = (this.wanted.length ? this.wanted : this.all).slice(0, n * n);
    this.renderChooser(ids, n * n);
    const root = $("#grid");
    root.style.setProperty("--cols", String(n));
    root.replaceChildren();
    $("#grid-empty").hidden = ids.length > 0;
    for (const id of ids) {
      const video = el("video", { muted: true, autoplay: true, playsinline: true });
      video.muted = true;
      const stats = el("span", { class: "tile-stats" }, "connecting…");
      const tile = el("a", { class: "tile", href: link({ stream: id }), "data-stream": id, "data-frames": "0" });
      tile.append(video, el("span", { class: "tile-label" }, id), stats);
      root.append(tile);
      const sv = new StreamVideo(video, id, viewerToken());
      const t = { id, tile, stats, sv, error: null };
      this.tiles.push(t);
      sv.start().catch((e) => { t.error = e.message; stats.textContent = e.message; tile.classList.add("failed"); });
    }
  }

  /** Checkboxes of every stream: which ones the tiles show (at most `max`), kept in the URL. */
  renderChooser(shown, max) {
    const box = $("#grid-choose");
    box.hidden = this.all.length === 0;
    const boxes = this.all.map((id) => {
      const cb = el("input", { type: "checkbox", value: id });
      cb.checked = shown.includes(id);
      cb.addEventListener("change", () => {
        const picked = [...box.querySelectorAll("input:checked")].map((c) => c.value).slice(0, max);
        this.wanted = picked;
        writeUrl({ streams: picked.join(",") });
        this.build();
      });
      const label = el("label");
      label.append(cb, document.createTextNode(` ${id}`));
      return label;
    });
    $("#grid-streams").replaceChildren(...boxes);
  }

  async sample() {
    for (const t of this.tiles) {
      const s = await t.sv.sample();
      if (!s) continue;
      t.tile.dataset.frames = String(s.framesDecoded);
      t.stats.textContent = `${s.width}×${s.height} · ${s.fps ? s.fps.toFixed(0) : 0} fps · ${s.bitrateKbps.toFixed(0)} kbit/s`;
    }
  }

  setLayout(layout) {
    this.layout = layout in LAYOUTS ? layout : "2x2";
    writeUrl({ layout: this.layout });
    this.build();
  }

  async stopTiles() {
    const tiles = this.tiles;
    this.tiles = [];
    await Promise.all(tiles.map((t) => t.sv.stop()));
  }

  async stop() {
    clearInterval(this.timer);
    await this.stopTiles();
  }

  snapshot() {
    return this.tiles.map((t) => ({ stream: t.id, framesDecoded: t.sv.framesDecoded, error: t.error }));
  }
}
