//! A receive-only WebRTC peer (the `webrtc` crate the gateway uses) standing in for a browser: it offers chosen
//! H.264/H.265 formats, takes the gateway's answer, and hands out the received RTP packets. Used by the gateway's
//! WebRTC tests and the benchmark harness.

use std::sync::Arc;
use std::time::Duration;

use rtc::interceptor::Registry;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::{mpsc, Notify};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    register_default_interceptors, MediaEngine, PeerConnection, PeerConnectionBuilder,
    PeerConnectionEventHandler, RTCIceGatheringState, RTCPeerConnectionState,
    RTCSessionDescription,
};

/// H.264 formats a browser offers: (payload type, profile-level-id).
pub const BROWSER_H264: &[(u8, &str)] = &[
    (102, "42001f"),
    (108, "42e01f"),
    (116, "4d001f"),
    (118, "640032"),
];

struct Events {
    gathered: Arc<Notify>,
    connected: Arc<Notify>,
    track: mpsc::UnboundedSender<Arc<dyn TrackRemote>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Events {
    async fn on_ice_gathering_state_change(&self, s: RTCIceGatheringState) {
        if s == RTCIceGatheringState::Complete {
            self.gathered.notify_one();
        }
    }
    async fn on_connection_state_change(&self, s: RTCPeerConnectionState) {
        if s == RTCPeerConnectionState::Connected {
            self.connected.notify_one();
        }
    }
    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.track.send(track);
    }
}

/// A receive-only WebRTC peer standing in for a browser.
pub struct Viewer {
    pub pc: Arc<dyn PeerConnection>,
    gathered: Arc<Notify>,
    connected: Arc<Notify>,
    tracks: mpsc::UnboundedReceiver<Arc<dyn TrackRemote>>,
    pub offer: String,
}

impl Viewer {
    /// A viewer offering these H.264 profiles (packetization-mode 1).
    pub async fn new(h264: &[(u8, &str)]) -> Viewer {
        Viewer::offering(&h264_codecs(h264)).await
    }

    /// A viewer offering exactly these (payload type, MIME type, fmtp).
    pub async fn offering(codecs: &[(u8, &str, String)]) -> Viewer {
        let mut v = Viewer::build(codecs, "127.0.0.1:0").await;
        v.pc.add_transceiver_from_kind(
            RtpCodecKind::Video,
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Recvonly,
                ..Default::default()
            }),
        )
        .await
        .unwrap();
        let offer = v.pc.create_offer(None).await.unwrap();
        v.pc.set_local_description(offer).await.unwrap();
        v.offer = v.gathered_sdp().await;
        v
    }

    /// A viewer waiting for the server's offer (as Janus makes one), accepting the browser H.264 formats, with its
    /// media socket on `bind` (`IP:0`).
    pub async fn answering(bind: &str) -> Viewer {
        Viewer::build(&h264_codecs(BROWSER_H264), bind).await
    }

    /// Takes the server's offer and returns the answer, ICE candidates included.
    pub async fn answer_offer(&mut self, offer: &str) -> Result<String, rtc::shared::error::Error> {
        self.pc
            .set_remote_description(RTCSessionDescription::offer(offer.to_owned())?)
            .await?;
        let answer = self.pc.create_answer(None).await?;
        self.pc.set_local_description(answer).await?;
        Ok(self.gathered_sdp().await)
    }

    /// Waits for the connection and the remote track.
    pub async fn track(&mut self) -> Result<Arc<dyn TrackRemote>, &'static str> {
        tokio::time::timeout(Duration::from_secs(10), self.connected.notified())
            .await
            .map_err(|_| "not connected within 10 s")?;
        tokio::time::timeout(Duration::from_secs(10), self.tracks.recv())
            .await
            .map_err(|_| "no track within 10 s")?
            .ok_or("the peer connection ended")
    }

    async fn build(codecs: &[(u8, &str, String)], bind: &str) -> Viewer {
        let mut engine = MediaEngine::default();
        for (pt, mime, fmtp) in codecs {
            engine
                .register_codec(
                    RTCRtpCodecParameters {
                        rtp_codec: RTCRtpCodec {
                            mime_type: (*mime).into(),
                            clock_rate: 90_000,
                            channels: 0,
                            sdp_fmtp_line: fmtp.clone(),
                            rtcp_feedback: vec![],
                        },
                        payload_type: *pt,
                    },
                    RtpCodecKind::Video,
                )
                .unwrap();
        }
        let registry = register_default_interceptors(Registry::new(), &mut engine).unwrap();
        let gathered = Arc::new(Notify::new());
        let connected = Arc::new(Notify::new());
        let (track_tx, tracks) = mpsc::unbounded_channel();
        let pc: Arc<dyn PeerConnection> = Arc::new(
            PeerConnectionBuilder::new()
                .with_media_engine(engine)
                .with_interceptor_registry(registry)
                .with_handler(Arc::new(Events {
                    gathered: gathered.clone(),
                    connected: connected.clone(),
                    track: track_tx,
                }))
                .with_udp_addrs(vec![bind.to_owned()])
                .build()
                .await
                .unwrap(),
        );
        Viewer {
            pc,
            gathered,
            connected,
            tracks,
            offer: String::new(),
        }
    }

    /// The local description once ICE gathering completed.
    async fn gathered_sdp(&self) -> String {
        tokio::time::timeout(Duration::from_secs(5), self.gathered.notified())
            .await
            .expect("ICE gathering completes");
        self.pc.local_description().await.unwrap().sdp
    }

    /// Applies the gateway's answer and waits for the connection and its track.
    pub async fn answer(&mut self, answer: String) -> Arc<dyn TrackRemote> {
        self.pc
            .set_remote_description(RTCSessionDescription::answer(answer).unwrap())
            .await
            .unwrap();
        self.track().await.unwrap_or_else(|e| panic!("{e}"))
    }
}

/// (payload type, MIME type, fmtp) of H.264 formats, packetization-mode 1, from (payload type, profile-level-id).
fn h264_codecs(h264: &[(u8, &str)]) -> Vec<(u8, &'static str, String)> {
    h264.iter()
        .map(|(pt, profile)| {
            (
                *pt,
                "video/H264",
                format!(
                    "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id={profile}"
                ),
            )
        })
        .collect()
}

/// Spawns a reader of `track`'s RTP packets.
pub fn read_packets(track: Arc<dyn TrackRemote>) -> mpsc::UnboundedReceiver<rtp::Packet> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(ev) = track.poll().await {
            if let TrackRemoteEvent::OnRtpPacket(p) = ev {
                if tx.send(p).is_err() {
                    break;
                }
            }
        }
    });
    rx
}

/// An IDR slice or SPS starts in this packet (single NAL, STAP-A or the first FU-A fragment).
pub fn starts_keyframe(p: &rtp::Packet) -> bool {
    payload_starts_keyframe(&p.payload)
}

/// [`starts_keyframe`] for an H.264 RTP payload (RFC 6184) on its own.
pub fn payload_starts_keyframe(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    match first & 0x1f {
        5 | 7 => true,
        24 => payload.get(3).is_some_and(|b| matches!(b & 0x1f, 5 | 7)),
        28 => payload
            .get(1)
            .is_some_and(|b| b & 0x80 != 0 && b & 0x1f == 5),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyframe_starts_are_found_in_every_packetization() {
        assert!(payload_starts_keyframe(&[0x67, 1, 2])); // SPS alone
        assert!(payload_starts_keyframe(&[0x7c, 0x85, 9])); // first FU-A fragment of an IDR slice
        assert!(!payload_starts_keyframe(&[0x7c, 0x05, 9])); // a later fragment of it
        assert!(!payload_starts_keyframe(&[0x7c, 0x81, 9])); // FU-A of a delta slice
        assert!(payload_starts_keyframe(&[0x78, 0, 2, 0x67, 1])); // STAP-A starting with an SPS
        assert!(!payload_starts_keyframe(&[0x78, 0, 1, 0x68])); // STAP-A starting with a PPS
        assert!(!payload_starts_keyframe(&[0x41, 1]));
        assert!(!payload_starts_keyframe(&[]));
    }
}
