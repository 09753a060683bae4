// Renders the streams table from a list of StreamView objects: state, codec, size, fps, bitrate, viewers,
// recording, inputs, last error, and per-row actions (delegated to callbacks). Rows are keyed by stream id and
// updated in place every poll, so a button under the pointer (or with focus) stays the same element.

import { el, formatBitrate, formatBytes, localTime } from "./dom.js";
import { link } from "./url-state.js";

const COLUMNS = ["id", "state", "codec", "size", "fps", "bitrate", "viewers", "rec", "inputs", "err"];

function size(s) {
  return s.width && s.height ? `${s.width}×${s.height}` : "–";
}

function recording(s) {
  const r = s.recording;
  if (!s.should_record || !r) return "off";
  let text = `${r.state} · ${formatBytes(r.bytes)}`;
  if (r.oldest_ms) {
    const today = new Date(r.oldest_ms).toDateString() === new Date().toDateString();
    text += ` · from ${localTime(r.oldest_ms, !today)}`;
  }
  return text;
}

/** Builds the row of a stream once: cells by column name, and the action buttons. */
function newRow(id, actions) {
  const tr = el("tr", { "data-id": id });
  const cells = {};
  for (const c of COLUMNS) {
    cells[c] = el("td", { class: c });
    tr.append(cells[c]);
  }
  cells.id.append(el("a", { href: link({ stream: id }) }, id));
  const state = el("span");
  cells.state.append(state);
  cells.stateBadge = state;
  const buttons = el("td", { class: "actions" });
  tr.append(buttons);
  const row = { tr, cells, stream: null };
  for (const [label, fn] of Object.entries(actions)) {
    const b = el("button", { type: "button", class: label.toLowerCase() }, label);
    b.addEventListener("click", () => fn(row.stream));
    buttons.append(b);
  }
  return row;
}

function fill(row, s) {
  const c = row.cells;
  row.stream = s;
  c.stateBadge.className = `state ${s.state}`;
  c.stateBadge.textContent = s.state;
  c.codec.textContent = s.codec || "–";
  c.size.textContent = size(s);
  c.fps.textContent = s.fps ? s.fps.toFixed(1) : "–";
  c.bitrate.textContent = formatBitrate(s.bitrate_bps);
  c.viewers.textContent = String(s.viewers);
  c.rec.textContent = recording(s);
  c.rec.className = `rec ${s.should_record ? s.recording?.state : "off"}`;
  c.rec.title = s.recording?.last_error || "";
  c.inputs.textContent = s.inputs.map((i) => `${i.label}${i.label === s.active_input ? " ●" : ""}`).join(", ");
  c.inputs.title = s.inputs.map((i) => `${i.label} (priority ${i.priority}, ${i.transport}): ${i.url}`).join("\n");
  c.err.textContent = s.last_error || "";
  for (const n of ["fps", "bitrate", "viewers"]) c[n].classList.add("num");
}

const rowsOf = new WeakMap();

/** Shows one row per stream in `tbody`. `actions` maps a button label to `(stream) => void`. */
export function renderStreams(tbody, streams, actions) {
  let rows = rowsOf.get(tbody);
  if (!rows) { rows = new Map(); rowsOf.set(tbody, rows); }
  const seen = new Set();
  const ordered = streams.map((s) => {
    seen.add(s.source_id);
    let row = rows.get(s.source_id);
    if (!row) { row = newRow(s.source_id, actions); rows.set(s.source_id, row); }
    fill(row, s);
    return row.tr;
  });
  for (const id of [...rows.keys()]) if (!seen.has(id)) rows.delete(id);
  // Only reorder when needed: moving a row that holds focus would drop it.
  const current = [...tbody.children];
  if (current.length !== ordered.length || current.some((tr, i) => tr !== ordered[i])) tbody.replaceChildren(...ordered);
}
