//! WSC-RTP over real sockets on loopback: the gateway pulls the RTSP fixture, a client does the WebSocket
//! signalling and the UDP proof, and what arrives decodes (H.264 and H.265, over UDP and over the WebSocket
//! fall-back, and into an independent GStreamer udpsrc receiver). Security, bad input and session life cycle too.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use gateway::{Config, Gateway};
use publishers::wsc::datagram::{build_proof, parse_ack, token_from_hex, ProofKind};
use serde_json::{json, Value};
use testdata::decode::{decode_rtp, receive_udp, DecodeCodec};
use testdata::{FixtureCodec, FixtureOptions, RtspFixture};
use tokio::net::UdpSocket;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn gateway_with(codec: FixtureCodec) -> (RtspFixture, Gateway, tempfile::TempDir) {
    common::gateway_with_camera(FixtureOptions {
        codec,
        ..Default::default()
    })
    .await
}

async fn open(gw: &Gateway, id: &str) -> (Ws, Value) {
    let url = format!(
        "{}/streams/{id}/wsc-rtp",
        gw.base_url().replace("http://", "ws://")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let init = next_json(&mut ws).await;
    assert_eq!(init["type"], "init");
    (ws, init)
}

async fn next_json(ws: &mut Ws) -> Value {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("message in time")
        {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).unwrap(),
            Some(Ok(Message::Binary(_) | Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn token(init: &Value) -> [u8; 16] {
    token_from_hex(init["token"].as_str().unwrap()).unwrap()
}

fn server_udp(init: &Value) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], init["udp_port"].as_u64().unwrap() as u16))
}

/// Proves `udp` for the session; returns once the ack arrived.
async fn prove(udp: &UdpSocket, init: &Value) {
    let proof = build_proof(ProofKind::Proof, &token(init));
    let mut buf = [0u8; 2048];
    for _ in 0..10 {
        udp.send_to(&proof, server_udp(init)).await.unwrap();
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(500), udp.recv(&mut buf)).await
        {
            if parse_ack(&buf[..n]) == Some(ProofKind::Proof) {
                return;
            }
        }
    }
    panic!("no ack");
}

/// Receives RTP datagrams until `frames` access units (marker bits) arrived.
async fn recv_rtp(udp: &UdpSocket, frames: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 2048];
    let mut markers = 0;
    while markers < frames {
        let n = tokio::time::timeout(Duration::from_secs(10), udp.recv(&mut buf))
            .await
            .expect("RTP in time")
            .unwrap();
        if buf[0] >> 6 != 2 {
            continue;
        }
        markers += usize::from(buf[1] & 0x80 != 0);
        out.push(buf[..n].to_vec());
    }
    out
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
        .send_to(&build_proof(ProofKind::Proof, &wrong), server_udp(&init))
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
    // Oversized message: the connection is closed.
    ws.send(Message::Text("x".repeat(10_000).into())).await.ok();
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return true,
                _ => continue,
            }
        }
    })
    .await;
    assert_eq!(closed, Ok(true));
    gw.shutdown().await.unwrap();
}

/// Many viewers behind one NAT share an IP: a flood of proof guesses from that IP spends its proof budget, yet a
/// viewer that already proved its address keeps getting its keep-alives answered (and so stays alive).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalives_of_a_proved_address_pass_a_proof_flood_from_its_ip() {
    let (_fixture, gw, _dir) = gateway_with(FixtureCodec::H264).await;
    let (_ws, init) = open(&gw, "cam").await;
    let viewer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    prove(&viewer, &init).await;
    let neighbour = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let keepalive = build_proof(ProofKind::KeepAlive, &token(&init));
    let mut buf = [0u8; 2048];
    for round in 0..5 {
        for guess in 0..50u8 {
            let mut wrong = token(&init);
            wrong[0] ^= guess | 1;
            neighbour
                .send_to(&build_proof(ProofKind::Proof, &wrong), server_udp(&init))
                .await
                .unwrap();
        }
        viewer.send_to(&keepalive, server_udp(&init)).await.unwrap();
        let acked = tokio::time::timeout(Duration::from_millis(500), async {
            loop {
                let n = viewer.recv(&mut buf).await.unwrap();
                if parse_ack(&buf[..n]) == Some(ProofKind::KeepAlive) {
                    return;
                }
            }
        })
        .await;
        assert!(
            acked.is_ok(),
            "round {round}: the keep-alive went unanswered"
        );
    }
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
