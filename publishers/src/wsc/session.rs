//! Sans-IO WSC-RTP session (WSC-RTP-PROTOCOL.md): WebSocket messages, UDP datagrams, frames from the session's
//! input and time in; messages, datagrams, input requests and a close out. No sockets, no clock: the caller
//! passes `now` and drains [`WscSession::poll_output`], then sleeps until [`WscSession::poll_timeout`].
//!
//! What the viewer sees (live or DVR, pacing, RTP numbering, NACK history, keyframe requests) is the shared
//! [`ViewerCore`]; this type is only the WSC-RTP edge of it: the proof that picks the UDP path, the WebSocket
//! fall-back, the messages. Media is held back (from the first keyframe on, like a GOP cache) until the path is
//! known: an address that passed the return-routability check of [`UdpPath`] (media then goes only there, and
//! stops when its consent runs out) or the fall-back to the WebSocket (no proof in time, the client asks, consent
//! ran out, or a version 1 or 2 client, which has no way to pass the check). The session never sends media to
//! an address that did not show it receives what is sent there.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hub::HubFrame;
use sources::ParameterSets;

use super::datagram::{self, AckKind};
use super::messages::{
    parse_client, ByeReason, ClientMessage, MessageError, ServerMessage, SessionModeName,
    StreamStateName, TokenHex, TransportMode,
};
use super::path::{PathOptions, UdpPath, Verdict};
use crate::retransmit::parse_feedback;
use crate::rtp_out::{OutFrame, OutPacket};
use crate::sdp;
use crate::viewer::{
    Command, InputEvent, InputRequest, ModeName, ModeReport, ModeView, StartAt, ViewerCore,
    ViewerOptions, ViewerOutput, ROOM_KEPT,
};

/// Payload type of WSC-RTP media.
pub const PAYLOAD_TYPE: u8 = 96;
/// WebSocket close code for a message over the size limit (RFC 6455 §7.4.1, "message too big").
pub const CLOSE_TOO_BIG: u16 = 1009;

/// The protocol version a client gets unless it asks for another.
pub const DEFAULT_VERSION: u32 = 1;
/// The newest protocol version: return-routability and consent on the UDP path (3), on top of DVR control
/// messages and the richer `session_mode` (2).
pub const LATEST_VERSION: u32 = 3;
/// The first version whose clients can pass the UDP path's check; older ones get the WebSocket transport.
pub const UDP_VERSION: u32 = 3;

/// Timeouts and limits of a session.
#[derive(Clone, Debug)]
pub struct WscOptions {
    /// The shared UDP port announced in `init`.
    pub udp_port: u16,
    pub proof_timeout: Duration,
    pub keepalive_interval: Duration,
    /// Media over UDP stops this long after the last keep-alive that echoed a recent nonce.
    pub consent_timeout: Duration,
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
            consent_timeout: PathOptions::default().consent_timeout,
            idle_timeout: Duration::from_millis(30_000),
            history_packets: crate::DEFAULT_HISTORY,
            max_text_len: 4096,
            pending_max_frames: 600,
        }
    }
}

/// Identity of a new session; random values come from the caller so the session stays deterministic.
#[derive(Clone)]
pub struct WscIdentity {
    pub session_id: String,
    pub token: [u8; 16],
    pub ssrc: u32,
    pub initial_seq: u16,
    pub stream_name: String,
    /// Protocol version announced in `init` (1 to [`LATEST_VERSION`]).
    pub version: u32,
    /// Seeds the nonces of the UDP path's check.
    pub nonce_seed: [u8; 32],
}

impl std::fmt::Debug for WscIdentity {
    // The token and the seed steer the session's media: never in a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WscIdentity")
            .field("session_id", &self.session_id)
            .field("ssrc", &self.ssrc)
            .field("stream_name", &self.stream_name)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Something that happened to the session.
pub enum Input<'a> {
    /// A WebSocket text message from the client.
    WsText(&'a str),
    /// A WebSocket binary message from the client (RTCP, in WebSocket transport).
    WsBinary(&'a [u8]),
    /// A UDP datagram routed to this session (by its token, or from its proved address).
    Datagram { from: SocketAddr, data: &'a [u8] },
    /// A frame from the session's input (the hub, or a DVR player), tagged with the generation of the
    /// [`InputRequest`] that input answers.
    Frame {
        generation: u64,
        frame: Arc<HubFrame>,
    },
    /// An event from the session's DVR player.
    PlayerEvent { generation: u64, event: InputEvent },
    /// A control command, checked against the recordings by the caller (from a client message, or the HTTP API).
    Command(Command),
    /// A control command the caller refused: tell the client.
    CommandRefused { code: &'static str, message: String },
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
    /// A control datagram (an answer to a proof or keep-alive).
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
    /// A frame's media datagrams, each this viewer's RTP header and the payload the hub shares (see
    /// [`OutFrame`]): one output for a frame, so a transport sending many viewers' copies at once handles no
    /// per-packet handle.
    RtpFrame {
        to: SocketAddr,
        frame: OutFrame,
        payload_type: u8,
        ssrc: u32,
    },
    /// Media now goes to this address: route its RTCP to this session (`None`: no address any more).
    UdpPeer(Option<SocketAddr>),
    /// Close the WebSocket with this code; the session is over.
    Close {
        code: u16,
    },
    /// Feed the session from this input from now on.
    Input(InputRequest),
    /// The client asked for this; check it against the recordings and hand it back as [`Input::Command`] (or
    /// refuse it with [`Input::CommandRefused`]).
    Control(Command),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    AwaitingProof {
        deadline: Instant,
    },
    /// Media goes to the address [`UdpPath`] holds, the one owner of it.
    Udp,
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
    udp: UdpPath,
    out: VecDeque<Output>,
    core: ViewerCore,
    params: Option<Arc<ParameterSets>>,
    state: Option<StreamStateName>,
    last_activity: Instant,
    errors: VecDeque<Instant>,
    closed: bool,
    /// Time from session start to the first media packet sent.
    first_packet_after: Option<Duration>,
}

impl WscSession {
    /// Starts a session at `start`: queues `init`, when known `sdp` and `stream_state`, the first
    /// `session_mode`, and the request for the first input.
    pub fn new(
        now: Instant,
        id: WscIdentity,
        opts: WscOptions,
        params: Option<Arc<ParameterSets>>,
        state: Option<StreamStateName>,
        start: StartAt,
    ) -> Self {
        let mut viewer = ViewerOptions::new(id.ssrc, PAYLOAD_TYPE, id.initial_seq);
        viewer.history_packets = opts.history_packets;
        viewer.pending_max_frames = opts.pending_max_frames;
        let mut s = WscSession {
            core: ViewerCore::new(now, viewer, start),
            path: Path::AwaitingProof {
                deadline: now + opts.proof_timeout,
            },
            udp: UdpPath::new(
                now,
                PathOptions {
                    consent_timeout: opts.consent_timeout,
                    ..PathOptions::default()
                },
                id.nonce_seed,
            ),
            started: now,
            out: VecDeque::new(),
            params: None,
            state: None,
            last_activity: now,
            errors: VecDeque::new(),
            closed: false,
            first_packet_after: None,
            id,
            opts,
        };
        s.send_msg(ServerMessage::Init {
            version: s.id.version,
            session_id: s.id.session_id.clone(),
            token: TokenHex(datagram::token_to_hex(&s.id.token)),
            udp_port: s.opts.udp_port,
            ssrc: s.id.ssrc,
            payload_type: PAYLOAD_TYPE,
            proof_timeout_ms: s.opts.proof_timeout.as_millis() as u64,
            keepalive_interval_ms: s.opts.keepalive_interval.as_millis() as u64,
            idle_timeout_ms: s.opts.idle_timeout.as_millis() as u64,
            consent_timeout_ms: (s.id.version >= UDP_VERSION)
                .then_some(s.opts.consent_timeout.as_millis() as u64),
        });
        if let Some(p) = params {
            s.announce_params(p);
        }
        if let Some(st) = state {
            s.announce_state(st);
        }
        if s.id.version < UDP_VERSION {
            let reason = format!(
                "UDP media needs protocol version {UDP_VERSION} (its return-routability check)"
            );
            s.use_websocket(now, reason);
        }
        s.drain_core(now);
        s
    }

    /// Where the viewer is: live or DVR, position, speed, pause.
    pub fn mode(&self) -> ModeView {
        self.core.mode()
    }

    /// The generation of the input the session reads now (frames of older ones are dropped).
    pub fn generation(&self) -> u64 {
        self.core.generation()
    }

    /// Whether the driver may hand over another frame from a DVR player.
    pub fn wants_frames(&self) -> bool {
        self.core.wants_frames()
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    pub fn stats(&self) -> WscStats {
        let c = self.core.stats();
        WscStats {
            packets_sent: c.packets_sent,
            bytes_sent: c.bytes_sent,
            retransmitted: c.retransmitted,
            nack_requests: c.nack_requests,
            frames_sent: c.frames_sent,
            first_packet_after: self.first_packet_after,
        }
    }

    /// The proved UDP address media goes to, if any.
    pub fn udp_peer(&self) -> Option<SocketAddr> {
        match self.path {
            Path::Udp => self.udp.peer(),
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

    /// The next output, left in the queue: a driver that sends only media (the gateway's one-pass forwarder)
    /// stops at anything else and leaves the rest, in order, to the session's own task.
    pub fn peek_output(&self) -> Option<&Output> {
        self.out.front()
    }

    /// When [`WscSession::handle_timeout`] must be called next.
    pub fn poll_timeout(&self, now: Instant) -> Option<Instant> {
        if self.closed {
            return None;
        }
        let idle = self.last_activity + self.opts.idle_timeout;
        let own = match self.path {
            Path::AwaitingProof { deadline } => deadline.min(idle),
            Path::Udp => self.udp.poll_timeout().map_or(idle, |c| c.min(idle)),
            Path::WebSocket => idle,
        };
        Some(self.core.poll_timeout(now).map_or(own, |t| t.min(own)))
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
                self.use_websocket(now, reason);
            }
        }
        if self.path == Path::Udp && self.udp.handle_timeout(now) {
            self.out.push_back(Output::UdpPeer(None));
            let reason = format!(
                "UDP consent expired: no keep-alive echoed a nonce for {} ms",
                self.opts.consent_timeout.as_millis()
            );
            self.use_websocket(now, reason);
        }
        if now.saturating_duration_since(self.last_activity) >= self.opts.idle_timeout {
            self.bye(ByeReason::IdleTimeout, 1000);
            return;
        }
        self.core.handle_timeout(now);
        self.drain_core(now);
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
            Input::Frame { generation, frame } => self.core.handle_frame(now, generation, frame),
            Input::PlayerEvent { generation, event } => {
                self.core.handle_event(now, generation, event)
            }
            Input::Command(cmd) => {
                // The same code the gateway answers for a command's own bad values (WSC-RTP-PROTOCOL.md §2.3).
                if let Err(e) = self.core.handle_command(now, cmd) {
                    self.send_msg(ServerMessage::Error {
                        code: "bad_request".into(),
                        message: e.to_string(),
                    });
                }
            }
            Input::CommandRefused { code, message } => self.send_msg(ServerMessage::Error {
                code: code.into(),
                message,
            }),
            Input::StreamState(st) => self.announce_state(st),
            Input::StreamDeleted => self.bye(ByeReason::StreamDeleted, 1000),
            Input::Shutdown => self.bye(ByeReason::ServerShutdown, 1001),
        }
        self.drain_core(now);
    }

    /// Carries out what the viewer core asks: media onto the current path, `sdp` and `session_mode` messages,
    /// input requests to the driver.
    fn drain_core(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        while let Some(o) = self.core.poll_output() {
            match o {
                ViewerOutput::Frame(f) => {
                    if self.first_packet_after.is_none() {
                        self.first_packet_after = Some(now.saturating_duration_since(self.started));
                    }
                    self.emit_frame(f);
                }
                ViewerOutput::Resend(p) => self.emit_media(p),
                ViewerOutput::Params(p) => self.announce_params(p),
                ViewerOutput::Mode(m) => self.announce_mode(m),
                ViewerOutput::Input(r) => self.out.push_back(Output::Input(r)),
            }
        }
    }

    fn announce_mode(&mut self, m: ModeReport) {
        // Live has no position, speed or pause of its own to report.
        let dvr = m.view.mode == ModeName::Dvr;
        self.send_msg(ServerMessage::SessionMode {
            mode: if dvr {
                SessionModeName::Dvr
            } else {
                SessionModeName::Live
            },
            position_ms: m.view.position_ms.filter(|_| dvr),
            speed: dvr.then_some(m.view.speed),
            paused: dvr.then_some(m.view.paused),
            reason: Some(m.reason.as_str().into()),
            detail: m.detail,
        });
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
                            self.use_websocket(now, "client request".into());
                        }
                    }
                    ClientMessage::Nack { seqs } => {
                        self.core.handle_feedback(now, crate::Feedback::Nack(seqs))
                    }
                    ClientMessage::KeyframeRequest => {
                        self.core.handle_feedback(now, crate::Feedback::Pli)
                    }
                    ClientMessage::Seek { position_ms } => self
                        .out
                        .push_back(Output::Control(Command::Seek { position_ms })),
                    ClientMessage::Live => self.out.push_back(Output::Control(Command::Live)),
                    ClientMessage::Speed { speed } => {
                        self.out.push_back(Output::Control(Command::Speed(speed)))
                    }
                    ClientMessage::Pause => self.out.push_back(Output::Control(Command::Pause)),
                    ClientMessage::Play => self.out.push_back(Output::Control(Command::Play)),
                }
            }
            Err(e) => {
                self.send_msg(ServerMessage::Error {
                    code: e.code().into(),
                    message: e.to_string(),
                });
                if matches!(e, MessageError::TooLarge(_)) {
                    // Past the stated limit the client is not speaking this protocol: say why, then close.
                    self.bye(ByeReason::ProtocolError, CLOSE_TOO_BIG);
                    return;
                }
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
        if !datagram::is_control(data) {
            if self.udp_peer() == Some(from) {
                self.on_rtcp(now, data);
            }
            return;
        }
        let Some(proof) = datagram::parse_proof(data) else {
            return;
        };
        if !datagram::token_eq(&proof.token, &self.id.token) || self.path == Path::WebSocket {
            return;
        }
        let Verdict::Answer { ack, kind, moved } = self.udp.on_proof(now, from, &proof) else {
            return;
        };
        if kind != AckKind::Challenge {
            // Only a datagram that passed the check counts as life: a forged one must not hold the session open.
            self.last_activity = now;
        }
        let was_awaiting = matches!(self.path, Path::AwaitingProof { .. });
        if moved {
            self.path = Path::Udp;
            self.out.push_back(Output::UdpPeer(Some(from)));
        }
        self.out.push_back(Output::Datagram {
            to: from,
            data: Bytes::copy_from_slice(&ack),
        });
        if was_awaiting && moved {
            self.send_msg(ServerMessage::Transport {
                mode: TransportMode::Udp,
                reason: None,
            });
            self.core.set_ready(now);
        }
    }

    fn on_rtcp(&mut self, now: Instant, data: &[u8]) {
        // Garbage is dropped: a client bug or a spoofed packet must not end the session.
        let Ok(feedback) = parse_feedback(data, self.id.ssrc) else {
            return;
        };
        for f in feedback {
            self.core.handle_feedback(now, f);
        }
    }

    fn use_websocket(&mut self, now: Instant, reason: String) {
        self.path = Path::WebSocket;
        self.send_msg(ServerMessage::Transport {
            mode: TransportMode::Websocket,
            reason: Some(reason),
        });
        self.core.set_ready(now);
    }

    /// A frame leaves as one output on UDP, where the forwarder writes its headers straight into a batch; the
    /// WebSocket takes it packet by packet, each in one buffer.
    fn emit_frame(&mut self, frame: OutFrame) {
        let (payload_type, ssrc) = (self.core.payload_type(), self.core.ssrc());
        match (self.path, self.udp.peer()) {
            (Path::Udp, Some(to)) => self.out.push_back(Output::RtpFrame {
                to,
                frame,
                payload_type,
                ssrc,
            }),
            (Path::WebSocket, _) => {
                for p in frame.packets() {
                    self.out
                        .push_back(Output::WsBinary(p.to_bytes(payload_type, ssrc)));
                }
            }
            (Path::Udp | Path::AwaitingProof { .. }, _) => {}
        }
    }

    /// Takes the packet by value: its payload handle moves on instead of being cloned and dropped.
    fn emit_media(&mut self, p: OutPacket) {
        let (pt, ssrc) = (self.core.payload_type(), self.core.ssrc());
        match (self.path, self.udp.peer()) {
            (Path::Udp, Some(peer)) => self.out.push_back(Output::Rtp {
                to: peer,
                header: p.header(pt, ssrc),
                payload: p.payload,
            }),
            (Path::WebSocket, _) => self.out.push_back(Output::WsBinary(p.to_bytes(pt, ssrc))),
            (Path::Udp | Path::AwaitingProof { .. }, _) => {}
        }
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
