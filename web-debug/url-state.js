// The page's state in its URL, so any view can be shared as a link:
//   /debug/                                   streams list (`edit=ID`: the form open on that stream)
//   /debug/?stream=ID[&t=EPOCH_MS][&speed=S][&paused=1][&zoom=1h][&sel=START-END]   the player (no `t`: live)
//   /debug/?view=grid&layout=2x2[&streams=a,b,c,d]                                  the grid
// `token=` (a viewer token handed out with a link) is kept as it is.

export const SPEEDS = [0.25, 0.5, 1, 2, 4, 8];
export const ZOOMS = { "1m": 60e3, "10m": 600e3, "1h": 3600e3, "6h": 6 * 3600e3, "24h": 24 * 3600e3 };
export const LAYOUTS = { "2x2": 2, "3x3": 3 };

const num = (v) => (v === null || v === "" || !Number.isFinite(Number(v)) ? null : Number(v));

/** The state the URL describes. */
export function readUrl(href = location.href) {
  const q = new URL(href).searchParams;
  const stream = q.get("stream");
  const view = q.get("view") === "grid" ? "grid" : stream ? "player" : "streams";
  const speed = num(q.get("speed"));
  const sel = /^(\d+)-(\d+)$/.exec(q.get("sel") || "");
  return {
    view,
    stream,
    t: num(q.get("t")),
    speed: SPEEDS.includes(speed) ? speed : 1,
    paused: q.get("paused") === "1",
    zoom: q.get("zoom") in ZOOMS ? q.get("zoom") : "10m",
    sel: sel ? [Number(sel[1]), Number(sel[2])] : null,
    layout: q.get("layout") in LAYOUTS ? q.get("layout") : "2x2",
    streams: (q.get("streams") || "").split(",").filter(Boolean),
    edit: q.get("edit"),
  };
}

/** Sets (or, for null/undefined/false, removes) URL parameters without reloading. */
export function writeUrl(params, push = false) {
  const url = new URL(location.href);
  for (const [k, v] of Object.entries(params)) {
    if (v === null || v === undefined || v === false || v === "") url.searchParams.delete(k);
    else url.searchParams.set(k, v === true ? "1" : String(v));
  }
  if (url.href === location.href) return;
  if (push) history.pushState(null, "", url);
  else history.replaceState(null, "", url);
}

/** A link to another view, keeping only the viewer token of this page. */
export function link(params) {
  const url = new URL("/debug/", location.href);
  const token = new URL(location.href).searchParams.get("token");
  for (const [k, v] of Object.entries(params)) {
    if (v !== null && v !== undefined && v !== "") url.searchParams.set(k, String(v));
  }
  if (token) url.searchParams.set("token", token);
  return url.pathname + url.search;
}
