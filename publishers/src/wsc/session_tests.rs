//! Session behaviour under simulated time: no sockets, no sleeping.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hub::{packetize, HubFrame};
use sources::{Codec, Frame, ParameterSets};

use super::*;
use crate::wsc::client::{ClientPath, Step};
use crate::wsc::datagram::{build_proof, parse_ack, AckKind, ProofKind};

const TOKEN: [u8; 16] = [0xab; 16];

fn params() -> Arc<ParameterSets> {
    Arc::new(ParameterSets {
        codec: Codec::H264,
        vps: None,
        sps: Bytes::from_static(&[0x67, 0x42, 0xc0, 0x1f]),
        pps: Bytes::from_static(&[0x68, 0xce]),
        width: 320,
        height: 240,
        rfc6381_codec: None,
    })
}

fn frame(i: u64, key: bool) -> Arc<HubFrame> {
    let nal: &[u8] = if key { &[0x65, 1, 2, 3] } else { &[0x41, 1, 2] };
    let f = Frame {
        codec: Codec::H264,
        data: sources::frame::length_prefixed([nal]),
        pts_90k: i as i64 * 3000,
        wall_ms: 0,
        is_keyframe: key,
        params: params(),
        is_slate: false,
        starts_run: false,
    };
    let packets = packetize(&f, 1200);
    Arc::new(HubFrame {
        frame: f,
        packets,
        index: i,
    })
}

fn session(t0: Instant) -> WscSession {
    session_version(t0, LATEST_VERSION)
}

fn session_version(t0: Instant, version: u32) -> WscSession {
    let id = WscIdentity {
        session_id: "00112233445566778899aabbccddeeff".into(),
        token: TOKEN,
        ssrc: 42,
        initial_seq: 1000,
        stream_name: "cam".into(),
        version,
        nonce_seed: [3; 32],
    };
    WscSession::new(
        t0,
        id,
        WscOptions {
            udp_port: 8010,
            ..Default::default()
        },
        None,
        Some(StreamStateName::Running),
        StartAt::Live,
    )
}

/// A frame of the session's current input.
fn feed(s: &mut WscSession, t: Instant, f: Arc<HubFrame>) {
    let generation = s.generation();
    s.handle(
        t,
        Input::Frame {
            generation,
            frame: f,
        },
    );
}

fn drain(s: &mut WscSession) -> Vec<Output> {
    std::iter::from_fn(|| s.poll_output()).collect()
}

fn texts(outs: &[Output]) -> Vec<serde_json::Value> {
    outs.iter()
        .filter_map(|o| match o {
            Output::WsText(t) => Some(serde_json::from_str(t).unwrap()),
            _ => None,
        })
        .collect()
}

fn datagrams_to(outs: &[Output], addr: SocketAddr) -> Vec<Bytes> {
    outs.iter()
        .flat_map(|o| match o {
            Output::Datagram { to, data } if *to == addr => vec![data.clone()],
            Output::Rtp {
                to,
                header,
                payload,
            } if *to == addr => vec![[&header[..], payload].concat().into()],
            Output::RtpFrame {
                to,
                frame,
                payload_type,
                ssrc,
            } if *to == addr => frame
                .packets()
                .map(|p| p.to_bytes(*payload_type, *ssrc))
                .collect(),
            _ => vec![],
        })
        .collect()
}

/// The answers (challenges and acks) among `outs` sent to `addr`.
fn answers_to(outs: &[Output], addr: SocketAddr) -> Vec<Bytes> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Datagram { to, data } if *to == addr => Some(data.clone()),
            _ => None,
        })
        .collect()
}

/// Media packets among `outs` sent to `addr`.
fn media_to(outs: &[Output], addr: SocketAddr) -> usize {
    outs.iter()
        .map(|o| match o {
            Output::Rtp { to, .. } if *to == addr => 1,
            Output::RtpFrame { to, frame, .. } if *to == addr => frame.len(),
            _ => 0,
        })
        .sum()
}

fn datagram(s: &mut WscSession, t: Instant, from: SocketAddr, data: &[u8]) -> Vec<Output> {
    s.handle(t, Input::Datagram { from, data });
    drain(s)
}

/// Runs a client's handshake from `from` to the end; returns what the session put out for its last step.
fn prove(s: &mut WscSession, t: Instant, from: SocketAddr, client: &mut ClientPath) -> Vec<Output> {
    let mut send = client.proof();
    for _ in 0..3 {
        let outs = datagram(s, t, from, &send);
        let answers = answers_to(&outs, from);
        assert_eq!(answers.len(), 1, "one answer per proof");
        match client.on_answer(&answers[0]).unwrap() {
            Step::Reply(next) => send = next,
            Step::Proved => return outs,
            Step::ConsentRenewed => panic!("a proof is not a keep-alive"),
        }
    }
    panic!("not proved after three round trips")
}

fn a() -> SocketAddr {
    "10.1.1.1:5000".parse().unwrap()
}
fn b() -> SocketAddr {
    "10.2.2.2:6000".parse().unwrap()
}

#[test]
fn init_then_media_only_after_a_valid_proof_starting_at_a_keyframe() {
    let t0 = Instant::now();
    let mut s = session(t0);
    let first = texts(&drain(&mut s));
    assert_eq!(first[0]["type"], "init");
    assert_eq!(first[0]["token"], "ab".repeat(16));
    assert_eq!(first[0]["udp_port"], 8010);
    assert_eq!(
        first[1],
        serde_json::json!({"type": "stream_state", "state": "running"})
    );
    assert_eq!(first[2]["mode"], "live");

    feed(&mut s, t0, frame(0, false));
    feed(&mut s, t0, frame(1, true));
    feed(&mut s, t0, frame(2, false));
    let outs = drain(&mut s);
    assert_eq!(texts(&outs)[0]["type"], "sdp");
    assert!(
        outs.iter().all(|o| !matches!(
            o,
            Output::Datagram { .. }
                | Output::Rtp { .. }
                | Output::RtpFrame { .. }
                | Output::WsBinary(_)
        )),
        "held back"
    );

    // A wrong token changes nothing.
    let mut wrong = TOKEN;
    wrong[0] ^= 1;
    assert!(datagram(
        &mut s,
        t0,
        b(),
        &build_proof(ProofKind::Proof, &wrong, None)
    )
    .is_empty());
    assert!(datagram(&mut s, t0, b(), b"garbage").is_empty());

    // The first proof draws a challenge and nothing else: the address has not shown it receives.
    let t1 = t0 + Duration::from_millis(200);
    let mut client = ClientPath::new(TOKEN);
    let outs = datagram(&mut s, t1, a(), &client.proof());
    assert_eq!(outs.len(), 1);
    let challenge = parse_ack(&answers_to(&outs, a())[0]).unwrap();
    assert_eq!(challenge.kind, AckKind::Challenge);
    let Some(Step::Reply(echo)) = client.on_answer(&answers_to(&outs, a())[0]) else {
        panic!("a challenge asks for a reply");
    };
    let outs = datagram(&mut s, t1, a(), &echo);
    assert!(outs.contains(&Output::UdpPeer(Some(a()))));
    assert_eq!(
        texts(&outs)[0],
        serde_json::json!({"type": "transport", "mode": "udp"})
    );
    let to_a = datagrams_to(&outs, a());
    assert_eq!(parse_ack(&to_a[0]).unwrap().kind, AckKind::Proof);
    // SPS, PPS, IDR, then the delta frame: the pending GOP from its keyframe.
    assert_eq!(to_a.len(), 1 + 4);
    assert_eq!(to_a[1][12], 0x67);
    assert_eq!(u16::from_be_bytes([to_a[1][2], to_a[1][3]]), 1000);
    assert_eq!(
        s.stats().first_packet_after,
        Some(Duration::from_millis(200))
    );
    assert!(datagrams_to(&outs, b()).is_empty());
}

#[test]
fn media_never_goes_to_an_address_that_did_not_prove() {
    let t0 = Instant::now();
    let mut s = session(t0);
    let mut client = ClientPath::new(TOKEN);
    prove(&mut s, t0, a(), &mut client);
    feed(&mut s, t0, frame(0, true));
    drain(&mut s);
    // B sends a NACK for a packet A got: no retransmission to anyone.
    let mut nack = vec![0x81, 205, 0, 3, 0, 0, 0, 9, 0, 0, 0, 42];
    nack.extend_from_slice(&[0x03, 0xe8, 0, 0]);
    assert!(datagram(&mut s, t0, b(), &nack).is_empty());
    // The same NACK from A is answered, to A.
    let outs = datagram(&mut s, t0, a(), &nack);
    assert_eq!(media_to(&outs, a()), 1);
    assert_eq!(s.stats().retransmitted, 1);
    // Whoever holds the token forges A's nonce from B, as a proof and as a keep-alive: B gets a challenge at
    // most, never media.
    for forged in [client.proof(), client.keepalive()] {
        let outs = datagram(&mut s, t0, b(), &forged);
        assert_eq!(
            parse_ack(&answers_to(&outs, b())[0]).unwrap().kind,
            AckKind::Challenge
        );
        assert!(!outs.iter().any(|o| matches!(o, Output::UdpPeer(_))));
    }
    feed(&mut s, t0, frame(1, false));
    let outs = drain(&mut s);
    assert_eq!((media_to(&outs, a()), media_to(&outs, b())), (1, 0));
    // A client really at B (its NAT rebound) answers the challenge: media moves there.
    let mut rebound = client.clone();
    let outs = prove(&mut s, t0, b(), &mut rebound);
    assert!(outs.contains(&Output::UdpPeer(Some(b()))));
    feed(&mut s, t0, frame(2, false));
    let outs = drain(&mut s);
    assert_eq!((media_to(&outs, a()), media_to(&outs, b())), (0, 1));
}

#[test]
fn consent_runs_out_without_keepalives_that_echo_and_media_moves_to_the_websocket() {
    let t0 = Instant::now();
    let mut s = session(t0);
    let first = texts(&drain(&mut s));
    assert_eq!(first[0]["consent_timeout_ms"], 15_000);
    let mut client = ClientPath::new(TOKEN);
    prove(&mut s, t0, a(), &mut client);
    // Keep-alives that echo keep media flowing well past the consent timeout.
    let mut t = t0;
    for _ in 0..6 {
        t += Duration::from_secs(5);
        s.handle_timeout(t);
        let outs = datagram(&mut s, t, a(), &client.keepalive());
        assert_eq!(
            client.on_answer(&answers_to(&outs, a())[0]),
            Some(Step::ConsentRenewed)
        );
    }
    assert_eq!(s.udp_peer(), Some(a()));
    // Then only forged keep-alives come (the token, but no nonce the forger could have seen), and the WebSocket
    // stays busy: media stops at the consent timeout all the same.
    let last_good = t;
    let forged = build_proof(ProofKind::KeepAlive, &TOKEN, Some(&[0x55; 16]));
    while t < last_good + Duration::from_secs(14) {
        t += Duration::from_secs(1);
        datagram(&mut s, t, a(), &forged);
        s.handle(t, Input::WsText(r#"{"type":"ping"}"#));
        s.handle_timeout(t);
        assert_eq!(s.udp_peer(), Some(a()));
        drain(&mut s);
    }
    assert_eq!(s.poll_timeout(t), Some(last_good + Duration::from_secs(15)));
    s.handle_timeout(last_good + Duration::from_secs(15));
    feed(&mut s, t, frame(0, true));
    let outs = drain(&mut s);
    assert!(outs.contains(&Output::UdpPeer(None)));
    assert_eq!(texts(&outs)[0]["mode"], "websocket");
    assert!(texts(&outs)[0]["reason"]
        .as_str()
        .unwrap()
        .contains("consent"));
    assert_eq!(media_to(&outs, a()), 0);
    assert!(outs.iter().any(|o| matches!(o, Output::WsBinary(_))));
    assert!(!s.is_closed());
}

#[test]
fn older_versions_get_the_websocket_at_once_and_their_proofs_are_ignored() {
    let t0 = Instant::now();
    for version in [1, 2] {
        let mut s = session_version(t0, version);
        let outs = drain(&mut s);
        let msgs = texts(&outs);
        assert_eq!(msgs[0]["version"], version);
        assert!(msgs[0].get("consent_timeout_ms").is_none());
        let transport = msgs.iter().find(|m| m["type"] == "transport").unwrap();
        assert_eq!(transport["mode"], "websocket");
        // The old 24-byte proof, and even a version 3 one, change nothing.
        let mut v1 = [0u8; 24];
        v1[..6].copy_from_slice(b"WSCP\x01\x01");
        v1[8..].copy_from_slice(&TOKEN);
        assert!(datagram(&mut s, t0, a(), &v1).is_empty());
        assert!(datagram(&mut s, t0, a(), &ClientPath::new(TOKEN).proof()).is_empty());
        feed(&mut s, t0, frame(0, true));
        let outs = drain(&mut s);
        assert_eq!(
            outs.iter()
                .filter(|o| matches!(o, Output::WsBinary(_)))
                .count(),
            3
        );
    }
}

#[test]
fn no_proof_in_time_falls_back_to_the_websocket() {
    let t0 = Instant::now();
    let mut s = session(t0);
    feed(&mut s, t0, frame(0, true));
    drain(&mut s);
    assert_eq!(s.poll_timeout(t0), Some(t0 + Duration::from_millis(3000)));
    s.handle_timeout(t0 + Duration::from_millis(2999));
    assert!(drain(&mut s).is_empty());
    s.handle_timeout(t0 + Duration::from_millis(3000));
    let outs = drain(&mut s);
    assert_eq!(texts(&outs)[0]["mode"], "websocket");
    assert_eq!(
        outs.iter()
            .filter(|o| matches!(o, Output::WsBinary(_)))
            .count(),
        3
    );
    // A late proof does not pull media back to UDP, nor draws any answer.
    assert!(datagram(&mut s, t0, a(), &ClientPath::new(TOKEN).proof()).is_empty());
}

#[test]
fn client_may_ask_for_the_websocket_and_for_retransmissions() {
    let t0 = Instant::now();
    let mut s = session(t0);
    s.handle(t0, Input::WsText(r#"{"type":"use_websocket"}"#));
    feed(&mut s, t0, frame(0, true));
    let sent: Vec<Bytes> = drain(&mut s)
        .into_iter()
        .filter_map(|o| {
            if let Output::WsBinary(b) = o {
                Some(b)
            } else {
                None
            }
        })
        .collect();
    s.handle(t0, Input::WsText(r#"{"type":"nack","seqs":[1001, 5]}"#));
    let outs = drain(&mut s);
    assert_eq!(
        outs,
        vec![Output::WsBinary(sent[1].clone())],
        "1001 is held, 5 never existed"
    );
    s.handle(t0, Input::WsText(r#"{"type":"ping","id":"x"}"#));
    assert_eq!(
        texts(&drain(&mut s))[0],
        serde_json::json!({"type": "pong", "id": "x"})
    );
}

#[test]
fn idle_timeout_and_stream_deletion_end_the_session() {
    let t0 = Instant::now();
    let mut s = session(t0);
    s.handle(t0, Input::WsText(r#"{"type":"use_websocket"}"#));
    drain(&mut s);
    let t1 = t0 + Duration::from_secs(20);
    s.handle(t1, Input::WsText(r#"{"type":"ping"}"#));
    s.handle_timeout(t1 + Duration::from_secs(29));
    assert!(!s.is_closed(), "a ping keeps it alive");
    s.handle_timeout(t1 + Duration::from_secs(30));
    let outs = drain(&mut s);
    assert_eq!(texts(&outs).last().unwrap()["reason"], "idle_timeout");
    assert_eq!(outs.last(), Some(&Output::Close { code: 1000 }));
    assert!(s.is_closed() && s.poll_timeout(t0).is_none());

    let mut s = session(t0);
    drain(&mut s);
    s.handle(t0, Input::StreamDeleted);
    let outs = drain(&mut s);
    assert_eq!(texts(&outs)[0]["reason"], "stream_deleted");
    feed(&mut s, t0, frame(0, true));
    assert!(drain(&mut s).is_empty(), "nothing after the end");
}

#[test]
fn bad_messages_get_errors_and_repeated_ones_end_the_session() {
    let t0 = Instant::now();
    let mut s = session(t0);
    drain(&mut s);
    s.handle(t0, Input::WsText("{nope"));
    s.handle(t0, Input::WsText(r#"{"type":"teleport"}"#));
    let errs = texts(&drain(&mut s));
    assert_eq!(
        (errs[0]["code"].as_str(), errs[1]["code"].as_str()),
        (Some("bad_json"), Some("unknown_type"))
    );
    assert!(!s.is_closed());
    s.handle(t0 + Duration::from_secs(1), Input::WsText("[1,2"));
    let outs = drain(&mut s);
    assert_eq!(texts(&outs)[0]["code"], "bad_json");
    assert_eq!(texts(&outs)[1]["reason"], "protocol_error");
    assert_eq!(outs.last(), Some(&Output::Close { code: 1008 }));
    assert!(s.is_closed());
}

#[test]
fn one_message_over_the_limit_is_answered_then_closed() {
    let t0 = Instant::now();
    let mut s = session(t0);
    drain(&mut s);
    s.handle(t0, Input::WsText(&" ".repeat(4097)));
    let outs = drain(&mut s);
    let msgs = texts(&outs);
    assert_eq!(
        (msgs[0]["type"].as_str(), msgs[0]["code"].as_str()),
        (Some("error"), Some("too_large"))
    );
    assert_eq!(
        msgs[1],
        serde_json::json!({"type": "bye", "reason": "protocol_error"})
    );
    assert_eq!(
        outs.last(),
        Some(&Output::Close {
            code: CLOSE_TOO_BIG
        })
    );
    assert!(s.is_closed());
}

#[test]
fn debug_output_never_shows_the_session_token() {
    let t0 = Instant::now();
    let mut s = session(t0);
    let init = drain(&mut s)
        .into_iter()
        .find_map(|o| match o {
            Output::WsText(t) if t.contains("\"init\"") => Some(t),
            _ => None,
        })
        .unwrap();
    let msg: super::super::messages::ServerMessage = serde_json::from_str(&init).unwrap();
    let hex = "ab".repeat(16);
    assert!(init.contains(&hex), "the client gets it");
    assert!(!format!("{msg:?}").contains(&hex));
    let id = WscIdentity {
        session_id: "x".into(),
        token: TOKEN,
        ssrc: 1,
        initial_seq: 0,
        stream_name: "cam".into(),
        version: 3,
        nonce_seed: [0xcd; 32],
    };
    let shown = format!("{id:?}");
    assert!(!shown.contains("171") && !shown.contains("205"), "{shown}");
}
