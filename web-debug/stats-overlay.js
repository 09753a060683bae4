// The statistics box drawn over the player's video: what the browser receives (resolution, fps, bitrate, loss,
// RTT, time to first frame) and where the session is (mode, position, speed).

import { el, localTime } from "./dom.js";

export class StatsOverlay {
  constructor(root) {
    this.root = root;
    this.hidden = false;
  }

  toggle() {
    this.hidden = !this.hidden;
    this.root.hidden = this.hidden;
  }

  /** `s`: a VideoStats sample (or null); `ttffMs`: time to first frame; `mode`: the session's mode view. */
  render(s, ttffMs, mode, positionMs) {
    const lossPct = s && s.packetsReceived + s.packetsLost > 0
      ? (100 * s.packetsLost) / (s.packetsReceived + s.packetsLost) : 0;
    const rows = [
      ["resolution", s && s.width ? `${s.width}×${s.height}` : "—"],
      ["fps", s && s.fps ? s.fps.toFixed(0) : "—"],
      ["bitrate", s ? `${s.bitrateKbps.toFixed(0)} kbit/s` : "—"],
      ["loss", s ? `${s.packetsLost} (${lossPct.toFixed(1)} %)` : "—"],
      ["RTT", s && s.rttMs !== null ? `${s.rttMs.toFixed(1)} ms` : "—"],
      ["first frame", ttffMs === null ? "—" : `${ttffMs.toFixed(0)} ms`],
      ["frames", s ? s.framesDecoded : "—"],
      ["mode", mode ? `${mode.mode}${mode.paused ? " (paused)" : ""} ${mode.speed}×` : "—"],
      ["position", localTime(positionMs, true)],
    ];
    this.root.replaceChildren(...rows.map(([k, v]) => {
      const row = el("div", { "data-stat": k });
      row.append(el("span", { class: "k" }, k), el("span", { class: "v" }, v));
      return row;
    }));
  }
}
