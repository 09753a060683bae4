//! Soak: the gateway under a steady, churning load for a long time, with the camera flapping. One camera
//! (the RTSP fixture, restarted every `flap_every` after a short outage), recording on, and a fixed number of
//! viewer slots that join and leave: most are live WSC-RTP viewers of the reference client (UDP, random
//! lengths), every fifth is a WebSocket-transport viewer that seeks into the recording through the REST API
//! (`POST /sessions/{id}/seek`), watches, and returns to live. The gateway's RSS and open file descriptors are
//! sampled all along; at the end the recorded ranges are checked against the flaps (a gap anywhere else is a loss)
//! and the gateway's log for panics.
//!
//! `--soak-secs` sets the length (full: 30 minutes; quick: 30 s, so the test suite runs a slice).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::Rng;
use serde_json::{json, Value};
use testdata::{FixtureOptions, RtspFixture};

use crate::gateway_process::GatewayProcess;
use crate::procstat;
use crate::report::Row;
use crate::ws_viewer::WsViewer;
use crate::Ctx;

const SCENARIO: &str = "Soak";
const STREAM: &str = "cam";

struct Plan {
    total: Duration,
    flap_every: Duration,
    outage: Duration,
    viewers: usize,
    /// Shortest and longest live session.
    live: (Duration, Duration),
    sample_every: Duration,
}

impl Plan {
    fn new(ctx: &Ctx) -> Plan {
        let total = Duration::from_secs(ctx.soak_secs.unwrap_or(if ctx.quick { 30 } else { 1800 }));
        if ctx.quick {
            Plan {
                total,
                flap_every: Duration::from_secs(10),
                outage: Duration::from_secs(2),
                viewers: 6,
                live: (Duration::from_secs(2), Duration::from_secs(6)),
                sample_every: Duration::from_secs(1),
            }
        } else {
            Plan {
                total,
                flap_every: Duration::from_secs(60),
                outage: Duration::from_secs(3),
                viewers: 50,
                live: (Duration::from_secs(5), Duration::from_secs(40)),
                sample_every: Duration::from_secs(5),
            }
        }
    }
}

/// What the viewer slots did, counted across all of them.
#[derive(Default)]
struct Tally {
    live_sessions: AtomicU64,
    live_frames: AtomicU64,
    seeking_sessions: AtomicU64,
    seeks_ok: AtomicU64,
    seeks_refused: AtomicU64,
    failures: AtomicU64,
    first_failure: std::sync::Mutex<Option<String>>,
}

impl Tally {
    fn failed(&self, what: String) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_failure.lock().expect("not poisoned");
        first.get_or_insert(what);
    }
}

/// One outage of the camera, in wall-clock epoch ms.
#[derive(Clone, Copy, Debug)]
struct Flap {
    down_ms: i64,
    up_ms: i64,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn open_fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}

fn median(mut v: Vec<f64>) -> f64 {
    crate::report::quantile(&mut v, 0.5)
}

pub async fn run(ctx: &Ctx, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let plan = Plan::new(ctx);
    let (width, height, bitrate_kbps) = if ctx.quick {
        (320, 240, 300)
    } else {
        (640, 360, 1000)
    };
    let mut camera = RtspFixture::start(FixtureOptions {
        width,
        height,
        fps: 25,
        gop: 25,
        bitrate_kbps,
        ..Default::default()
    })?;
    let logs = tempfile::tempdir()?;
    let log = logs.path().join("gateway.log");
    let gw = Arc::new(
        GatewayProcess::start_logged(&["--segment-secs", "20"], ctx.gateway_cpu, &log).await?,
    );
    gw.add_stream(STREAM, &camera.url(), true).await?;
    let started = Instant::now();
    let end = started + plan.total;

    let tally = Arc::new(Tally::default());
    let mut slots = Vec::new();
    for k in 0..plan.viewers {
        let (gw, tally) = (gw.clone(), tally.clone());
        let live = plan.live;
        slots.push(tokio::spawn(async move {
            while Instant::now() + Duration::from_secs(3) < end {
                if k % 5 == 0 {
                    seeking_session(&gw, &tally, end).await;
                } else {
                    live_session(&gw, &tally, live, end).await;
                }
                let pause = rand::thread_rng().gen_range(0..2000);
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
        }));
    }

    let pid = gw.pid();
    let mut samples: Vec<(Duration, u64, u64)> = Vec::new();
    let mut flaps = Vec::new();
    let mut next_flap = started + plan.flap_every;
    let mut next_sample = started;
    while Instant::now() < end {
        let now = Instant::now();
        if now >= next_sample {
            let rss = procstat::process(pid)?.rss_kib;
            samples.push((now - started, rss, open_fds(pid)));
            next_sample += plan.sample_every;
        }
        if now >= next_flap && now + plan.outage + Duration::from_secs(5) < end {
            let down_ms = now_ms();
            tokio::task::block_in_place(|| camera.stop());
            tokio::time::sleep(plan.outage).await;
            tokio::task::block_in_place(|| camera.restart())?;
            flaps.push(Flap {
                down_ms,
                up_ms: now_ms(),
            });
            next_flap += plan.flap_every;
        }
        let wake = next_sample.min(next_flap).min(end);
        tokio::time::sleep_until(wake.into()).await;
    }
    for s in slots {
        tokio::time::timeout(Duration::from_secs(60), s).await??;
    }

    let up = gw.get("/health").await.is_ok();
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    let panics = log_text.matches("panicked").count();
    let view = gw.stream(STREAM).await?;
    let recordings = gw.get(&format!("/streams/{STREAM}/recordings")).await?;
    report(
        ctx,
        &plan,
        rows,
        &samples,
        &flaps,
        &tally,
        panics,
        up,
        &view,
        &recordings,
    );
    drop(camera);
    Ok(())
}

/// A live WSC-RTP viewer of the reference client for a random length, ended before `end`.
async fn live_session(
    gw: &GatewayProcess,
    tally: &Tally,
    (lo, hi): (Duration, Duration),
    end: Instant,
) {
    let len = rand::thread_rng().gen_range(lo..=hi);
    let len = len.min(end.saturating_duration_since(Instant::now()));
    if len < Duration::from_secs(1) {
        return;
    }
    let r = wsc_rtp_client::run(wsc_rtp_client::ClientOptions {
        url: format!(
            "{}/streams/{STREAM}/wsc-rtp",
            gw.base.replace("http://", "ws://")
        ),
        websocket: false,
        max_frames: None,
        duration: Some(len),
        drop_percent: 0,
        output: None,
        start_ms: None,
        speed: None,
    })
    .await;
    tally.live_sessions.fetch_add(1, Ordering::Relaxed);
    match r {
        Ok(stats) if stats.frames > 0 => {
            tally.live_frames.fetch_add(stats.frames, Ordering::Relaxed);
        }
        Ok(stats) => tally.failed(format!("live viewer got no picture in {len:?}: {stats:?}")),
        Err(e) => tally.failed(format!("live viewer: {e:#}")),
    }
}

/// A recorded instant at least 3 s before the end of a range, picked at random.
fn recorded_instant(recordings: &Value) -> Option<i64> {
    let ranges: Vec<(i64, i64)> = recordings["ranges"]
        .as_array()?
        .iter()
        .filter_map(|r| Some((r["start_ms"].as_i64()?, r["end_ms"].as_i64()? - 3_000)))
        .filter(|(a, b)| b > a)
        .collect();
    if ranges.is_empty() {
        return None;
    }
    let mut rng = rand::thread_rng();
    let (a, b) = ranges[rng.gen_range(0..ranges.len())];
    Some(rng.gen_range(a..b))
}

/// A WebSocket-transport viewer that seeks into the recording twice, then goes back to live and leaves.
async fn seeking_session(gw: &GatewayProcess, tally: &Tally, end: Instant) {
    tally.seeking_sessions.fetch_add(1, Ordering::Relaxed);
    let v = match WsViewer::open(&gw.base, STREAM).await {
        Ok(v) => v,
        Err(e) => return tally.failed(format!("seeking viewer: {e:#}")),
    };
    let watch = |secs: u64| tokio::time::sleep(Duration::from_secs(secs));
    watch(2).await;
    for _ in 0..2 {
        if Instant::now() + Duration::from_secs(8) > end {
            break;
        }
        let Ok(recordings) = gw.get(&format!("/streams/{STREAM}/recordings")).await else {
            return tally.failed("GET recordings failed".into());
        };
        let Some(at) = recorded_instant(&recordings) else {
            tally.seeks_refused.fetch_add(1, Ordering::Relaxed);
            watch(2).await;
            continue;
        };
        let r = gw
            .http()
            .post(format!("{}/sessions/{}/seek", gw.base, v.session_id))
            .json(&json!({ "position_ms": at }))
            .send()
            .await;
        match r.map(|r| r.status().as_u16()) {
            Ok(200..=299) => {
                tally.seeks_ok.fetch_add(1, Ordering::Relaxed);
            }
            // Retention or a flap can move the recording between the read and the seek.
            Ok(409 | 416) => {
                tally.seeks_refused.fetch_add(1, Ordering::Relaxed);
            }
            other => return tally.failed(format!("seek to {at}: {other:?}")),
        }
        let before = v.bytes();
        let secs = rand::thread_rng().gen_range(3..6);
        watch(secs).await;
        if v.bytes() == before {
            return tally.failed(format!("nothing played after a seek to {at}"));
        }
    }
    let r = gw
        .http()
        .post(format!("{}/sessions/{}/live", gw.base, v.session_id))
        .send()
        .await;
    if !r.is_ok_and(|r| r.status().is_success()) {
        return tally.failed("back to live refused".into());
    }
    watch(2).await;
    if v.ended() {
        tally.failed("the seeking viewer's session ended".into());
    }
}

/// Median of the samples within `[from, to)` of the run: (RSS KiB, fds).
fn window_median(samples: &[(Duration, u64, u64)], from: Duration, to: Duration) -> (f64, f64) {
    let w: Vec<_> = samples
        .iter()
        .filter(|(t, _, _)| *t >= from && *t < to)
        .collect();
    (
        median(w.iter().map(|s| s.1 as f64).collect()),
        median(w.iter().map(|s| s.2 as f64).collect()),
    )
}

/// Gaps between recorded ranges that no flap explains (a gap may start up to 2 s before the camera went down,
/// when the writer closed at its last keyframe, and end up to 10 s after it came back: reconnect plus the
/// first keyframe).
fn unexplained_gaps(recordings: &Value, flaps: &[Flap]) -> (usize, Vec<(i64, i64)>) {
    let ranges: Vec<(i64, i64)> = recordings["ranges"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| Some((r["start_ms"].as_i64()?, r["end_ms"].as_i64()?)))
                .collect()
        })
        .unwrap_or_default();
    let gaps: Vec<(i64, i64)> = ranges
        .windows(2)
        .map(|w| (w[0].1, w[1].0))
        .filter(|(a, b)| {
            !flaps
                .iter()
                .any(|f| *a >= f.down_ms - 2_000 && *b <= f.up_ms + 10_000)
        })
        .collect();
    (ranges.len(), gaps)
}

#[allow(clippy::too_many_arguments)]
fn report(
    ctx: &Ctx,
    plan: &Plan,
    rows: &mut Vec<Row>,
    samples: &[(Duration, u64, u64)],
    flaps: &[Flap],
    tally: &Tally,
    panics: usize,
    up: bool,
    view: &Value,
    recordings: &Value,
) {
    let total = plan.total;
    let length = if total.as_secs() >= 120 {
        format!("{} min", total.as_secs() / 60)
    } else {
        format!("{} s", total.as_secs())
    };
    let size = format!(
        "{length}, {} viewer slots, {} flaps",
        plan.viewers,
        flaps.len()
    );
    // The whole curve, for a reader who wants more than two medians.
    eprintln!("soak samples (s, RSS KiB, fds):");
    for (t, rss, fds) in samples {
        eprintln!("  {} {rss} {fds}", t.as_secs());
    }
    // Growth is judged from after the first flaps (caches, pools and the catalog warmed up) to the end.
    let (rss0, fd0) = window_median(samples, total.mul_f64(0.15), total.mul_f64(0.25));
    let (rss1, fd1) = window_median(samples, total.mul_f64(0.9), total);
    let growth = |a: f64, b: f64| (b - a) / a * 100.0;
    let judge = |row: Row, target: &str, ok: bool| {
        if ctx.quick {
            Row {
                note: format!("{} (quick: too short to judge)", row.note),
                ..row
            }
        } else {
            row.target(target, ok)
        }
    };
    let mut rss = Row::new(SCENARIO, size.clone());
    rss.gateway = format!(
        "RSS {:.1} → {:.1} MiB ({:+.1} %)",
        rss0 / 1024.0,
        rss1 / 1024.0,
        growth(rss0, rss1)
    );
    rss.note = "median of 15–25 % of the run vs the last 10 %".into();
    rows.push(judge(rss, "< 5 % growth", growth(rss0, rss1) < 5.0));
    let mut fds = Row::new(SCENARIO, size.clone());
    fds.gateway = format!(
        "open fds {:.0} → {:.0} ({:+.1} %)",
        fd0,
        fd1,
        growth(fd0, fd1)
    );
    fds.note = "same windows".into();
    rows.push(judge(fds, "< 5 % growth", growth(fd0, fd1) < 5.0));

    let mut health = Row::new(SCENARIO, size.clone());
    health.gateway = format!(
        "{panics} panics, process {}, {} reconnects",
        if up { "up" } else { "DOWN" },
        view["reconnects"]
    );
    health.note = format!("camera state at the end: {}", view["state"]);
    rows.push(health.target("0 panics, up", panics == 0 && up));

    let (n_ranges, gaps) = unexplained_gaps(recordings, flaps);
    let mut rec = Row::new(SCENARIO, size.clone());
    rec.gateway = format!(
        "{n_ranges} recorded ranges, {} gaps outside flaps",
        gaps.len()
    );
    rec.note = if gaps.is_empty() {
        "every gap lies at a camera outage".into()
    } else {
        format!("unexplained gaps (ms): {gaps:?}")
    };
    rows.push(rec.target("gaps only at flaps", gaps.is_empty() && n_ranges > 0));

    let mut viewers = Row::new(SCENARIO, size);
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    viewers.gateway = format!(
        "{} live sessions ({} frames), {} seeking sessions ({} seeks, {} refused), {} failed",
        get(&tally.live_sessions),
        get(&tally.live_frames),
        get(&tally.seeking_sessions),
        get(&tally.seeks_ok),
        get(&tally.seeks_refused),
        get(&tally.failures)
    );
    viewers.note = tally
        .first_failure
        .lock()
        .expect("not poisoned")
        .clone()
        .unwrap_or_default();
    let ok = get(&tally.failures) == 0 && get(&tally.live_sessions) > 0;
    rows.push(viewers.target("no failed session", ok));
}
