//! One WebRTC viewer joining the gateway's JSON endpoint the way a browser page does: a receive-only offer posted,
//! the answer applied, ICE and DTLS to connected, then media. Shared by the time-to-first-frame and fan-out
//! scenarios.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};
use testdata::webrtc_viewer::{starts_keyframe, Viewer, BROWSER_H264};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};

/// A connected viewer whose packets are counted by a task of its own.
pub struct Joined {
    pub viewer: Viewer,
    pub session_id: String,
    /// Offer posted → first keyframe complete (its marker packet arrived).
    pub first_frame: Duration,
    reader: tokio::task::JoinHandle<()>,
}

impl Joined {
    /// Ends the session on the gateway and closes the peer.
    pub async fn leave(self, http: &reqwest::Client, base: &str) {
        self.reader.abort();
        let _ = http
            .delete(format!("{base}/sessions/{}", self.session_id))
            .send()
            .await;
        let _ = self.viewer.pc.close().await;
    }
}

/// Joins stream `id` and waits for the first complete keyframe; `packets` then counts every RTP packet received.
pub async fn join(
    http: &reqwest::Client,
    base: &str,
    id: &str,
    packets: Arc<AtomicU64>,
) -> anyhow::Result<Joined> {
    let mut viewer = Viewer::new(BROWSER_H264).await;
    let posted = Instant::now();
    let r = http
        .post(format!("{base}/streams/{id}/webrtc"))
        .json(&json!({ "offer": viewer.offer }))
        .send()
        .await?;
    if r.status() != 201 {
        bail!("offer refused: {} {}", r.status(), r.text().await?);
    }
    let body: Value = r.json().await?;
    let session_id = body["session_id"].as_str().unwrap_or_default().to_owned();
    let answer = body["answer"].as_str().context("no answer")?.to_owned();
    let track = viewer.answer(answer).await;
    let first_frame = tokio::time::timeout(Duration::from_secs(15), first_keyframe(&track))
        .await
        .context("no keyframe within 15 s")?;
    let first_frame = first_frame.map(|()| posted.elapsed())?;
    let reader = count_packets(track, packets);
    Ok(Joined {
        viewer,
        session_id,
        first_frame,
        reader,
    })
}

/// Spawns a task counting every RTP packet `track` receives into `packets`.
pub fn count_packets(
    track: Arc<dyn TrackRemote>,
    packets: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(ev) = track.poll().await {
            if let TrackRemoteEvent::OnRtpPacket(_) = ev {
                packets.fetch_add(1, Ordering::Relaxed);
            }
        }
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
