// The live view page: lists the streams, plays the chosen one over WHEP (also `?stream=<id>`, autoplay muted),
// shows live statistics once a second. `window.gatewayPlayer` exposes the connection and the last sample, for
// automated checks and the console.

import { api, getToken } from "./api.js";
import { WhepSession } from "./whep.js";
import { VideoStats } from "./video-stats.js";

const $ = (sel) => document.querySelector(sel);
const player = { session: null, pc: null, stats: null, last: null, timer: null, error: null };
window.gatewayPlayer = player;

function showError(err) {
  player.error = err ? String(err.message || err) : null;
  $("#error").hidden = !err;
  $("#error").textContent = player.error || "";
}

function renderStats(s) {
  const rows = [
    ["resolution", s.width ? `${s.width}×${s.height}` : "—"],
    ["fps", s.fps ? s.fps.toFixed(0) : "—"],
    ["bitrate", `${s.bitrateKbps.toFixed(0)} kbit/s`],
    ["frames decoded", s.framesDecoded],
    ["frames dropped", s.framesDropped],
    ["freezes", s.freezeCount],
    ["packets lost", s.packetsLost],
    ["NACKs / PLIs sent", `${s.nackCount} / ${s.pliCount}`],
    ["RTT", s.rttMs === null ? "—" : `${s.rttMs.toFixed(1)} ms`],
    ["connection", player.pc ? player.pc.connectionState : "—"],
  ];
  const tbody = $("#stats tbody");
  tbody.replaceChildren(
    ...rows.map(([k, v]) => {
      const tr = document.createElement("tr");
      const th = document.createElement("th");
      const td = document.createElement("td");
      th.textContent = k;
      td.textContent = String(v);
      td.className = "num";
      tr.append(th, td);
      return tr;
    }),
  );
}

async function stop() {
  clearInterval(player.timer);
  player.timer = null;
  const session = player.session;
  player.session = null;
  player.pc = null;
  $("#video").srcObject = null;
  if (session) await session.stop();
}

async function play(streamId) {
  await stop();
  showError(null);
  if (!streamId) return;
  const url = new URL(location.href);
  url.searchParams.set("stream", streamId);
  history.replaceState(null, "", url);
  // A viewer token in the page's URL (`?token=`, as handed out with a link), else the admin token of the main page.
  const token = new URL(location.href).searchParams.get("token") || getToken();
  const endpoint = new URL(`/streams/${encodeURIComponent(streamId)}/whep`, location.href).toString();
  const session = new WhepSession(endpoint, token);
  player.session = session;
  try {
    player.pc = await session.start((stream) => {
      const video = $("#video");
      video.srcObject = stream;
      video.play().catch(() => {});
    });
  } catch (e) {
    player.session = null;
    showError(e);
    return;
  }
  player.stats = new VideoStats(player.pc);
  player.timer = setInterval(async () => {
    if (!player.stats) return;
    try {
      player.last = await player.stats.sample();
      renderStats(player.last);
    } catch { /* the connection closed between ticks */ }
  }, 1000);
}

async function loadStreams(selected) {
  const select = $("#stream");
  try {
    const streams = await api.listStreams();
    select.replaceChildren(
      new Option("— pick a stream —", ""),
      ...streams.map((s) => new Option(`${s.source_id} (${s.state})`, s.source_id)),
    );
    if (selected) select.value = selected;
  } catch (e) {
    // A viewer token cannot list streams: offer the one in the URL.
    if (selected) select.replaceChildren(new Option(selected, selected));
    showError(e);
  }
}

async function init() {
  const wanted = new URL(location.href).searchParams.get("stream");
  await loadStreams(wanted);
  $("#stream").addEventListener("change", (ev) => play(ev.target.value));
  $("#stop").addEventListener("click", stop);
  $("#reload").addEventListener("click", () => loadStreams($("#stream").value));
  window.addEventListener("pagehide", () => { stop(); });
  if (wanted) play(wanted);
}

init();
