//! WSC-RTP over real sockets on loopback: the gateway pulls the RTSP fixture, a client does the WebSocket
//! signalling and the UDP proof, and what arrives decodes (H.264 and H.265, over UDP and over the WebSocket
//! fall-back, and into an independent GStreamer udpsrc receiver). Security, bad input and session life cycle too.

mod common;

use std::time::{Duration, Instant};

use common::wsc::{next_json, open, prove, recv_rtp, server_udp, token};
use futures::{SinkExt, StreamExt};
use gateway::{Config, Gateway};
use publishers::wsc::client::Step;
use publishers::wsc::datagram::{build_proof, parse_ack, AckKind, ProofKind};
use serde_json::{json, Value};
use testdata::decode::{decode_rtp, receive_udp, DecodeCodec};
use testdata::{FixtureCodec, FixtureOptions, RtspFixture};
use tokio::net::UdpSocket;
use tokio_tungstenite::tungstenite::Message;

async fn gateway_with(codec: FixtureCodec) -> (RtspFixture, Gateway, tempfile::TempDir) {
    common::gateway_with_camera(FixtureOptions {
        codec,
        ..Default::default()
    })
    .await
}

fn assert_decodes(codec: DecodeCodec, packets: &[Vec<u8>], frames: usize) {
    let first_nal = packets[0][12];
    let (decoded, w, h) = decode_rtp(codec, packets).unwrap();
    assert!(
        decoded + 1 >= frames,
        "{codec:?}: decoded {decoded} of {frames} (first NAL byte {first_nal:#x})"
    );
    assert_eq!((w, h), (320, 240));
}

async fn udp_session_decodes(codec: FixtureCodec) {
    let (_fixture, gw, _dir) = gateway_with(codec).await;
    let (mut ws, init) = open(&gw, "cam").await;
    let sdp = next_json(&mut ws).await;
    assert_eq!(sdp["type"], "sdp");
    let want = if codec == FixtureCodec::H264 {
        "H264/90000"
    } else {
        "H265/90000"
    };
    assert!(sdp["sdp"].as_str().unwrap().contains(want));
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let t0 = Instant::now();
    prove(&udp, &init).await;
    let packets = recv_rtp(&udp, 40).await;
    let first_frame = t0.elapsed();
    assert!(first_frame < Duration::from_secs(5));
    let dc = if codec == FixtureCodec::H264 {
        DecodeCodec::H264
    } else {
        DecodeCodec::H265
    };
    assert_decodes(dc, &packets, 40);
    let ssrc = init["ssrc"].as_u64().unwrap() as u32;
    assert!(packets
        .iter()
        .all(|p| u32::from_be_bytes([p[8], p[9], p[10], p[11]]) == ssrc));
    drop(ws);
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_over_udp_decodes() {
    udp_session_decodes(FixtureCodec::H264).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h265_over_udp_decodes() {
    udp_session_decodes(FixtureCodec::H265).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_fall_back_on_request_decodes() {
    let (_fixture, gw, _dir) = gateway_with(FixtureCodec::H264).await;
    let (mut ws, _init) = open(&gw, "cam").await;
    ws.send(Message::Text(r#"{"type":"use_websocket"}"#.into()))
        .await
        .unwrap();
    let mut packets = Vec::new();
    let mut markers = 0;
    let mut transport = None;
    while markers < 40 {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap()
        {
            Some(Ok(Message::Binary(b))) => {
                markers += usize::from(b[1] & 0x80 != 0);
                packets.push(b.to_vec());
            }
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "transport" {
                    transport = Some(v);
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(transport.unwrap()["mode"], "websocket");
    assert_decodes(DecodeCodec::H264, &packets, 40);
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_proof_falls_back_to_the_websocket_by_itself() {
    let (_fixture, gw, _dir) = gateway_with(FixtureCodec::H264).await;
    let (mut ws, init) = open(&gw, "cam").await;
    let t0 = Instant::now();
    loop {
        let v = next_json(&mut ws).await;
        if v["type"] == "transport" {
            assert_eq!(v["mode"], "websocket");
            break;
        }
    }
    let waited = t0.elapsed().as_millis() as u64;
    let timeout = init["proof_timeout_ms"].as_u64().unwrap();
    assert!(
        waited + 200 >= timeout && waited < timeout + 2000,
        "fell back after {waited} ms"
    );
    gw.shutdown().await.unwrap();
}

/// The test does the signalling and proof; GStreamer's own udpsrc → rtph264depay → avdec_h264 receives the media
/// on the proved port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_gstreamer_receiver_decodes() {
    let (_fixture, gw, _dir) = gateway_with(FixtureCodec::H264).await;
    let (mut ws, init) = open(&gw, "cam").await;
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = udp.local_addr().unwrap().port();
    prove(&udp, &init).await;
    drop(udp);
    let receiver = tokio::task::spawn_blocking(move || {
        receive_udp(DecodeCodec::H264, port, 30, Duration::from_secs(20))
    });
    // Keep the session alive while GStreamer receives.
    let pinger = tokio::spawn(async move {
        for i in 0..60 {
            if ws
                .send(Message::Text(
                    format!(r#"{{"type":"ping","id":{i}}}"#).into(),
                ))
                .await
                .is_err()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    let decoded = receiver.await.unwrap().unwrap();
    pinger.abort();
    assert!(decoded >= 30, "GStreamer decoded {decoded} frames");
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_token_and_garbage_get_nothing_and_change_nothing() {
    let (_fixture, gw, _dir) = gateway_with(FixtureCodec::H264).await;
    let (mut ws, init) = open(&gw, "cam").await;
    let attacker = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut wrong = token(&init);
    wrong[3] ^= 0x40;
    attacker
        .send_to(
            &build_proof(ProofKind::Proof, &wrong, None),
            server_udp(&init),
        )
        .await
        .unwrap();
    for junk in [
        &b"WSCP"[..],
        &[0x80, 96, 0, 1, 0, 0, 0, 0][..],
        &[0u8; 1500][..],
        &[0x57; 24][..],
    ] {
        attacker.send_to(junk, server_udp(&init)).await.unwrap();
    }
    let mut buf = [0u8; 2048];
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), attacker.recv(&mut buf))
            .await
            .is_err(),
        "the attacker got a datagram"
    );
    // The real client proves from B; the attacker at A still gets nothing, B gets media.
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    prove(&client, &init).await;
    let packets = recv_rtp(&client, 5).await;
    assert!(!packets.is_empty());
    assert!(
        tokio::time::timeout(Duration::from_millis(500), attacker.recv(&mut buf))
            .await
            .is_err()
    );
    ws.send(Message::Text(r#"{"type":"ping","id":1}"#.into()))
        .await
        .unwrap();
    drop(ws);
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors() {
    let (_fixture, gw, _dir) = gateway_with(FixtureCodec::H264).await;
    // Unknown stream: 404 before any upgrade.
    let url = format!(
        "{}/streams/nope/wsc-rtp",
        gw.base_url().replace("http://", "ws://")
    );
    let err = tokio_tungstenite::connect_async(url).await.unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
    // Not a WebSocket request: 400 with a JSON body.
    let r = reqwest::get(format!("{}/streams/cam/wsc-rtp", gw.base_url()))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let (mut ws, _) = open(&gw, "cam").await;
    ws.send(Message::Text("{not json".into())).await.unwrap();
    ws.send(Message::Text(r#"{"type":"jump"}"#.into()))
        .await
        .unwrap();
    let mut codes = Vec::new();
    while codes.len() < 2 {
        let v = next_json(&mut ws).await;
        if v["type"] == "error" {
            codes.push(v["code"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(codes, ["bad_json", "unknown_type"]);
    // Oversized message: the protocol's words, then a close frame saying "message too big".
    ws.send(Message::Text("x".repeat(10_000).into())).await.ok();
    let mut said = Vec::new();
    let close = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => said.push(serde_json::from_str::<Value>(&t).unwrap()),
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                other => panic!("no close frame: {other:?}"),
            }
        }
    })
    .await
    .expect("closed in time");
    assert_eq!(close, Some(1009));
    let said: Vec<_> = said
        .iter()
        .filter(|v| v["type"] == "error" || v["type"] == "bye")
        .collect();
    assert_eq!(said[0]["code"], "too_large");
    assert_eq!(*said[1], json!({"type": "bye", "reason": "protocol_error"}));
    // Past what the WebSocket layer reads at all, the connection is dropped unread.
    let (mut ws, _) = open(&gw, "cam").await;
    ws.send(Message::Text("x".repeat(100_000).into()))
        .await
        .ok();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                _ => continue,
            }
        }
    })
    .await;
    assert!(ended.is_ok());
    // The gateway goes on serving.
    let (_ws, init) = open(&gw, "cam").await;
    assert_eq!(init["type"], "init");
    gw.shutdown().await.unwrap();
}

/// The limit on control datagrams is per source address, proved or not: a flood of proofs carrying the right
/// token from one socket gets at most 20 answers a second, and a viewer on another port of the same host keeps
/// getting its keep-alives answered (viewers behind one NAT share an IP).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_datagrams_are_limited_per_source_address() {
    let (_fixture, gw, _dir) = gateway_with(FixtureCodec::H264).await;
    let (_ws, init) = open(&gw, "cam").await;
    let viewer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut path = prove(&viewer, &init).await;
    let (_flooder_ws, flooder_init) = open(&gw, "cam").await;
    let flooder = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let flood = build_proof(ProofKind::Proof, &token(&flooder_init), None);
    let mut buf = [0u8; 2048];
    let mut answered = 0;
    for round in 0..3 {
        let sent_at = Instant::now();
        for _ in 0..101 {
            flooder
                .send_to(&flood, server_udp(&flooder_init))
                .await
                .unwrap();
        }
        viewer
            .send_to(&path.keepalive(), server_udp(&init))
            .await
            .unwrap();
        let acked = tokio::time::timeout(Duration::from_millis(500), async {
            loop {
                let n = viewer.recv(&mut buf).await.unwrap();
                if path.on_answer(&buf[..n]) == Some(Step::ConsentRenewed) {
                    return;
                }
            }
        })
        .await;
        assert!(
            acked.is_ok(),
            "round {round}: the keep-alive went unanswered"
        );
        // Count what the flood drew, then let the second end before the next round.
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(200), flooder.recv(&mut buf)).await
        {
            assert_eq!(
                parse_ack(&buf[..n]).map(|a| a.kind),
                Some(AckKind::Challenge)
            );
            answered += 1;
        }
        tokio::time::sleep_until((sent_at + Duration::from_millis(1100)).into()).await;
    }
    assert!(
        answered <= 3 * 21,
        "{answered} answers to 303 proofs in 3 s"
    );
    assert!(
        answered >= 3,
        "the flooder's first proofs are still answered"
    );
    gw.shutdown().await.unwrap();
}

/// A version 1 client (no `version` parameter) keeps working, over the WebSocket: it is told so at once, and
/// its UDP proofs (the 24-byte layout) draw no answer and no media.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_1_clients_get_the_websocket_at_once() {
    let (_fixture, gw, _dir) = gateway_with(FixtureCodec::H264).await;
    let url = format!(
        "{}/streams/cam/wsc-rtp",
        gw.base_url().replace("http://", "ws://")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let t0 = Instant::now();
    let init = next_json(&mut ws).await;
    assert_eq!(init["version"], 1);
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut v1 = [0u8; 24];
    v1[..6].copy_from_slice(b"WSCP\x01\x01");
    v1[8..].copy_from_slice(&token(&init));
    udp.send_to(&v1, server_udp(&init)).await.unwrap();
    let mut packets = Vec::new();
    let mut transport = None;
    while packets.len() < 20 {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap()
        {
            Some(Ok(Message::Binary(b))) => packets.push(b.to_vec()),
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "transport" {
                    transport = Some((v, t0.elapsed()));
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let (transport, after) = transport.expect("a transport message");
    assert_eq!(transport["mode"], "websocket");
    assert!(
        after < Duration::from_secs(1),
        "told after {after:?}, not after the proof timeout"
    );
    let mut buf = [0u8; 2048];
    assert!(
        tokio::time::timeout(Duration::from_millis(500), udp.recv(&mut buf))
            .await
            .is_err(),
        "the version 1 proof drew a datagram"
    );
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_sessions_leave_nothing_behind() {
    let (_fixture, gw, _dir) = gateway_with(FixtureCodec::H264).await;
    let hub = gw.registry().hub("cam").unwrap();
    for round in 0..10 {
        let mut open_now = Vec::new();
        for _ in 0..10 {
            let (ws, init) = open(&gw, "cam").await;
            let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            if round % 2 == 0 {
                prove(&udp, &init).await;
            }
            open_now.push((ws, udp));
        }
        assert_eq!(gw.viewers().open(), 10);
        for (mut ws, _) in open_now {
            ws.close(None).await.ok();
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while gw.viewers().open() > 0 || gw.wsc().udp.registered() > 0 || hub.subscriber_count() > 0 {
        assert!(
            Instant::now() < deadline,
            "sessions {} routes {} subscribers {}",
            gw.viewers().open(),
            gw.wsc().udp.registered(),
            hub.subscriber_count()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_stream_says_bye() {
    let (_fixture, gw, _dir) = gateway_with(FixtureCodec::H264).await;
    let (mut ws, _) = open(&gw, "cam").await;
    let r = reqwest::Client::new()
        .delete(format!("{}/streams/cam", gw.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    loop {
        let v = next_json(&mut ws).await;
        if v["type"] == "bye" {
            assert_eq!(v["reason"], "stream_deleted");
            break;
        }
    }
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_sessions_is_enforced_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        wsc_udp_port: 0,
        webrtc: gateway::config::WebRtcConfig {
            udp_port: 0,
            ..Default::default()
        },
        max_sessions: 2,
        ..Config::default()
    })
    .await
    .unwrap();
    let r = reqwest::Client::new()
        .post(format!("{}/streams", gw.base_url()))
        .json(&json!({"source_id": "cam", "rtsp_inputs": [{"label": "t", "url": "testsrc://?width=160&height=120", "priority": 0}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let (a, _) = open(&gw, "cam").await;
    let (_b, _) = open(&gw, "cam").await;
    let url = format!(
        "{}/streams/cam/wsc-rtp",
        gw.base_url().replace("http://", "ws://")
    );
    let err = tokio_tungstenite::connect_async(&url).await.unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => {
            assert_eq!(resp.status(), 503);
            let body: Value =
                serde_json::from_slice(resp.body().as_deref().unwrap_or_default()).unwrap();
            assert_eq!(body["error"], "too_many_sessions");
        }
        other => panic!("expected HTTP 503, got {other}"),
    }
    // A place frees up when a session ends.
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(5);
    while gw.viewers().open() > 1 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_c, init) = open(&gw, "cam").await;
    assert_eq!(init["type"], "init");
    gw.shutdown().await.unwrap();
}

/// A proved client floods its own session for 3 s: every 10 ms an RTCP NACK naming 544 packets (~140 bytes) and
/// a PLI. Retransmissions stay within a quarter of the new media plus one saved-up burst, and keyframe restarts
/// within one per 500 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_and_pli_floods_draw_bounded_bytes() {
    let (_fixture, gw, _dir) = gateway_with(FixtureCodec::H264).await;
    let (ws, init) = open(&gw, "cam").await;
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    prove(&udp, &init).await;
    let ssrc = init["ssrc"].as_u64().unwrap() as u32;
    let first = recv_rtp(&udp, 1).await;
    let mut newest = u16::from_be_bytes([first[0][2], first[0][3]]);
    let mut seen = std::collections::HashSet::new();
    let (mut new_bytes, mut resent_bytes, mut keyframes) = (0u64, 0u64, 0u32);
    let mut pli = vec![0x81, 206, 0, 2];
    pli.extend_from_slice(&[0, 0, 0, 1]);
    pli.extend_from_slice(&ssrc.to_be_bytes());
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut buf = vec![0u8; 2048];
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        tokio::select! {
            _ = tick.tick() => {
                let seqs: Vec<u16> = (0..544u16).rev().map(|k| newest.wrapping_sub(k)).collect();
                udp.send_to(&wsc_rtp_client::build_nack(ssrc, &seqs), server_udp(&init)).await.unwrap();
                udp.send_to(&pli, server_udp(&init)).await.unwrap();
            }
            r = udp.recv(&mut buf) => {
                let n = r.unwrap();
                if buf[0] >> 6 != 2 {
                    continue;
                }
                let seq = u16::from_be_bytes([buf[2], buf[3]]);
                if seen.insert(seq) {
                    new_bytes += n as u64;
                    newest = seq;
                    // A restart at a keyframe begins with the SPS.
                    keyframes += u32::from(buf[12] & 0x1f == 7);
                } else {
                    resent_bytes += n as u64;
                }
            }
        }
    }
    drop(ws);
    println!(
        "3 s of floods: {new_bytes} new bytes, {resent_bytes} resent, {keyframes} keyframe starts"
    );
    assert!(resent_bytes > 0, "the NACKs were read");
    assert!(
        resent_bytes <= new_bytes / 4 + publishers::viewer::REPAIR_BURST_BYTES + 16 * 1024,
        "{resent_bytes} bytes resent for {new_bytes} new"
    );
    // Restarts at most every 500 ms (7 in 3 s counting both ends), plus the camera's own keyframes (GOP 1 s in the
    // fixture: 4 at most); 300 PLIs would otherwise have drawn 300.
    assert!(keyframes <= 7 + 4, "{keyframes} keyframes in 3 s");
    gw.shutdown().await.unwrap();
}
