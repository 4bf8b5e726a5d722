//! One error type for the whole API, rendered as API.md's envelope:
//! `{"error": {"code", "message", "details"}}` with the matching status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::domain::validation::FieldErrors;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidJson(String),
    #[error("missing or invalid bearer token")]
    Unauthenticated,
    #[error("this API key lacks the '{0}' ability")]
    InsufficientAbility(&'static str),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("not allowed while the campaign is {status}")]
    InvalidTransition { status: String },
    #[error("validation failed: {0}")]
    Validation(FieldErrors),
    #[error("the database is unavailable")]
    Unavailable,
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

pub type ApiResult<T, E = ApiError> = Result<T, E>;

impl ApiError {
    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        Self::Validation(FieldErrors::single(field, message))
    }

    fn parts(&self) -> (StatusCode, &'static str, Value) {
        match self {
            Self::InvalidJson(_) => (StatusCode::BAD_REQUEST, "invalid_json", json!({})),
            Self::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated", json!({})),
            Self::InsufficientAbility(ability) => (
                StatusCode::FORBIDDEN,
                "insufficient_ability",
                json!({ "required_ability": ability }),
            ),
            Self::NotFound => (StatusCode::NOT_FOUND, "not_found", json!({})),
            Self::Conflict(_) => (StatusCode::CONFLICT, "duplicate", json!({})),
            Self::InvalidTransition { status } => (
                StatusCode::CONFLICT,
                "invalid_transition",
                json!({ "status": status }),
            ),
            Self::Validation(errors) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                json!({ "errors": errors }),
            ),
            Self::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", json!({})),
            Self::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                json!({}),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(cause) = &self {
            // The cause chain goes to the log, never to the client.
            tracing::error!(error = format!("{cause:#}"), "request failed");
        }
        let (status, code, details) = self.parts();
        let body =
            json!({ "error": { "code": code, "message": self.to_string(), "details": details } });
        (status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => Self::NotFound,
            StoreError::Duplicate(what) => Self::Conflict(format!("{what} already exists")),
            StoreError::InUse => Self::Conflict("still in use by other records".into()),
            StoreError::InvalidTransition { current } => Self::InvalidTransition {
                status: current.to_string(),
            },
            StoreError::MessageNotPending { status } => Self::InvalidTransition {
                status: status.to_string(),
            },
            other => Self::Internal(other.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::body::to_bytes;

    use super::*;
    use crate::domain::campaign::CampaignStatus;

    async fn rendered(error: ApiError) -> (StatusCode, Value) {
        let response = error.into_response();
        let status = response.status();
        let body = to_bytes(response.into_body(), 1 << 16).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn errors_render_the_envelope() {
        let (status, body) = rendered(ApiError::InsufficientAbility("contacts.write")).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(body["error"]["code"], "insufficient_ability");
        assert_eq!(
            body["error"]["details"]["required_ability"],
            "contacts.write"
        );

        let (status, body) = rendered(
            StoreError::InvalidTransition {
                current: CampaignStatus::Completed,
            }
            .into(),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body["error"]["code"], "invalid_transition");
        assert_eq!(body["error"]["details"]["status"], "completed");

        let (status, body) = rendered(ApiError::validation("phone", "is not a phone number")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            body["error"]["details"]["errors"]["phone"][0],
            "is not a phone number"
        );
    }

    #[tokio::test]
    async fn internal_errors_hide_their_cause() {
        let (status, body) = rendered(ApiError::Internal(anyhow::anyhow!(
            "password=hunter2 leaked"
        )))
        .await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!body.to_string().contains("hunter2"));
    }
}
