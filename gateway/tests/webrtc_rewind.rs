//! Live-rewind over WebRTC, with a real WebRTC peer (the `webrtc` crate) on loopback: one session switches from
//! live into the recording and back, through seeks, speeds and a pause, and what arrives on the wire stays one
//! stream that GStreamer decodes; a session can start in the recording; and a session refuses a seek into a range
//! recorded in a codec it did not negotiate.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::recording::{recorded_camera, recorded_camera_with_a_gap};
use gateway::Gateway;
use rtc::rtp;
use rtc::shared::marshal::Marshal;
use serde_json::{json, Value};
use testdata::decode::{decode_rtp, DecodeCodec};
use testdata::webrtc_viewer::{read_packets, starts_keyframe, Viewer, BROWSER_H264};
use testdata::{FixtureCodec, FixtureOptions, RtspFixture};
use tokio::sync::mpsc;

/// A connected WebRTC viewer of stream `cam` (optionally starting at `start_ms`), its session id and packets.
async fn watch(
    gw: &Gateway,
    start_ms: Option<i64>,
) -> (Viewer, String, mpsc::UnboundedReceiver<rtp::Packet>) {
    let mut viewer = Viewer::new(BROWSER_H264).await;
    let mut body = json!({ "offer": viewer.offer });
    if let Some(t) = start_ms {
        body["start_ms"] = json!(t);
    }
    let resp = reqwest::Client::new()
        .post(format!("{}/streams/cam/webrtc", gw.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.unwrap();
    let session = body["session_id"].as_str().unwrap().to_owned();
    let track = viewer
        .answer(body["answer"].as_str().unwrap().to_owned())
        .await;
    (viewer, session, read_packets(track))
}

async fn control(gw: &Gateway, session: &str, call: &str, body: Value) -> Value {
    let resp = reqwest::Client::new()
        .post(format!("{}/sessions/{session}/{call}", gw.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{call}");
    resp.json().await.unwrap()
}

async fn mode(gw: &Gateway, session: &str) -> Value {
    reqwest::get(format!("{}/sessions/{session}/mode", gw.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Receives until `frames` more complete frames have arrived (their last packets), keeping every packet.
async fn frames(
    rx: &mut mpsc::UnboundedReceiver<rtp::Packet>,
    all: &mut Vec<rtp::Packet>,
    frames: usize,
) {
    let mut seen = 0;
    while seen < frames {
        let p = tokio::time::timeout(Duration::from_secs(15), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("{seen} of {frames} frames in 15 s"))
            .expect("track open");
        seen += usize::from(p.header.marker);
        all.push(p);
    }
}

/// One stream on the wire: a single SSRC, every sequence number from the first to the last exactly once
/// (retransmissions answering NACKs repeat a number and are counted once), timestamps never backwards in
/// sequence order.
fn check_one_stream(packets: &[rtp::Packet]) {
    let ssrcs: BTreeSet<u32> = packets.iter().map(|p| p.header.ssrc).collect();
    assert_eq!(ssrcs.len(), 1, "one SSRC");
    let mut ext = Vec::with_capacity(packets.len());
    let mut last: Option<i64> = None;
    for p in packets {
        // Extend the 16-bit sequence number around the previous one (arrival order is close to send order).
        let s = i64::from(p.header.sequence_number);
        let e = match last {
            None => s,
            Some(l) => l + i64::from((s as u16).wrapping_sub(l as u16) as i16),
        };
        last = Some(e);
        ext.push((e, p.header.timestamp));
    }
    ext.sort();
    ext.dedup_by_key(|(s, _)| *s);
    for w in ext.windows(2) {
        assert_eq!(w[1].0, w[0].0 + 1, "sequence gap at {}", w[0].0);
        assert!(
            w[1].1.wrapping_sub(w[0].1) < u32::MAX / 2,
            "timestamp went back at {}",
            w[0].0
        );
    }
}

fn decodes(packets: &[rtp::Packet]) -> (usize, u32, u32) {
    let wire: Vec<Vec<u8>> = packets
        .iter()
        .map(|p| p.marshal().unwrap().to_vec())
        .collect();
    decode_rtp(DecodeCodec::H264, &wire).expect("decodes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webrtc_session_rewinds_and_returns_as_one_decodable_stream() {
    let (_fixture, gw, _dir, r) = recorded_camera_with_a_gap().await;
    let ((a0, a1), (b0, _)) = (r[0], r[1]);
    let (_viewer, s, mut rx) = watch(&gw, None).await;
    let mut all = Vec::new();
    frames(&mut rx, &mut all, 10).await;
    let switches = [
        ("seek", json!({"position_ms": a0 + 500})),
        ("speed", json!({"speed": 4})),
        ("speed", json!({"speed": 1})),
        ("seek", json!({"position_ms": a1 - 500})),
        ("pause", json!({})),
        ("play", json!({})),
        ("seek", json!({"position_ms": b0 + 500})),
        ("seek", json!({"position_ms": a0 + 1_500})),
        ("live", json!({})),
    ];
    for (call, body) in switches {
        let m = control(&gw, &s, call, body).await;
        assert_eq!(
            m["mode"],
            if call == "live" { "live" } else { "dvr" },
            "{call}: {m}"
        );
        if call == "pause" {
            // Held: the mode says so; frames resume after play.
            assert_eq!(mode(&gw, &s).await["paused"], true);
            continue;
        }
        let before = all.len();
        frames(&mut rx, &mut all, 8).await;
        assert!(
            all[before..].iter().any(starts_keyframe) || call == "play" || call == "speed",
            "{call}: output resumes at a keyframe"
        );
    }
    // Into the second range near the live edge at 2x: playback catches up and the session is live by itself.
    let edge = common::recording::ranges(&gw, "cam")
        .await
        .last()
        .unwrap()
        .1;
    control(&gw, &s, "seek", json!({"position_ms": edge - 3_000})).await;
    control(&gw, &s, "speed", json!({"speed": 2})).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while mode(&gw, &s).await["mode"] != "live" {
        assert!(tokio::time::Instant::now() < deadline, "never caught up");
        frames(&mut rx, &mut all, 1).await;
    }
    frames(&mut rx, &mut all, 10).await;
    check_one_stream(&all);
    let sent = all.iter().filter(|p| p.header.marker).count();
    let packets = all.clone();
    let (decoded, w, h) = tokio::task::spawn_blocking(move || decodes(&packets))
        .await
        .unwrap();
    assert_eq!((w, h), (320, 240));
    assert!(decoded + 3 >= sent, "decoded {decoded} of {sent} frames");
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webrtc_session_can_start_in_the_recording() {
    let (_fixture, gw, _dir, (start_ms, _)) = recorded_camera(FixtureCodec::H264, 3_000).await;
    let (_viewer, s, mut rx) = watch(&gw, Some(start_ms + 200)).await;
    let mut all = Vec::new();
    frames(&mut rx, &mut all, 25).await;
    assert!(starts_keyframe(&all[0]), "starts at a keyframe");
    let m = mode(&gw, &s).await;
    assert_eq!(m["mode"], "dvr", "{m}");
    let at = m["position_ms"].as_i64().unwrap();
    assert!(at >= start_ms && at < start_ms + 3_000, "{m}");
    check_one_stream(&all);
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webrtc_session_refuses_a_seek_into_a_codec_it_did_not_negotiate() {
    // Recorded in H.265, then the camera is replaced by an H.264 one: a browser session negotiates H.264.
    let (_h265, gw, _dir, (start_ms, _)) = recorded_camera(FixtureCodec::H265, 2_500).await;
    let h264 = RtspFixture::start(FixtureOptions {
        path: "/h264".into(),
        ..Default::default()
    })
    .unwrap();
    let resp = reqwest::Client::new()
        .patch(format!("{}/streams/cam", gw.base_url()))
        .json(&json!({"rtsp_inputs": [{"label": "main", "url": h264.url(), "priority": 0}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    common::stream_until(&gw, "cam", |v| {
        v["codec"] == "h264" && v["state"] == "running"
    })
    .await;
    let (_viewer, s, mut rx) = watch(&gw, None).await;
    frames(&mut rx, &mut Vec::new(), 5).await;
    let resp = reqwest::Client::new()
        .post(format!("{}/sessions/{s}/seek", gw.base_url()))
        .json(&json!({"position_ms": start_ms + 500}))
        .send()
        .await
        .unwrap();
    let message = common::assert_error(resp, 409, "codec_not_negotiated").await;
    assert!(message.contains("h265"), "{message}");
    // Starting a session there is refused the same way, before any session exists.
    let viewer = Viewer::new(BROWSER_H264).await;
    let resp = reqwest::Client::new()
        .post(format!("{}/streams/cam/webrtc", gw.base_url()))
        .json(&json!({"offer": viewer.offer, "start_ms": start_ms + 500}))
        .send()
        .await
        .unwrap();
    common::assert_error(resp, 409, "codec_not_negotiated").await;
    // The first session plays on, live.
    assert_eq!(mode(&gw, &s).await["mode"], "live");
    frames(&mut rx, &mut Vec::new(), 5).await;
    gw.shutdown().await.unwrap();
}
