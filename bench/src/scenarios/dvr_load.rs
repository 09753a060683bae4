//! Live-rewind, part 2: what DVR viewers cost the gateway. First the same WSC-RTP sessions live, then each playing
//! the recording at 1× from its own instant: CPU (from /proc, above the ingest-only baseline) and RSS per viewer,
//! side by side. Then many DVR viewers at once, spread over the recording: the gateway's CPU and RSS, and what it
//! reads against what it sends.
//!
//! Reads come from `/proc/<gateway>/io`: `read_bytes` is what the kernel fetched from storage for the gateway,
//! `rchar` every byte its `read`-family calls returned, cached or not. The load row runs three windows: with the
//! whole recording in the page cache (read in just before: `read_bytes` should stay near 0 however much the
//! players read), then the first window after dropping the recording from the page cache
//! ([`crate::page_cache`]), then a window one segment long right after it, in which every player crosses one
//! segment boundary: the kernel reads ahead of each player (up to the device's `read_ahead_kb`), so the first
//! window after the drop reads far more than it plays, and the segment-long one shows what playing from disk
//! costs on the way. `rchar` above the ingest-only baseline (the players' file reads; the camera's RTSP over TCP
//! is in the baseline) is given beside it.

use std::time::{Duration, Instant};

use super::dvr::{Setup, SCENARIO};
use crate::dvr_wsc::WscViewer;
use crate::procio::{self, Reads};
use crate::procstat::Usage;
use crate::report::Row;
use crate::{page_cache, Ctx};

/// A seek's read-ahead burst, or a join's GOP-cache burst, is over by then.
const SETTLE: Duration = Duration::from_secs(1);
const WITHIN: Duration = Duration::from_secs(10);

/// One measurement window: the gateway's CPU share and usage, its reads, and the bytes the viewers received, per
/// second.
struct Window {
    cpu: f64,
    usage: Usage,
    reads: Reads,
    received: u64,
    secs: f64,
}

impl Window {
    fn per_sec(&self, bytes: u64) -> f64 {
        bytes as f64 / self.secs
    }
}

async fn window(setup: &Setup, viewers: &[WscViewer], len: Duration) -> anyhow::Result<Window> {
    let pid = setup.gw.pid();
    let received = |v: &[WscViewer]| v.iter().map(WscViewer::bytes).sum::<u64>();
    let (r0, b0, t0) = (procio::reads(pid)?, received(viewers), Instant::now());
    let (cpu, usage) = setup.gw.measure(len).await?;
    let (r1, b1) = (procio::reads(pid)?, received(viewers));
    Ok(Window {
        cpu,
        usage,
        reads: r1.since(r0),
        received: b1 - b0,
        secs: t0.elapsed().as_secs_f64(),
    })
}

pub async fn run(ctx: &Ctx, setup: &Setup, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let n = if ctx.quick { 3 } else { 20 };
    // Playback from an instant must stay in the recording through the settling, the window(s) and the closing.
    let margin = 3 * ctx.window
        + Duration::from_secs(setup.rec.plan.segment_secs.into())
        + Duration::from_secs(if ctx.quick { 3 } else { 30 });
    let idle = window(setup, &[], ctx.window).await?;

    let mut viewers = Vec::with_capacity(n);
    for _ in 0..n {
        let opened = Instant::now();
        let mut v = WscViewer::open(&setup.gw.base, setup.stream, None).await?;
        v.keyframe(opened, |s| s.is_none(), WITHIN).await?;
        viewers.push(v);
    }
    tokio::time::sleep(SETTLE).await;
    let live = window(setup, &viewers, ctx.window).await?;
    let instants = setup.spread_instants(n, margin);
    for (v, &at) in viewers.iter_mut().zip(&instants) {
        let sent = v.send(serde_json::json!({"type": "seek", "position_ms": at}));
        v.keyframe(sent, |s| setup.rec.starts_seek(at, s), WITHIN)
            .await?;
    }
    tokio::time::sleep(SETTLE).await;
    let dvr = window(setup, &viewers, ctx.window).await?;
    close(setup, viewers).await?;
    rows.push(per_viewer_row(setup, n, &idle, &live, &dvr));

    let segment = Duration::from_secs(setup.rec.plan.segment_secs.into());
    let steady_len = if ctx.quick { ctx.window } else { segment };
    for n in ctx.sizes(&[50], &[3]) {
        let mut viewers = Vec::with_capacity(n);
        for at in setup.spread_instants(n, margin) {
            let opened = Instant::now();
            let mut v = WscViewer::open(&setup.gw.base, setup.stream, Some(at)).await?;
            v.keyframe(opened, |s| setup.rec.starts_seek(at, s), WITHIN)
                .await?;
            viewers.push(v);
        }
        let files = setup.rec.files.clone();
        tokio::task::spawn_blocking(move || page_cache::load_files(&files)).await??;
        tokio::time::sleep(SETTLE).await;
        let cached = window(setup, &viewers, ctx.window).await?;
        let files = setup.rec.files.clone();
        tokio::task::spawn_blocking(move || page_cache::drop_files(&files)).await??;
        let first = window(setup, &viewers, ctx.window).await?;
        let steady = window(setup, &viewers, steady_len).await?;
        close(setup, viewers).await?;
        rows.push(load_row(n, &idle, [&cached, &first, &steady]));
    }
    Ok(())
}

async fn close(setup: &Setup, viewers: Vec<WscViewer>) -> anyhow::Result<()> {
    let ids: Vec<String> = viewers.iter().map(|v| v.session_id.clone()).collect();
    drop(viewers);
    for id in ids {
        setup.gw.wait_session_gone(&id).await?;
    }
    Ok(())
}

/// CPU (µs/s) and RSS (KiB) per viewer above `idle`, and kbit/s each viewer received.
fn per_viewer(n: usize, idle: &Window, w: &Window) -> (f64, f64, f64) {
    (
        (w.cpu - idle.cpu).max(0.0) / n as f64 * 1e6,
        w.usage.rss_kib.saturating_sub(idle.usage.rss_kib) as f64 / n as f64,
        w.per_sec(w.received) * 8.0 / 1e3 / n as f64,
    )
}

fn per_viewer_row(setup: &Setup, n: usize, idle: &Window, live: &Window, dvr: &Window) -> Row {
    let (dvr_us, dvr_kib, dvr_kbps) = per_viewer(n, idle, dvr);
    let (live_us, live_kib, live_kbps) = per_viewer(n, idle, live);
    let mut r = Row::new(
        SCENARIO,
        format!("CPU and RSS per viewer, {n} WSC-RTP viewers"),
    );
    r.gateway = format!(
        "DVR at 1×: {dvr_us:.0} µs/s per viewer ({:.1} % of a core in all), RSS +{dvr_kib:.0} KiB/viewer, \
         {dvr_kbps:.0} kbit/s received per viewer",
        dvr.cpu * 100.0
    );
    r.reference = format!(
        "live: {live_us:.0} µs/s per viewer ({:.1} % of a core in all), RSS +{live_kib:.0} KiB/viewer, \
         {live_kbps:.0} kbit/s received per viewer",
        live.cpu * 100.0
    );
    // A short window's CPU figure can round to nothing above the baseline.
    r.ratio = (live_us > 0.0).then(|| dvr_us / live_us);
    r.note = format!(
        "the same sessions live, then each seeked to its own instant (a player thread each); above ingest only \
         ({:.1} % of a core, RSS {} MiB); RSS is the process's, so the DVR figure includes what the live window \
         grew; {}",
        idle.cpu * 100.0,
        idle.usage.rss_kib / 1024,
        setup.camera
    );
    r
}

fn load_row(n: usize, idle: &Window, [cached, first, steady]: [&Window; 3]) -> Row {
    let mb = |bytes_per_sec: f64| bytes_per_sec / 1e6;
    let disk = |w: &Window| w.per_sec(w.reads.read_bytes);
    // rchar also counts the gateway's socket reads done with read(): the camera's RTSP over TCP, WebSockets.
    let files = |w: &Window| (w.per_sec(w.reads.rchar) - idle.per_sec(idle.reads.rchar)).max(0.0);
    let sent = steady.per_sec(steady.received);
    let (us, kib, _) = per_viewer(n, idle, steady);
    let mut r = Row::new(SCENARIO, format!("{n} DVR viewers at different instants"));
    r.gateway = format!(
        "{:.1} % of a core ({us:.0} µs/s per viewer), RSS {} MiB (+{kib:.0} KiB/viewer); disk reads (read_bytes) \
         {:.2} MB/s over {:.0} s after the first {:.0} s uncached (those: {:.2} MB/s), {:.2} MB/s cached",
        steady.cpu * 100.0,
        steady.usage.rss_kib / 1024,
        mb(disk(steady)),
        steady.secs,
        first.secs,
        mb(disk(first)),
        mb(disk(cached)),
    );
    r.reference = format!(
        "sent to the viewers {:.2} MB/s ({:.0} kbit/s per viewer, as received)",
        mb(sent),
        sent * 8.0 / 1e3 / n as f64
    );
    r.ratio = Some(disk(steady) / sent);
    r.note = format!(
        "WSC-RTP, 1×, instants spread over the recording; ratio: disk bytes read per byte sent over the {:.0} s \
         window; the recording's files dropped from the page cache before the first uncached window, read whole \
         into it before the cached one; read() bytes above ingest only (rchar) {:.2} / {:.2} / {:.2} MB/s \
         (cached / first / next); CPU and RSS of the last window (cached: {:.1} % of a core)",
        steady.secs,
        mb(files(cached)),
        mb(files(first)),
        mb(files(steady)),
        cached.cpu * 100.0
    );
    r
}
