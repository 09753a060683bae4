// Wires the debug page: polls GET /streams every second, renders the table, handles the add form, the delete
// buttons and the API token field.

import { api, getToken, setToken } from "./api.js";
import { renderStreams } from "./streams.js";

const $ = (sel) => document.querySelector(sel);
const POLL_MS = 1000;

function showError(err) {
  const p = $("#error");
  p.hidden = !err;
  p.textContent = err ? String(err.message || err) : "";
}

async function deleteStream(s) {
  if (!confirm(`Delete stream ${s.source_id}?`)) return;
  try {
    await api.deleteStream(s.source_id);
    await refresh();
  } catch (e) {
    showError(e);
  }
}

function watchStream(s) {
  location.href = `/debug/webrtc-client?stream=${encodeURIComponent(s.source_id)}`;
}

const rowActions = { Watch: watchStream, Delete: deleteStream };

async function refresh() {
  try {
    const [streams, health] = await Promise.all([api.listStreams(), api.health()]);
    renderStreams($("#streams tbody"), streams, rowActions);
    $("#empty").hidden = streams.length > 0;
    $("#health").textContent = `${health.status} · v${health.version} · ${health.streams} stream(s)`;
    showError(null);
  } catch (e) {
    showError(e);
  }
}

async function addStream(ev) {
  ev.preventDefault();
  const f = ev.target;
  const field = (name) => f.elements.namedItem(name).value.trim();
  const body = {
    source_id: field("source_id"),
    rtsp_inputs: [{ label: "main", url: field("url"), priority: 0, transport: field("transport") }],
  };
  try {
    await api.createStream(body);
    f.reset();
    await refresh();
  } catch (e) {
    showError(e);
  }
}

function init() {
  $("#add").addEventListener("submit", addStream);
  const token = $("#token");
  token.value = getToken();
  token.addEventListener("change", () => setToken(token.value.trim()));
  refresh();
  setInterval(refresh, POLL_MS);
}

init();
