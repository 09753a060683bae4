//! The reference client against the real gateway and RTSP fixture: what it writes is a file that ffprobe (an
//! independent decoder) reads frame by frame, over UDP and over the WebSocket fall-back, for H.264 and H.265, and
//! deliberate datagram loss is repaired by NACK.

mod common;

use std::path::Path;
use std::time::Duration;

use gateway::Gateway;
use testdata::probe::ffprobe;
use testdata::{FixtureCodec, FixtureOptions, RtspFixture};
use wsc_rtp_client::{run, ClientOptions, ClientStats};

async fn setup(codec: FixtureCodec) -> (RtspFixture, Gateway, tempfile::TempDir) {
    common::gateway_with_camera(FixtureOptions {
        codec,
        bitrate_kbps: 1500,
        ..Default::default()
    })
    .await
}

async fn receive(gw: &Gateway, file: &Path, websocket: bool, drop_percent: u8) -> ClientStats {
    let out = std::fs::File::create(file).unwrap();
    run(ClientOptions {
        url: format!(
            "{}/streams/cam/wsc-rtp",
            gw.base_url().replace("http://", "ws://")
        ),
        websocket,
        max_frames: Some(75),
        duration: Some(Duration::from_secs(20)),
        drop_percent,
        start_ms: None,
        speed: None,
        output: Some(Box::new(out)),
    })
    .await
    .unwrap()
}

/// Frames ffprobe decodes from an elementary stream file of the test camera (320x240).
fn ffprobe_frames(file: &Path, format: &str) -> u64 {
    let p = ffprobe(file, Some(format)).expect("ffprobe reads the file");
    assert_eq!((p.width, p.height), (320, 240), "ffprobe: {p:?}");
    p.frames
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_over_udp_plays_in_ffprobe() {
    let (_f, gw, dir) = setup(FixtureCodec::H264).await;
    let file = dir.path().join("out.h264");
    let stats = receive(&gw, &file, false, 0).await;
    assert_eq!(stats.transport, "udp");
    assert_eq!(stats.frames, 75);
    assert_eq!(stats.lost, 0);
    assert!(
        stats.time_to_first_frame.unwrap() < Duration::from_secs(2),
        "{stats:?}"
    );
    assert!(ffprobe_frames(&file, "h264") >= 74);
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h265_over_the_websocket_plays_in_ffprobe() {
    let (_f, gw, dir) = setup(FixtureCodec::H265).await;
    let file = dir.path().join("out.h265");
    let stats = receive(&gw, &file, true, 0).await;
    assert_eq!(stats.transport, "websocket");
    assert_eq!(stats.codec, "H265");
    assert_eq!(stats.frames, 75);
    assert!(ffprobe_frames(&file, "hevc") >= 74);
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_repairs_deliberate_loss() {
    let (_f, gw, dir) = setup(FixtureCodec::H264).await;
    let file = dir.path().join("lossy.h264");
    let stats = receive(&gw, &file, false, 10).await;
    assert!(stats.dropped_on_purpose > 20, "{stats:?}");
    assert!(
        stats.repaired >= stats.dropped_on_purpose * 8 / 10,
        "{stats:?}"
    );
    assert!(stats.lost <= stats.dropped_on_purpose / 10, "{stats:?}");
    assert!(stats.frames >= 70, "{stats:?}");
    assert!(ffprobe_frames(&file, "h264") >= stats.frames - 1);
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h265_over_udp_plays_in_ffprobe() {
    let (_f, gw, dir) = setup(FixtureCodec::H265).await;
    let file = dir.path().join("out.h265");
    let stats = receive(&gw, &file, false, 0).await;
    assert_eq!(
        (stats.transport.as_str(), stats.codec.as_str()),
        ("udp", "H265")
    );
    assert!(ffprobe_frames(&file, "hevc") >= 74);
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_over_the_websocket_plays_in_ffprobe() {
    let (_f, gw, dir) = setup(FixtureCodec::H264).await;
    let file = dir.path().join("out.h264");
    let stats = receive(&gw, &file, true, 0).await;
    assert_eq!(stats.transport, "websocket");
    assert!(ffprobe_frames(&file, "h264") >= 74);
    gw.shutdown().await.unwrap();
}
