//! What is recorded of a stream: `GET /streams/{source_id}/recordings?start=&end=` answers the contiguous
//! recorded ranges (adjacent segments merged, gaps visible) and the segments behind each, from the catalog.

use std::time::{SystemTime, UNIX_EPOCH};

use api_models::{ErrorBody, RecordedRange, Recordings};
use axum::extract::{Query, State};
use axum::Json;
use dvr::ranges::{recorded_ranges, Span};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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
    OpenApiRouter::new().routes(routes!(list_recordings))
}

/// The stream's recorded ranges in a time window, with their segments.
#[utoipa::path(
    get,
    path = "/streams/{source_id}/recordings",
    tag = "recordings",
    params(("source_id" = String, Path, description = "Stream id"), Window),
    responses(
        (status = 200, description = "Recorded ranges, oldest first", body = Recordings),
        (status = 400, description = "start not before end, or not epoch milliseconds", body = ErrorBody),
        (status = 404, description = "No such stream", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody)
    )
)]
async fn list_recordings(
    State(state): State<AppState>,
    ApiPath(source_id): ApiPath<String>,
    window: Result<Query<Window>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Recordings>, AppError> {
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
