//! The REST API: stream management and health, documented as OpenAPI 3.1 with utoipa.
//!
//! | method and path | answer |
//! |---|---|
//! | `POST /streams` | 201 + [`StreamView`], `Location: /streams/{id}` |
//! | `GET /streams` | 200 + list of [`StreamView`] by id |
//! | `GET /streams/{source_id}` | 200 + [`StreamView`] |
//! | `PATCH /streams/{source_id}` | 200 + [`StreamView`] |
//! | `DELETE /streams/{source_id}` | 204 |
//! | `GET /health` | 200 + [`Health`] |
//! | `GET /streams/{source_id}/recordings?start=&end=` | 200 + recorded ranges (`recordings_api.rs`) |
//! | `GET /streams/{source_id}/recordings/export?start=&end=` | 200, one MP4 of the range |
//! | `DELETE /streams/{source_id}/recordings?before=` | 200 + what was deleted |
//!
//! Viewer sessions (WSC-RTP, WebRTC, WHEP) are in `viewer_api.rs`, merged into the same OpenAPI document.
//! Errors are [`ErrorBody`] JSON, mapped in `error.rs`. The served document is at `/api-docs/openapi.json`.

use api_models::{
    CreateStream, ErrorBody, Health, InputDto, InputView, PatchStream, StreamStateDto, StreamView,
    TransportDto,
};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiJson, ApiPath, AppError};
use crate::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Camera gateway API",
        description = "Register RTSP cameras (or the built-in test pattern) as streams and watch their state. \
            Errors answer with an `ErrorBody`. When the gateway runs with an API token, POST, PATCH and DELETE \
            need `Authorization: Bearer <token>`."
    ),
    tags(
        (name = "streams", description = "Stream registration and live status"),
        (name = "system", description = "Gateway health"),
        (name = "recordings", description = "What is recorded of each stream"),
        (name = "viewers", description = "Viewer sessions: WSC-RTP, WebRTC (WHEP and JSON). Open to every client, \
            also when the gateway runs with an API token.")
    ),
    components(schemas(InputDto, InputView, TransportDto, StreamStateDto, ErrorBody)),
    modifiers(&ApiTokenScheme)
)]
struct ApiDoc;

/// Declares the `api_token` bearer scheme that management calls refer to.
struct ApiTokenScheme;

impl Modify for ApiTokenScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "Needed only when the gateway is started with --api-token / API_TOKEN",
                    ))
                    .build(),
            ),
        );
    }
}

/// The API's routes with their OpenAPI document (split with `split_for_parts`).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(list_streams, create_stream))
        .routes(routes!(get_stream, patch_stream, delete_stream))
        .routes(routes!(health))
        .merge(crate::recordings_api::router())
}

/// Registers a stream and starts pulling it.
#[utoipa::path(
    post,
    path = "/streams",
    tag = "streams",
    request_body = CreateStream,
    security((), ("api_token" = [])),
    responses(
        (status = 201, description = "Stream registered and started", body = StreamView,
            headers(("Location" = String, description = "URL of the new stream"))),
        (status = 400, description = "Invalid body: bad JSON, unknown field, bad source_id, no input, bad URL scheme, \
            duplicate label", body = ErrorBody),
        (status = 401, description = "API token missing or wrong", body = ErrorBody),
        (status = 409, description = "source_id is taken", body = ErrorBody),
        (status = 413, description = "Body larger than 64 KiB", body = ErrorBody),
        (status = 429, description = "max_streams reached", body = ErrorBody),
        (status = 503, description = "Shutting down", body = ErrorBody),
        (status = 500, description = "Internal error (detail in the gateway's log)", body = ErrorBody)
    )
)]
async fn create_stream(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<CreateStream>,
) -> Result<Response, AppError> {
    let view = state.registry.create(req).await?;
    let location = format!("/streams/{}", view.source_id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(view),
    )
        .into_response())
}

/// Lists every stream with its live status, by id.
#[utoipa::path(
    get,
    path = "/streams",
    tag = "streams",
    responses(
        (status = 200, description = "All streams", body = Vec<StreamView>),
        (status = 500, description = "Internal error", body = ErrorBody)
    )
)]
async fn list_streams(State(state): State<AppState>) -> Json<Vec<StreamView>> {
    Json(state.registry.list())
}

/// One stream with its live status.
#[utoipa::path(
    get,
    path = "/streams/{source_id}",
    tag = "streams",
    params(("source_id" = String, Path, description = "Stream id")),
    responses(
        (status = 200, description = "The stream", body = StreamView),
        (status = 404, description = "No such stream", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody)
    )
)]
async fn get_stream(
    State(state): State<AppState>,
    ApiPath(source_id): ApiPath<String>,
) -> Result<Json<StreamView>, AppError> {
    Ok(Json(state.registry.get(&source_id)?))
}

/// Changes a stream. New inputs, credentials or restart interval restart its ingest; viewers stay attached.
#[utoipa::path(
    patch,
    path = "/streams/{source_id}",
    tag = "streams",
    params(("source_id" = String, Path, description = "Stream id")),
    request_body = PatchStream,
    security((), ("api_token" = [])),
    responses(
        (status = 200, description = "The changed stream", body = StreamView),
        (status = 400, description = "Invalid body", body = ErrorBody),
        (status = 401, description = "API token missing or wrong", body = ErrorBody),
        (status = 404, description = "No such stream", body = ErrorBody),
        (status = 409, description = "Another request is changing this stream", body = ErrorBody),
        (status = 413, description = "Body larger than 64 KiB", body = ErrorBody),
        (status = 503, description = "Shutting down", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody)
    )
)]
async fn patch_stream(
    State(state): State<AppState>,
    ApiPath(source_id): ApiPath<String>,
    ApiJson(patch): ApiJson<PatchStream>,
) -> Result<Json<StreamView>, AppError> {
    Ok(Json(state.registry.patch(&source_id, patch).await?))
}

/// Stops a stream, disconnects its viewers, deletes its recordings (files, catalog, cached exports) and forgets
/// it. A stream created later with the same id starts with no recordings; export what should be kept first. The
/// deletion completes even if the client disconnects before the answer.
#[utoipa::path(
    delete,
    path = "/streams/{source_id}",
    tag = "streams",
    params(("source_id" = String, Path, description = "Stream id")),
    security((), ("api_token" = [])),
    responses(
        (status = 204, description = "Stream and its recordings deleted"),
        (status = 401, description = "API token missing or wrong", body = ErrorBody),
        (status = 404, description = "No such stream", body = ErrorBody),
        (status = 409, description = "Another request is changing this stream", body = ErrorBody),
        (status = 503, description = "Shutting down", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody)
    )
)]
async fn delete_stream(
    State(state): State<AppState>,
    ApiPath(source_id): ApiPath<String>,
) -> Result<StatusCode, AppError> {
    state.registry.delete(&source_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Liveness and a stream count.
#[utoipa::path(
    get,
    path = "/health",
    tag = "system",
    responses(
        (status = 200, description = "The gateway serves", body = Health),
        (status = 500, description = "Internal error", body = ErrorBody)
    )
)]
async fn health(State(state): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        streams: state.registry.len(),
    })
}
