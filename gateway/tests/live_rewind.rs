//! Live-rewind end to end: a real camera (the RTSP fixture) recorded into 2 s segments with an outage in the
//! middle, and one WSC-RTP v2 session that goes through 20 switches — into the recording at several points, seeks
//! across a segment boundary and across the gap, speeds 0.25 to 8, a 5 s pause, back to live, a time-shift from a
//! paused live view, and a run to the live edge that returns to live by itself. What the client receives must be
//! one RTP stream (no sequence gap or duplicate, timestamps never backwards) whose every access unit decodes, and
//! the `session_mode` messages must match the calls. Media travels inside the WebSocket here, so loss repair is
//! not under test (it is in wsc_rtp.rs) and the sequence check is exact.

mod common;

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use gateway::Gateway;
use serde_json::{json, Value};
use testdata::probe::{decode_errors, ffprobe};
use testdata::{FixtureCodec, FixtureOptions};
use tokio_tungstenite::tungstenite::Message;
use wsc_rtp_client::depacketize::{Codec, Depacketizer};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WSC-RTP v2 client that keeps everything it received.
struct Viewer {
    ws: Ws,
    session_id: String,
    packets: Vec<Vec<u8>>,
    modes: Vec<Value>,
    errors: Vec<Value>,
}

impl Viewer {
    async fn open(gw: &Gateway, stream: &str, query: &str) -> Viewer {
        let url = format!(
            "{}/streams/{stream}/wsc-rtp?version=2{query}",
            gw.base_url().replace("http://", "ws://")
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        ws.send(Message::Text(r#"{"type":"use_websocket"}"#.into()))
            .await
            .unwrap();
        let mut v = Viewer {
            ws,
            session_id: String::new(),
            packets: Vec::new(),
            modes: Vec::new(),
            errors: Vec::new(),
        };
        let mut init = None;
        v.pump_until("init", |_, m| {
            if m["type"] == "init" {
                init = Some(m.clone());
            }
            init.is_some()
        })
        .await;
        let init = init.unwrap();
        assert_eq!(init["version"], 2);
        v.session_id = init["session_id"].as_str().unwrap().to_owned();
        v
    }

    /// Reads until `done` (given each text message, or null after media) says so.
    async fn pump_until(&mut self, what: &str, mut done: impl FnMut(&Viewer, &Value) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = tokio::time::timeout(left, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("waiting for {what}: modes {:?}", self.modes));
            let m = match msg {
                Some(Ok(Message::Binary(b))) => {
                    self.packets.push(b.to_vec());
                    Value::Null
                }
                Some(Ok(Message::Text(t))) => {
                    let m: Value = serde_json::from_str(&t).unwrap();
                    match m["type"].as_str() {
                        Some("session_mode") => self.modes.push(m.clone()),
                        Some("error") => self.errors.push(m.clone()),
                        _ => {}
                    }
                    m
                }
                Some(Ok(_)) => continue,
                other => panic!("waiting for {what}: {other:?}"),
            };
            if done(self, &m) {
                return;
            }
        }
    }

    fn frames(&self) -> usize {
        self.packets.iter().filter(|p| p[1] & 0x80 != 0).count()
    }

    /// Waits for `n` more complete frames.
    async fn frames_more(&mut self, n: usize) {
        let target = self.frames() + n;
        self.pump_until(&format!("{n} frames"), |v, _| v.frames() >= target)
            .await;
    }

    /// Waits for a `session_mode` with this reason.
    async fn mode(&mut self, reason: &str) -> Value {
        let from = self.modes.len();
        self.pump_until(&format!("session_mode {reason}"), |v, _| {
            v.modes[from..].iter().any(|m| m["reason"] == reason)
        })
        .await;
        self.modes[from..]
            .iter()
            .find(|m| m["reason"] == reason)
            .unwrap()
            .clone()
    }

    async fn send(&mut self, m: Value) {
        self.ws
            .send(Message::Text(m.to_string().into()))
            .await
            .unwrap();
    }
}

async fn session_mode(gw: &Gateway, session: &str) -> Value {
    reqwest::get(format!("{}/sessions/{session}/mode", gw.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The stream `v` received is one RTP stream and decodes cleanly, every frame of it.
async fn check_received(v: &Viewer, codec: Codec) {
    check_one_stream(&v.packets);
    let frames = v.frames() as u64;
    let packets = v.packets.clone();
    let (decoded, w, h) = tokio::task::spawn_blocking(move || decodes_cleanly(&packets, codec))
        .await
        .unwrap();
    assert_eq!((w, h), (320, 240));
    assert_eq!(decoded, frames, "every frame sent decodes");
}

async fn post(gw: &Gateway, path: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}{path}", gw.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Depacketizes what the client received into an elementary stream and decodes it with ffmpeg: every access
/// unit must decode, without a single decoder error. Returns the pictures decoded and their size.
fn decodes_cleanly(packets: &[Vec<u8>], codec: Codec) -> (u64, u32, u32) {
    let mut depay = Depacketizer::new(codec);
    let mut stream = Vec::new();
    let mut units = 0u64;
    for p in packets {
        if let Some(au) = depay.push(p) {
            units += 1;
            stream.extend_from_slice(&au.annex_b);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("received.es");
    std::fs::write(&file, &stream).unwrap();
    let format = match codec {
        Codec::H264 => "h264",
        Codec::H265 => "hevc",
    };
    let errors = decode_errors(&file, Some(format)).unwrap();
    assert!(errors.is_empty(), "decoder errors: {errors:?}");
    let probed = ffprobe(&file, Some(format)).expect("ffprobe reads the stream");
    assert_eq!(
        probed.frames, units,
        "every access unit decodes to a picture"
    );
    (probed.frames, probed.width, probed.height)
}

fn check_one_stream(packets: &[Vec<u8>]) {
    for w in packets.windows(2) {
        let (s0, s1) = (
            u16::from_be_bytes([w[0][2], w[0][3]]),
            u16::from_be_bytes([w[1][2], w[1][3]]),
        );
        assert_eq!(s1, s0.wrapping_add(1), "sequence gap or duplicate");
        let (t0, t1) = (
            u32::from_be_bytes([w[0][4], w[0][5], w[0][6], w[0][7]]),
            u32::from_be_bytes([w[1][4], w[1][5], w[1][6], w[1][7]]),
        );
        assert!(
            t1.wrapping_sub(t0) < u32::MAX / 2,
            "timestamp went back: {t0} -> {t1}"
        );
        assert_eq!(&w[0][8..12], &w[1][8..12], "one SSRC");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_wsc_rtp_session_through_20_switches_stays_one_decodable_stream() {
    let (_fixture, gw, _dir, r) = common::recording::recorded_camera_with_a_gap().await;
    let ((a0, a1), (b0, _b1)) = (r[0], r[1]);
    let mut v = Viewer::open(&gw, "cam", "").await;
    v.frames_more(10).await;
    let sid = v.session_id.clone();

    // 1. Live → DVR (HTTP), at a recorded instant.
    let resp = post(
        &gw,
        &format!("/sessions/{sid}/seek"),
        json!({"position_ms": a0 + 500}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let mode: Value = resp.json().await.unwrap();
    assert_eq!(
        (mode["mode"].as_str(), mode["position_ms"].as_i64()),
        (Some("dvr"), Some(a0 + 500))
    );
    let opened = v.mode("opened").await;
    let shown = opened["position_ms"].as_i64().unwrap();
    assert!(
        shown <= a0 + 500 && shown >= a0,
        "opened at the keyframe at or before: {opened}"
    );
    v.frames_more(10).await;
    // 2-4. Speeds (WebSocket messages).
    for s in [4.0, 8.0, 1.0] {
        v.send(json!({"type": "speed", "speed": s})).await;
        v.mode("speed").await;
        v.frames_more(2).await;
    }
    // 5. Forward across a segment boundary.
    v.send(json!({"type": "seek", "position_ms": a0 + 3_900}))
        .await;
    v.mode("opened").await;
    v.frames_more(10).await;
    // 6. Just before the outage: playback runs across the gap and says so.
    v.send(json!({"type": "seek", "position_ms": a1 - 700}))
        .await;
    v.mode("opened").await;
    let gap = v.mode("gap").await;
    assert!(gap["position_ms"].as_i64().unwrap() >= b0, "{gap}");
    v.frames_more(5).await;
    // 7-8. Slow, then normal.
    v.send(json!({"type": "speed", "speed": 0.25})).await;
    v.mode("speed").await;
    v.frames_more(3).await;
    v.send(json!({"type": "speed", "speed": 1.0})).await;
    v.mode("speed").await;
    // 9-10. A 5 s pause: nothing arrives, then play goes on.
    v.send(json!({"type": "pause"})).await;
    let paused = v.mode("pause").await;
    assert_eq!(paused["paused"], true);
    let frames_at_pause = v.frames();
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        if let Ok(Some(Ok(Message::Binary(b)))) =
            tokio::time::timeout(until - Instant::now(), v.ws.next()).await
        {
            v.packets.push(b.to_vec());
        }
    }
    assert!(
        v.frames() <= frames_at_pause + 1,
        "frames arrived while paused"
    );
    v.send(json!({"type": "play"})).await;
    v.mode("play").await;
    v.frames_more(5).await;
    // 11. Backward seek (HTTP).
    let resp = post(
        &gw,
        &format!("/sessions/{sid}/seek"),
        json!({"position_ms": a0 + 1_000}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    v.mode("opened").await;
    v.frames_more(5).await;
    // 12. Back to live (HTTP).
    let resp = post(&gw, &format!("/sessions/{sid}/live"), json!({})).await;
    assert_eq!(resp.status(), 200);
    v.mode("live").await;
    v.frames_more(10).await;
    // 13-14. Into the second range and back.
    v.send(json!({"type": "seek", "position_ms": b0 + 1_000}))
        .await;
    v.mode("opened").await;
    v.frames_more(5).await;
    v.send(json!({"type": "live"})).await;
    v.mode("live").await;
    v.frames_more(5).await;
    // 15-16. Pausing live is a time-shift: play resumes from the recording at the paused instant (3 s behind
    // live, more than the player reads ahead, so it stays in DVR).
    v.send(json!({"type": "pause"})).await;
    let held = v.mode("pause").await;
    assert_eq!(held["mode"], "dvr");
    tokio::time::sleep(Duration::from_secs(3)).await;
    v.send(json!({"type": "play"})).await;
    v.mode("play").await;
    let opened = v.mode("opened").await;
    assert!(
        opened["position_ms"].as_i64().unwrap() <= held["position_ms"].as_i64().unwrap(),
        "{opened} {held}"
    );
    v.frames_more(5).await;
    // 17-19. Live, then the oldest instant at 2x.
    v.send(json!({"type": "live"})).await;
    v.mode("live").await;
    v.send(json!({"type": "seek", "position_ms": a0})).await;
    v.mode("opened").await;
    v.send(json!({"type": "speed", "speed": 2.0})).await;
    v.mode("speed").await;
    v.frames_more(10).await;
    // 20. Near the live edge at 2x: the player catches up and the session returns to live by itself.
    let edge = common::recording::ranges(&gw, "cam")
        .await
        .last()
        .unwrap()
        .1;
    v.send(json!({"type": "seek", "position_ms": edge - 3_000}))
        .await;
    v.mode("opened").await;
    v.mode("caught_up").await;
    v.frames_more(10).await;
    let mode = session_mode(&gw, &sid).await;
    assert_eq!(mode["mode"], "live", "{mode}");
    assert!(mode["live_edge_ms"].as_i64().is_some(), "{mode}");

    check_received(&v, Codec::H264).await;
    assert!(v.errors.is_empty(), "{:?}", v.errors);
    let calls: Vec<&str> = v
        .modes
        .iter()
        .filter_map(|m| m["reason"].as_str())
        .filter(|r| !matches!(*r, "position" | "opened"))
        .collect();
    assert_eq!(
        calls,
        [
            "start",
            "seek",
            "speed",
            "speed",
            "speed",
            "seek",
            "seek",
            "gap",
            "speed",
            "speed",
            "pause",
            "play",
            "seek",
            "live",
            "seek",
            "live",
            "pause",
            "play",
            "live",
            "seek",
            "speed",
            "seek",
            "caught_up"
        ],
        "session_mode messages match the calls"
    );
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h265_is_recorded_and_replayed_from_a_session_that_starts_in_the_recording() {
    let (_fixture, gw, _dir, (start_ms, _)) =
        common::recording::recorded_camera(FixtureCodec::H265, 4_000).await;
    let mut v = Viewer::open(&gw, "cam", &format!("&start_ms={}", start_ms + 300)).await;
    let start = v.mode("start").await;
    assert_eq!(start["mode"], "dvr", "{start}");
    v.mode("opened").await;
    v.frames_more(40).await;
    check_received(&v, Codec::H265).await;
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_control_calls_get_typed_errors_and_leave_the_session_running() {
    let (_fixture, gw, _dir) =
        common::gateway_with_camera_and(FixtureOptions::default(), |c| c.segment_secs = 2).await;
    // No recording yet: a seek is 409, a start in the recording too.
    let mut v = Viewer::open(&gw, "cam", "").await;
    v.frames_more(3).await;
    let sid = v.session_id.clone();
    let seek = |p: Value| {
        let (gw, sid) = (&gw, sid.clone());
        async move { post(gw, &format!("/sessions/{sid}/seek"), p).await }
    };
    common::assert_error(
        seek(json!({"position_ms": 1000})).await,
        409,
        "no_recording",
    )
    .await;
    let url = format!(
        "{}/streams/cam/wsc-rtp?start_ms=1000",
        gw.base_url().replace("http://", "ws://")
    );
    let refused = tokio_tungstenite::connect_async(url).await;
    assert!(
        refused.is_err(),
        "a start in a stream with no recording is refused before the upgrade"
    );

    common::recording::record(&gw, "cam").await;
    let r = common::recording::recorded(&gw, "cam", 1, 2_500).await;
    let resp = seek(json!({"position_ms": r[0].0 - 60_000})).await;
    assert_eq!(resp.status(), 416);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "out_of_range");
    assert_eq!(
        body["ranges"][0]["start_ms"].as_i64(),
        Some(r[0].0),
        "{body}"
    );
    common::assert_error(
        seek(json!({"position_ms": r[0].1 + 3_600_000})).await,
        416,
        "out_of_range",
    )
    .await;
    common::assert_error(seek(json!({"position_ms": -5})).await, 400, "bad_request").await;
    common::assert_error(
        seek(json!({"position_ms": "soon"})).await,
        400,
        "bad_request",
    )
    .await;
    common::assert_error(
        seek(json!({"position_ms": 1, "extra": 1})).await,
        400,
        "bad_request",
    )
    .await;
    for bad in [
        json!({"speed": 9.0}),
        json!({"speed": 0.1}),
        json!({"speed": -1}),
        json!({"speed": "fast"}),
    ] {
        let resp = post(&gw, &format!("/sessions/{sid}/speed"), bad).await;
        common::assert_error(resp, 400, "bad_request").await;
    }
    let unknown = "00000000000000000000000000000000";
    for path in ["seek", "live", "pause", "play"] {
        let resp = post(
            &gw,
            &format!("/sessions/{unknown}/{path}"),
            json!({"position_ms": r[0].0}),
        )
        .await;
        common::assert_error(resp, 404, "not_found").await;
    }
    let resp = reqwest::get(format!("{}/sessions/{unknown}/mode", gw.base_url()))
        .await
        .unwrap();
    common::assert_error(resp, 404, "not_found").await;
    // The same refusals over the WebSocket come as `error` messages; the session goes on.
    v.send(json!({"type": "seek", "position_ms": r[0].0 - 60_000}))
        .await;
    v.send(json!({"type": "speed", "speed": 100})).await;
    v.pump_until("two errors", |v, _| v.errors.len() >= 2).await;
    assert_eq!(v.errors[0]["code"], "out_of_range");
    assert_eq!(v.errors[1]["code"], "bad_request");
    v.frames_more(5).await;
    let mode = session_mode(&gw, &sid).await;
    assert_eq!(mode["mode"], "live", "{mode}");
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_deleted_during_dvr_ends_the_session_cleanly() {
    let (_fixture, gw, _dir, (start_ms, _)) =
        common::recording::recorded_camera(FixtureCodec::H264, 2_500).await;
    let mut v = Viewer::open(&gw, "cam", &format!("&start_ms={start_ms}")).await;
    v.frames_more(5).await;
    let resp = reqwest::Client::new()
        .delete(format!("{}/streams/cam", gw.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let mut bye = None;
    v.pump_until("bye", |_, m| {
        if m["type"] == "bye" {
            bye = Some(m.clone());
        }
        bye.is_some()
    })
    .await;
    assert_eq!(bye.unwrap()["reason"], "stream_deleted");
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dvr_player_takes_a_viewer_place() {
    let (_fixture, gw, _dir) = common::gateway_with_camera_and(FixtureOptions::default(), |c| {
        c.segment_secs = 2;
        c.max_sessions = 1;
    })
    .await;
    common::recording::record(&gw, "cam").await;
    let r = common::recording::recorded(&gw, "cam", 1, 2_500).await;
    // The only place is this viewer's; its player would need a second one.
    let mut v = Viewer::open(&gw, "cam", "").await;
    v.frames_more(3).await;
    let resp = post(
        &gw,
        &format!("/sessions/{}/seek", v.session_id),
        json!({"position_ms": r[0].0}),
    )
    .await;
    common::assert_error(resp, 503, "too_many_sessions").await;
    // Refused, the session stays live and plays on.
    v.frames_more(5).await;
    assert_eq!(session_mode(&gw, &v.session_id).await["mode"], "live");
    gw.shutdown().await.unwrap();
}
