//! Scenario 3: latency the gateway adds, p50/p99/max, at 1, 200 and 1000 receivers (the 64 read ones joined spread
//! through the join order, [`Sinks::join_order`]). The camera stamps every frame with CLOCK_MONOTONIC as it
//! leaves the encoder (an SEI NAL, [`testdata::stamp`]). Two paths read the same frames in the same run: the
//! gateway's (camera → gateway → WSC-RTP over UDP → the sampled receivers, stamp read from the first packet
//! carrying it) and a direct one (camera → the same RTSP client code, `sources`, in this process → a frame
//! complete). What the gateway adds to a frame is its arrival through the gateway less its arrival on the direct
//! path, frame by frame (the stamp names the frame): its hub, its publisher and one UDP hop. Beside it, the
//! floor: the same frames to the same receivers from a sender that does no work of its own in user space
//! ([`crate::raw_frames`]), which is what handing a frame to N loopback sockets from one core costs on this
//! machine whatever the forwarder; the ratio column is the gateway's delta-frame p99 over the floor's.
//!
//! Both paths share the harness's core with the camera, whose software encoder runs at the idle priority
//! ([`testdata::FixtureOptions::background_encoder`]): at normal priority the kernel let it finish its time
//! slice before a woken receiver ran, up to a 4 ms tick later, and that wait showed up as latency the gateway
//! added. The receivers take GSO sends whole ([`Receive::Coalesced`]), so the gateway's core does not also do
//! each receiver's per-datagram kernel work, which a receiver on another machine would do on its own.

use std::collections::HashMap;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::Duration;

use hub::{Hub, HubFrame, HubOptions};
use sources::{IngestHandle, IngestOptions, InputSpec, InputUrl, Transport};
use testdata::stamp;

use crate::gateway_process::GatewayProcess;
use crate::raw_frames::FloorSender;
use crate::report::{quantile, Row};
use crate::sinks::{Arrival, Receive, RunningSinks, Sinks};
use crate::{camera, wsc_viewers, Ctx};

const SCENARIO: &str = "Latency added";

pub async fn run(ctx: &Ctx, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let cam = camera::four_mbps(ctx, true)?;
    let gw = GatewayProcess::start(&[], ctx.gateway_cpu).await?;
    gw.add_stream("cam", &cam.url(), false).await?;
    let direct = DirectPath::start(&cam.url())?;
    for n in ctx.sizes(&[1, 200, 1000], &[1, 2]) {
        let mut sinks = Sinks::bind(n, Receive::Coalesced)?;
        let sessions = wsc_viewers::open(&gw.base, "cam", &mut sinks).await?;
        let receiving = sinks.start(true);
        let (via, straight) =
            measure(&receiving, &direct, Duration::from_secs(2), ctx.window).await;
        let unread_kib = receiving.unread_bytes() / 1024;
        drop(sessions);
        let mut sinks = receiving.stop();
        gw.wait_viewers("cam", 0).await?;
        sinks.forget_keepalives();
        let floor = floor(ctx, sinks, &direct).await?;
        let paired = Paired::new(&via, &straight);
        anyhow::ensure!(
            !paired.added.is_empty(),
            "no stamped frame arrived on both paths ({} via the gateway, {} direct)",
            via.len(),
            straight.len()
        );
        let limit_ms = match n {
            0..200 => f64::INFINITY,
            200..1000 => 2.0,
            _ => 5.0,
        };
        let all = paired.quantiles(|_| true);
        let mut r = Row::new(SCENARIO, format!("N={n}"))
            .target("p99 < 2 ms at 200, < 5 ms at 1000", all[1] < limit_ms);
        r.gateway = format!(
            "added p50 {:.2} / p99 {:.2} / max {:.2} ms",
            all[0], all[1], all[2]
        );
        let (mut through, mut direct_ms) = (paired.through_ms.clone(), paired.direct_ms.clone());
        let (floor_all, floor_delta) = (floor.quantiles(|_| true), floor.quantiles(|k| !k));
        r.reference = format!(
            "floor added p50 {:.2} / p99 {:.2} / max {:.2} ms, delta frames p99 {:.2} ms; direct path p50 {:.2} / \
             p99 {:.2} ms",
            floor_all[0],
            floor_all[1],
            floor_all[2],
            floor_delta[1],
            quantile(&mut direct_ms, 0.5),
            quantile(&mut direct_ms, 0.99),
        );
        r.ratio = Some(paired.quantiles(|k| !k)[1] / floor_delta[1]);
        // Delta frames and keyframes apart: a keyframe is many times a delta frame's packets, and every viewer's
        // copy of it leaves before the next frame's.
        let kind = |key: bool| {
            let q = paired.quantiles(|k| k == key);
            if q[0].is_nan() {
                // A window shorter than the GOP may hold no keyframe.
                return "none in the window".to_owned();
            }
            format!("p50 {:.2} / p99 {:.2} ms", q[0], q[1])
        };
        r.note = format!(
            "ratio: the delta frames' added p99 over the floor's; floor: the same frames, receivers and order, sent \
             in one pass with no user-space work from the gateway's core (bench/src/raw_frames.rs), {} of its \
             arrivals paired; frame by frame; through the gateway p50 {:.2} / p99 {:.2} ms; added for delta frames {}, for \
             keyframes {} ({} keyframe arrivals); {} arrivals on {} receivers, {} of them paired with the direct \
             path's {} frames; {unread_kib} KiB unread in the sampled sockets at the end; receivers take GSO \
             sends whole (UDP GRO)",
            floor.added.len(),
            quantile(&mut through, 0.5),
            quantile(&mut through, 0.99),
            kind(false),
            kind(true),
            paired.keyframes,
            via.len(),
            n.min(crate::sinks::SAMPLE),
            paired.added.len(),
            straight.len(),
        );
        rows.push(r);
    }
    direct.stop().await;
    Ok(())
}

/// The floor on `sinks`, the same receivers in the same join order: the camera's frames as the direct path gets
/// them, sent by [`crate::raw_frames`] from the gateway's core while the gateway (its viewers gone) only ingests
/// the camera; arrivals paired with the direct path's as the gateway's are.
async fn floor(ctx: &Ctx, sinks: Sinks, direct: &DirectPath) -> anyhow::Result<Paired> {
    let order: Vec<_> = {
        let addrs = sinks.addrs();
        sinks.join_order().into_iter().map(|i| addrs[i]).collect()
    };
    let receiving = sinks.start(true);
    let sender = FloorSender::start(ctx.gateway_cpu, order)?;
    direct.feed(Some(sender.feeder()));
    let (via, straight) = measure(&receiving, direct, Duration::from_secs(1), ctx.window).await;
    direct.feed(None);
    receiving.stop();
    sender.stop()?;
    Ok(Paired::new(&via, &straight))
}

/// The stamped arrivals on the sampled receivers over `window` after `warmup`, and the direct path's frames over
/// the same window.
async fn measure(
    receiving: &RunningSinks,
    direct: &DirectPath,
    warmup: Duration,
    window: Duration,
) -> (Vec<Arrival>, Vec<(u64, f64)>) {
    tokio::time::sleep(warmup).await;
    receiving.take_arrivals();
    direct.take();
    tokio::time::sleep(window).await;
    let via = receiving.take_arrivals();
    // The direct path also gets the frames that were still on their way through the other path.
    tokio::time::sleep(Duration::from_millis(200)).await;
    (via, direct.take())
}

/// Each gateway-path arrival beside the direct path's arrival of the same frame.
struct Paired {
    /// Added ms per arrival, and whether its frame was a keyframe.
    added: Vec<(f64, bool)>,
    through_ms: Vec<f64>,
    direct_ms: Vec<f64>,
    keyframes: usize,
}

impl Paired {
    fn new(via: &[Arrival], straight: &[(u64, f64)]) -> Paired {
        let direct: HashMap<u64, f64> = straight.iter().copied().collect();
        let mut p = Paired {
            added: Vec::with_capacity(via.len()),
            through_ms: Vec::with_capacity(via.len()),
            direct_ms: straight.iter().map(|&(_, ms)| ms).collect(),
            keyframes: 0,
        };
        for a in via {
            let Some(&d) = direct.get(&a.sent_ns) else {
                continue;
            };
            let ms = a.latency_ns as f64 / 1e6;
            p.added.push((ms - d, a.keyframe));
            p.through_ms.push(ms);
            p.keyframes += usize::from(a.keyframe);
        }
        p
    }

    /// p50, p99 and max of the added ms of the arrivals whose kind `pick` keeps.
    fn quantiles(&self, pick: impl Fn(bool) -> bool) -> [f64; 3] {
        let mut ms: Vec<f64> = self
            .added
            .iter()
            .filter(|(_, k)| pick(*k))
            .map(|(ms, _)| *ms)
            .collect();
        [
            quantile(&mut ms, 0.5),
            quantile(&mut ms, 0.99),
            quantile(&mut ms, 1.0),
        ]
    }
}

/// The camera read without the gateway: an ingest into a hub of our own, and every frame's stamp and latency.
struct DirectPath {
    ingest: IngestHandle,
    latencies: Arc<std::sync::Mutex<Vec<(u64, f64)>>>,
    /// Where every frame also goes while the floor is measured.
    floor: Arc<std::sync::Mutex<Option<SyncSender<Arc<HubFrame>>>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl DirectPath {
    fn start(url: &str) -> anyhow::Result<DirectPath> {
        let hub = Hub::new("direct", HubOptions::default());
        let (url, credentials) = InputUrl::parse(url, Transport::Tcp)?;
        let ingest = IngestHandle::spawn(
            "direct".into(),
            IngestOptions {
                inputs: vec![InputSpec {
                    label: "main".into(),
                    url,
                    priority: 0,
                }],
                credentials,
                ..IngestOptions::default()
            },
            Arc::new(hub.clone()),
        );
        let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
        let floor = Arc::new(std::sync::Mutex::new(None::<SyncSender<Arc<HubFrame>>>));
        let mut sub = hub.subscribe();
        let (sink, to_floor) = (latencies.clone(), floor.clone());
        let reader = tokio::spawn(async move {
            while let Some(f) = sub.recv().await {
                if let Some(sent) = stamp::find_stamp(&f.frame.data) {
                    let ms = stamp::monotonic_ns().saturating_sub(sent) as f64 / 1e6;
                    sink.lock().expect("not poisoned").push((sent, ms));
                }
                if let Some(tx) = to_floor.lock().expect("not poisoned").as_ref() {
                    // A full queue means the floor's sender is behind: the frame is one it doesn't send.
                    let _ = tx.try_send(f);
                }
            }
        });
        Ok(DirectPath {
            ingest,
            latencies,
            floor,
            reader,
        })
    }

    /// Hands every frame from now on to the floor's sender too (`None`: no more).
    fn feed(&self, to: Option<SyncSender<Arc<HubFrame>>>) {
        *self.floor.lock().expect("not poisoned") = to;
    }

    /// `(stamp, latency ms)` of the frames since the last call.
    fn take(&self) -> Vec<(u64, f64)> {
        std::mem::take(&mut *self.latencies.lock().expect("not poisoned"))
    }

    async fn stop(self) {
        self.ingest.stop().await;
        self.reader.abort();
    }
}
