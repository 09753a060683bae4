// Renders the streams table from a list of StreamView objects. Rows are rebuilt every poll; per-row actions are
// delegated to callbacks so other modules (a player, later) can hook in.

function el(tag, attrs = {}, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

export function formatBitrate(bps) {
  if (!bps) return "–";
  if (bps >= 1e6) return `${(bps / 1e6).toFixed(2)} Mbit/s`;
  return `${(bps / 1e3).toFixed(0)} kbit/s`;
}

function size(s) {
  return s.width && s.height ? `${s.width}×${s.height}` : "–";
}

/** Replaces the rows of `tbody` with one row per stream. `actions` maps a button label to `(stream) => void`. */
export function renderStreams(tbody, streams, actions) {
  const rows = streams.map((s) => {
    const tr = el("tr", { "data-id": s.source_id });
    tr.append(el("td", {}, s.source_id));
    const state = el("td");
    state.append(el("span", { class: `state ${s.state}` }, s.state));
    tr.append(state);
    const active = s.inputs.find((i) => i.label === s.active_input);
    tr.append(el("td", { title: active ? active.url : "" }, s.active_input || "–"));
    tr.append(el("td", {}, s.codec || "–"));
    tr.append(el("td", {}, size(s)));
    tr.append(el("td", { class: "num" }, s.fps ? s.fps.toFixed(1) : "–"));
    tr.append(el("td", { class: "num" }, formatBitrate(s.bitrate_bps)));
    tr.append(el("td", { class: "num" }, s.keyframe_interval_ms ? `${s.keyframe_interval_ms} ms` : "–"));
    tr.append(el("td", { class: "num" }, s.viewers));
    tr.append(el("td", { class: "num" }, s.drops));
    tr.append(el("td", { class: "num" }, s.reconnects));
    tr.append(el("td", { class: "err" }, s.last_error || ""));
    const buttons = el("td");
    for (const [label, fn] of Object.entries(actions)) {
      const b = el("button", { class: label.toLowerCase() }, label);
      b.addEventListener("click", () => fn(s));
      buttons.append(b);
    }
    tr.append(buttons);
    return tr;
  });
  tbody.replaceChildren(...rows);
}
