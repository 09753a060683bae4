//! Scenario 4: time to first frame against a camera with a 4 s GOP, over WSC-RTP (WebSocket open → first complete
//! keyframe, the reference client) and WebRTC (offer posted → first complete keyframe, ICE and DTLS included),
//! p50/p95 over 20 joins each, next to the same joins on a gateway started with `--gop-cache false`: what a server
//! without a GOP cache gives.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::gateway_process::GatewayProcess;
use crate::report::{quantile, Row};
use crate::{camera, webrtc_join, Ctx};

/// The camera's keyframe interval.
const GOP: Duration = Duration::from_secs(4);

pub async fn run(ctx: &Ctx, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let joins = if ctx.quick { 2 } else { 20 };
    let cam = camera::four_mbps(ctx, false)?;
    let mut wsc = Vec::new();
    let mut rtc = Vec::new();
    for gop_cache in [true, false] {
        let gw = GatewayProcess::start(&["--gop-cache", &gop_cache.to_string()], ctx.gateway_cpu)
            .await?;
        gw.add_stream("cam", &cam.url(), false).await?;
        let mut w = Vec::new();
        let mut r = Vec::new();
        for _ in 0..joins {
            // Viewers arrive at random moments of the GOP, not in step with it.
            tokio::time::sleep(GOP.mul_f64(rand::random::<f64>())).await;
            let stats = wsc_rtp_client::run(wsc_rtp_client::ClientOptions {
                url: format!(
                    "{}/streams/cam/wsc-rtp",
                    gw.base.replace("http://", "ws://")
                ),
                websocket: false,
                max_frames: Some(1),
                duration: Some(Duration::from_secs(10)),
                drop_percent: 0,
                output: None,
                start_ms: None,
                speed: None,
            })
            .await?;
            let t = stats
                .time_to_first_frame
                .context("no frame within 10 s over WSC-RTP")?;
            w.push(t.as_secs_f64() * 1e3);
            tokio::time::sleep(GOP.mul_f64(rand::random::<f64>())).await;
            let joined =
                webrtc_join::join(gw.http(), &gw.base, "cam", Arc::new(AtomicU64::new(0))).await?;
            r.push(joined.first_frame.as_secs_f64() * 1e3);
            joined.leave(gw.http(), &gw.base).await;
        }
        wsc.push(w);
        rtc.push(r);
    }
    for (name, mut times, target_ms) in [("WSC-RTP", wsc, 150.0), ("WebRTC", rtc, 400.0)] {
        let mut without = times.pop().unwrap_or_default();
        let mut with = times.pop().unwrap_or_default();
        let (p50, p95) = (quantile(&mut with, 0.5), quantile(&mut with, 0.95));
        let (n50, n95) = (quantile(&mut without, 0.5), quantile(&mut without, 0.95));
        let mut r = Row::new("Time to first frame", format!("{name}, {joins} joins"))
            .target(format!("< {target_ms:.0} ms"), p95 < target_ms);
        r.gateway = format!("p50 {p50:.0} ms, p95 {p95:.0} ms");
        r.reference = format!("GOP cache off: p50 {n50:.0} ms, p95 {n95:.0} ms");
        r.ratio = Some(p50 / n50);
        r.note = format!("{}, GOP 4 s; ratio of p50s", camera::describe(ctx));
        rows.push(r);
    }
    Ok(())
}
