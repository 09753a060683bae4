//! A WebRTC viewer for the live-rewind scenario: the harness's `webrtc`-crate peer ([`Viewer`]) joined through the
//! JSON endpoint, live or (with `start_ms`) in the recording, controlled over HTTP (`POST /sessions/{id}/seek`,
//! `/live`), with a task telling when each complete keyframe arrived and which stamp it carried
//! ([`KeyframeWatch`]).

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};
use testdata::webrtc_viewer::{Viewer, BROWSER_H264};
use tokio::sync::mpsc;
use webrtc::media_stream::track_remote::TrackRemoteEvent;

use crate::keyframe_watch::KeyframeWatch;

pub struct RtcViewer {
    viewer: Viewer,
    pub session_id: String,
    keyframes: mpsc::UnboundedReceiver<(Instant, Option<u64>)>,
    reader: tokio::task::JoinHandle<()>,
}

impl RtcViewer {
    /// Posts an offer for `stream` and connects; returns the viewer and when the offer was posted. Media may
    /// still be on its way.
    pub async fn join(
        http: &reqwest::Client,
        base: &str,
        stream: &str,
        start_ms: Option<i64>,
    ) -> anyhow::Result<(RtcViewer, Instant)> {
        let mut viewer = Viewer::new(BROWSER_H264).await;
        let mut body = json!({ "offer": viewer.offer });
        if let Some(t) = start_ms {
            body["start_ms"] = json!(t);
        }
        let posted = Instant::now();
        let r = http
            .post(format!("{base}/streams/{stream}/webrtc"))
            .json(&body)
            .send()
            .await?;
        if r.status() != 201 {
            bail!("offer refused: {} {}", r.status(), r.text().await?);
        }
        let body: Value = r.json().await?;
        let session_id = body["session_id"]
            .as_str()
            .context("no session_id")?
            .to_owned();
        let answer = body["answer"].as_str().context("no answer")?.to_owned();
        let track = viewer.answer(answer).await;
        let (tell, keyframes) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            let mut watch = KeyframeWatch::default();
            while let Some(ev) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(p) = ev {
                    let at = Instant::now();
                    if let Some(stamp) =
                        watch.push(p.header.sequence_number, p.header.marker, &p.payload)
                    {
                        let _ = tell.send((at, stamp));
                    }
                }
            }
        });
        Ok((
            RtcViewer {
                viewer,
                session_id,
                keyframes,
                reader,
            },
            posted,
        ))
    }

    /// `POST /sessions/{id}/{what}` with `body`; returns the instant just before it was sent.
    pub async fn control(
        &self,
        http: &reqwest::Client,
        base: &str,
        what: &str,
        body: Value,
    ) -> anyhow::Result<Instant> {
        let at = Instant::now();
        let r = http
            .post(format!("{base}/sessions/{}/{what}", self.session_id))
            .json(&body)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("{what} refused: {} {}", r.status(), r.text().await?);
        }
        Ok(at)
    }

    /// Waits for the first complete keyframe arriving after `since` whose stamp `wanted` accepts.
    pub async fn keyframe(
        &mut self,
        since: Instant,
        wanted: impl Fn(Option<u64>) -> bool,
        within: Duration,
    ) -> anyhow::Result<Instant> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.keyframes.recv()).await {
                Ok(Some((at, stamp))) if at >= since && wanted(stamp) => return Ok(at),
                Ok(Some(_)) => {}
                Ok(None) => bail!("the track ended"),
                Err(_) => bail!("no such keyframe within {within:?}"),
            }
        }
    }

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
