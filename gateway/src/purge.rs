//! What deleting a stream does to its recordings: they go — files, catalog rows and cached exports — so a stream
//! created later with the same id starts with an empty recordings list (decision 0008).
//!
//! Crash safety: the stream's directory is first *renamed* into `<recordings>/.trash/` (one atomic step), then its
//! rows are deleted, then the trash is emptied. A crash after the rename leaves rows without files (healed away at
//! the next start) and a trash directory (emptied at the next start); it never leaves files in the stream's
//! directory without rows, which the heal would index back under the old id. Recordings whose stream is no longer
//! registered at start-up (a delete cut short) are removed the same way by [`orphans`].

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tracing::{info, warn};

use crate::store::{other, Store, StoreError};

/// Where recordings and cached exports live.
#[derive(Clone, Debug)]
pub struct Dirs {
    /// `<recordings>/<stream>/<start_ms>.mp4`.
    pub recordings: PathBuf,
    /// `<exports>/<stream>/…`.
    pub exports: PathBuf,
}

/// The trash directory inside the recordings directory: a name no stream id can have (ids are `[A-Za-z0-9_-]`).
const TRASH: &str = ".trash";

/// Deletes every recording of `source_id` and its cached exports. Returns how many catalog rows went.
pub async fn recordings(store: &Store, dirs: &Dirs, source_id: &str) -> anyhow::Result<usize> {
    let (dirs, id) = (dirs.clone(), source_id.to_owned());
    let trashed = tokio::task::spawn_blocking({
        let (dirs, id) = (dirs.clone(), id.clone());
        move || move_to_trash(&dirs, &id)
    })
    .await??;
    let rows = store.delete_stream_segments(&id).await?;
    tokio::task::spawn_blocking(move || {
        if let Some(t) = trashed {
            remove_dir(&t);
        }
        remove_dir(&dirs.exports.join(&id));
    })
    .await?;
    if rows > 0 {
        info!(source_id = %source_id, segments = rows, "recordings of the stream deleted");
    }
    Ok(rows)
}

/// At start-up, before any recorder runs (blocking): empties the trash a crash left, and removes the recordings
/// of streams that are no longer registered. Returns how many streams' recordings went.
pub(crate) fn orphans_blocking(store: &Store, dirs: &Dirs) -> anyhow::Result<usize> {
    remove_dir(&dirs.recordings.join(TRASH));
    let registered: std::collections::HashSet<String> = store.with_conn_blocking(|conn| {
        let mut stmt = conn
            .prepare("SELECT source_id FROM streams")
            .map_err(other)?;
        let ids = stmt.query_map([], |r| r.get(0)).map_err(other)?;
        ids.collect::<Result<_, _>>().map_err(other)
    })?;
    let mut orphaned: std::collections::BTreeSet<String> = store.with_conn_blocking(|conn| {
        let mut stmt = conn
            .prepare("SELECT DISTINCT source_id FROM segments")
            .map_err(other)?;
        let ids = stmt.query_map([], |r| r.get(0)).map_err(other)?;
        ids.collect::<Result<_, _>>().map_err(other)
    })?;
    for dir in [&dirs.recordings, &dirs.exports] {
        if let Ok(entries) = std::fs::read_dir(dir) {
            orphaned.extend(
                entries
                    .flatten()
                    .filter(|e| e.path().is_dir())
                    .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                    .filter(|n| !n.starts_with('.')),
            );
        }
    }
    orphaned.retain(|id| !registered.contains(id));
    for id in &orphaned {
        warn!(source_id = %id, "recordings of a stream that is no longer registered; removing them");
        if let Some(t) = move_to_trash(dirs, id)? {
            remove_dir(&t);
        }
        store.with_conn_blocking(|conn| {
            conn.execute("DELETE FROM segments WHERE source_id = ?1", [id])
                .map_err(other)
        })?;
        remove_dir(&dirs.exports.join(id));
    }
    Ok(orphaned.len())
}

/// Renames `<recordings>/<id>` into the trash; `None` if it does not exist.
fn move_to_trash(dirs: &Dirs, id: &str) -> anyhow::Result<Option<PathBuf>> {
    let dir = dirs.recordings.join(id);
    if !dir.exists() {
        return Ok(None);
    }
    let trash = dirs.recordings.join(TRASH);
    std::fs::create_dir_all(&trash).with_context(|| format!("creating {}", trash.display()))?;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let to = trash.join(format!("{id}-{nanos}"));
    std::fs::rename(&dir, &to)
        .with_context(|| format!("moving {} to {}", dir.display(), to.display()))?;
    Ok(Some(to))
}

fn remove_dir(dir: &Path) {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => warn!(dir = %dir.display(), error = %e, "cannot remove a directory"),
    }
}

impl Store {
    /// Deletes every catalog row of a stream. Returns how many.
    pub(crate) async fn delete_stream_segments(
        &self,
        source_id: &str,
    ) -> Result<usize, StoreError> {
        let id = source_id.to_owned();
        self.with_conn(move |conn| {
            conn.execute("DELETE FROM segments WHERE source_id = ?1", [&id])
                .map_err(other)
        })
        .await
    }
}
