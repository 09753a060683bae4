//! Access control against a real gateway over HTTP, tried as a new user would: with an admin token set, every
//! guarded route refuses a caller without a token, with a wrong or expired one, with a token for another stream
//! or without the right it needs, and admits the right one (real WHEP/JSON WebRTC offers, the reference WSC-RTP
//! client); session ids are listed to the admin only; a session opened without the DVR right cannot leave live.
//! Also: JSON bodies must be objects, `/health` warns about an open gateway beyond loopback, and camera
//! credentials (in the user info and in the query, as some cameras take them) reach the real RTSP fixture decoded
//! but never a response or a log line.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{assert_error, TestGateway};
use gateway::access::token::{TokenKey, ViewerClaims};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{json, Value};
use testdata::webrtc_viewer::{Viewer, BROWSER_H264};
use testdata::{FixtureOptions, RtspFixture};

const ADMIN: &str = "admin-0123456789";

/// Every log line of this test binary, whatever the test (they share one process).
fn captured_logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        // As the binary logs (`tracing_subscriber::fmt().init()`, which also takes the `log` records of
        // dependencies such as retina), at the most verbose level.
        tracing_subscriber::fmt()
            .with_env_filter("trace")
            .with_ansi(false)
            .with_writer(move || LogSink(sink.clone()))
            .init();
        buf
    })
}

struct LogSink(Arc<Mutex<Vec<u8>>>);

impl Write for LogSink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn call(gw: &TestGateway, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
    let r = gw.client.request(method, gw.url(path));
    match token {
        Some(t) => r.bearer_auth(t),
        None => r,
    }
}

async fn send(r: RequestBuilder) -> Response {
    r.send().await.expect("request")
}

/// Mints a viewer token through the API.
async fn mint(gw: &TestGateway, stream: &str, dvr: bool, export: bool) -> String {
    let resp = send(
        call(gw, Method::POST, "/tokens", Some(ADMIN))
            .json(&json!({"stream": stream, "ttl_secs": 600, "dvr": dvr, "export": export})),
    )
    .await;
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.unwrap();
    let expires = body["expires_ms"].as_i64().unwrap();
    assert!(
        (now_ms() + 590_000..=now_ms() + 600_000).contains(&expires),
        "{body}"
    );
    body["token"].as_str().unwrap().to_owned()
}

/// A token that expired a second ago, signed with the gateway's own key (read from its data directory), so no
/// test waits for a clock.
fn expired(gw: &TestGateway, stream: &str) -> String {
    let secret = std::fs::read(gw.config().data_dir.join(gateway::access::KEY_FILE)).unwrap();
    TokenKey::new(&secret).mint(&ViewerClaims {
        stream: stream.into(),
        expires_ms: now_ms() - 1000,
        dvr: true,
        export: true,
    })
}

/// The viewer-token-guarded calls of stream `cam`: a request with the given token.
fn viewer_calls(gw: &TestGateway, token: Option<&str>) -> Vec<(&'static str, RequestBuilder)> {
    let now = now_ms();
    vec![
        (
            "whep",
            call(gw, Method::POST, "/streams/cam/whep", token)
                .header("content-type", "application/sdp")
                .body("v=0\r\n"),
        ),
        (
            "webrtc",
            call(gw, Method::POST, "/streams/cam/webrtc", token).json(&json!({"offer": "v=0"})),
        ),
        (
            "wsc-rtp",
            call(gw, Method::GET, "/streams/cam/wsc-rtp", token),
        ),
        (
            "recordings",
            call(gw, Method::GET, "/streams/cam/recordings", token),
        ),
        (
            "export",
            call(
                gw,
                Method::GET,
                &format!(
                    "/streams/cam/recordings/export?start={}&end={now}",
                    now - 60_000
                ),
                token,
            ),
        ),
    ]
}

/// A gateway with an admin token and a running test-pattern stream `cam` (plus `other`, never running).
async fn guarded_gateway() -> TestGateway {
    captured_logs();
    let gw = common::start_with(|c| c.admin_token = Some(ADMIN.into())).await;
    for body in [
        common::testsrc_stream("cam", 160, 120),
        common::dead_rtsp_stream("other"),
    ] {
        let r = send(call(&gw, Method::POST, "/streams", Some(ADMIN)).json(&body)).await;
        assert_eq!(r.status(), 201);
    }
    let deadline = Instant::now() + common::WAIT;
    loop {
        let v: Value = send(call(&gw, Method::GET, "/streams/cam", Some(ADMIN)))
            .await
            .json()
            .await
            .unwrap();
        if v["state"] == "running" && v["frames"].as_u64().unwrap_or(0) > 3 {
            break;
        }
        assert!(Instant::now() < deadline, "cam never ran: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_need_the_admin_token() {
    let gw = guarded_gateway().await;
    let viewer = mint(&gw, "cam", true, true).await;
    let admin_calls = [
        (Method::GET, "/streams"),
        (Method::GET, "/streams/cam"),
        (Method::GET, "/streams/cam/webrtc"),
        (Method::PATCH, "/streams/cam"),
        (Method::DELETE, "/streams/other"),
        (Method::DELETE, "/streams/cam/recordings?before=1"),
        (Method::POST, "/tokens"),
    ];
    for (method, path) in &admin_calls {
        for token in [None, Some("wrong"), Some(viewer.as_str())] {
            let resp = send(call(&gw, method.clone(), path, token).json(&json!({}))).await;
            assert_eq!(
                resp.headers()["www-authenticate"],
                "Bearer",
                "{method} {path}"
            );
            assert_error(resp, 401, "unauthorized").await;
        }
        // The admin token in the query is not taken: it would end up in logs and histories.
        let in_query = format!(
            "{path}{}token={ADMIN}",
            if path.contains('?') { '&' } else { '?' }
        );
        let resp = send(call(&gw, method.clone(), &in_query, None).json(&json!({}))).await;
        assert_eq!(resp.status(), 401, "{method} {in_query}");
    }
    // The admin passes every one of them.
    assert_eq!(
        send(call(&gw, Method::GET, "/streams", Some(ADMIN)))
            .await
            .status(),
        200
    );
    let patch = call(&gw, Method::PATCH, "/streams/cam", Some(ADMIN)).json(&json!({}));
    assert_eq!(send(patch).await.status(), 200);
    let del = send(call(
        &gw,
        Method::DELETE,
        "/streams/cam/recordings?before=1",
        Some(ADMIN),
    ))
    .await;
    assert_eq!(del.status(), 200);
    let del = send(call(&gw, Method::DELETE, "/streams/other", Some(ADMIN))).await;
    assert_eq!(del.status(), 204);

    // Minting: only for a stream that exists, within the lifetime bounds.
    let mint_with = |body: Value| send(call(&gw, Method::POST, "/tokens", Some(ADMIN)).json(&body));
    assert_error(mint_with(json!({"stream": "nope"})).await, 404, "not_found").await;
    assert_error(
        mint_with(json!({"stream": "cam", "ttl_secs": 0})).await,
        400,
        "bad_request",
    )
    .await;
    assert_error(
        mint_with(json!({"stream": "cam", "ttl": 5})).await,
        400,
        "bad_request",
    )
    .await;
    let default_ttl: Value = mint_with(json!({"stream": "cam"}))
        .await
        .json()
        .await
        .unwrap();
    assert!(default_ttl["expires_ms"].as_i64().unwrap() > now_ms() + 3_500_000);

    // Health stays open and says auth is on; on loopback there is nothing to warn about.
    let health: Value = gw.get("/health").await.json().await.unwrap();
    assert_eq!(health["auth"], true);
    assert_eq!(health["warnings"], json!([]));
    // The document declares both schemes.
    let doc: Value = gw.get("/api-docs/openapi.json").await.json().await.unwrap();
    let schemes = &doc["components"]["securitySchemes"];
    assert!(
        schemes["admin_token"].is_object() && schemes["viewer_token"].is_object(),
        "{schemes}"
    );
    // Its examples point at loopback or the test pattern, never at a private or public camera address.
    let text = doc.to_string();
    for private in ["192.168.", "10.0.", "172.16."] {
        assert!(!text.contains(private), "{private} in the OpenAPI document");
    }
    assert!(text.contains("rtsp://127.0.0.1:8554/stream1"));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_routes_need_a_valid_token_for_the_stream() {
    let gw = guarded_gateway().await;
    let for_other = mint(&gw, "other", true, true).await;
    let expired = expired(&gw, "cam");
    for (token, status, code) in [
        (None, 401, "unauthorized"),
        (Some("v1.cam.99999999999999.lde.AAAA"), 401, "unauthorized"),
        (Some(expired.as_str()), 401, "token_expired"),
        (Some(for_other.as_str()), 403, "forbidden"),
    ] {
        for (name, req) in viewer_calls(&gw, token) {
            let resp = send(req).await;
            assert_eq!(resp.status().as_u16(), status, "{name} with {token:?}");
            assert_error(resp, status, code).await;
        }
    }
    // A token in the query counts as in the header (WebSockets, <video> URLs) — and a wrong one is refused there too.
    let now = now_ms();
    let export = format!(
        "/streams/cam/recordings/export?start={}&end={now}",
        now - 60_000
    );
    let q = |t: &str| format!("{export}&token={t}");
    assert_error(gw.get(&q(&for_other)).await, 403, "forbidden").await;
    let no_export = mint(&gw, "cam", true, false).await;
    assert_error(gw.get(&q(&no_export)).await, 403, "forbidden").await;
    let exporter = mint(&gw, "cam", false, true).await;
    // Past the checks, the export finds nothing recorded: the token was accepted.
    assert_error(gw.get(&q(&exporter)).await, 404, "nothing_recorded").await;
    assert_error(gw.get(&q(ADMIN)).await, 404, "nothing_recorded").await;

    // Listing the recordings is part of the DVR right.
    let live_only = mint(&gw, "cam", false, false).await;
    let list = |t: &str| send(call(&gw, Method::GET, "/streams/cam/recordings", Some(t)));
    assert_error(list(&live_only).await, 403, "forbidden").await;
    assert_eq!(list(&no_export).await.status(), 200);

    // Starting in the recording is part of the DVR right too, on every kind of session.
    let start = format!("start_ms={}", now_ms() - 10_000);
    let refused = [
        send(
            call(
                &gw,
                Method::POST,
                &format!("/streams/cam/whep?{start}"),
                Some(&live_only),
            )
            .header("content-type", "application/sdp")
            .body("v=0\r\n"),
        )
        .await,
        send(
            call(&gw, Method::POST, "/streams/cam/webrtc", Some(&live_only))
                .json(&json!({"offer": "v=0", "start_ms": now_ms() - 10_000})),
        )
        .await,
        send(call(
            &gw,
            Method::GET,
            &format!("/streams/cam/wsc-rtp?{start}&token={live_only}"),
            None,
        ))
        .await,
    ];
    for resp in refused {
        assert_error(resp, 403, "forbidden").await;
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_open_with_the_right_token_and_stay_private() {
    let gw = guarded_gateway().await;
    let live_only = mint(&gw, "cam", false, false).await;
    let dvr = mint(&gw, "cam", true, false).await;

    // WHEP and the JSON endpoint with real offers.
    let whep_offer = Viewer::new(BROWSER_H264).await.offer;
    let whep = send(
        call(&gw, Method::POST, "/streams/cam/whep", Some(&live_only))
            .header("content-type", "application/sdp")
            .body(whep_offer),
    )
    .await;
    assert_eq!(whep.status(), 201);
    let whep_session = whep.headers()["location"]
        .to_str()
        .unwrap()
        .trim_start_matches("/sessions/")
        .to_owned();
    let json_offer = Viewer::new(BROWSER_H264).await.offer;
    let created = send(
        call(&gw, Method::POST, "/streams/cam/webrtc", Some(&dvr))
            .json(&json!({"offer": json_offer})),
    )
    .await;
    assert_eq!(created.status(), 201);
    let body: Value = created.json().await.unwrap();
    let dvr_session = body["session_id"].as_str().unwrap().to_owned();

    // Only the admin sees the session ids.
    assert_error(
        send(call(&gw, Method::GET, "/streams/cam/webrtc", Some(&dvr))).await,
        401,
        "unauthorized",
    )
    .await;
    let listed = send(call(&gw, Method::GET, "/streams/cam/webrtc", Some(ADMIN)))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        listed.contains(&whep_session) && listed.contains(&dvr_session),
        "{listed}"
    );
    for path in ["/streams", "/streams/cam", "/health"] {
        let text = send(call(&gw, Method::GET, path, Some(ADMIN)))
            .await
            .text()
            .await
            .unwrap();
        assert!(!text.contains(&whep_session), "{path}: {text}");
    }

    // The session id is the capability: no token needed to read its mode or go live...
    let control = |session: &str, what: &str| {
        send(call(
            &gw,
            Method::POST,
            &format!("/sessions/{session}/{what}"),
            None,
        ))
    };
    assert_eq!(
        gw.get(&format!("/sessions/{whep_session}/mode"))
            .await
            .status(),
        200
    );
    assert_eq!(control(&whep_session, "live").await.status(), 200);
    // ...but a session opened without the DVR right can't leave live, whoever asks.
    for what in ["pause", "play"] {
        assert_error(control(&whep_session, what).await, 403, "forbidden").await;
    }
    let seek = |session: &str| {
        send(
            call(
                &gw,
                Method::POST,
                &format!("/sessions/{session}/seek"),
                Some(ADMIN),
            )
            .json(&json!({"position_ms": now_ms() - 5000})),
        )
    };
    assert_error(seek(&whep_session).await, 403, "forbidden").await;
    let speed = call(
        &gw,
        Method::POST,
        &format!("/sessions/{whep_session}/speed"),
        None,
    )
    .json(&json!({"speed": 2.0}));
    assert_error(send(speed).await, 403, "forbidden").await;
    // One opened with it gets past the right to the recordings check (this stream records nothing).
    assert_error(seek(&dvr_session).await, 409, "no_recording").await;

    // WSC-RTP with the reference client, the token in the query as a browser would send it.
    let ws_base = gw.base.replace("http://", "ws://");
    let stats = wsc_rtp_client::run(wsc_rtp_client::ClientOptions {
        url: format!("{ws_base}/streams/cam/wsc-rtp?token={live_only}"),
        websocket: false,
        max_frames: Some(10),
        duration: Some(Duration::from_secs(15)),
        drop_percent: 0,
        start_ms: None,
        speed: None,
        output: None,
    })
    .await
    .expect("the client plays with a viewer token");
    assert_eq!(stats.frames, 10, "{stats:?}");
    let refused = wsc_rtp_client::run(wsc_rtp_client::ClientOptions {
        url: format!("{ws_base}/streams/cam/wsc-rtp"),
        websocket: false,
        max_frames: Some(1),
        duration: Some(Duration::from_secs(5)),
        drop_percent: 0,
        start_ms: None,
        speed: None,
        output: None,
    })
    .await;
    let err = format!("{:#}", refused.expect_err("no token, no session"));
    assert!(err.contains("401"), "{err}");

    // WSC-RTP version 2 messages pass the same check: a seek from a live-only session is refused with `forbidden`,
    // one from a session opened with the DVR right reaches the recordings check.
    assert_eq!(wsc_seek_refusal(&ws_base, &live_only).await, "forbidden");
    assert_eq!(wsc_seek_refusal(&ws_base, &dvr).await, "no_recording");

    for s in [&whep_session, &dvr_session] {
        let r = send(call(&gw, Method::DELETE, &format!("/sessions/{s}"), None)).await;
        assert_eq!(r.status(), 204);
    }
    gw.stop().await;
}

/// Opens a version 2 WSC-RTP session with `token` in the query, sends a seek and answers the `error` code it gets.
async fn wsc_seek_refusal(ws_base: &str, token: &str) -> String {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let url = format!("{ws_base}/streams/cam/wsc-rtp?version=2&token={token}");
    let (mut ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("upgrade");
    let seek = json!({"type": "seek", "position_ms": now_ms() - 5000}).to_string();
    ws.send(Message::Text(seek.into())).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("an answer to the seek")
            .expect("the session goes on")
            .unwrap();
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] == "error" {
                return v["code"].as_str().unwrap().to_owned();
            }
        }
    }
}

#[tokio::test]
async fn open_gateway_beyond_loopback_says_so_and_bodies_must_be_objects() {
    captured_logs();
    let gw = common::start_with(|c| c.bind = "0.0.0.0:0".parse().unwrap()).await;
    let base = format!("http://127.0.0.1:{}", gw.gateway().local_addr().port());
    let health: Value = reqwest::get(format!("{base}/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["auth"], false);
    let warning = health["warnings"][0]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(warning.contains("no admin token"), "{health}");
    let logs = String::from_utf8_lossy(&captured_logs().lock().unwrap()).into_owned();
    assert!(
        logs.contains("SECURITY: no admin token"),
        "start-up warns too"
    );
    assert_eq!(
        gw.gateway().warnings(),
        std::slice::from_ref(&warning),
        "and the binary prints it"
    );

    // Auth off: everything open as before (listing, minting is pointless and says so).
    let client = reqwest::Client::new();
    assert_eq!(
        client
            .get(format!("{base}/streams"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let body = json!(["x2", [{"label": "main", "url": "rtsp://127.0.0.1:1/s"}]]);
    let resp = client
        .post(format!("{base}/streams"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let msg = assert_error(resp, 400, "bad_request").await;
    assert!(msg.contains("JSON object"), "{msg}");
    let ok = client
        .post(format!("{base}/streams"))
        .json(&common::dead_rtsp_stream("x2"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 201);
    for body in [json!([]), json!("x"), json!(null), json!(1)] {
        let resp = client
            .patch(format!("{base}/streams/x2"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_error(resp, 400, "bad_request").await;
    }
    let resp = client
        .patch(format!("{base}/streams/x2"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mint = client
        .post(format!("{base}/tokens"))
        .json(&json!({"stream": "x2"}))
        .send()
        .await
        .unwrap();
    assert_error(mint, 400, "bad_request").await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camera_credentials_work_decoded_and_never_leak() {
    captured_logs();
    // A password with every character form decoding used to get wrong.
    const PASSWORD: &str = "p+ss&w%rd@1";
    const QUERY_SECRET: &str = "QuerySecret-7f3a";
    let fixture = RtspFixture::start(FixtureOptions {
        auth: Some(("viewer".into(), PASSWORD.into())),
        ..Default::default()
    })
    .unwrap();
    let gw = common::start().await;
    // The password in the URL's user info (`%` and `@` escaped as a URL needs, `+` and `&` as typed), and
    // credentials in the query as some cameras take them (the fixture ignores the query).
    let in_url = fixture.url().replace(
        "rtsp://",
        &format!(
            "rtsp://viewer:{}@",
            PASSWORD.replace('%', "%25").replace('@', "%40")
        ),
    );
    let url = format!("{in_url}?user=viewer&password={QUERY_SECRET}");
    let wrong_path = format!("{}/nothing-here?pwd={QUERY_SECRET}", fixture.url());
    for (id, url) in [("cam", &url), ("lost", &wrong_path)] {
        let body = json!({"source_id": id, "rtsp_inputs": [{"label": "main", "url": url}]});
        let resp = gw.post("/streams", &body).await;
        assert_eq!(resp.status(), 201);
        let text = resp.text().await.unwrap();
        assert!(
            !text.contains(QUERY_SECRET) && !text.contains("p+ss"),
            "{text}"
        );
    }
    // The fixture's digest auth takes the decoded password: the stream runs.
    let view = gw.wait_for("cam", |s| s.frames > 3).await;
    assert_eq!(
        view.inputs[0].url,
        format!("{}?user=***&password=***", fixture.url()),
        "query secrets shown as ***"
    );
    let lost = gw.wait_for("lost", |s| s.last_error.is_some()).await;
    assert!(
        lost.inputs[0].url.ends_with("?pwd=***"),
        "{:?}",
        lost.inputs
    );
    // The explicit field takes the password as it is, no decoding at all.
    let patch = json!({"rtsp_inputs": [{"label": "main", "url": fixture.url()}],
        "username": "viewer", "password": PASSWORD});
    assert_eq!(gw.patch("/streams/cam", &patch).await.status(), 200);
    gw.wait_for("cam", |s| {
        s.state == api_models::StreamStateDto::Running && s.frames > 3
    })
    .await;

    for path in ["/streams", "/streams/cam", "/streams/lost"] {
        let text = gw.get(path).await.text().await.unwrap();
        for secret in [QUERY_SECRET, PASSWORD, "p+ss"] {
            assert!(!text.contains(secret), "{path}: {text}");
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for name in ["gateway.db", "gateway.db-wal"] {
            let path = gw.config().data_dir.join(name);
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
    }
    gw.stop().await;
    let logs = String::from_utf8_lossy(&captured_logs().lock().unwrap()).into_owned();
    assert!(
        logs.contains("/nothing-here"),
        "the log did capture the ingest ({} bytes)",
        logs.len()
    );
    for secret in [QUERY_SECRET, PASSWORD, "p+ss", "w%25rd"] {
        assert!(!logs.contains(secret), "{secret} in the logs");
    }
}
