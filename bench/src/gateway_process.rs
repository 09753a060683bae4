//! The gateway under test as its own process, so its CPU and memory are its own: this very binary re-run as
//! `gateway-bench serve-gateway <gateway flags>`, which starts [`gateway::Gateway`] exactly as the `gateway` binary
//! does. Optionally pinned to one CPU, away from the load generator. Killed on drop, and its data directory removed
//! with it unless the caller gave one (the live-rewind scenario fills one with an hour of recording first: the
//! gateway indexes recordings it did not write at start-up).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::{json, Value};

use crate::child_process::{self, free_tcp_port};
use crate::procstat::Usage;

/// Where the gateway keeps its data.
enum DataDir {
    /// Made for this gateway and removed with it.
    Fresh(tempfile::TempDir),
    /// The caller's.
    Given(PathBuf),
}

impl DataDir {
    fn path(&self) -> &Path {
        match self {
            DataDir::Fresh(d) => d.path(),
            DataDir::Given(p) => p,
        }
    }
}

pub struct GatewayProcess {
    child: Child,
    pub base: String,
    dir: DataDir,
    http: reqwest::Client,
}

impl GatewayProcess {
    /// Starts a gateway on free loopback ports with a new data directory, adding `flags`.
    pub async fn start(flags: &[&str], pin: Option<usize>) -> anyhow::Result<GatewayProcess> {
        let dir = DataDir::Fresh(tempfile::tempdir()?);
        Self::start_on(dir, flags, pin, Duration::from_secs(30), None).await
    }

    /// [`GatewayProcess::start`] with the gateway's log (and any panic message) written to `log`.
    pub async fn start_logged(
        flags: &[&str],
        pin: Option<usize>,
        log: &Path,
    ) -> anyhow::Result<GatewayProcess> {
        let dir = DataDir::Fresh(tempfile::tempdir()?);
        let log = std::fs::File::create(log)?;
        Self::start_on(dir, flags, pin, Duration::from_secs(30), Some(log)).await
    }

    /// Starts a gateway over the caller's `data_dir`, which it leaves in place; it serves once it has indexed
    /// the recordings there (an hour of segments takes a while).
    pub async fn start_in(data_dir: &Path, pin: Option<usize>) -> anyhow::Result<GatewayProcess> {
        let dir = DataDir::Given(data_dir.to_owned());
        Self::start_on(dir, &[], pin, Duration::from_secs(120), None).await
    }

    async fn start_on(
        dir: DataDir,
        flags: &[&str],
        pin: Option<usize>,
        start_timeout: Duration,
        log: Option<std::fs::File>,
    ) -> anyhow::Result<GatewayProcess> {
        let port = free_tcp_port()?;
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.arg("serve-gateway")
            .args(["--bind", &format!("127.0.0.1:{port}")])
            .args([
                "--wsc-udp-port",
                "0",
                "--webrtc-udp-port",
                "0",
                "--max-sessions",
                "5000",
            ])
            .arg("--data-dir")
            .arg(dir.path())
            .args(flags)
            .env(
                "RUST_LOG",
                std::env::var("BENCH_GATEWAY_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(log.map_or_else(Stdio::inherit, Stdio::from));
        let child = child_process::spawn_pinned(&mut cmd, pin)?;
        let gw = GatewayProcess {
            child,
            base: format!("http://127.0.0.1:{port}"),
            dir,
            http: reqwest::Client::new(),
        };
        child_process::wait_until_serving(&gw.http, &format!("{}/health", gw.base), start_timeout)
            .await?;
        Ok(gw)
    }

    pub fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Registers a stream pulling `url` and waits until it delivers frames.
    pub async fn add_stream(&self, id: &str, url: &str, record: bool) -> anyhow::Result<()> {
        let r = self
            .http
            .post(format!("{}/streams", self.base))
            .json(&json!({
                "source_id": id,
                "rtsp_inputs": [{"label": "main", "url": url, "priority": 0}],
                "should_record": record,
            }))
            .send()
            .await?;
        if r.status() != 201 {
            bail!("creating stream {id}: {} {}", r.status(), r.text().await?);
        }
        self.wait_frames(id, 10).await
    }

    /// The stream's view (`GET /streams/{id}`).
    pub async fn stream(&self, id: &str) -> anyhow::Result<Value> {
        self.get(&format!("/streams/{id}")).await
    }

    /// `GET {path}` as JSON.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        Ok(self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await?
            .json()
            .await?)
    }

    /// Waits until viewer session `id` is gone (its mode answers 404): a closed client's session ends a moment
    /// later, and its DVR player with it.
    pub async fn wait_session_gone(&self, id: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = self
                .http
                .get(format!("{}/sessions/{id}/mode", self.base))
                .send()
                .await?;
            if r.status() == 404 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("session {id} still there after 60 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until stream `id` runs and has delivered more than `frames` frames.
    pub async fn wait_frames(&self, id: &str, frames: u64) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let v = self.stream(id).await?;
            if v["state"] == "running" && v["frames"].as_u64().unwrap_or(0) > frames {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("stream {id} never ran: {v}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Turns recording of `id` on or off.
    pub async fn set_recording(&self, id: &str, on: bool) -> anyhow::Result<()> {
        let r = self
            .http
            .patch(format!("{}/streams/{id}", self.base))
            .json(&json!({ "should_record": on }))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("PATCH {id}: {}", r.status());
        }
        Ok(())
    }

    /// Sessions the gateway counts for `id` right now.
    pub async fn viewers(&self, id: &str) -> anyhow::Result<u64> {
        Ok(self.stream(id).await?["viewers"].as_u64().unwrap_or(0))
    }

    /// Waits until `id` counts `n` viewers (sessions take a moment to end after their client left).
    pub async fn wait_viewers(&self, id: &str, n: u64) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let now = self.viewers(id).await?;
            if now == n {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("stream {id} has {now} viewers, expected {n}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// CPU share (1.0 = one core) and RSS at the end, measured over `window`.
    pub async fn measure(&self, window: Duration) -> anyhow::Result<(f64, Usage)> {
        child_process::measure(self.pid(), window).await
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `serve-gateway`: runs the gateway in this process until killed.
pub fn serve(flags: Vec<String>) -> anyhow::Result<()> {
    // As the `gateway` binary does.
    gateway::malloc::keep_large_blocks_mapped();
    tracing_subscriber::fmt()
        .with_env_filter(gateway::logging::filter())
        .with_writer(std::io::stderr)
        .init();
    let config = gateway::Config::from_args(std::iter::once("gateway".to_owned()).chain(flags))?;
    tokio::runtime::Runtime::new()?.block_on(async {
        let _gateway = gateway::Gateway::start(config).await?;
        std::future::pending::<anyhow::Result<()>>().await
    })
}
