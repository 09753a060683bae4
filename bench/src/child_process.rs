//! The servers under test (the gateway, Janus) as child processes: started pinned to a CPU, waited for until they
//! answer HTTP, and measured from /proc over a window.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::procstat::{self, Usage};

/// Spawns `cmd`, restricted to `cpu` when given.
pub fn spawn_pinned(cmd: &mut Command, cpu: Option<usize>) -> anyhow::Result<Child> {
    if let Some(cpu) = cpu {
        // SAFETY: only async-signal-safe work between fork and exec (one syscall).
        unsafe {
            cmd.pre_exec(move || procstat::pin_this_thread(cpu));
        }
    }
    cmd.spawn()
        .with_context(|| format!("starting {:?}", cmd.get_program()))
}

/// Waits until `url` answers at all, for at most `within`.
pub async fn wait_until_serving(
    http: &reqwest::Client,
    url: &str,
    within: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while http.get(url).send().await.is_err() {
        if Instant::now() > deadline {
            bail!("{url} did not answer within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// `pid`'s CPU share over `window` (1.0 = one core) and its usage at the end.
pub async fn measure(pid: u32, window: Duration) -> anyhow::Result<(f64, Usage)> {
    let a = procstat::process(pid)?;
    let t = Instant::now();
    tokio::time::sleep(window).await;
    let b = procstat::process(pid)?;
    Ok(((b.cpu - a.cpu).as_secs_f64() / t.elapsed().as_secs_f64(), b))
}

pub fn free_tcp_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
