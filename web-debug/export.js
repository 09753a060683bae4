// Export of a selected range: checks the export with the gateway first (so an error shows in words, not as a
// JSON page), then downloads the MP4 through a link. The link carries a viewer token only when the gateway needs
// one: the page's own (from a shared link), or a short-lived one minted with the admin token — the admin token
// itself never goes into a URL.

import { api, getToken, urlToken, ApiError } from "./api.js";

const EXPORT_TOKEN_TTL_SECS = 600;

/** The download URL of `[startMs, endMs)` of `stream`. */
export async function exportUrl(stream, startMs, endMs, authOn) {
  const url = new URL(`/streams/${encodeURIComponent(stream)}/recordings/export`, location.href);
  url.searchParams.set("start", String(Math.floor(startMs)));
  url.searchParams.set("end", String(Math.ceil(endMs)));
  let token = urlToken();
  if (!token && authOn && getToken()) {
    token = (await api.mintToken({ stream, ttl_secs: EXPORT_TOKEN_TTL_SECS, export: true })).token;
  }
  if (token) url.searchParams.set("token", token);
  return url.pathname + url.search;
}

/** Asks for the first byte of the export: builds it, and turns a refusal into an ApiError in words. */
export async function checkExport(href) {
  const resp = await fetch(href, { headers: { range: "bytes=0-0" } });
  if (resp.ok) return;
  let body = null;
  try { body = await resp.json(); } catch { /* not JSON */ }
  throw new ApiError(resp.status, body?.error || "", body?.message || `export failed: ${resp.status}`, body);
}

/** Starts the browser's download of `href`. */
export function download(href, name) {
  const a = document.createElement("a");
  a.href = href;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
}
