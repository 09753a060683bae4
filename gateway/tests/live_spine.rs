//! The live spine end to end: the gateway (started in-process, real HTTP) pulls a real RTSP server, a hub
//! subscriber receives frames that decode, a camera outage shows as reconnecting with the slate, the camera's
//! return resumes at a keyframe, streams survive a gateway restart, and the real binary runs the demo camera and
//! stops cleanly on SIGTERM.

use std::path::Path;
use std::time::{Duration, Instant};

use gateway::{Config, Gateway};
use hub::Subscriber;
use serde_json::{json, Value};
use testdata::decode::{decode_annex_b, DecodeCodec};
use testdata::{FixtureCodec, FixtureOptions, RtspFixture};

async fn start(data_dir: &Path) -> Gateway {
    let config = Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.to_owned(),
        watchdog_secs: 3,
        wsc_udp_port: 0,
        webrtc: gateway::config::WebRtcConfig {
            udp_port: 0,
            ..Default::default()
        },
        ..Config::default()
    };
    Gateway::start(config).await.unwrap()
}

async fn get(gw: &Gateway, path: &str) -> Value {
    reqwest::get(format!("{}{path}", gw.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Polls `GET /streams/{id}` until `pred` holds.
async fn wait_view(gw: &Gateway, id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = get(gw, &format!("/streams/{id}")).await;
        if pred(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn recv_frames(sub: &mut Subscriber, n: usize) -> Vec<sources::Frame> {
    let mut out = Vec::new();
    while out.len() < n {
        let f = tokio::time::timeout(Duration::from_secs(15), sub.recv())
            .await
            .expect("frame in time")
            .expect("hub open");
        out.push(f.frame.clone());
    }
    out
}

fn decoded(frames: &[sources::Frame]) -> (usize, u32, u32) {
    let aus: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| {
            let mut au = Vec::new();
            let params: Vec<_> = if f.is_keyframe {
                f.params.nals().cloned().collect()
            } else {
                vec![]
            };
            for nal in params.into_iter().chain(f.nals()) {
                au.extend_from_slice(&[0, 0, 0, 1]);
                au.extend_from_slice(&nal);
            }
            au
        })
        .collect();
    let codec = match frames[0].codec {
        sources::Codec::H264 => DecodeCodec::H264,
        sources::Codec::H265 => DecodeCodec::H265,
    };
    decode_annex_b(codec, &aus).unwrap()
}

async fn create(gw: &Gateway, body: Value) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{}/streams", gw.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json().await.unwrap()
}

async fn pull_and_decode(codec: FixtureCodec, transport: &str, auth: bool) {
    let dir = tempfile::tempdir().unwrap();
    let fixture = RtspFixture::start(FixtureOptions {
        codec,
        auth: auth.then(|| ("admin".to_owned(), "pa55word".to_owned())),
        ..Default::default()
    })
    .unwrap();
    let gw = start(dir.path()).await;
    let url = if auth {
        fixture.url().replace("rtsp://", "rtsp://admin:pa55word@")
    } else {
        fixture.url()
    };
    let created = create(
        &gw,
        json!({"source_id": "cam", "rtsp_inputs": [{"label": "main", "url": url, "priority": 0, "transport": transport}]}),
    )
    .await;
    assert!(!created.to_string().contains("pa55word"));
    let mut sub = gw.registry().hub("cam").unwrap().subscribe();
    let v = wait_view(&gw, "cam", "running", |v| v["state"] == "running").await;
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(320), Some(240))
    );
    assert_eq!(
        v["codec"],
        if codec == FixtureCodec::H264 {
            "h264"
        } else {
            "h265"
        }
    );
    assert_eq!(v["has_credentials"], auth);
    assert!(!v.to_string().contains("pa55word"));
    let frames: Vec<_> = recv_frames(&mut sub, 60)
        .await
        .into_iter()
        .skip_while(|f| f.is_slate)
        .collect();
    assert!(frames[0].is_keyframe, "first live frame is a keyframe");
    let (n, w, h) = decoded(&frames);
    assert!(n + 1 >= frames.len(), "decoded {n} of {}", frames.len());
    assert_eq!((w, h), (320, 240));
    let v = wait_view(&gw, "cam", "rates", |v| {
        v["fps"].as_f64().unwrap_or(0.0) > 20.0
    })
    .await;
    assert!(v["bitrate_bps"].as_u64().unwrap() > 0);
    assert_eq!(v["viewers"], 1);
    drop(sub);
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_tcp_pulls_and_decodes() {
    pull_and_decode(FixtureCodec::H264, "tcp", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h265_udp_pulls_and_decodes() {
    pull_and_decode(FixtureCodec::H265, "udp", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_with_digest_auth_pulls_and_decodes() {
    pull_and_decode(FixtureCodec::H264, "tcp", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_shows_slate_and_recovery_resumes_at_keyframe() {
    let dir = tempfile::tempdir().unwrap();
    let mut fixture = RtspFixture::start(FixtureOptions::default()).unwrap();
    let gw = start(dir.path()).await;
    create(
        &gw,
        json!({"source_id": "cam", "rtsp_inputs": [{"label": "main", "url": fixture.url(), "priority": 0}]}),
    )
    .await;
    wait_view(&gw, "cam", "running", |v| v["state"] == "running").await;
    let mut sub = gw.registry().hub("cam").unwrap().subscribe();
    recv_frames(&mut sub, 10).await;

    fixture.stop();
    let v = wait_view(&gw, "cam", "outage", |v| {
        v["state"] == "reconnecting" || v["state"] == "offline"
    })
    .await;
    assert!(v["last_error"].is_string());
    // The subscriber stays attached and gets the slate at the stream's size.
    let deadline = Instant::now() + Duration::from_secs(20);
    let slate = loop {
        let f = recv_frames(&mut sub, 1).await.remove(0);
        if f.is_slate {
            break f;
        }
        assert!(Instant::now() < deadline, "no slate");
    };
    assert!(slate.is_keyframe);
    assert_eq!((slate.params.width, slate.params.height), (320, 240));
    assert_eq!(decoded(&[slate]).0, 1);

    fixture.restart().unwrap();
    wait_view(&gw, "cam", "running again", |v| v["state"] == "running").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let live = loop {
        let f = recv_frames(&mut sub, 1).await.remove(0);
        if !f.is_slate {
            break f;
        }
        assert!(Instant::now() < deadline, "no live frame");
    };
    assert!(live.is_keyframe, "resumes at a keyframe");
    let mut rest = vec![live];
    rest.extend(recv_frames(&mut sub, 20).await);
    assert!(decoded(&rest).0 >= 20);
    let v = get(&gw, "/streams/cam").await;
    assert!(v["reconnects"].as_u64().unwrap() >= 1);
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_come_back_after_a_gateway_restart() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = RtspFixture::start(FixtureOptions::default()).unwrap();
    let gw = start(dir.path()).await;
    let url = fixture.url().replace("rtsp://", "rtsp://u:secretpw@");
    create(
        &gw,
        json!({"source_id": "cam", "rtsp_inputs": [{"label": "main", "url": url, "priority": 0}]}),
    )
    .await;
    gw.shutdown().await.unwrap();

    let gw = start(dir.path()).await;
    let v = wait_view(&gw, "cam", "running after restart", |v| {
        v["state"] == "running"
    })
    .await;
    assert_eq!(v["has_credentials"], true);
    assert_eq!(v["inputs"][0]["url"], fixture.url());
    gw.shutdown().await.unwrap();
    let db = std::fs::read(dir.path().join("gateway.db")).unwrap();
    let as_text = String::from_utf8_lossy(&db);
    assert!(
        !as_text.contains("u:secretpw@"),
        "no URL with credentials stored"
    );
}

/// The binary as a newcomer runs it: `gateway --demo` serves the test-pattern stream, and SIGTERM stops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_runs_the_demo_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["--demo", "--bind", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(format!("{base}/streams/demo")).await {
            let v: Value = r.json().await.unwrap_or_default();
            if v["state"] == "running" && v["fps"].as_f64().unwrap_or(0.0) > 10.0 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "demo stream never ran");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let page = reqwest::get(format!("{base}/debug/")).await.unwrap();
    assert_eq!(page.status(), 200);
    let pid = child.id().unwrap().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("stops within 15 s")
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backward_timestamp_step_does_not_drop_the_camera() {
    // gst-rtsp-server's shared media steps every client's RTP timestamps back when another client joins: the
    // first stream must ride through each join, not reconnect.
    let fixture = RtspFixture::start(FixtureOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let gw = start(dir.path()).await;
    let input = |id: &str| json!({"source_id": id, "rtsp_inputs": [{"label": "main", "url": fixture.url(), "priority": 0}]});
    create(&gw, input("first")).await;
    wait_view(&gw, "first", "running", |v| {
        v["state"] == "running" && v["frames"].as_u64() > Some(25)
    })
    .await;
    for id in ["second", "third"] {
        create(&gw, input(id)).await;
        wait_view(&gw, id, "running", |v| v["state"] == "running").await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let v = get(&gw, "/streams/first").await;
    assert_eq!(v["reconnects"], 0, "{v}");
    assert_eq!(v["state"], "running", "{v}");
    assert!(v["last_error"].is_null(), "{v}");
    gw.shutdown().await.unwrap();
}
