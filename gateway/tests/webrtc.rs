//! WebRTC viewers against the real gateway and RTSP fixture, with a real WebRTC peer (the `webrtc` crate, as the
//! gateway uses) on loopback: what arrives depacketizes and decodes with GStreamer, a PLI brings a keyframe, a
//! NACK brings the packet again, the API's errors are the documented ones, and 50 sessions opened and closed leave
//! nothing behind.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway::Gateway;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp;
use rtc::shared::marshal::Marshal;
use serde_json::{json, Value};
use testdata::decode::{decode_rtp, DecodeCodec};
use testdata::webrtc_viewer::{read_packets, starts_keyframe, Viewer, BROWSER_H264};
use testdata::{FixtureCodec, FixtureOptions, RtspFixture};
use tokio::sync::mpsc;

/// Packets received within `within`.
async fn collect(
    rx: &mut mpsc::UnboundedReceiver<rtp::Packet>,
    within: Duration,
) -> Vec<rtp::Packet> {
    let deadline = tokio::time::Instant::now() + within;
    let mut out = Vec::new();
    while let Ok(Some(p)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        out.push(p);
    }
    out
}

/// (frames, width, height) GStreamer decodes from received packets, as they were on the wire.
fn decode_received(codec: DecodeCodec, packets: &[rtp::Packet]) -> (usize, u32, u32) {
    let wire: Vec<Vec<u8>> = packets
        .iter()
        .map(|p| p.marshal().unwrap().to_vec())
        .collect();
    decode_rtp(codec, &wire).expect("decodes")
}

async fn camera(
    gop: u32,
    profile: Option<&'static str>,
) -> (RtspFixture, Gateway, tempfile::TempDir) {
    common::gateway_with_camera(FixtureOptions {
        codec: FixtureCodec::H264,
        gop,
        h264_profile: profile,
        bitrate_kbps: 800,
        ..Default::default()
    })
    .await
}

/// An HTTP client that keeps no idle connection, so connections don't count as resources a session left behind.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

async fn create_json(gw: &Gateway, stream: &str, offer: &str) -> reqwest::Response {
    http()
        .post(format!("{}/streams/{stream}/webrtc", gw.base_url()))
        .json(&json!({ "offer": offer }))
        .send()
        .await
        .unwrap()
}

/// A gateway whose WebRTC media binds loopback only, after `tweak`, with an 800 kbit/s camera as `cam`.
async fn loopback_webrtc(
    tweak: impl FnOnce(&mut gateway::Config),
) -> (RtspFixture, Gateway, tempfile::TempDir) {
    common::gateway_with_camera_and(
        FixtureOptions {
            bitrate_kbps: 800,
            ..Default::default()
        },
        |c| {
            c.webrtc.bind_ips = vec!["127.0.0.1".parse().unwrap()];
            tweak(c);
        },
    )
    .await
}

/// A viewer with a browser's H.264 offer, and the gateway's JSON answer to it for the stream `cam`.
async fn open_viewer(gw: &Gateway) -> (Viewer, Value) {
    let viewer = Viewer::new(BROWSER_H264).await;
    let body = create_json(gw, "cam", &viewer.offer)
        .await
        .json()
        .await
        .unwrap();
    (viewer, body)
}

async fn stats(gw: &Gateway, session: &str) -> Value {
    http()
        .get(format!("{}/sessions/{session}/stats", gw.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_viewer_decodes_and_pli_brings_a_keyframe() {
    // A 10 s GOP, so a keyframe soon after a PLI is the PLI's answer, not the camera's schedule.
    let (_fixture, gw, _dir) = camera(250, Some("constrained-baseline")).await;
    let mut viewer = Viewer::new(BROWSER_H264).await;
    let resp = create_json(&gw, "cam", &viewer.offer).await;
    assert_eq!(resp.status(), 201);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = resp.json().await.unwrap();
    let session = body["session_id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/sessions/{session}"));
    let answer = body["answer"].as_str().unwrap().to_owned();
    assert!(
        answer.contains(
            "a=fmtp:108 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42c0"
        ),
        "the answer names the camera's real profile on the matching payload type:\n{answer}"
    );
    let track = viewer.answer(answer).await;
    let mut rx = read_packets(track.clone());

    // Live: starts from the GOP cache, so the first packet opens a keyframe; everything decodes.
    let packets = collect(&mut rx, Duration::from_secs(3)).await;
    assert!(packets.len() > 50, "{} packets", packets.len());
    assert!(
        starts_keyframe(&packets[0]),
        "first packet starts a keyframe"
    );
    assert!(packets.iter().all(|p| p.header.payload_type == 108));
    let (frames, w, h) = decode_received(DecodeCodec::H264, &packets);
    assert!(frames >= 50, "{frames} frames decoded");
    assert_eq!((w, h), (320, 240));
    let ssrc = packets[0].header.ssrc;

    // PLI: a keyframe comes back at once, far before the camera's next one.
    let asked = Instant::now();
    track
        .write_rtcp(vec![Box::new(PictureLossIndication {
            sender_ssrc: 1,
            media_ssrc: ssrc,
        })])
        .await
        .unwrap();
    let after = collect(&mut rx, Duration::from_millis(1500)).await;
    let key_at = after.iter().position(starts_keyframe);
    assert!(
        key_at.is_some(),
        "a keyframe within 1.5 s of the PLI ({:?})",
        asked.elapsed()
    );
    let s = stats(&gw, &session).await;
    assert!(
        s["keyframe_requests_answered"].as_u64().unwrap() >= 1,
        "{s}"
    );
    // Sequence numbers stay continuous across the restart from the GOP cache: no gap, no jump (arrival order
    // may differ from sending order).
    let first = packets.last().unwrap().header.sequence_number;
    let mut offsets: Vec<u16> = after
        .iter()
        .map(|p| p.header.sequence_number.wrapping_sub(first))
        .collect();
    offsets.sort_unstable();
    assert_eq!(
        offsets[0], 1,
        "continues right after the last packet before the PLI"
    );
    assert!(
        offsets.windows(2).all(|w| w[1] == w[0] + 1),
        "continuous: {offsets:?}"
    );

    let s = stats(&gw, &session).await;
    assert_eq!(s["pli_count"], 1, "{s}");
    // The viewer's receiver reports: a round trip (loopback: well under 100 ms), no loss.
    let rtt = s["rtt_ms"].as_f64().expect("an RTT from receiver reports");
    assert!(rtt > 0.0 && rtt < 100.0, "{s}");
    assert_eq!(s["packets_lost"], 0, "{s}");
    assert!(s["jitter_ms"].as_f64().is_some(), "{s}");
    assert!(s["packets_sent"].as_u64().unwrap() > 50, "{s}");
    assert!(s["time_to_first_frame_ms"].as_f64().unwrap() > 0.0, "{s}");
    assert_eq!(s["session"]["state"], "connected");

    // Listed under its stream; DELETE ends it.
    let list: Value = reqwest::get(format!("{}/streams/cam/webrtc", gw.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["session_id"], session.as_str());
    let r = reqwest::Client::new()
        .delete(format!("{}{location}", gw.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(gw.webrtc().session_count(), 0);
    let _ = viewer.pc.close().await;
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whep_offer_trickle_and_delete() {
    let (_fixture, gw, _dir) = camera(25, Some("constrained-baseline")).await;
    let http = reqwest::Client::new();
    let mut viewer = Viewer::new(BROWSER_H264).await;
    let r = http
        .post(format!("{}/streams/cam/whep", gw.base_url()))
        .header("content-type", "application/sdp")
        .body(viewer.offer.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["content-type"], "application/sdp");
    let location = format!(
        "{}{}",
        gw.base_url(),
        r.headers()["location"].to_str().unwrap()
    );
    let answer = r.text().await.unwrap();
    assert!(
        answer.contains("a=candidate:"),
        "the answer carries the gateway's candidates"
    );

    // Trickle: the viewer's own candidates, with its ufrag, are taken; another ufrag is an ICE restart.
    let ufrag = viewer
        .offer
        .lines()
        .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
        .unwrap()
        .trim()
        .to_owned();
    let candidates: String = viewer
        .offer
        .lines()
        .filter(|l| l.starts_with("a=candidate:"))
        .map(|l| format!("{}\r\n", l.trim_end()))
        .collect();
    assert!(!candidates.is_empty());
    let frag = |ufrag: &str| {
        format!("a=ice-ufrag:{ufrag}\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n{candidates}a=end-of-candidates\r\n")
    };
    let patch = |body: String, ctype: &'static str| {
        http.patch(&location)
            .header("content-type", ctype)
            .body(body)
            .send()
    };
    assert_eq!(
        patch(frag(&ufrag), "application/trickle-ice-sdpfrag")
            .await
            .unwrap()
            .status(),
        204
    );
    let r = patch(frag("someoneelse"), "application/trickle-ice-sdpfrag")
        .await
        .unwrap();
    common::assert_error(r, 422, "unprocessable").await;
    let r = patch(frag(&ufrag), "text/plain").await.unwrap();
    common::assert_error(r, 415, "unsupported_media_type").await;
    let r = patch("garbage".into(), "application/trickle-ice-sdpfrag")
        .await
        .unwrap();
    common::assert_error(r, 400, "bad_request").await;

    let track = viewer.answer(answer).await;
    let mut rx = read_packets(track);
    let packets = collect(&mut rx, Duration::from_secs(2)).await;
    let (frames, _, _) = decode_received(DecodeCodec::H264, &packets);
    assert!(frames >= 25, "{frames} frames");

    assert_eq!(http.delete(&location).send().await.unwrap().status(), 204);
    let r = http.delete(&location).send().await.unwrap();
    common::assert_error(r, 404, "not_found").await;
    let r = patch(frag(&ufrag), "application/trickle-ice-sdpfrag")
        .await
        .unwrap();
    common::assert_error(r, 404, "not_found").await;
    let _ = viewer.pc.close().await;
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_the_gateway_cannot_serve_get_typed_errors() {
    // A High profile camera; this viewer offers Constrained Baseline only.
    let (_fixture, gw, _dir) = camera(25, Some("high")).await;
    let http = reqwest::Client::new();
    let viewer = Viewer::new(&[(108, "42e01f")]).await;
    let r = create_json(&gw, "cam", &viewer.offer).await;
    let msg = common::assert_error(r, 406, "no_common_codec").await;
    assert!(msg.contains("the stream sends H.264 High"), "{msg}");
    assert!(
        msg.contains("the offer accepts H264 (Constrained Baseline, packetization-mode 1)"),
        "{msg}"
    );

    let r = create_json(&gw, "nope", &viewer.offer).await;
    common::assert_error(r, 404, "not_found").await;
    let r = create_json(&gw, "cam", "v=0\r\nthis is not sdp").await;
    common::assert_error(r, 400, "bad_request").await;
    let whep = format!("{}/streams/cam/whep", gw.base_url());
    let r = http
        .post(&whep)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    common::assert_error(r, 415, "unsupported_media_type").await;
    let r = http
        .post(&whep)
        .header("content-type", "application/sdp")
        .body("v=0\r\n".repeat(20_000))
        .send()
        .await
        .unwrap();
    common::assert_error(r, 413, "payload_too_large").await;
    let r = reqwest::get(format!("{}/sessions/0123/stats", gw.base_url()))
        .await
        .unwrap();
    common::assert_error(r, 404, "not_found").await;

    // A stream that has not delivered a picture: its codec is unknown, so come back later.
    let r = http
        .post(format!("{}/streams", gw.base_url()))
        .json(&common::dead_rtsp_stream("dead"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = create_json(&gw, "dead", &viewer.offer).await;
    assert_eq!(r.headers()["retry-after"], "2");
    common::assert_error(r, 503, "stream_not_ready").await;

    // None of it left a session behind or broke the gateway.
    assert_eq!(gw.webrtc().session_count(), 0);
    assert_eq!(gw.viewers().open(), 0);
    let ok = Viewer::new(BROWSER_H264).await;
    assert_eq!(create_json(&gw, "cam", &ok.offer).await.status(), 201);
    let _ = viewer.pc.close().await;
    let _ = ok.pc.close().await;
    gw.shutdown().await.unwrap();
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Opens a session for a new viewer and waits until media flows.
async fn connected_session(gw: &Gateway) -> (Viewer, String, mpsc::UnboundedReceiver<rtp::Packet>) {
    let mut viewer = Viewer::new(BROWSER_H264).await;
    let body: Value = create_json(gw, "cam", &viewer.offer)
        .await
        .json()
        .await
        .unwrap();
    let session = body["session_id"].as_str().expect("session id").to_owned();
    let track = viewer
        .answer(body["answer"].as_str().unwrap().to_owned())
        .await;
    let mut rx = read_packets(track);
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("media flows")
        .unwrap();
    (viewer, session, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_sessions_created_and_deleted_leave_nothing_behind() {
    let (_fixture, gw, _dir) = camera(25, Some("constrained-baseline")).await;
    let hub = gw.registry().hub("cam").unwrap();
    let http = http();
    // One full cycle first, so lazily created process-wide resources are in the baseline.
    let (v, s, _) = connected_session(&gw).await;
    assert_eq!(
        http.delete(format!("{}/sessions/{s}", gw.base_url()))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    let _ = v.pc.close().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let tasks = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    let fds = open_fds();

    // A viewer that never answers: removed by the connect timeout.
    let silent = Viewer::new(BROWSER_H264).await;
    assert_eq!(create_json(&gw, "cam", &silent.offer).await.status(), 201);
    let _ = silent.pc.close().await;

    let mut sessions = HashSet::new();
    for _batch in 0..5 {
        let mut viewers = Vec::new();
        let mut joins = Vec::new();
        for _ in 0..10 {
            joins.push(connected_session(&gw));
        }
        for (v, s, rx) in futures::future::join_all(joins).await {
            sessions.insert(s.clone());
            viewers.push((v, s, rx));
        }
        assert_eq!(hub.subscriber_count(), 10);
        for (v, s, _) in viewers {
            let r = http
                .delete(format!("{}/sessions/{s}", gw.base_url()))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 204);
            let _ = v.pc.close().await;
        }
    }
    assert_eq!(sessions.len(), 50, "50 distinct sessions");

    // Everything comes back: sessions, hub subscribers, the viewer budget, tasks, sockets.
    let deadline = Instant::now() + Duration::from_secs(25);
    loop {
        let now = (
            gw.webrtc().session_count(),
            hub.subscriber_count(),
            gw.viewers().open(),
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks(),
            open_fds(),
        );
        if now.0 == 0 && now.1 == 0 && now.2 == 0 && now.3 <= tasks && now.4 <= fds {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left behind (sessions, subscribers, budget, tasks, fds): {now:?}; baseline tasks {tasks}, fds {fds}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    gw.shutdown().await.unwrap();
}

/// A UDP relay between a viewer and the gateway that loses the `drop_nth` media datagram from the gateway, and
/// says which RTP sequence number it carried (the SRTP header is in the clear).
struct LossyRelay {
    addr: std::net::SocketAddr,
    dropped: tokio::sync::oneshot::Receiver<u16>,
}

async fn lossy_relay(gateway: std::net::SocketAddr, drop_nth: usize) -> LossyRelay {
    let viewer_side = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let gateway_side = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = viewer_side.local_addr().unwrap();
    let (viewer_tx, mut viewer_rx) = mpsc::unbounded_channel::<std::net::SocketAddr>();
    let (a, b) = (viewer_side.clone(), gateway_side.clone());
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((n, from)) = a.recv_from(&mut buf).await {
            let _ = viewer_tx.send(from);
            let _ = b.send_to(&buf[..n], gateway).await;
        }
    });
    let (dropped_tx, dropped) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut dropped_tx = Some(dropped_tx);
        let mut viewer = None;
        let mut media = 0;
        let mut buf = vec![0u8; 2048];
        while let Ok((n, _)) = gateway_side.recv_from(&mut buf).await {
            while let Ok(v) = viewer_rx.try_recv() {
                viewer = Some(v);
            }
            // SRTP: RTP version 2, a payload type that is not RTCP (RFC 5761 demultiplexing).
            let is_media = n > 200 && buf[0] >> 6 == 2 && !(192..=223).contains(&buf[1]);
            if is_media {
                media += 1;
                if media == drop_nth {
                    if let Some(tx) = dropped_tx.take() {
                        let _ = tx.send(u16::from_be_bytes([buf[2], buf[3]]));
                    }
                    continue;
                }
            }
            if let Some(v) = viewer {
                let _ = viewer_side.send_to(&buf[..n], v).await;
            }
        }
    });
    LossyRelay { addr, dropped }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_packet_is_nacked_and_retransmitted() {
    let (_fixture, gw, _dir) = camera(25, Some("constrained-baseline")).await;
    let (mut viewer, body) = open_viewer(&gw).await;
    let session = body["session_id"].as_str().unwrap().to_owned();
    let answer = body["answer"].as_str().unwrap();
    // The viewer reaches the gateway only through the relay: its loopback candidate is swapped for the relay's.
    let loopback = answer
        .lines()
        .find(|l| l.starts_with("a=candidate:") && l.contains(" 127.0.0.1 "))
        .expect("a loopback candidate");
    let port: u16 = loopback.split_whitespace().nth(5).unwrap().parse().unwrap();
    let mut relay = lossy_relay(([127, 0, 0, 1], port).into(), 100).await;
    let answer: String = answer
        .lines()
        .filter(|l| !l.starts_with("a=candidate:"))
        .map(|l| {
            if l == "a=end-of-candidates" {
                format!(
                    "a=candidate:1 1 udp 2130706431 127.0.0.1 {} typ host\r\n{l}\r\n",
                    relay.addr.port()
                )
            } else {
                format!("{l}\r\n")
            }
        })
        .collect();
    let track = viewer.answer(answer).await;
    let mut rx = read_packets(track);
    let lost = tokio::time::timeout(Duration::from_secs(10), &mut relay.dropped)
        .await
        .expect("the relay dropped a packet")
        .unwrap();
    // The viewer's NACK generator asks for it; the gateway sends it again; it arrives after all.
    let packets = collect(&mut rx, Duration::from_secs(2)).await;
    assert!(
        packets.iter().any(|p| p.header.sequence_number == lost),
        "packet {lost} was lost on the way and repaired"
    );
    let s = stats(&gw, &session).await;
    assert!(s["nack_count"].as_u64().unwrap() >= 1, "{s}");
    assert!(
        s["retransmitted_packets_sent"].as_u64().unwrap() >= 1,
        "{s}"
    );
    let _ = viewer.pc.close().await;
    gw.shutdown().await.unwrap();
}

/// Ports a session's answer announces for its host candidates, and their addresses.
fn candidate_addresses(answer: &str) -> Vec<(String, u16)> {
    answer
        .lines()
        .filter(|l| l.starts_with("a=candidate:"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[4].to_owned(), f[5].parse().unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_addresses_and_ports_come_from_configuration() {
    // A one-port range: the first session takes it, the second finds it taken.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (_fixture, gw, _dir) = common::gateway_with_camera_and(FixtureOptions::default(), |c| {
        c.webrtc.bind_ips = vec!["127.0.0.1".parse().unwrap()];
        c.webrtc.udp_ports = Some(gateway::config::PortRange {
            first: port,
            last: port,
        });
    })
    .await;
    let (mut viewer, body) = open_viewer(&gw).await;
    let answer = body["answer"].as_str().unwrap().to_owned();
    let addrs = candidate_addresses(&answer);
    assert!(!addrs.is_empty());
    assert!(
        addrs.iter().all(|(ip, p)| ip == "127.0.0.1" && *p == port),
        "{addrs:?}"
    );
    // It plays from that port.
    let track = viewer.answer(answer).await;
    let mut rx = read_packets(track);
    assert!(tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .is_some());
    let second = Viewer::new(BROWSER_H264).await;
    let r = create_json(&gw, "cam", &second.offer).await;
    let msg = common::assert_error(r, 503, "unavailable").await;
    assert!(msg.contains("media port"), "{msg}");
    assert_eq!(
        gw.viewers().open(),
        1,
        "the refused session gave its place back"
    );
    let _ = viewer.pc.close().await;
    let _ = second.pc.close().await;
    gw.shutdown().await.unwrap();

    // Behind a 1:1 NAT the answer announces each host candidate at the public address too.
    let (_fixture, gw, _dir) = common::gateway_with_camera_and(FixtureOptions::default(), |c| {
        c.webrtc.bind_ips = vec!["127.0.0.1".parse().unwrap()];
        c.webrtc.nat_ips = vec!["203.0.113.9".parse().unwrap()];
    })
    .await;
    let (viewer, body) = open_viewer(&gw).await;
    let addrs = candidate_addresses(body["answer"].as_str().unwrap());
    let public: Vec<u16> = addrs
        .iter()
        .filter(|(ip, _)| ip == "203.0.113.9")
        .map(|a| a.1)
        .collect();
    let private: Vec<u16> = addrs
        .iter()
        .filter(|(ip, _)| ip == "127.0.0.1")
        .map(|a| a.1)
        .collect();
    assert!(!public.is_empty() && public == private, "{addrs:?}");
    let _ = viewer.pc.close().await;
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_share_the_configured_udp_port() {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (_fixture, gw, _dir) = loopback_webrtc(|c| c.webrtc.udp_port = port).await;
    assert_eq!(gw.webrtc().shared_udp_port(), Some(port));
    // Three viewers at once, each with its own stream of packets, all through that one port.
    let mut joins = Vec::new();
    for _ in 0..3 {
        joins.push(async {
            let (mut viewer, body) = open_viewer(&gw).await;
            let answer = body["answer"].as_str().unwrap().to_owned();
            let addrs = candidate_addresses(&answer);
            assert!(
                !addrs.is_empty() && addrs.iter().all(|(ip, p)| ip == "127.0.0.1" && *p == port),
                "{answer}"
            );
            let session = body["session_id"].as_str().unwrap().to_owned();
            let mut rx = read_packets(viewer.answer(answer).await);
            let packets = collect(&mut rx, Duration::from_secs(2)).await;
            (viewer, session, packets)
        });
    }
    let joined = futures::future::join_all(joins).await;
    let mut ssrcs = HashSet::new();
    for (_, session, packets) in &joined {
        assert!(
            packets.len() > 20,
            "session {session} got {} packets",
            packets.len()
        );
        let ssrc = packets[0].header.ssrc;
        assert!(packets.iter().all(|p| p.header.ssrc == ssrc));
        ssrcs.insert(ssrc);
    }
    assert_eq!(
        ssrcs.len(),
        3,
        "each viewer got its own stream, none another's"
    );
    // A second gateway can't have the port: it refuses to start and says which port.
    let dir = tempfile::tempdir().unwrap();
    let err = Gateway::start(gateway::Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        wsc_udp_port: 0,
        webrtc: gateway::config::WebRtcConfig {
            bind_ips: vec!["127.0.0.1".parse().unwrap()],
            udp_port: port,
            ..Default::default()
        },
        ..gateway::Config::default()
    })
    .await
    .err()
    .expect("the port is taken");
    assert!(format!("{err:#}").contains(&port.to_string()), "{err:#}");
    for (v, _, _) in joined {
        let _ = v.pc.close().await;
    }
    gw.shutdown().await.unwrap();
}

/// Behind a NAT, with `stun:` servers configured: the sessions keep the one shared port, and every answer carries
/// the port's address as the STUN server saw it (a server-reflexive candidate related to the host one). The first
/// server configured never answers; the gateway moves on to the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stun_servers_give_the_shared_port_a_reflexive_candidate() {
    let public: std::net::SocketAddr = "203.0.113.7:40123".parse().unwrap();
    let stun = testdata::stun_server::StunServer::start(public).unwrap();
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("stun:{}", silent.local_addr().unwrap());
    let (_fixture, gw, _dir) =
        loopback_webrtc(|c| c.webrtc.ice_servers = vec![silent_url, stun.url()]).await;
    let port = gw
        .webrtc()
        .shared_udp_port()
        .expect("stun: servers keep the shared port");
    let srflx = format!("203.0.113.7 40123 typ srflx raddr 127.0.0.1 rport {port}");
    // The gateway asks in the background: answers written before its first answer arrived have no srflx line.
    let deadline = Instant::now() + Duration::from_secs(15);
    let (mut viewer, answer) = loop {
        let (viewer, body) = open_viewer(&gw).await;
        let answer = body["answer"].as_str().unwrap().to_owned();
        if answer.contains(&srflx) {
            break (viewer, answer);
        }
        assert!(Instant::now() < deadline, "no srflx candidate: {answer}");
        let session = body["session_id"].as_str().unwrap();
        let _ = viewer.pc.close().await;
        http()
            .delete(format!("{}/sessions/{session}", gw.base_url()))
            .send()
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(stun.answered() >= 1);
    let addrs = candidate_addresses(&answer);
    assert!(
        addrs.contains(&("127.0.0.1".to_owned(), port)),
        "the host candidate stays: {answer}"
    );
    // The viewer (on loopback) plays through the host candidate of the same port.
    let mut rx = read_packets(viewer.answer(answer).await);
    let packets = collect(&mut rx, Duration::from_secs(2)).await;
    assert!(packets.len() > 20, "got {} packets", packets.len());
    let _ = viewer.pc.close().await;
    gw.shutdown().await.unwrap();

    // A TURN server needs an allocation per session: each session gets its own sockets again.
    let (_fixture, gw, _dir) = common::gateway_with_camera_and(FixtureOptions::default(), |c| {
        c.webrtc.bind_ips = vec!["127.0.0.1".parse().unwrap()];
        c.webrtc.ice_servers = vec!["turn:127.0.0.1:9".to_owned()];
    })
    .await;
    assert_eq!(gw.webrtc().shared_udp_port(), None);
    gw.shutdown().await.unwrap();
}

/// ICE-TCP on: the answer offers the shared port over TCP too (a passive candidate at the same address and port),
/// and a TCP connection that names no session (garbage instead of a binding request) is closed, leaving the
/// sessions alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_tcp_listens_on_the_shared_port_and_drops_strangers() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_fixture, gw, _dir) = loopback_webrtc(|c| c.webrtc.ice_tcp = true).await;
    let port = gw.webrtc().shared_udp_port().unwrap();
    let (mut viewer, body) = open_viewer(&gw).await;
    let answer = body["answer"].as_str().unwrap().to_owned();
    assert!(
        answer.lines().any(|l| l.starts_with("a=candidate:")
            && !l.to_ascii_lowercase().contains(" tcp ")
            && l.ends_with(&format!(" 127.0.0.1 {port} typ host"))),
        "the UDP host candidate: {answer}"
    );
    assert!(
        answer
            .lines()
            .any(|l| l.to_ascii_lowercase().contains(" tcp ")
                && l.contains(&format!(" 127.0.0.1 {port} typ host tcptype passive"))),
        "a passive TCP candidate on the same port: {answer}"
    );
    let mut rx = read_packets(viewer.answer(answer).await);
    assert!(collect(&mut rx, Duration::from_secs(2)).await.len() > 20);
    let mut stranger = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    // Well-formed frames, but none a binding request naming a session.
    let mut garbage = Vec::new();
    for _ in 0..4 {
        garbage.extend_from_slice(&[0x02, 0x00]);
        garbage.extend_from_slice(&[0x80; 512]);
    }
    let _ = stranger.write_all(&garbage).await;
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), stranger.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0) | Err(_))),
        "the connection is closed: {read:?}"
    );
    assert_eq!(gw.webrtc().session_count(), 1);
    assert!(
        collect(&mut rx, Duration::from_secs(1)).await.len() > 10,
        "the session plays on"
    );
    let _ = viewer.pc.close().await;
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h265_goes_to_a_viewer_that_offers_it() {
    let (_fixture, gw, _dir) = common::gateway_with_camera(FixtureOptions {
        codec: FixtureCodec::H265,
        gop: 25,
        ..Default::default()
    })
    .await;
    // A browser without H.265 gets the clear error; a viewer offering it gets the camera's stream as is.
    let h264_only = Viewer::new(BROWSER_H264).await;
    let r = create_json(&gw, "cam", &h264_only.offer).await;
    let msg = common::assert_error(r, 406, "no_common_codec").await;
    assert!(msg.contains("the stream sends H.265"), "{msg}");
    let mut viewer = Viewer::offering(&[
        (96, "video/VP8", String::new()),
        (
            49,
            "video/H265",
            "level-id=93;profile-id=1;tier-flag=0;tx-mode=SRST".into(),
        ),
    ])
    .await;
    let body: Value = create_json(&gw, "cam", &viewer.offer)
        .await
        .json()
        .await
        .unwrap();
    let answer = body["answer"].as_str().expect("an answer").to_owned();
    assert!(answer.contains("a=rtpmap:49 H265/90000"), "{answer}");
    let track = viewer.answer(answer).await;
    let mut rx = read_packets(track);
    let packets = collect(&mut rx, Duration::from_secs(2)).await;
    assert!(packets.iter().all(|p| p.header.payload_type == 49));
    let (frames, w, _) = decode_received(DecodeCodec::H265, &packets);
    assert!(frames >= 25 && w == 320, "{frames} frames, width {w}");
    let _ = viewer.pc.close().await;
    let _ = h264_only.pc.close().await;
    gw.shutdown().await.unwrap();
}
