//! The task of one WebRTC session on the shared UDP port. It owns the session's sans-IO peer connection (behind a
//! lock only so the API can add trickled candidates and read statistics) and drives it directly: datagrams from
//! the shared socket's inbox and time go in; SRTP, DTLS and STUN datagrams come out and leave through the shared
//! socket; connection states and keyframe requests go to the session's viewer core (the same one WSC-RTP uses).
//!
//! Compared with the `webrtc` crate's driver ([`super::session_task`]), a packet goes from the viewer core through
//! the interceptors and SRTP to the socket in this one task, with no channel or other task between them, and a
//! frame's packets leave in one pass. Back-pressure: the sends wait when the socket's buffer is full; this task
//! then falls behind, its hub queue fills and the hub drops this viewer to the next keyframe.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hub::Hub;
use parking_lot::Mutex;
use publishers::viewer::ViewerOutput;
use publishers::Feedback;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::RTCPeerConnection;
use rtc::rtp;
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use tracing::debug;

use super::feedback::has_keyframe_request;
use super::session_task::{
    apply_command, feed, rtp_packet, start_input, Connection, SessionParts, STREAM_CHECK,
};
use super::shared_udp::{Datagram, Registration, SharedUdp};
use super::CONNECT_TIMEOUT;

/// Packets written to the connection before its output is drained and sent.
const BATCH: usize = 32;

pub struct SharedTask {
    pub parts: SessionParts,
    pub pc: Arc<Mutex<RTCPeerConnection>>,
    pub sender: RTCRtpSenderId,
    pub registration: Registration,
    pub udp: Arc<SharedUdp>,
}

/// What one turn of the connection produced for the session.
#[derive(Default)]
struct Turn {
    out: Vec<TaggedBytesMut>,
    states: Vec<RTCPeerConnectionState>,
    keyframe_requested: bool,
}

/// Drains everything the connection has for us.
fn drain(pc: &mut RTCPeerConnection, turn: &mut Turn) {
    while let Some(ev) = pc.poll_event() {
        if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(s) = ev {
            turn.states.push(s);
        }
    }
    while let Some(m) = pc.poll_read() {
        if let RTCMessage::RtcpPacket(_, packets) = &m.message {
            turn.keyframe_requested |= has_keyframe_request(packets);
        }
    }
    while let Some(m) = pc.poll_write() {
        turn.out.push(m);
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

impl SharedTask {
    pub async fn run(self) {
        let SharedTask {
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
            pc,
            sender,
            mut registration,
            udp,
        } = self;
        let (ssrc, payload_type) = (core.ssrc(), core.payload_type());
        let hub: Hub = inputs.hub().clone();
        let mut deadline = Some(Instant::now() + CONNECT_TIMEOUT);
        let mut connected = false;
        let mut deferred = None;
        let mut stream_check = tokio::time::interval(STREAM_CHECK);
        let mut packets: Vec<rtp::Packet> = Vec::with_capacity(BATCH);
        let why: &str = 'session: loop {
            // What the viewer core has to send, written through the interceptors and SRTP and sent, about
            // BATCH packets at a time (whole frames: a turn ends at the first frame that reaches it): a GOP from the cache is hundreds of packets, and every queue it passes
            // through (ours, the interceptors', the connection's) would keep a burst's capacity for the session's
            // lifetime.
            let mut turn = Turn::default();
            let mut pc_wake;
            loop {
                let mut frames = 0;
                let mut full = false;
                while let Some(o) = core.poll_output() {
                    match o {
                        ViewerOutput::Frame(f) => {
                            for p in f.packets() {
                                frames += usize::from(p.marker);
                                packets.push(rtp_packet(p, payload_type, ssrc));
                            }
                            if packets.len() >= BATCH {
                                full = true;
                                break;
                            }
                        }
                        ViewerOutput::Resend(p) => {
                            frames += usize::from(p.marker);
                            packets.push(rtp_packet(p, payload_type, ssrc));
                            if packets.len() >= BATCH {
                                full = true;
                                break;
                            }
                        }
                        // Until the connection is up nothing could be sent: the input opens then, so a viewer
                        // that never connects costs no hub subscription or player.
                        ViewerOutput::Input(req) if !connected => deferred = Some(req),
                        ViewerOutput::Input(req) => start_input(&mut inputs, &mut core, req),
                        // One codec, negotiated once: new parameter sets travel in-band before each keyframe.
                        ViewerOutput::Params(_) | ViewerOutput::Mode(_) => {}
                    }
                }
                pc_wake = {
                    let mut pc = pc.lock();
                    if !packets.is_empty() {
                        let now = Instant::now();
                        if let Some(mut s) = pc.rtp_sender(sender) {
                            for p in packets.drain(..) {
                                if let Err(e) = s.write_rtp(now, p) {
                                    debug!(session = %session_id, error = %e, "RTP packet not written");
                                }
                            }
                        }
                        packets.clear();
                    }
                    drain(&mut pc, &mut turn);
                    pc.poll_timeout()
                };
                if frames > 0 {
                    let mut l = live.lock();
                    for _ in 0..frames {
                        l.frame_sent();
                    }
                }
                if !turn.out.is_empty() {
                    udp.send(&turn.out).await;
                    turn.out.clear();
                }
                if !full {
                    break;
                }
            }
            for s in turn.states {
                let mut c = Connection {
                    live: &live,
                    connected: &mut connected,
                    deadline: &mut deadline,
                    deferred: &mut deferred,
                };
                if let Err(why) = c.on_state(s, &mut inputs, &mut core) {
                    break 'session why;
                }
            }
            if turn.keyframe_requested {
                core.handle_feedback(Instant::now(), Feedback::Pli);
                // The answer (if any) goes out on the next turn.
                continue;
            }
            live.lock().keyframe_requests_answered = core.stats().keyframe_requests_answered;
            control.entry.publish(core.mode());
            let now = Instant::now();
            let wake = core.poll_timeout(now);
            let wants_frames = core.wants_frames();
            tokio::select! {
                () = stop.cancelled() => break 'session "deleted",
                () = sleep_until(deadline) => {
                    break 'session if connected { "disconnected too long" } else { "not connected in time" };
                }
                d = registration.inbox.recv() => {
                    let Some(d) = d else { break 'session "socket closed" };
                    let mut pc = pc.lock();
                    if let Err(e) = pc.handle_read(tagged(d)) {
                        debug!(session = %session_id, error = %e, "datagram refused");
                    }
                    // Take whatever else already waits, under the same lock.
                    while let Ok(d) = registration.inbox.try_recv() {
                        if let Err(e) = pc.handle_read(tagged(d)) {
                            debug!(session = %session_id, error = %e, "datagram refused");
                        }
                    }
                }
                () = sleep_until(pc_wake) => {
                    if let Err(e) = pc.lock().handle_timeout(Instant::now()) {
                        debug!(session = %session_id, error = %e, "connection timer");
                    }
                }
                a = inputs.next(wants_frames) => if let Err(why) = feed(&mut core, a) { break 'session why },
                Some(msg) = control.commands.recv() => apply_command(&mut core, &mut inputs, msg),
                _ = stream_check.tick() => if hub.is_closed() { break 'session "stream closed" },
                () = sleep_until(wake) => core.handle_timeout(Instant::now()),
            }
        };
        debug!(stream = %hub.stream_id(), session = %session_id, why, "WebRTC session ended");
        drop(inputs);
        drop(control);
        // The DTLS close_notify, so the viewer knows at once.
        let mut turn = Turn::default();
        {
            let mut pc = pc.lock();
            let _ = pc.close();
            drain(&mut pc, &mut turn);
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), udp.send(&turn.out)).await;
        drop(registration);
        service.forget(&session_id);
        drop(permit);
        finished.cancel();
    }
}

/// A datagram from the shared port as the connection reads it.
fn tagged(d: Datagram) -> TaggedBytesMut {
    TaggedBytesMut {
        now: d.at,
        transport: TransportContext {
            local_addr: d.local,
            peer_addr: d.peer,
            ecn: None,
            transport_protocol: if d.tcp {
                TransportProtocol::TCP
            } else {
                TransportProtocol::UDP
            },
        },
        message: d.data,
    }
}
