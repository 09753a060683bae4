//! Recording benchmark: the gateway's CPU to ingest and record N streams into MP4 segments, side by side in one
//! run with `ffmpeg -c copy -f segment` recording the same RTSP stream N times. The ratio is the figure.
//!
//! One RTSP fixture (shared media: one encoder whatever the number of clients) serves every stream. Each phase
//! measures only its recorders' processes (utime+stime from /proc): the gateway binary ingesting (recording off,
//! for context) then ingesting and recording, then N ffmpeg processes. Run with
//! `cargo bench -p gateway --bench record_vs_ffmpeg` (`--streams=1,16`); under `cargo test` it runs tiny sizes.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testdata::{FixtureOptions, RtspFixture};

#[path = "support/mod.rs"]
mod support;
use support::{proc_usage, spawn_gateway};

/// CPU (cores) the processes use over `window`.
async fn cpu_over(pids: &[u32], window: Duration) -> f64 {
    let before: f64 = pids.iter().map(|p| proc_usage(*p).0).sum();
    let t0 = Instant::now();
    tokio::time::sleep(window).await;
    let after: f64 = pids.iter().map(|p| proc_usage(*p).0).sum();
    (after - before) / t0.elapsed().as_secs_f64()
}

async fn patch_all(base: &str, n: usize, body: Value) {
    let http = reqwest::Client::new();
    for i in 0..n {
        let r = http
            .patch(format!("{base}/streams/cam{i}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}

/// Waits until every stream's view satisfies `ok`.
async fn wait_all(base: &str, n: usize, ok: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for i in 0..n {
        loop {
            let v: Value = reqwest::get(format!("{base}/streams/cam{i}"))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if ok(&v) {
                break;
            }
            assert!(Instant::now() < deadline, "cam{i} never got there: {v}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// (gateway ingest only, gateway ingest + record) in cores.
async fn gateway_phase(url: &str, n: usize, window: Duration) -> (f64, f64, u64) {
    let gw = spawn_gateway(&[
        "--wsc-udp-port",
        "0",
        "--webrtc-udp-port",
        "0",
        "--segment-secs",
        "60",
    ])
    .await;
    let http = reqwest::Client::new();
    for i in 0..n {
        let r = http
            .post(format!("{}/streams", gw.base))
            .json(&json!({"source_id": format!("cam{i}"),
                "rtsp_inputs": [{"label": "main", "url": url, "priority": 0}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        // One client joins at a time (see ffmpeg_phase).
        wait_all(&gw.base, i + 1, |v| v["state"] == "running").await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid = gw.child.id();
    let ingest = cpu_over(&[pid], window).await;
    patch_all(&gw.base, n, json!({"should_record": true})).await;
    wait_all(&gw.base, n, |v| v["recording"]["state"] == "recording").await;
    let started = Instant::now();
    let record = cpu_over(&[pid], window).await;
    patch_all(&gw.base, n, json!({"should_record": false})).await;
    let wall = started.elapsed().as_secs_f64() * n as f64;
    let bytes = dir_bytes(&gw.dir.path().join("recordings"));
    // What the catalog holds: recorded time against wall time, and ranges (more than one per stream is a gap).
    let (mut recorded_ms, mut ranges) = (0i64, 0usize);
    for i in 0..n {
        let rec: Value = reqwest::get(format!("{}/streams/cam{i}/recordings", gw.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for r in rec["ranges"].as_array().unwrap() {
            recorded_ms += r["end_ms"].as_i64().unwrap() - r["start_ms"].as_i64().unwrap();
            ranges += 1;
        }
    }
    println!(
        "  {n} streams: recorded {:.1} s of {:.1} s of recording time (the first keyframe comes up to 2 s late), {ranges} ranges",
        recorded_ms as f64 / 1000.0,
        wall
    );
    (ingest, record, bytes)
}

struct Ffmpegs(Vec<Child>);

impl Drop for Ffmpegs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn ffmpeg_phase(url: &str, n: usize, window: Duration) -> (f64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let mut procs = Ffmpegs(Vec::new());
    for i in 0..n {
        procs.0.push(
            Command::new("ffmpeg")
                .args([
                    "-nostdin",
                    "-loglevel",
                    "error",
                    "-rtsp_transport",
                    "tcp",
                    "-i",
                    url,
                ])
                .args([
                    "-c",
                    "copy",
                    "-f",
                    "segment",
                    "-segment_time",
                    "60",
                    "-reset_timestamps",
                    "1",
                ])
                .arg(dir.path().join(format!("cam{i}_%03d.mp4")))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("ffmpeg runs (scripts/setup.sh installs it)"),
        );
        // One client joins at a time: gst-rtsp-server aborts when many set up a shared media at once.
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    // Connected and writing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pids: Vec<u32> = procs.0.iter().map(|c| c.id()).collect();
    let cpu = cpu_over(&pids, window).await;
    let bytes = dir_bytes(dir.path());
    drop(procs);
    (cpu, bytes)
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

#[tokio::main]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (sizes, window) = if full {
        let sizes = std::env::args()
            .find_map(|a| a.strip_prefix("--streams=").map(str::to_owned))
            .map_or(vec![1usize, 16], |v| {
                v.split(',').filter_map(|n| n.parse().ok()).collect()
            });
        (sizes, Duration::from_secs(20))
    } else {
        (vec![1usize, 2], Duration::from_secs(2))
    };
    // 2 Mbit/s at 1280x720 25 fps, a keyframe every 2 s: an ordinary camera's main stream.
    let camera = RtspFixture::start(FixtureOptions {
        width: 1280,
        height: 720,
        fps: 25,
        gop: 50,
        bitrate_kbps: 2000,
        pattern: "smpte",
        ..Default::default()
    })
    .unwrap();
    let url = camera.url();
    println!("| streams | gateway ingest only (% core) | gateway ingest + record (% core) | ffmpeg -c copy segment (% core) | ratio gateway/ffmpeg | bytes written gateway / ffmpeg |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for &n in &sizes {
        let (ingest, record, gw_bytes) = gateway_phase(&url, n, window).await;
        let (ffmpeg, ff_bytes) = ffmpeg_phase(&url, n, window).await;
        println!(
            "| {n} | {:.1} | {:.1} | {:.1} | {:.2} | {} / {} |",
            ingest * 100.0,
            record * 100.0,
            ffmpeg * 100.0,
            if ffmpeg > 0.0 {
                record / ffmpeg
            } else {
                f64::NAN
            },
            gw_bytes,
            ff_bytes
        );
    }
}
