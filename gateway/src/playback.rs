//! Recorded playback for viewer sessions: the catalog as DVR players read it (from their own threads), the
//! checks a seek must pass before a session moves (recorded at all, within the recording, in a codec the viewer
//! can take), and opening a player, which takes a place in the viewer budget like any viewer.

use std::path::PathBuf;
use std::sync::Arc;

use api_models::TimeRange;
use dvr::player::{Player, PlayerOptions, SegmentCatalog, SegmentRef};
use dvr::ranges::{recorded_ranges, Span};
use rusqlite::{params, OptionalExtension};
use sources::Codec;

use crate::catalog::row_codec;
use crate::store::{other, Store, StoreError};
use crate::viewers::{ReserveError, SessionPermit, ViewerBudget};

/// Why a session can't play the recording where it was asked to.
#[derive(Debug, thiserror::Error)]
pub enum SeekError {
    #[error("stream {0:?} has no recording")]
    NoRecording(String),
    #[error(
        "{position_ms} is outside the recording of stream {stream:?} (and not after the live edge)"
    )]
    OutOfRange {
        stream: String,
        position_ms: i64,
        ranges: Vec<TimeRange>,
    },
    #[error("the recording at {position_ms} is {recorded}, which this session did not negotiate ({negotiated})")]
    CodecNotNegotiated {
        position_ms: i64,
        recorded: &'static str,
        negotiated: &'static str,
    },
    #[error(transparent)]
    Reserve(#[from] ReserveError),
    #[error("could not start a DVR player: {0}")]
    Spawn(std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Shared by every viewer session.
pub struct Playback {
    store: Store,
    budget: Arc<ViewerBudget>,
    mtu: usize,
}

/// A running player and the session place it holds.
pub struct DvrInput {
    pub player: Player,
    _permit: SessionPermit,
}

impl Playback {
    pub fn new(store: Store, budget: Arc<ViewerBudget>, mtu: usize) -> Arc<Playback> {
        Arc::new(Playback { store, budget, mtu })
    }

    /// Checks a seek of a session on `stream` to `position_ms`: something must be recorded there or later,
    /// the instant must not be before the oldest recording nor after `live_edge_ms`, and (for a session that
    /// negotiated one codec) the recording there must be in that codec.
    pub async fn check_seek(
        &self,
        stream: &str,
        position_ms: i64,
        live_edge_ms: Option<i64>,
        codec: Option<Codec>,
    ) -> Result<(), SeekError> {
        let now_ms = crate::registry::now_ms();
        let (id, stream_owned) = (stream.to_owned(), stream.to_owned());
        // One look at the catalog: its bounds and the segment that would play, never every row.
        let (bounds, playing) = self
            .store
            .with_conn(move |conn| {
                let bounds: Option<(i64, i64)> = conn
                    .query_row(
                        "SELECT MIN(start_ms), MAX(COALESCE(end_ms, ?2)) FROM segments WHERE source_id = ?1",
                        params![id, now_ms],
                        |r| Ok(r.get::<_, Option<i64>>(0)?.zip(r.get::<_, Option<i64>>(1)?)),
                    )
                    .map_err(other)?;
                let playing: Option<String> = conn
                    .query_row(
                        "SELECT codec FROM segments WHERE source_id = ?1 AND (end_ms IS NULL OR end_ms > ?2)
                         ORDER BY start_ms, id LIMIT 1",
                        params![id, position_ms],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(other)?;
                Ok((bounds, playing))
            })
            .await?;
        let Some((oldest, newest)) = bounds else {
            return Err(SeekError::NoRecording(stream_owned));
        };
        let edge = live_edge_ms.unwrap_or(now_ms).max(newest);
        if position_ms < oldest || position_ms > edge {
            return Err(SeekError::OutOfRange {
                ranges: self.ranges(stream).await?,
                stream: stream_owned,
                position_ms,
            });
        }
        if let (Some(want), Some(recorded)) = (codec, playing.as_deref().map(row_codec)) {
            if recorded != want {
                return Err(SeekError::CodecNotNegotiated {
                    position_ms,
                    recorded: recorded.name(),
                    negotiated: want.name(),
                });
            }
        }
        Ok(())
    }

    /// The stream's recorded ranges (for a refusal's body).
    async fn ranges(&self, stream: &str) -> Result<Vec<TimeRange>, SeekError> {
        let now_ms = crate::registry::now_ms();
        let rows = self.store.segments(stream, i64::MIN, i64::MAX).await?;
        let spans: Vec<Span> = rows
            .iter()
            .map(|r| Span {
                id: r.id,
                start_ms: r.start_ms,
                end_ms: r.end_ms.unwrap_or(now_ms.max(r.start_ms)),
            })
            .collect();
        Ok(recorded_ranges(&spans, i64::MIN, i64::MAX)
            .into_iter()
            .map(|r| TimeRange {
                start_ms: r.start_ms,
                end_ms: r.end_ms,
            })
            .collect())
    }

    /// Starts a player for a session on `stream` (it waits for its first seek), taking a viewer place.
    pub fn open(&self, stream: &str, codec: Option<Codec>) -> Result<DvrInput, SeekError> {
        let permit = self.budget.reserve()?;
        let catalog = Arc::new(Catalog {
            store: self.store.clone(),
        });
        let player = Player::spawn(
            catalog,
            PlayerOptions {
                stream_id: stream.to_owned(),
                codec,
                mtu: self.mtu,
                poll_interval: std::time::Duration::from_millis(100),
            },
        )
        .map_err(SeekError::Spawn)?;
        Ok(DvrInput {
            player,
            _permit: permit,
        })
    }
}

/// The catalog as a player's thread reads it.
struct Catalog {
    store: Store,
}

impl SegmentCatalog for Catalog {
    fn segments_from(
        &self,
        stream: &str,
        from_ms: i64,
        limit: usize,
    ) -> Result<Vec<SegmentRef>, String> {
        self.store
            .with_conn_blocking(|conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT id, start_ms, end_ms, path, codec FROM segments
                         WHERE source_id = ?1 AND (end_ms IS NULL OR end_ms > ?2)
                         ORDER BY start_ms, id LIMIT ?3",
                    )
                    .map_err(other)?;
                let rows = stmt
                    .query_map(params![stream, from_ms, limit as i64], |r| {
                        Ok(SegmentRef {
                            id: r.get(0)?,
                            start_ms: r.get(1)?,
                            end_ms: r.get(2)?,
                            path: PathBuf::from(r.get::<_, String>(3)?),
                            codec: row_codec(&r.get::<_, String>(4)?),
                        })
                    })
                    .map_err(other)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(other)
            })
            .map_err(|e| e.to_string())
    }
}
