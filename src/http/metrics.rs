//! `GET /metrics`: Prometheus's text format, open unless `HERALD_METRICS_TOKEN` is set.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::bearer_token;
use super::error::{ApiError, ErrorEnvelope};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(metrics))
}

/// Prometheus metrics
///
/// Sends by sender and outcome, provider latency, lane waits by gate, the queue's depth,
/// webhook attempts, inbound messages and automatic replies. With `HERALD_METRICS_TOKEN` set,
/// it asks for `Authorization: Bearer <that token>`.
#[utoipa::path(get, path = "/metrics", tag = "meta", security(()),
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"),
              (status = 401, description = "`unauthenticated`: the metrics token is set and was not given", body = ErrorEnvelope)))]
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Some(expected) = &state.config.metrics_token {
        let given = bearer_token(&headers).unwrap_or_default();
        if !bool::from(given.as_bytes().ct_eq(expected.0.as_bytes())) {
            return Err(ApiError::Unauthenticated);
        }
    }
    let pending = crate::service::analytics::queue_depth(&state.db).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        crate::metrics::render(pending),
    )
        .into_response())
}
