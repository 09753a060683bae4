//! One viewer's peer connection on the shared UDP port: the sans-IO `rtc` core (`RTCPeerConnection`) that the
//! `webrtc` crate wraps, driven by the session's own task instead of a driver task with sockets of its own. Same
//! codec, interceptors ([`FeedbackTap`](super::feedback::FeedbackTap) included) and track as [`super::peer`]; the
//! local ICE credentials are chosen here so the shared socket can route the viewer's checks by ufrag before the
//! answer leaves, and the host candidates are the shared sockets' addresses.

use std::sync::Arc;
use std::time::Instant;

use publishers::webrtc::offer::ChosenCodec;
use rand::distributions::{Alphanumeric, DistString};
use rtc::ice::mdns::MulticastDnsMode;
use rtc::ice::tcp_type::TcpType;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, RTCIceCandidate, RTCIceCandidateInit,
};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::RTCRtpSenderId;

use super::feedback::FeedbackCounts;
use super::shared_udp::{Registration, SharedUdp};
use super::WebRtcError;

/// A negotiated connection, its sender, its answer and its place on the shared port.
pub struct SharedPeer {
    pub pc: RTCPeerConnection,
    pub sender: RTCRtpSenderId,
    pub answer: String,
    pub registration: Registration,
}

fn refused(e: impl std::fmt::Display) -> WebRtcError {
    WebRtcError::Refused(e.to_string())
}

/// Builds the connection, answers `offer` with the shared sockets as host candidates, and registers the session's
/// ufrag on `shared`.
pub fn open(
    shared: &Arc<SharedUdp>,
    offer: &str,
    chosen: &ChosenCodec,
    stream_id: &str,
    ssrc: u32,
    counts: &Arc<FeedbackCounts>,
) -> Result<SharedPeer, WebRtcError> {
    let (engine, registry) = super::peer::media(chosen, counts)?;
    let mut rng = rand::thread_rng();
    // RFC 8839: ufrag at least 4 characters, password at least 22; alphanumerics are in the ice-char set.
    let ufrag = Alphanumeric.sample_string(&mut rng, 16);
    let pwd = Alphanumeric.sample_string(&mut rng, 32);
    let settings = SettingEngineBuilder::new()
        .with_multicast_dns_mode(MulticastDnsMode::Disabled)
        .with_ice_credentials(ufrag.clone(), pwd)
        .build();
    let now = Instant::now();
    let mut pc = RTCPeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(engine)
        .with_setting_engine(settings)
        .with_interceptor_registry(registry)
        .build(now)
        .map_err(|e| WebRtcError::Internal(format!("building the connection: {e}")))?;
    let offer = RTCSessionDescription::offer(offer.to_owned()).map_err(refused)?;
    pc.set_remote_description(now, offer).map_err(refused)?;
    let sender = pc
        .add_track(super::peer::track(chosen, stream_id, ssrc))
        .map_err(|e| WebRtcError::Internal(format!("adding the track: {e}")))?;
    for local in shared.local_addrs() {
        add_host_candidate(&mut pc, local, TcpType::Unspecified)?;
        if shared.ice_tcp() {
            // The same address and port over TCP: the viewer connects to it (RFC 6544 passive candidate).
            add_host_candidate(&mut pc, local, TcpType::Passive)?;
        }
    }
    // Nothing else to gather: the answer says end-of-candidates.
    pc.add_local_candidate(RTCIceCandidateInit::default())
        .map_err(|e| WebRtcError::Internal(format!("end of candidates: {e}")))?;
    // Routes the viewer's checks here before it can learn the answer.
    let registration = shared.register(&ufrag);
    let answer = pc.create_answer(None).map_err(refused)?;
    pc.set_local_description(now, answer)
        .map_err(|e| WebRtcError::Internal(format!("set_local_description: {e}")))?;
    let answer = pc
        .local_description()
        .map(|d| d.sdp)
        .ok_or_else(|| WebRtcError::Internal("no local description after negotiation".into()))?;
    Ok(SharedPeer {
        pc,
        sender,
        answer,
        registration,
    })
}

/// Adds the host candidate at `local`: UDP, or TCP of `tcp_type` when that is not `Unspecified`.
fn add_host_candidate(
    pc: &mut RTCPeerConnection,
    local: std::net::SocketAddr,
    tcp_type: TcpType,
) -> Result<(), WebRtcError> {
    let network = if tcp_type == TcpType::Unspecified {
        "udp"
    } else {
        "tcp"
    };
    let failed = |e: &dyn std::fmt::Display| {
        WebRtcError::Internal(format!("{network} host candidate {local}: {e}"))
    };
    let candidate = CandidateHostConfig {
        base_config: CandidateConfig {
            network: network.to_owned(),
            address: local.ip().to_string(),
            port: local.port(),
            component: 1,
            ..Default::default()
        },
        tcp_type,
    }
    .new_candidate_host()
    .and_then(|c| RTCIceCandidate::from(&c).to_json())
    .map_err(|e| failed(&e))?;
    pc.add_local_candidate(candidate).map_err(|e| failed(&e))
}
