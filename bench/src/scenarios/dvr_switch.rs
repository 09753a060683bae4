//! Live-rewind, part 1: how long a viewer waits for a picture after a seek, and after going back to live, over
//! WSC-RTP (protocol messages) and WebRTC (`POST /sessions/{id}/seek|live`), each from the command leaving the
//! client to the first complete keyframe after it that is the right one: for a seek, the recorded keyframe the
//! seek must start from (its stamp says which it is), for live any live (unstamped) one.
//!
//! One session per transport runs cycles of: seek from live, play a moment, seek elsewhere in the recording, play
//! a moment, seek again with the recording dropped from the page cache first (the recording was just written, so
//! otherwise every read is a memory copy; an hour-old recording on a busy gateway is mostly on disk only), play a
//! moment, back to live, a moment of live. Next to it, what a client without live-rewind does: open a new session
//! starting at the instant (`start_ms`; every third one uncached, as the seeks), or a new live one, timed the
//! same way from the moment it starts opening.

use std::time::{Duration, Instant};

use rand::Rng;

use super::dvr::{p50_p95, Setup, SCENARIO};
use crate::dvr_viewer::{AnyViewer, Kind};
use crate::report::Row;
use crate::{page_cache, Ctx};

/// Longest wait for one picture before the attempt counts as failed.
const WITHIN: Duration = Duration::from_secs(5);
const TARGET_MS: f64 = 300.0;

/// Where a seek starts from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    Live,
    Recording,
    /// In the recording, with its files dropped from the page cache just before.
    Uncached,
}

#[derive(Default)]
struct Times {
    seek_from_live: Vec<f64>,
    seek_in_dvr: Vec<f64>,
    seek_uncached: Vec<f64>,
    live: Vec<f64>,
    new_at: Vec<f64>,
    new_live: Vec<f64>,
    failures: Vec<String>,
}

impl Times {
    fn seeks(&self) -> Vec<f64> {
        [
            &self.seek_from_live[..],
            &self.seek_in_dvr[..],
            &self.seek_uncached[..],
        ]
        .concat()
    }

    /// Records the time from `since` to `arrived`, or the failure.
    fn note(
        &mut self,
        what: &str,
        since: Instant,
        arrived: anyhow::Result<Instant>,
    ) -> Option<f64> {
        match arrived {
            Ok(at) => Some(at.duration_since(since).as_secs_f64() * 1e3),
            Err(e) => {
                self.failures.push(format!("{what}: {e:#}"));
                None
            }
        }
    }
}

pub async fn run(ctx: &Ctx, setup: &Setup, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let (cycles, fresh) = if ctx.quick { (2, 2) } else { (30, 20) };
    for kind in [Kind::Wsc, Kind::WebRtc] {
        let t = measure(ctx, setup, kind, cycles, fresh).await?;
        rows.extend(rows_for(setup, kind, &t));
    }
    Ok(())
}

/// How long to let playback run between two commands: a viewer watches a moment before the next click.
fn pause(ctx: &Ctx) -> Duration {
    let (lo, hi) = if ctx.quick { (200, 400) } else { (500, 1500) };
    Duration::from_millis(rand::thread_rng().gen_range(lo..hi))
}

async fn measure(
    ctx: &Ctx,
    setup: &Setup,
    kind: Kind,
    cycles: usize,
    fresh: usize,
) -> anyhow::Result<Times> {
    let (gw, rec) = (&setup.gw, &setup.rec);
    let live = |s: Option<u64>| s.is_none();
    // Playback from a seek must stay in the recording until the next command.
    let margin = Duration::from_secs(if ctx.quick { 3 } else { 10 });
    let mut t = Times::default();
    let (mut v, opened) = AnyViewer::open(kind, gw, setup.stream, None).await?;
    v.keyframe(opened, live, Duration::from_secs(15)).await?;
    for _ in 0..cycles {
        for from in [Origin::Live, Origin::Recording, Origin::Uncached] {
            tokio::time::sleep(pause(ctx)).await;
            if from == Origin::Uncached {
                drop_recording_from_cache(setup).await?;
            }
            let target = setup.random_instant(margin);
            let (sent, got) = match v.seek(gw, target).await {
                Ok(sent) => (
                    sent,
                    v.keyframe(sent, |s| rec.starts_seek(target, s), WITHIN)
                        .await,
                ),
                Err(e) => (Instant::now(), Err(e)),
            };
            if let Some(ms) = t.note("seek", sent, got) {
                match from {
                    Origin::Live => t.seek_from_live.push(ms),
                    Origin::Recording => t.seek_in_dvr.push(ms),
                    Origin::Uncached => t.seek_uncached.push(ms),
                }
            }
        }
        tokio::time::sleep(pause(ctx)).await;
        let (sent, got) = match v.live(gw).await {
            Ok(sent) => (sent, v.keyframe(sent, live, WITHIN).await),
            Err(e) => (Instant::now(), Err(e)),
        };
        if let Some(ms) = t.note("live", sent, got) {
            t.live.push(ms);
        }
    }
    v.close(gw).await?;
    for i in 0..fresh {
        if i % 3 == 2 {
            drop_recording_from_cache(setup).await?;
        }
        let target = setup.random_instant(margin);
        let (mut v, opened) = AnyViewer::open(kind, gw, setup.stream, Some(target)).await?;
        let got = v
            .keyframe(opened, |s| rec.starts_seek(target, s), WITHIN)
            .await;
        if let Some(ms) = t.note("new session at an instant", opened, got) {
            t.new_at.push(ms);
        }
        v.close(gw).await?;
        let (mut v, opened) = AnyViewer::open(kind, gw, setup.stream, None).await?;
        let got = v.keyframe(opened, live, WITHIN).await;
        if let Some(ms) = t.note("new live session", opened, got) {
            t.new_live.push(ms);
        }
        v.close(gw).await?;
    }
    Ok(t)
}

async fn drop_recording_from_cache(setup: &Setup) -> anyhow::Result<()> {
    let files = setup.rec.files.clone();
    Ok(tokio::task::spawn_blocking(move || page_cache::drop_files(&files)).await??)
}

fn rows_for(setup: &Setup, kind: Kind, t: &Times) -> Vec<Row> {
    let how = match kind {
        Kind::Wsc => "`seek`/`live` messages",
        Kind::WebRtc => "POST /sessions/{id}/seek and /live",
    };
    let failed = if t.failures.is_empty() {
        "none failed".to_owned()
    } else {
        format!(
            "{} failed (first: {})",
            t.failures.len(),
            t.failures[0].replace('|', "/")
        )
    };
    let seeks = t.seeks();
    let (s50, s95, s) = p50_p95(&seeks);
    let (n50, _, n) = p50_p95(&t.new_at);
    let (_, _, from_live) = p50_p95(&t.seek_from_live);
    let (_, _, in_dvr) = p50_p95(&t.seek_in_dvr);
    let (_, _, uncached) = p50_p95(&t.seek_uncached);
    let mut seek = Row::new(
        SCENARIO,
        format!("seek → first frame, {}, {} seeks", kind.name(), seeks.len()),
    )
    .target(
        format!("p95 < {TARGET_MS:.0} ms"),
        s95 < TARGET_MS && t.failures.is_empty(),
    );
    seek.gateway = s;
    seek.reference = format!("new session at the instant (`start_ms`): {n}");
    seek.ratio = Some(s50 / n50);
    seek.note = format!(
        "{how}; from live {from_live}, within the recording {in_dvr}, within it uncached {uncached} (a third \
         of the seeks, and of the new sessions, start with the recording dropped from the page cache); instants \
         at random over the recording; {failed}; ratio of p50s; {}",
        setup.rec.describe()
    );
    let (l50, l95, l) = p50_p95(&t.live);
    let (f50, _, f) = p50_p95(&t.new_live);
    let mut live = Row::new(
        SCENARIO,
        format!(
            "return to live → first live frame, {}, {} returns",
            kind.name(),
            t.live.len()
        ),
    )
    .target(
        format!("p95 < {TARGET_MS:.0} ms"),
        l95 < TARGET_MS && t.failures.is_empty(),
    );
    live.gateway = l;
    live.reference = format!("new live session: {f}");
    live.ratio = Some(l50 / f50);
    live.note = format!("{how}; {}; {failed}; ratio of p50s", setup.camera);
    vec![seek, live]
}
