//! Sans-IO WSC-RTP session (WSC-RTP-PROTOCOL.md): WebSocket messages, UDP datagrams, hub frames and time in;
//! messages, datagrams and a close out. No sockets, no clock: the caller passes `now` and drains
//! [`WscSession::poll_output`], then sleeps until [`WscSession::poll_timeout`].
//!
//! Media is held back (from the first keyframe on, like a GOP cache) until the path is known: a valid UDP proof
//! (media then goes only to the proving address) or the fall-back to the WebSocket (no proof in time, or the
//! client asks). The session never sends to an address that did not present its token.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hub::HubFrame;
use sources::ParameterSets;

use super::datagram;
use super::messages::{
    parse_client, ByeReason, ClientMessage, ServerMessage, SessionModeName, StreamStateName,
    TransportMode,
};
use crate::retransmit::{parse_feedback, Feedback, SendHistory};
use crate::rtp_out::{OutPacket, RtpOutput};
use crate::sdp;

/// Payload type of WSC-RTP media.
pub const PAYLOAD_TYPE: u8 = 96;

/// Outputs the queue, and packets the frame buffer, keep room for once drained (a delta frame's packets and a few
/// messages); a keyframe or a joining GOP burst grows them for a moment only.
const ROOM_KEPT: usize = 64;

/// Timeouts and limits of a session.
#[derive(Clone, Debug)]
pub struct WscOptions {
    /// The shared UDP port announced in `init`.
    pub udp_port: u16,
    pub proof_timeout: Duration,
    pub keepalive_interval: Duration,
    pub idle_timeout: Duration,
    /// Sent packets kept for NACK repair.
    pub history_packets: usize,
    /// Largest accepted client text message.
    pub max_text_len: usize,
    /// Frames held while the path is unknown (from the last keyframe on).
    pub pending_max_frames: usize,
}

impl Default for WscOptions {
    fn default() -> Self {
        WscOptions {
            udp_port: 0,
            proof_timeout: Duration::from_millis(3000),
            keepalive_interval: Duration::from_millis(5000),
            idle_timeout: Duration::from_millis(30_000),
            history_packets: crate::DEFAULT_HISTORY,
            max_text_len: 4096,
            pending_max_frames: 600,
        }
    }
}

/// Identity of a new session; random values come from the caller so the session stays deterministic.
#[derive(Clone, Debug)]
pub struct WscIdentity {
    pub session_id: String,
    pub token: [u8; 16],
    pub ssrc: u32,
    pub initial_seq: u16,
    pub stream_name: String,
}

/// Something that happened to the session.
pub enum Input<'a> {
    /// A WebSocket text message from the client.
    WsText(&'a str),
    /// A WebSocket binary message from the client (RTCP, in WebSocket transport).
    WsBinary(&'a [u8]),
    /// A UDP datagram routed to this session (by its token, or from its proved address).
    Datagram { from: SocketAddr, data: &'a [u8] },
    /// A frame from the stream's hub.
    Frame(Arc<HubFrame>),
    /// The stream's ingest state changed.
    StreamState(StreamStateName),
    /// The stream was deleted (its hub closed).
    StreamDeleted,
    /// The gateway is stopping.
    Shutdown,
}

/// What the session wants done.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    WsText(String),
    WsBinary(Bytes),
    /// A control datagram (an ack).
    Datagram {
        to: SocketAddr,
        data: Bytes,
    },
    /// A media datagram in two pieces, sent as one (scatter/gather): this viewer's RTP header and the payload
    /// the hub shares with every viewer, so no viewer costs a copy of the stream.
    Rtp {
        to: SocketAddr,
        header: [u8; 12],
        payload: Bytes,
    },
    /// Media now goes to this address: route its RTCP to this session.
    UdpPeer(SocketAddr),
    /// Close the WebSocket with this code; the session is over.
    Close {
        code: u16,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    AwaitingProof { deadline: Instant },
    Udp { peer: SocketAddr },
    WebSocket,
}

/// Counters of one session.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WscStats {
    pub packets_sent: u64,
    pub bytes_sent: u64,
    pub retransmitted: u64,
    pub nack_requests: u64,
    pub frames_sent: u64,
    /// Time from session start to the first media packet sent.
    pub first_packet_after: Option<Duration>,
}

/// One viewer's WSC-RTP session.
pub struct WscSession {
    id: WscIdentity,
    opts: WscOptions,
    started: Instant,
    path: Path,
    out: VecDeque<Output>,
    rtp: RtpOutput,
    history: SendHistory,
    /// Packets of the frame being sent (kept to reuse its allocation).
    packets: Vec<OutPacket>,
    pending: Vec<Arc<HubFrame>>,
    last_keyframe: Option<Arc<HubFrame>>,
    params: Option<Arc<ParameterSets>>,
    state: Option<StreamStateName>,
    last_activity: Instant,
    errors: VecDeque<Instant>,
    closed: bool,
    stats: WscStats,
}

impl WscSession {
    /// Starts a session: queues `init`, `session_mode` and, when known, `sdp` and `stream_state`.
    pub fn new(
        now: Instant,
        id: WscIdentity,
        opts: WscOptions,
        params: Option<Arc<ParameterSets>>,
        state: Option<StreamStateName>,
    ) -> Self {
        let mut s = WscSession {
            rtp: RtpOutput::new(id.ssrc, PAYLOAD_TYPE, id.initial_seq),
            history: SendHistory::new(opts.history_packets),
            packets: Vec::new(),
            path: Path::AwaitingProof {
                deadline: now + opts.proof_timeout,
            },
            started: now,
            out: VecDeque::new(),
            pending: Vec::new(),
            last_keyframe: None,
            params: None,
            state: None,
            last_activity: now,
            errors: VecDeque::new(),
            closed: false,
            stats: WscStats::default(),
            id,
            opts,
        };
        s.send_msg(ServerMessage::Init {
            version: 1,
            session_id: s.id.session_id.clone(),
            token: datagram::token_to_hex(&s.id.token),
            udp_port: s.opts.udp_port,
            ssrc: s.id.ssrc,
            payload_type: PAYLOAD_TYPE,
            proof_timeout_ms: s.opts.proof_timeout.as_millis() as u64,
            keepalive_interval_ms: s.opts.keepalive_interval.as_millis() as u64,
            idle_timeout_ms: s.opts.idle_timeout.as_millis() as u64,
        });
        if let Some(p) = params {
            s.announce_params(p);
        }
        if let Some(st) = state {
            s.announce_state(st);
        }
        s.send_msg(ServerMessage::SessionMode {
            mode: SessionModeName::Live,
            position_ms: None,
            speed: None,
        });
        s
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    pub fn stats(&self) -> &WscStats {
        &self.stats
    }

    /// The proved UDP address media goes to, if any.
    pub fn udp_peer(&self) -> Option<SocketAddr> {
        match self.path {
            Path::Udp { peer } => Some(peer),
            _ => None,
        }
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        let out = self.out.pop_front();
        if out.is_none() && self.out.capacity() > ROOM_KEPT {
            // Joining flushes a whole GOP at once; don't keep room for one per viewer for the session's life.
            self.out.shrink_to(ROOM_KEPT);
        }
        out
    }

    /// When [`WscSession::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        let idle = self.last_activity + self.opts.idle_timeout;
        Some(match self.path {
            Path::AwaitingProof { deadline } => deadline.min(idle),
            _ => idle,
        })
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        if let Path::AwaitingProof { deadline } = self.path {
            if now >= deadline {
                let reason = format!(
                    "no UDP proof within {} ms",
                    self.opts.proof_timeout.as_millis()
                );
                self.use_websocket(reason);
            }
        }
        if now.saturating_duration_since(self.last_activity) >= self.opts.idle_timeout {
            self.bye(ByeReason::IdleTimeout, 1000);
        }
    }

    pub fn handle(&mut self, now: Instant, input: Input<'_>) {
        if self.closed {
            return;
        }
        match input {
            Input::WsText(text) => self.on_text(now, text),
            Input::WsBinary(data) => {
                if self.path == Path::WebSocket {
                    self.last_activity = now;
                    self.on_rtcp(now, data);
                }
            }
            Input::Datagram { from, data } => self.on_datagram(now, from, data),
            Input::Frame(f) => self.on_frame(now, f),
            Input::StreamState(st) => self.announce_state(st),
            Input::StreamDeleted => self.bye(ByeReason::StreamDeleted, 1000),
            Input::Shutdown => self.bye(ByeReason::ServerShutdown, 1001),
        }
    }

    fn send_msg(&mut self, m: ServerMessage) {
        self.out.push_back(Output::WsText(m.to_text()));
    }

    fn bye(&mut self, reason: ByeReason, code: u16) {
        self.send_msg(ServerMessage::Bye { reason });
        self.out.push_back(Output::Close { code });
        self.closed = true;
    }

    fn announce_params(&mut self, p: Arc<ParameterSets>) {
        if self.params.as_deref() == Some(&*p) {
            return;
        }
        let session_num =
            u64::from_str_radix(&self.id.session_id[..self.id.session_id.len().min(12)], 16)
                .unwrap_or(1);
        let sdp = sdp::session_description(
            session_num,
            &self.id.stream_name,
            &p,
            PAYLOAD_TYPE,
            self.id.ssrc,
        );
        self.params = Some(p);
        self.send_msg(ServerMessage::Sdp { sdp });
    }

    fn announce_state(&mut self, st: StreamStateName) {
        if self.state != Some(st) {
            self.state = Some(st);
            self.send_msg(ServerMessage::StreamState { state: st });
        }
    }

    fn on_text(&mut self, now: Instant, text: &str) {
        match parse_client(text, self.opts.max_text_len) {
            Ok(msg) => {
                self.last_activity = now;
                match msg {
                    ClientMessage::Ping { id } => self.send_msg(ServerMessage::Pong { id }),
                    ClientMessage::UseWebsocket => {
                        if self.path != Path::WebSocket {
                            self.use_websocket("client request".into());
                        }
                    }
                    ClientMessage::Nack { seqs } => self.retransmit(&seqs),
                    ClientMessage::KeyframeRequest => self.resend_keyframe(now),
                }
            }
            Err(e) => {
                self.send_msg(ServerMessage::Error {
                    code: e.code().into(),
                    message: e.to_string(),
                });
                self.errors.push_back(now);
                while self
                    .errors
                    .front()
                    .is_some_and(|t| now.saturating_duration_since(*t) > Duration::from_secs(10))
                {
                    self.errors.pop_front();
                }
                if self.errors.len() >= 3 {
                    self.bye(ByeReason::ProtocolError, 1008);
                }
            }
        }
    }

    fn on_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        if datagram::is_control(data) {
            let Some(proof) = datagram::parse_proof(data) else {
                return;
            };
            if !datagram::token_eq(&proof.token, &self.id.token) || self.path == Path::WebSocket {
                return;
            }
            self.last_activity = now;
            let was_awaiting = matches!(self.path, Path::AwaitingProof { .. });
            if self.udp_peer() != Some(from) {
                self.path = Path::Udp { peer: from };
                self.out.push_back(Output::UdpPeer(from));
            }
            self.out.push_back(Output::Datagram {
                to: from,
                data: Bytes::copy_from_slice(&datagram::build_ack(proof.kind)),
            });
            if was_awaiting {
                self.send_msg(ServerMessage::Transport {
                    mode: TransportMode::Udp,
                    reason: None,
                });
                self.flush_pending(now);
            }
        } else if self.udp_peer() == Some(from) {
            self.on_rtcp(now, data);
        }
    }

    fn on_rtcp(&mut self, now: Instant, data: &[u8]) {
        // Garbage is dropped: a client bug or a spoofed packet must not end the session.
        let Ok(feedback) = parse_feedback(data, self.id.ssrc) else {
            return;
        };
        for f in feedback {
            match f {
                Feedback::Nack(seqs) => self.retransmit(&seqs),
                Feedback::Pli => self.resend_keyframe(now),
            }
        }
    }

    fn use_websocket(&mut self, reason: String) {
        self.path = Path::WebSocket;
        self.send_msg(ServerMessage::Transport {
            mode: TransportMode::Websocket,
            reason: Some(reason),
        });
        self.flush_pending(self.last_activity);
    }

    fn on_frame(&mut self, now: Instant, f: Arc<HubFrame>) {
        self.announce_params(f.frame.params.clone());
        if f.frame.is_keyframe {
            self.last_keyframe = Some(f.clone());
        }
        if matches!(self.path, Path::AwaitingProof { .. }) {
            if f.frame.is_keyframe {
                self.pending.clear();
            }
            if (!self.pending.is_empty() || f.frame.is_keyframe)
                && self.pending.len() < self.opts.pending_max_frames
            {
                self.pending.push(f);
            }
            return;
        }
        self.send_frame(now, &f);
    }

    fn flush_pending(&mut self, now: Instant) {
        for f in std::mem::take(&mut self.pending) {
            self.send_frame(now, &f);
        }
    }

    fn send_frame(&mut self, now: Instant, f: &HubFrame) {
        let mut packets = std::mem::take(&mut self.packets);
        if self.rtp.write_frame(f, &mut packets) {
            self.stats.frames_sent += 1;
            if self.stats.first_packet_after.is_none() {
                self.stats.first_packet_after = Some(now.saturating_duration_since(self.started));
            }
            for p in packets.drain(..) {
                self.stats.packets_sent += 1;
                self.stats.bytes_sent += 12 + p.payload.len() as u64;
                self.emit_media(&p);
                self.history.push(p);
            }
        }
        packets.shrink_to(ROOM_KEPT);
        self.packets = packets;
    }

    fn emit_media(&mut self, p: &OutPacket) {
        let (pt, ssrc) = (self.rtp.payload_type(), self.rtp.ssrc());
        match self.path {
            Path::Udp { peer } => self.out.push_back(Output::Rtp {
                to: peer,
                header: p.header(pt, ssrc),
                payload: p.payload.clone(),
            }),
            Path::WebSocket => self.out.push_back(Output::WsBinary(p.to_bytes(pt, ssrc))),
            Path::AwaitingProof { .. } => {}
        }
    }

    fn retransmit(&mut self, seqs: &[u16]) {
        self.stats.nack_requests += 1;
        for &s in seqs {
            if let Some(p) = self.history.get(s).cloned() {
                self.stats.retransmitted += 1;
                self.emit_media(&p);
            }
        }
    }

    /// Picture loss: send the cached keyframe now, then nothing until the next live keyframe, so the decoder
    /// restarts from a clean picture at once instead of waiting a whole GOP.
    fn resend_keyframe(&mut self, now: Instant) {
        if matches!(self.path, Path::AwaitingProof { .. }) {
            return;
        }
        if let Some(k) = self.last_keyframe.clone() {
            self.rtp.discontinuity();
            self.send_frame(now, &k);
            self.rtp.discontinuity();
        }
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
