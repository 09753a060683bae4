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
//! | `POST /tokens` | 201 + a viewer token (`tokens_api.rs`) |
//! | `GET /streams/{source_id}/recordings?start=&end=` | 200 + recorded ranges (`recordings_api.rs`) |
//! | `GET /streams/{source_id}/recordings/export?start=&end=` | 200, one MP4 of the range |
//! | `DELETE /streams/{source_id}/recordings?before=` | 200 + what was deleted |
//!
//! Viewer sessions (WSC-RTP, WebRTC, WHEP) are in `viewer_api.rs`, merged into the same OpenAPI document.
//! Errors are [`ErrorBody`] JSON, mapped in `error.rs`. The served document is at `/api-docs/openapi.json`.
//! Who may call what is declared by each handler's access extractor (`access/extract.rs`): [`AdminAccess`] here,
//! except `/health` (open) and the recordings reads (a viewer token of the stream).

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

use crate::access::extract::AdminAccess;
use crate::error::{ApiJson, ApiPath, AppError};
use crate::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Camera gateway API",
        description = "Register RTSP cameras (or the built-in test pattern) as streams and watch their state. \
            Errors answer with an `ErrorBody`.\n\n\
            **Access.** With no admin token configured every call is open. With one (`--admin-token` / \
            `ADMIN_TOKEN`): management calls, reading stream configurations, listing sessions and minting \
            viewer tokens need `Authorization: Bearer <admin token>` (scheme `admin_token`); opening viewer \
            sessions, listing recordings and exports need a viewer token for the stream (scheme \
            `viewer_token`, from `POST /tokens`) or the admin token, as the bearer header or the `token` query \
            parameter. Missing, wrong or expired tokens answer 401 (`unauthorized`, `token_expired`); a token \
            for another stream or without the DVR/export right answers 403 (`forbidden`). A session id is the \
            capability over its session: it is only shown to whoever opened the session, and to the admin."
    ),
    tags(
        (name = "streams", description = "Stream registration and live status"),
        (name = "system", description = "Gateway health"),
        (name = "recordings", description = "What is recorded of each stream"),
        (name = "viewers", description = "Viewer sessions: WSC-RTP, WebRTC (WHEP and JSON). Opening one needs a \
            viewer token of the stream when auth is on; the session id then controls it."),
        (name = "access", description = "Viewer tokens")
    ),
    components(schemas(InputDto, InputView, TransportDto, StreamStateDto, ErrorBody)),
    modifiers(&ApiTokenScheme)
)]
struct ApiDoc;

/// Declares the bearer schemes routes refer to: `admin_token` and `viewer_token`.
struct ApiTokenScheme;

impl Modify for ApiTokenScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The admin token (--admin-token / ADMIN_TOKEN). Needed only when one is configured",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "viewer_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A viewer token from POST /tokens (or the admin token), as the bearer header or the \
                         `token` query parameter. Needed only when an admin token is configured",
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
        .merge(crate::tokens_api::router())
}

/// Registers a stream and starts pulling it.
#[utoipa::path(
    post,
    path = "/streams",
    tag = "streams",
    request_body = CreateStream,
    security((), ("admin_token" = [])),
    responses(
        (status = 201, description = "Stream registered and started", body = StreamView,
            headers(("Location" = String, description = "URL of the new stream"))),
        (status = 400, description = "Invalid body: not a JSON object, bad JSON, unknown field, bad source_id, \
            no input, bad URL scheme, duplicate label", body = ErrorBody),
        (status = 401, description = "Admin token missing or wrong (when one is configured)", body = ErrorBody),
        (status = 409, description = "source_id is taken", body = ErrorBody),
        (status = 413, description = "Body larger than 64 KiB", body = ErrorBody),
        (status = 429, description = "max_streams reached", body = ErrorBody),
        (status = 503, description = "Shutting down", body = ErrorBody),
        (status = 500, description = "Internal error (detail in the gateway's log)", body = ErrorBody)
    )
)]
async fn create_stream(
    _: AdminAccess,
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
    security((), ("admin_token" = [])),
    responses(
        (status = 200, description = "All streams", body = Vec<StreamView>),
        (status = 401, description = "Admin token missing or wrong (when one is configured)", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody)
    )
)]
async fn list_streams(_: AdminAccess, State(state): State<AppState>) -> Json<Vec<StreamView>> {
    Json(state.registry.list())
}

/// One stream with its live status.
#[utoipa::path(
    get,
    path = "/streams/{source_id}",
    tag = "streams",
    params(("source_id" = String, Path, description = "Stream id")),
    security((), ("admin_token" = [])),
    responses(
        (status = 200, description = "The stream", body = StreamView),
        (status = 401, description = "Admin token missing or wrong (when one is configured)", body = ErrorBody),
        (status = 404, description = "No such stream", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody)
    )
)]
async fn get_stream(
    _: AdminAccess,
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
    security((), ("admin_token" = [])),
    responses(
        (status = 200, description = "The changed stream", body = StreamView),
        (status = 400, description = "Invalid body (not a JSON object, bad JSON, bad values)", body = ErrorBody),
        (status = 401, description = "Admin token missing or wrong (when one is configured)", body = ErrorBody),
        (status = 404, description = "No such stream", body = ErrorBody),
        (status = 409, description = "Another request is changing this stream", body = ErrorBody),
        (status = 413, description = "Body larger than 64 KiB", body = ErrorBody),
        (status = 503, description = "Shutting down", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody)
    )
)]
async fn patch_stream(
    _: AdminAccess,
    State(state): State<AppState>,
    ApiPath(source_id): ApiPath<String>,
    ApiJson(patch): ApiJson<PatchStream>,
) -> Result<Json<StreamView>, AppError> {
    Ok(Json(state.registry.patch(&source_id, patch).await?))
}

/// Stops a stream, disconnects its viewers and forgets it.
#[utoipa::path(
    delete,
    path = "/streams/{source_id}",
    tag = "streams",
    params(("source_id" = String, Path, description = "Stream id")),
    security((), ("admin_token" = [])),
    responses(
        (status = 204, description = "Stream deleted"),
        (status = 401, description = "Admin token missing or wrong (when one is configured)", body = ErrorBody),
        (status = 404, description = "No such stream", body = ErrorBody),
        (status = 409, description = "Another request is changing this stream", body = ErrorBody),
        (status = 503, description = "Shutting down", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody)
    )
)]
async fn delete_stream(
    _: AdminAccess,
    State(state): State<AppState>,
    ApiPath(source_id): ApiPath<String>,
) -> Result<StatusCode, AppError> {
    state.registry.delete(&source_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Liveness, a stream count, whether auth is on, and what an operator should fix (open beyond loopback).
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
        auth: state.access.enabled(),
        warnings: state.access.warnings(state.config.bind),
    })
}
