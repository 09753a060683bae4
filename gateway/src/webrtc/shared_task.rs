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
use publishers::{Feedback, OutFrame};
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

/// Moves `f`'s packets from `k` on into `packets` (counting the frames they end) until it holds [`BATCH`]; the
/// frame and its next packet if it was cut there.
fn fill(
    f: OutFrame,
    mut k: usize,
    packets: &mut Vec<rtp::Packet>,
    frames: &mut usize,
    payload_type: u8,
    ssrc: u32,
) -> Option<(OutFrame, usize)> {
    while k < f.len() && packets.len() < BATCH {
        let p = f.packet(k);
        *frames += usize::from(p.marker);
        packets.push(rtp_packet(p, payload_type, ssrc));
        k += 1;
    }
    (k < f.len()).then_some((f, k))
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
        // A frame cut at the end of a turn, and its next packet.
        let mut cut: Option<(OutFrame, usize)> = None;
        let why: &str = 'session: loop {
            // What the viewer core has to send, written through the interceptors and SRTP and sent, at most
            // BATCH packets at a time (a keyframe is cut across turns): a GOP from the cache is hundreds of
            // packets, and every queue it passes through (ours, the interceptors', the connection's) would keep a
            // burst's capacity for the session's lifetime.
            let mut turn = Turn::default();
            let mut pc_wake;
            loop {
                let mut frames = 0;
                let mut full = false;
                if let Some((f, k)) = cut.take() {
                    cut = fill(f, k, &mut packets, &mut frames, payload_type, ssrc);
                    full = packets.len() == BATCH;
                }
                while !full {
                    let Some(o) = core.poll_output() else {
                        break;
                    };
                    match o {
                        ViewerOutput::Frame(f) => {
                            cut = fill(f, 0, &mut packets, &mut frames, payload_type, ssrc);
                            full = packets.len() == BATCH;
                        }
                        ViewerOutput::Resend(p) => {
                            frames += usize::from(p.marker);
                            packets.push(rtp_packet(p, payload_type, ssrc));
                            full = packets.len() == BATCH;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_longer_than_a_turn_is_cut_and_goes_on_in_order() {
        let f = OutFrame {
            first_seq: 65530,
            timestamp: 9000,
            frame: Arc::new(hub::test_util::frame_of_sizes(&[1000; 40])),
        };
        // The turn already holds one packet (a retransmission, say): the frame fills the rest of it.
        let (mut packets, mut frames) = (Vec::new(), 0);
        packets.push(rtp_packet(f.packet(0), 96, 7));
        let cut = fill(f.clone(), 0, &mut packets, &mut frames, 96, 7);
        assert_eq!(packets.len(), BATCH);
        assert_eq!(frames, 0, "its marker is not in the turn yet");
        let (rest, k) = cut.expect("cut");
        assert_eq!(k, BATCH - 1);
        let seqs = |p: &[rtp::Packet]| -> Vec<u16> {
            p.iter().map(|p| p.header.sequence_number).collect()
        };
        assert_eq!(seqs(&packets[1..3]), [65530, 65531]);
        packets.clear();
        assert!(fill(rest, k, &mut packets, &mut frames, 96, 7).is_none());
        assert_eq!(packets.len(), 40 - (BATCH - 1));
        assert_eq!(
            packets[0].header.sequence_number,
            65530u16.wrapping_add(k as u16)
        );
        assert!(packets.last().unwrap().header.marker);
        assert_eq!(frames, 1);
    }
}
