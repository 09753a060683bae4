//! The REST API over real HTTP against an in-process gateway: the stream life cycle with the GStreamer test
//! pattern, every error status, credentials hygiene, the API token, persistence across a restart, and the
//! OpenAPI / Swagger UI / debug page routes.

mod common;

use api_models::{StreamStateDto, StreamView};
use common::{assert_error, dead_rtsp_stream, testsrc_stream};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_life_cycle_with_the_test_pattern() {
    let gw = common::start().await;
    let resp = gw.post("/streams", &testsrc_stream("cam1", 320, 240)).await;
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["location"], "/streams/cam1");
    let created: StreamView = resp.json().await.unwrap();
    assert_eq!(created.source_id, "cam1");
    assert_eq!(created.inputs.len(), 1);
    assert!(!created.has_credentials && !created.should_record);
    assert_eq!(created.restart_interval_secs, 60);

    let running = gw
        .wait_for("cam1", |s| {
            s.state == StreamStateDto::Running && s.width == Some(320)
        })
        .await;
    assert_eq!(running.height, Some(240));
    assert_eq!(running.codec.as_deref(), Some("h264"));
    assert_eq!(running.active_input.as_deref(), Some("pattern"));
    gw.wait_for("cam1", |s| s.frames > 0 && s.bytes > 0).await;

    let list: Vec<StreamView> = gw.get("/streams").await.json().await.unwrap();
    assert_eq!(
        list.iter()
            .map(|s| s.source_id.as_str())
            .collect::<Vec<_>>(),
        ["cam1"]
    );

    // A settings-only patch keeps the ingest running.
    let resp = gw
        .patch(
            "/streams/cam1",
            &json!({"should_record": true, "restart_interval_secs": 30}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let patched: StreamView = resp.json().await.unwrap();
    assert!(patched.should_record);
    assert_eq!(patched.restart_interval_secs, 30);

    // New inputs restart the ingest on the same hub: the new size shows up.
    let resp = gw
        .patch(
            "/streams/cam1",
            &json!({"rtsp_inputs": [{"label": "big", "url": "testsrc://?width=640&height=360", "priority": 0}]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let view = gw
        .wait_for("cam1", |s| {
            s.state == StreamStateDto::Running && s.width == Some(640)
        })
        .await;
    assert_eq!(view.active_input.as_deref(), Some("big"));
    assert!(
        view.should_record,
        "patching inputs keeps the other settings"
    );

    let health: Value = gw.get("/health").await.json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["streams"], 1);

    assert_eq!(gw.delete("/streams/cam1").await.status(), 204);
    assert_error(gw.get("/streams/cam1").await, 404, "not_found").await;
    let list: Vec<StreamView> = gw.get("/streams").await.json().await.unwrap();
    assert!(list.is_empty());
    gw.stop().await;
}

#[tokio::test]
async fn bad_requests_are_400_with_an_error_body() {
    let gw = common::start().await;
    let input = |url: &str| json!([{ "label": "main", "url": url }]);
    let cases = [
        json!({"source_id": "a", "rtsp_inputs": input("ftp://cam/x")}),
        json!({"source_id": "a/b", "rtsp_inputs": input("rtsp://127.0.0.1:9/x")}),
        json!({"source_id": "../x", "rtsp_inputs": input("rtsp://127.0.0.1:9/x")}),
        json!({"source_id": "", "rtsp_inputs": input("rtsp://127.0.0.1:9/x")}),
        json!({"source_id": "a", "rtsp_inputs": []}),
        json!({"source_id": "a", "rtsp_inputs": input("rtsp://127.0.0.1:9/x"), "colour": "red"}),
        json!({"source_id": "a", "rtsp_inputs": [{"label": "m", "url": "rtsp://h/x", "transport": "sctp"}]}),
        json!({"source_id": "a", "rtsp_inputs": [{"label": "m", "url": "rtsp://h/x"}, {"label": "m", "url": "rtsp://h/y"}]}),
        json!({"source_id": "a", "rtsp_inputs": input("rtsp://127.0.0.1:9/x"), "restart_interval_secs": 0}),
        json!({"rtsp_inputs": input("rtsp://127.0.0.1:9/x")}),
    ];
    for body in &cases {
        let msg = assert_error(gw.post("/streams", body).await, 400, "bad_request").await;
        assert!(!msg.is_empty(), "{body}");
    }

    let malformed = gw
        .client
        .post(gw.url("/streams"))
        .header("content-type", "application/json")
        .body("{\"source_id\": ")
        .send()
        .await
        .unwrap();
    assert_error(malformed, 400, "bad_request").await;
    let not_json = gw
        .client
        .post(gw.url("/streams"))
        .body("source_id=a")
        .send()
        .await
        .unwrap();
    assert_error(not_json, 400, "bad_request").await;

    // Nothing was created by any of these.
    let list: Vec<StreamView> = gw.get("/streams").await.json().await.unwrap();
    assert!(list.is_empty());

    // A patch is validated the same way and changes nothing when refused.
    assert_eq!(
        gw.post("/streams", &dead_rtsp_stream("p")).await.status(),
        201
    );
    assert_error(
        gw.patch("/streams/p", &json!({"rtsp_inputs": []})).await,
        400,
        "bad_request",
    )
    .await;
    assert_error(
        gw.patch("/streams/p", &json!({"bogus": 1})).await,
        400,
        "bad_request",
    )
    .await;
    assert_eq!(gw.stream("p").await.inputs[0].url, "rtsp://127.0.0.1:9/x");
    gw.stop().await;
}

#[tokio::test]
async fn unknown_streams_and_routes_are_404() {
    let gw = common::start().await;
    assert_error(gw.get("/streams/nope").await, 404, "not_found").await;
    assert_error(
        gw.patch("/streams/nope", &json!({"should_record": true}))
            .await,
        404,
        "not_found",
    )
    .await;
    assert_error(gw.delete("/streams/nope").await, 404, "not_found").await;
    assert_error(gw.get("/no/such/route").await, 404, "not_found").await;
    let put = gw.client.put(gw.url("/streams")).send().await.unwrap();
    assert_error(put, 405, "method_not_allowed").await;
    gw.stop().await;
}

#[tokio::test]
async fn duplicate_id_is_409() {
    let gw = common::start().await;
    assert_eq!(
        gw.post("/streams", &dead_rtsp_stream("dup")).await.status(),
        201
    );
    assert_error(
        gw.post("/streams", &dead_rtsp_stream("dup")).await,
        409,
        "conflict",
    )
    .await;
    gw.stop().await;
}

#[tokio::test]
async fn oversized_body_is_413_with_an_error_body() {
    let gw = common::start().await;
    let body = json!({"source_id": "big", "rtsp_inputs": [{"label": "m", "url": format!("rtsp://h/{}", "x".repeat(200_000))}]});
    assert_error(gw.post("/streams", &body).await, 413, "payload_too_large").await;
    // Also on PATCH, and whatever the body looks like.
    assert_eq!(
        gw.post("/streams", &dead_rtsp_stream("small"))
            .await
            .status(),
        201
    );
    let padded = format!("{{\"should_record\": true{}}}", " ".repeat(200_000));
    let resp = gw
        .client
        .patch(gw.url("/streams/small"))
        .header("content-type", "application/json")
        .body(padded)
        .send()
        .await
        .unwrap();
    assert_error(resp, 413, "payload_too_large").await;
    gw.stop().await;
}

#[tokio::test]
async fn stream_limit_is_429() {
    let gw = common::start_with(|c| c.max_streams = 1).await;
    assert_eq!(
        gw.post("/streams", &dead_rtsp_stream("one")).await.status(),
        201
    );
    assert_error(
        gw.post("/streams", &dead_rtsp_stream("two")).await,
        429,
        "limit_reached",
    )
    .await;
    gw.stop().await;
}

#[tokio::test]
async fn admin_token_guards_management_and_stream_reads() {
    let gw = common::start_with(|c| c.admin_token = Some("s3cr3t-token".into())).await;
    let body = dead_rtsp_stream("guarded");
    let resp = gw.post("/streams", &body).await;
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    assert_error(resp, 401, "unauthorized").await;
    let wrong = gw
        .client
        .post(gw.url("/streams"))
        .bearer_auth("nope")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_error(wrong, 401, "unauthorized").await;
    // 401 comes before the body is looked at.
    let garbage = gw
        .client
        .post(gw.url("/streams"))
        .body("{")
        .send()
        .await
        .unwrap();
    assert_error(garbage, 401, "unauthorized").await;

    let ok = gw
        .client
        .post(gw.url("/streams"))
        .bearer_auth("s3cr3t-token")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 201);
    // Stream configurations are the admin's to read too.
    assert_error(gw.get("/streams").await, 401, "unauthorized").await;
    assert_error(gw.get("/streams/guarded").await, 401, "unauthorized").await;
    let read = gw
        .client
        .get(gw.url("/streams/guarded"))
        .bearer_auth("s3cr3t-token")
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    assert_eq!(gw.get("/health").await.status(), 200, "health stays open");
    assert_error(
        gw.patch("/streams/guarded", &json!({})).await,
        401,
        "unauthorized",
    )
    .await;
    assert_error(gw.delete("/streams/guarded").await, 401, "unauthorized").await;
    let del = gw
        .client
        .delete(gw.url("/streams/guarded"))
        .bearer_auth("s3cr3t-token")
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 204);
    gw.stop().await;
}

#[tokio::test]
async fn credentials_never_come_back() {
    let gw = common::start().await;
    let body = json!({
        "source_id": "cam",
        "rtsp_inputs": [{"label": "main", "url": "rtsp://user:secret@127.0.0.1:9/x", "priority": 0}]
    });
    let resp = gw.post("/streams", &body).await;
    assert_eq!(resp.status(), 201);
    let text = resp.text().await.unwrap();
    let clean = |t: &str| !t.contains("secret") && !t.contains("user:");
    assert!(clean(&text), "{text}");
    let view: StreamView = serde_json::from_str(&text).unwrap();
    assert!(view.has_credentials);
    assert_eq!(view.inputs[0].url, "rtsp://127.0.0.1:9/x");

    // Let the ingest fail against the closed port, so last_error is filled in too.
    gw.wait_for("cam", |s| s.last_error.is_some()).await;
    for path in ["/streams", "/streams/cam"] {
        let text = gw.get(path).await.text().await.unwrap();
        assert!(clean(&text), "{path}: {text}");
    }

    // Explicit fields win and never come back either; `null` password clears.
    let resp = gw
        .patch(
            "/streams/cam",
            &json!({"username": "other", "password": "hunter2"}),
        )
        .await;
    let text = resp.text().await.unwrap();
    assert!(
        !text.contains("hunter2") && !text.contains("other"),
        "{text}"
    );
    let resp = gw.patch("/streams/cam", &json!({"password": null})).await;
    let view: StreamView = resp.json().await.unwrap();
    assert!(!view.has_credentials);
    gw.stop().await;
}

#[tokio::test]
async fn streams_survive_a_restart() {
    let gw = common::start().await;
    let mut with_creds = dead_rtsp_stream("a");
    with_creds["username"] = json!("admin");
    with_creds["password"] = json!("pw");
    with_creds["should_record"] = json!(true);
    with_creds["restart_interval_secs"] = json!(15);
    assert_eq!(gw.post("/streams", &with_creds).await.status(), 201);
    let mut two_inputs = dead_rtsp_stream("b");
    two_inputs["rtsp_inputs"] = json!([
        {"label": "main", "url": "rtsp://127.0.0.1:9/main", "priority": 0},
        {"label": "sub", "url": "rtsp://127.0.0.1:9/sub", "priority": 1, "transport": "udp"}
    ]);
    assert_eq!(gw.post("/streams", &two_inputs).await.status(), 201);
    let before: Vec<StreamView> = gw.get("/streams").await.json().await.unwrap();

    let gw = gw.restart().await;
    let after: Vec<StreamView> = gw.get("/streams").await.json().await.unwrap();
    assert_eq!(after.len(), 2);
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(
            (
                &a.source_id,
                &a.inputs,
                a.has_credentials,
                a.should_record,
                a.restart_interval_secs
            ),
            (
                &b.source_id,
                &b.inputs,
                b.has_credentials,
                b.should_record,
                b.restart_interval_secs
            )
        );
    }
    assert!(after[0].has_credentials && after[0].should_record);
    assert_eq!(after[1].inputs[1].transport, api_models::TransportDto::Udp);

    // A deleted stream stays deleted.
    assert_eq!(gw.delete("/streams/a").await.status(), 204);
    let gw = gw.restart().await;
    let ids: Vec<String> = gw
        .get("/streams")
        .await
        .json::<Vec<StreamView>>()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.source_id)
        .collect();
    assert_eq!(ids, ["b"]);
    gw.stop().await;
}

#[tokio::test]
async fn demo_stream_is_registered_once() {
    let gw = common::start_with(|c| c.demo = true).await;
    let demo = gw.stream("demo").await;
    assert_eq!(
        demo.inputs[0].url,
        "testsrc://?codec=h264&width=1280&height=720&fps=25&gop=50&bitrate_kbps=1000"
    );
    assert!(demo.should_record, "a first run can rewind the demo");
    assert_eq!(demo.retention.max_age_secs, Some(3600));
    let gw = gw.restart().await;
    let list: Vec<StreamView> = gw.get("/streams").await.json().await.unwrap();
    assert_eq!(list.len(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn openapi_swagger_and_debug_page_are_served() {
    let gw = common::start().await;
    let spec: Value = gw.get("/api-docs/openapi.json").await.json().await.unwrap();
    let paths = spec["paths"].as_object().expect("paths");
    for (path, methods) in [
        ("/streams", &["get", "post"][..]),
        ("/streams/{source_id}", &["get", "patch", "delete"][..]),
        ("/health", &["get"][..]),
        ("/sessions/{session_id}/seek", &["post"][..]),
        ("/sessions/{session_id}/live", &["post"][..]),
        ("/sessions/{session_id}/speed", &["post"][..]),
        ("/sessions/{session_id}/pause", &["post"][..]),
        ("/sessions/{session_id}/play", &["post"][..]),
        ("/sessions/{session_id}/mode", &["get"][..]),
    ] {
        for m in methods {
            let op = &paths[path][*m];
            assert!(op.is_object(), "{m} {path} documented");
            let responses = op["responses"].as_object().unwrap();
            let documents_errors = responses.iter().any(|(code, r)| {
                code.starts_with(['4', '5'])
                    && r["content"]["application/json"]["schema"]["$ref"]
                        == "#/components/schemas/ErrorBody"
            });
            assert!(documents_errors, "{m} {path} documents ErrorBody responses");
        }
    }
    for schema in [
        "CreateStream",
        "PatchStream",
        "StreamView",
        "Health",
        "ErrorBody",
        "SeekRequest",
        "SpeedRequest",
        "SessionModeView",
        "OutOfRangeBody",
    ] {
        assert!(
            spec["components"]["schemas"][schema].is_object(),
            "{schema} in components"
        );
    }

    let swagger = gw.get("/swagger-ui/").await;
    assert_eq!(swagger.status(), 200);
    assert!(swagger.text().await.unwrap().contains("<html"));

    let debug = gw.get("/").await;
    assert_eq!(debug.status(), 200);
    assert!(debug.url().path().ends_with("/debug/"), "{}", debug.url());
    let html = debug.text().await.unwrap();
    assert!(html.contains("app.js"));
    let js = gw.get("/debug/app.js").await;
    assert_eq!(
        js.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_error(gw.get("/debug/nope.js").await, 404, "not_found").await;
    gw.stop().await;
}

/// A camera that never answers: the stream is `offline` with the reason, and reports no codec or size (the slate
/// viewers see is not the camera's format).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_camera_is_offline_without_a_made_up_format() {
    let gw = common::start().await;
    assert_eq!(
        gw.post("/streams", &dead_rtsp_stream("gone"))
            .await
            .status(),
        201
    );
    let v = gw
        .wait_for("gone", |v| v.state == StreamStateDto::Offline)
        .await;
    assert!(
        v.last_error
            .as_deref()
            .is_some_and(|e| e.contains("refused")),
        "{:?}",
        v.last_error
    );
    assert_eq!((v.codec, v.width, v.height), (None, None, None));
    assert_eq!(v.frames, 0);
    gw.stop().await;
}
