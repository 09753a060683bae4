// The player view: one WHEP session that plays live and the recording. The controls (±10/60 s, pause/play,
// speed, "Go live", a date-time jump, the timeline) drive the same session through POST /sessions/{id}/…; its
// mode is polled from GET /sessions/{id}/mode and the playhead moves between polls by the elapsed time × speed.
// The URL follows the position, speed, pause, zoom and selection, so the address bar is always a shareable link.
// Keyboard: space pauses/plays, ←/→ move 10 s, L goes live, Esc drops the export selection.

import { api, getToken, urlToken, viewerToken } from "./api.js";
import { $, el, fromDatetimeLocal, localTime, toDatetimeLocal, formatDuration } from "./dom.js";
import { StreamVideo } from "./stream-video.js";
import { StatsOverlay } from "./stats-overlay.js";
import { Timeline } from "./timeline.js";
import { exportUrl, checkExport, download } from "./export.js";
import { SPEEDS, link, writeUrl } from "./url-state.js";

const MODE_POLL_MS = 500;
const STATS_MS = 1000;
const RANGES_MS = 2000;
/** A seek this close to the live edge goes live instead. */
const LIVE_SLACK_MS = 1500;
const SHARE_TTL_SECS = 24 * 3600;

export class Player {
  /** `state`: the URL's state; `page.showError(err)` shows errors; `page.authOn` says if tokens are needed. */
  constructor(state, page) {
    this.page = page;
    this.stream = state.stream;
    this.mode = null;
    this.modeAtWall = 0;
    this.ranges = [];
    this.selection = state.sel;
    this.zoom = state.zoom;
    this.timers = [];
    this.busy = false;
    this.video = new StreamVideo($("#video"), this.stream, viewerToken());
    this.overlay = new StatsOverlay($("#overlay"));
    this.timeline = new Timeline($("#timeline"), {
      onSeek: (ms) => this.seekTo(ms),
      onSelect: (sel) => this.select(sel),
    });
    this.timeline.setZoom(this.zoom);
    this.timeline.setSelection(this.selection);
    this.wire();
    this.start(state);
  }

  get sessionId() {
    return this.video.sessionId;
  }

  /** The instant shown now: the polled position moved on by the time since, at the session's speed. */
  position() {
    const m = this.mode;
    if (!m) return null;
    if (m.mode === "live") {
      const edge = m.live_edge_ms ?? m.position_ms;
      return edge === null || edge === undefined ? null : edge + (Date.now() - this.modeAtWall);
    }
    if (m.position_ms === null || m.position_ms === undefined) return null;
    if (m.paused) return m.position_ms;
    return m.position_ms + (Date.now() - this.modeAtWall) * m.speed;
  }

  wire() {
    $("#player-title").textContent = this.stream;
    this.fillSwitch();
    const speed = $("#speed");
    speed.replaceChildren(...SPEEDS.map((s) => new Option(`${s}×`, String(s))));
    speed.value = "1";
    speed.addEventListener("change", () => {
      // Give the keys back to the player (an arrow on a focused select would change the speed instead).
      speed.blur();
      this.command(() => api.speed(this.sessionId, Number(speed.value)));
    });
    for (const b of document.querySelectorAll("[data-step]")) {
      b.addEventListener("click", () => this.step(Number(b.dataset.step)));
    }
    $("#pause").addEventListener("click", () => this.togglePause());
    $("#live").addEventListener("click", () => this.goLive());
    $("#jump").addEventListener("submit", (e) => {
      e.preventDefault();
      const at = fromDatetimeLocal($("#jump-at").value);
      if (Number.isFinite(at)) { this.timeline.focus(at); this.seekTo(at); }
      else this.page.showError(new Error("pick a date and time to jump to"));
    });
    for (const b of document.querySelectorAll("[data-zoom]")) {
      b.addEventListener("click", () => this.setZoom(b.dataset.zoom));
    }
    $("#select").addEventListener("click", () => {
      this.timeline.selectMode = !this.timeline.selectMode;
      $("#select").setAttribute("aria-pressed", String(this.timeline.selectMode));
    });
    $("#export").addEventListener("click", () => this.exportSelection());
    $("#share").addEventListener("click", () => this.share());
    $("#toggle-stats").addEventListener("click", () => this.overlay.toggle());
    this.onKey = (e) => this.key(e);
    document.addEventListener("keydown", this.onKey);
    this.renderZoom();
    this.renderSelection();
  }

  /** A list of the other streams to switch to (when this token may list them). */
  async fillSwitch() {
    let ids;
    try {
      ids = (await api.listStreams()).map((s) => s.source_id);
    } catch {
      return; // a viewer token cannot list streams: this one is all there is
    }
    const sel = $("#player-switch");
    sel.replaceChildren(new Option("other stream…", ""), ...ids.filter((id) => id !== this.stream).map((id) => new Option(id, id)));
    sel.hidden = ids.length < 2;
    sel.addEventListener("change", () => { if (sel.value) location.assign(link({ stream: sel.value })); });
  }

  async start(state) {
    try {
      try {
        await this.video.start(state.t);
      } catch (e) {
        if (state.t === null || ![409, 416].includes(e.status)) throw e;
        // The linked instant is not (or no longer) recorded: say so, and show live.
        this.page.showError(new Error(`${localTime(state.t, true)} cannot be played: ${e.message}; showing live`));
        await this.video.start(null);
      }
      if (state.speed !== 1) await api.speed(this.sessionId, state.speed);
      if (state.paused) await api.pause(this.sessionId);
      await this.pollMode();
    } catch (e) {
      this.page.showError(e);
    }
    this.timers.push(setInterval(() => this.pollMode(), MODE_POLL_MS));
    this.timers.push(setInterval(() => this.pollStats(), STATS_MS));
    this.timers.push(setInterval(() => this.pollRanges(), RANGES_MS));
    this.timers.push(setInterval(() => this.tick(), 250));
    this.pollRanges();
  }

  async stop() {
    this.timers.forEach(clearInterval);
    document.removeEventListener("keydown", this.onKey);
    await this.video.stop();
  }

  key(e) {
    if (e.target.closest && e.target.closest("input, select, textarea, button")) {
      if (e.key === " " || e.target.closest("input, select, textarea")) return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === " ") { e.preventDefault(); this.togglePause(); }
    else if (e.key === "ArrowLeft") { e.preventDefault(); this.step(-10000); }
    else if (e.key === "ArrowRight") { e.preventDefault(); this.step(10000); }
    else if (e.key === "l" || e.key === "L") this.goLive();
    else if (e.key === "Escape") { this.timeline.setSelection(null); this.select(null); }
  }

  setMode(m) {
    this.mode = m;
    this.modeAtWall = Date.now();
  }

  async pollMode() {
    if (!this.sessionId) return;
    try {
      this.setMode(await api.mode(this.sessionId));
    } catch (e) {
      if (e.status === 404) this.page.showError(new Error("the session ended (the stream was deleted, or the gateway restarted); reload to watch again"));
    }
  }

  async pollStats() {
    const s = await this.video.sample();
    this.overlay.render(s, this.video.ttffMs, this.mode, this.position());
  }

  async pollRanges() {
    const [a, b] = this.timeline.view();
    const span = b - a;
    try {
      const rec = await api.recordings(this.stream, a - span, b + span);
      this.ranges = rec.ranges.map((r) => ({ start_ms: r.start_ms, end_ms: r.end_ms }));
      $("#recording-note").textContent = this.ranges.length ? "" : "nothing recorded in this window";
    } catch (e) {
      this.ranges = [];
      $("#recording-note").textContent = `recordings: ${e.message}`;
    }
    this.timeline.update({ ranges: this.ranges });
  }

  /** Redraws what moves (playhead, live edge, position) and keeps the URL in step. */
  tick() {
    const m = this.mode;
    const pos = this.position();
    const live = !m || m.mode === "live";
    const edge = m && m.live_edge_ms !== null && m.live_edge_ms !== undefined
      ? m.live_edge_ms + (Date.now() - this.modeAtWall) : null;
    this.timeline.update({ liveEdgeMs: edge, positionMs: pos, live });
    $("#mode-badge").textContent = m ? (live ? "LIVE" : m.paused ? "PAUSED" : `DVR ${m.speed}×`) : "…";
    $("#mode-badge").className = `badge ${live ? "live" : "dvr"}`;
    $("#position").textContent = localTime(pos, true);
    $("#pause").textContent = m && m.paused ? "Play" : "Pause";
    if (m && document.activeElement !== $("#speed")) $("#speed").value = String(m.speed);
    writeUrl({
      // Whole seconds: the address changes once a second while playing, not on every redraw.
      t: m && !live && pos !== null ? Math.round(pos / 1000) * 1000 : null,
      speed: m && m.speed !== 1 ? m.speed : null,
      paused: !!(m && m.paused),
    });
  }

  /** Runs one control call and takes the session's new mode from its answer. */
  async command(fn) {
    if (!this.sessionId) return;
    try {
      this.setMode(await fn());
      this.page.showError(null);
      this.tick();
    } catch (e) {
      this.page.showError(e);
    }
  }

  seekTo(ms) {
    // Before the oldest recording (say ← near its start): its first instant, not an error.
    const first = this.ranges[0]?.start_ms;
    if (first !== undefined && ms < first && this.ranges.length) ms = first;
    const edge = this.mode?.live_edge_ms;
    if (edge && ms >= edge + (Date.now() - this.modeAtWall) - LIVE_SLACK_MS) return this.goLive();
    return this.command(() => api.seek(this.sessionId, ms));
  }

  step(deltaMs) {
    const pos = this.position();
    if (pos === null) return null;
    if (deltaMs > 0 && this.mode?.mode === "live") return null;
    return this.seekTo(pos + deltaMs);
  }

  togglePause() {
    return this.command(() => (this.mode?.paused ? api.play(this.sessionId) : api.pause(this.sessionId)));
  }

  goLive() {
    this.timeline.focus(null);
    return this.command(() => api.live(this.sessionId));
  }

  setZoom(z) {
    this.zoom = z;
    this.timeline.setZoom(z);
    this.renderZoom();
    writeUrl({ zoom: z === "10m" ? null : z });
    this.pollRanges();
  }

  renderZoom() {
    for (const b of document.querySelectorAll("[data-zoom]")) {
      b.setAttribute("aria-pressed", String(b.dataset.zoom === this.zoom));
    }
  }

  select(sel) {
    this.selection = sel;
    writeUrl({ sel: sel ? `${sel[0]}-${sel[1]}` : null });
    this.renderSelection();
  }

  renderSelection() {
    const sel = this.selection;
    $("#export").disabled = !sel;
    $("#selection-info").textContent = sel
      ? `selected ${localTime(sel[0], true)} – ${localTime(sel[1])} (${formatDuration(sel[1] - sel[0])})`
      : "Select a range on the timeline (\"Select range\", or Shift + drag) to export it as MP4.";
    if (!$("#jump-at").value) $("#jump-at").value = toDatetimeLocal(Date.now() - 60e3);
  }

  async exportSelection() {
    if (!this.selection) return;
    const [a, b] = this.selection;
    const status = $("#export-status");
    status.textContent = "building the MP4…";
    try {
      const href = await exportUrl(this.stream, a, b, this.page.authOn);
      await checkExport(href);
      status.replaceChildren(el("a", { href, download: `${this.stream}-${a}.mp4`, id: "export-link" },
        `${this.stream} ${localTime(a)}–${localTime(b)}.mp4`));
      download(href, `${this.stream}-${a}.mp4`);
    } catch (e) {
      status.textContent = "";
      this.page.showError(e);
    }
  }

  async share() {
    const url = new URL(location.href);
    url.searchParams.delete("token");
    try {
      const token = urlToken() || (this.page.authOn && getToken()
        ? (await api.mintToken({ stream: this.stream, ttl_secs: SHARE_TTL_SECS, dvr: true, export: true })).token
        : "");
      if (token) url.searchParams.set("token", token);
    } catch (e) {
      this.page.showError(e);
      return;
    }
    const out = $("#share-url");
    out.hidden = false;
    out.value = url.href;
    out.select();
    navigator.clipboard?.writeText(url.href).catch(() => {});
  }

  /** What tests and the console may read. */
  snapshot() {
    const m = this.mode;
    return {
      stream: this.stream,
      sessionId: this.sessionId,
      mode: m ? m.mode : null,
      positionMs: this.position(),
      speed: m ? m.speed : null,
      paused: m ? m.paused : null,
      framesDecoded: this.video.framesDecoded,
      stats: this.video.last,
      ttffMs: this.video.ttffMs,
      ranges: this.ranges.map((r) => [r.start_ms, r.end_ms]),
      selection: this.selection,
    };
  }
}
