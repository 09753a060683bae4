//! Scenario 6, live-rewind: an hour of recording (60 segments of 60 s; quick: 3 of 10 s) is written into a data
//! directory before the gateway starts on it ([`crate::dvr_recording`]); the gateway indexes it at start-up, and
//! a live camera (the RTSP fixture, not recording) is registered under the same stream id, so viewer sessions
//! can move between the two. Then [`super::dvr_switch`] times seeks and returns to live, and [`super::dvr_load`]
//! measures DVR viewers' CPU, memory and disk reads. The directory (recording included) goes at the end.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context};
use rand::Rng;
use testdata::{FixtureOptions, RtspFixture};

use crate::dvr_recording::{self, Plan, Recorded, FPS, GOP};
use crate::gateway_process::GatewayProcess;
use crate::report::Row;
use crate::Ctx;

pub const SCENARIO: &str = "Live-rewind (DVR)";
const STREAM: &str = "cam";
/// The recording ends this long before the gateway starts: "a little before now", as after a short outage.
const ENDS_BEFORE_NOW: Duration = Duration::from_secs(5);

/// What the parts of the scenario share.
pub struct Setup {
    pub gw: GatewayProcess,
    pub rec: Recorded,
    pub stream: &'static str,
    /// The live camera, as the rows describe it.
    pub camera: &'static str,
}

impl Setup {
    /// A random instant of the recording at least `margin` before its end (so playback from there at 1× stays in
    /// the recording for that long).
    pub fn random_instant(&self, margin: Duration) -> i64 {
        let last = (self.rec.end_ms - margin.as_millis() as i64).max(self.rec.start_ms + 1);
        rand::thread_rng().gen_range(self.rec.start_ms..last)
    }

    /// `n` instants spread evenly over the recording (each at least `margin` before its end), each moved by up
    /// to half its share at random.
    pub fn spread_instants(&self, n: usize, margin: Duration) -> Vec<i64> {
        let span = (self.rec.end_ms - margin.as_millis() as i64 - self.rec.start_ms).max(n as i64);
        let share = span / n as i64;
        let mut rng = rand::thread_rng();
        (0..n as i64)
            .map(|i| self.rec.start_ms + i * share + rng.gen_range(0..share.max(2) / 2))
            .collect()
    }
}

pub async fn run(ctx: &Ctx, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let plan = if ctx.quick {
        Plan {
            segments: 3,
            segment_secs: 10,
            width: 640,
            height: 360,
            bitrate_kbps: 1000,
        }
    } else {
        Plan {
            segments: 60,
            segment_secs: 60,
            width: 640,
            height: 360,
            bitrate_kbps: 1000,
        }
    };
    // Removed, recording and all, when the scenario ends however it ends.
    let dir = tempfile::tempdir()?;
    // The live camera: the same size, rate and GOP as the recording, an incompressible picture so the encoder
    // really sends its bit rate (the recording's test pattern may come out below it: each row says what arrived).
    let cam = RtspFixture::start(FixtureOptions {
        width: plan.width,
        height: plan.height,
        fps: FPS,
        gop: GOP,
        bitrate_kbps: plan.bitrate_kbps,
        pattern: "snow",
        ..Default::default()
    })?;
    // The stream exists before its recording does: at start-up the gateway removes recordings of stream ids it
    // doesn't know (a delete cut short), and indexes those of the ones it does.
    let gw = GatewayProcess::start_in(dir.path(), ctx.gateway_cpu).await?;
    gw.add_stream(STREAM, &cam.url(), false).await?;
    drop(gw);
    let end_ms = now_ms() - ENDS_BEFORE_NOW.as_millis() as i64;
    let data_dir: PathBuf = dir.path().to_owned();
    let rec =
        tokio::task::spawn_blocking(move || dvr_recording::write(&data_dir, STREAM, plan, end_ms))
            .await??;
    eprintln!("gateway-bench: {}", rec.describe());
    let gw = GatewayProcess::start_in(dir.path(), ctx.gateway_cpu).await?;
    check_recording(&gw, &rec).await?;
    let setup = Setup {
        gw,
        rec,
        stream: STREAM,
        camera: "live: 640x360 25 fps 1 Mbit/s, GOP 2 s",
    };
    super::dvr_switch::run(ctx, &setup, rows).await?;
    super::dvr_load::run(ctx, &setup, rows).await?;
    drop(setup);
    drop(dir);
    Ok(())
}

/// The gateway lists what was written as one recorded range (segments touch), before anything is measured.
async fn check_recording(gw: &GatewayProcess, rec: &Recorded) -> anyhow::Result<()> {
    let v = gw.get(&format!("/streams/{STREAM}/recordings")).await?;
    let ranges = v["ranges"].as_array().context("no ranges")?;
    let segments: usize = ranges
        .iter()
        .map(|r| r["segments"].as_array().map_or(0, Vec::len))
        .sum();
    ensure!(
        segments == rec.files.len(),
        "the gateway indexed {segments} of {} segments: {v}",
        rec.files.len()
    );
    ensure!(ranges.len() == 1, "the recording is not one range: {v}");
    let (start, end) = (
        ranges[0]["start_ms"].as_i64().unwrap_or(0),
        ranges[0]["end_ms"].as_i64().unwrap_or(0),
    );
    // The last frame's duration is the demuxer's to say; a frame's worth either way is the same hour.
    ensure!(
        start == rec.start_ms && (end - rec.end_ms).abs() <= 1000 / FPS as i64,
        "the recording spans {start}..{end}, {}..{} was written",
        rec.start_ms,
        rec.end_ms
    );
    Ok(())
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// "p50 X ms, p95 Y ms" of `v`.
pub fn p50_p95(v: &[f64]) -> (f64, f64, String) {
    let mut v = v.to_vec();
    let (p50, p95) = (
        crate::report::quantile(&mut v, 0.5),
        crate::report::quantile(&mut v, 0.95),
    );
    (p50, p95, format!("p50 {p50:.0} ms, p95 {p95:.0} ms"))
}
