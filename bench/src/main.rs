//! `gateway-bench`: the gateway's performance, side by side with what users would otherwise run, in one command
//! that prints one table (see BENCHMARKS.md for the latest run and how to read it).
//!
//! Every scenario runs on loopback with bounded counts and times and cleans up after itself. The gateway under
//! test is its own process (this binary re-run as `serve-gateway`), pinned to CPU 0 while this process (camera,
//! receivers, reference loops) is pinned to CPU 1 when the machine has two or more, so each side's CPU figure is
//! its own. `--quick` runs every scenario at tiny sizes; the test suite does that so the harness can't rot.

mod camera;
mod child_process;
mod dvr_recording;
mod dvr_viewer;
mod dvr_webrtc;
mod dvr_wsc;
mod gateway_process;
mod janus;
mod keyframe_watch;
mod media_relay;
mod page_cache;
mod procio;
mod procstat;
mod raw_frames;
mod raw_send;
mod report;
mod scenarios;
mod sinks;
mod udp_gro;
mod webrtc_join;
mod ws_viewer;
mod wsc_viewers;

use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "gateway-bench",
    about = "Benchmarks of the camera gateway, printed as one table"
)]
struct Cli {
    /// Tiny sizes and short windows: checks that every scenario runs, measures nothing worth keeping
    #[arg(long)]
    quick: bool,
    /// Scenarios to run, comma-separated [default: all]
    #[arg(long, value_delimiter = ',')]
    only: Vec<Scenario>,
    /// Leave the gateway and the load generator wherever the scheduler puts them
    #[arg(long)]
    no_pin: bool,
    /// Seconds each measurement window lasts [default: 10, quick: 2]
    #[arg(long)]
    window_secs: Option<u64>,
    /// Receiver (or stream) counts for every chosen scenario, comma-separated, in place of its own list; for
    /// looking at one size closely (a profile, a repeat)
    #[arg(long, value_delimiter = ',')]
    sizes: Vec<usize>,
    /// Length of the soak scenario in seconds [default: 1800, quick: 30]; the soak runs only when named in
    /// `--only`
    #[arg(long)]
    soak_secs: Option<u64>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the gateway under test (started by the harness itself)
    #[command(hide = true)]
    ServeGateway {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        flags: Vec<String>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    WscFanout,
    WebrtcFanout,
    Latency,
    Ttff,
    Ingest,
    Dvr,
    /// Not part of the default run (30 minutes): `--only soak`
    Soak,
    Retention,
}

const ALL: [Scenario; 7] = [
    Scenario::WscFanout,
    Scenario::WebrtcFanout,
    Scenario::Latency,
    Scenario::Ttff,
    Scenario::Ingest,
    Scenario::Dvr,
    Scenario::Retention,
];

/// What every scenario needs to know about the run.
pub struct Ctx {
    pub quick: bool,
    pub window: Duration,
    /// CPU the gateway process is pinned to.
    pub gateway_cpu: Option<usize>,
    /// `--sizes`: replaces every scenario's own list when not empty.
    pub sizes: Vec<usize>,
    /// `--soak-secs`.
    pub soak_secs: Option<u64>,
}

impl Ctx {
    /// `--sizes` when given, else the full sizes or the quick ones.
    pub fn sizes(&self, full: &[usize], quick: &[usize]) -> Vec<usize> {
        if !self.sizes.is_empty() {
            return self.sizes.clone();
        }
        if self.quick { quick } else { full }.to_vec()
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::ServeGateway { flags }) = cli.command {
        return gateway_process::serve(flags);
    }
    let cpus = procstat::online_cpus();
    let pin = !cli.no_pin && cpus >= 2;
    if pin {
        // Threads and processes started from here on (the camera's, the receivers') inherit this.
        procstat::pin_this_thread(1)?;
    }
    let ctx = Ctx {
        quick: cli.quick,
        window: Duration::from_secs(cli.window_secs.unwrap_or(if cli.quick { 2 } else { 10 })),
        gateway_cpu: pin.then_some(0),
        sizes: cli.sizes.clone(),
        soak_secs: cli.soak_secs,
    };
    let chosen: Vec<Scenario> = if cli.only.is_empty() {
        ALL.to_vec()
    } else {
        cli.only.clone()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for s in chosen {
        eprintln!("gateway-bench: {s:?} ...");
        let before = rows.len();
        let result = runtime.block_on(async {
            match s {
                Scenario::WscFanout => scenarios::wsc_fanout::run(&ctx, &mut rows).await,
                Scenario::WebrtcFanout => scenarios::webrtc_fanout::run(&ctx, &mut rows).await,
                Scenario::Latency => scenarios::latency::run(&ctx, &mut rows).await,
                Scenario::Ttff => scenarios::ttff::run(&ctx, &mut rows).await,
                Scenario::Ingest => scenarios::ingest::run(&ctx, &mut rows).await,
                Scenario::Dvr => scenarios::dvr::run(&ctx, &mut rows).await,
                Scenario::Soak => scenarios::soak::run(&ctx, &mut rows).await,
                Scenario::Retention => scenarios::retention::run(&ctx, &mut rows).await,
            }
        });
        for r in &rows[before..] {
            eprintln!(
                "{}",
                report::table(std::slice::from_ref(r))
                    .lines()
                    .nth(2)
                    .unwrap_or("")
            );
        }
        if let Err(e) = result {
            eprintln!("gateway-bench: {s:?} failed: {e:#}");
            failed.push(s);
        }
    }
    println!(
        "gateway-bench{}: {} CPUs, gateway {}",
        if ctx.quick { " --quick" } else { "" },
        cpus,
        match ctx.gateway_cpu {
            Some(c) => format!("pinned to CPU {c}, harness to CPU 1"),
            None => "not pinned".into(),
        }
    );
    println!();
    print!("{}", report::table(&rows));
    if !failed.is_empty() {
        anyhow::bail!("scenarios failed: {failed:?}");
    }
    Ok(())
}
