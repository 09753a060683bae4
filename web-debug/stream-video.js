// One stream playing into one <video> over WHEP: opens the session (live, or in the recording at `startMs`),
// retries while the stream has no picture yet (503 stream_not_ready), measures the time to the first decoded
// frame, and samples getStats(). The player and every grid tile use it.

import { WhepSession } from "./whep.js";
import { VideoStats } from "./video-stats.js";

const NOT_READY_TRIES = 20;

export class StreamVideo {
  /** `token`: a viewer or admin token for the WHEP call ("" with auth off). */
  constructor(video, streamId, token) {
    this.video = video;
    this.streamId = streamId;
    this.token = token;
    this.session = null;
    this.pc = null;
    this.stats = null;
    this.last = null;
    this.ttffMs = null;
    this.stopped = false;
  }

  get sessionId() {
    return this.session ? this.session.sessionId : null;
  }

  get framesDecoded() {
    return this.last ? this.last.framesDecoded : 0;
  }

  /** Starts playing (in the recording at `startMs` when given). Throws the gateway's error in words. */
  async start(startMs = null) {
    let url = `/streams/${encodeURIComponent(this.streamId)}/whep`;
    if (startMs !== null) url += `?start_ms=${Math.round(startMs)}`;
    const endpoint = new URL(url, location.href).toString();
    const begun = performance.now();
    for (let attempt = 1; ; attempt += 1) {
      const session = new WhepSession(endpoint, this.token);
      try {
        this.pc = await session.start((stream) => {
          this.video.srcObject = stream;
          this.video.play().catch(() => {});
        });
        this.session = session;
        break;
      } catch (e) {
        if (this.stopped) return;
        if (e.code !== "stream_not_ready" || attempt >= NOT_READY_TRIES) throw e;
        await new Promise((r) => setTimeout(r, Math.min(2, e.retryAfterSecs || 1) * 1000));
      }
    }
    if (this.stopped) { await this.stop(); return; }
    this.stats = new VideoStats(this.pc);
    const first = () => { this.ttffMs = performance.now() - begun; };
    if (this.video.requestVideoFrameCallback) this.video.requestVideoFrameCallback(first);
    else this.video.addEventListener("loadeddata", first, { once: true });
  }

  /** A fresh statistics sample (also kept as `last`), or null before the connection exists. */
  async sample() {
    if (!this.stats) return null;
    try {
      this.last = await this.stats.sample();
    } catch { /* the connection closed between ticks */ }
    return this.last;
  }

  async stop() {
    this.stopped = true;
    const session = this.session;
    this.session = null;
    this.stats = null;
    this.pc = null;
    this.video.srcObject = null;
    if (session) await session.stop();
  }
}
