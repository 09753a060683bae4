//! The browser as the user: headless Chromium (driven over ChromeDriver's W3C WebDriver API) opens the live view
//! page against the gateway and the RTSP fixture, plays the stream over WHEP, and its own `getStats()` shows
//! frames decoded rising past 50 without a freeze. Leaving the page ends the gateway's session. The same page's
//! session is then rewound into a recording and back through seeks, speeds and a pause: frames decoded rise after
//! every switch, no switch freezes the picture for more than 500 ms, and the decoder never asks for a keyframe.
//! With ICE-TCP on and the answer's UDP candidates taken out, as a network that lets no UDP through would leave
//! it, Chromium plays over TCP to the shared port.

mod common;

use std::time::{Duration, Instant};

use common::browser::Browser;
use serde_json::json;
use testdata::{FixtureCodec, FixtureOptions};

/// What the page's connection reports, from inside the page.
const STATS_SCRIPT: &str = "
    const p = window.gatewayPlayer;
    if (!p) return { error: 'no player on the page' };
    if (!p.pc) return { waiting: true, error: p.error };
    const r = await p.pc.getStats();
    let v = null;
    r.forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') v = s; });
    const rows = document.querySelectorAll('#stats tr').length;
    return { state: p.pc.connectionState, frames: v ? (v.framesDecoded || 0) : 0,
             freezes: v ? (v.freezeCount || 0) : 0, width: v ? v.frameWidth : 0, rows, error: p.error,
             plis: v ? (v.pliCount || 0) : 0, dropped: v ? (v.framesDropped || 0) : 0,
             decoder: v ? v.decoderImplementation : null };
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_plays_the_live_view_page() {
    let (_fixture, gw, _dir) = common::gateway_with_camera(FixtureOptions {
        codec: FixtureCodec::H264,
        width: 640,
        height: 360,
        bitrate_kbps: 1000,
        ..Default::default()
    })
    .await;
    let browser = Browser::open(
        &format!("{}/debug/webrtc-client?stream=cam", gw.base_url()),
        &[],
    )
    .await;

    // Sample every 500 ms: once frames come, each sample must show new ones, and none may count a freeze.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = 0u64;
    let mut samples = Vec::new();
    loop {
        let s = browser.script(STATS_SCRIPT).await;
        assert!(s["error"].is_null(), "the page shows an error: {s}");
        if s["waiting"] == true {
            assert!(Instant::now() < deadline, "the page never started playing");
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let frames = s["frames"].as_u64().unwrap_or(0);
        samples.push(frames);
        if last > 0 {
            assert!(
                frames > last,
                "no new frame in 500 ms (a freeze): {samples:?}"
            );
        }
        assert_eq!(s["freezes"], 0, "Chromium counted a freeze: {s}");
        if frames > 50 {
            assert_eq!(s["width"], 640, "{s}");
            assert!(
                s["rows"].as_u64().unwrap() >= 8,
                "the stats table is filled: {s}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "frames decoded never passed 50: {samples:?}, last {s}"
        );
        last = frames;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(gw.webrtc().session_count(), 1);

    // Leaving the page ends the session (the page DELETEs it; the connection closing would too).
    browser.go("about:blank").await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while gw.webrtc().session_count() > 0 {
        assert!(Instant::now() < deadline, "the session outlived the page");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    browser.close().await;
    gw.shutdown().await.unwrap();
}

/// Frames decoded by the page, sampled every 100 ms for `window`: (the longest time without a new frame, counted
/// from `since` — the last new frame before a switch — and the frames decoded at the end).
async fn watch_frames(browser: &Browser, since: Instant, window: Duration) -> (Duration, u64) {
    let end = Instant::now() + window;
    let mut last_new = since;
    let mut longest = Duration::ZERO;
    let mut frames = browser.script(STATS_SCRIPT).await["frames"]
        .as_u64()
        .unwrap_or(0);
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let s = browser.script(STATS_SCRIPT).await;
        assert!(s["error"].is_null(), "the page shows an error: {s}");
        let now_frames = s["frames"].as_u64().unwrap_or(0);
        let now = Instant::now();
        if now_frames > frames {
            last_new = now;
            frames = now_frames;
        }
        longest = longest.max(now - last_new);
    }
    (longest, frames)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_plays_through_rewind_switches_without_a_freeze() {
    let (_fixture, gw, _dir, r) = common::recording::recorded_camera_with_a_gap().await;
    let ((a0, a1), (b0, _)) = (r[0], r[1]);
    let browser = Browser::open(
        &format!("{}/debug/webrtc-client?stream=cam", gw.base_url()),
        &[],
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while browser.script(STATS_SCRIPT).await["frames"]
        .as_u64()
        .unwrap_or(0)
        < 25
    {
        assert!(Instant::now() < deadline, "the page never played");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let location = browser
        .script("return window.gatewayPlayer.session.location;")
        .await;
    let session = location
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let http = reqwest::Client::new();
    let switches = [
        ("seek", json!({"position_ms": a0 + 500})),
        ("speed", json!({"speed": 4})),
        ("speed", json!({"speed": 1})),
        ("seek", json!({"position_ms": a1 - 500})),
        ("seek", json!({"position_ms": b0 + 500})),
        ("pause", json!({})),
        ("play", json!({})),
        ("seek", json!({"position_ms": a0 + 2_000})),
        ("live", json!({})),
    ];
    let (_, mut frames) = watch_frames(&browser, Instant::now(), Duration::from_millis(300)).await;
    let mut report = Vec::new();
    for (call, body) in switches {
        let since = Instant::now();
        let resp = http
            .post(format!("{}/sessions/{session}/{call}", gw.base_url()))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{call}");
        if call == "pause" {
            tokio::time::sleep(Duration::from_secs(2)).await;
            continue;
        }
        let (longest, now_frames) =
            watch_frames(&browser, since, Duration::from_millis(2_000)).await;
        report.push((call, longest, now_frames - frames));
        // At 4x only keyframes are sent: 4 a second with this camera's 1 s GOP.
        assert!(
            now_frames > frames + 3,
            "frames decoded rise after {call}: {report:?}"
        );
        assert!(
            longest <= Duration::from_millis(500),
            "{call} froze the picture for {longest:?}: {report:?}"
        );
        frames = now_frames;
    }
    let s = browser.script(STATS_SCRIPT).await;
    assert!(s["error"].is_null(), "{s}");
    // Chromium asks for a keyframe (PLI) when its decoder fails or references are missing: none was asked for,
    // and no frame was dropped. (Its freezeCount is not used: it counts the pause and the 4 frames a second of
    // keyframes-only playback as freezes.)
    assert_eq!(s["plis"], 0, "Chromium's decoder asked for a keyframe: {s}");
    assert_eq!(s["dropped"], 0, "{s}");
    eprintln!("longest wait for a new frame after each switch, frames decoded in 2 s: {report:?}");
    browser.close().await;
    gw.shutdown().await.unwrap();
}

/// Opens a session for `cam` from the page with the answer's UDP candidates removed, so ICE can only use TCP.
const TCP_ONLY_SCRIPT: &str = "
    const pc = new RTCPeerConnection();
    pc.addTransceiver('video', { direction: 'recvonly' });
    await pc.setLocalDescription(await pc.createOffer());
    const r = await fetch('/streams/cam/webrtc', { method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ offer: pc.localDescription.sdp }) });
    if (r.status !== 201) return { error: 'status ' + r.status };
    const body = await r.json();
    const lines = body.answer.split('\\r\\n');
    const kept = lines.filter((l) => !(l.startsWith('a=candidate:') && / udp /i.test(l)));
    await pc.setRemoteDescription({ type: 'answer', sdp: kept.join('\\r\\n') });
    window.tcpOnly = pc;
    return { tcp: kept.filter((l) => / tcp /i.test(l)).length, udp_removed: lines.length - kept.length };
";

/// Frames decoded, and the protocol of the candidate pair in use, from inside the page.
const TCP_STATS_SCRIPT: &str = "
    const pc = window.tcpOnly;
    const r = await pc.getStats();
    const byId = new Map();
    r.forEach((s) => byId.set(s.id, s));
    let frames = 0, protocol = null, type = null;
    r.forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') frames = s.framesDecoded || 0;
        if (s.type === 'transport' && s.selectedCandidatePairId) {
            const pair = byId.get(s.selectedCandidatePairId);
            const remote = pair && byId.get(pair.remoteCandidateId);
            protocol = remote ? remote.protocol : null;
            type = remote ? remote.tcpType || null : null;
        }
    });
    return { state: pc.connectionState, frames, protocol, type };
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_plays_over_ice_tcp_when_udp_is_out() {
    let (_fixture, gw, _dir) = common::gateway_with_camera_and(
        FixtureOptions {
            codec: FixtureCodec::H264,
            width: 640,
            height: 360,
            bitrate_kbps: 1000,
            ..Default::default()
        },
        |c| {
            c.webrtc.bind_ips = vec!["127.0.0.1".parse().unwrap()];
            c.webrtc.ice_tcp = true;
        },
    )
    .await;
    let browser = Browser::open(&format!("{}/health", gw.base_url()), &[]).await;
    let opened = browser.script(TCP_ONLY_SCRIPT).await;
    assert!(opened["error"].is_null(), "{opened}");
    assert!(
        opened["tcp"].as_u64() >= Some(1) && opened["udp_removed"].as_u64() >= Some(1),
        "the answer has a TCP candidate and had UDP ones: {opened}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = browser.script(TCP_STATS_SCRIPT).await;
        if s["frames"].as_u64().unwrap_or(0) > 30 {
            assert_eq!(s["protocol"], "tcp", "{s}");
            assert_eq!(s["type"], "passive", "the gateway's candidate: {s}");
            break;
        }
        assert_ne!(s["state"], "failed", "{s}");
        assert!(Instant::now() < deadline, "no picture over TCP: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(gw.webrtc().session_count(), 1);
    browser.close().await;
    gw.shutdown().await.unwrap();
}
