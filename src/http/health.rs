//! `GET /v1/health`: `{"status": "ok"}` while the database answers, 503 otherwise.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult};
use crate::app::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/health", get(health))
}

async fn health(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    match state.db.ping().await {
        Ok(()) => Ok(Json(json!({ "status": "ok" }))),
        Err(error) => {
            tracing::warn!(%error, "health check: database did not answer");
            Err(ApiError::Unavailable)
        }
    }
}
