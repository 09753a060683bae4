//! Either viewer kind of the live-rewind scenario behind the few operations it times: open (live or at an
//! instant), seek, back to live, wait for a keyframe, close. WSC-RTP sends its controls as protocol messages,
//! WebRTC as HTTP calls, as their clients would.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::dvr_webrtc::RtcViewer;
use crate::dvr_wsc::WscViewer;
use crate::gateway_process::GatewayProcess;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Wsc,
    WebRtc,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Wsc => "WSC-RTP",
            Kind::WebRtc => "WebRTC",
        }
    }
}

pub enum AnyViewer {
    Wsc(WscViewer),
    Rtc(RtcViewer),
}

impl AnyViewer {
    /// Opens a session on `stream`, live or at `start_ms`; returns it and when the client started opening it.
    pub async fn open(
        kind: Kind,
        gw: &GatewayProcess,
        stream: &str,
        start_ms: Option<i64>,
    ) -> anyhow::Result<(AnyViewer, Instant)> {
        Ok(match kind {
            Kind::Wsc => {
                let at = Instant::now();
                (
                    AnyViewer::Wsc(WscViewer::open(&gw.base, stream, start_ms).await?),
                    at,
                )
            }
            Kind::WebRtc => {
                let (v, at) = RtcViewer::join(gw.http(), &gw.base, stream, start_ms).await?;
                (AnyViewer::Rtc(v), at)
            }
        })
    }

    pub fn session_id(&self) -> &str {
        match self {
            AnyViewer::Wsc(v) => &v.session_id,
            AnyViewer::Rtc(v) => &v.session_id,
        }
    }

    /// Seeks to `position_ms`; returns when the command left.
    pub async fn seek(&self, gw: &GatewayProcess, position_ms: i64) -> anyhow::Result<Instant> {
        match self {
            AnyViewer::Wsc(v) => Ok(v.send(json!({"type": "seek", "position_ms": position_ms}))),
            AnyViewer::Rtc(v) => {
                v.control(
                    gw.http(),
                    &gw.base,
                    "seek",
                    json!({ "position_ms": position_ms }),
                )
                .await
            }
        }
    }

    /// Back to live; returns when the command left.
    pub async fn live(&self, gw: &GatewayProcess) -> anyhow::Result<Instant> {
        match self {
            AnyViewer::Wsc(v) => Ok(v.send(json!({"type": "live"}))),
            AnyViewer::Rtc(v) => v.control(gw.http(), &gw.base, "live", json!({})).await,
        }
    }

    /// When the first complete keyframe after `since` whose stamp `wanted` accepts arrived.
    pub async fn keyframe(
        &mut self,
        since: Instant,
        wanted: impl Fn(Option<u64>) -> bool,
        within: Duration,
    ) -> anyhow::Result<Instant> {
        match self {
            AnyViewer::Wsc(v) => v.keyframe(since, wanted, within).await,
            AnyViewer::Rtc(v) => v.keyframe(since, wanted, within).await,
        }
    }

    /// Ends the session and waits until the gateway has let it go.
    pub async fn close(self, gw: &GatewayProcess) -> anyhow::Result<()> {
        let id = self.session_id().to_owned();
        match self {
            AnyViewer::Wsc(v) => drop(v),
            AnyViewer::Rtc(v) => v.leave(gw.http(), &gw.base).await,
        }
        gw.wait_session_gone(&id).await
    }
}
