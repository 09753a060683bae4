//! `AppError`: the one place where a failure becomes an HTTP status and an [`ErrorBody`] JSON reply.
//!
//! Inner layers (validation, the store, the registry) return short typed errors; handlers turn them into
//! `AppError` with `?`. JSON body rejections go through [`ApiJson`] so a malformed or oversized body gets the same
//! JSON shape as every other error. Internal errors are logged here with their detail; the client only learns that
//! something went wrong.

use api_models::ErrorBody;
use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;

use crate::registry::RegistryError;
use crate::viewers::ReserveError;
use crate::webrtc::WebRtcError;
use publishers::webrtc::offer::OfferError;

/// Largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// `Retry-After` of a stream that is not ready yet: its first picture usually comes within a second or two.
const NOT_READY_RETRY_SECS: &str = "2";

/// Every error the HTTP API can answer with.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The request is malformed or its content invalid (400).
    #[error("{0}")]
    BadRequest(String),
    /// No token, or one that is not the admin's or a valid viewer token (401).
    #[error("{0}")]
    Unauthorized(String),
    /// A viewer token whose time is over (401): mint a new one.
    #[error("{0}")]
    TokenExpired(String),
    /// A valid token for another stream, or without the right this call needs (403).
    #[error("{0}")]
    Forbidden(String),
    /// No such stream (404).
    #[error("stream {0:?} not found")]
    StreamNotFound(String),
    /// Nothing recorded where the request looked (404).
    #[error("{0}")]
    NothingRecorded(String),
    /// No such viewer session (404).
    #[error("{0}")]
    SessionNotFound(String),
    /// No such route (404).
    #[error("no such resource")]
    RouteNotFound,
    /// The route exists, not with this method (405).
    #[error("method not allowed on this resource")]
    MethodNotAllowed,
    /// The resource exists already, or is being changed by another request (409).
    #[error("{0}")]
    Conflict(String),
    /// A seek on a stream that has no recording (409).
    #[error("{0}")]
    NoRecording(String),
    /// A seek into a range recorded in a codec the session did not negotiate (409).
    #[error("{0}")]
    CodecNotNegotiated(String),
    /// A seek outside the recording (416); the body lists what is recorded.
    #[error("{message}")]
    OutOfRange {
        message: String,
        ranges: Vec<api_models::TimeRange>,
    },
    /// No codec in a viewer's offer can carry the stream (406).
    #[error("{0}")]
    NotAcceptable(String),
    /// The body's `Content-Type` is not the one this call takes (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Well-formed, but asks for something this gateway does not do (422).
    #[error("{0}")]
    Unprocessable(String),
    /// The stream exists but can't serve viewers yet; answered with `Retry-After` (503).
    #[error("{0}")]
    NotReady(String),
    /// The request body is over [`MAX_BODY_BYTES`] (413).
    #[error("request body larger than {MAX_BODY_BYTES} bytes")]
    PayloadTooLarge,
    /// A configured count limit is reached (429).
    #[error("{0}")]
    LimitReached(String),
    /// `MAX_SESSIONS` viewer sessions are open (503).
    #[error("{0}")]
    TooManySessions(String),
    /// The gateway cannot take the request now, for example while shutting down (503).
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an I/O failure (500). The detail goes to the log only.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl AppError {
    /// HTTP status and machine-readable code.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            AppError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            AppError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            AppError::TokenExpired(_) => (StatusCode::UNAUTHORIZED, "token_expired"),
            AppError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            AppError::StreamNotFound(_)
            | AppError::SessionNotFound(_)
            | AppError::RouteNotFound => (StatusCode::NOT_FOUND, "not_found"),
            AppError::NothingRecorded(_) => (StatusCode::NOT_FOUND, "nothing_recorded"),
            AppError::NotAcceptable(_) => (StatusCode::NOT_ACCEPTABLE, "no_common_codec"),
            AppError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            AppError::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unprocessable"),
            AppError::NotReady(_) => (StatusCode::SERVICE_UNAVAILABLE, "stream_not_ready"),
            AppError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            AppError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            AppError::NoRecording(_) => (StatusCode::CONFLICT, "no_recording"),
            AppError::CodecNotNegotiated(_) => (StatusCode::CONFLICT, "codec_not_negotiated"),
            AppError::OutOfRange { .. } => (StatusCode::RANGE_NOT_SATISFIABLE, "out_of_range"),
            AppError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            AppError::LimitReached(_) => (StatusCode::TOO_MANY_REQUESTS, "limit_reached"),
            AppError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            AppError::TooManySessions(_) => (StatusCode::SERVICE_UNAVAILABLE, "too_many_sessions"),
            AppError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = match &self {
            AppError::Internal(e) => {
                tracing::error!(
                    error = format!("{e:#}"),
                    "internal error while serving a request"
                );
                "internal error; see the gateway's log".to_owned()
            }
            other => other.to_string(),
        };
        if let AppError::OutOfRange { message, ranges } = self {
            let body = Json(api_models::OutOfRangeBody {
                error: code.to_owned(),
                message,
                ranges,
            });
            return (status, body).into_response();
        }
        let body = Json(ErrorBody {
            error: code.to_owned(),
            message,
        });
        if status == StatusCode::UNAUTHORIZED {
            return (status, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response();
        }
        if matches!(self, AppError::NotReady(_)) {
            return (status, [(header::RETRY_AFTER, NOT_READY_RETRY_SECS)], body).into_response();
        }
        (status, body).into_response()
    }
}

impl From<ReserveError> for AppError {
    fn from(e: ReserveError) -> Self {
        match e {
            ReserveError::TooManySessions(_) => AppError::TooManySessions(e.to_string()),
            ReserveError::ShuttingDown => AppError::Unavailable(e.to_string()),
        }
    }
}

impl From<WebRtcError> for AppError {
    fn from(e: WebRtcError) -> Self {
        match e {
            WebRtcError::Offer(o @ OfferError::NoCommonCodec { .. }) => {
                AppError::NotAcceptable(o.to_string())
            }
            e @ (WebRtcError::Offer(_) | WebRtcError::Refused(_) | WebRtcError::Trickle(_)) => {
                AppError::BadRequest(e.to_string())
            }
            e @ WebRtcError::NotReady(_) => AppError::NotReady(e.to_string()),
            WebRtcError::Reserve(r) => r.into(),
            e @ WebRtcError::SessionNotFound(_) => AppError::SessionNotFound(e.to_string()),
            e @ WebRtcError::IceRestart => AppError::Unprocessable(e.to_string()),
            e @ WebRtcError::NoPorts(_) => AppError::Unavailable(e.to_string()),
            WebRtcError::Internal(detail) => AppError::Internal(anyhow::anyhow!(detail)),
        }
    }
}

impl From<RegistryError> for AppError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Invalid(e) => AppError::BadRequest(e.to_string()),
            RegistryError::NotFound(id) => AppError::StreamNotFound(id),
            e @ (RegistryError::Exists(_) | RegistryError::Busy(_)) => {
                AppError::Conflict(e.to_string())
            }
            e @ RegistryError::TooManyStreams(_) => AppError::LimitReached(e.to_string()),
            e @ RegistryError::ShuttingDown => AppError::Unavailable(e.to_string()),
            RegistryError::Store(e) => AppError::Internal(e.context("stream store")),
        }
    }
}

impl From<JsonRejection> for AppError {
    fn from(rejection: JsonRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return AppError::PayloadTooLarge;
        }
        match rejection {
            JsonRejection::MissingJsonContentType(_) => AppError::BadRequest(
                "expected a JSON body with `Content-Type: application/json`".into(),
            ),
            // Serde's text says which field and where, e.g. "unknown field `x`, expected ... at line 1 column 5".
            other => AppError::BadRequest(other.body_text()),
        }
    }
}

/// `axum::Json` whose rejections are [`AppError`]s, so bad bodies answer with [`ErrorBody`]; the body must be a
/// JSON object.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !json_content_type(req.headers()) {
            return Err(AppError::BadRequest(
                "expected a JSON body with `Content-Type: application/json`".into(),
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                AppError::PayloadTooLarge
            } else {
                AppError::BadRequest(e.body_text())
            }
        })?;
        // Serde's derived structs also accept a JSON array of the fields in order (`["cam", [...]]`): every body
        // of this API is an object, and a positional one is a client bug better refused than guessed at.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(AppError::BadRequest(
                "the body must be a JSON object ({...})".into(),
            ));
        }
        let Json(value) = Json::<T>::from_bytes(&bytes)?;
        Ok(ApiJson(value))
    }
}

/// `application/json` or `application/*+json`, as `axum::Json` accepts.
fn json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// `axum::extract::Path` whose rejections are [`AppError`]s.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(value) = Path::<T>::from_request_parts(parts, state)
            .await
            .map_err(|e: PathRejection| AppError::BadRequest(e.body_text()))?;
        Ok(ApiPath(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_detail_stays_out_of_the_body() {
        let e = AppError::Internal(anyhow::anyhow!("disk /secret/path full"));
        let (status, code) = e.status_and_code();
        assert_eq!((status.as_u16(), code), (500, "internal"));
        let resp = e.into_response();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn codes() {
        assert_eq!(
            AppError::StreamNotFound("x".into()).status_and_code().1,
            "not_found"
        );
        assert_eq!(
            AppError::PayloadTooLarge.status_and_code().0,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            AppError::TokenExpired("x".into()).status_and_code(),
            (StatusCode::UNAUTHORIZED, "token_expired")
        );
        assert_eq!(
            AppError::Forbidden("x".into()).status_and_code(),
            (StatusCode::FORBIDDEN, "forbidden")
        );
    }
}
