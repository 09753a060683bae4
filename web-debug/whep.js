// A WHEP client (IETF WebRTC-HTTP Egress Protocol) for one RTCPeerConnection: POSTs the offer, applies the
// answer, trickles this browser's ICE candidates with PATCH on the session resource, DELETEs it on stop.
// Reusable by any page that plays a stream; it knows nothing about the page.

export class WhepSession {
  // `token`: a viewer (or admin) token for a gateway with auth on; sent on the POST only, since the session
  // resource itself is the capability afterwards.
  constructor(endpoint, token) {
    this.endpoint = endpoint;
    this.token = token || "";
    this.location = null;
    this.pending = [];
    this.pc = null;
  }

  // Starts playing into the returned RTCPeerConnection; `ontrack` gets the remote MediaStream.
  async start(ontrack) {
    const pc = new RTCPeerConnection();
    this.pc = pc;
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.ontrack = (ev) => ontrack(ev.streams[0] || new MediaStream([ev.track]));
    pc.onicecandidate = (ev) => this.trickle(ev.candidate);
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    const headers = { "content-type": "application/sdp" };
    if (this.token) headers["authorization"] = `Bearer ${this.token}`;
    const resp = await fetch(this.endpoint, {
      method: "POST",
      headers,
      body: offer.sdp,
    });
    const text = await resp.text();
    if (resp.status !== 201) {
      let msg = `${resp.status} ${resp.statusText}`;
      let code = "";
      try { ({ message: msg = msg, error: code = "" } = JSON.parse(text)); } catch { /* not JSON */ }
      const err = new Error(msg);
      err.status = resp.status;
      err.code = code;
      err.retryAfterSecs = Number(resp.headers.get("retry-after")) || 0;
      pc.close();
      throw err;
    }
    this.location = new URL(resp.headers.get("location"), this.endpoint).toString();
    await pc.setRemoteDescription({ type: "answer", sdp: text });
    this.flush();
    return pc;
  }

  /** The session id (the last part of `Location`): it controls the session (seek, live, speed, pause). */
  get sessionId() {
    return this.location ? decodeURIComponent(new URL(this.location).pathname.split("/").pop()) : null;
  }

  // Candidates gathered before the session resource exists are sent together once it does.
  trickle(candidate) {
    this.pending.push(candidate);
    if (this.location) this.flush();
  }

  async flush() {
    if (!this.pending.length || !this.location) return;
    const batch = this.pending.splice(0);
    const local = this.pc.localDescription.sdp;
    const ufrag = /a=ice-ufrag:(.*)/.exec(local);
    const pwd = /a=ice-pwd:(.*)/.exec(local);
    let frag = "";
    if (ufrag) frag += `a=ice-ufrag:${ufrag[1].trim()}\r\n`;
    if (pwd) frag += `a=ice-pwd:${pwd[1].trim()}\r\n`;
    frag += "m=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n";
    for (const c of batch) {
      frag += c ? `a=${c.candidate}\r\n` : "a=end-of-candidates\r\n";
    }
    try {
      await fetch(this.location, {
        method: "PATCH",
        headers: { "content-type": "application/trickle-ice-sdpfrag" },
        body: frag,
      });
    } catch { /* candidates are a help, not a must: the answer's and peer-reflexive ones suffice here */ }
  }

  async stop() {
    if (this.pc) this.pc.close();
    this.pc = null;
    if (this.location) {
      const loc = this.location;
      this.location = null;
      await fetch(loc, { method: "DELETE" }).catch(() => {});
    }
  }
}
