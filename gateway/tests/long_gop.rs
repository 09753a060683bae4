//! A camera with a 20 s GOP (25 fps, one keyframe every 500 frames), joined 12 s after its keyframe, when the GOP
//! cache holds about 300 frames: more than a viewer's old 256-frame queue. Tried as a new user would, the viewer
//! used to get 256 frames at once, then nothing until the next keyframe, seconds later.
//!
//! Over WSC-RTP the reference client gets the whole cache at once and then live frames without a pause, every
//! frame decodes (ffprobe), and a client showing frames by RTP time is at the live edge (the burst's timestamps
//! are squeezed). In Chromium over WebRTC the picture starts at once and, a few seconds after the join, frames are
//! shown about as soon as they arrive (`requestVideoFrameCallback`: `expectedDisplayTime - receiveTime`).

mod common;

use std::time::{Duration, Instant};

use common::browser::Browser;
use gateway::Gateway;
use testdata::probe::ffprobe;
use testdata::{FixtureCodec, FixtureOptions, RtspFixture};
use wsc_rtp_client::{run, ClientOptions};

/// 25 fps with a keyframe every 20 s.
const GOP: u32 = 500;
/// Frames in the GOP cache when the viewer joins: more than the old per-viewer queue of 256.
const CACHED: u64 = 300;

async fn long_gop_camera() -> (RtspFixture, Gateway, tempfile::TempDir) {
    let (fixture, gw, dir) = common::gateway_with_camera(FixtureOptions {
        codec: FixtureCodec::H264,
        fps: 25,
        gop: GOP,
        bitrate_kbps: 400,
        ..Default::default()
    })
    .await;
    // The stream's first frame is a keyframe; wait until 300 frames of its GOP are cached.
    common::stream_until(&gw, "cam", |v| v["frames"].as_u64().unwrap_or(0) >= CACHED).await;
    (fixture, gw, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wsc_rtp_viewer_gets_the_whole_gop_at_once_then_live_frames() {
    let (_fixture, gw, dir) = long_gop_camera().await;
    let file = dir.path().join("joined.h264");
    let want = CACHED + 50;
    let started = Instant::now();
    let stats = run(ClientOptions {
        url: format!(
            "{}/streams/cam/wsc-rtp",
            gw.base_url().replace("http://", "ws://")
        ),
        websocket: false,
        max_frames: Some(want),
        duration: Some(Duration::from_secs(20)),
        drop_percent: 0,
        output: Some(Box::new(std::fs::File::create(&file).unwrap())),
        start_ms: None,
        speed: None,
    })
    .await
    .unwrap();
    let took = started.elapsed();
    eprintln!("{stats:?} in {took:?}");
    assert_eq!(stats.transport, "udp");
    assert!(stats.frames >= want, "{stats:?}");
    assert_eq!(stats.lost, 0, "{stats:?}");
    assert!(stats.time_to_first_frame.unwrap() < Duration::from_secs(1));
    // 50 frames past the cache take 2 s at 25 fps; a viewer that stalled until the next keyframe (8 s away) fails.
    assert!(
        took < Duration::from_secs(5),
        "{want} frames took {took:?}: the viewer waited for a keyframe"
    );
    // Played by RTP time, the last frame is shown almost as it arrives: the burst did not leave the client a
    // GOP behind.
    assert!(
        stats.hold_last < Duration::from_millis(150),
        "a client pacing by RTP time is {:?} behind",
        stats.hold_last
    );
    assert!(
        stats.hold_max < Duration::from_secs(1),
        "the burst was held {:?}",
        stats.hold_max
    );
    let probe = ffprobe(&file, Some("h264")).expect("ffprobe reads the file");
    assert_eq!(
        probe.frames, stats.frames,
        "every frame received decodes: {probe:?}"
    );
}

/// Collects, from the first frame shown on, each frame's `expectedDisplayTime - receiveTime` (how long Chromium
/// holds a frame it has received) into `window.holds`, and the inbound stats' jitter buffer delay.
const WATCH_SCRIPT: &str = "
    const v = document.getElementById('video');
    if (!v) return { error: 'no video element' };
    window.holds = [];
    const each = (now, m) => {
        if (m.receiveTime !== undefined) {
            window.holds.push({ at: performance.now(), hold: m.expectedDisplayTime - m.receiveTime,
                                presented: m.presentedFrames });
        }
        v.requestVideoFrameCallback(each);
    };
    v.requestVideoFrameCallback(each);
    return { ok: true };
";

const READ_SCRIPT: &str = "
    const p = window.gatewayPlayer;
    let s = null;
    if (p && p.pc) {
        const r = await p.pc.getStats();
        r.forEach((x) => { if (x.type === 'inbound-rtp' && x.kind === 'video') s = x; });
    }
    return { holds: window.holds || [], decoded: s ? (s.framesDecoded || 0) : 0,
             jitter_delay: s ? (s.jitterBufferDelay || 0) : 0, emitted: s ? (s.jitterBufferEmittedCount || 0) : 0,
             freezes: s ? (s.freezeCount || 0) : 0 };
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_joining_a_long_gop_is_live_within_seconds() {
    let (_fixture, gw, _dir) = long_gop_camera().await;
    let browser = Browser::open(
        &format!("{}/debug/webrtc-client?stream=cam", gw.base_url()),
        &[],
    )
    .await;
    let w = browser.script(WATCH_SCRIPT).await;
    assert!(w["error"].is_null(), "{w}");

    // Wait for the first frame shown, then watch 4 s more.
    let deadline = Instant::now() + Duration::from_secs(15);
    let first = loop {
        let r = browser.script(READ_SCRIPT).await;
        if let Some(h) = r["holds"].as_array().and_then(|h| h.first()) {
            break h["at"].as_f64().unwrap();
        }
        assert!(Instant::now() < deadline, "no frame shown: {r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let r = loop {
        let r = browser.script(READ_SCRIPT).await;
        let last = r["holds"]
            .as_array()
            .and_then(|h| h.last())
            .map_or(first, |h| h["at"].as_f64().unwrap());
        if last - first > 4_000.0 {
            break r;
        }
        assert!(Instant::now() < deadline, "frames stopped: {r}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let holds: Vec<(f64, f64)> = r["holds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["at"].as_f64().unwrap() - first,
                h["hold"].as_f64().unwrap(),
            )
        })
        .collect();
    let mut late: Vec<f64> = holds
        .iter()
        .filter(|(at, _)| *at > 3_000.0)
        .map(|(_, h)| *h)
        .collect();
    late.sort_by(f64::total_cmp);
    let emitted = r["emitted"].as_f64().unwrap().max(1.0);
    eprintln!(
        "Chromium after a join into {CACHED} cached frames: {} frames shown, decoded {}, hold in the first 500 ms \
         {:?} ms, hold 3-4 s after: p50 {:.0} ms, max {:.0} ms; jitter buffer delay {:.0} ms per frame",
        holds.len(),
        r["decoded"],
        holds
            .iter()
            .filter(|(at, _)| *at < 500.0)
            .map(|(_, h)| h.round())
            .collect::<Vec<_>>(),
        late.get(late.len() / 2).copied().unwrap_or(f64::NAN),
        late.last().copied().unwrap_or(f64::NAN),
        r["jitter_delay"].as_f64().unwrap() * 1000.0 / emitted
    );
    assert!(
        r["decoded"].as_u64().unwrap() >= CACHED,
        "the whole cached GOP was decoded: {r}"
    );
    assert!(!late.is_empty(), "frames shown 3 s after the first");
    assert!(
        late[late.len() / 2] < 200.0,
        "Chromium still holds frames {} ms after they arrive, 3 s after the join",
        late[late.len() / 2]
    );
    browser.close().await;
}
