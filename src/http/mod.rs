//! The HTTP API (axum): one module per resource, each exporting `router()`, merged here.

use axum::Router;
use axum::http::Uri;
use tower_http::trace::TraceLayer;

use crate::app::AppState;

mod callbacks;
/// The error envelope and its status codes.
pub mod error;
mod health;

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(health::router())
        .merge(callbacks::router())
        .fallback(unknown_route)
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Unknown paths answer with the same envelope as every other error.
async fn unknown_route(uri: Uri) -> error::ApiError {
    tracing::debug!(%uri, "no such route");
    error::ApiError::NotFound
}
