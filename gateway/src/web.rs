//! The web client (`/debug/`: streams, player with the DVR timeline, grid; `/debug/webrtc-client`: a minimal
//! live view over WHEP): `web-debug/` embedded in the binary (so it works from any working directory and offline),
//! served at `/debug/`; `/` redirects there. To add a file, put it in `web-debug/` and list it in [`FILES`].

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

use crate::error::AppError;
use crate::AppState;

/// One embedded file of `web-debug/`: name, content type, content.
macro_rules! file {
    ($name:literal, $ty:literal) => {
        ($name, $ty, include_str!(concat!("../../web-debug/", $name)))
    };
}

/// Name, content type and content of each embedded file.
const FILES: &[(&str, &str, &str)] = &[
    file!("index.html", "text/html; charset=utf-8"),
    file!("style.css", "text/css; charset=utf-8"),
    // The web client (index.html), one job per module.
    file!("app.js", "text/javascript; charset=utf-8"),
    file!("api.js", "text/javascript; charset=utf-8"),
    file!("dom.js", "text/javascript; charset=utf-8"),
    file!("url-state.js", "text/javascript; charset=utf-8"),
    file!("streams.js", "text/javascript; charset=utf-8"),
    file!("stream-form.js", "text/javascript; charset=utf-8"),
    file!("player.js", "text/javascript; charset=utf-8"),
    file!("stream-video.js", "text/javascript; charset=utf-8"),
    file!("stats-overlay.js", "text/javascript; charset=utf-8"),
    file!("timeline.js", "text/javascript; charset=utf-8"),
    file!("export.js", "text/javascript; charset=utf-8"),
    file!("grid.js", "text/javascript; charset=utf-8"),
    file!("whep.js", "text/javascript; charset=utf-8"),
    file!("video-stats.js", "text/javascript; charset=utf-8"),
    // The minimal live view (webrtc-client.html), kept for plain WHEP checks.
    file!("webrtc-client.html", "text/html; charset=utf-8"),
    file!("webrtc-client.js", "text/javascript; charset=utf-8"),
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
