//! The task of one WebRTC session: follows the connection's state, feeds the track from the hub once connected,
//! restarts from the GOP cache on a keyframe request, and frees everything when the session ends.
//!
//! Back-pressure: `write_rtp` waits when the connection's queue is full; this task then falls behind, its hub
//! queue fills and the hub drops this viewer to the next keyframe. No other viewer waits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hub::{Hub, HubFrame, Subscriber};
use parking_lot::Mutex;
use publishers::{OutPacket, RtpOutput};
use rtc::rtp;
use tokio_util::sync::CancellationToken;
use tracing::debug;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::peer_connection::RTCPeerConnectionState;

use super::feedback::has_keyframe_request;
use super::peer::Peer;
use super::{WebRtcService, CONNECT_TIMEOUT, DISCONNECT_GRACE};
use crate::viewers::SessionPermit;

/// Keyframe requests closer together than this are answered once: each answer resends the cached GOP.
const KEYFRAME_ANSWER_INTERVAL: Duration = Duration::from_millis(500);

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
}

fn state_name(s: RTCPeerConnectionState) -> &'static str {
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
    pub service: Arc<WebRtcService>,
    pub session_id: String,
    pub hub: Hub,
    pub peer: Peer,
    pub payload_type: u8,
    pub ssrc: u32,
    pub live: Arc<Mutex<LiveState>>,
    pub stop: CancellationToken,
    pub finished: CancellationToken,
    pub permit: SessionPermit,
}

/// The next frame of `sub`, or never when there is no subscription yet.
async fn next_frame(sub: &mut Option<Subscriber>) -> Option<Arc<HubFrame>> {
    match sub {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

impl SessionTask {
    pub async fn run(self) {
        let SessionTask {
            service,
            session_id,
            hub,
            mut peer,
            payload_type,
            ssrc,
            live,
            stop,
            finished,
            permit,
        } = self;
        let mut out = RtpOutput::new(ssrc, payload_type, rand::random());
        let mut parts: Vec<OutPacket> = Vec::new();
        let mut sub: Option<Subscriber> = None;
        let mut deadline = Some(tokio::time::Instant::now() + CONNECT_TIMEOUT);
        let mut track_events = true;
        let mut last_keyframe_answer: Option<Instant> = None;
        let track = peer.track.clone();
        let why: &str = 'session: loop {
            tokio::select! {
                () = stop.cancelled() => break 'session "deleted",
                s = peer.states.recv() => {
                    let Some(s) = s else { break 'session "connection gone" };
                    live.lock().state = state_name(s);
                    match s {
                        RTCPeerConnectionState::Connected => {
                            deadline = None;
                            if sub.is_none() {
                                // Subscribing now starts the viewer from the GOP cache.
                                sub = Some(hub.subscribe());
                            }
                        }
                        RTCPeerConnectionState::Disconnected => {
                            deadline = Some(tokio::time::Instant::now() + DISCONNECT_GRACE);
                        }
                        RTCPeerConnectionState::Failed => break 'session "connection failed",
                        RTCPeerConnectionState::Closed => break 'session "connection closed",
                        _ => {}
                    }
                }
                () = async { tokio::time::sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => {
                    break 'session if sub.is_none() { "not connected in time" } else { "disconnected too long" };
                }
                ev = track.poll(), if track_events => match ev {
                    Some(TrackLocalEvent::OnRtcpPacket(packets)) if has_keyframe_request(&packets) => {
                        let now = Instant::now();
                        let due = last_keyframe_answer
                            .is_none_or(|t| now.duration_since(t) >= KEYFRAME_ANSWER_INTERVAL);
                        if sub.is_some() && due {
                            last_keyframe_answer = Some(now);
                            sub = Some(hub.subscribe());
                            out.discontinuity();
                            live.lock().keyframe_requests_answered += 1;
                        }
                    }
                    Some(_) => {}
                    // Not bound (yet) or unbound: stop polling, the state events say what happens next.
                    None => track_events = false,
                },
                f = next_frame(&mut sub) => {
                    let Some(frame) = f else { break 'session "stream closed" };
                    parts.clear();
                    if !out.write_frame(&frame, &mut parts) {
                        continue;
                    }
                    for p in parts.drain(..) {
                        let packet = rtp::Packet {
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
                        };
                        if track.write_rtp(packet).await.is_err() {
                            break 'session "connection gone";
                        }
                    }
                    let mut l = live.lock();
                    l.frames_sent += 1;
                    if l.time_to_first_frame.is_none() {
                        l.time_to_first_frame = Some(l.created.elapsed());
                    }
                }
            }
        };
        debug!(stream = %hub.stream_id(), session = %session_id, why, "WebRTC session ended");
        drop(sub);
        let _ = peer.pc.close().await;
        service.forget(&session_id);
        drop(peer);
        drop(permit);
        finished.cancel();
    }
}
