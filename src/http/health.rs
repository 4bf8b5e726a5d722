//! `GET /v1/health`: `{"status": "ok"}` while the database answers, 503 otherwise.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ApiResult, ErrorEnvelope};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(health))
}

#[derive(Serialize, ToSchema)]
struct Health {
    /// `ok`
    status: &'static str,
}

/// Whether the server and its database answer
#[utoipa::path(get, path = "/v1/health", tag = "meta", security(()),
    responses((status = 200, description = "The database answers", body = Health),
              (status = 503, description = "`unavailable`: the database does not answer", body = ErrorEnvelope)))]
async fn health(State(state): State<AppState>) -> ApiResult<Json<Health>> {
    match state.db.ping().await {
        Ok(()) => Ok(Json(Health { status: "ok" })),
        Err(error) => {
            tracing::warn!(%error, "health check: database did not answer");
            Err(ApiError::Unavailable)
        }
    }
}
