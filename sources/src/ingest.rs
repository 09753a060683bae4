//! A stream's ingest task: opens the best input, delivers its frames to the sink, fails over, reconnects forever
//! with back-off, watches for silence, falls back from UDP to TCP, and shows the slate while nothing delivers.
//!
//! All decisions about which input and when live in the sans-IO [`FailoverPlanner`]; time mapping lives in
//! [`Timeline`]. This file is the I/O edge: sockets (via retina), GStreamer threads, timers.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use futures::FutureExt;
use rand::Rng;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::failover::{FailoverPlanner, FailoverPolicy};
use crate::frame::{Codec, Frame, ParameterSets};
use crate::gst_encoder::GstInputError;
use crate::input::{Credentials, InputSpec, InputUrl, Transport};
use crate::rtsp::{RtspError, RtspSession};
use crate::session::RawFrame;
use crate::slate::{make_slate, Slate, SLATE_FPS};
use crate::testpattern::TestPatternSession;
use crate::timeline::Timeline;
use crate::{FrameSink, IngestState, IngestStatus};

/// How long DESCRIBE/SETUP/PLAY may take before the attempt counts as failed.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Configuration of one stream's ingest.
#[derive(Clone, Debug)]
pub struct IngestOptions {
    pub inputs: Vec<InputSpec>,
    pub credentials: Option<Credentials>,
    /// Reconnect when an open input delivers no frame for this long.
    pub watchdog: Duration,
    /// While a lower-priority input runs, how often the better ones are probed.
    pub retry_primary_after: Duration,
    /// An input set to UDP that delivers nothing for this long is reopened over TCP.
    pub udp_fallback_after: Duration,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            inputs: Vec::new(),
            credentials: None,
            watchdog: Duration::from_secs(10),
            retry_primary_after: Duration::from_secs(60),
            udp_fallback_after: Duration::from_secs(5),
        }
    }
}

/// Why an input session failed; shown as the stream's `last_error` (never with credentials).
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Rtsp(#[from] RtspError),
    #[error("test pattern: {0}")]
    TestPattern(#[from] GstInputError),
    #[error("no answer within {} s", OPEN_TIMEOUT.as_secs())]
    OpenTimeout,
    #[error("no frame for {} s (watchdog)", .0.as_secs())]
    Watchdog(Duration),
    #[error("no RTP over UDP within {} s; switching to TCP", .0.as_secs())]
    UdpSilent(Duration),
}

impl IngestError {
    /// Failures that retrying will not fix without a change of configuration (wrong credentials, wrong path, no
    /// usable video). Still retried with back-off, since the camera may be reconfigured, but shown as `error`.
    pub fn is_configuration_error(&self) -> bool {
        match self {
            IngestError::Rtsp(RtspError::NoVideo(_)) => true,
            IngestError::Rtsp(RtspError::Retina { status, .. }) => {
                matches!(status, Some(401 | 403 | 404))
            }
            _ => false,
        }
    }
}

/// The running ingest of one stream. Dropping it stops the task; [`IngestHandle::stop`] also waits for it.
pub struct IngestHandle {
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl IngestHandle {
    /// Starts the ingest on the current tokio runtime. `opts.inputs` must not be empty.
    pub fn spawn(stream_id: String, opts: IngestOptions, sink: Arc<dyn FrameSink>) -> IngestHandle {
        let cancel = CancellationToken::new();
        let ingest = Ingest::new(stream_id, opts, sink, cancel.clone());
        IngestHandle {
            cancel,
            task: Some(tokio::spawn(ingest.run())),
        }
    }

    /// Stops the ingest and waits until its inputs are closed.
    pub async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for IngestHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// An open input.
enum Session {
    Rtsp(RtspSession),
    TestPattern(TestPatternSession),
}

impl Session {
    async fn next(&mut self) -> Result<RawFrame, IngestError> {
        match self {
            Session::Rtsp(s) => Ok(s.next().await?),
            Session::TestPattern(s) => Ok(s.next().await?),
        }
    }
}

/// Opens an input and waits for its first keyframe (earlier frames can't be decoded by anyone).
async fn open_until_keyframe(
    url: InputUrl,
    creds: Option<Credentials>,
    first_frame_within: Duration,
) -> Result<(Session, RawFrame), IngestError> {
    let mut session = match &url {
        InputUrl::Rtsp { url, transport } => {
            let open = RtspSession::open(url, *transport, creds.as_ref());
            Session::Rtsp(
                tokio::time::timeout(OPEN_TIMEOUT, open)
                    .await
                    .map_err(|_| IngestError::OpenTimeout)??,
            )
        }
        InputUrl::TestPattern(o) => Session::TestPattern(TestPatternSession::start(o)?),
    };
    let udp = matches!(
        url,
        InputUrl::Rtsp {
            transport: Transport::Udp,
            ..
        }
    );
    let deadline = tokio::time::Instant::now() + first_frame_within;
    loop {
        match tokio::time::timeout_at(deadline, session.next()).await {
            Ok(Ok(f)) if f.is_keyframe => return Ok((session, f)),
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => return Err(e),
            Err(_) if udp => return Err(IngestError::UdpSilent(first_frame_within)),
            Err(_) => return Err(IngestError::Watchdog(first_frame_within)),
        }
    }
}

/// Host and port of an RTSP input, for the cheap reachability check (none for the test pattern).
fn port_of(url: &InputUrl) -> Option<(String, u16)> {
    let InputUrl::Rtsp { url, .. } = url else {
        return None;
    };
    let default = if url.scheme() == "rtsps" { 322 } else { 554 };
    Some((url.host_str()?.to_owned(), url.port().unwrap_or(default)))
}

/// How long a port check may take; a camera that doesn't complete a TCP handshake in this time counts as away.
const PORT_CHECK_TIMEOUT: Duration = Duration::from_millis(500);

/// True when a TCP connection to `addr` opens (and is closed at once): the camera's RTSP port is listening.
async fn port_answers((host, port): (String, u16)) -> bool {
    let connect = tokio::net::TcpStream::connect((host.as_str(), port));
    matches!(
        tokio::time::timeout(PORT_CHECK_TIMEOUT, connect).await,
        Ok(Ok(_))
    )
}

fn wall_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

struct Ingest {
    stream_id: String,
    opts: IngestOptions,
    sink: Arc<dyn FrameSink>,
    cancel: CancellationToken,
    planner: FailoverPlanner,
    /// Inputs whose UDP delivered nothing: reopened over TCP from then on.
    force_tcp: Vec<bool>,
    timeline: Timeline,
    status: IngestStatus,
    last_params: Option<Arc<ParameterSets>>,
    /// Size and codec of the camera's last picture, for the slate.
    camera_format: Option<(Codec, u32, u32)>,
    slate: Option<Slate>,
    slate_showing: bool,
    slate_index: usize,
    ever_connected: bool,
}

type Probe = Pin<
    Box<dyn std::future::Future<Output = (usize, Result<(Session, RawFrame), IngestError>)> + Send>,
>;

impl Ingest {
    fn new(
        stream_id: String,
        opts: IngestOptions,
        sink: Arc<dyn FrameSink>,
        cancel: CancellationToken,
    ) -> Self {
        let priorities: Vec<i32> = opts.inputs.iter().map(|i| i.priority).collect();
        let checkable: Vec<bool> = opts
            .inputs
            .iter()
            .map(|i| port_of(&i.url).is_some())
            .collect();
        let policy = FailoverPolicy {
            retry_primary_after: opts.retry_primary_after,
            ..Default::default()
        };
        Ingest {
            force_tcp: vec![false; opts.inputs.len()],
            planner: FailoverPlanner::new(&priorities, policy).with_port_checks(&checkable),
            stream_id,
            opts,
            sink,
            cancel,
            timeline: Timeline::default(),
            status: IngestStatus::default(),
            last_params: None,
            camera_format: None,
            slate: None,
            slate_showing: false,
            slate_index: 0,
            ever_connected: false,
        }
    }

    fn set_status(&mut self, state: IngestState, active: Option<String>, error: Option<String>) {
        let next = IngestStatus {
            state,
            active_input: active,
            last_error: error.or_else(|| self.status.last_error.clone()),
            reconnects: self.status.reconnects,
        };
        if next != self.status {
            self.status = next;
            self.sink.status_changed(&self.status);
        }
    }

    fn input_url(&self, i: usize) -> InputUrl {
        match &self.opts.inputs[i].url {
            InputUrl::Rtsp { url, .. } if self.force_tcp[i] => InputUrl::Rtsp {
                url: url.clone(),
                transport: Transport::Tcp,
            },
            other => other.clone(),
        }
    }

    fn open(&self, i: usize) -> BoxFuture<'static, Result<(Session, RawFrame), IngestError>> {
        let url = self.input_url(i);
        let wait = match url {
            InputUrl::Rtsp {
                transport: Transport::Udp,
                ..
            } => self.opts.udp_fallback_after,
            _ => self.opts.watchdog,
        };
        open_until_keyframe(url, self.opts.credentials.clone(), wait).boxed()
    }

    async fn run(mut self) {
        if self.opts.inputs.is_empty() {
            self.set_status(
                IngestState::Error,
                None,
                Some("stream has no inputs".into()),
            );
            return;
        }
        loop {
            let Some(i) = self.wait_for_attempt().await else {
                return;
            };
            let label = self.opts.inputs[i].label.clone();
            debug!(stream = %self.stream_id, input = %label, url = %self.input_url(i), "opening input");
            let open = self.open(i);
            let opened = tokio::select! {
                r = open => r,
                () = self.slate_until_cancelled() => return,
            };
            match opened {
                Ok((session, first)) => {
                    if !self.play(i, session, first).await {
                        return;
                    }
                }
                Err(e) => self.input_failed(i, e).await,
            }
        }
    }

    /// Waits (showing the slate) until the planner wants an input opened, checking waiting inputs' ports
    /// meanwhile so a camera that comes back is noticed before its back-off ends. `None` if cancelled.
    async fn wait_for_attempt(&mut self) -> Option<usize> {
        loop {
            let now = Instant::now();
            let attempt = self.planner.next_attempt(now);
            if attempt.at <= now {
                return Some(attempt.input);
            }
            let check = self
                .planner
                .next_port_check(now)
                .filter(|&(_, at)| at < attempt.at);
            let Some((i, at)) = check else {
                if !self.wait_showing_slate(attempt.at).await {
                    return None;
                }
                continue;
            };
            if !self.wait_showing_slate(at).await {
                return None;
            }
            let Some(addr) = port_of(&self.opts.inputs[i].url) else {
                continue;
            };
            let open = tokio::select! {
                open = port_answers(addr) => open,
                () = self.slate_until_cancelled() => return None,
            };
            if self.planner.on_port_check(i, Instant::now(), open) {
                let label = &self.opts.inputs[i].label;
                debug!(stream = %self.stream_id, input = %label, "port answers again; reconnecting now");
            }
        }
    }

    /// Records a failed input and switches to the slate. UDP silence retries at once over TCP.
    async fn input_failed(&mut self, i: usize, e: IngestError) {
        let label = &self.opts.inputs[i].label;
        warn!(stream = %self.stream_id, input = %label, error = %e, "input failed");
        let udp_refused = matches!(&e, IngestError::Rtsp(r) if r.is_unsupported_transport());
        if matches!(e, IngestError::UdpSilent(_)) || (udp_refused && !self.force_tcp[i]) {
            // Retried at once over TCP, without back-off: the camera is there, only the transport failed.
            self.force_tcp[i] = true;
        } else {
            let jitter = rand::thread_rng().gen_range(-1.0..=1.0);
            self.planner.on_failed(i, Instant::now(), jitter);
        }
        let state = if e.is_configuration_error() {
            IngestState::Error
        } else if self.planner.all_failing() {
            IngestState::Offline
        } else {
            IngestState::Reconnecting
        };
        self.set_status(state, None, Some(e.to_string()));
        self.start_slate().await;
    }

    /// Runs an opened input until it fails (returns true) or the ingest is cancelled (returns false).
    async fn play(&mut self, mut i: usize, mut session: Session, first: RawFrame) -> bool {
        self.take_over(i, first);
        let mut probe: Option<Probe> = None;
        loop {
            if probe.is_none() {
                if let Some(better) = self.planner.probe_due(Instant::now()) {
                    debug!(stream = %self.stream_id, input = %self.opts.inputs[better].label, "probing better input");
                    let open = self.open(better);
                    probe = Some(Box::pin(async move { (better, open.await) }));
                }
            }
            let probe_at = self
                .planner
                .next_probe_at()
                .map(tokio::time::Instant::from_std);
            let next = tokio::time::timeout(self.opts.watchdog, session.next());
            tokio::select! {
                () = self.cancel.cancelled() => return false,
                r = next => match r {
                    Ok(Ok(frame)) => self.deliver(frame),
                    Ok(Err(e)) => { self.input_failed(i, e).await; return true; }
                    Err(_) => { self.input_failed(i, IngestError::Watchdog(self.opts.watchdog)).await; return true; }
                },
                (better, r) = async { probe.as_mut().expect("guarded").await }, if probe.is_some() => {
                    probe = None;
                    match r {
                        Ok((s, first)) => {
                            session = s;
                            i = better;
                            self.take_over(i, first);
                        }
                        Err(e) => {
                            debug!(stream = %self.stream_id, error = %e, "probe failed");
                            let jitter = rand::thread_rng().gen_range(-1.0..=1.0);
                            self.planner.on_probe_failed(better, Instant::now(), jitter);
                        }
                    }
                },
                () = async { tokio::time::sleep_until(probe_at.expect("guarded")).await }, if probe.is_none() && probe_at.is_some() => {}
            }
        }
    }

    /// Input `i` delivered its first keyframe (a fresh open, or a probe of a better input while another played):
    /// it becomes the active input, on a new time base, and the keyframe goes out.
    fn take_over(&mut self, i: usize, first: RawFrame) {
        self.planner.on_connected(i, Instant::now());
        if self.ever_connected {
            self.status.reconnects += 1;
        }
        self.ever_connected = true;
        self.slate_showing = false;
        self.timeline.discontinuity();
        let label = self.opts.inputs[i].label.clone();
        info!(stream = %self.stream_id, input = %label, "input delivering");
        self.set_status(IngestState::Running, Some(label), None);
        self.deliver(first);
    }

    /// Maps a frame onto the stream timeline and hands it over, announcing parameter changes first.
    fn deliver(&mut self, raw: RawFrame) {
        if self.last_params.as_deref() != Some(&*raw.params) {
            if !raw.is_keyframe {
                // Nobody can decode a picture whose new parameters arrived without a keyframe; wait for one.
                return;
            }
            self.last_params = Some(raw.params.clone());
            self.sink.parameters_changed(raw.params.clone());
        }
        let p = &raw.params;
        self.camera_format = Some((p.codec, p.width, p.height));
        let starts_run = self.timeline.starts_run();
        let (pts_90k, wall_ms) = self
            .timeline
            .map(raw.media_90k, Instant::now(), wall_now_ms());
        self.sink.push_frame(Frame {
            codec: raw.params.codec,
            data: raw.data,
            pts_90k,
            wall_ms,
            is_keyframe: raw.is_keyframe,
            params: raw.params,
            is_slate: false,
            starts_run,
        });
    }

    /// Prepares the slate at the camera's format (encoded once per format) and starts showing it.
    async fn start_slate(&mut self) {
        let (codec, w, h) = self.camera_format.unwrap_or((Codec::H264, 640, 360));
        let fits = self
            .slate
            .as_ref()
            .is_some_and(|s| (s.params.codec, s.params.width, s.params.height) == (codec, w, h));
        if !fits {
            match tokio::task::spawn_blocking(move || make_slate(codec, w, h)).await {
                Ok(Ok(s)) => self.slate = Some(s),
                Ok(Err(e)) => {
                    warn!(stream = %self.stream_id, error = %e, "cannot make offline slate")
                }
                Err(e) => warn!(stream = %self.stream_id, error = %e, "slate task failed"),
            }
        }
        self.slate_showing = self.slate.is_some();
        self.timeline.discontinuity();
    }

    fn push_slate_picture(&mut self) {
        let Some(slate) = &self.slate else { return };
        if self.last_params.as_ref() != Some(&slate.params) {
            self.last_params = Some(slate.params.clone());
            self.sink.parameters_changed(slate.params.clone());
        }
        let data = slate.pictures[self.slate_index % slate.pictures.len()].clone();
        let params = slate.params.clone();
        self.slate_index += 1;
        // Each slate picture is its own discontinuity: its time is "now" on the stream timeline.
        self.timeline.discontinuity();
        let (pts_90k, wall_ms) = self.timeline.map(0, Instant::now(), wall_now_ms());
        self.sink.push_frame(Frame {
            codec: params.codec,
            data,
            pts_90k,
            wall_ms,
            is_keyframe: true,
            params,
            is_slate: true,
            starts_run: true,
        });
    }

    /// Emits slate pictures (if showing) until `at`. Returns false if cancelled.
    async fn wait_showing_slate(&mut self, at: Instant) -> bool {
        let at = tokio::time::Instant::from_std(at);
        let cancel = self.cancel.clone();
        tokio::select! {
            () = cancel.cancelled() => false,
            () = tokio::time::sleep_until(at) => true,
            () = self.slate_forever() => true,
        }
    }

    /// Emits slate pictures (if showing) until cancelled.
    async fn slate_until_cancelled(&mut self) {
        let cancel = self.cancel.clone();
        tokio::select! {
            () = cancel.cancelled() => {}
            () = self.slate_forever() => {}
        }
    }

    async fn slate_forever(&mut self) {
        let mut tick = tokio::time::interval(Duration::from_millis(1000 / u64::from(SLATE_FPS)));
        loop {
            tick.tick().await;
            if self.slate_showing {
                self.push_slate_picture();
            }
        }
    }
}
