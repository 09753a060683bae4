//! Scenario 6: ingest scale. 16 and 64 streams of 2 Mbit/s pulled by one gateway, first ingest only, then with
//! every stream recorded: the gateway's CPU. The streams are 16 or 64 RTSP sessions on one fixture camera (shared
//! media, one encoder), so the camera side stays within one core.

use std::time::Duration;

use crate::gateway_process::GatewayProcess;
use crate::report::Row;
use crate::{camera, Ctx};

const SCENARIO: &str = "Ingest scale";

pub async fn run(ctx: &Ctx, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let cam = camera::two_mbps(ctx)?;
    for n in ctx.sizes(&[16, 64], &[2]) {
        let gw = GatewayProcess::start(&["--segment-secs", "60"], ctx.gateway_cpu).await?;
        // One at a time: the fixture's shared media does not take concurrent SETUPs.
        for i in 0..n {
            gw.add_stream(&format!("cam{i}"), &cam.url(), false).await?;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (ingest, ingest_usage) = gw.measure(ctx.window).await?;
        for i in 0..n {
            gw.set_recording(&format!("cam{i}"), true).await?;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (recording, rec_usage) = gw.measure(ctx.window).await?;
        let recorded = recorded_bytes(&gw)?;
        anyhow::ensure!(recorded > 0, "nothing was recorded");
        // The target is "under 50 % of two cores": one core's worth.
        let mut r = Row::new(SCENARIO, format!("{n} streams")).target(
            "< 50 % of two cores (64 streams, recording)",
            n < 64 || recording < 1.0,
        );
        r.gateway = format!(
            "ingest + record {:.1} % of a core, RSS {} MiB",
            recording * 100.0,
            rec_usage.rss_kib / 1024
        );
        r.reference = format!(
            "ingest only {:.1} % of a core, RSS {} MiB",
            ingest * 100.0,
            ingest_usage.rss_kib / 1024
        );
        r.ratio = Some(recording / ingest);
        r.note = format!(
            "{} per stream; {:.1} MB recorded; per stream {:.2} % (ingest) / {:.2} % (ingest + record) of a core",
            if ctx.quick { "0.3 Mbit/s 320x240" } else { "2 Mbit/s 640x360" },
            recorded as f64 / 1e6,
            ingest * 100.0 / n as f64,
            recording * 100.0 / n as f64
        );
        rows.push(r);
    }
    Ok(())
}

/// Bytes of every file under the gateway's recordings directory (segments being written included).
fn recorded_bytes(gw: &GatewayProcess) -> std::io::Result<u64> {
    let mut total = 0;
    let root = gw.data_dir().join("recordings");
    for stream in std::fs::read_dir(root)? {
        for file in std::fs::read_dir(stream?.path())? {
            total += file?.metadata()?.len();
        }
    }
    Ok(total)
}
