// Wires the page: reads the view from the URL (streams, player, grid), asks for the admin token when the gateway
// has one and this browser does not, shows API errors in words, and exposes `window.gatewayPage`, a read-only
// view of what the page shows (for the console and automated checks).

import { api, getToken, setToken, urlToken } from "./api.js";
import { $ } from "./dom.js";
import { renderStreams } from "./streams.js";
import { StreamForm } from "./stream-form.js";
import { Player } from "./player.js";
import { Grid } from "./grid.js";
import { link, readUrl, writeUrl } from "./url-state.js";

const POLL_MS = 1000;

const page = {
  view: null,
  authOn: false,
  error: null,
  player: null,
  grid: null,
  streams: [],
  showError(err) {
    page.error = err ? String(err.message || err) : null;
    $("#error").hidden = !err;
    $("#error").textContent = page.error || "";
    if (err && err.status === 401 && !urlToken()) askToken("The token was refused: type the admin token.");
  },
};

window.gatewayPage = Object.freeze({
  get view() { return page.view; },
  get error() { return page.error; },
  get authOn() { return page.authOn; },
  get player() { return page.player ? page.player.snapshot() : null; },
  get tiles() { return page.grid ? page.grid.snapshot() : []; },
  get streams() { return page.streams.map((s) => s.source_id); },
});

function askToken(why) {
  const box = $("#token-box");
  box.hidden = false;
  $("#token-why").textContent = why;
  $("#token").focus();
}

function initToken() {
  $("#token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    setToken($("#token").value.trim(), $("#token-remember").checked);
    $("#token").value = "";
    $("#token-box").hidden = true;
    location.reload();
  });
  $("#token-forget").addEventListener("click", () => { setToken(""); location.reload(); });
  $("#token-open").addEventListener("click", () => askToken("The admin token is kept in this browser only."));
}

// ---- streams view ----

let form = null;

async function refreshStreams() {
  try {
    const streams = await api.listStreams();
    page.streams = streams;
    renderStreams($("#streams tbody"), streams, {
      Watch: (s) => location.assign(link({ stream: s.source_id })),
      Edit: (s) => { form.edit(s); writeUrl({ edit: s.source_id }); $("#stream-form").scrollIntoView(); },
      Delete: deleteStream,
    });
    $("#empty").hidden = streams.length > 0;
    if (page.error && page.error.startsWith("streams:")) page.showError(null);
  } catch (e) {
    page.showError(new Error(`streams: ${e.message}`));
    if (e.status === 401 && !urlToken()) askToken("This gateway needs its admin token to list and change streams.");
  }
}

async function deleteStream(s) {
  if (!confirm(`Delete stream "${s.source_id}" and stop its recording? Recorded segments stay until retention removes them.`)) return;
  try {
    await api.deleteStream(s.source_id);
    page.showError(null);
    await refreshStreams();
  } catch (e) {
    page.showError(e);
  }
}

async function submitStream(kind, id, body) {
  try {
    if (kind === "create") await api.createStream(body);
    else await api.patchStream(id, body);
    page.showError(null);
    form.reset();
    writeUrl({ edit: null });
    $("#form-status").textContent = kind === "create" ? `Stream ${id} added.` : `Stream ${id} saved.`;
    await refreshStreams();
  } catch (e) {
    page.showError(e);
  }
}

async function showStreams(state) {
  form = new StreamForm($("#stream-form"), {
    onSubmit: submitStream,
    onCancel: () => { form.reset(); writeUrl({ edit: null }); page.showError(null); },
  });
  await refreshStreams();
  if (state.edit) {
    const s = page.streams.find((x) => x.source_id === state.edit);
    if (s) form.edit(s);
    else page.showError(new Error(`no stream "${state.edit}" to edit`));
  }
  setInterval(refreshStreams, POLL_MS);
}

// ---- start ----

async function init() {
  initToken();
  const state = readUrl();
  page.view = state.view;
  for (const v of ["streams", "player", "grid"]) $(`#view-${v}`).hidden = v !== state.view;
  for (const a of document.querySelectorAll("nav [data-view]")) {
    a.setAttribute("aria-current", String(a.dataset.view === state.view));
  }
  try {
    const health = await api.health();
    page.authOn = health.auth;
    $("#health").textContent = `${health.status} · v${health.version}${health.auth ? " · auth on" : ""}`;
    if (health.auth && !getToken() && !urlToken()) {
      askToken("This gateway has an admin token: type it to manage streams (it stays in this browser).");
    }
  } catch (e) {
    page.showError(e);
  }
  if (state.view === "player") page.player = new Player(state, page);
  else if (state.view === "grid") page.grid = new Grid(state, page);
  else await showStreams(state);
  window.addEventListener("pagehide", () => {
    page.player?.stop();
    page.grid?.stop();
  });
}

init();
