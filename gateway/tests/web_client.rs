//! The web client as a user drives it, in headless Chromium against one gateway recording the RTSP fixture
//! (`cam`, whose recording has a gap: the camera was stopped for a few seconds) and a few test-pattern streams:
//! a stream added (and edited) from the form plays live; the timeline shows the two recorded ranges; a click into
//! the first range plays from there (the session reports DVR at about that instant); a selected range exports to
//! an MP4 that ffprobe decodes; a click across the gap, a speed change, ← and "Go live" each keep the picture
//! coming; a deep link opens the recording at an instant and a speed; the date-time jump seeks; the 2×2 grid plays
//! four streams; markup in a stream's label or in the URL shows as text and runs nothing; a stream is deleted after
//! a confirmation. Screenshots of the player (live, DVR), the grid and the streams list are saved under
//! `$CARGO_TARGET_TMPDIR/web_client/`, with the exported MP4.
//!
//! One gateway and one Chromium serve every step (CI time); each step waits on what the page shows, with a
//! deadline. A second, small test runs the page against a gateway with an admin token: the page asks for it, keeps
//! it in the browser only, and hands export links and shared links viewer tokens of their own.

mod common;

use std::time::{Duration, Instant};

use common::browser::Browser;
use common::web_page::{
    artefacts, click_timeline, drag_timeline, frames_rise, key, mode, mode_until, screenshot,
    stats_shown, until, until_js, wait_for_download,
};
use serde_json::{json, Value};

/// Markup that would run script if a page ever parsed it as HTML.
const XSS: &str = "<img src=x onerror=\"window.__xss=1\">";

/// Registers a test-pattern stream through the API (small and slow: cheap to encode).
async fn add_pattern(base: &str, id: &str, label: &str) {
    let r = reqwest::Client::new()
        .post(format!("{base}/streams"))
        .json(&json!({"source_id": id, "rtsp_inputs": [{"label": label,
            "url": "testsrc://?width=320&height=180&fps=10&gop=10", "priority": 0}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_client_plays_rewinds_exports_and_shows_a_grid() {
    let t0 = Instant::now();
    let downloads = tempfile::tempdir().unwrap();
    let prefs = json!({
        "download.default_directory": downloads.path().to_str().unwrap(),
        "download.prompt_for_download": false,
    });
    let ((_fixture, gw, _dir, r), browser) = tokio::join!(
        common::recording::recorded_camera_with_a_gap(),
        Browser::open_with_prefs("about:blank", &["--window-size=1100,900"], prefs),
    );
    let b = &browser;
    let base = gw.base_url();
    let ((a0, a1), (b0, _)) = (r[0], r[1]);
    eprintln!("recorded {r:?} in {:?}", t0.elapsed());
    add_pattern(&base, "lot", "main").await;
    add_pattern(&base, "xss", XSS).await;

    // 1. A stream added from the form plays live; an API error shows in words.
    b.go(&format!("{base}/debug/")).await;
    until(b, "the streams list", 10, |p| {
        p["streams"].as_array().is_some_and(|s| s.len() == 3)
    })
    .await;
    b.type_into("[name=source_id]", "yard").await;
    b.type_into(
        "#inputs [name=url]",
        "testsrc://?width=320&height=180&fps=10&gop=10",
    )
    .await;
    b.click("#form-submit").await;
    until(b, "the new stream in the list", 10, |p| {
        p["streams"].as_array().unwrap().iter().any(|s| s == "yard")
    })
    .await;
    b.type_into("[name=source_id]", "yard").await;
    b.type_into("#inputs [name=url]", "testsrc://").await;
    b.click("#form-submit").await;
    let p = until(b, "an error for a taken id", 10, |p| p["error"].is_string()).await;
    assert!(
        p["error"].as_str().unwrap().contains("yard"),
        "the error names the stream: {p}"
    );
    b.go(&format!("{base}/debug/?edit=yard")).await;
    until_js(
        b,
        "the edit form on yard",
        "document.querySelector('#form-title').textContent === 'Edit stream yard'",
    )
    .await;
    // Editing: turn recording on, keep 2 hours, add a second (fallback) input over UDP.
    b.click("[name=should_record]").await;
    b.type_into("[name=max_age_hours]", "2").await;
    b.click("#add-input").await;
    let second = "#inputs .input-row:nth-child(2)";
    b.type_into(&format!("{second} [name=url]"), "rtsp://127.0.0.1:9/backup")
        .await;
    b.click(&format!("{second} [name=transport] option[value=udp]"))
        .await;
    b.click("#form-submit").await;
    let v = common::stream_until(&gw, "yard", |v| v["should_record"] == true).await;
    assert_eq!(v["retention"]["max_age_secs"], 7200, "{v}");
    assert_eq!(v["inputs"][1]["priority"], 1, "{v}");
    assert_eq!(v["inputs"][1]["transport"], "udp", "{v}");
    assert_eq!(v["inputs"][0]["label"], "main", "{v}");

    b.click("tr[data-id=yard] button.watch").await;
    until(b, "the player on yard", 10, |p| p["view"] == "player").await;
    frames_rise(b, "adding the stream from the form").await;
    assert_eq!(mode(&base, b).await["mode"], "live");
    screenshot(b, "player-live-form-stream.png").await;

    // 2. The recorded camera: two ranges on the timeline, and a gap between them.
    b.go(&format!("{base}/debug/?stream=cam")).await;
    until(b, "the timeline shows the two recorded ranges", 15, |p| {
        p["player"]["ranges"]
            .as_array()
            .is_some_and(|r| r.len() == 2)
    })
    .await;
    frames_rise(b, "opening cam live").await;
    let drawn = b
        .script("return [document.querySelectorAll('.tl-range').length, document.querySelectorAll('.tl-gap').length]")
        .await;
    assert_eq!(drawn, json!([2, 1]), "ranges and the gap drawn");
    b.click("[data-zoom='1m']").await;
    stats_shown(b).await;
    screenshot(b, "player-live.png").await;
    b.click("[data-zoom='10m']").await;

    // 3. A click into the first range plays from there.
    let target = (a0 + a1) / 2;
    click_timeline(b, target).await;
    let m = mode_until(&base, b, "DVR after a click in the first range", |m| {
        m["mode"] == "dvr"
    })
    .await;
    let pos = m["position_ms"].as_i64().unwrap();
    assert!(
        (pos - target).abs() < 3_000,
        "position {pos} near the clicked {target}: {m}"
    );
    frames_rise(b, "a click into the first range").await;

    // 4. Space pauses; a range selected on the timeline exports to an MP4 that plays.
    key(b, " ").await;
    mode_until(&base, b, "paused by space", |m| m["paused"] == true).await;
    b.click("[data-zoom='1m']").await;
    b.click("#select").await;
    let (s0, s1) = (a0 + 1_000, a1 - 1_000);
    drag_timeline(b, s0, s1).await;
    let sel = until(b, "a selection", 5, |p| p["player"]["selection"].is_array()).await["player"]
        ["selection"]
        .clone();
    let (g0, g1) = (sel[0].as_i64().unwrap(), sel[1].as_i64().unwrap());
    assert!(
        (g0 - s0).abs() < 1_000 && (g1 - s1).abs() < 1_000,
        "selected {sel} for {s0}..{s1}"
    );
    b.click("#export").await;
    let file = wait_for_download(downloads.path()).await;
    let probed = testdata::probe::ffprobe(&file, None).expect("ffprobe reads the export");
    let want_secs = (g1 - g0) as f64 / 1000.0;
    assert!(probed.frames > 10, "{probed:?}");
    assert!(
        probed.duration_secs >= want_secs - 0.5 && probed.duration_secs <= want_secs + 2.5,
        "the export covers the selection ({want_secs} s): {probed:?}"
    );
    assert_eq!(
        testdata::probe::decode_errors(&file, None).unwrap(),
        Vec::<String>::new()
    );
    std::fs::copy(&file, artefacts().join("export.mp4")).unwrap();
    // 5. Across the gap (from the paused first range), play, a speed change, ← 10 s, then "Go live".
    b.click("[data-zoom='10m']").await;
    click_timeline(b, b0 + 1_500).await;
    let m = mode_until(&base, b, "a seek into the second range", |m| {
        m["position_ms"].as_i64().unwrap_or(0) >= b0 - 1_000
    })
    .await;
    assert_eq!(m["mode"], "dvr", "{m}");
    assert!(m["position_ms"].as_i64().unwrap() < b0 + 4_000, "{m}");
    if m["paused"] == true {
        b.click("#pause").await;
    }
    mode_until(&base, b, "playing", |m| m["paused"] == false).await;
    frames_rise(b, "a seek across the gap").await;
    b.click("#speed option[value='2']").await;
    mode_until(&base, b, "speed 2", |m| m["speed"] == 2.0).await;
    frames_rise(b, "speed 2").await;
    let before = mode(&base, b).await["position_ms"].as_i64().unwrap();
    key(b, "\u{E012}").await;
    mode_until(&base, b, "10 s back with ←", |m| {
        m["mode"] == "dvr" && m["position_ms"].as_i64().unwrap() < before - 5_000
    })
    .await;
    frames_rise(b, "←").await;
    b.click("[data-zoom='1m']").await;
    stats_shown(b).await;
    screenshot(b, "player-dvr.png").await;
    b.click("#live").await;
    mode_until(&base, b, "live again", |m| m["mode"] == "live").await;
    frames_rise(b, "Go live").await;

    // 6. A deep link opens the recording at an instant and a speed, and the URL keeps following the position.
    let at = a0 + 1_000;
    b.go(&format!("{base}/debug/?stream=cam&t={at}&speed=0.5"))
        .await;
    until(b, "the deep link's session", 10, |p| {
        p["player"]["sessionId"].is_string()
    })
    .await;
    let m = mode_until(&base, b, "DVR at the linked instant", |m| {
        m["mode"] == "dvr" && m["speed"] == 0.5
    })
    .await;
    assert!(
        (m["position_ms"].as_i64().unwrap() - at).abs() < 3_000,
        "{m} for t={at}"
    );
    frames_rise(b, "a deep link").await;
    let href = b.script("return location.href").await;
    assert!(
        href.as_str().unwrap().contains("speed=0.5") && href.as_str().unwrap().contains("t="),
        "{href}"
    );

    // The date-time jump (local time, whole seconds) seeks too: from the first range into the second.
    let jump = b0 + 2_000;
    b.script(&format!(
        "const d = new Date({jump}); const p = (n) => String(n).padStart(2, '0'); \
         document.querySelector('#jump-at').value = `${{d.getFullYear()}}-${{p(d.getMonth() + 1)}}-${{p(d.getDate())}}` + \
           `T${{p(d.getHours())}}:${{p(d.getMinutes())}}:${{p(d.getSeconds())}}`; return null;"
    ))
    .await;
    b.click("#jump [type=submit]").await;
    mode_until(&base, b, "DVR at the jumped-to instant", |m| {
        let p = m["position_ms"].as_i64().unwrap_or(0);
        p >= b0 - 1_000 && p <= jump + 1_000
    })
    .await;
    frames_rise(b, "a date-time jump").await;

    // 7. The 2×2 grid: four streams, each playing; a click on a tile opens the player.
    b.go(&format!("{base}/debug/?view=grid&layout=2x2")).await;
    until(b, "four tiles decoding", 30, |p| {
        let tiles = p["tiles"].as_array().cloned().unwrap_or_default();
        tiles.len() == 4
            && tiles
                .iter()
                .all(|t| t["framesDecoded"].as_u64().unwrap_or(0) > 10)
    })
    .await;
    screenshot(b, "grid.png").await;
    // The layout and the streams shown are chosen on the page and kept in the URL.
    b.click("[data-layout='3x3']").await;
    b.click("#grid-choose summary").await;
    b.click("#grid-streams input[value=xss]").await;
    until(b, "three tiles", 10, |p| {
        p["tiles"].as_array().is_some_and(|t| t.len() == 3)
    })
    .await;
    let href = b.script("return location.search").await;
    assert_eq!(href, "?view=grid&layout=3x3&streams=cam%2Clot%2Cyard");
    b.click(".tile[data-stream=lot]").await;
    until(b, "the player from a tile", 10, |p| {
        p["player"]["stream"] == "lot"
    })
    .await;

    // 8. Markup in a label and in the URL is text, and runs nothing.
    b.go(&format!("{base}/debug/")).await;
    until(b, "the list", 10, |p| {
        p["streams"].as_array().is_some_and(|s| s.len() == 4)
    })
    .await;
    let shown = b
        .script("return document.querySelector('tr[data-id=xss] td.inputs').textContent")
        .await;
    assert!(shown.as_str().unwrap().contains(XSS), "{shown}");
    screenshot(b, "streams.png").await;
    b.go(&format!("{base}/debug/?edit=xss")).await;
    until_js(
        b,
        "the edit form on xss",
        "document.querySelector('[name=source_id]').value === 'xss'",
    )
    .await;
    let label = b
        .script("return document.querySelector('#inputs [name=label]').value")
        .await;
    assert_eq!(label, XSS);
    let escaped: String = url::form_urlencoded::byte_serialize(XSS.as_bytes()).collect();
    b.go(&format!("{base}/debug/?stream={escaped}")).await;
    until(b, "an error for a stream that does not exist", 10, |p| {
        p["error"].is_string()
    })
    .await;
    let title = b
        .script("return document.querySelector('#player-title').textContent")
        .await;
    assert_eq!(title, XSS);
    b.go(&format!("{base}/debug/?view=grid&streams={escaped},xss"))
        .await;
    until(b, "the grid with a bad id", 10, |p| {
        p["tiles"].as_array().is_some_and(|t| t.len() == 2)
    })
    .await;
    let ran = b
        .script("return [document.querySelectorAll('img').length, window.__xss === undefined]")
        .await;
    assert_eq!(
        ran,
        json!([0, true]),
        "no markup became elements, no script ran"
    );

    // 9. Delete, after a confirmation.
    b.go(&format!("{base}/debug/")).await;
    until_js(
        b,
        "the row of yard",
        "document.querySelector('tr[data-id=yard]')",
    )
    .await;
    b.click("tr[data-id=yard] button.delete").await;
    b.accept_dialog().await;
    until(b, "yard gone from the list", 10, |p| {
        p["streams"].as_array().is_some_and(|s| s.len() == 3)
    })
    .await;
    let gone = reqwest::get(format!("{base}/streams/yard")).await.unwrap();
    assert_eq!(gone.status(), 404);

    b.go("about:blank").await;
    browser.close().await;
    gw.shutdown().await.unwrap();
    eprintln!("web client test took {:?}", t0.elapsed());
}

/// The admin token of the auth test's gateway.
const ADMIN: &str = "admin-secret-for-the-web-client";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_admin_token_the_page_asks_for_it_and_hands_viewers_tokens_of_their_own() {
    let (gw, browser) = tokio::join!(
        common::start_with(|c| {
            c.admin_token = Some(ADMIN.into());
            c.segment_secs = 2;
        }),
        Browser::open("about:blank", &["--window-size=1100,900"]),
    );
    let b = &browser;
    let r = gw
        .client
        .post(gw.url("/streams"))
        .bearer_auth(ADMIN)
        .json(
            &json!({"source_id": "door", "should_record": true, "rtsp_inputs": [{"label": "main",
            "url": "testsrc://?width=320&height=180&fps=10&gop=10", "priority": 0}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // Without a token the page says what it needs and asks for it; given, it is kept in the browser only.
    b.go(&gw.url("/debug/")).await;
    until_js(
        b,
        "the token prompt",
        "!document.querySelector('#token-box').hidden",
    )
    .await;
    let p = until(b, "an error in words", 10, |p| p["error"].is_string()).await;
    assert!(p["error"].as_str().unwrap().contains("admin token"), "{p}");
    b.type_into("#token", ADMIN).await;
    b.click("#token-form [type=submit]").await;
    until(b, "the streams listed with the token", 10, |p| {
        p["streams"] == json!(["door"])
    })
    .await;
    let kept = b
        .script("return [localStorage.getItem('gateway.apiToken'), location.href]")
        .await;
    assert_eq!(kept[0], ADMIN);
    assert!(!kept[1].as_str().unwrap().contains(ADMIN), "{kept}");

    // The admin plays (the API takes the admin token for WHEP and recordings, in a header).
    b.go(&gw.url("/debug/?stream=door&zoom=1m")).await;
    frames_rise(b, "opening door as the admin").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let range = loop {
        let v: Value = gw
            .client
            .get(gw.url("/streams/door/recordings"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let finished = v["ranges"][0]["segments"]
            .as_array()
            .is_some_and(|s| s.iter().filter(|s| s["state"] != "writing").count() >= 2);
        if finished {
            break (
                v["ranges"][0]["start_ms"].as_i64().unwrap(),
                v["ranges"][0]["segments"][1]["end_ms"].as_i64().unwrap(),
            );
        }
        assert!(Instant::now() < deadline, "no finished segments: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    until(b, "the recorded range on the timeline", 10, |p| {
        p["player"]["ranges"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
    })
    .await;

    // An export link carries a short-lived viewer token minted for it, never the admin token.
    b.click("#select").await;
    drag_timeline(b, range.0 + 500, range.1 - 500).await;
    b.click("#export").await;
    until_js(
        b,
        "the export link",
        "document.querySelector('#export-link')",
    )
    .await;
    let href = b
        .script("return document.querySelector('#export-link').href")
        .await;
    let href = href.as_str().unwrap().to_owned();
    assert!(href.contains("token=") && !href.contains(ADMIN), "{href}");
    let resp = reqwest::get(&href).await.unwrap();
    assert_eq!(resp.status(), 200, "{href}");
    assert_eq!(resp.headers()["content-type"], "video/mp4");

    // A shared link carries a viewer token: without the admin token, it plays live and from the recording.
    b.click("#share").await;
    until_js(
        b,
        "the share link",
        "document.querySelector('#share-url').value",
    )
    .await;
    let shared = b
        .script("return document.querySelector('#share-url').value")
        .await;
    let shared = shared.as_str().unwrap().to_owned();
    assert!(
        shared.contains("token=") && !shared.contains(ADMIN),
        "{shared}"
    );
    b.script("localStorage.clear(); sessionStorage.clear(); return null;")
        .await;
    b.go(&gw.url("/debug/?stream=door")).await;
    let p = until(b, "a refusal in words without a token", 10, |p| {
        p["error"].is_string()
    })
    .await;
    assert!(p["error"].as_str().unwrap().contains("token"), "{p}");
    b.go(&shared).await;
    frames_rise(b, "opening the shared link").await;
    click_timeline(b, range.0 + 1_000).await;
    mode_until(&gw.base, b, "DVR with the shared link's token", |m| {
        m["mode"] == "dvr"
    })
    .await;
    frames_rise(b, "a seek with the shared link's token").await;

    b.go("about:blank").await;
    browser.close().await;
    gw.stop().await;
}
