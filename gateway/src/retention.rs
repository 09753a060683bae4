//! The retention edge: applies `dvr::retention::plan` to the catalog, each stream's limits and the recordings
//! filesystem's free space, deleting files first and then their rows (a row without a file is healed away at the
//! next start; a file without a row would be indexed back, so that order loses nothing but space). Exports are
//! counted too: expired ones go every pass, and under the free-space floor all of them go before any recording
//! (`exports.rs`).
//!
//! It runs whenever a recorder finishes a segment (the only time usage grows) and once a minute for age limits.
//! A pass is one blocking task (SQLite, `statvfs`, file deletion), and reads the catalog through its indexes: per
//! stream a sum of bytes, then only the oldest segments, page by page, until the plan keeps one. Its cost grows
//! with what it deletes, not with how much is recorded.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dvr::retention::{plan, Disk, StoredSegment, StreamLimits};
use rusqlite::params;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::exports::{sweep, EXPORT_KEEP};
use crate::purge::Dirs;
use crate::registry::StreamRegistry;
use crate::store::{other, Store, StoreError};

/// Age limits are checked at least this often.
const PERIOD: Duration = Duration::from_secs(60);
/// Rows read per query of an oldest-first walk.
pub const PAGE: i64 = 64;

/// Wakes the retention task; recorders poke it when a segment is finished.
#[derive(Clone, Debug, Default)]
pub struct RetentionTrigger(Arc<Notify>);

impl RetentionTrigger {
    pub fn poke(&self) {
        self.0.notify_one();
    }
}

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// Recorded segments deleted.
    pub deleted: usize,
    /// Catalog rows the oldest-first walks read (the per-stream sums aside).
    pub rows_read: u64,
    /// Export files removed, and their bytes.
    pub exports_removed: usize,
    pub export_bytes: u64,
}

/// Runs retention until `stop`.
pub async fn run(
    store: Store,
    registry: Arc<StreamRegistry>,
    dirs: Dirs,
    floor_bytes: u64,
    trigger: RetentionTrigger,
    stop: CancellationToken,
) {
    loop {
        match run_once(&store, &registry, &dirs, floor_bytes).await {
            Ok(p) if p.deleted == 0 && p.exports_removed == 0 => {}
            Ok(p) => info!(
                deleted = p.deleted,
                exports = p.exports_removed,
                "retention deleted recorded segments and exports"
            ),
            Err(e) => warn!(error = format!("{e:#}"), "retention failed"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = trigger.0.notified() => {}
            () = tokio::time::sleep(PERIOD) => {}
        }
    }
}

/// One pass with the registry's limits; afterwards the touched streams' recording totals are refreshed.
pub async fn run_once(
    store: &Store,
    registry: &StreamRegistry,
    dirs: &Dirs,
    floor_bytes: u64,
) -> anyhow::Result<Pass> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let (pass, touched) = pass(store, registry.retention_limits(), dirs, floor_bytes, now).await?;
    for stream in &touched {
        registry.refresh_recorded_totals(stream).await?;
    }
    Ok(pass)
}

/// One pass: plans with `limits` at `now_ms`, deletes, and says which streams lost segments.
pub async fn pass(
    store: &Store,
    limits: HashMap<String, StreamLimits>,
    dirs: &Dirs,
    floor_bytes: u64,
    now_ms: i64,
) -> anyhow::Result<(Pass, HashSet<String>)> {
    let (store, dirs) = (store.clone(), dirs.clone());
    tokio::task::spawn_blocking(move || pass_blocking(&store, &limits, &dirs, floor_bytes, now_ms))
        .await?
}

fn pass_blocking(
    store: &Store,
    limits: &HashMap<String, StreamLimits>,
    dirs: &Dirs,
    floor_bytes: u64,
    now_ms: i64,
) -> anyhow::Result<(Pass, HashSet<String>)> {
    let usage = usage(store)?;
    let mut free_bytes = free_space(&dirs.recordings)?;
    let swept = sweep(
        &dirs.exports,
        EXPORT_KEEP,
        floor_bytes.saturating_sub(free_bytes),
    );
    free_bytes += swept.bytes;
    let rows_read = Cell::new(0u64);
    let failure: RefCell<Option<StoreError>> = RefCell::new(None);
    // Path and stream of every row the walks read: the plan names ids, the deleter needs files.
    let seen: RefCell<HashMap<i64, (String, String)>> = RefCell::new(HashMap::new());
    let doomed = plan(
        &usage,
        limits,
        Disk {
            free_bytes,
            floor_bytes,
        },
        now_ms,
        |stream| OldestFirst {
            store,
            stream: stream.map(str::to_owned),
            after: (i64::MIN, i64::MIN, i64::MIN),
            page: VecDeque::new(),
            done: false,
            rows_read: &rows_read,
            failure: &failure,
            seen: &seen,
        },
    );
    if let Some(e) = failure.into_inner() {
        return Err(e.into());
    }
    let seen = seen.into_inner();
    let mut touched = HashSet::new();
    let mut gone = Vec::with_capacity(doomed.len());
    for (id, reason) in &doomed {
        let Some((stream, path)) = seen.get(id) else {
            continue;
        };
        if let Err(e) = crate::catalog::remove_file(Path::new(path)) {
            warn!(error = format!("{e:#}"), "cannot delete a recorded segment");
            continue;
        }
        tracing::debug!(stream = %stream, path = %path, ?reason, "segment deleted by retention");
        touched.insert(stream.clone());
        gone.push(*id);
    }
    store.with_conn_blocking(|conn| {
        let tx = conn.transaction().map_err(other)?;
        {
            let mut stmt = tx
                .prepare_cached("DELETE FROM segments WHERE id = ?1")
                .map_err(other)?;
            for id in &gone {
                stmt.execute([id]).map_err(other)?;
            }
        }
        tx.commit().map_err(other)
    })?;
    Ok((
        Pass {
            deleted: gone.len(),
            rows_read: rows_read.get(),
            exports_removed: swept.files,
            export_bytes: swept.bytes,
        },
        touched,
    ))
}

/// Each stream's bytes on disk: finished segments from the catalog, the one being written at its size now.
fn usage(store: &Store) -> Result<HashMap<String, u64>, StoreError> {
    let (mut usage, writing) = store.with_conn_blocking(|conn| {
        let mut stmt = conn
            .prepare_cached(
                "SELECT source_id, SUM(bytes) FROM segments WHERE state != 'writing' GROUP BY source_id",
            )
            .map_err(other)?;
        let usage = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))
            .map_err(other)?
            .collect::<Result<HashMap<_, _>, _>>()
            .map_err(other)?;
        let mut stmt = conn
            .prepare_cached("SELECT source_id, path FROM segments WHERE state = 'writing'")
            .map_err(other)?;
        let writing = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(other)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(other)?;
        Ok((usage, writing))
    })?;
    for (stream, path) in writing {
        *usage.entry(stream).or_default() += std::fs::metadata(&path).map_or(0, |m| m.len());
    }
    Ok(usage)
}

/// Finished segments oldest first by `(end_ms, start_ms, id)`, of one stream or all, read a page at a time
/// through the `segments_by_stream_end` / `segments_by_end` indexes. A failed query ends the walk and is kept in
/// `failure`.
struct OldestFirst<'a> {
    store: &'a Store,
    stream: Option<String>,
    after: (i64, i64, i64),
    page: VecDeque<StoredSegment>,
    done: bool,
    rows_read: &'a Cell<u64>,
    failure: &'a RefCell<Option<StoreError>>,
    seen: &'a RefCell<HashMap<i64, (String, String)>>,
}

impl OldestFirst<'_> {
    fn fetch(&mut self) -> Result<(), StoreError> {
        let (stream, (end, start, id)) = (self.stream.clone(), self.after);
        let rows: Vec<(StoredSegment, String)> = self.store.with_conn_blocking(|conn| {
            let read = |r: &rusqlite::Row<'_>| {
                Ok((
                    StoredSegment {
                        id: r.get(0)?,
                        stream: r.get(1)?,
                        start_ms: r.get(2)?,
                        end_ms: r.get(3)?,
                        bytes: r.get::<_, i64>(4)? as u64,
                        writing: false,
                    },
                    r.get::<_, String>(5)?,
                ))
            };
            let rows = match &stream {
                Some(s) => conn
                    .prepare_cached(
                        "SELECT id, source_id, start_ms, end_ms, bytes, path FROM segments
                         WHERE source_id = ?1 AND state != 'writing' AND (end_ms, start_ms, id) > (?2, ?3, ?4)
                         ORDER BY end_ms, start_ms, id LIMIT ?5",
                    )
                    .map_err(other)?
                    .query_map(params![s, end, start, id, PAGE], read)
                    .map_err(other)?
                    .collect::<Result<Vec<_>, _>>(),
                None => conn
                    .prepare_cached(
                        "SELECT id, source_id, start_ms, end_ms, bytes, path FROM segments
                         WHERE state != 'writing' AND (end_ms, start_ms, id) > (?1, ?2, ?3)
                         ORDER BY end_ms, start_ms, id LIMIT ?4",
                    )
                    .map_err(other)?
                    .query_map(params![end, start, id, PAGE], read)
                    .map_err(other)?
                    .collect::<Result<Vec<_>, _>>(),
            };
            rows.map_err(other)
        })?;
        self.done = (rows.len() as i64) < PAGE;
        self.rows_read.set(self.rows_read.get() + rows.len() as u64);
        let mut seen = self.seen.borrow_mut();
        for (s, path) in rows {
            self.after = (s.end_ms, s.start_ms, s.id);
            seen.insert(s.id, (s.stream.clone(), path));
            self.page.push_back(s);
        }
        Ok(())
    }
}

impl Iterator for OldestFirst<'_> {
    type Item = StoredSegment;

    fn next(&mut self) -> Option<StoredSegment> {
        if self.page.is_empty() && !self.done {
            if let Err(e) = self.fetch() {
                self.done = true;
                *self.failure.borrow_mut() = Some(e);
            }
        }
        self.page.pop_front()
    }
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
