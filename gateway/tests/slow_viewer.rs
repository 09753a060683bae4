//! A WebSocket-transport viewer on a slow link stalls: it reads nothing for 6 s (its receive buffer is small, as a
//! congested link's would be), then reads at twice the stream's bitrate. The camera stamps every frame with the
//! time it was encoded, so the viewer knows how old each frame is when it gets it.
//!
//! What the viewer must see: after the stall, a short tail of what was already in the sockets, then a keyframe
//! near the live edge: within 2 s of resuming it is less than 800 ms behind, and stays there. Before the lag bound
//! (256 frames per viewer, and a kernel send buffer that grows to megabytes) the viewer got all 6 s of backlog and
//! stayed seconds behind, catching up only as fast as its spare bandwidth allowed.

mod common;

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use testdata::stamp::{find_stamp, monotonic_ns};
use testdata::{FixtureCodec, FixtureOptions};
use tokio_tungstenite::tungstenite::Message;
use wsc_rtp_client::depacketize::{Codec, Depacketizer};

const BITRATE_KBPS: u32 = 1500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_websocket_viewer_resumes_near_the_live_edge() {
    let (_fixture, gw, _dir) = common::gateway_with_camera(FixtureOptions {
        codec: FixtureCodec::H264,
        width: 640,
        height: 360,
        fps: 25,
        gop: 25,
        bitrate_kbps: BITRATE_KBPS,
        stamp_frames: true,
        // Noise: the encoder spends its whole bitrate, as on a busy scene.
        pattern: "snow",
        ..Default::default()
    })
    .await;

    let tcp = tokio::net::TcpSocket::new_v4().unwrap();
    tcp.set_recv_buffer_size(16 * 1024).unwrap();
    let stream = tcp.connect(gw.local_addr()).await.unwrap();
    let url = format!(
        "{}/streams/cam/wsc-rtp?version=3",
        gw.base_url().replace("http://", "ws://")
    );
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    ws.send(Message::Text(r#"{"type":"use_websocket"}"#.into()))
        .await
        .unwrap();

    let mut depay = Depacketizer::new(Codec::H264);
    // Age (ms) of each frame received, with when (ms since resuming).
    let mut read = |ws_msg: Message, ages: &mut Vec<f64>| -> usize {
        let Message::Binary(p) = ws_msg else { return 0 };
        if let Some(au) = depay.push(&p) {
            if let Some(stamp) = find_stamp(&au.annex_b) {
                ages.push(monotonic_ns().saturating_sub(stamp) as f64 / 1e6);
            }
        }
        p.len()
    };

    // Playing: 50 stamped frames (2 s), measuring the stream's real bitrate.
    let mut before = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut playing_bytes, mut playing_since) = (0usize, None);
    while before.len() < 50 {
        let m = tokio::time::timeout_at(deadline.into(), ws.next())
            .await
            .expect("frames over the WebSocket")
            .unwrap()
            .unwrap();
        let n = read(m, &mut before);
        if playing_since.is_some() {
            playing_bytes += n;
        } else if !before.is_empty() {
            playing_since = Some(Instant::now());
        }
    }
    let stream_rate = playing_bytes as f64 / playing_since.unwrap().elapsed().as_secs_f64();

    // The stall: the viewer reads nothing (the stimulus, not a wait for a condition).
    tokio::time::sleep(Duration::from_secs(6)).await;

    // Resume at twice the stream's bitrate for 4 s.
    let resumed = Instant::now();
    let rate = 2.0 * stream_rate;
    let mut bytes = 0usize;
    let mut after: Vec<(f64, f64)> = Vec::new();
    while resumed.elapsed() < Duration::from_secs(4) {
        let allowed = rate * resumed.elapsed().as_secs_f64();
        if bytes as f64 > allowed {
            tokio::time::sleep(Duration::from_secs_f64((bytes as f64 - allowed) / rate)).await;
        }
        let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("frames keep coming")
            .unwrap()
            .unwrap();
        let mut ages = Vec::new();
        bytes += read(m, &mut ages);
        let at = resumed.elapsed().as_secs_f64() * 1000.0;
        after.extend(ages.into_iter().map(|a| (at, a)));
    }
    let summary: Vec<String> = after
        .iter()
        .step_by(5)
        .map(|(at, age)| format!("{at:.0}:{age:.0}"))
        .collect();
    eprintln!(
        "stream {:.0} kbit/s; frames after the stall (ms since resuming: age ms), every 5th: {}",
        stream_rate * 8.0 / 1000.0,
        summary.join(" ")
    );
    assert!(after.len() > 25, "frames flow after the stall: {summary:?}");
    let late: Vec<f64> = after
        .iter()
        .filter(|(at, _)| *at >= 2000.0)
        .map(|(_, age)| *age)
        .collect();
    assert!(!late.is_empty(), "frames 2 s after resuming: {summary:?}");
    let worst = late.iter().copied().fold(0.0, f64::max);
    assert!(
        worst < 800.0,
        "2 s after resuming the viewer is still {worst:.0} ms behind: {summary:?}"
    );
}
