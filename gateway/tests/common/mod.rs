//! Test helper shared by the gateway's integration tests: starts a real gateway in-process on `127.0.0.1:0` with
//! a fresh temporary data directory, and talks to it over real HTTP with reqwest.
//!
//! ```ignore
//! mod common;
//! let gw = common::start().await;
//! let resp = gw.post("/streams", &common::testsrc_stream("cam", 320, 240)).await;
//! let view = gw.wait_for("cam", |s| s.width == Some(320)).await;
//! let dir = gw.stop().await; // the data directory outlives the gateway; `start_in(dir)` brings it back
//! ```

#![allow(dead_code)] // Each test file uses a different part of this module.

pub mod browser;
pub mod recording;
pub mod small_disk;
pub mod web_page;
pub mod wsc;

use std::time::{Duration, Instant};

use api_models::StreamView;
use gateway::{Config, Gateway};
use serde_json::{json, Value};
use tempfile::TempDir;

/// How long [`TestGateway::wait_for`] waits by default: GStreamer start-up plus the first keyframe.
pub const WAIT: Duration = Duration::from_secs(15);

/// A gateway serving on loopback, with its data directory.
pub struct TestGateway {
    gateway: Gateway,
    data_dir: TempDir,
    config: Config,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub client: reqwest::Client,
}

/// Starts a gateway with default settings and a new data directory.
pub async fn start() -> TestGateway {
    start_with(|_| {}).await
}

/// Starts a gateway with a new data directory after letting `tweak` change the configuration.
pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestGateway {
    let dir = tempfile::tempdir().expect("temp dir");
    start_in(dir, tweak).await
}

/// Starts a gateway on an existing data directory (for example one returned by [`TestGateway::stop`]).
pub async fn start_in(data_dir: TempDir, tweak: impl FnOnce(&mut Config)) -> TestGateway {
    init_logging();
    let mut config = Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.path().to_owned(),
        wsc_udp_port: 0,
        webrtc: gateway::config::WebRtcConfig {
            udp_port: 0,
            ..Default::default()
        },
        ..Config::default()
    };
    tweak(&mut config);
    let gateway = Gateway::start(config.clone())
        .await
        .expect("gateway starts");
    let base = format!("http://{}", gateway.local_addr());
    TestGateway {
        gateway,
        data_dir,
        config,
        base,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap(),
    }
}

/// Logs to the test's captured output when `RUST_LOG` is set.
fn init_logging() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// A `POST /streams` body with one test-pattern input of the given size.
pub fn testsrc_stream(id: &str, width: u32, height: u32) -> Value {
    json!({
        "source_id": id,
        "rtsp_inputs": [{
            "label": "pattern",
            "url": format!("testsrc://?width={width}&height={height}&fps=25&gop=25"),
            "priority": 0
        }]
    })
}

/// A `POST /streams` body with one RTSP input that nothing answers (port 9, discard): cheap, never runs.
pub fn dead_rtsp_stream(id: &str) -> Value {
    json!({
        "source_id": id,
        "rtsp_inputs": [{ "label": "main", "url": "rtsp://127.0.0.1:9/x", "priority": 0 }]
    })
}

impl TestGateway {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("GET")
    }

    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("POST")
    }

    pub async fn patch(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .patch(self.url(path))
            .json(body)
            .send()
            .await
            .expect("PATCH")
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.client
            .delete(self.url(path))
            .send()
            .await
            .expect("DELETE")
    }

    /// `GET /streams/{id}`, which must succeed.
    pub async fn stream(&self, id: &str) -> StreamView {
        let resp = self.get(&format!("/streams/{id}")).await;
        assert_eq!(resp.status(), 200, "GET /streams/{id}");
        resp.json().await.expect("StreamView")
    }

    /// Polls `GET /streams/{id}` until `pred` holds; panics with the last view after [`WAIT`].
    pub async fn wait_for(&self, id: &str, pred: impl Fn(&StreamView) -> bool) -> StreamView {
        let deadline = Instant::now() + WAIT;
        loop {
            let view = self.stream(id).await;
            if pred(&view) {
                return view;
            }
            if Instant::now() > deadline {
                panic!("stream {id} did not reach the expected state in {WAIT:?}; last view: {view:#?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the gateway (ingests stopped, hubs closed) and hands back its data directory.
    pub async fn stop(self) -> TempDir {
        self.gateway.shutdown().await.expect("clean shutdown");
        self.data_dir
    }

    /// Stops the gateway and starts a new one on the same data directory and configuration (new port).
    pub async fn restart(self) -> TestGateway {
        let mut config = self.config.clone();
        config.bind = "127.0.0.1:0".parse().unwrap();
        let dir = self.stop().await;
        start_in(dir, move |c| {
            *c = Config {
                data_dir: c.data_dir.clone(),
                ..config
            }
        })
        .await
    }
}

/// Asserts an error reply: status and `ErrorBody.error` code; returns the message.
pub async fn assert_error(resp: reqwest::Response, status: u16, code: &str) -> String {
    assert_eq!(resp.status().as_u16(), status, "status");
    let ct = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(
        ct.starts_with("application/json"),
        "error content type {ct:?}"
    );
    let body: api_models::ErrorBody = resp.json().await.expect("ErrorBody");
    assert_eq!(body.error, code, "error code; message: {}", body.message);
    body.message
}

/// A gateway (WSC-RTP on a free UDP port) pulling a fresh RTSP fixture as stream `cam`, returned once the stream
/// runs and its hub holds a GOP.
pub async fn gateway_with_camera(
    opts: testdata::FixtureOptions,
) -> (testdata::RtspFixture, Gateway, TempDir) {
    gateway_with_camera_and(opts, |_| {}).await
}

/// [`gateway_with_camera`] with a configuration changed by `tweak`.
pub async fn gateway_with_camera_and(
    opts: testdata::FixtureOptions,
    tweak: impl FnOnce(&mut Config),
) -> (testdata::RtspFixture, Gateway, TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let fixture = testdata::RtspFixture::start(opts).expect("RTSP fixture");
    let mut config = Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        wsc_udp_port: 0,
        webrtc: gateway::config::WebRtcConfig {
            udp_port: 0,
            ..Default::default()
        },
        ..Config::default()
    };
    tweak(&mut config);
    let gw = Gateway::start(config).await.expect("gateway starts");
    create_camera(&gw.base_url(), &fixture.url(), false).await;
    stream_until(&gw, "cam", |v| {
        v["state"] == "running" && v["frames"].as_u64().unwrap_or(0) > 5
    })
    .await;
    (fixture, gw, dir)
}

/// Waits (20 s at most) until the view of stream `id` satisfies `pred`, and returns it.
pub async fn stream_until(gw: &Gateway, id: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v: Value = reqwest::get(format!("{}/streams/{id}", gw.base_url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if pred(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "stream {id} never got there: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Registers stream `cam` pulling `url` (recorded or not) and checks it was created.
pub async fn create_camera(base: &str, url: &str, record: bool) {
    let r = reqwest::Client::new()
        .post(format!("{base}/streams"))
        .json(&json!({"source_id": "cam", "should_record": record,
            "rtsp_inputs": [{"label": "main", "url": url, "priority": 0}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}
