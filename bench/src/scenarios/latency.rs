//! Scenario 3: latency the gateway adds, p50/p99/max, at 1, 200 and 1000 receivers (the 64 read ones joined spread
//! through the join order, [`Sinks::join_order`]). The camera stamps every frame with
//! CLOCK_MONOTONIC as it leaves the encoder (an SEI NAL, [`testdata::stamp`]). Two paths read the same frames in
//! the same run: the gateway's (camera → gateway → WSC-RTP over UDP → the sampled receivers, stamp read from the
//! first packet carrying it) and a direct one (camera → the same RTSP client code, `sources`, in this process →
//! a frame complete). The difference of their quantiles is what the gateway adds: its hub, its publisher and one
//! UDP hop.

use std::sync::Arc;
use std::time::Duration;

use hub::{Hub, HubOptions};
use sources::{IngestHandle, IngestOptions, InputSpec, InputUrl, Transport};
use testdata::stamp;

use crate::gateway_process::GatewayProcess;
use crate::report::{quantile, Row};
use crate::sinks::Sinks;
use crate::{camera, wsc_viewers, Ctx};

const SCENARIO: &str = "Latency added";

pub async fn run(ctx: &Ctx, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let cam = camera::four_mbps(ctx, true)?;
    let gw = GatewayProcess::start(&[], ctx.gateway_cpu).await?;
    gw.add_stream("cam", &cam.url(), false).await?;
    let direct = DirectPath::start(&cam.url())?;
    for n in ctx.sizes(&[1, 200, 1000], &[1, 2]) {
        let mut sinks = Sinks::bind(n)?;
        let sessions = wsc_viewers::open(&gw.base, "cam", &mut sinks).await?;
        let receiving = sinks.start(true);
        tokio::time::sleep(Duration::from_secs(2)).await;
        receiving.take_latencies_ms();
        direct.take_ms();
        tokio::time::sleep(ctx.window).await;
        let via = receiving.take_latencies_ms();
        let straight = direct.take_ms();
        let unread_kib = receiving.unread_bytes() / 1024;
        drop(sessions);
        receiving.stop();
        gw.wait_viewers("cam", 0).await?;
        anyhow::ensure!(
            !via.is_empty() && !straight.is_empty(),
            "no stamped frame arrived ({} via the gateway, {} direct)",
            via.len(),
            straight.len()
        );
        // Quantiles of the frames that `pick` keeps.
        let q = |v: &[(f64, bool)], pick: &dyn Fn(bool) -> bool| {
            let mut ms: Vec<f64> = v
                .iter()
                .filter(|(_, k)| pick(*k))
                .map(|(ms, _)| *ms)
                .collect();
            [
                quantile(&mut ms, 0.5),
                quantile(&mut ms, 0.99),
                quantile(&mut ms, 1.0),
            ]
        };
        let (g, d) = (q(&via, &|_| true), q(&straight, &|_| true));
        let added = [g[0] - d[0], g[1] - d[1], g[2] - d[2]];
        // The added latency of delta frames and of keyframes apart: a keyframe is many times a delta frame's
        // packets, and every viewer's copy of it leaves before the next frame's.
        let added_for = |key: bool| {
            let (g, d) = (q(&via, &|k| k == key), q(&straight, &|k| k == key));
            if g[0].is_nan() || d[0].is_nan() {
                // A window shorter than the GOP may hold no keyframe.
                return "none in the window".to_owned();
            }
            format!("p50 {:.2} / p99 {:.2} ms", g[0] - d[0], g[1] - d[1])
        };
        let keyframes = via.iter().filter(|(_, k)| *k).count();
        let limit_ms = match n {
            0..200 => f64::INFINITY,
            200..1000 => 2.0,
            _ => 5.0,
        };
        let mut r = Row::new(SCENARIO, format!("N={n}"))
            .target("p99 < 2 ms at 200, < 5 ms at 1000", added[1] < limit_ms);
        r.gateway = format!(
            "added p50 {:.2} / p99 {:.2} / max {:.2} ms",
            added[0], added[1], added[2]
        );
        r.reference = format!(
            "direct path p50 {:.2} / p99 {:.2} / max {:.2} ms",
            d[0], d[1], d[2]
        );
        r.note = format!(
            "through the gateway p50 {:.2} / p99 {:.2} / max {:.2} ms; added for delta frames {}, for keyframes {} \
             ({keyframes} keyframes); {} + {} frames; {unread_kib} KiB unread in the sampled sockets at the end",
            g[0],
            g[1],
            g[2],
            added_for(false),
            added_for(true),
            via.len(),
            straight.len()
        );
        rows.push(r);
    }
    direct.stop().await;
    Ok(())
}

/// The camera read without the gateway: an ingest into a hub of our own, and the stamp latency of every frame.
struct DirectPath {
    ingest: IngestHandle,
    latencies: Arc<std::sync::Mutex<Vec<(f64, bool)>>>,
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
        let mut sub = hub.subscribe();
        let sink = latencies.clone();
        let reader = tokio::spawn(async move {
            while let Some(f) = sub.recv().await {
                if let Some(sent) = stamp::find_stamp(&f.frame.data) {
                    let ms = stamp::monotonic_ns().saturating_sub(sent) as f64 / 1e6;
                    sink.lock()
                        .expect("not poisoned")
                        .push((ms, f.frame.is_keyframe));
                }
            }
        });
        Ok(DirectPath {
            ingest,
            latencies,
            reader,
        })
    }

    fn take_ms(&self) -> Vec<(f64, bool)> {
        std::mem::take(&mut *self.latencies.lock().expect("not poisoned"))
    }

    async fn stop(self) {
        self.ingest.stop().await;
        self.reader.abort();
    }
}
