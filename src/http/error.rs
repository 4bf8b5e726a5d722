//! One error type for the whole API, rendered as API.md's envelope:
//! `{"error": {"code", "message", "details"}}` with the matching status.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::domain::validation::FieldErrors;
use crate::store::StoreError;

/// The shape of every error response, for the OpenAPI document.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    /// A machine code: `invalid_json`, `invalid_idempotency_key`, `unauthenticated`,
    /// `insufficient_ability`, `not_found`, `invalid_transition`, `duplicate`,
    /// `idempotency_in_progress`, `idempotency_key_reused`, `in_use`, `validation_failed`,
    /// `rate_limited`, `method_not_allowed`, `payload_too_large`, `unavailable`, `internal_error`.
    code: String,
    /// What went wrong, for a human.
    message: String,
    /// `required_ability`, `status`, `errors` (`{field: [messages]}`), `retry_after`.
    #[schema(value_type = Object)]
    details: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidJson(String),
    #[error("{0}")]
    InvalidIdempotencyKey(&'static str),
    #[error("missing or invalid bearer token")]
    Unauthenticated,
    #[error("this API key lacks the '{0}' ability")]
    InsufficientAbility(&'static str),
    /// Authenticated, but refused (a platform's webhook challenge with the wrong token).
    #[error("{0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("still in use: {0}")]
    InUse(&'static str),
    #[error("not allowed while the campaign is {status}")]
    InvalidTransition { status: String },
    #[error("validation failed: {0}")]
    Validation(FieldErrors),
    #[error("a request with this Idempotency-Key is still running; retry when it has finished")]
    IdempotencyInProgress,
    #[error("this Idempotency-Key was first used with a different request; use a new key")]
    IdempotencyKeyReused,
    #[error("this route does not take that method")]
    MethodNotAllowed,
    #[error("the request body is over {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("too many requests; retry in {retry_after} s")]
    RateLimited { retry_after: u64 },
    #[error("this API key's daily quota is used up; it refills at midnight UTC")]
    DailyQuotaExceeded { retry_after: u64 },
    #[error("this API key's monthly quota is used up; it refills on the first of next month (UTC)")]
    MonthlyQuotaExceeded { retry_after: u64 },
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
            Self::InvalidIdempotencyKey(_) => (
                StatusCode::BAD_REQUEST,
                "invalid_idempotency_key",
                json!({}),
            ),
            Self::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated", json!({})),
            Self::InsufficientAbility(ability) => (
                StatusCode::FORBIDDEN,
                "insufficient_ability",
                json!({ "required_ability": ability }),
            ),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", json!({})),
            Self::NotFound => (StatusCode::NOT_FOUND, "not_found", json!({})),
            Self::Conflict(_) => (StatusCode::CONFLICT, "duplicate", json!({})),
            Self::InUse(_) => (StatusCode::CONFLICT, "in_use", json!({})),
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
            Self::IdempotencyInProgress => {
                (StatusCode::CONFLICT, "idempotency_in_progress", json!({}))
            }
            Self::IdempotencyKeyReused => {
                (StatusCode::CONFLICT, "idempotency_key_reused", json!({}))
            }
            Self::PayloadTooLarge { limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                json!({ "limit": limit }),
            ),
            Self::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                json!({}),
            ),
            Self::RateLimited { retry_after } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                json!({ "retry_after": retry_after }),
            ),
            Self::DailyQuotaExceeded { retry_after } => (
                StatusCode::TOO_MANY_REQUESTS,
                "daily_quota_exceeded",
                json!({ "retry_after": retry_after }),
            ),
            Self::MonthlyQuotaExceeded { retry_after } => (
                StatusCode::TOO_MANY_REQUESTS,
                "monthly_quota_exceeded",
                json!({ "retry_after": retry_after }),
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
        let mut response = (status, Json(body)).into_response();
        if let Self::RateLimited { retry_after }
        | Self::DailyQuotaExceeded { retry_after }
        | Self::MonthlyQuotaExceeded { retry_after } = self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        }
        response
    }
}

impl From<axum::extract::rejection::BytesRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::BytesRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::PayloadTooLarge {
                limit: crate::http::idempotency::MAX_BODY_BYTES,
            }
        } else {
            Self::InvalidJson(format!(
                "the request body cannot be read: {}",
                rejection.body_text()
            ))
        }
    }
}

impl From<crate::service::ServiceError> for ApiError {
    fn from(error: crate::service::ServiceError) -> Self {
        match error {
            crate::service::ServiceError::Validation(errors) => Self::Validation(errors),
            crate::service::ServiceError::Store(error) => error.into(),
        }
    }
}

impl From<crate::domain::validation::FieldErrors> for ApiError {
    fn from(errors: crate::domain::validation::FieldErrors) -> Self {
        Self::Validation(errors)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => Self::NotFound,
            StoreError::Duplicate(what) => Self::Conflict(format!("{what} already exists")),
            StoreError::InUse => Self::InUse("campaigns or messages refer to it"),
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
