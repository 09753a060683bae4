//! `wsc-rtp-client`: receives a gateway stream over WSC-RTP and writes it as an Annex-B elementary stream.
//!
//! ```text
//! wsc-rtp-client ws://127.0.0.1:8009/streams/demo/wsc-rtp -o demo.h264 --seconds 10
//! wsc-rtp-client ws://127.0.0.1:8009/streams/demo/wsc-rtp -o - | ffplay -f h264 -
//! wsc-rtp-client ws://127.0.0.1:8009/streams/demo/wsc-rtp --start-ms 1795000000000 --speed 4 -o rewind.h264
//! wsc-rtp-client wss://gw.example:8009/streams/demo/wsc-rtp --token "$VIEWER_TOKEN" --ca-cert gw.pem -o demo.h264
//! ```

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use wsc_rtp_client::{run_with, ClientOptions, Connect};

#[derive(Parser)]
#[command(
    version,
    about = "Reference WSC-RTP client: writes the stream as Annex-B H.264/H.265"
)]
struct Args {
    /// ws://host:port/streams/{source_id}/wsc-rtp
    url: String,
    /// Output file, or - for standard output
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Stop after this many seconds
    #[arg(long)]
    seconds: Option<u64>,
    /// Stop after this many pictures
    #[arg(long)]
    frames: Option<u64>,
    /// Media inside the WebSocket instead of UDP
    #[arg(long)]
    websocket: bool,
    /// Drop this percentage of received datagrams (to watch NACK repair work)
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=90))]
    drop_percent: u8,
    /// Start in the recording at this wall-clock instant (epoch ms) instead of live
    #[arg(long)]
    start_ms: Option<i64>,
    /// Playback speed, 0.25 to 8
    #[arg(long)]
    speed: Option<f64>,
    /// Viewer token of a gateway with auth on (sent as `Authorization: Bearer`)
    #[arg(long, env = "WSC_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// PEM CA certificate to trust for wss:// beside the system's (a gateway with a self-signed certificate)
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let output: Option<Box<dyn std::io::Write + Send>> = match args.output.as_deref() {
        None => None,
        Some(p) if p.as_os_str() == "-" => Some(Box::new(std::io::stdout())),
        Some(p) => Some(Box::new(std::io::BufWriter::new(std::fs::File::create(p)?))),
    };
    let connect = Connect {
        ca_cert: args.ca_cert,
        bearer: args.token,
    };
    let stats = run_with(
        ClientOptions {
            url: args.url,
            websocket: args.websocket,
            max_frames: args.frames,
            duration: args.seconds.map(Duration::from_secs),
            drop_percent: args.drop_percent,
            output,
            start_ms: args.start_ms,
            speed: args.speed,
        },
        &connect,
    )
    .await?;
    for m in &stats.modes {
        eprintln!(
            "session_mode {} {} at {} x{}",
            m["mode"].as_str().unwrap_or("?"),
            m["reason"].as_str().unwrap_or(""),
            m["position_ms"],
            m["speed"]
        );
    }
    eprintln!(
        "codec {} over {}: {} packets, {} dropped on purpose, {} repaired, {} lost, {} frames ({} keyframes), \
         first frame after {} ms; played by RTP time, the last frame would be held {} ms (at most {} ms)",
        stats.codec,
        stats.transport,
        stats.packets,
        stats.dropped_on_purpose,
        stats.repaired,
        stats.lost,
        stats.frames,
        stats.keyframes,
        stats.time_to_first_frame.map_or(-1, |d| d.as_millis() as i64),
        stats.hold_last.as_millis(),
        stats.hold_max.as_millis()
    );
    Ok(())
}
