//! A real RTSP server for tests: gstreamer-rtsp-server on 127.0.0.1 serving a live test pattern as H.264 or H.265,
//! over TCP and UDP, optionally behind digest auth, that can be stopped (dropping connected clients) and started
//! again on the same port to exercise reconnects.
//!
//! Each fixture runs its own GLib main loop on its own thread, so fixtures in one test process don't interfere.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::glib;
use gstreamer_rtsp_server as rtsp_server;
use rtsp_server::prelude::*;

/// Codec the fixture serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FixtureCodec {
    H264,
    H265,
}

/// What the fixture serves.
#[derive(Clone, Debug)]
pub struct FixtureOptions {
    pub codec: FixtureCodec,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// Frames between keyframes.
    pub gop: u32,
    pub bitrate_kbps: u32,
    /// Digest auth user and password.
    pub auth: Option<(String, String)>,
    /// Mount path, starting with `/`.
    pub path: String,
    /// `videotestsrc` pattern: `ball` (default, compresses well), `snow` (incompressible: the encoder runs at its
    /// bitrate), `smpte`, ...
    pub pattern: &'static str,
    /// The source goes silent (end of stream, connection kept) after this many frames: a hung camera.
    pub stop_after_frames: Option<u32>,
    /// H.264 profile the encoder must use (`constrained-baseline`, `main`, `high`); `None`: what x264's
    /// `ultrafast` preset gives (Constrained Baseline).
    pub h264_profile: Option<&'static str>,
    /// H.264 only: every access unit starts with an SEI NAL stamping when the encoder produced it
    /// ([`crate::stamp`]), for latency measurements.
    pub stamp_frames: bool,
    /// Picture making and encoding run on their own threads at the idle CPU priority (`SCHED_IDLE`), so any other
    /// thread that wakes on their core runs at once: a real camera encodes in hardware, and a latency measurement
    /// on a shared core must not charge the fixture's software encoder to whoever wakes there. (The kernel lets a
    /// running normal-priority thread finish its time slice, up to a scheduler tick of 4 ms, before a woken one.)
    pub background_encoder: bool,
}

impl Default for FixtureOptions {
    fn default() -> Self {
        FixtureOptions {
            codec: FixtureCodec::H264,
            width: 320,
            height: 240,
            fps: 25,
            gop: 25,
            bitrate_kbps: 500,
            auth: None,
            path: "/cam".into(),
            stop_after_frames: None,
            h264_profile: None,
            stamp_frames: false,
            background_encoder: false,
            pattern: "ball",
        }
    }
}

/// Why the fixture could not start.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    #[error("GStreamer: {0}")]
    Gst(String),
    #[error("server thread ended before it was serving")]
    Thread,
}

/// A running (or stopped) RTSP server. Dropping it stops the server.
pub struct RtspFixture {
    opts: FixtureOptions,
    port: u16,
    running: Option<Running>,
}

struct Running {
    main_loop: glib::MainLoop,
    ctx: glib::MainContext,
    thread: JoinHandle<()>,
}

impl RtspFixture {
    /// Starts serving on a free loopback port.
    pub fn start(opts: FixtureOptions) -> Result<RtspFixture, FixtureError> {
        gst::init().map_err(|e| FixtureError::Gst(e.to_string()))?;
        mute_closed_connection_criticals();
        let mut fixture = RtspFixture {
            opts,
            port: 0,
            running: None,
        };
        fixture.serve()?;
        Ok(fixture)
    }

    /// `rtsp://127.0.0.1:PORT/path`, without credentials.
    pub fn url(&self) -> String {
        format!("rtsp://127.0.0.1:{}{}", self.port, self.opts.path)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops serving: closes every client connection and frees the port.
    pub fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            // Quit from inside the loop: a quit() issued before the thread reached run() would be lost and the
            // join below would wait forever.
            let main_loop = r.main_loop.clone();
            r.ctx.invoke(move || main_loop.quit());
            let _ = r.thread.join();
        }
    }

    /// Serves again on the same port.
    pub fn restart(&mut self) -> Result<(), FixtureError> {
        self.stop();
        // The kernel may take a moment to release the port after the listener closes.
        let mut last = None;
        for _ in 0..50 {
            match self.serve() {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(last.unwrap_or(FixtureError::Thread))
    }

    fn launch_line(&self) -> String {
        let o = &self.opts;
        // The encoder (with its caps), then the payloader.
        let (enc, pay) = match o.codec {
            // x264 writes the lowest profile its tools need, and `ultrafast` uses Constrained Baseline tools only.
            FixtureCodec::H264 => (
                format!(
                    "x264enc name=enc tune=zerolatency speed-preset={} key-int-max={} bitrate={} {}",
                    match o.h264_profile {
                        Some("main" | "high") => "superfast",
                        _ => "ultrafast",
                    },
                    o.gop,
                    o.bitrate_kbps,
                    // The stamp is prepended with a start code, so stamped output must be Annex B.
                    match (o.h264_profile, o.stamp_frames) {
                        (Some(p), true) => {
                            format!("! video/x-h264,profile={p},stream-format=byte-stream")
                        }
                        (Some(p), false) => format!("! video/x-h264,profile={p}"),
                        (None, true) => "! video/x-h264,stream-format=byte-stream".into(),
                        (None, false) => String::new(),
                    }
                ),
                "rtph264pay name=pay0 pt=96 config-interval=-1",
            ),
            FixtureCodec::H265 => (
                format!(
                    "x265enc name=enc tune=zerolatency speed-preset=ultrafast key-int-max={} bitrate={} \
                     option-string=open-gop=0:repeat-headers=1",
                    o.gop, o.bitrate_kbps
                ),
                "rtph265pay name=pay0 pt=96 config-interval=-1",
            ),
        };
        // With the encoder in the background, the picture, the encoder and the payloader get a thread each, so
        // only the first two run at the idle priority (threads inherit it from the thread that starts them).
        let (encq, payq) = if o.background_encoder {
            ("queue name=encq ! ", "queue name=payq ! ")
        } else {
            ("", "")
        };
        let enc = format!("{encq}{enc} ! {payq}{pay}");
        format!(
            "( videotestsrc name=src is-live=true pattern={} num-buffers={} ! video/x-raw,format=I420,width={},height={},framerate={}/1 ! {enc} )",
            o.pattern,
            o.stop_after_frames.map_or(-1, |n| n as i64),
            o.width,
            o.height,
            o.fps
        )
    }

    fn serve(&mut self) -> Result<(), FixtureError> {
        let (tx, rx) = mpsc::channel();
        let launch = self.launch_line();
        let opts = self.opts.clone();
        let want_port = self.port;
        let thread = std::thread::Builder::new()
            .name("rtsp-fixture".into())
            .spawn(move || {
                let ctx = glib::MainContext::new();
                let _guard = match ctx.acquire() {
                    Ok(g) => g,
                    Err(e) => {
                        let _ = tx.send(Err(FixtureError::Gst(e.to_string())));
                        return;
                    }
                };
                let main_loop = glib::MainLoop::new(Some(&ctx), false);
                let server = rtsp_server::RTSPServer::new();
                server.set_address("127.0.0.1");
                server.set_service(&want_port.to_string());
                let factory = rtsp_server::RTSPMediaFactory::new();
                factory.set_launch(&launch);
                factory.set_shared(true);
                if opts.stamp_frames {
                    factory
                        .connect_media_configure(|_, media| stamp_encoder_output(&media.element()));
                }
                if opts.background_encoder {
                    factory
                        .connect_media_configure(|_, media| encode_in_background(&media.element()));
                }
                factory.set_protocols(
                    gstreamer_rtsp::RTSPLowerTrans::TCP | gstreamer_rtsp::RTSPLowerTrans::UDP,
                );
                if let Some((user, pass)) = &opts.auth {
                    let auth = rtsp_server::RTSPAuth::new();
                    let token = rtsp_server::RTSPToken::builder()
                        .field(rtsp_server::RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
                        .build();
                    auth.add_digest(user, pass, &token);
                    auth.set_supported_methods(gstreamer_rtsp::RTSPAuthMethod::Digest);
                    server.set_auth(Some(&auth));
                    factory.add_role_from_structure(
                        &gst::Structure::builder("user")
                            .field(rtsp_server::RTSP_PERM_MEDIA_FACTORY_ACCESS, true)
                            .field(rtsp_server::RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, true)
                            .build(),
                    );
                }
                server
                    .mount_points()
                    .expect("server has mount points")
                    .add_factory(&opts.path, factory);
                let source = match server.attach(Some(&ctx)) {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = tx.send(Err(FixtureError::Gst(e.to_string())));
                        return;
                    }
                };
                let _ = tx.send(Ok((
                    server.bound_port() as u16,
                    main_loop.clone(),
                    ctx.clone(),
                )));
                main_loop.run();
                // Stop accepting, then drop every client (their sockets close) and every session.
                if let Some(s) = ctx.find_source_by_id(&source) {
                    s.destroy();
                }
                server.client_filter(Some(&mut |_, client| {
                    client.close();
                    rtsp_server::RTSPFilterResult::Remove
                }));
                if let Some(pool) = server.session_pool() {
                    pool.filter(Some(&mut |_, _| rtsp_server::RTSPFilterResult::Remove));
                }
                // Let the closes run on this context before it goes away (bounded: a busy source must not hang us).
                for _ in 0..10_000 {
                    if !ctx.iteration(false) {
                        break;
                    }
                }
            })
            .map_err(|_| FixtureError::Thread)?;
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok((port, main_loop, ctx))) => {
                self.port = port;
                self.running = Some(Running {
                    main_loop,
                    ctx,
                    thread,
                });
                Ok(())
            }
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => Err(FixtureError::Thread),
        }
    }
}

impl Drop for RtspFixture {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Moves the picture's thread and the encoder's thread (the `src` and `enc` elements' output pads are pushed
/// from them) to the idle priority at their first buffer.
fn encode_in_background(bin: &gst::Element) {
    let Some(bin) = bin.downcast_ref::<gst::Bin>() else {
        return;
    };
    for name in ["src", "enc"] {
        let Some(pad) = bin.by_name(name).and_then(|e| e.static_pad("src")) else {
            continue;
        };
        pad.add_probe(gst::PadProbeType::BUFFER, |_, _| {
            let param = libc::sched_param { sched_priority: 0 };
            // SAFETY: a valid sched_param; pid 0 is the calling thread.
            unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
            gst::PadProbeReturn::Remove
        });
    }
}

/// Prepends a send-time SEI to every buffer the encoder named `enc` puts out.
fn stamp_encoder_output(bin: &gst::Element) {
    let Some(pad) = bin
        .downcast_ref::<gst::Bin>()
        .and_then(|b| b.by_name("enc"))
        .and_then(|e| e.static_pad("src"))
    else {
        return;
    };
    pad.add_probe(gst::PadProbeType::BUFFER, |_, info| {
        if let Some(gst::PadProbeData::Buffer(buf)) = info.data.take() {
            let Ok(map) = buf.map_readable() else {
                info.data = Some(gst::PadProbeData::Buffer(buf));
                return gst::PadProbeReturn::Ok;
            };
            let mut bytes = crate::stamp::sei_nal(crate::stamp::monotonic_ns());
            bytes.extend_from_slice(&map);
            drop(map);
            let mut stamped = gst::Buffer::from_mut_slice(bytes);
            {
                let out = stamped.get_mut().expect("new buffer is writable");
                out.set_pts(buf.pts());
                out.set_dts(buf.dts());
                out.set_duration(buf.duration());
                out.set_flags(buf.flags());
            }
            info.data = Some(gst::PadProbeData::Buffer(stamped));
        }
        gst::PadProbeReturn::Ok
    });
}

/// gst-rtsp-server (1.22 here) keeps polling a client connection its peer closed: every main-context iteration
/// until the fixture stops logs `g_pollable_input_stream_read_nonblocking: assertion ... failed` from GLib-GIO,
/// about 2 million lines per test run, which buried the test output. Every client that disconnects from the
/// fixture (a test's camera loss, a failover, a wrong password) sets it off; it costs the fixture some CPU until
/// it stops and nothing else. Only that message is dropped: every other GLib-GIO critical still prints.
fn mute_closed_connection_criticals() {
    static MUTE: std::sync::Once = std::sync::Once::new();
    MUTE.call_once(|| {
        glib::log_set_handler(
            Some("GLib-GIO"),
            glib::LogLevels::LEVEL_CRITICAL,
            false,
            false,
            |domain, level, message| {
                if !message.contains("g_pollable_input_stream_read_nonblocking") {
                    glib::log_default_handler(domain, level, Some(message));
                }
            },
        );
    });
}
