//! Robustness of management calls and recordings, through a real gateway: a PATCH or DELETE whose caller goes
//! away half-way still completes (the handler future dropped at each await point, and a real HTTP client that
//! hangs up mid-PATCH); deleting a stream deletes its recordings, so a new stream of the same id starts with none (also when
//! a crash cut the delete short); two identical exports at once both give a complete MP4; the export limit
//! answers 503 `too_many_exports`.

mod common;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use api_models::PatchStream;
use serde_json::{json, Value};
use testdata::probe::ffprobe;

/// A testsrc input of `width`x240.
fn inputs(width: u32) -> Value {
    json!([{
        "label": "pattern",
        "url": format!("testsrc://?width={width}&height=240&fps=25&gop=25"),
        "priority": 0
    }])
}

/// Polls `cond` until it holds, for at most `secs`.
async fn until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until no management call works on `cam` any more (a no-op PATCH is answered 200, not 409).
async fn idle(gw: &common::TestGateway) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = gw.patch("/streams/cam", &json!({})).await;
        if r.status() == 200 {
            return;
        }
        assert_eq!(r.status(), 409);
        assert!(Instant::now() < deadline, "the stream stayed busy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_dropped_at_any_await_point_still_restarts_the_ingest() {
    let gw = common::start().await;
    assert_eq!(
        gw.post("/streams", &common::testsrc_stream("cam", 320, 240))
            .await
            .status(),
        201
    );
    gw.wait_for("cam", |s| s.width == Some(320)).await;
    let registry = gw.gateway().registry().clone();
    // Each round drops the call after `polls` polls: at the database write, while the old ingest stops, and later.
    for (polls, width) in [(1, 336), (2, 352), (3, 368), (4, 384), (6, 400)] {
        let patch: PatchStream =
            serde_json::from_value(json!({ "rtsp_inputs": inputs(width) })).unwrap();
        let mut call = Box::pin(registry.patch("cam", patch));
        for _ in 0..polls {
            if futures::poll!(call.as_mut()).is_ready() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(call);
        // Consistent: the new definition is stored, shown and running (its pictures arrive).
        let view = gw.wait_for("cam", |s| s.width == Some(width)).await;
        assert!(view.inputs[0].url.contains(&format!("width={width}")));
        idle(&gw).await;
    }
    // And it is what comes back after a restart.
    let gw = gw.restart().await;
    gw.wait_for("cam", |s| s.width == Some(400)).await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_dropped_at_any_await_point_still_closes_the_hub() {
    let gw = common::start().await;
    let registry = gw.gateway().registry().clone();
    for polls in [1, 2, 3, 5] {
        assert_eq!(
            gw.post("/streams", &common::testsrc_stream("cam", 320, 240))
                .await
                .status(),
            201
        );
        gw.wait_for("cam", |s| s.width == Some(320)).await;
        let hub = registry.hub("cam").unwrap();
        let mut call = Box::pin(registry.delete("cam"));
        for _ in 0..polls {
            if futures::poll!(call.as_mut()).is_ready() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(call);
        until(15, "the hub closed", || hub.is_closed()).await;
        let deadline = Instant::now() + Duration::from_secs(15);
        while gw.get("/streams/cam").await.status() != 404 {
            assert!(Instant::now() < deadline, "the stream stayed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Gone from the database too.
    let gw = gw.restart().await;
    assert_eq!(gw.get("/streams/cam").await.status(), 404);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_mid_patch_leaves_the_new_ingest_running() {
    let gw = common::start().await;
    let addr = gw.gateway().local_addr();
    assert_eq!(
        gw.post("/streams", &common::testsrc_stream("cam", 320, 240))
            .await
            .status(),
        201
    );
    gw.wait_for("cam", |s| s.width == Some(320)).await;
    for width in [352, 384] {
        let body = json!({ "rtsp_inputs": inputs(width) }).to_string();
        let mut conn = std::net::TcpStream::connect(addr).unwrap();
        conn.write_all(
            format!(
                "PATCH /streams/cam HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .unwrap();
        // Hang up the moment the new definition is in place: the old ingest is stopping, the new one not yet
        // started — where a handler cancelled by the disconnect used to leave the stream without an ingest.
        let deadline = Instant::now() + Duration::from_secs(15);
        while !gw.stream("cam").await.inputs[0]
            .url
            .contains(&format!("width={width}"))
        {
            assert!(Instant::now() < deadline, "the PATCH never took effect");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        conn.shutdown(std::net::Shutdown::Both).unwrap();
        drop(conn);
        gw.wait_for("cam", |s| s.width == Some(width)).await;
        idle(&gw).await;
    }
    gw.stop().await;
}

/// A recorded test-pattern stream `cam` in 1 s segments, recorded until `n` segments are finished; recording is
/// then turned off, so every segment is finished.
async fn recorded_cam(gw: &common::TestGateway, n: usize) -> Vec<Value> {
    let mut body = common::testsrc_stream("cam", 320, 240);
    body["should_record"] = json!(true);
    assert_eq!(gw.post("/streams", &body).await.status(), 201);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let segs = segments(gw).await;
        if segs.iter().filter(|s| s["state"] == "complete").count() >= n {
            break;
        }
        assert!(Instant::now() < deadline, "never recorded {n}: {segs:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = gw
        .patch("/streams/cam", &json!({"should_record": false}))
        .await;
    assert_eq!(r.status(), 200);
    segments(gw).await
}

async fn segments(gw: &common::TestGateway) -> Vec<Value> {
    let rec: Value = gw
        .get("/streams/cam/recordings")
        .await
        .json()
        .await
        .unwrap();
    rec["ranges"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["segments"].as_array().unwrap().clone())
        .collect()
}

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_stream_deletes_its_recordings_and_a_new_one_starts_empty() {
    let gw = common::start_with(|c| c.segment_secs = 1).await;
    let segs = recorded_cam(&gw, 2).await;
    let cam_dir = gw.config().data_dir.join("recordings/cam");
    assert!(files_in(&cam_dir) >= segs.len() && !segs.is_empty());
    // Keep a copy of one finished segment, to plant it later as a delete a crash cut short.
    let kept = gw.config().data_dir.join("kept.mp4");
    std::fs::copy(cam_dir.join(format!("{}.mp4", segs[0]["start_ms"])), &kept).unwrap();
    assert_eq!(gw.delete("/streams/cam").await.status(), 204);
    assert!(!cam_dir.exists(), "the stream's files went with it");
    assert_eq!(gw.get("/streams/cam/recordings").await.status(), 404);

    assert_eq!(
        gw.post("/streams", &common::testsrc_stream("cam", 320, 240))
            .await
            .status(),
        201
    );
    assert!(segments(&gw).await.is_empty(), "a new stream starts empty");
    assert_eq!(gw.delete("/streams/cam").await.status(), 204);

    // A crash after the stream's row went but before its files did: the next start removes them instead of
    // indexing them back, and a new "cam" still starts empty.
    let ghost = gw.config().data_dir.join("recordings/cam");
    let data = gw.stop().await;
    std::fs::create_dir_all(&ghost).unwrap();
    std::fs::copy(&kept, ghost.join(format!("{}.mp4", segs[0]["start_ms"]))).unwrap();
    let gw = common::start_in(data, |c| c.segment_secs = 1).await;
    assert!(
        !ghost.exists(),
        "recordings of an unregistered stream removed at start-up"
    );
    assert_eq!(
        gw.post("/streams", &common::testsrc_stream("cam", 320, 240))
            .await
            .status(),
        201
    );
    assert!(segments(&gw).await.is_empty());
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_exports_at_once_are_both_complete_and_the_limit_answers_503() {
    let gw = common::start_with(|c| {
        c.segment_secs = 1;
        c.max_exports = 2;
    })
    .await;
    let segs = recorded_cam(&gw, 3).await;
    let (start, end) = (
        segs[0]["start_ms"].as_i64().unwrap(),
        segs.last().unwrap()["end_ms"].as_i64().unwrap(),
    );
    let cam_dir = gw.config().data_dir.join("recordings/cam");
    let recorded_frames: u64 = segs
        .iter()
        .map(|s| {
            ffprobe(&cam_dir.join(format!("{}.mp4", s["start_ms"])), None)
                .unwrap()
                .frames
        })
        .sum();
    let url = format!("/streams/cam/recordings/export?start={start}&end={end}");

    // Both at the same moment: two builds of the same file name.
    let (a, b) = tokio::join!(gw.get(&url), gw.get(&url));
    let out = tempfile::tempdir().unwrap();
    for (i, r) in [a, b].into_iter().enumerate() {
        assert_eq!(r.status(), 200);
        let file = out.path().join(format!("{i}.mp4"));
        std::fs::write(&file, r.bytes().await.unwrap()).unwrap();
        let p = ffprobe(&file, None).expect("ffprobe reads the export");
        assert_eq!(p.frames, recorded_frames, "export {i} is whole");
    }
    let partials = std::fs::read_dir(gw.config().data_dir.join("exports/cam"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
        .count();
    assert_eq!(partials, 0, "no temporary file left behind");

    // Every place taken: a new export is refused, a typed 503 with Retry-After, until a place is free.
    let held: Vec<_> = (0..2)
        .map(|_| gw.gateway().exports().try_start().unwrap())
        .collect();
    let other = format!(
        "/streams/cam/recordings/export?start={start}&end={}",
        end - 100
    );
    let r = gw.get(&other).await;
    assert!(r.headers().contains_key("retry-after"));
    common::assert_error(r, 503, "too_many_exports").await;
    // The one already built is served from the cache without a place.
    assert_eq!(gw.get(&url).await.status(), 200);
    drop(held);
    assert_eq!(gw.get(&other).await.status(), 200);
    gw.stop().await;
}
