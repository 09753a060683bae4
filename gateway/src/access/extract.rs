//! The axum side of access control: extractors that handlers name in their arguments, so each route's rule is
//! in its signature. They run before the body is read: a caller without the right token gets 401/403 whatever
//! it sends, and learns nothing about the stream it named.
//!
//! A token comes from `Authorization: Bearer <token>`, or, for viewer calls only, from the `token` query
//! parameter (a browser cannot set headers on a WebSocket or a `<video>` URL). The admin token is taken from the
//! header only by admin calls, so it does not end up in URLs that proxies and browsers keep.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};

use super::Grant;
use crate::error::AppError;
use crate::AppState;

/// The caller is the admin (or auth is off).
pub struct AdminAccess;

impl FromRequestParts<AppState> for AdminAccess {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        state.access.check_admin(bearer(&parts.headers))?;
        Ok(AdminAccess)
    }
}

/// What the caller may do on the stream named by the route's `source_id`.
pub struct StreamAccess(pub Grant);

impl FromRequestParts<AppState> for StreamAccess {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        if !state.access.enabled() {
            return Ok(StreamAccess(Grant::ALL));
        }
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| AppError::BadRequest(e.body_text()))?;
        let stream = params
            .get("source_id")
            .ok_or_else(|| AppError::Internal(anyhow::anyhow!("route without a source_id")))?;
        let from_query = query_token(parts.uri.query());
        let given = bearer(&parts.headers).or(from_query.as_deref());
        Ok(StreamAccess(state.access.grant(given, stream, now_ms())?))
    }
}

/// The token of `Authorization: Bearer <token>` (the scheme name in any case, RFC 9110 §11.1).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The `token` query parameter, percent-decoded.
fn query_token(query: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .filter(|t| !t.is_empty())
}

/// Wall-clock epoch milliseconds, the time axis of token expiry.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn reads_bearer_and_query_tokens() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc"),
        );
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&h), None);
        assert_eq!(
            query_token(Some("a=1&token=v1.x%2By&b=2")).as_deref(),
            Some("v1.x+y")
        );
        assert_eq!(query_token(Some("token=")), None);
        assert_eq!(query_token(None), None);
    }
}
