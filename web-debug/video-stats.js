// Live statistics of a playing RTCPeerConnection, from getStats(): resolution, fps, bitrate, frames decoded,
// packets lost, RTT. Each sample is computed against the previous one.

export class VideoStats {
  constructor(pc) {
    this.pc = pc;
    this.prev = null;
  }

  async sample() {
    const report = await this.pc.getStats();
    let inbound = null;
    let pair = null;
    report.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") inbound = s;
      if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pair = s;
    });
    const now = performance.now();
    const out = {
      width: inbound?.frameWidth ?? 0,
      height: inbound?.frameHeight ?? 0,
      fps: inbound?.framesPerSecond ?? 0,
      framesDecoded: inbound?.framesDecoded ?? 0,
      framesDropped: inbound?.framesDropped ?? 0,
      freezeCount: inbound?.freezeCount ?? 0,
      packetsLost: inbound?.packetsLost ?? 0,
      packetsReceived: inbound?.packetsReceived ?? 0,
      nackCount: inbound?.nackCount ?? 0,
      pliCount: inbound?.pliCount ?? 0,
      bytesReceived: inbound?.bytesReceived ?? 0,
      rttMs: pair?.currentRoundTripTime !== undefined ? pair.currentRoundTripTime * 1000 : null,
      bitrateKbps: 0,
    };
    if (this.prev && now > this.prev.at) {
      out.bitrateKbps = ((out.bytesReceived - this.prev.bytes) * 8) / (now - this.prev.at);
    }
    this.prev = { at: now, bytes: out.bytesReceived };
    return out;
  }
}
