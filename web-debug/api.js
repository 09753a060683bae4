// Thin client of the gateway's REST API. Every call returns parsed JSON or throws an ApiError whose message is the
// server's ErrorBody message (in words), with the HTTP status and error code beside it.
//
// Tokens: the admin token is kept in this browser only (localStorage when "remember" is ticked, else
// sessionStorage) and sent as `Authorization: Bearer` — never in a URL. A viewer token handed out with a link
// (`?token=` in the page's URL) is used for the viewer calls of its stream (WHEP, recordings, export).

const TOKEN_KEY = "gateway.apiToken";

export class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) || localStorage.getItem(TOKEN_KEY) || "";
}

/** Stores the admin token (empty: forgets it) in localStorage when `remember`, else for this tab only. */
export function setToken(token, remember = true) {
  localStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(TOKEN_KEY);
  if (token) (remember ? localStorage : sessionStorage).setItem(TOKEN_KEY, token);
}

/** The viewer token given in the page's URL, if any. */
export function urlToken() {
  return new URL(location.href).searchParams.get("token") || "";
}

/** The token for viewer calls: the URL's viewer token, else the admin token (the API accepts it there too). */
export function viewerToken() {
  return urlToken() || getToken();
}

async function errorOf(resp) {
  const text = await resp.text().catch(() => "");
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  const words = {
    401: "the gateway needs a token for this (or the one given is wrong)",
    403: "the token given does not allow this",
    404: "not found",
    503: "the gateway is busy, try again shortly",
  };
  const msg = data && data.message ? data.message : words[resp.status] || `${resp.status} ${resp.statusText}`;
  return new ApiError(resp.status, data && data.error ? data.error : "", msg, data);
}

/** One call; `token` overrides which token is sent (default: the admin token). */
export async function call(method, path, body, token = getToken()) {
  const headers = {};
  if (body !== undefined) headers["content-type"] = "application/json";
  if (token) headers["authorization"] = `Bearer ${token}`;
  let resp;
  try {
    resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, "network", `the gateway cannot be reached (${e.message})`, null);
  }
  if (!resp.ok) throw await errorOf(resp);
  if (resp.status === 204) return null;
  const text = await resp.text();
  return text ? JSON.parse(text) : null;
}

const s = (id) => encodeURIComponent(id);

export const api = {
  health: () => call("GET", "/health"),
  listStreams: () => call("GET", "/streams"),
  getStream: (id) => call("GET", `/streams/${s(id)}`),
  createStream: (body) => call("POST", "/streams", body),
  patchStream: (id, body) => call("PATCH", `/streams/${s(id)}`, body),
  deleteStream: (id) => call("DELETE", `/streams/${s(id)}`),
  mintToken: (body) => call("POST", "/tokens", body),
  recordings: (id, startMs, endMs) =>
    call("GET", `/streams/${s(id)}/recordings?start=${Math.max(0, Math.floor(startMs))}&end=${Math.ceil(endMs)}`,
      undefined, viewerToken()),
  // Session control: the session id is the capability, no token is sent.
  mode: (sid) => call("GET", `/sessions/${s(sid)}/mode`, undefined, ""),
  seek: (sid, positionMs) => call("POST", `/sessions/${s(sid)}/seek`, { position_ms: Math.round(positionMs) }, ""),
  live: (sid) => call("POST", `/sessions/${s(sid)}/live`, undefined, ""),
  speed: (sid, speed) => call("POST", `/sessions/${s(sid)}/speed`, { speed }, ""),
  pause: (sid) => call("POST", `/sessions/${s(sid)}/pause`, undefined, ""),
  play: (sid) => call("POST", `/sessions/${s(sid)}/play`, undefined, ""),
  sessionStats: (sid) => call("GET", `/sessions/${s(sid)}/stats`, undefined, ""),
};
