//! One WebRTC viewer joining the gateway's JSON endpoint the way a browser page does: a receive-only offer posted,
//! the answer applied, ICE and DTLS to connected, then media. Shared by the time-to-first-frame and fan-out
//! scenarios. The viewer talks through a [`MediaRelay`] that, after the first keyframe, counts the media
//! datagrams instead of delivering them, so the harness's receiving side stays cheap.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};
use testdata::webrtc_viewer::{starts_keyframe, Viewer, BROWSER_H264};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};

use crate::media_relay::{candidates_at, server_candidate, MediaRelay};

/// A connected viewer whose packets are counted by a task of its own.
pub struct Joined {
    pub viewer: Viewer,
    pub session_id: String,
    /// Offer posted → first keyframe complete (its marker packet arrived).
    pub first_frame: Duration,
    relay: MediaRelay,
}

impl Joined {
    /// Ends the session on the gateway and closes the peer.
    pub async fn leave(self, http: &reqwest::Client, base: &str) {
        drop(self.relay);
        let _ = http
            .delete(format!("{base}/sessions/{}", self.session_id))
            .send()
            .await;
        let _ = self.viewer.pc.close().await;
    }
}

/// Joins stream `id` and waits for the first complete keyframe; `packets` counts every RTP packet the gateway
/// sends to this viewer (delivered until that keyframe, counted and dropped after it).
pub async fn join(
    http: &reqwest::Client,
    base: &str,
    id: &str,
    packets: Arc<AtomicU64>,
) -> anyhow::Result<Joined> {
    let mut viewer = Viewer::new(BROWSER_H264).await;
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut relay = MediaRelay::bind(ip).await?;
    let offer = candidates_at(&viewer.offer, relay.server_facing()?);
    let posted = Instant::now();
    let r = http
        .post(format!("{base}/streams/{id}/webrtc"))
        .json(&json!({ "offer": offer }))
        .send()
        .await?;
    if r.status() != 201 {
        bail!("offer refused: {} {}", r.status(), r.text().await?);
    }
    let body: Value = r.json().await?;
    let session_id = body["session_id"].as_str().unwrap_or_default().to_owned();
    let answer = body["answer"].as_str().context("no answer")?.to_owned();
    let server = server_candidate(&answer, ip).context("no UDP candidate in the answer")?;
    relay.start(server, packets);
    let track = viewer
        .answer(candidates_at(&answer, relay.viewer_facing()?))
        .await;
    let first_frame = tokio::time::timeout(Duration::from_secs(15), first_keyframe(&track))
        .await
        .context("no keyframe within 15 s")?;
    let first_frame = first_frame.map(|()| posted.elapsed())?;
    relay.count_only();
    Ok(Joined {
        viewer,
        session_id,
        first_frame,
        relay,
    })
}

/// Reads until a keyframe has started and its last packet (marker) arrived.
async fn first_keyframe(track: &Arc<dyn TrackRemote>) -> anyhow::Result<()> {
    let mut in_keyframe = false;
    while let Some(ev) = track.poll().await {
        if let TrackRemoteEvent::OnRtpPacket(p) = ev {
            in_keyframe |= starts_keyframe(&p);
            if in_keyframe && p.header.marker {
                return Ok(());
            }
        }
    }
    bail!("the track ended before a keyframe")
}
