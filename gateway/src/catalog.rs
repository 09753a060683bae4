//! The recordings catalog: the `segments` table of the gateway's database, kept from the recorders' reports, and
//! each recorded stream's recording status.
//!
//! A recorder ([`dvr::recorder`]) reports every segment it opens, closes or fails on; [`follow_recorder`] writes
//! those reports into the table (a row is `writing` until its file is finalized, then `complete`) and keeps the
//! [`RecordingStatus`] the stream view shows.

use std::path::Path;
use std::sync::Arc;

use api_models::{RecordingStatusView, SegmentView};
use dvr::recorder::RecorderEvent;
use parking_lot::Mutex;
use rusqlite::params;
use sources::Codec;
use tokio::sync::mpsc;
use tracing::warn;

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
        }
    }
}

fn codec_name(c: Codec) -> &'static str {
    c.name()
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
                .query_map(params![id, from_ms, to_ms], |r| {
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
                })
                .map_err(other)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(other)
        })
        .await
    }
}

/// Writes one recorder's reports into the catalog until the recorder stops, keeping `status` current.
pub async fn follow_recorder(
    store: Store,
    source_id: String,
    mut events: mpsc::UnboundedReceiver<RecorderEvent>,
    status: Arc<Mutex<RecordingStatus>>,
) {
    if let Ok(rows) = store.segments(&source_id, i64::MIN, i64::MAX).await {
        let mut s = status.lock();
        s.bytes = rows.iter().map(|r| r.bytes).sum();
        s.oldest_ms = rows.iter().map(|r| r.start_ms).min();
        s.newest_ms = rows.iter().filter_map(|r| r.end_ms).max();
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
                store.segment_closed(path, *end_ms, *bytes).await
            }
            RecorderEvent::Failed { path, error } => {
                warn!(source_id = %source_id, path = %path.display(), error = %error, "recording failed");
                let mut s = status.lock();
                s.writing = false;
                s.failed = true;
                s.last_error = Some(error.clone());
                Ok(())
            }
        };
        if let Err(e) = result {
            warn!(source_id = %source_id, error = %e, "recordings catalog not updated");
        }
    }
    status.lock().writing = false;
}
