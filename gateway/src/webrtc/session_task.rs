//! The task of one WebRTC session: follows the connection's state, drives the session's viewer core (the same
//! one WSC-RTP uses: live or DVR, pacing, numbering, keyframe-request policy) with frames from its input, keyframe
//! requests, control commands and time, writes what the core sends to the track, and frees everything when the
//! session ends.
//!
//! Back-pressure: `write_rtp` waits when the connection's queue is full; this task then falls behind, its hub
//! queue fills and the hub drops this viewer to the next keyframe. No other viewer waits. A DVR player waits on
//! its own bounded channel.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hub::Hub;
use parking_lot::Mutex;
use publishers::viewer::{InputRequest, ViewerCore, ViewerOutput};
use publishers::Feedback;
use publishers::OutPacket;
use rtc::rtp;
use tokio_util::sync::CancellationToken;
use tracing::debug;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::peer_connection::RTCPeerConnectionState;

use super::feedback::has_keyframe_request;
use super::peer::Peer;
use super::{WebRtcService, CONNECT_TIMEOUT, DISCONNECT_GRACE};
use crate::session_control::ControlMsg;
use crate::session_control::ControlRegistration;
use crate::viewer_input::{Arrival, ViewerInputs};
use crate::viewers::SessionPermit;

/// How often a session reading the recording looks whether its stream still exists.
pub(super) const STREAM_CHECK: Duration = Duration::from_millis(500);

/// What the API shows of a running session.
pub struct LiveState {
    pub state: &'static str,
    created: Instant,
    pub time_to_first_frame: Option<Duration>,
    pub frames_sent: u64,
    pub keyframe_requests_answered: u64,
}

impl LiveState {
    pub fn new(created: Instant) -> LiveState {
        LiveState {
            state: "new",
            created,
            time_to_first_frame: None,
            frames_sent: 0,
            keyframe_requests_answered: 0,
        }
    }

    /// A frame's last packet left.
    pub fn frame_sent(&mut self) {
        self.frames_sent += 1;
        if self.time_to_first_frame.is_none() {
            self.time_to_first_frame = Some(self.created.elapsed());
        }
    }
}

pub(super) fn state_name(s: RTCPeerConnectionState) -> &'static str {
    match s {
        RTCPeerConnectionState::New => "new",
        RTCPeerConnectionState::Connecting => "connecting",
        RTCPeerConnectionState::Connected => "connected",
        RTCPeerConnectionState::Disconnected => "disconnected",
        RTCPeerConnectionState::Failed => "failed",
        RTCPeerConnectionState::Closed => "closed",
        _ => "unknown",
    }
}

pub struct SessionTask {
    pub parts: SessionParts,
    pub peer: Peer,
}

/// What every WebRTC session's task owns, whichever way its connection is driven.
pub struct SessionParts {
    pub service: Arc<WebRtcService>,
    pub session_id: String,
    pub inputs: ViewerInputs,
    /// Built with the session (it answers `GET /sessions/{id}/mode` from the start).
    pub core: ViewerCore,
    pub control: ControlRegistration,
    pub live: Arc<Mutex<LiveState>>,
    pub stop: CancellationToken,
    pub finished: CancellationToken,
    pub permit: SessionPermit,
}

/// Switches the session's input as its core asked; a refusal (no viewer place for a player) goes back to the core.
/// The viewer core's packet as the `rtc`/`webrtc` stacks take it: this session's payload type and SSRC.
pub(super) fn rtp_packet(p: OutPacket, payload_type: u8, ssrc: u32) -> rtp::Packet {
    rtp::Packet {
        header: rtp::header::Header {
            version: 2,
            marker: p.marker,
            payload_type,
            sequence_number: p.seq,
            timestamp: p.timestamp,
            ssrc,
            ..Default::default()
        },
        payload: p.payload,
    }
}

pub(super) fn start_input(inputs: &mut ViewerInputs, core: &mut ViewerCore, req: InputRequest) {
    if let Some(event) = inputs.apply(req) {
        core.handle_event(Instant::now(), req.generation, event);
    }
}

impl SessionTask {
    pub async fn run(self) {
        let SessionTask {
            parts:
                SessionParts {
                    service,
                    session_id,
                    mut inputs,
                    mut core,
                    mut control,
                    live,
                    stop,
                    finished,
                    permit,
                },
            mut peer,
        } = self;
        let (ssrc, payload_type) = (core.ssrc(), core.payload_type());
        let hub: Hub = inputs.hub().clone();
        let mut deadline = Some(Instant::now() + CONNECT_TIMEOUT);
        let mut connected = false;
        let mut deferred = None;
        let mut track_events = true;
        let mut stream_check = tokio::time::interval(STREAM_CHECK);
        let track = peer.track.clone();
        let why: &str = 'session: loop {
            while let Some(o) = core.poll_output() {
                let media: Vec<OutPacket> = match o {
                    ViewerOutput::Frame(f) => f.packets().collect(),
                    ViewerOutput::Resend(p) => vec![p],
                    // Until the connection is up nothing could be sent: the input opens then, so a viewer that
                    // never connects costs no hub subscription or player.
                    ViewerOutput::Input(req) if !connected => {
                        deferred = Some(req);
                        continue;
                    }
                    ViewerOutput::Input(req) => {
                        start_input(&mut inputs, &mut core, req);
                        continue;
                    }
                    // One codec, negotiated once: new parameter sets travel in-band before each keyframe.
                    ViewerOutput::Params(_) | ViewerOutput::Mode(_) => continue,
                };
                for p in media {
                    let marker = p.marker;
                    let packet = rtp_packet(p, payload_type, ssrc);
                    if track.write_rtp(packet).await.is_err() {
                        break 'session "connection gone";
                    }
                    if marker {
                        live.lock().frame_sent();
                    }
                }
            }
            live.lock().keyframe_requests_answered = core.stats().keyframe_requests_answered;
            control.entry.publish(core.mode());
            let now = Instant::now();
            let wake = core.poll_timeout(now).map(tokio::time::Instant::from_std);
            let wants_frames = core.wants_frames();
            tokio::select! {
                () = stop.cancelled() => break 'session "deleted",
                s = peer.states.recv() => {
                    let Some(s) = s else { break 'session "connection gone" };
                    let mut c = Connection { live: &live, connected: &mut connected, deadline: &mut deadline, deferred: &mut deferred };
                    if let Err(why) = c.on_state(s, &mut inputs, &mut core) {
                        break 'session why;
                    }
                }
                () = async { tokio::time::sleep_until(deadline.expect("guarded").into()).await }, if deadline.is_some() => {
                    break 'session if connected { "disconnected too long" } else { "not connected in time" };
                }
                ev = track.poll(), if track_events => match ev {
                    Some(TrackLocalEvent::OnRtcpPacket(packets)) if has_keyframe_request(&packets) => {
                        core.handle_feedback(Instant::now(), Feedback::Pli);
                    }
                    Some(_) => {}
                    // Not bound (yet) or unbound: stop polling, the state events say what happens next.
                    None => track_events = false,
                },
                a = inputs.next(wants_frames) => if let Err(why) = feed(&mut core, a) { break 'session why },
                Some(msg) = control.commands.recv() => apply_command(&mut core, &mut inputs, msg),
                _ = stream_check.tick() => if hub.is_closed() { break 'session "stream closed" },
                () = async { tokio::time::sleep_until(wake.expect("guarded")).await }, if wake.is_some() => {
                    core.handle_timeout(Instant::now());
                }
            }
        };
        debug!(stream = %hub.stream_id(), session = %session_id, why, "WebRTC session ended");
        drop(inputs);
        drop(control);
        let _ = peer.pc.close().await;
        service.forget(&session_id);
        drop(peer);
        drop(permit);
        finished.cancel();
    }
}

/// Hands the core what its input delivered; `Err` says why the session ends (the stream closed).
pub(super) fn feed(core: &mut ViewerCore, a: Arrival) -> Result<(), &'static str> {
    match a {
        Arrival::Frame { generation, frame } => {
            core.handle_frame(Instant::now(), generation, frame)
        }
        Arrival::Event { generation, event } => {
            core.handle_event(Instant::now(), generation, event)
        }
        Arrival::StreamClosed => return Err("stream closed"),
    }
    Ok(())
}

/// Carries out a session-control command (opening the input it needs first) and answers with the new mode.
pub(super) fn apply_command(core: &mut ViewerCore, inputs: &mut ViewerInputs, msg: ControlMsg) {
    let result = inputs.prepare(&msg.cmd, &core.mode()).map(|()| {
        // Checked by the caller; the core refuses nothing that passed `check`.
        let _ = core.handle_command(Instant::now(), msg.cmd);
        core.mode()
    });
    let _ = msg.reply.send(result);
}

/// A connection's state as its session task tracks it.
pub(super) struct Connection<'a> {
    pub live: &'a Mutex<LiveState>,
    pub connected: &'a mut bool,
    /// When the session ends if the connection is not (back) up by then.
    pub deadline: &'a mut Option<Instant>,
    /// The input the core asked for before the connection could carry media.
    pub deferred: &'a mut Option<InputRequest>,
}

impl Connection<'_> {
    /// Follows a state change: the input opens once connected; `Err` says why the session ends.
    pub(super) fn on_state(
        &mut self,
        s: RTCPeerConnectionState,
        inputs: &mut ViewerInputs,
        core: &mut ViewerCore,
    ) -> Result<(), &'static str> {
        self.live.lock().state = state_name(s);
        match s {
            RTCPeerConnectionState::Connected => {
                *self.deadline = None;
                if !*self.connected {
                    *self.connected = true;
                    if let Some(req) = self.deferred.take() {
                        start_input(inputs, core, req);
                    }
                    core.set_ready(Instant::now());
                }
            }
            RTCPeerConnectionState::Disconnected => {
                *self.deadline = Some(Instant::now() + DISCONNECT_GRACE);
            }
            RTCPeerConnectionState::Failed => return Err("connection failed"),
            RTCPeerConnectionState::Closed => return Err("connection closed"),
            _ => {}
        }
        Ok(())
    }
}
