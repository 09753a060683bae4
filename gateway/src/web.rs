//! The static debug pages (`/debug/`: streams; `/debug/webrtc-client`: live view over WHEP): `web-debug/` embedded in the binary (so it works from any working directory), served at
//! `/debug/`; `/` redirects there. To add a file, put it in `web-debug/` and list it in [`FILES`].

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

use crate::error::AppError;
use crate::AppState;

/// Name, content type and content of each embedded file.
const FILES: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../../web-debug/index.html"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../../web-debug/style.css"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web-debug/api.js"),
    ),
    (
        "streams.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web-debug/streams.js"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web-debug/app.js"),
    ),
    (
        "webrtc-client.html",
        "text/html; charset=utf-8",
        include_str!("../../web-debug/webrtc-client.html"),
    ),
    (
        "whep.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web-debug/whep.js"),
    ),
    (
        "video-stats.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web-debug/video-stats.js"),
    ),
    (
        "webrtc-client.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web-debug/webrtc-client.js"),
    ),
];

/// Routes of the debug page.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/debug/") }))
        .route("/debug", get(|| async { Redirect::temporary("/debug/") }))
        .route("/debug/", get(|| async { serve("index.html") }))
        .route(
            "/debug/webrtc-client",
            get(|| async { serve("webrtc-client.html") }),
        )
        .route(
            "/debug/{file}",
            get(|Path(file): Path<String>| async move { serve(&file) }),
        )
}

fn serve(name: &str) -> Response {
    match FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => AppError::RouteNotFound.into_response(),
    }
}
