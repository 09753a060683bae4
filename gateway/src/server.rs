//! Running the gateway: bind the listener, open the store, restore the streams, register the demo stream, serve
//! HTTP; and the reverse on shutdown (stop taking requests, stop every ingest, close every hub).

use std::future::{Future, IntoFuture};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use api_models::{CreateStream, InputDto, RetentionDto, TransportDto};
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::access::Access;
use crate::playback::Playback;
use crate::registry::{RegistryError, RegistryOptions, StreamRegistry};
use crate::retention::RetentionTrigger;
use crate::session_control::SessionControls;
use crate::store::Store;
use crate::tls::TlsListener;
use crate::viewers::ViewerBudget;
use crate::webrtc::WebRtcService;
use crate::wsc::WscService;
use crate::{app, AppState, Config};
use dvr::segmenter::SegmenterOptions;

/// Id of the stream `--demo` registers.
pub const DEMO_SOURCE_ID: &str = "demo";
/// Input of the demo stream: the built-in test pattern.
pub const DEMO_URL: &str = "testsrc://?width=1280&height=720&fps=25&gop=50";
/// How long the demo stream's recording is kept.
pub const DEMO_RETENTION_SECS: u64 = 3600;
/// How long shutdown lets open HTTP connections finish.
const HTTP_DRAIN: Duration = Duration::from_secs(5);

/// A running gateway.
pub struct Gateway {
    local_addr: SocketAddr,
    registry: Arc<StreamRegistry>,
    wsc: Arc<WscService>,
    webrtc: Arc<WebRtcService>,
    viewers: Arc<ViewerBudget>,
    exports: Arc<crate::exports::Exports>,
    stop_http: CancellationToken,
    stop_retention: CancellationToken,
    http: JoinHandle<std::io::Result<()>>,
    /// Serving HTTPS/WSS.
    tls: bool,
    /// What the operator should fix (auth off beyond loopback), as `/health` says it.
    warnings: Vec<String>,
}

impl Gateway {
    /// Binds `config.bind` (port 0 picks a free one), opens `<data_dir>/gateway.db`, restores the stored streams,
    /// registers the demo stream when `config.demo` asks for it, and starts serving.
    pub async fn start(config: Config) -> anyhow::Result<Gateway> {
        config.check()?;
        let listener = TcpListener::bind(config.bind)
            .await
            .with_context(|| format!("binding {}", config.bind))?;
        let local_addr = listener.local_addr()?;
        let wsc_bind = SocketAddr::new(config.bind.ip(), config.wsc_udp_port);
        let viewers = ViewerBudget::new(config.max_sessions);
        let (access, tls) = {
            let (token, dir, tls) = (
                config.admin_token.clone(),
                config.data_dir.clone(),
                config.tls.clone(),
            );
            tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                crate::access::private_files(&dir)?;
                let access = Access::load(token.as_deref(), &dir)?;
                let tls = tls.as_ref().map(crate::tls::server_config).transpose()?;
                Ok((access, tls))
            })
            .await??
        };
        let store = Store::open(&config.data_dir).await?;
        let playback = Playback::new(store.clone(), viewers.clone(), config.mtu);
        let controls = Arc::new(SessionControls::default());
        let wsc = WscService::start(
            wsc_bind,
            config.wsc_forwarders,
            viewers.clone(),
            playback.clone(),
            controls.clone(),
        )
        .await
        .with_context(|| format!("binding WSC-RTP UDP {wsc_bind}"))?;
        let webrtc = WebRtcService::start(
            config.webrtc.clone(),
            viewers.clone(),
            playback.clone(),
            controls.clone(),
        )
        .with_context(|| format!("binding the WebRTC UDP port {}", config.webrtc.udp_port))?;
        let retention_trigger = RetentionTrigger::default();
        let recordings_dir = config.data_dir.join("recordings");
        let exports = Arc::new(crate::exports::Exports::new(
            config.data_dir.join("exports"),
            config.max_exports,
        ));
        let healed = crate::catalog::heal(&store, &recordings_dir, exports.dir())
            .await
            .context("healing the recordings catalog")?;
        if healed != Default::default() {
            info!(?healed, "recordings catalog healed");
        }
        let registry = Arc::new(StreamRegistry::new(
            store,
            RegistryOptions {
                max_streams: config.max_streams,
                watchdog: Duration::from_secs(config.watchdog_secs),
                mtu: config.mtu,
                gop_cache: config.gop_cache,
                recordings_dir: recordings_dir.clone(),
                exports_dir: exports.dir().to_owned(),
                retention: retention_trigger.clone(),
                segmenter: SegmenterOptions {
                    segment_ms: config.segment_secs as i64 * 1000,
                    ..SegmenterOptions::default()
                },
            },
        ));
        let restored = registry.restore().await.context("restoring streams")?;
        let stop_retention = CancellationToken::new();
        tokio::spawn(crate::retention::run(
            registry.store().clone(),
            registry.clone(),
            crate::purge::Dirs {
                recordings: recordings_dir,
                exports: exports.dir().to_owned(),
            },
            config.record_min_free_mb.saturating_mul(1 << 20),
            retention_trigger,
            stop_retention.clone(),
        ));
        if config.demo {
            ensure_demo(&registry).await?;
        }
        info!(
            %local_addr,
            data_dir = %config.data_dir.display(),
            restored,
            auth = access.enabled(),
            tls = tls.is_some(),
            "gateway serving"
        );
        let warnings = access.warnings(config.bind);
        for warning in &warnings {
            warn!("SECURITY: {warning}");
        }
        let state = AppState {
            registry: registry.clone(),
            config: Arc::new(config),
            wsc: wsc.clone(),
            webrtc: webrtc.clone(),
            viewers: viewers.clone(),
            playback,
            controls,
            access: Arc::new(access),
            exports: exports.clone(),
        };
        let stop_http = CancellationToken::new();
        let stopped = stop_http.clone().cancelled_owned();
        let serving_tls = tls.is_some();
        let http = match tls {
            None => tokio::spawn(
                axum::serve(
                    listener.tap_io(|s| crate::tcp_tuning::tune_accepted(s)),
                    app(state),
                )
                .with_graceful_shutdown(stopped)
                .into_future(),
            ),
            Some(tls) => tokio::spawn(
                axum::serve(TlsListener::new(listener, tls)?, app(state))
                    .with_graceful_shutdown(stopped)
                    .into_future(),
            ),
        };
        Ok(Gateway {
            local_addr,
            registry,
            wsc,
            webrtc,
            viewers,
            exports,
            stop_http,
            stop_retention,
            http,
            tls: serving_tls,
            warnings,
        })
    }

    /// What the operator should fix, e.g. no admin token while listening beyond loopback (also in `/health`).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The address the HTTP server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://host:port` (`https://` with TLS) for a browser on this machine (a wildcard bind becomes loopback).
    pub fn base_url(&self) -> String {
        let ip = match self.local_addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", SocketAddr::new(ip, self.local_addr.port()))
    }

    /// WSC-RTP sessions and their UDP socket.
    pub fn wsc(&self) -> &Arc<WscService> {
        &self.wsc
    }

    /// WebRTC sessions.
    pub fn webrtc(&self) -> &Arc<WebRtcService> {
        &self.webrtc
    }

    /// Viewer sessions of every kind.
    pub fn viewers(&self) -> &Arc<ViewerBudget> {
        &self.viewers
    }

    /// Recording exports: the cache and the limit on builds at once.
    pub fn exports(&self) -> &Arc<crate::exports::Exports> {
        &self.exports
    }

    /// The stream registry (for consumers wired in-process).
    pub fn registry(&self) -> &Arc<StreamRegistry> {
        &self.registry
    }

    /// Stops taking requests (open ones get a few seconds), then stops every ingest and closes every hub.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let Gateway {
            registry,
            webrtc,
            viewers,
            stop_http,
            stop_retention,
            mut http,
            ..
        } = self;
        stop_retention.cancel();
        viewers.begin_shutdown();
        stop_http.cancel();
        webrtc.close_all().await;
        match tokio::time::timeout(HTTP_DRAIN, &mut http).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => warn!(error = %e, "HTTP server ended with an error"),
            Ok(Err(e)) => warn!(error = %e, "HTTP server task failed"),
            Err(_) => {
                warn!(
                    "HTTP connections still open after {} s; closing them",
                    HTTP_DRAIN.as_secs()
                );
                http.abort();
            }
        }
        registry.shutdown().await;
        info!("gateway stopped");
        Ok(())
    }
}

/// Starts a gateway, serves until `shutdown` completes, then stops it cleanly.
pub async fn serve(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let gateway = Gateway::start(config).await?;
    shutdown.await;
    info!("shutting down");
    gateway.shutdown().await
}

/// Registers the test-pattern stream `demo` unless a stream with that id exists.
async fn ensure_demo(registry: &Arc<StreamRegistry>) -> anyhow::Result<()> {
    if registry.get(DEMO_SOURCE_ID).is_ok() {
        return Ok(());
    }
    let req = CreateStream {
        source_id: DEMO_SOURCE_ID.to_owned(),
        rtsp_inputs: vec![InputDto {
            label: "testsrc".to_owned(),
            url: DEMO_URL.to_owned(),
            priority: 0,
            transport: TransportDto::Tcp,
        }],
        username: None,
        password: None,
        // Recorded with an hour's retention, so a first run can rewind.
        should_record: true,
        restart_interval_secs: None,
        retention: Some(RetentionDto {
            max_age_secs: Some(DEMO_RETENTION_SECS),
            max_bytes: None,
        }),
    };
    match registry.create(req).await {
        Ok(_) | Err(RegistryError::Exists(_)) => Ok(()),
        Err(e) => Err(anyhow::Error::new(e).context("registering the demo stream")),
    }
}
