//! WSC-RTP sends media only to an address that showed it receives there, and only while it keeps showing it.
//! Source addresses are forged for real, through a raw socket on loopback (the suite runs as root), and the
//! forged address is a real socket that counts every byte it gets.

mod common;

use std::net::{SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::wsc::{open, prove, recv_rtp, server_udp, token};
use futures::{SinkExt, StreamExt};
use publishers::wsc::client::Step;
use publishers::wsc::datagram::{build_proof, parse_ack, AckKind, ProofKind};
use serde_json::Value;
use testdata::forged_udp::ForgedUdp;
use testdata::FixtureOptions;
use tokio::net::UdpSocket;
use tokio_tungstenite::tungstenite::Message;

/// Bytes a socket received, split into media (RTP) and control datagrams.
#[derive(Default)]
struct Received {
    media: AtomicU64,
    control: AtomicU64,
}

/// Counts everything that reaches `socket` until the returned task is aborted.
fn count(socket: UdpSocket) -> (Arc<Received>, tokio::task::JoinHandle<()>) {
    let got = Arc::new(Received::default());
    let counted = got.clone();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok(n) = socket.recv(&mut buf).await {
            let to = if buf[0] >> 6 == 2 {
                &counted.media
            } else {
                &counted.control
            };
            to.fetch_add(n as u64, Ordering::Relaxed);
        }
    });
    (got, task)
}

fn v4(a: SocketAddr) -> SocketAddrV4 {
    match a {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => panic!("IPv4 only"),
    }
}

/// Sends a ping every 500 ms so the WebSocket is as alive as can be, whatever happens on UDP.
fn keep_pinging(mut ws: common::wsc::Ws) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for i in 0.. {
            let ping = format!(r#"{{"type":"ping","id":{i}}}"#);
            if ws.send(Message::Text(ping.into())).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

/// Two attackers aim sessions at a victim: one only forges proofs from the victim's address (the attack that
/// once streamed the GOP and the live video there), the other first proves its own address, then replays its
/// nonces from the victim's address as proofs and keep-alives. For 6 s, with both WebSockets pinging, the
/// victim gets no media at all, and less in challenges than the attackers sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_source_addresses_get_no_media() {
    let forge = ForgedUdp::open().expect("a raw socket: the test suite runs as root");
    let (_fixture, gw, _dir) = common::gateway_with_camera(FixtureOptions::default()).await;
    let victim = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let victim_addr = v4(victim.local_addr().unwrap());
    let (victim_got, victim_task) = count(victim);

    let (ws_a, init_a) = open(&gw, "cam").await;
    let (ws_b, init_b) = open(&gw, "cam").await;
    let server = v4(server_udp(&init_a));
    let own = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // Its nonces stay fresh for the whole run (consent lasts 15 s), so the replay below is as good as it gets.
    let path_b = prove(&own, &init_b).await;
    recv_rtp(&own, 3).await;
    let (own_got, own_task) = count(own);
    let (_ping_a, _ping_b) = (keep_pinging(ws_a), keep_pinging(ws_b));

    let first_contact = build_proof(ProofKind::Proof, &token(&init_a), None);
    let mut sent = 0u64;
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        for datagram in [first_contact, path_b.proof(), path_b.keepalive()] {
            forge.send(victim_addr, server, &datagram).unwrap();
            sent += datagram.len() as u64;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    victim_task.abort();
    own_task.abort();
    let (media, control) = (
        victim_got.media.load(Ordering::Relaxed),
        victim_got.control.load(Ordering::Relaxed),
    );
    println!("forged {sent} bytes from the victim's address; the victim got {media} media bytes and {control} control bytes");
    assert_eq!(media, 0, "media reached the forged address");
    // The forgeries did reach the gateway (it challenged the address they named): the test is not vacuous.
    assert!(
        control > 0,
        "no challenge reached the victim: the forged datagrams went nowhere"
    );
    assert!(
        control < sent / 2,
        "{control} bytes of challenges for {sent} forged"
    );
    assert!(
        own_got.media.load(Ordering::Relaxed) > 0,
        "the attacker's own proved address kept its media: the forgeries moved nothing"
    );
    gw.shutdown().await.unwrap();
}

/// A proved client stops its keep-alives; the WebSocket keeps pinging and someone who knows the token forges
/// keep-alives from the client's own address (without the nonces, which only the client sees). Media over UDP
/// stops at the consent timeout all the same, and the session carries on over the WebSocket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_stops_when_consent_runs_out() {
    let forge = ForgedUdp::open().expect("a raw socket: the test suite runs as root");
    let (_fixture, gw, _dir) = common::gateway_with_camera(FixtureOptions::default()).await;
    let (mut ws, init) = open(&gw, "cam").await;
    let consent = Duration::from_millis(init["consent_timeout_ms"].as_u64().unwrap());
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let client_addr = v4(client.local_addr().unwrap());
    prove(&client, &init).await;
    let proved_at = Instant::now();
    recv_rtp(&client, 3).await;
    let (got, task) = count(client);
    let forged = build_proof(ProofKind::KeepAlive, &token(&init), Some(&[0x5a; 16]));
    let mut transport = None;
    let mut ws_media = 0;
    let mut ping = tokio::time::interval(Duration::from_millis(500));
    let give_up = proved_at + consent + Duration::from_secs(5);
    while ws_media < 10 {
        assert!(
            Instant::now() < give_up,
            "still on UDP {:?} after the proof",
            proved_at.elapsed()
        );
        tokio::select! {
            _ = ping.tick() => {
                forge.send(client_addr, v4(server_udp(&init)), &forged).unwrap();
                ws.send(Message::Text(r#"{"type":"ping"}"#.into())).await.unwrap();
            }
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v["type"] == "transport" {
                        transport = Some((v, proved_at.elapsed()));
                    }
                }
                Some(Ok(Message::Binary(_))) => ws_media += 1,
                Some(Ok(_)) => {}
                other => panic!("the session ended: {other:?}"),
            }
        }
    }
    let (transport, after) = transport.expect("a transport message before media on the WebSocket");
    println!("media moved to the WebSocket {after:?} after the proof (consent {consent:?})");
    assert_eq!(transport["mode"], "websocket");
    assert!(
        transport["reason"].as_str().unwrap().contains("consent"),
        "{transport}"
    );
    assert!(
        after >= consent && after < consent + Duration::from_secs(2),
        "media moved after {after:?}"
    );
    // Nothing more reaches the client's UDP socket once the media moved.
    let media_then = got.media.load(Ordering::Relaxed);
    let quiet = Instant::now() + Duration::from_secs(1);
    while Instant::now() < quiet {
        if let Some(Ok(Message::Text(_) | Message::Binary(_))) = ws.next().await {}
    }
    assert_eq!(got.media.load(Ordering::Relaxed), media_then);
    task.abort();
    gw.shutdown().await.unwrap();
}

/// A keep-alive, even with a good nonce, from another address moves nothing: that address gets a challenge and
/// no media. A client really there (its NAT rebound) answers the challenge, and the media follows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalives_never_move_media_and_a_rebound_client_follows_with_a_proof() {
    let (_fixture, gw, _dir) = common::gateway_with_camera(FixtureOptions::default()).await;
    let (ws, init) = open(&gw, "cam").await;
    let _ping = keep_pinging(ws);
    let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut path = prove(&a, &init).await;
    recv_rtp(&a, 3).await;
    let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    b.send_to(&path.keepalive(), server_udp(&init))
        .await
        .unwrap();
    let mut buf = vec![0u8; 2048];
    let n = tokio::time::timeout(Duration::from_secs(5), b.recv(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    assert_eq!(
        parse_ack(&buf[..n]).map(|x| x.kind),
        Some(AckKind::Challenge)
    );
    let challenge = buf[..n].to_vec();
    // A still gets the media; B gets nothing more.
    recv_rtp(&a, 10).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(700), b.recv(&mut buf))
            .await
            .is_err()
    );
    // B answers: media moves to B.
    let Some(Step::Reply(proof)) = path.on_answer(&challenge) else {
        panic!("a challenge asks for a reply");
    };
    b.send_to(&proof, server_udp(&init)).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), b.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(path.on_answer(&buf[..n]), Some(Step::Proved));
    recv_rtp(&b, 10).await;
    gw.shutdown().await.unwrap();
}
