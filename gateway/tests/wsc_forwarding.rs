//! WSC-RTP over UDP through the one-pass forwarder (docs/decisions/0010-one-pass-forwarding.md): a session that
//! leaves the pass (into the recording) and comes back (to live) keeps one RTP stream — every sequence number once,
//! none missing, one SSRC — that decodes, and the sessions that stayed live meanwhile lose nothing.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::wsc::{open, prove, server_udp};
use futures::StreamExt;
use publishers::wsc::client::{ClientPath, Step};
use publishers::wsc::datagram::is_control;
use serde_json::{json, Value};
use testdata::decode::{decode_rtp, DecodeCodec};
use testdata::FixtureCodec;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// A version 3 viewer on UDP: keeps every RTP packet and every `session_mode`, answers the server's nonces and
/// sends keep-alives, as a real client does.
struct Viewer {
    session_id: String,
    ssrc: u32,
    udp: Arc<UdpSocket>,
    server: SocketAddr,
    packets: Arc<Mutex<Vec<Vec<u8>>>>,
    modes: Arc<Mutex<Vec<Value>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

impl Viewer {
    async fn open(gw: &gateway::Gateway) -> Viewer {
        let (mut ws, init) = open(gw, "cam").await;
        let udp = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let path = prove(&udp, &init).await;
        let modes = Arc::new(Mutex::new(Vec::new()));
        let packets = Arc::new(Mutex::new(Vec::new()));
        let reading = {
            let modes = modes.clone();
            tokio::spawn(async move {
                while let Some(Ok(m)) = ws.next().await {
                    if let Message::Text(t) = m {
                        let v: Value = serde_json::from_str(&t).unwrap();
                        if v["type"] == "session_mode" {
                            modes.lock().unwrap().push(v);
                        }
                    }
                }
            })
        };
        let receiving = tokio::spawn(receive(
            udp.clone(),
            path,
            server_udp(&init),
            packets.clone(),
        ));
        Viewer {
            session_id: init["session_id"].as_str().unwrap().to_owned(),
            ssrc: init["ssrc"].as_u64().unwrap() as u32,
            udp,
            server: server_udp(&init),
            packets,
            modes,
            tasks: vec![reading, receiving],
        }
    }

    /// Asks for a keyframe with an RTCP PLI (RFC 4585 §6.3.1) from the proved address.
    async fn pli(&self) {
        let mut pli = vec![0x81, 206, 0, 2, 0, 0, 0, 1];
        pli.extend_from_slice(&self.ssrc.to_be_bytes());
        self.udp.send_to(&pli, self.server).await.unwrap();
    }

    fn frames(&self) -> usize {
        let p = self.packets.lock().unwrap();
        p.iter().filter(|p| p[1] & 0x80 != 0).count()
    }

    /// Waits for `n` more complete frames.
    async fn frames_more(&self, n: usize) {
        let target = self.frames() + n;
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.frames() < target {
            assert!(Instant::now() < deadline, "{n} more frames never came");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for a `session_mode` with this reason.
    async fn mode(&self, reason: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self
            .modes
            .lock()
            .unwrap()
            .iter()
            .any(|m| m["reason"] == reason)
        {
            assert!(Instant::now() < deadline, "no session_mode {reason}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Reads the viewer's socket: RTP is kept, the server's answers are echoed, a keep-alive goes out every 2 s.
async fn receive(
    udp: Arc<UdpSocket>,
    mut path: ClientPath,
    server: SocketAddr,
    packets: Arc<Mutex<Vec<Vec<u8>>>>,
) {
    let mut keepalive = tokio::time::interval(Duration::from_secs(2));
    let mut buf = vec![0u8; 2048];
    loop {
        tokio::select! {
            r = udp.recv(&mut buf) => {
                let n = r.unwrap();
                let data = &buf[..n];
                if is_control(data) {
                    if let Some(Step::Reply(proof)) = path.on_answer(data) {
                        udp.send_to(&proof, server).await.unwrap();
                    }
                } else if data[0] >> 6 == 2 {
                    packets.lock().unwrap().push(data.to_vec());
                }
            }
            _ = keepalive.tick() => {
                udp.send_to(&path.keepalive(), server).await.unwrap();
            }
        }
    }
}

/// One RTP stream: every sequence number once and in order, one SSRC.
fn assert_one_stream(who: &str, packets: &[Vec<u8>]) {
    for w in packets.windows(2) {
        let (s0, s1) = (
            u16::from_be_bytes([w[0][2], w[0][3]]),
            u16::from_be_bytes([w[1][2], w[1][3]]),
        );
        assert_eq!(
            s1,
            s0.wrapping_add(1),
            "{who}: sequence gap or duplicate after {s0}"
        );
        assert_eq!(&w[0][8..12], &w[1][8..12], "{who}: one SSRC");
    }
}

async fn post(gw: &gateway::Gateway, path: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}{path}", gw.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_udp_session_goes_live_dvr_live_in_one_stream_beside_others_that_stay_live() {
    let (_fixture, gw, _dir, (a0, _)) =
        common::recording::recorded_camera(FixtureCodec::H264, 4_000).await;
    let mover = Viewer::open(&gw).await;
    let stayers = [Viewer::open(&gw).await, Viewer::open(&gw).await];
    mover.frames_more(10).await;
    for v in &stayers {
        v.frames_more(10).await;
    }

    let forwarded = gw.wsc().forwarders.datagrams_sent("cam");
    assert!(
        forwarded > 0,
        "live UDP viewers are served by the forwarder"
    );

    // Out of the pass: the recording, fed by a player through the session's own task.
    let sid = &mover.session_id;
    let seek = post(
        &gw,
        &format!("/sessions/{sid}/seek"),
        json!({"position_ms": a0 + 500}),
    )
    .await;
    assert_eq!(seek.status(), 200);
    mover.mode("opened").await;
    mover.frames_more(15).await;
    // Back into it.
    let live = post(&gw, &format!("/sessions/{sid}/live"), json!({})).await;
    assert_eq!(live.status(), 200);
    mover.mode("live").await;
    mover.frames_more(15).await;
    // A keyframe request, answered from the GOP cache: out of the pass and back within one turn.
    mover.pli().await;
    mover.frames_more(15).await;
    for v in &stayers {
        v.frames_more(5).await;
    }

    assert!(gw.wsc().forwarders.datagrams_sent("cam") > forwarded);

    let received = mover.packets.lock().unwrap().clone();
    assert_one_stream("live → DVR → live", &received);
    let (decoded, _, _) = decode_rtp(DecodeCodec::H264, &received).unwrap();
    let frames = received.iter().filter(|p| p[1] & 0x80 != 0).count();
    assert!(
        decoded + 1 >= frames,
        "decoded {decoded} of {frames} frames"
    );
    for (i, v) in stayers.iter().enumerate() {
        let got = v.packets.lock().unwrap().clone();
        assert_one_stream(&format!("live viewer {i}"), &got);
    }
    drop((mover, stayers));
    gw.shutdown().await.unwrap();
}
