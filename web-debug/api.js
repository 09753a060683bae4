// Thin client of the gateway's REST API. Every call returns parsed JSON or throws an Error whose message is the
// server's ErrorBody message. The admin token (needed when the gateway runs with one) is read from local storage
// and sent with every call: listing streams needs it too.

const TOKEN_KEY = "gateway.apiToken";

export function getToken() {
  return localStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(token) {
  if (token) localStorage.setItem(TOKEN_KEY, token);
  else localStorage.removeItem(TOKEN_KEY);
}

async function call(method, path, body) {
  const headers = {};
  if (body !== undefined) headers["content-type"] = "application/json";
  const token = getToken();
  if (token) headers["authorization"] = `Bearer ${token}`;
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (resp.status === 204) return null;
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (!resp.ok) {
    const msg = data && data.message ? data.message : `${resp.status} ${resp.statusText}`;
    throw new Error(msg);
  }
  return data;
}

export const api = {
  health: () => call("GET", "/health"),
  listStreams: () => call("GET", "/streams"),
  getStream: (id) => call("GET", `/streams/${encodeURIComponent(id)}`),
  createStream: (body) => call("POST", "/streams", body),
  patchStream: (id, body) => call("PATCH", `/streams/${encodeURIComponent(id)}`, body),
  deleteStream: (id) => call("DELETE", `/streams/${encodeURIComponent(id)}`),
};
