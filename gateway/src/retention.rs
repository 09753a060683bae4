//! The retention edge: applies `dvr::retention::plan` to the catalog, each stream's limits and the recordings
//! filesystem's free space, deleting files first and then their rows (a row without a file is healed away at the
//! next start; a file without a row would be indexed back, so that order loses nothing but space).
//!
//! It runs whenever a recorder finishes a segment (the only time usage grows) and once a minute for age limits.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dvr::retention::{plan, Disk, StoredSegment};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::registry::StreamRegistry;
use crate::store::Store;

/// Age limits are checked at least this often.
const PERIOD: Duration = Duration::from_secs(60);

/// Wakes the retention task; recorders poke it when a segment is finished.
#[derive(Clone, Debug, Default)]
pub struct RetentionTrigger(Arc<Notify>);

impl RetentionTrigger {
    pub fn poke(&self) {
        self.0.notify_one();
    }
}

/// Runs retention until `stop`.
pub async fn run(
    store: Store,
    registry: Arc<StreamRegistry>,
    recordings_dir: PathBuf,
    floor_bytes: u64,
    trigger: RetentionTrigger,
    stop: CancellationToken,
) {
    loop {
        match run_once(&store, &registry, &recordings_dir, floor_bytes).await {
            Ok(0) => {}
            Ok(n) => info!(deleted = n, "retention deleted recorded segments"),
            Err(e) => warn!(error = format!("{e:#}"), "retention failed"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = trigger.0.notified() => {}
            () = tokio::time::sleep(PERIOD) => {}
        }
    }
}

/// One pass: plans and deletes. Returns how many segments went.
pub async fn run_once(
    store: &Store,
    registry: &StreamRegistry,
    recordings_dir: &Path,
    floor_bytes: u64,
) -> anyhow::Result<usize> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let rows = store.all_segments().await?;
    let segments: Vec<StoredSegment> = rows
        .iter()
        .map(|(stream, r)| StoredSegment {
            id: r.id,
            stream: stream.clone(),
            start_ms: r.start_ms,
            end_ms: r.end_ms.unwrap_or(now),
            // A segment being written is counted at its size on disk now.
            bytes: if r.state == "writing" {
                std::fs::metadata(&r.path).map_or(0, |m| m.len())
            } else {
                r.bytes
            },
            writing: r.state == "writing",
        })
        .collect();
    let limits = registry.retention_limits();
    let dir = recordings_dir.to_owned();
    let free_bytes = tokio::task::spawn_blocking(move || free_space(&dir)).await??;
    let doomed = plan(
        &segments,
        &limits,
        Disk {
            free_bytes,
            floor_bytes,
        },
        now,
    );
    let mut touched: HashMap<&str, ()> = HashMap::new();
    for (id, reason) in &doomed {
        let Some((stream, row)) = rows.iter().find(|(_, r)| r.id == *id) else {
            continue;
        };
        if let Err(e) = store.delete_recorded(row).await {
            warn!(error = format!("{e:#}"), "cannot delete a recorded segment");
            continue;
        }
        tracing::debug!(stream = %stream, path = %row.path, ?reason, "segment deleted by retention");
        touched.insert(stream.as_str(), ());
    }
    for stream in touched.keys() {
        registry.refresh_recorded_totals(stream).await?;
    }
    Ok(doomed.len())
}

/// Bytes available to an unprivileged writer on the filesystem holding `dir` (created if missing).
fn free_space(dir: &Path) -> std::io::Result<u64> {
    std::fs::create_dir_all(dir)?;
    let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a valid NUL-terminated string and `stat` a writable statvfs; the result is read only
    // when the call succeeds.
    let rc = unsafe { libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled `stat`.
    let stat = unsafe { stat.assume_init() };
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}
