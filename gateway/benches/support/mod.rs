//! What the gateway benchmarks share: the real gateway binary as its own process, and its CPU and memory read
//! from /proc, so the figures are the gateway's alone.

#![allow(dead_code)]

use std::time::{Duration, Instant};

pub fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// (CPU seconds, RSS KiB) of a process.
pub fn proc_usage(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let cpu = (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / ticks_per_sec();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (cpu, rss)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The gateway binary, killed on drop.
pub struct Gw {
    pub child: std::process::Child,
    pub base: String,
    pub dir: tempfile::TempDir,
}

impl Drop for Gw {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the gateway binary on a free port with a new data directory and `args`, once it serves.
pub async fn spawn_gateway(args: &[&str]) -> Gw {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .args(args)
        .arg("--data-dir")
        .arg(dir.path())
        // BENCH_GATEWAY_LOG=<filter> keeps the gateway's log in bench-gateway.log, for looking into a figure.
        .env(
            "RUST_LOG",
            std::env::var("BENCH_GATEWAY_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(match std::env::var("BENCH_GATEWAY_LOG") {
            Ok(_) => std::fs::File::create("bench-gateway.log").unwrap().into(),
            Err(_) => std::process::Stdio::null(),
        })
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while reqwest::get(format!("{base}/health")).await.is_err() {
        assert!(Instant::now() < deadline, "gateway did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Gw { child, base, dir }
}
