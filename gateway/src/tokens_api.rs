//! `POST /tokens` (admin): mints a viewer token for one stream (`access::token`).

use api_models::{ErrorBody, MintToken, ViewerToken};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::access::extract::{now_ms, AdminAccess};
use crate::access::token::ViewerClaims;
use crate::error::{ApiJson, AppError};
use crate::AppState;

/// Lifetime of a token minted without `ttl_secs`.
const DEFAULT_TTL_SECS: u64 = 3600;
/// Longest lifetime a token may be minted with: 30 days.
const MAX_TTL_SECS: u64 = 30 * 24 * 3600;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(mint_token))
}

/// A viewer token for one stream: live always, the recording with `dvr`, downloads with `export`.
#[utoipa::path(
    post,
    path = "/tokens",
    tag = "access",
    request_body = MintToken,
    security(("admin_token" = [])),
    responses(
        (status = 201, description = "The token and when it expires", body = ViewerToken),
        (status = 400, description = "Not a JSON object, unknown field, ttl_secs outside 1 to 2592000, or the \\
            gateway runs without an admin token (viewer calls are open then; there is nothing to mint)",
            body = ErrorBody),
        (status = 401, description = "Admin token missing or wrong", body = ErrorBody),
        (status = 404, description = "No such stream", body = ErrorBody)
    )
)]
async fn mint_token(
    _: AdminAccess,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<MintToken>,
) -> Result<(StatusCode, Json<ViewerToken>), AppError> {
    let ttl_secs = req.ttl_secs.unwrap_or(DEFAULT_TTL_SECS);
    if !(1..=MAX_TTL_SECS).contains(&ttl_secs) {
        return Err(AppError::BadRequest(format!(
            "ttl_secs must be 1 to {MAX_TTL_SECS}, not {ttl_secs}"
        )));
    }
    // A token only for a stream that exists: a typo should not mint a token that opens nothing.
    state.registry.get(&req.stream)?;
    let claims = ViewerClaims {
        stream: req.stream,
        expires_ms: now_ms().saturating_add(ttl_secs as i64 * 1000),
        dvr: req.dvr,
        export: req.export,
    };
    let token = state.access.mint(&claims).ok_or_else(|| {
        AppError::BadRequest(
            "the gateway runs without an admin token: viewer calls are open, no token is needed"
                .into(),
        )
    })?;
    Ok((
        StatusCode::CREATED,
        Json(ViewerToken {
            token,
            expires_ms: claims.expires_ms,
        }),
    ))
}
