//! The camera gateway: configuration, stream registry, persistence, REST API and debug page, as a library so the
//! binary (`main.rs`) stays thin and integration tests can run a real server in-process.
//!
//! Entry points: [`Gateway::start`] (bind, open the store, restore streams, serve) and [`Gateway::shutdown`], or
//! [`serve`] which does both around a shutdown future; [`app`] builds the HTTP router alone.

pub mod access;
pub mod api;
pub mod catalog;
pub mod config;
pub mod definition;
pub mod error;
pub mod exports;
pub mod logging;
pub mod malloc;
pub mod playback;
pub mod purge;
pub mod recordings_api;
pub mod registry;
pub mod retention;
mod server;
pub mod session_control;
pub mod store;
mod tcp_tuning;
mod tls;
mod tokens_api;
mod udp_gso;
mod view;
pub mod viewer_api;
mod viewer_input;
pub mod viewers;
mod web;
pub mod webrtc;
pub mod wsc;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use utoipa_swagger_ui::SwaggerUi;

pub use config::Config;
pub use error::AppError;
pub use registry::{RegistryOptions, StreamRegistry};
pub use server::{serve, Gateway, DEMO_SOURCE_ID, DEMO_URL};
pub use store::Store;

/// What every request handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<StreamRegistry>,
    pub config: Arc<Config>,
    pub wsc: Arc<wsc::WscService>,
    pub webrtc: Arc<webrtc::WebRtcService>,
    /// Viewer sessions of every kind against `max_sessions`.
    pub viewers: Arc<viewers::ViewerBudget>,
    /// Recorded playback for viewer sessions.
    pub playback: Arc<playback::Playback>,
    /// Seek, live, speed, pause, play of every viewer session.
    pub controls: Arc<session_control::SessionControls>,
    /// Who may call what: the admin token and the viewer-token key.
    pub access: Arc<access::Access>,
    /// Recording exports: the cache and the limit on builds at once.
    pub exports: Arc<exports::Exports>,
}

/// The whole HTTP surface: the management API and the viewer API (each handler declares its access rule with an
/// extractor from `access::extract`), both with the 64 KiB body limit; Swagger UI at `/swagger-ui`, the OpenAPI document at `/api-docs/openapi.json`, and the
/// debug pages at `/debug/`.
pub fn app(state: AppState) -> Router {
    let (api_routes, mut openapi) = api::router().split_for_parts();
    let (viewer_routes, viewer_doc) = viewer_api::router().split_for_parts();
    openapi.merge(viewer_doc);
    let api_routes = api_routes.layer(DefaultBodyLimit::max(error::MAX_BODY_BYTES));
    let viewer_routes = viewer_routes
        .layer(DefaultBodyLimit::max(error::MAX_BODY_BYTES))
        .layer(viewer_api::cors());
    Router::new()
        .merge(api_routes)
        .merge(viewer_routes)
        .merge(SwaggerUi::new("/swagger-ui").url("/api-docs/openapi.json", openapi))
        .merge(web::router())
        .method_not_allowed_fallback(|| async { AppError::MethodNotAllowed })
        .fallback(|| async { AppError::RouteNotFound })
        .with_state(state)
}
