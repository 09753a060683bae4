//! Janus (Debian package `janus`) as the reference WebRTC fan-out: its streaming plugin with one RTP mountpoint,
//! fed the camera's RTP by a GStreamer pipeline (rtspsrc → udpsink), serving viewers through its HTTP API
//! (create session, attach `janus.plugin.streaming`, `watch` → Janus' offer, `start` with our answer).
//!
//! Janus runs as its own process with a configuration written to a temporary directory: HTTP on a free loopback
//! port, only the streaming plugin and the HTTP transport loaded, ICE on loopback, no STUN.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use gst::prelude::*;
use gstreamer as gst;
use serde_json::{json, Value};
use testdata::webrtc_viewer::Viewer;

use crate::child_process::{self, free_tcp_port};
use crate::media_relay::{candidates_at, server_candidate, MediaRelay};
use crate::procstat::Usage;

const JANUS: &str = "/usr/bin/janus";

pub fn installed() -> bool {
    std::path::Path::new(JANUS).exists()
}

pub struct Janus {
    child: Child,
    api: String,
    _dir: tempfile::TempDir,
    feed: gst::Element,
    http: reqwest::Client,
}

impl Janus {
    /// Starts Janus pinned to `cpu` and feeds its mountpoint the RTP of the RTSP camera at `camera_url`.
    pub async fn start(camera_url: &str, cpu: Option<usize>) -> anyhow::Result<Janus> {
        let dir = tempfile::tempdir()?;
        let http_port = free_tcp_port()?;
        let rtp_port = free_udp_port()?;
        write_config(dir.path(), http_port, rtp_port)?;
        let mut cmd = Command::new(JANUS);
        cmd.arg("--configs-folder")
            .arg(dir.path())
            .args(["--disable-colors", "--debug-level", "2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = child_process::spawn_pinned(&mut cmd, cpu)?;
        let feed = gst::parse::launch(&format!(
            "rtspsrc location={camera_url} protocols=tcp latency=0 ! application/x-rtp,media=video \
             ! udpsink host=127.0.0.1 port={rtp_port} sync=false"
        ))?;
        feed.set_state(gst::State::Playing)?;
        let janus = Janus {
            child,
            api: format!("http://127.0.0.1:{http_port}/janus"),
            _dir: dir,
            feed,
            http: reqwest::Client::new(),
        };
        child_process::wait_until_serving(
            &janus.http,
            &format!("{}/info", janus.api),
            Duration::from_secs(20),
        )
        .await?;
        Ok(janus)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// CPU share and usage at the end of `window`.
    pub async fn measure(&self, window: Duration) -> anyhow::Result<(f64, Usage)> {
        child_process::measure(self.pid(), window).await
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let v: Value = self
            .http
            .post(format!("{}{path}", self.api))
            .json(&body)
            .send()
            .await?
            .json()
            .await?;
        if v["janus"] == "error" {
            bail!("janus: {v}");
        }
        Ok(v)
    }

    /// A viewer of the mountpoint, connected and counting packets into `packets`.
    pub async fn join(&self, packets: Arc<AtomicU64>) -> anyhow::Result<JanusViewer> {
        let tx = || format!("{:016x}", rand::random::<u64>());
        let session = self
            .post("", json!({"janus": "create", "transaction": tx()}))
            .await?;
        let sid = session["data"]["id"].as_u64().context("no session id")?;
        let handle = self
            .post(
                &format!("/{sid}"),
                json!({"janus": "attach", "plugin": "janus.plugin.streaming", "transaction": tx()}),
            )
            .await?;
        let hid = handle["data"]["id"].as_u64().context("no handle id")?;
        self.post(
            &format!("/{sid}/{hid}"),
            json!({"janus": "message", "transaction": tx(), "body": {"request": "watch", "id": 1}}),
        )
        .await?;
        let offer = self.event_with_jsep(sid).await?;
        // Janus leaves loopback out of its candidates; its host address is as local, and the viewer must be on the
        // same one for ICE to pair.
        let host = offer
            .lines()
            .find(|l| l.starts_with("a=candidate") && l.contains(" udp "))
            .and_then(|l| l.split_whitespace().nth(4))
            .context("Janus offered no UDP candidate")?
            .to_owned();
        let mut viewer = Viewer::answering(&format!("{host}:0")).await;
        // The same counting relay as the gateway's viewers (crate::media_relay).
        let host_ip: std::net::IpAddr = host.parse().context("Janus candidate address")?;
        let mut relay = MediaRelay::bind(host_ip).await?;
        let server = server_candidate(&offer, host_ip).context("Janus offered no UDP candidate")?;
        relay.start(server, packets);
        let answer = viewer
            .answer_offer(&candidates_at(&offer, relay.viewer_facing()?))
            .await?;
        let answer = candidates_at(&answer, relay.server_facing()?);
        self.post(
            &format!("/{sid}/{hid}"),
            json!({"janus": "message", "transaction": tx(), "body": {"request": "start"},
                   "jsep": {"type": "answer", "sdp": answer}}),
        )
        .await?;
        let track = viewer.track().await.map_err(|e| {
            let candidates: Vec<&str> = offer
                .lines()
                .filter(|l| l.starts_with("a=candidate"))
                .collect();
            anyhow!("{e} (Janus offered candidates {candidates:?})")
        })?;
        drop(track);
        relay.count_only();
        // Janus ends a session that sends nothing for 60 s; keep it alive while the viewer lives.
        let keepalive = {
            let (http, url) = (self.http.clone(), format!("{}/{sid}", self.api));
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(20)).await;
                    let _ = http
                        .post(&url)
                        .json(&json!({"janus": "keepalive", "transaction": "ka"}))
                        .send()
                        .await;
                }
            })
        };
        Ok(JanusViewer {
            viewer,
            relay,
            keepalive,
            session_url: format!("{}/{sid}", self.api),
        })
    }

    /// Long-polls the session's events until one carries an SDP offer.
    async fn event_with_jsep(&self, sid: u64) -> anyhow::Result<String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            let v: Value = self
                .http
                .get(format!("{}/{sid}?maxev=1", self.api))
                .send()
                .await?
                .json()
                .await?;
            if let Some(sdp) = v["jsep"]["sdp"].as_str() {
                return Ok(sdp.to_owned());
            }
        }
        Err(anyhow!("janus sent no offer within 15 s"))
    }
}

impl Drop for Janus {
    fn drop(&mut self) {
        let _ = self.feed.set_state(gst::State::Null);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct JanusViewer {
    viewer: Viewer,
    relay: MediaRelay,
    keepalive: tokio::task::JoinHandle<()>,
    session_url: String,
}

impl JanusViewer {
    pub async fn leave(self, http: &reqwest::Client) {
        drop(self.relay);
        self.keepalive.abort();
        let _ = http
            .post(&self.session_url)
            .json(&json!({"janus": "destroy", "transaction": "bye"}))
            .send()
            .await;
        let _ = self.viewer.pc.close().await;
    }
}

fn write_config(dir: &std::path::Path, http_port: u16, rtp_port: u16) -> std::io::Result<()> {
    std::fs::write(
        dir.join("janus.jcfg"),
        format!(
            r#"general: {{
    configs_folder = "{dir}"
    plugins_folder = "/usr/lib/x86_64-linux-gnu/janus/plugins"
    transports_folder = "/usr/lib/x86_64-linux-gnu/janus/transports"
    events_folder = "/usr/lib/x86_64-linux-gnu/janus/events"
    loggers_folder = "/usr/lib/x86_64-linux-gnu/janus/loggers"
    debug_level = 2
    admin_secret = "unused"
}}
media: {{
    rtp_port_range = "20000-40000"
}}
nat: {{
    nice_debug = false
    ice_lite = false
    ice_tcp = false
    full_trickle = false
    ignore_mdns = true
}}
plugins: {{
    disable = "libjanus_audiobridge.so,libjanus_echotest.so,libjanus_recordplay.so,libjanus_sip.so,libjanus_nosip.so,libjanus_textroom.so,libjanus_videocall.so,libjanus_videoroom.so,libjanus_voicemail.so,libjanus_lua.so,libjanus_duktape.so"
}}
transports: {{
    disable = "libjanus_websockets.so,libjanus_pfunix.so,libjanus_mqtt.so,libjanus_nanomsg.so,libjanus_rabbitmq.so"
}}
events: {{
    broadcast = false
}}
"#,
            dir = dir.display()
        ),
    )?;
    std::fs::write(
        dir.join("janus.transport.http.jcfg"),
        format!(
            r#"general: {{
    json = "indented"
    base_path = "/janus"
    http = true
    port = {http_port}
    ip = "127.0.0.1"
    https = false
}}
admin: {{
    admin_http = false
}}
"#
        ),
    )?;
    std::fs::write(
        dir.join("janus.plugin.streaming.jcfg"),
        format!(
            r#"general: {{
}}
bench: {{
    type = "rtp"
    id = 1
    description = "gateway-bench camera"
    media = (
        {{
            type = "video"
            mid = "v"
            port = {rtp_port}
            pt = 96
            codec = "h264"
            fmtp = "profile-level-id=42e01f;packetization-mode=1"
        }}
    )
}}
"#
        ),
    )
}

fn free_udp_port() -> std::io::Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
