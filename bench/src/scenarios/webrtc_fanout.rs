//! Scenario 2 (and the WebRTC half of 5): one 4 Mbit/s stream to N WebRTC viewers, the gateway's CPU and RSS per
//! viewer next to Janus' streaming plugin serving the same viewers from an RTP mountpoint fed the same camera.
//! The viewers are `webrtc`-crate peers in this process (pinned away from the server under test), each behind a
//! `media_relay` that after the first keyframe counts the server's SRTP datagrams instead of letting the viewer
//! decrypt them, so 200 viewers fit on the harness's core and the row measures the server. Each server is measured
//! over the same window with the same N, one after the other.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::child_process;
use crate::gateway_process::GatewayProcess;
use crate::janus::{self, Janus};
use crate::procstat::Usage;
use crate::report::Row;
use crate::{camera, webrtc_join, Ctx};

const SCENARIO: &str = "WebRTC fan-out";

/// One server's figures at one N.
struct Served {
    /// CPU per viewer above the server's idle cost, µs per second.
    cpu_per: f64,
    rss_per_kib: f64,
    /// Packets per second per viewer.
    pps: f64,
    cpu: f64,
}

pub async fn run(ctx: &Ctx, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let cam = camera::four_mbps(ctx, false)?;
    let sizes = ctx.sizes(&[1, 50, 200], &[1, 2]);
    let gw = GatewayProcess::start(&[], ctx.gateway_cpu).await?;
    gw.add_stream("cam", &cam.url(), false).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (gw_idle, gw_idle_usage) = gw.measure(ctx.window).await?;
    let mut gateway = Vec::new();
    for &n in &sizes {
        let packets = Arc::new(AtomicU64::new(0));
        let mut viewers = Vec::with_capacity(n);
        for _ in 0..n {
            viewers.push(webrtc_join::join(gw.http(), &gw.base, "cam", packets.clone()).await?);
        }
        let served = measure(ctx, &packets, gw_idle, gw_idle_usage, n, gw.pid()).await?;
        for v in viewers {
            v.leave(gw.http(), &gw.base).await;
        }
        gw.wait_viewers("cam", 0).await?;
        gateway.push(served);
    }
    drop(gw);

    let mut reference: Vec<Option<Served>> = Vec::new();
    let mut janus_note = String::new();
    if janus::installed() {
        let janus = Janus::start(&cam.url(), ctx.gateway_cpu).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (j_idle, j_idle_usage) = janus.measure(ctx.window).await?;
        for &n in &sizes {
            let packets = Arc::new(AtomicU64::new(0));
            let mut viewers = Vec::with_capacity(n);
            for _ in 0..n {
                viewers.push(janus.join(packets.clone()).await?);
            }
            let served = measure(ctx, &packets, j_idle, j_idle_usage, n, janus.pid()).await?;
            for v in viewers {
                v.leave(janus.http()).await;
            }
            reference.push(Some(served));
        }
    } else {
        janus_note = "Janus not installed (scripts/setup.sh installs it); ".into();
        reference.resize_with(sizes.len(), || None);
    }

    for ((n, g), j) in sizes.iter().zip(gateway).zip(reference) {
        let per_core = if g.cpu_per > 0.0 {
            1e6 / g.cpu_per
        } else {
            f64::INFINITY
        };
        let ratio = j.as_ref().map(|j| g.cpu_per / j.cpu_per);
        let mut r = Row::new(SCENARIO, format!("N={n}")).target(
            "CPU ≤ 0.5× Janus; ≥ 300 viewers/core; < 512 KiB/viewer",
            ratio.is_some_and(|x| x <= 0.5) && per_core >= 300.0 && g.rss_per_kib < 512.0,
        );
        r.gateway = format!(
            "{:.0} µs/s per viewer ({:.0} % of a core, {per_core:.0} viewers/core), RSS +{:.0} KiB/viewer, {:.0} packets/s per viewer",
            g.cpu_per,
            g.cpu * 100.0,
            g.rss_per_kib,
            g.pps
        );
        r.reference = match &j {
            Some(j) => format!(
                "Janus {:.0} µs/s per viewer ({:.0} % of a core), RSS +{:.0} KiB/viewer, {:.0} packets/s per viewer",
                j.cpu_per,
                j.cpu * 100.0,
                j.rss_per_kib,
                j.pps
            ),
            None => "Janus not measured".into(),
        };
        r.ratio = ratio;
        r.note = format!("{janus_note}{}", camera::describe(ctx));
        rows.push(r);
    }
    Ok(())
}

/// Measures a server with `n` viewers connected, after they settled.
async fn measure(
    ctx: &Ctx,
    packets: &AtomicU64,
    idle_cpu: f64,
    idle: Usage,
    n: usize,
    pid: u32,
) -> anyhow::Result<Served> {
    tokio::time::sleep(Duration::from_secs(2)).await;
    let p0 = packets.load(Ordering::Relaxed);
    let t = Instant::now();
    let (cpu, b) = child_process::measure(pid, ctx.window).await?;
    let secs = t.elapsed().as_secs_f64();
    let p = packets.load(Ordering::Relaxed) - p0;
    Ok(Served {
        cpu_per: (cpu - idle_cpu).max(0.0) / n as f64 * 1e6,
        rss_per_kib: b.rss_kib.saturating_sub(idle.rss_kib) as f64 / n as f64,
        pps: p as f64 / secs / n as f64,
        cpu,
    })
}
