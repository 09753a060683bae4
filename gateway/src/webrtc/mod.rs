//! WebRTC viewers: one peer connection per session, fed from the stream's hub, reachable over WHEP and the JSON
//! API (`api.rs`). By default every session shares one UDP port ([`shared_udp`]): the session's task drives the
//! sans-IO `rtc` core itself ([`shared_peer`], [`shared_task`]); with `stun:` servers configured it also announces
//! the port's server-reflexive addresses, asked from the shared sockets ([`reflexive`]), and with ICE-TCP on it
//! takes TCP connections at the same addresses and port ([`shared_tcp`]). With a port range
//! (`--webrtc-udp-ports`), or TURN (or `stuns:`) servers configured, each session instead gets the `webrtc`
//! crate's driver with sockets of its own ([`peer`], [`session_task`]), which gathers relay candidates.
//!
//! A session starts from the GOP cache once ICE and DTLS connect; keyframe requests (PLI, FIR) restart it from
//! the cache; NACKs are answered by the crate's NACK responder from what it sent. It ends when the viewer deletes
//! it, when the connection fails or closes, when it doesn't connect within [`CONNECT_TIMEOUT`], when it stays
//! `disconnected` for [`DISCONNECT_GRACE`], or when its stream goes away; then everything it held is freed: the
//! session entry, its task, its hub subscription, its sockets and its place in the viewer budget.

// Public for the fuzz target that reads viewers' RTCP as the peer connection does (fuzz/).
#[doc(hidden)]
pub mod feedback;
pub mod peer;
mod reflexive;
mod session_task;
mod shared_peer;
mod shared_task;
mod shared_tcp;
pub mod shared_udp;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use api_models::{WebRtcSessionStats, WebRtcSessionView};
use hub::Hub;
use parking_lot::Mutex;
use publishers::webrtc::candidates::{announce_public, announce_reflexive};
use publishers::webrtc::offer::{choose_codec, rewrite_fmtp, OfferError};
use publishers::webrtc::trickle::{TrickleError, TrickleFragment};
use tokio_util::sync::CancellationToken;
use tracing::debug;
use webrtc::peer_connection::{
    PeerConnection, RTCIceCandidateInit, RTCPeerConnection, RTCSessionDescription, StatsSelector,
};

use crate::config::WebRtcConfig;
use crate::playback::Playback;
use crate::session_control::SessionControls;
use crate::viewer_input::ViewerInputs;
use crate::viewers::{ReserveError, ViewerBudget};
use feedback::FeedbackCounts;
use peer::PortCursor;
use publishers::viewer::{StartAt, ViewerCore, ViewerOptions};
use session_task::{LiveState, SessionParts, SessionTask};
use shared_task::SharedTask;
use shared_udp::SharedUdp;
use sources::Codec;

/// A session that has not connected by then is removed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a `disconnected` connection may take to come back before the session ends.
pub const DISCONNECT_GRACE: Duration = Duration::from_secs(10);
/// Longest wait for host (and configured STUN/TURN) candidates before answering.
const GATHER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `DELETE` waits for the session to let go of its resources.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Why a WebRTC request failed.
#[derive(Debug, thiserror::Error)]
pub enum WebRtcError {
    #[error(transparent)]
    Offer(#[from] OfferError),
    #[error("stream {0:?} has not delivered a picture yet, so its codec is unknown; try again in a few seconds")]
    NotReady(String),
    #[error(transparent)]
    Reserve(#[from] ReserveError),
    #[error("no WebRTC session {0:?}")]
    SessionNotFound(String),
    #[error("the WebRTC stack refused the offer: {0}")]
    Refused(String),
    #[error("bad trickle-ICE fragment: {0}")]
    Trickle(#[from] TrickleError),
    #[error("ICE restart is not supported; start a new session")]
    IceRestart,
    #[error("every WebRTC media port in {0} is taken")]
    NoPorts(String),
    #[error("WebRTC: {0}")]
    Internal(String),
}

/// A created session: what the viewer needs to go on.
pub struct Created {
    pub session_id: String,
    pub answer: String,
}

/// One session as the service keeps it.
struct SessionEntry {
    id: String,
    stream_id: String,
    created: SystemTime,
    codec: String,
    remote_ufrag: Option<String>,
    conn: Conn,
    live: Arc<Mutex<LiveState>>,
    counts: Arc<FeedbackCounts>,
    stop: CancellationToken,
    finished: CancellationToken,
}

/// A session's connection, as the API reaches it.
enum Conn {
    /// The `webrtc` crate's driver, with sockets of its own.
    Driven(Arc<dyn PeerConnection>),
    /// The sans-IO core its task drives on the shared port (locked only briefly, never across an await).
    Shared(Arc<Mutex<RTCPeerConnection>>),
}

/// Where sessions' media sockets come from.
enum Sockets {
    Shared(Arc<SharedUdp>),
    PerSession(PortCursor),
}

/// Every WebRTC session of the gateway.
pub struct WebRtcService {
    config: WebRtcConfig,
    sockets: Sockets,
    budget: Arc<ViewerBudget>,
    playback: Arc<Playback>,
    controls: Arc<SessionControls>,
    sessions: Mutex<HashMap<String, Arc<SessionEntry>>>,
}

impl WebRtcService {
    /// Binds the shared UDP port (unless a port range, or ICE servers other than `stun:` ones, ask for per-session
    /// sockets) and starts asking the `stun:` servers how it looks from outside.
    pub fn start(
        config: WebRtcConfig,
        budget: Arc<ViewerBudget>,
        playback: Arc<Playback>,
        controls: Arc<SessionControls>,
    ) -> std::io::Result<Arc<WebRtcService>> {
        let sockets =
            if config.udp_ports.is_some() || reflexive::needs_own_sockets(&config.ice_servers) {
                Sockets::PerSession(PortCursor::new(config.udp_ports))
            } else {
                let udp = SharedUdp::bind(&config.bind_ips, config.udp_port, config.ice_tcp)?;
                let servers = reflexive::stun_servers(&config.ice_servers);
                if !servers.is_empty() {
                    tokio::spawn(reflexive::keep_asking(Arc::downgrade(&udp), servers));
                }
                Sockets::Shared(udp)
            };
        Ok(Arc::new(WebRtcService {
            sockets,
            config,
            budget,
            playback,
            controls,
            sessions: Mutex::new(HashMap::new()),
        }))
    }

    /// The UDP port every session shares, if they share one.
    pub fn shared_udp_port(&self) -> Option<u16> {
        match &self.sockets {
            Sockets::Shared(udp) => Some(udp.port()),
            Sockets::PerSession(_) => None,
        }
    }

    /// The codec a session negotiated, for checks that run before it exists (a start in the recording).
    pub fn codec_for(&self, hub: &Hub, offer: &str) -> Result<Codec, WebRtcError> {
        let params = hub
            .camera_params()
            .ok_or_else(|| WebRtcError::NotReady(hub.stream_id().to_owned()))?;
        // Refuses an offer that can't carry the stream; one that can takes the camera's codec.
        choose_codec(offer, &params)?;
        Ok(params.codec)
    }

    /// Answers `offer` for a viewer of `hub`'s stream and starts the session, live or at `start`; `dvr` says
    /// whether it may later leave live (the opener's right).
    pub async fn create(
        self: &Arc<Self>,
        hub: Hub,
        offer: &str,
        start: StartAt,
        dvr: bool,
    ) -> Result<Created, WebRtcError> {
        let arrived = Instant::now();
        let stream_id = hub.stream_id().to_owned();
        let params = hub
            .camera_params()
            .ok_or_else(|| WebRtcError::NotReady(stream_id.clone()))?;
        let chosen = choose_codec(offer, &params)?;
        let permit = self.budget.reserve()?;
        let ssrc: u32 = rand::random();
        let counts = Arc::new(FeedbackCounts::default());
        let codec_view = format!("{} {}", chosen.mime_type, chosen.answer_fmtp);
        let rewrite = |answer: &str| {
            announce_public(
                &rewrite_fmtp(answer, chosen.payload_type, &chosen.answer_fmtp),
                &self.config.nat_ips,
            )
        };
        let (conn, link, answer) = match &self.sockets {
            Sockets::Shared(udp) => {
                let p = shared_peer::open(udp, offer, &chosen, &stream_id, ssrc, &counts)?;
                let answer = announce_reflexive(&rewrite(&p.answer), &udp.reflexive());
                let pc = Arc::new(Mutex::new(p.pc));
                let link = Link::Shared {
                    pc: pc.clone(),
                    sender: p.sender,
                    registration: p.registration,
                    udp: udp.clone(),
                };
                (Conn::Shared(pc), link, answer)
            }
            Sockets::PerSession(ports) => {
                let peer =
                    peer::open(&self.config, ports, &chosen, &stream_id, ssrc, &counts).await?;
                let pc = peer.pc.clone();
                let answer = match negotiate(&pc, offer, &peer.gathered).await {
                    Ok(answer) => rewrite(&answer),
                    Err(e) => {
                        let _ = pc.close().await;
                        return Err(e);
                    }
                };
                (Conn::Driven(pc), Link::Driven(peer), answer)
            }
        };
        let id = format!("{:032x}", rand::random::<u128>());
        let live = Arc::new(Mutex::new(LiveState::new(arrived)));
        let entry = Arc::new(SessionEntry {
            id: id.clone(),
            stream_id,
            created: SystemTime::now(),
            codec: codec_view,
            remote_ufrag: ice_ufrag(offer),
            conn,
            live: live.clone(),
            counts,
            stop: CancellationToken::new(),
            finished: CancellationToken::new(),
        });
        self.sessions.lock().insert(id.clone(), entry.clone());
        // The offer's format was chosen to carry the camera's codec: that is the session's one codec.
        let codec = params.codec;
        let mut opts = ViewerOptions::new(ssrc, chosen.payload_type, rand::random());
        // The WebRTC stack answers NACKs from its own send buffer.
        opts.history_packets = 0;
        opts.codec = Some(codec);
        let core = ViewerCore::new(Instant::now(), opts, start);
        let control = self
            .controls
            .register(&id, &hub, Some(codec), dvr, core.mode());
        let inputs = ViewerInputs::new(hub, self.playback.clone(), Some(codec));
        let parts = SessionParts {
            service: self.clone(),
            session_id: id.clone(),
            inputs,
            core,
            control,
            live,
            stop: entry.stop.clone(),
            finished: entry.finished.clone(),
            permit,
        };
        match link {
            Link::Driven(peer) => tokio::spawn(SessionTask { parts, peer }.run()),
            Link::Shared {
                pc,
                sender,
                registration,
                udp,
            } => tokio::spawn(
                SharedTask {
                    parts,
                    pc,
                    sender,
                    registration,
                    udp,
                }
                .run(),
            ),
        };
        Ok(Created {
            session_id: id,
            answer,
        })
    }

    /// Adds the viewer's trickled candidates (WHEP `PATCH`). A candidate the ICE agent can't use (an mDNS name it
    /// can't resolve, say) is skipped, as RFC 8840 lets a receiver do: the answer's candidates and the
    /// peer-reflexive ones learnt from the viewer's checks still connect. Returns how many were added.
    pub async fn trickle(
        &self,
        session_id: &str,
        frag: TrickleFragment,
    ) -> Result<usize, WebRtcError> {
        let entry = self.entry(session_id)?;
        if let (Some(given), Some(known)) = (&frag.ice_ufrag, &entry.remote_ufrag) {
            if given != known {
                return Err(WebRtcError::IceRestart);
            }
        }
        let mut added = 0;
        for c in frag.candidates {
            let init = RTCIceCandidateInit {
                candidate: c.candidate,
                sdp_mid: c.mid,
                sdp_mline_index: Some(c.mline_index),
                username_fragment: frag.ice_ufrag.clone(),
                ..Default::default()
            };
            let result = match &entry.conn {
                Conn::Driven(pc) => pc.add_ice_candidate(init).await.map_err(|e| e.to_string()),
                Conn::Shared(pc) => pc
                    .lock()
                    .add_remote_candidate(init)
                    .map_err(|e| e.to_string()),
            };
            match result {
                Ok(()) => added += 1,
                Err(e) => debug!(session = %session_id, error = %e, "trickled candidate skipped"),
            }
        }
        Ok(added)
    }

    /// Ends a session and waits (briefly) until it has let go of everything.
    pub async fn delete(&self, session_id: &str) -> Result<(), WebRtcError> {
        let entry = self.entry(session_id)?;
        entry.stop.cancel();
        let _ = tokio::time::timeout(CLOSE_WAIT, entry.finished.cancelled()).await;
        Ok(())
    }

    /// The sessions watching `stream_id`, oldest first.
    pub fn list(&self, stream_id: &str) -> Vec<WebRtcSessionView> {
        let mut entries: Vec<Arc<SessionEntry>> = self
            .sessions
            .lock()
            .values()
            .filter(|e| e.stream_id == stream_id)
            .cloned()
            .collect();
        entries.sort_by_key(|e| e.created);
        entries.iter().map(|e| view(e)).collect()
    }

    /// Counters of one session: ours, and the WebRTC stack's (RTCP receiver reports included).
    pub async fn stats(&self, session_id: &str) -> Result<WebRtcSessionStats, WebRtcError> {
        let entry = self.entry(session_id)?;
        let report = match &entry.conn {
            Conn::Driven(pc) => pc.get_stats(Instant::now(), StatsSelector::None).await,
            Conn::Shared(pc) => pc.lock().get_stats(Instant::now(), StatsSelector::None),
        };
        let mut stats = WebRtcSessionStats {
            session: view(&entry),
            packets_sent: 0,
            bytes_sent: 0,
            retransmitted_packets_sent: 0,
            nack_count: 0,
            pli_count: 0,
            fir_count: 0,
            packets_lost: 0,
            fraction_lost: 0.0,
            jitter_ms: None,
            rtt_ms: None,
            frames_sent: 0,
            keyframe_requests_answered: 0,
            time_to_first_frame_ms: None,
        };
        for out in report.outbound_rtp_streams() {
            stats.packets_sent += out.sent_rtp_stream_stats.packets_sent;
            stats.bytes_sent += out.sent_rtp_stream_stats.bytes_sent;
        }
        let c = &entry.counts;
        stats.retransmitted_packets_sent = c.retransmitted_packets.load(Ordering::Relaxed);
        stats.nack_count = c.nacks.load(Ordering::Relaxed);
        stats.pli_count = c.plis.load(Ordering::Relaxed);
        stats.fir_count = c.firs.load(Ordering::Relaxed);
        if c.reports.load(Ordering::Relaxed) > 0 {
            stats.packets_lost = c.reported_lost.load(Ordering::Relaxed) as i64;
            stats.fraction_lost = c.reported_fraction.load(Ordering::Relaxed) as f64 / 256.0;
            stats.jitter_ms = Some(c.reported_jitter_ticks.load(Ordering::Relaxed) as f64 / 90.0);
        }
        let rtt_us = c.rtt_us.load(Ordering::Relaxed);
        if rtt_us > 0 {
            stats.rtt_ms = Some(rtt_us as f64 / 1000.0);
        }
        let live = entry.live.lock();
        stats.frames_sent = live.frames_sent;
        stats.keyframe_requests_answered = live.keyframe_requests_answered;
        stats.time_to_first_frame_ms = live.time_to_first_frame.map(|d| d.as_secs_f64() * 1000.0);
        Ok(stats)
    }

    /// Open WebRTC sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.lock().len()
    }

    /// Ends every session (gateway shutdown).
    pub async fn close_all(&self) {
        let entries: Vec<Arc<SessionEntry>> = self.sessions.lock().values().cloned().collect();
        for e in &entries {
            e.stop.cancel();
        }
        for e in entries {
            let _ = tokio::time::timeout(CLOSE_WAIT, e.finished.cancelled()).await;
        }
    }

    fn entry(&self, session_id: &str) -> Result<Arc<SessionEntry>, WebRtcError> {
        self.sessions
            .lock()
            .get(session_id)
            .cloned()
            .ok_or_else(|| WebRtcError::SessionNotFound(session_id.to_owned()))
    }

    /// Called by a session's task as it ends.
    fn forget(&self, session_id: &str) {
        self.sessions.lock().remove(session_id);
    }
}

/// A session's connection, as its task drives it.
enum Link {
    Driven(peer::Peer),
    Shared {
        pc: Arc<Mutex<RTCPeerConnection>>,
        sender: rtc::rtp_transceiver::RTCRtpSenderId,
        registration: shared_udp::Registration,
        udp: Arc<SharedUdp>,
    },
}

/// Offer in, answer (with every local candidate) out.
async fn negotiate(
    pc: &Arc<dyn PeerConnection>,
    offer: &str,
    gathered: &tokio::sync::Notify,
) -> Result<String, WebRtcError> {
    let offer = RTCSessionDescription::offer(offer.to_owned())
        .map_err(|e| WebRtcError::Refused(e.to_string()))?;
    pc.set_remote_description(offer)
        .await
        .map_err(|e| WebRtcError::Refused(e.to_string()))?;
    let answer = pc
        .create_answer(None)
        .await
        .map_err(|e| WebRtcError::Refused(e.to_string()))?;
    pc.set_local_description(answer)
        .await
        .map_err(|e| WebRtcError::Internal(format!("set_local_description: {e}")))?;
    // Host candidates come at once; a configured STUN or TURN server may take longer, and an answer without its
    // candidates would still work with trickle, so don't wait forever.
    let _ = tokio::time::timeout(GATHER_TIMEOUT, gathered.notified()).await;
    pc.local_description()
        .await
        .map(|d| d.sdp)
        .ok_or_else(|| WebRtcError::Internal("no local description after negotiation".into()))
}

/// The offer's session-level or first `a=ice-ufrag`.
fn ice_ufrag(sdp: &str) -> Option<String> {
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix("a=ice-ufrag:"))
        .map(str::to_owned)
}

fn view(e: &SessionEntry) -> WebRtcSessionView {
    let live = e.live.lock();
    WebRtcSessionView {
        session_id: e.id.clone(),
        source_id: e.stream_id.clone(),
        state: live.state.to_owned(),
        codec: e.codec.clone(),
        created_unix_ms: e
            .created
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        location: format!("/sessions/{}", e.id),
    }
}

#[cfg(test)]
mod tests {
    use super::ice_ufrag;

    #[test]
    fn finds_the_offers_ufrag() {
        let sdp = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=ice-ufrag:EsAw\r\na=ice-pwd:x\r\n";
        assert_eq!(ice_ufrag(sdp).as_deref(), Some("EsAw"));
        assert_eq!(ice_ufrag("v=0\r\n"), None);
    }
}
