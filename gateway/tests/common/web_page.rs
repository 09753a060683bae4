//! The web client's page as tests see it: its state (`window.gatewayPage`), waits on it with deadlines, the
//! session's mode from the gateway, clicks and drags on the timeline at given instants, keys, screenshots and
//! downloads (`tests/web_client.rs`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::browser::Browser;

/// The page's own account of itself (`window.gatewayPage`).
pub const PAGE: &str = "const p = window.gatewayPage; \
    return p ? { view: p.view, error: p.error, player: p.player, tiles: p.tiles, streams: p.streams } : null;";

pub fn artefacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("web_client");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub async fn page(b: &Browser) -> Value {
    b.script(PAGE).await
}

/// Polls the page until `pred` holds on its state; panics with `what` and the last state after `secs`.
pub async fn until(b: &Browser, what: &str, secs: u64, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let p = page(b).await;
        if pred(&p) {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: never happened; page: {p}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls the JavaScript expression `expr` until it is truthy.
pub async fn until_js(b: &Browser, what: &str, expr: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.script(&format!("return Boolean({expr});")).await != true {
        assert!(Instant::now() < deadline, "{what}: never happened");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the player's frames decoded rise by 10 past what they are now (the picture keeps coming).
pub async fn frames_rise(b: &Browser, after: &str) {
    let f0 = page(b).await["player"]["framesDecoded"]
        .as_u64()
        .unwrap_or(0);
    until(b, &format!("frames decoded rise after {after}"), 15, |p| {
        assert!(
            p["error"].is_null(),
            "the page shows an error after {after}: {p}"
        );
        p["player"]["framesDecoded"].as_u64().unwrap_or(0) > f0 + 10
    })
    .await;
}

/// Waits until the stats overlay has a bitrate to show (two samples), for a screenshot that says something.
pub async fn stats_shown(b: &Browser) {
    until(b, "a bitrate in the stats", 10, |p| {
        p["player"]["stats"]["bitrateKbps"].as_f64().unwrap_or(0.0) > 0.0
    })
    .await;
}

/// The session's mode, as the gateway reports it (`GET /sessions/{id}/mode`).
pub async fn mode(base: &str, b: &Browser) -> Value {
    let sid = page(b).await["player"]["sessionId"]
        .as_str()
        .expect("a session")
        .to_owned();
    reqwest::get(format!("{base}/sessions/{sid}/mode"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub async fn mode_until(
    base: &str,
    b: &Browser,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = mode(base, b).await;
        if pred(&m) {
            return m;
        }
        assert!(Instant::now() < deadline, "{what}: mode is {m}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The horizontal offset from the timeline track's centre of instant `ms`, as the page draws it now.
pub async fn timeline_x(b: &Browser, ms: i64) -> i64 {
    let v = b
        .script(&format!(
            "const t = document.querySelector('.tl-track'); const r = t.getBoundingClientRect(); \
             const a = Number(t.dataset.viewStart), e = Number(t.dataset.viewEnd); \
             return Math.round(({ms} - a) / (e - a) * r.width - r.width / 2);"
        ))
        .await;
    v.as_i64().unwrap()
}

/// Clicks the timeline at instant `ms`.
pub async fn click_timeline(b: &Browser, ms: i64) {
    let track = b.element(".tl-track").await;
    let x = timeline_x(b, ms).await;
    b.actions(json!([{"type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"}, "actions": [
        {"type": "pointerMove", "origin": track, "x": x, "y": 0},
        {"type": "pointerDown", "button": 0},
        {"type": "pointerUp", "button": 0},
    ]}]))
    .await;
}

/// Drags on the timeline from instant `from` to `to`.
pub async fn drag_timeline(b: &Browser, from: i64, to: i64) {
    let track = b.element(".tl-track").await;
    let (x0, x1) = (timeline_x(b, from).await, timeline_x(b, to).await);
    b.actions(json!([{"type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"}, "actions": [
        {"type": "pointerMove", "origin": track, "x": x0, "y": 0},
        {"type": "pointerDown", "button": 0},
        {"type": "pointerMove", "origin": track, "x": (x0 + x1) / 2, "y": 0, "duration": 100},
        {"type": "pointerMove", "origin": track, "x": x1, "y": 0, "duration": 100},
        {"type": "pointerUp", "button": 0},
    ]}]))
    .await;
}

/// Presses and releases one key (a WebDriver key value: " ", "\u{E012}" for ←).
pub async fn key(b: &Browser, k: &str) {
    b.actions(json!([{"type": "key", "id": "keyboard", "actions": [
        {"type": "keyDown", "value": k}, {"type": "keyUp", "value": k},
    ]}]))
    .await;
}

pub async fn screenshot(b: &Browser, name: &str) {
    let png = b.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let path = artefacts().join(name);
    std::fs::write(&path, png).unwrap();
    eprintln!("screenshot: {}", path.display());
}

/// Waits for Chromium to finish a download into `dir` and returns the file.
pub async fn wait_for_download(dir: &Path) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let done: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "mp4"))
            .collect();
        if let Some(f) = done.into_iter().next() {
            return f;
        }
        assert!(Instant::now() < deadline, "no MP4 downloaded into {dir:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
