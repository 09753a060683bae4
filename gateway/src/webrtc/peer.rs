//! Building one viewer's peer connection with the `webrtc` crate: exactly one codec (the payload type the offer
//! chose, see `publishers::webrtc::offer`), the sending half of the default interceptors (NACK responder, sender reports)
//! plus [`FeedbackTap`], ICE from configuration, and media sockets on the configured addresses and ports.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use publishers::webrtc::offer::ChosenCodec;
use rtc::ice::mdns::MulticastDnsMode;
use rtc::interceptor::{NackResponderBuilder, SenderReportBuilder, Slot};
use rtc::media_stream::MediaStreamTrack;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RtpCodecKind,
};
use tokio::sync::{mpsc, Notify};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::peer_connection::{
    configure_simulcast_extension_headers, MediaEngine, PeerConnection, PeerConnectionBuilder,
    PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceGatheringState, RTCIceServer,
    RTCPeerConnectionState, Registry, SettingEngineBuilder,
};

use super::feedback::{FeedbackCounts, FeedbackTap, SLOT};
use super::WebRtcError;
use crate::config::{PortRange, WebRtcConfig};

/// Packets the NACK responder keeps for retransmission: about 1.2 s of a 4 Mbit/s stream in 1 200-byte packets,
/// longer than any round trip a repair is still useful after.
const NACK_HISTORY: u16 = 512;

/// Hands out media ports from the configured range in turn, so consecutive sessions don't collide.
pub struct PortCursor {
    range: Option<PortRange>,
    next: AtomicU32,
}

impl PortCursor {
    pub fn new(range: Option<PortRange>) -> PortCursor {
        PortCursor {
            range,
            next: AtomicU32::new(0),
        }
    }

    /// The next port to try (0: any), and how many tries the range allows before it is known full.
    fn take(&self) -> u16 {
        match self.range {
            None => 0,
            Some(r) => {
                let len = u32::from(r.last - r.first) + 1;
                r.first + (self.next.fetch_add(1, Ordering::Relaxed) % len) as u16
            }
        }
    }

    fn attempts(&self) -> u32 {
        self.range
            .map_or(1, |r| (u32::from(r.last - r.first) + 1).min(64))
    }
}

/// What the connection tells its session.
struct Events {
    state: mpsc::UnboundedSender<RTCPeerConnectionState>,
    gathered: Arc<Notify>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Events {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            // notify_one keeps the wake-up if nobody waits yet.
            self.gathered.notify_one();
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.state.send(state);
    }
}

/// A built connection with its one outgoing track.
pub struct Peer {
    pub pc: Arc<dyn PeerConnection>,
    pub track: Arc<TrackLocalStaticRTP>,
    pub states: mpsc::UnboundedReceiver<RTCPeerConnectionState>,
    pub gathered: Arc<Notify>,
}

fn codec(chosen: &ChosenCodec) -> RTCRtpCodec {
    let fb = |typ: &str, parameter: &str| RTCPFeedback {
        typ: typ.to_owned(),
        parameter: parameter.to_owned(),
    };
    RTCRtpCodec {
        mime_type: chosen.mime_type.to_owned(),
        clock_rate: 90_000,
        channels: 0,
        // The offer's own fmtp, so the stack matches it; the answer's text is rewritten afterwards.
        sdp_fmtp_line: chosen.offer_fmtp.clone(),
        rtcp_feedback: vec![fb("nack", ""), fb("nack", "pli"), fb("ccm", "fir")],
    }
}

pub(super) fn media(
    chosen: &ChosenCodec,
    counts: &Arc<FeedbackCounts>,
) -> Result<(MediaEngine, Registry), WebRtcError> {
    let mut engine = MediaEngine::default();
    engine
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: codec(chosen),
                payload_type: chosen.payload_type,
            },
            RtpCodecKind::Video,
        )
        .map_err(|e| WebRtcError::Internal(format!("registering the codec: {e}")))?;
    // The gateway only sends: of the default interceptors it keeps the NACK responder (with a history of
    // NACK_HISTORY packets instead of 1 024, the largest part of a viewer's memory) and sender reports; the NACK
    // generator, receiver reports and TWCC receiver serve received media, of which there is none.
    configure_simulcast_extension_headers(&mut engine)
        .map_err(|e| WebRtcError::Internal(format!("header extensions: {e}")))?;
    let registry = Registry::new()
        .with(
            Slot::NackResponder,
            NackResponderBuilder::new().with_size(NACK_HISTORY).build(),
        )
        .with(Slot::SenderReport, SenderReportBuilder::new().build())
        .with(Slot::from(SLOT), FeedbackTap::new(counts.clone()));
    Ok((engine, registry))
}

/// The session's one outgoing video track: its SSRC is the one the viewer core writes.
pub(super) fn track(chosen: &ChosenCodec, stream_id: &str, ssrc: u32) -> MediaStreamTrack {
    MediaStreamTrack::new(
        format!("gateway-{stream_id}"),
        format!("video-{ssrc:08x}"),
        stream_id.to_owned(),
        RtpCodecKind::Video,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: codec(chosen),
            ..Default::default()
        }],
    )
}

/// Builds the connection and adds the track; nothing is negotiated yet.
pub async fn open(
    cfg: &WebRtcConfig,
    ports: &PortCursor,
    chosen: &ChosenCodec,
    stream_id: &str,
    ssrc: u32,
    counts: &Arc<FeedbackCounts>,
) -> Result<Peer, WebRtcError> {
    let ice_servers = if cfg.ice_servers.is_empty() {
        Vec::new()
    } else {
        vec![RTCIceServer {
            urls: cfg.ice_servers.clone(),
            username: cfg.turn_username.clone().unwrap_or_default(),
            credential: cfg.turn_credential.clone().unwrap_or_default(),
        }]
    };
    let mut last_error = None;
    for _ in 0..ports.attempts() {
        let (engine, registry) = media(chosen, counts)?;
        // mDNS would open a multicast socket per connection and query the LAN for viewers' `.local`
        // candidates; the viewer's connectivity checks give the same path as peer-reflexive candidates.
        let settings =
            SettingEngineBuilder::new().with_multicast_dns_mode(MulticastDnsMode::Disabled);
        let port = ports.take();
        let addrs: Vec<SocketAddr> = cfg
            .bind_ips
            .iter()
            .map(|ip| SocketAddr::new(*ip, port))
            .collect();
        let (state_tx, states) = mpsc::unbounded_channel();
        let gathered = Arc::new(Notify::new());
        let built = PeerConnectionBuilder::new()
            .with_configuration(
                RTCConfigurationBuilder::new()
                    .with_ice_servers(ice_servers.clone())
                    .build(),
            )
            .with_media_engine(engine)
            .with_setting_engine(settings.build())
            .with_interceptor_registry(registry)
            .with_handler(Arc::new(Events {
                state: state_tx,
                gathered: gathered.clone(),
            }))
            .with_udp_addrs(addrs)
            .build()
            .await;
        let pc: Arc<dyn PeerConnection> = match built {
            Ok(pc) => Arc::new(pc),
            Err(e) => {
                last_error = Some(e.to_string());
                continue;
            }
        };
        let track = Arc::new(TrackLocalStaticRTP::new(track(chosen, stream_id, ssrc)));
        if let Err(e) = pc.add_track(track.clone() as Arc<dyn TrackLocal>).await {
            let _ = pc.close().await;
            return Err(WebRtcError::Internal(format!("adding the track: {e}")));
        }
        return Ok(Peer {
            pc,
            track,
            states,
            gathered,
        });
    }
    Err(match (cfg.udp_ports, last_error) {
        (Some(r), _) => WebRtcError::NoPorts(r.to_string()),
        (None, e) => {
            WebRtcError::Internal(format!("opening media sockets: {}", e.unwrap_or_default()))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_go_round_the_range() {
        let c = PortCursor::new(Some(PortRange {
            first: 40000,
            last: 40002,
        }));
        let got: Vec<u16> = (0..4).map(|_| c.take()).collect();
        assert_eq!(got, vec![40000, 40001, 40002, 40000]);
        assert_eq!(c.attempts(), 3);
        let any = PortCursor::new(None);
        assert_eq!((any.take(), any.attempts()), (0, 1));
        let wide = PortCursor::new(Some(PortRange {
            first: 1024,
            last: 65535,
        }));
        assert_eq!(
            wide.attempts(),
            64,
            "a full range is not scanned port by port"
        );
    }
}
