// DOM and time helpers shared by every module. Text goes in with textContent only: nothing from the API, the URL
// or the user is ever parsed as markup.

/** A new element with attributes and, optionally, text. */
export function el(tag, attrs = {}, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? "" : String(v));
  }
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

export const $ = (sel, root = document) => root.querySelector(sel);

const pad = (n, w = 2) => String(n).padStart(w, "0");

/** Local time of an epoch-ms instant, `HH:MM:SS` (`withDate`: `YYYY-MM-DD HH:MM:SS`). */
export function localTime(ms, withDate = false) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "—";
  const d = new Date(ms);
  const t = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return withDate ? `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${t}` : t;
}

/** The value a `<input type="datetime-local" step="1">` shows for an instant, in local time. */
export function toDatetimeLocal(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** Epoch ms of a `datetime-local` value (read as local time), or NaN. */
export function fromDatetimeLocal(value) {
  return value ? new Date(value).getTime() : NaN;
}

export function formatBitrate(bps) {
  if (!bps) return "–";
  if (bps >= 1e6) return `${(bps / 1e6).toFixed(2)} Mbit/s`;
  return `${(bps / 1e3).toFixed(0)} kbit/s`;
}

export function formatBytes(n) {
  if (!n) return "0 B";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

/** A duration in ms as `1 h 5 min`, `3 min 20 s` or `12 s`. */
export function formatDuration(ms) {
  const s = Math.round(ms / 1000);
  if (s >= 3600) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  if (s >= 60) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${s} s`;
}
