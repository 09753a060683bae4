//! The viewer half of the HTTP API: sessions that watch a stream. With auth on, opening a session needs a viewer
//! token of the stream (or the admin token), and starting in the recording its DVR right; listing a stream's
//! sessions is the admin's. A session id is a 128-bit random capability, shown only to whoever opened the session
//! (and the admin): it alone lets a client patch, end, control or read the stats of the session.
//!
//! | method and path | answer |
//! |---|---|
//! | `GET /streams/{source_id}/wsc-rtp` | 101, a WSC-RTP session (WSC-RTP-PROTOCOL.md) |
//! | `POST /streams/{source_id}/whep` | WHEP: `application/sdp` offer → 201, `application/sdp` answer, `Location` |
//! | `PATCH /sessions/{session_id}` | WHEP trickle ICE (`application/trickle-ice-sdpfrag`) → 204 |
//! | `DELETE /sessions/{session_id}` | 204, the session ends |
//! | `POST /streams/{source_id}/webrtc` | JSON `{offer}` → 201 [`WebRtcAnswer`] |
//! | `GET /streams/{source_id}/webrtc` | 200 + the stream's WebRTC sessions |
//! | `GET /sessions/{session_id}/stats` | 200 + [`WebRtcSessionStats`] |
//! | `POST /sessions/{session_id}/seek`, `/live`, `/speed`, `/pause`, `/play` | 200 + [`SessionModeView`] |
//! | `GET /sessions/{session_id}/mode` | 200 + [`SessionModeView`] |
//!
//! Session control works on every kind of session (WHEP, JSON WebRTC, WSC-RTP `init.session_id`).

use api_models::{
    ErrorBody, OutOfRangeBody, SeekRequest, SessionModeView, SpeedRequest, WebRtcAnswer,
    WebRtcOffer, WebRtcSessionStats, WebRtcSessionView,
};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hub::Hub;
use publishers::viewer::{Command, StartAt};
use serde::Deserialize;
use tower_http::cors::{Any, CorsLayer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::access::extract::{AdminAccess, StreamAccess};
use crate::access::Grant;
use crate::error::{ApiJson, ApiPath, AppError};
use crate::session_control::check_command;
use crate::AppState;

/// WHEP offers and answers.
const SDP: &str = "application/sdp";
/// WHEP trickle ICE (RFC 8840).
const SDP_FRAG: &str = "application/trickle-ice-sdpfrag";

#[derive(OpenApi)]
#[openapi(components(schemas(WebRtcSessionView)))]
struct ViewerDoc;

/// The viewer routes with their part of the OpenAPI document.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ViewerDoc::openapi())
        .routes(routes!(wsc_rtp))
        .routes(routes!(whep))
        .routes(routes!(create_webrtc, list_webrtc))
        .routes(routes!(trickle, delete_session))
        .routes(routes!(session_stats))
        .routes(routes!(seek))
        .routes(routes!(go_live))
        .routes(routes!(set_speed))
        .routes(routes!(pause))
        .routes(routes!(play))
        .routes(routes!(session_mode))
}

/// Query of the calls that open a session.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct OpenQuery {
    /// Start in the recording at this instant (wall-clock epoch ms) instead of live.
    start_ms: Option<i64>,
    /// WSC-RTP only: the protocol version the client speaks (1 to 3; default 1). UDP media needs 3.
    version: Option<u32>,
    /// A viewer token, for clients that cannot send `Authorization` (a browser's WebSocket).
    #[allow(dead_code)]
    // Read by the `StreamAccess` extractor from the raw query; here for the document.
    token: Option<String>,
}

fn open_query(q: Result<Query<OpenQuery>, QueryRejection>) -> Result<OpenQuery, AppError> {
    q.map(|Query(q)| q)
        .map_err(|e| AppError::BadRequest(e.body_text()))
}

/// Where a new session starts; a start in the recording needs the DVR right and is checked as a seek would be.
async fn start_at(
    state: &AppState,
    hub: &Hub,
    start_ms: Option<i64>,
    codec: Option<sources::Codec>,
    grant: Grant,
) -> Result<StartAt, AppError> {
    let Some(position_ms) = start_ms else {
        return Ok(StartAt::Live);
    };
    grant.require_dvr()?;
    check_command(&state.playback, hub, codec, &Command::Seek { position_ms }).await?;
    Ok(StartAt::Dvr { position_ms })
}

/// Where a new WebRTC session starts: a start in the recording must also be in the codec the offer gets.
async fn webrtc_start_at(
    state: &AppState,
    hub: &Hub,
    offer: &str,
    start_ms: Option<i64>,
    grant: Grant,
) -> Result<StartAt, AppError> {
    let codec = match start_ms {
        Some(_) => {
            grant.require_dvr()?;
            Some(state.webrtc.codec_for(hub, offer)?)
        }
        None => None,
    };
    start_at(state, hub, start_ms, codec, grant).await
}

/// Viewer calls may come from a player page on another origin (any WHEP player): allow them, and let the page
/// read `Location`. Management calls get no CORS headers.
pub fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            header::IF_MATCH,
        ])
        .expose_headers([header::LOCATION, header::RETRY_AFTER])
}

fn hub(state: &AppState, source_id: &str) -> Result<Hub, AppError> {
    state
        .registry
        .hub(source_id)
        .ok_or_else(|| AppError::StreamNotFound(source_id.to_owned()))
}

/// The body as text of the given type, or the error a client can act on.
fn text_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    want: &str,
) -> Result<String, AppError> {
    let given = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = given.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case(want) {
        return Err(AppError::UnsupportedMediaType(format!(
            "expected `Content-Type: {want}`, got {given:?}"
        )));
    }
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::PayloadTooLarge
        } else {
            AppError::BadRequest(e.body_text())
        }
    })?;
    String::from_utf8(body.to_vec())
        .map_err(|_| AppError::BadRequest("the body is not UTF-8".into()))
}

fn location(session_id: &str) -> String {
    format!("/sessions/{session_id}")
}

/// Opens a WSC-RTP viewer session (WebSocket upgrade); the protocol is in WSC-RTP-PROTOCOL.md.
#[utoipa::path(
    get,
    path = "/streams/{source_id}/wsc-rtp",
    tag = "viewers",
    params(("source_id" = String, Path, description = "Stream id"), OpenQuery),
    security((), ("viewer_token" = [])),
    responses(
        (status = 101, description = "Switching protocols: the WSC-RTP session starts with an `init` message"),
        (status = 400, description = "Not a WebSocket upgrade request, an unknown version, or a bad start_ms",
            body = ErrorBody),
        (status = 401, description = "Viewer token missing, wrong (unauthorized) or expired (token_expired)",
            body = ErrorBody),
        (status = 403, description = "A token for another stream, or start_ms without the DVR right",
            body = ErrorBody),
        (status = 404, description = "No such stream", body = ErrorBody),
        (status = 409, description = "start_ms given and the stream has no recording", body = ErrorBody),
        (status = 416, description = "start_ms outside the recording", body = OutOfRangeBody),
        (status = 503, description = "MAX_SESSIONS sessions are open (too_many_sessions), or shutting down",
            body = ErrorBody)
    )
)]
async fn wsc_rtp(
    StreamAccess(grant): StreamAccess,
    State(state): State<AppState>,
    ApiPath(source_id): ApiPath<String>,
    query: Result<Query<OpenQuery>, QueryRejection>,
    ws: Result<
        axum::extract::ws::WebSocketUpgrade,
        axum::extract::ws::rejection::WebSocketUpgradeRejection,
    >,
) -> Result<Response, AppError> {
    let hub = hub(&state, &source_id)?;
    let query = open_query(query)?;
    if query.start_ms.is_some() {
        grant.require_dvr()?;
    }
    let ws = ws.map_err(|e| AppError::BadRequest(e.body_text()))?;
    let version = query.version.unwrap_or(publishers::wsc::DEFAULT_VERSION);
    if !(1..=publishers::wsc::LATEST_VERSION).contains(&version) {
        return Err(AppError::BadRequest(format!(
            "WSC-RTP version {version} is not spoken here (1 to {})",
            publishers::wsc::LATEST_VERSION
        )));
    }
    let at = start_at(&state, &hub, query.start_ms, None, grant).await?;
    let permit = state.viewers.reserve()?;
    let wsc = state.wsc.clone();
    let start = crate::wsc::WscStart {
        at,
        version,
        dvr: grant.dvr,
    };
    Ok(ws
        .max_message_size(crate::wsc::MAX_WEBSOCKET_MESSAGE)
        .max_frame_size(crate::wsc::MAX_WEBSOCKET_MESSAGE)
        .read_buffer_size(crate::wsc::CLIENT_READ_BUFFER)
        .on_upgrade(move |socket| crate::wsc::run_session(socket, wsc, hub, start, permit))
        .into_response())
}

/// WHEP: plays the stream over WebRTC. The answer carries every gateway ICE candidate; the viewer's may follow
/// with `PATCH` on the `Location`.
#[utoipa::path(
    post,
    path = "/streams/{source_id}/whep",
    tag = "viewers",
    params(("source_id" = String, Path, description = "Stream id"), OpenQuery),
    request_body(content = String, content_type = "application/sdp", description = "SDP offer"),
    security((), ("viewer_token" = [])),
    responses(
        (status = 201, description = "SDP answer", content_type = "application/sdp", body = String,
            headers(("Location" = String, description = "The session resource: PATCH (trickle ICE), DELETE"))),
        (status = 400, description = "Malformed SDP, or no video section that can receive", body = ErrorBody),
        (status = 401, description = "Viewer token missing, wrong or expired", body = ErrorBody),
        (status = 403, description = "A token for another stream, or start_ms without the DVR right",
            body = ErrorBody),
        (status = 404, description = "No such stream", body = ErrorBody),
        (status = 406, description = "No codec in the offer can carry the stream; the message names what the \
            stream sends and what the offer accepts", body = ErrorBody),
        (status = 413, description = "Body larger than 64 KiB", body = ErrorBody),
        (status = 415, description = "Content-Type is not application/sdp", body = ErrorBody),
        (status = 503, description = "The stream has not delivered a picture yet (stream_not_ready, with \
            Retry-After), MAX_SESSIONS sessions are open, no media port is free, or shutting down", body = ErrorBody)
    )
)]
async fn whep(
    StreamAccess(grant): StreamAccess,
    State(state): State<AppState>,
    ApiPath(source_id): ApiPath<String>,
    query: Result<Query<OpenQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    let hub = hub(&state, &source_id)?;
    let query = open_query(query)?;
    let offer = text_body(&headers, body, SDP)?;
    let start = webrtc_start_at(&state, &hub, &offer, query.start_ms, grant).await?;
    let created = state.webrtc.create(hub, &offer, start, grant.dvr).await?;
    Ok((
        StatusCode::CREATED,
        [
            (header::CONTENT_TYPE, SDP.to_owned()),
            (header::LOCATION, location(&created.session_id)),
        ],
        created.answer,
    )
        .into_response())
}

/// Plays the stream over WebRTC, with JSON signalling.
#[utoipa::path(
    post,
    path = "/streams/{source_id}/webrtc",
    tag = "viewers",
    params(("source_id" = String, Path, description = "Stream id")),
    request_body = WebRtcOffer,
    security((), ("viewer_token" = [])),
    responses(
        (status = 201, description = "Session created", body = WebRtcAnswer,
            headers(("Location" = String, description = "The session resource"))),
        (status = 400, description = "Bad JSON, malformed SDP, or no video section that can receive", body = ErrorBody),
        (status = 401, description = "Viewer token missing, wrong or expired", body = ErrorBody),
        (status = 403, description = "A token for another stream, or start_ms without the DVR right",
            body = ErrorBody),
        (status = 404, description = "No such stream", body = ErrorBody),
        (status = 406, description = "No codec in the offer can carry the stream", body = ErrorBody),
        (status = 413, description = "Body larger than 64 KiB", body = ErrorBody),
        (status = 503, description = "Stream not ready (Retry-After), too many sessions, no free port, or \
            shutting down", body = ErrorBody)
    )
)]
async fn create_webrtc(
    StreamAccess(grant): StreamAccess,
    State(state): State<AppState>,
    ApiPath(source_id): ApiPath<String>,
    ApiJson(req): ApiJson<WebRtcOffer>,
) -> Result<Response, AppError> {
    let hub = hub(&state, &source_id)?;
    let start = webrtc_start_at(&state, &hub, &req.offer, req.start_ms, grant).await?;
    let created = state
        .webrtc
        .create(hub, &req.offer, start, grant.dvr)
        .await?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location(&created.session_id))],
        Json(WebRtcAnswer {
            session_id: created.session_id,
            answer: created.answer,
        }),
    )
        .into_response())
}

/// The stream's WebRTC sessions, oldest first. The admin's only (when an admin token is set): a session id is the
/// capability over its session.
#[utoipa::path(
    get,
    path = "/streams/{source_id}/webrtc",
    tag = "viewers",
    params(("source_id" = String, Path, description = "Stream id")),
    security((), ("admin_token" = [])),
    responses(
        (status = 200, description = "Sessions", body = Vec<WebRtcSessionView>),
        (status = 401, description = "Admin token missing or wrong", body = ErrorBody),
        (status = 404, description = "No such stream", body = ErrorBody)
    )
)]
async fn list_webrtc(
    _: AdminAccess,
    State(state): State<AppState>,
    ApiPath(source_id): ApiPath<String>,
) -> Result<Json<Vec<WebRtcSessionView>>, AppError> {
    hub(&state, &source_id)?;
    Ok(Json(state.webrtc.list(&source_id)))
}

/// WHEP trickle ICE: the viewer's further candidates.
#[utoipa::path(
    patch,
    path = "/sessions/{session_id}",
    tag = "viewers",
    params(("session_id" = String, Path, description = "Session id")),
    request_body(content = String, content_type = "application/trickle-ice-sdpfrag",
        description = "ICE credentials, m= and a=mid lines, a=candidate lines (RFC 8840)"),
    responses(
        (status = 204, description = "Candidates added"),
        (status = 400, description = "Malformed fragment (single candidates the ICE agent cannot use are skipped)",
            body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 415, description = "Content-Type is not application/trickle-ice-sdpfrag", body = ErrorBody),
        (status = 422, description = "An ICE restart (new ufrag): not supported, start a new session",
            body = ErrorBody)
    )
)]
async fn trickle(
    State(state): State<AppState>,
    ApiPath(session_id): ApiPath<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, AppError> {
    let text = text_body(&headers, body, SDP_FRAG)?;
    let frag = publishers::webrtc::trickle::parse(&text)
        .map_err(|e| AppError::BadRequest(format!("bad trickle-ICE fragment: {e}")))?;
    state.webrtc.trickle(&session_id, frag).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Ends a WebRTC session (WHEP or JSON).
#[utoipa::path(
    delete,
    path = "/sessions/{session_id}",
    tag = "viewers",
    params(("session_id" = String, Path, description = "Session id")),
    responses(
        (status = 204, description = "Session ended and its resources freed"),
        (status = 404, description = "No such session", body = ErrorBody)
    )
)]
async fn delete_session(
    State(state): State<AppState>,
    ApiPath(session_id): ApiPath<String>,
) -> Result<StatusCode, AppError> {
    state.webrtc.delete(&session_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Packets and bytes sent, NACKs, PLIs, loss, jitter and RTT from receiver reports, time to first frame.
#[utoipa::path(
    get,
    path = "/sessions/{session_id}/stats",
    tag = "viewers",
    params(("session_id" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "Session statistics", body = WebRtcSessionStats),
        (status = 404, description = "No such session", body = ErrorBody)
    )
)]
async fn session_stats(
    State(state): State<AppState>,
    ApiPath(session_id): ApiPath<String>,
) -> Result<Json<WebRtcSessionStats>, AppError> {
    Ok(Json(state.webrtc.stats(&session_id).await?))
}

/// Plays the recording from `position_ms` (the keyframe at or before it), in the same session.
#[utoipa::path(
    post,
    path = "/sessions/{session_id}/seek",
    tag = "viewers",
    params(("session_id" = String, Path, description = "Session id (WHEP, JSON WebRTC or WSC-RTP)")),
    request_body = SeekRequest,
    responses(
        (status = 200, description = "The session's new mode", body = SessionModeView),
        (status = 400, description = "Bad JSON or a negative position", body = ErrorBody),
        (status = 403, description = "The session was opened without the DVR right (forbidden)", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 409, description = "The stream has no recording (no_recording), or the recording there is in a \
            codec the session did not negotiate (codec_not_negotiated)", body = ErrorBody),
        (status = 416, description = "Before the oldest recording or after the live edge", body = OutOfRangeBody),
        (status = 503, description = "MAX_SESSIONS reached (a DVR player counts as a viewer)", body = ErrorBody)
    )
)]
async fn seek(
    State(state): State<AppState>,
    ApiPath(session_id): ApiPath<String>,
    ApiJson(req): ApiJson<SeekRequest>,
) -> Result<Json<SessionModeView>, AppError> {
    let cmd = Command::Seek {
        position_ms: req.position_ms,
    };
    control(&state, &session_id, cmd).await
}

/// Back to live, in the same session.
#[utoipa::path(
    post,
    path = "/sessions/{session_id}/live",
    tag = "viewers",
    params(("session_id" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "The session's new mode", body = SessionModeView),
        (status = 404, description = "No such session", body = ErrorBody)
    )
)]
async fn go_live(
    State(state): State<AppState>,
    ApiPath(session_id): ApiPath<String>,
) -> Result<Json<SessionModeView>, AppError> {
    control(&state, &session_id, Command::Live).await
}

/// Playback speed, 0.25 to 8 (above 2: keyframes only).
#[utoipa::path(
    post,
    path = "/sessions/{session_id}/speed",
    tag = "viewers",
    params(("session_id" = String, Path, description = "Session id")),
    request_body = SpeedRequest,
    responses(
        (status = 200, description = "The session's new mode", body = SessionModeView),
        (status = 400, description = "Bad JSON, or a speed outside 0.25 to 8", body = ErrorBody),
        (status = 403, description = "The session was opened without the DVR right (forbidden)", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody)
    )
)]
async fn set_speed(
    State(state): State<AppState>,
    ApiPath(session_id): ApiPath<String>,
    ApiJson(req): ApiJson<SpeedRequest>,
) -> Result<Json<SessionModeView>, AppError> {
    control(&state, &session_id, Command::Speed(req.speed)).await
}

/// Holds the picture; pausing live starts a time-shift.
#[utoipa::path(
    post,
    path = "/sessions/{session_id}/pause",
    tag = "viewers",
    params(("session_id" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "The session's new mode", body = SessionModeView),
        (status = 403, description = "The session was opened without the DVR right (forbidden)", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody)
    )
)]
async fn pause(
    State(state): State<AppState>,
    ApiPath(session_id): ApiPath<String>,
) -> Result<Json<SessionModeView>, AppError> {
    control(&state, &session_id, Command::Pause).await
}

/// Plays on from the paused instant.
#[utoipa::path(
    post,
    path = "/sessions/{session_id}/play",
    tag = "viewers",
    params(("session_id" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "The session's new mode", body = SessionModeView),
        (status = 403, description = "The session was opened without the DVR right (forbidden)", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 503, description = "MAX_SESSIONS reached (a DVR player counts as a viewer)", body = ErrorBody)
    )
)]
async fn play(
    State(state): State<AppState>,
    ApiPath(session_id): ApiPath<String>,
) -> Result<Json<SessionModeView>, AppError> {
    control(&state, &session_id, Command::Play).await
}

/// Live or DVR, position, speed, pause, and the stream's live edge.
#[utoipa::path(
    get,
    path = "/sessions/{session_id}/mode",
    tag = "viewers",
    params(("session_id" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "The session's mode", body = SessionModeView),
        (status = 404, description = "No such session", body = ErrorBody)
    )
)]
async fn session_mode(
    State(state): State<AppState>,
    ApiPath(session_id): ApiPath<String>,
) -> Result<Json<SessionModeView>, AppError> {
    Ok(Json(state.controls.mode(&session_id)?))
}

async fn control(
    state: &AppState,
    session_id: &str,
    cmd: Command,
) -> Result<Json<SessionModeView>, AppError> {
    Ok(Json(
        state
            .controls
            .control(&state.playback, session_id, cmd)
            .await?,
    ))
}
