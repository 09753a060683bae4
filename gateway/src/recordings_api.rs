//! What is recorded of a stream: `GET /streams/{source_id}/recordings?start=&end=` answers the contiguous
//! recorded ranges (adjacent segments merged, gaps visible) and the segments behind each, from the catalog;
//! `GET /streams/{source_id}/recordings/export?start=&end=` answers one MP4 of a range;
//! `DELETE /streams/{source_id}/recordings?before=` removes finished segments by hand.
//!
//! Access (when an admin token is set): listing needs a viewer token of the stream with the DVR right, an export
//! one with the export right (either may come as `?token=`, for `<video>` and download URLs), deleting the admin.
//!
//! An export is built once into `<data_dir>/exports/` (named by stream, range and the segments it read) and
//! served from there with `Accept-Ranges`, so players can seek and a repeated download costs nothing; exports
//! older than an hour are removed.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use api_models::{ErrorBody, RecordedRange, Recordings};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use dvr::export::{export, ExportError, ExportPart};
use dvr::ranges::{recorded_ranges, Span};
use serde::Deserialize;
use tower::ServiceExt;
use tower_http::services::ServeFile;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::access::extract::{AdminAccess, StreamAccess};
use crate::catalog::SegmentRow;
use crate::error::{ApiPath, AppError};
use crate::AppState;

/// Latest instant a query may name: year 5138 in epoch ms. Anything beyond is a unit mistake, not a time.
const MAX_INSTANT_MS: i64 = 100_000_000_000_000;

/// The time window of a recordings query (epoch ms); either end may be left open.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// From this instant (epoch ms, inclusive).
    pub start: Option<i64>,
    /// Until this instant (epoch ms, exclusive).
    pub end: Option<i64>,
    /// A viewer token, for clients that cannot send `Authorization` (a `<video>` or download URL).
    #[serde(default)]
    pub token: Option<String>,
}

impl Window {
    fn check(&self) -> Result<(i64, i64), AppError> {
        let start = self.start.unwrap_or(0);
        let end = self.end.unwrap_or(MAX_INSTANT_MS);
        for (name, v) in [("start", start), ("end", end)] {
            if !(0..=MAX_INSTANT_MS).contains(&v) {
                return Err(AppError::BadRequest(format!(
                    "{name} must be epoch milliseconds between 0 and {MAX_INSTANT_MS}, not {v}"
                )));
            }
        }
        if start >= end {
            return Err(AppError::BadRequest(format!(
                "start ({start}) must be before end ({end})"
            )));
        }
        Ok((start, end))
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_recordings, delete_recordings))
        .routes(routes!(export_recording))
}

/// Longest range one export may cover.
const MAX_EXPORT_MS: i64 = 6 * 3600 * 1000;
/// Exports are kept this long for repeated and ranged downloads.
const EXPORT_KEEP: Duration = Duration::from_secs(3600);

/// One MP4 of a recorded range: from the keyframe at or before `start` to `end`, finished segments only.
#[utoipa::path(
    get,
    path = "/streams/{source_id}/recordings/export",
    tag = "recordings",
    params(("source_id" = String, Path, description = "Stream id"), Window),
    security((), ("viewer_token" = [])),
    responses(
        (status = 200, description = "The MP4 (`video/mp4`, `Accept-Ranges: bytes`); `X-Recording-Start-Ms` and \
            `X-Recording-End-Ms` give the instants it really covers", content_type = "video/mp4"),
        (status = 206, description = "Part of it, for a `Range` request"),
        (status = 400, description = "start or end missing, start not before end, not epoch ms, or more than 6 h",
            body = ErrorBody),
        (status = 401, description = "Viewer token missing, wrong or expired", body = ErrorBody),
        (status = 403, description = "A token for another stream, or without the export right", body = ErrorBody),
        (status = 404, description = "No such stream, or nothing recorded (and finished) in the range",
            body = ErrorBody),
        (status = 422, description = "The range crosses a change of codec or size; export the parts apart",
            body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody)
    )
)]
async fn export_recording(
    StreamAccess(grant): StreamAccess,
    State(state): State<AppState>,
    ApiPath(source_id): ApiPath<String>,
    window: Result<Query<Window>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    grant.require_export()?;
    let Query(window) = window.map_err(|e| AppError::BadRequest(e.body_text()))?;
    if window.start.is_none() || window.end.is_none() {
        return Err(AppError::BadRequest(
            "an export needs both start and end".into(),
        ));
    }
    let (start, end) = window.check()?;
    if end - start > MAX_EXPORT_MS {
        return Err(AppError::BadRequest(format!(
            "an export covers at most {} hours",
            MAX_EXPORT_MS / 3_600_000
        )));
    }
    state.registry.get(&source_id)?;
    let rows: Vec<SegmentRow> = state
        .registry
        .store()
        .segments(&source_id, start, end)
        .await
        .map_err(|e| AppError::Internal(anyhow::anyhow!(e).context("recordings catalog")))?
        .into_iter()
        .filter(|r| r.state != "writing")
        .collect();
    let Some(first) = rows.first() else {
        return Err(AppError::NothingRecorded(format!(
            "nothing recorded of {source_id:?} between {start} and {end}"
        )));
    };
    if let Some(other) = rows
        .iter()
        .find(|r| (&r.codec, r.width, r.height) != (&first.codec, first.width, first.height))
    {
        return Err(AppError::Unprocessable(format!(
            "the stream changed from {} {}x{} to {} {}x{} at {}; export the parts apart",
            first.codec,
            first.width,
            first.height,
            other.codec,
            other.width,
            other.height,
            other.start_ms
        )));
    }
    let codec = crate::catalog::row_codec(&first.codec);
    let dir = state.config.data_dir.join("exports");
    let last = rows.last().expect("not empty");
    let name = format!(
        "{source_id}-{start}-{end}-{}-{}-{}.mp4",
        rows.len(),
        last.id,
        last.bytes
    );
    let file = dir.join(&name);
    let parts: Vec<ExportPart> = rows
        .iter()
        .map(|r| ExportPart {
            path: PathBuf::from(&r.path),
            start_ms: r.start_ms,
        })
        .collect();
    let target = file.clone();
    let exported = tokio::task::spawn_blocking(move || -> Result<(i64, i64), ExportError> {
        std::fs::create_dir_all(&dir)?;
        remove_old_exports(&dir);
        let meta = target.with_extension("range");
        if let (true, Ok(text)) = (target.exists(), std::fs::read_to_string(&meta)) {
            if let Some((a, b)) = text.split_once(' ') {
                if let (Ok(a), Ok(b)) = (a.parse(), b.trim().parse()) {
                    return Ok((a, b));
                }
            }
        }
        // Written under a temporary name and renamed, so a half-built file is never served.
        let partial = target.with_extension("partial");
        let done = export(&parts, codec, start, end, &partial)?;
        std::fs::rename(&partial, &target)?;
        std::fs::write(&meta, format!("{} {}", done.start_ms, done.end_ms))?;
        Ok((done.start_ms, done.end_ms))
    })
    .await
    .map_err(|e| AppError::Internal(anyhow::anyhow!(e)))?;
    let (real_start, real_end) = match exported {
        Ok(r) => r,
        Err(ExportError::Empty) => {
            return Err(AppError::NothingRecorded(format!(
                "nothing recorded of {source_id:?} between {start} and {end}"
            )))
        }
        Err(e) => return Err(AppError::Internal(anyhow::anyhow!(e).context("export"))),
    };
    let mut req = axum::http::Request::builder().uri("/");
    if let Some(range) = headers.get(header::RANGE) {
        req = req.header(header::RANGE, range);
    }
    let req = req
        .body(axum::body::Body::empty())
        .map_err(|e| AppError::Internal(anyhow::anyhow!(e)))?;
    let served = ServeFile::new_with_mime(&file, &"video/mp4".parse().expect("a MIME type"))
        .oneshot(req)
        .await
        .map_err(|e| AppError::Internal(anyhow::anyhow!(e)))?;
    let mut resp = served.map(axum::body::Body::new).into_response();
    let h = resp.headers_mut();
    h.insert("x-recording-start-ms", real_start.into());
    h.insert("x-recording-end-ms", real_end.into());
    if let Ok(v) = format!("attachment; filename=\"{source_id}-{real_start}.mp4\"").parse() {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

/// The instant before which `DELETE .../recordings` removes segments.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct Before {
    /// Epoch ms: finished segments that end at or before it are deleted.
    pub before: i64,
}

/// Manual clean-up: deletes the stream's finished segments that end at or before `before`, files and catalog rows.
/// The segment being written is never touched.
#[utoipa::path(
    delete,
    path = "/streams/{source_id}/recordings",
    tag = "recordings",
    params(("source_id" = String, Path, description = "Stream id"), Before),
    security((), ("admin_token" = [])),
    responses(
        (status = 200, description = "How many segments and bytes were deleted", body = api_models::DeletedRecordings),
        (status = 400, description = "before missing or not epoch milliseconds", body = ErrorBody),
        (status = 401, description = "Admin token missing or wrong (when one is configured)", body = ErrorBody),
        (status = 404, description = "No such stream", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody)
    )
)]
async fn delete_recordings(
    _: AdminAccess,
    State(state): State<AppState>,
    ApiPath(source_id): ApiPath<String>,
    before: Result<Query<Before>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<api_models::DeletedRecordings>, AppError> {
    let Query(Before { before }) = before.map_err(|e| AppError::BadRequest(e.body_text()))?;
    if !(0..=MAX_INSTANT_MS).contains(&before) {
        return Err(AppError::BadRequest(format!(
            "before must be epoch milliseconds between 0 and {MAX_INSTANT_MS}"
        )));
    }
    state.registry.get(&source_id)?;
    let store = state.registry.store();
    let rows = store
        .segments(&source_id, i64::MIN, before)
        .await
        .map_err(|e| AppError::Internal(anyhow::anyhow!(e)))?;
    let (mut segments, mut bytes) = (0u64, 0u64);
    for row in rows
        .iter()
        .filter(|r| r.state != "writing" && r.end_ms.is_some_and(|e| e <= before))
    {
        store.delete_recorded(row).await?;
        segments += 1;
        bytes += row.bytes;
    }
    state
        .registry
        .refresh_recorded_totals(&source_id)
        .await
        .map_err(|e| AppError::Internal(anyhow::anyhow!(e)))?;
    Ok(Json(api_models::DeletedRecordings { segments, bytes }))
}

/// Deletes exports older than [`EXPORT_KEEP`].
fn remove_old_exports(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > EXPORT_KEEP);
        if old {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// The stream's recorded ranges in a time window, with their segments.
#[utoipa::path(
    get,
    path = "/streams/{source_id}/recordings",
    tag = "recordings",
    params(("source_id" = String, Path, description = "Stream id"), Window),
    security((), ("viewer_token" = [])),
    responses(
        (status = 200, description = "Recorded ranges, oldest first", body = Recordings),
        (status = 400, description = "start not before end, or not epoch milliseconds", body = ErrorBody),
        (status = 401, description = "Viewer token missing, wrong or expired", body = ErrorBody),
        (status = 403, description = "A token for another stream, or without the DVR right", body = ErrorBody),
        (status = 404, description = "No such stream", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody)
    )
)]
async fn list_recordings(
    StreamAccess(grant): StreamAccess,
    State(state): State<AppState>,
    ApiPath(source_id): ApiPath<String>,
    window: Result<Query<Window>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Recordings>, AppError> {
    grant.require_dvr()?;
    let Query(window) = window.map_err(|e| AppError::BadRequest(e.body_text()))?;
    let (start, end) = window.check()?;
    state.registry.get(&source_id)?;
    let rows = state
        .registry
        .store()
        .segments(&source_id, start, end)
        .await
        .map_err(|e| AppError::Internal(anyhow::anyhow!(e).context("recordings catalog")))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let spans: Vec<Span> = rows
        .iter()
        .map(|r| Span {
            id: r.id,
            start_ms: r.start_ms,
            end_ms: r.end_ms.unwrap_or(now),
        })
        .collect();
    let ranges = recorded_ranges(&spans, start, end)
        .into_iter()
        .map(|r| RecordedRange {
            start_ms: r.start_ms,
            end_ms: r.end_ms,
            segments: r
                .segments
                .iter()
                .filter_map(|id| rows.iter().find(|row| row.id == *id))
                .map(|row| row.view(now))
                .collect(),
        })
        .collect();
    Ok(Json(Recordings { source_id, ranges }))
}
