//! Recording through the gateway: a stream with `should_record` is cut into MP4 segments under the data
//! directory; the catalog lists them as contiguous ranges; every file plays with ffprobe; turning recording off
//! finalizes the last segment; bad queries get typed errors.

mod common;

use common::small_disk::SmallDisk;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testdata::probe::ffprobe;
use testdata::FixtureOptions;

/// `PATCH /streams/cam` with `body`.
async fn patch_cam(base: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .patch(format!("{base}/streams/cam"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// (frames, duration s) as ffprobe reads `file`.
fn probe(file: &Path) -> (u64, f64) {
    let p = ffprobe(file, None).unwrap_or_else(|| panic!("ffprobe reads {}", file.display()));
    (p.frames, p.duration_secs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_stream_becomes_playable_contiguous_segments() {
    let (_fixture, gw, dir) = common::gateway_with_camera_and(
        FixtureOptions {
            gop: 25,
            ..Default::default()
        },
        |c| c.segment_secs = 2,
    )
    .await;
    let http = reqwest::Client::new();
    let base = gw.base_url();
    let r = patch_cam(&base, json!({"should_record": true})).await;
    assert_eq!(r.status(), 200);
    let started = Instant::now();
    // Two rotations at least: 2 s segments, keyframes every second.
    tokio::time::sleep(Duration::from_millis(5_500)).await;
    let view = get_json(&format!("{base}/streams/cam")).await.unwrap();
    assert_eq!(view["recording"]["state"], "recording", "{view}");
    assert_eq!(view["viewers"], 0, "the recorder is not a viewer");

    let r = patch_cam(&base, json!({"should_record": false})).await;
    assert_eq!(r.status(), 200);
    let recorded_for = started.elapsed().as_millis() as i64;
    let rec: Value = http
        .get(format!("{base}/streams/cam/recordings"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ranges = rec["ranges"].as_array().unwrap();
    assert_eq!(ranges.len(), 1, "no gap while the camera ran: {rec}");
    let segments = ranges[0]["segments"].as_array().unwrap();
    assert!(segments.len() >= 3, "at least two rotations: {rec}");
    assert!(segments.iter().all(|s| s["state"] == "complete"), "{rec}");
    for pair in segments.windows(2) {
        assert_eq!(pair[0]["end_ms"], pair[1]["start_ms"], "contiguous: {rec}");
    }
    let span = ranges[0]["end_ms"].as_i64().unwrap() - ranges[0]["start_ms"].as_i64().unwrap();
    assert!(
        span > 4_000 && span <= recorded_for + 1_500,
        "{span} ms recorded in {recorded_for} ms"
    );

    // Each segment is a file named by its start, a normal MP4 whose frames and duration match the catalog.
    let mut total_bytes = 0;
    for s in segments {
        let file = dir
            .path()
            .join(format!("recordings/cam/{}.mp4", s["start_ms"]));
        let (frames, duration) = probe(&file);
        let catalog_ms = s["end_ms"].as_i64().unwrap() - s["start_ms"].as_i64().unwrap();
        assert!(frames > 0);
        assert!(
            (duration * 1000.0 - catalog_ms as f64).abs() <= 45.0,
            "{}: file {duration} s, catalog {catalog_ms} ms",
            file.display()
        );
        assert_eq!(
            s["bytes"].as_u64().unwrap(),
            std::fs::metadata(&file).unwrap().len()
        );
        total_bytes += s["bytes"].as_u64().unwrap();
    }
    let view = get_json(&format!("{base}/streams/cam")).await.unwrap();
    assert_eq!(view["recording"]["state"], "off");
    assert_eq!(view["recording"]["bytes"].as_u64().unwrap(), total_bytes);
    assert_eq!(view["recording"]["oldest_ms"], segments[0]["start_ms"]);
    assert_eq!(
        view["recording"]["newest_ms"],
        segments[segments.len() - 1]["end_ms"]
    );

    // A window selects and clips.
    let first_end = segments[0]["end_ms"].as_i64().unwrap();
    let rec: Value = http
        .get(format!(
            "{base}/streams/cam/recordings?start={}&end={}",
            first_end - 500,
            first_end + 500
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rec["ranges"][0]["start_ms"], first_end - 500);
    assert_eq!(rec["ranges"][0]["segments"].as_array().unwrap().len(), 2);

    // Bad queries.
    for q in [
        "start=10&end=5",
        "start=-1",
        "end=99999999999999999",
        "start=abc",
        "since=5",
    ] {
        let r = http
            .get(format!("{base}/streams/cam/recordings?{q}"))
            .send()
            .await
            .unwrap();
        common::assert_error(r, 400, "bad_request").await;
    }
    let r = http
        .get(format!("{base}/streams/nope/recordings"))
        .send()
        .await
        .unwrap();
    common::assert_error(r, 404, "not_found").await;
    gw.shutdown().await.unwrap();
}

/// Epoch milliseconds now.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn get_json(url: &str) -> Option<Value> {
    reqwest::get(url).await.ok()?.json().await.ok()
}

/// Runs the gateway binary on `port` over `data_dir`, waiting until it serves.
async fn start_binary(port: u16, data_dir: &Path) -> std::process::Child {
    let child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args([
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--wsc-udp-port",
            "0",
            "--webrtc-udp-port",
            "0",
            "--segment-secs",
            "60",
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the gateway binary starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while get_json(&format!("http://127.0.0.1:{port}/health"))
        .await
        .is_none()
    {
        assert!(Instant::now() < deadline, "the gateway never served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_segment_is_recovered_and_recording_goes_on() {
    let fixture = testdata::RtspFixture::start(FixtureOptions {
        gop: 25,
        ..Default::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let mut gateway = start_binary(port, dir.path()).await;
    common::create_camera(&base, &fixture.url(), true).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = get_json(&format!("{base}/streams/cam")).await.unwrap();
        if v["recording"]["state"] == "recording" {
            break;
        }
        assert!(Instant::now() < deadline, "never recorded: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Mid-segment (60 s segments): about 4 s written, then the process dies without a word.
    tokio::time::sleep(Duration::from_secs(4)).await;
    gateway.kill().unwrap();
    let killed_at = now_ms();
    gateway.wait().unwrap();

    let mut gateway = start_binary(port, dir.path()).await;
    let rec = get_json(&format!("{base}/streams/cam/recordings"))
        .await
        .unwrap();
    let first = &rec["ranges"][0]["segments"][0];
    assert_eq!(first["state"], "recovered", "{rec}");
    let end = first["end_ms"].as_i64().unwrap();
    let start = first["start_ms"].as_i64().unwrap();
    assert!(end - start >= 2_500, "most of the 4 s survived: {rec}");
    assert!(
        killed_at - end <= 1_600,
        "at most about a second lost: ended {} ms before the kill",
        killed_at - end
    );
    let file = dir.path().join(format!("recordings/cam/{start}.mp4"));
    let (frames, duration) = probe(&file);
    assert!(
        frames > 0 && (duration * 1000.0 - (end - start) as f64).abs() <= 45.0,
        "{frames} frames, {duration} s"
    );
    assert_eq!(
        first["bytes"].as_u64().unwrap(),
        std::fs::metadata(&file).unwrap().len()
    );

    // Recording goes on in a new segment; the outage is a gap.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rec = get_json(&format!("{base}/streams/cam/recordings"))
            .await
            .unwrap();
        let ranges = rec["ranges"].as_array().unwrap();
        if ranges.len() == 2 && ranges[1]["segments"][0]["state"] == "writing" {
            assert!(ranges[1]["start_ms"].as_i64().unwrap() > end, "{rec}");
            break;
        }
        assert!(Instant::now() < deadline, "recording did not resume: {rec}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    unsafe { libc::kill(gateway.id() as i32, libc::SIGTERM) };
    gateway.wait().unwrap();
    // A clean stop finalizes the segment being written.
    let mut gateway = start_binary(port, dir.path()).await;
    let rec = get_json(&format!("{base}/streams/cam/recordings"))
        .await
        .unwrap();
    let second = &rec["ranges"][1]["segments"][0];
    assert_eq!(second["state"], "complete", "{rec}");
    gateway.kill().unwrap();
    gateway.wait().unwrap();
}

async fn recordings(base: &str) -> Vec<Value> {
    let rec = get_json(&format!("{base}/streams/cam/recordings"))
        .await
        .unwrap();
    rec["ranges"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["segments"].as_array().unwrap().clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_a_stream_under_its_bytes() {
    // About 500 kB a second (incompressible picture at 4 Mbit/s), in 1 s segments.
    let (_fixture, gw, dir) = common::gateway_with_camera_and(
        FixtureOptions {
            pattern: "snow",
            bitrate_kbps: 4_000,
            gop: 25,
            ..Default::default()
        },
        |c| c.segment_secs = 1,
    )
    .await;
    let base = gw.base_url();
    let r = patch_cam(&base, json!({"retention": {"max_bytes": 10}})).await;
    common::assert_error(r, 400, "bad_request").await;
    let started = now_ms();
    let r = patch_cam(
        &base,
        json!({"should_record": true, "retention": {"max_bytes": 1_048_576, "max_age_secs": 3600}}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let view: Value = r.json().await.unwrap();
    assert_eq!(view["retention"]["max_bytes"], 1_048_576);
    tokio::time::sleep(Duration::from_secs(7)).await;

    let segs = recordings(&base).await;
    let complete: Vec<&Value> = segs.iter().filter(|s| s["state"] == "complete").collect();
    let kept: u64 = complete.iter().map(|s| s["bytes"].as_u64().unwrap()).sum();
    assert!(
        !complete.is_empty() && kept <= 1_048_576,
        "{kept} bytes kept: {segs:?}"
    );
    assert!(
        segs[0]["start_ms"].as_i64().unwrap() > started + 2_000,
        "the oldest segments went: {segs:?}"
    );
    let files = std::fs::read_dir(dir.path().join("recordings/cam"))
        .unwrap()
        .count();
    assert_eq!(files, segs.len(), "deleted from disk and catalog alike");
    let view = get_json(&format!("{base}/streams/cam")).await.unwrap();
    assert_eq!(view["recording"]["bytes"].as_u64().unwrap(), kept, "{view}");
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_disk_floor_frees_space_but_never_the_segment_being_written() {
    // A floor no disk meets: every finished segment must go (cached exports too), and recording must go on
    // regardless.
    let (_fixture, gw, dir) = common::gateway_with_camera_and(
        FixtureOptions {
            gop: 25,
            ..Default::default()
        },
        |c| {
            c.segment_secs = 1;
            c.record_min_free_mb = 1 << 40;
        },
    )
    .await;
    let base = gw.base_url();
    // A cached export (as an earlier download left it): under the floor it goes like the recordings.
    let export = dir.path().join("exports/cam/1-2-3-4-5.mp4");
    std::fs::create_dir_all(export.parent().unwrap()).unwrap();
    std::fs::write(&export, [0u8; 4096]).unwrap();
    let r = patch_cam(&base, json!({"should_record": true})).await;
    assert_eq!(r.status(), 200);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let segs = recordings(&base).await;
        if segs.len() == 1 && segs[0]["state"] == "writing" && !export.exists() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "finished segments stayed: {segs:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let view = get_json(&format!("{base}/streams/cam")).await.unwrap();
    assert_eq!(view["recording"]["state"], "recording", "{view}");
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h265_is_recorded_too() {
    let (_fixture, gw, dir) = common::gateway_with_camera_and(
        FixtureOptions {
            codec: testdata::FixtureCodec::H265,
            gop: 25,
            ..Default::default()
        },
        |c| c.segment_secs = 2,
    )
    .await;
    let base = gw.base_url();
    assert_eq!(
        patch_cam(&base, json!({"should_record": true}))
            .await
            .status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(5_500)).await;
    assert_eq!(
        patch_cam(&base, json!({"should_record": false}))
            .await
            .status(),
        200
    );
    let segs = recordings(&base).await;
    assert!(segs.len() >= 3, "{segs:?}");
    for pair in segs.windows(2) {
        assert_eq!(
            pair[0]["end_ms"], pair[1]["start_ms"],
            "contiguous: {segs:?}"
        );
    }
    for s in &segs {
        assert_eq!(
            (s["codec"].as_str(), s["state"].as_str()),
            (Some("h265"), Some("complete"))
        );
        let file = dir
            .path()
            .join(format!("recordings/cam/{}.mp4", s["start_ms"]));
        let (frames, _) = probe(&file);
        assert!(frames > 0, "{}", file.display());
    }
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_ends_the_segment_cleanly_and_recording_resumes() {
    let data = tempfile::tempdir().unwrap();
    // The recordings filesystem holds 4 MiB; the camera writes about 1 MB a second into 60 s segments.
    let _disk = SmallDisk::mount(&data.path().join("recordings"), "4m");
    let fixture = testdata::RtspFixture::start(FixtureOptions {
        pattern: "snow",
        bitrate_kbps: 8_000,
        gop: 25,
        ..Default::default()
    })
    .unwrap();
    let gw = gateway::Gateway::start(gateway::Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        data_dir: data.path().to_owned(),
        wsc_udp_port: 0,
        webrtc: gateway::config::WebRtcConfig {
            udp_port: 0,
            ..Default::default()
        },
        segment_secs: 60,
        record_min_free_mb: 1,
        ..gateway::Config::default()
    })
    .await
    .unwrap();
    let base = gw.base_url();
    common::create_camera(&base, &fixture.url(), true).await;

    // The disk fills: the segment ends with an error on the stream; retention makes room; recording resumes.
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut saw_error = None;
    loop {
        let v = get_json(&format!("{base}/streams/cam")).await.unwrap();
        if saw_error.is_none() && v["recording"]["state"] == "error" {
            saw_error = v["recording"]["last_error"].as_str().map(str::to_owned);
        }
        if saw_error.is_some() && v["recording"]["state"] == "recording" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no full disk, or no recovery from it: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let error = saw_error.unwrap();
    assert!(!error.is_empty());
    // Nothing on record is damaged: every finished segment plays in full.
    for s in recordings(&base)
        .await
        .iter()
        .filter(|s| s["state"] != "writing")
    {
        let file = data
            .path()
            .join(format!("recordings/cam/{}.mp4", s["start_ms"]));
        let (frames, duration) = probe(&file);
        let span = s["end_ms"].as_i64().unwrap() - s["start_ms"].as_i64().unwrap();
        assert!(
            frames > 0 && (duration * 1000.0 - span as f64).abs() <= 45.0,
            "{s}"
        );
    }
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_outage_is_a_gap_between_ranges() {
    let (mut fixture, gw, dir) = common::gateway_with_camera_and(
        FixtureOptions {
            gop: 25,
            ..Default::default()
        },
        |c| c.segment_secs = 60,
    )
    .await;
    let base = gw.base_url();
    let r = patch_cam(&base, json!({"should_record": true})).await;
    assert_eq!(r.status(), 200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    fixture.stop();
    let stopped_at = now_ms();
    tokio::time::sleep(Duration::from_secs(3)).await;
    fixture.restart().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rec = get_json(&format!("{base}/streams/cam/recordings"))
            .await
            .unwrap();
        let ranges = rec["ranges"].as_array().unwrap().clone();
        if ranges.len() == 2
            && ranges[1]["end_ms"].as_i64().unwrap() - ranges[1]["start_ms"].as_i64().unwrap()
                > 1_000
        {
            let gap =
                ranges[1]["start_ms"].as_i64().unwrap() - ranges[0]["end_ms"].as_i64().unwrap();
            assert!(gap >= 2_000, "the outage is a gap of {gap} ms: {rec}");
            assert!(
                ranges[0]["end_ms"].as_i64().unwrap() <= stopped_at + 100,
                "{rec}"
            );
            // The segment before the outage was finished at the outage and plays.
            let first = &ranges[0]["segments"][0];
            assert_eq!(first["state"], "complete", "{rec}");
            let (frames, _) = probe(
                &dir.path()
                    .join(format!("recordings/cam/{}.mp4", first["start_ms"])),
            );
            assert!(frames > 25, "{frames}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no second range after the camera came back: {rec}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    gw.shutdown().await.unwrap();
}
