//! Scenario 1 (and the WSC-RTP half of 5): one 4 Mbit/s 1080p30 stream to N WSC-RTP receivers. The gateway's CPU
//! per receiver (above its ingest-only cost) next to the raw `sendmmsg` loop sending the same packets to the same
//! sockets, loss on both from RTP sequence numbers, and the gateway's RSS growth per receiver.

use std::time::{Duration, Instant};

use crate::gateway_process::GatewayProcess;
use crate::report::Row;
use crate::sinks::{Receive, Sinks};
use crate::{camera, raw_send, wsc_viewers, Ctx};

const SCENARIO: &str = "WSC-RTP fan-out";

pub async fn run(ctx: &Ctx, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let cam = camera::four_mbps(ctx, false)?;
    let gw = GatewayProcess::start(&[], ctx.gateway_cpu).await?;
    gw.add_stream("cam", &cam.url(), false).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (idle_cpu, idle) = gw.measure(ctx.window).await?;
    rows.push({
        let mut r = Row::new(SCENARIO, "0 (ingest only)");
        r.gateway = format!(
            "{:.1} % of a core, RSS {} MiB",
            idle_cpu * 100.0,
            idle.rss_kib / 1024
        );
        r.note = camera::describe(ctx).into();
        r
    });
    for n in ctx.sizes(&[1, 100, 500, 1000], &[1, 3]) {
        let mut sinks = Sinks::bind(n, Receive::Segmented)?;
        let opened = Instant::now();
        let sessions = wsc_viewers::open(&gw.base, "cam", &mut sinks).await?;
        let open_secs = opened.elapsed().as_secs_f64();
        let addrs = sinks.addrs();
        let sampled = sinks.sampled();
        let receiving = sinks.start(false);
        // Past the GOP-cache burst of the last joins.
        tokio::time::sleep(Duration::from_secs(2)).await;
        receiving.take_loss();
        let (p0, b0) = receiving.totals();
        let before = gw.stream("cam").await?;
        let t0 = Instant::now();
        let (cpu, usage) = gw.measure(ctx.window).await?;
        let secs = t0.elapsed().as_secs_f64();
        let (p1, b1) = receiving.totals();
        let after = gw.stream("cam").await?;
        let count = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or(0);
        // Frames the hub skipped for lagging viewers: they leave no gap in a viewer's sequence numbers, so the
        // loss column can't show them.
        let skipped = count(&after, "drops") - count(&before, "drops");
        let fps = (count(&after, "frames") - count(&before, "frames")) as f64 / secs;
        let gw_loss = receiving.take_loss();
        let alive = gw.viewers("cam").await?;
        let moved = sessions.moved_to_websocket();
        drop(sessions);
        gw.wait_viewers("cam", 0).await?;

        let packets = p1 - p0;
        anyhow::ensure!(
            packets > 0,
            "N={n}: no packet reached the sampled receivers"
        );
        let pps = packets as f64 / secs / sampled as f64;
        let size = (b1 - b0).checked_div(packets).unwrap_or(1200) as usize;
        receiving.take_loss();
        let raw_cpu = raw_send::run_on(ctx.gateway_cpu, addrs, pps, size, ctx.window).await?;
        // The last tick's packets may still be in flight.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let raw_loss = receiving.take_loss();
        receiving.stop();

        let gw_per = (cpu - idle_cpu).max(0.0) / n as f64 * 1e6;
        let raw_per = raw_cpu.as_secs_f64() / ctx.window.as_secs_f64() / n as f64 * 1e6;
        let ratio = gw_per / raw_per;
        let rss_per = usage.rss_kib.saturating_sub(idle.rss_kib) as f64 / n as f64;
        let whole_stream = alive == n as u64 && skipped == 0 && moved == 0;
        // One receiver's RSS delta is the allocator growing its pools, not a receiver's cost: memory is judged
        // from 100 receivers up.
        let memory_ok = n < 100 || rss_per < 64.0;
        let mut r = Row::new(SCENARIO, format!("N={n}")).target(
            "≤ 1.5× raw; < 64 KiB/receiver (N ≥ 100); every receiver gets the whole stream",
            ratio <= 1.5 && memory_ok && whole_stream,
        );
        r.gateway = format!(
            "{gw_per:.0} µs/s per receiver ({:.0} % of a core), loss {:.2} %, RSS +{rss_per:.0} KiB/receiver",
            cpu * 100.0,
            gw_loss.fraction() * 100.0
        );
        r.reference = format!(
            "raw sendmmsg {raw_per:.0} µs/s per receiver, loss {:.2} %",
            raw_loss.fraction() * 100.0
        );
        r.ratio = Some(ratio);
        r.note = format!(
            "camera {fps:.1} fps, {pps:.0} packets/s of {size} B per receiver; {skipped} frames skipped for lagging receivers \
             (summed over receivers); {alive} of {n} sessions alive at the end, {moved} moved off UDP (consent lost); \
             {sampled} receivers read; sessions opened in \
             {open_secs:.1} s"
        );
        rows.push(r);
    }
    Ok(())
}
