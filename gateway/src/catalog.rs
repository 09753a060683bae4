//! The recordings catalog: the `segments` table of the gateway's database, kept from the recorders' reports, and
//! each recorded stream's recording status.
//!
//! A recorder ([`dvr::recorder`]) reports every segment it opens, closes or fails on; [`follow_recorder`] writes
//! those reports into the table (a row is `writing` until its file is finalized, then `complete`) and keeps the
//! [`RecordingStatus`] the stream view shows. At start-up, [`heal`] makes the table match the disk.

use std::path::Path;
use std::sync::Arc;

use api_models::{RecordingStatusView, SegmentView};
use dvr::recorder::RecorderEvent;
use dvr::recover::SegmentInfo;
use parking_lot::Mutex;
use rusqlite::{params, OptionalExtension};
use sources::Codec;
use tokio::sync::mpsc;
use tracing::warn;

use crate::retention::RetentionTrigger;
use crate::store::{other, Store, StoreError};

/// One catalog row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentRow {
    pub id: i64,
    pub start_ms: i64,
    /// `None` while the segment is written.
    pub end_ms: Option<i64>,
    pub path: String,
    pub bytes: u64,
    pub codec: String,
    pub width: u32,
    pub height: u32,
    pub state: String,
}

impl SegmentRow {
    /// Reads the columns `id, start_ms, end_ms, path, bytes, codec, width, height, state`, in that order.
    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<SegmentRow> {
        Ok(SegmentRow {
            id: r.get(0)?,
            start_ms: r.get(1)?,
            end_ms: r.get(2)?,
            path: r.get(3)?,
            bytes: r.get::<_, i64>(4)? as u64,
            codec: r.get(5)?,
            width: r.get(6)?,
            height: r.get(7)?,
            state: r.get(8)?,
        })
    }

    /// The API view; a segment being written ends `now_ms` as far as anyone can tell.
    pub fn view(&self, now_ms: i64) -> SegmentView {
        SegmentView {
            start_ms: self.start_ms,
            end_ms: self.end_ms.unwrap_or(now_ms.max(self.start_ms)),
            bytes: self.bytes,
            codec: self.codec.clone(),
            width: self.width,
            height: self.height,
            state: self.state.clone(),
        }
    }
}

/// A stream's recording state, as the stream view shows it.
#[derive(Clone, Debug, Default)]
pub struct RecordingStatus {
    pub active: bool,
    pub writing: bool,
    pub bytes: u64,
    pub oldest_ms: Option<i64>,
    pub newest_ms: Option<i64>,
    pub last_error: Option<String>,
    pub failed: bool,
    pub dropped_frames: u64,
    pub dropped_gaps: u64,
}

impl RecordingStatus {
    pub fn view(&self) -> RecordingStatusView {
        let state = match (self.active, self.failed, self.writing) {
            (false, _, _) => "off",
            (true, true, _) => "error",
            (true, false, true) => "recording",
            (true, false, false) => "waiting",
        };
        RecordingStatusView {
            state: state.to_owned(),
            bytes: self.bytes,
            oldest_ms: self.oldest_ms,
            newest_ms: self.newest_ms,
            last_error: self.last_error.clone(),
            dropped_frames: self.dropped_frames,
            dropped_gaps: self.dropped_gaps,
        }
    }
}

fn codec_name(c: Codec) -> &'static str {
    c.name()
}

/// The codec of a `segments.codec` value (written by [`codec_name`]); H.264 for anything else.
pub(crate) fn row_codec(name: &str) -> Codec {
    Codec::from_name(name).unwrap_or(Codec::H264)
}

impl Store {
    /// Adds a segment that starts being written.
    pub async fn segment_opened(
        &self,
        source_id: &str,
        path: &Path,
        start_ms: i64,
        codec: Codec,
        width: u32,
        height: u32,
    ) -> Result<(), StoreError> {
        let (id, path) = (source_id.to_owned(), path.to_string_lossy().into_owned());
        self.with_conn(move |conn| {
            conn.execute(
                "INSERT INTO segments (source_id, start_ms, path, codec, width, height, state)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'writing')
                 ON CONFLICT (path) DO UPDATE SET start_ms = ?2, end_ms = NULL, bytes = 0, state = 'writing'",
                params![id, start_ms, path, codec_name(codec), width, height],
            )
            .map_err(other)?;
            Ok(())
        })
        .await
    }

    /// Marks a segment finalized, with its real end and size.
    pub async fn segment_closed(
        &self,
        path: &Path,
        end_ms: i64,
        bytes: u64,
    ) -> Result<(), StoreError> {
        let path = path.to_string_lossy().into_owned();
        self.with_conn(move |conn| {
            conn.execute(
                "UPDATE segments SET end_ms = ?2, bytes = ?3, state = 'complete' WHERE path = ?1",
                params![path, end_ms, bytes as i64],
            )
            .map_err(other)?;
            Ok(())
        })
        .await
    }

    /// A stream's segments overlapping `[from_ms, to_ms)`, by start time.
    pub async fn segments(
        &self,
        source_id: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<SegmentRow>, StoreError> {
        let id = source_id.to_owned();
        self.with_conn(move |conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT id, start_ms, end_ms, path, bytes, codec, width, height, state FROM segments
                     WHERE source_id = ?1 AND start_ms < ?3 AND (end_ms IS NULL OR end_ms > ?2)
                     ORDER BY start_ms, id",
                )
                .map_err(other)?;
            let rows = stmt
                .query_map(params![id, from_ms, to_ms], SegmentRow::read)
                .map_err(other)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(other)
        })
        .await
    }
}

/// After a failed write: cuts the segment after its last complete fragment and marks it `recovered` with its real
/// end; a file with nothing readable goes, with its row.
async fn keep_what_was_written(
    store: &Store,
    source_id: &str,
    path: &Path,
    status: &Arc<Mutex<RecordingStatus>>,
) -> Result<(), StoreError> {
    let Some(row) = store
        .segment_by_path(path)
        .await?
        .filter(|r| r.state == "writing")
    else {
        return Ok(());
    };
    let p = path.to_owned();
    match tokio::task::spawn_blocking(move || dvr::recover::recover(&p)).await {
        Ok(Ok(info)) => {
            status.lock().bytes += info.bytes;
            store
                .segment_recovered(source_id, path, row.start_ms, &info)
                .await
        }
        _ => {
            let p = path.to_owned();
            let _ = tokio::task::spawn_blocking(move || remove_file(&p)).await;
            store.delete_segment(row.id).await
        }
    }
}

/// Writes one recorder's reports into the catalog until the recorder stops, keeping `status` current.
pub async fn follow_recorder(
    store: Store,
    source_id: String,
    mut events: mpsc::UnboundedReceiver<RecorderEvent>,
    status: Arc<Mutex<RecordingStatus>>,
    retention: RetentionTrigger,
) {
    if let Ok((bytes, oldest, newest)) = store.recorded_totals(&source_id).await {
        let mut s = status.lock();
        s.bytes = bytes;
        s.oldest_ms = oldest;
        s.newest_ms = newest;
    }
    while let Some(event) = events.recv().await {
        let result = match &event {
            RecorderEvent::Opened {
                path,
                start_ms,
                codec,
                width,
                height,
            } => {
                {
                    let mut s = status.lock();
                    s.writing = true;
                    s.failed = false;
                    s.oldest_ms = Some(s.oldest_ms.map_or(*start_ms, |o| o.min(*start_ms)));
                }
                store
                    .segment_opened(&source_id, path, *start_ms, *codec, *width, *height)
                    .await
            }
            RecorderEvent::Closed {
                path,
                end_ms,
                bytes,
                ..
            } => {
                {
                    let mut s = status.lock();
                    s.writing = false;
                    s.bytes += bytes;
                    s.newest_ms = Some(s.newest_ms.map_or(*end_ms, |n| n.max(*end_ms)));
                }
                let r = store.segment_closed(path, *end_ms, *bytes).await;
                retention.poke();
                r
            }
            RecorderEvent::Dropped {
                from_ms,
                to_ms,
                frames,
            } => {
                // No row covers [from_ms, to_ms]: the recorded ranges show it as a gap.
                warn!(source_id = %source_id, from_ms, to_ms, frames, "recording gap: the disk fell behind");
                let mut s = status.lock();
                s.dropped_frames += frames;
                s.dropped_gaps += 1;
                Ok(())
            }
            RecorderEvent::Failed { path, error } => {
                warn!(source_id = %source_id, path = %path.display(), error = %error, "recording failed");
                {
                    let mut s = status.lock();
                    s.writing = false;
                    s.failed = true;
                    s.last_error = Some(error.clone());
                }
                // What was written up to the last complete fragment stays, as a recovered segment.
                let r = keep_what_was_written(&store, &source_id, path, &status).await;
                // Often a full disk: let retention make room before the next segment.
                retention.poke();
                r
            }
        };
        if let Err(e) = result {
            warn!(source_id = %source_id, error = %e, "recordings catalog not updated");
        }
    }
    status.lock().writing = false;
}

impl Store {
    /// A stream's recorded bytes, oldest start and newest end, from the catalog.
    pub(crate) async fn recorded_totals(
        &self,
        source_id: &str,
    ) -> Result<(u64, Option<i64>, Option<i64>), StoreError> {
        let id = source_id.to_owned();
        self.with_conn(move |conn| {
            conn.query_row(
                "SELECT COALESCE(SUM(bytes), 0), MIN(start_ms), MAX(end_ms) FROM segments WHERE source_id = ?1",
                [&id],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?, r.get(2)?)),
            )
            .map_err(other)
        })
        .await
    }

    /// The row of a segment file, if any.
    async fn segment_by_path(&self, path: &Path) -> Result<Option<SegmentRow>, StoreError> {
        let path = path.to_string_lossy().into_owned();
        self.with_conn(move |conn| {
            conn.query_row(
                "SELECT id, start_ms, end_ms, path, bytes, codec, width, height, state FROM segments
                 WHERE path = ?1",
                [&path],
                SegmentRow::read,
            )
            .optional()
            .map_err(other)
        })
        .await
    }

    /// Deletes a segment for good: its file first, then its row (a row without a file is healed away at the next
    /// start; a file without a row would be indexed back).
    pub async fn delete_recorded(&self, row: &SegmentRow) -> anyhow::Result<()> {
        let path = row.path.clone();
        tokio::task::spawn_blocking(move || remove_file(Path::new(&path))).await??;
        Ok(self.delete_segment(row.id).await?)
    }

    pub(crate) async fn delete_segment(&self, id: i64) -> Result<(), StoreError> {
        self.with_conn(move |conn| {
            conn.execute("DELETE FROM segments WHERE id = ?1", [id])
                .map_err(other)?;
            Ok(())
        })
        .await
    }

    /// Records what a file holds after recovery (or indexing), as a `recovered` row.
    async fn segment_recovered(
        &self,
        source_id: &str,
        path: &Path,
        start_ms: i64,
        info: &SegmentInfo,
    ) -> Result<(), StoreError> {
        let (id, path, info) = (source_id.to_owned(), path.to_owned(), info.clone());
        self.with_conn(move |conn| write_recovered(conn, &id, &path, start_ms, &info))
            .await
    }
}

/// Inserts or updates the `recovered` row of a file.
fn write_recovered(
    conn: &mut rusqlite::Connection,
    source_id: &str,
    path: &Path,
    start_ms: i64,
    info: &SegmentInfo,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO segments (source_id, start_ms, end_ms, path, bytes, codec, width, height, state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'recovered')
         ON CONFLICT (path) DO UPDATE SET end_ms = ?3, bytes = ?5, state = 'recovered'",
        params![
            source_id,
            start_ms,
            start_ms + info.duration_ms,
            path.to_string_lossy(),
            info.bytes as i64,
            info.codec.name(),
            info.width,
            info.height
        ],
    )
    .map_err(other)?;
    Ok(())
}

/// What [`heal`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Healed {
    pub recovered: usize,
    pub indexed: usize,
    pub forgotten: usize,
    /// Streams no longer registered whose recordings were removed (a delete a crash cut short).
    pub orphaned_streams: usize,
}

/// Makes the catalog match the disk, which is the truth: rows whose file is gone are removed, a segment left
/// `writing` by a crash is cut after its last complete fragment and marked `recovered` with its real end, and
/// files under `<recordings_dir>/<stream>/<start_ms>.mp4` without a row are measured and indexed. A file with
/// nothing readable left is deleted with its row. Recordings of streams that are no longer registered go (see
/// `purge.rs`). Runs before any recorder starts, on a blocking thread: it is all file-system and SQLite work.
pub async fn heal(
    store: &Store,
    recordings_dir: &Path,
    exports_dir: &Path,
) -> anyhow::Result<Healed> {
    let store = store.clone();
    let dirs = crate::purge::Dirs {
        recordings: recordings_dir.to_owned(),
        exports: exports_dir.to_owned(),
    };
    tokio::task::spawn_blocking(move || heal_blocking(&store, &dirs)).await?
}

fn heal_blocking(store: &Store, dirs: &crate::purge::Dirs) -> anyhow::Result<Healed> {
    let mut healed = Healed {
        orphaned_streams: crate::purge::orphans_blocking(store, dirs)?,
        ..Healed::default()
    };
    let delete_row = |id: i64| {
        store.with_conn_blocking(move |conn| {
            conn.execute("DELETE FROM segments WHERE id = ?1", [id])
                .map_err(other)
        })
    };
    let rows = store.with_conn_blocking(|conn| {
        let mut stmt = conn
            .prepare(
                "SELECT id, start_ms, end_ms, path, bytes, codec, width, height, state, source_id
                 FROM segments ORDER BY id",
            )
            .map_err(other)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(9)?, SegmentRow::read(r)?)))
            .map_err(other)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(other)
    })?;
    for (source_id, row) in &rows {
        let path = std::path::PathBuf::from(&row.path);
        if !path.exists() {
            delete_row(row.id)?;
            healed.forgotten += 1;
            continue;
        }
        if row.state != "writing" {
            continue;
        }
        match dvr::recover::recover(&path) {
            Ok(info) => {
                store.with_conn_blocking(|conn| {
                    write_recovered(conn, source_id, &path, row.start_ms, &info)
                })?;
                healed.recovered += 1;
            }
            Err(e) => {
                warn!(path = %path.display(), error = %e, "nothing recoverable in a crashed segment; removing it");
                let _ = std::fs::remove_file(&path);
                delete_row(row.id)?;
                healed.forgotten += 1;
            }
        }
    }
    let known: std::collections::HashSet<String> = rows.into_iter().map(|(_, r)| r.path).collect();
    for (source_id, path, start_ms) in segment_files(&dirs.recordings) {
        if known.contains(path.to_string_lossy().as_ref()) {
            continue;
        }
        match dvr::recover::recover(&path) {
            Ok(info) => {
                store.with_conn_blocking(|conn| {
                    write_recovered(conn, &source_id, &path, start_ms, &info)
                })?;
                healed.indexed += 1;
            }
            Err(e) => {
                warn!(path = %path.display(), error = %e, "unreadable file in the recordings directory; left alone")
            }
        }
    }
    Ok(healed)
}

/// Removes a file; one that is already gone is fine. Blocking.
pub(crate) fn remove_file(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow::Error::new(e).context(format!("deleting {}", path.display()))),
    }
}

/// `(stream, path, start_ms)` of every `<dir>/<stream>/<start_ms>.mp4`; anything else is not ours and ignored.
fn segment_files(dir: &Path) -> Vec<(String, std::path::PathBuf, i64)> {
    let mut out = Vec::new();
    let Ok(streams) = std::fs::read_dir(dir) else {
        return out;
    };
    for stream in streams.flatten() {
        let Some(source_id) = stream.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Ok(files) = std::fs::read_dir(stream.path()) else {
            continue;
        };
        for f in files.flatten() {
            let name = f.file_name();
            let Some(start) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".mp4"))
                .and_then(|n| n.parse::<i64>().ok())
            else {
                continue;
            };
            out.push((source_id.clone(), f.path(), start));
        }
    }
    out
}
