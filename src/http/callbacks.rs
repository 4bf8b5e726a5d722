//! `/v1/callbacks/{sender_id}`: a provider's status reports and inbound messages, verified and
//! read by the sender's provider module in the platform's own format (see API.md), and a
//! platform's `GET` verification of its webhook. Authenticated by signature, not by token.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ApiResult};
use crate::domain::callback::CallbackPayload;
use crate::domain::ids::SenderId;
use crate::providers::{CallbackError, CallbackRequest};
use crate::service::callbacks::{self, Refused};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(receive, challenge))
}

#[derive(Serialize, ToSchema)]
struct Received {
    /// Status reports that changed a message.
    applied: usize,
    /// Inbound messages recorded.
    inbound: usize,
    /// Reports about messages whose send is not recorded yet: kept, and applied once it is.
    deferred: usize,
    /// Automatic replies queued (opt-out keywords' and automations').
    replies: usize,
}

/// Receive a provider's status reports and inbound messages
///
/// In the sender's provider's own format and signature. The `sandbox` and `http` providers use
/// Herald's: signed with the sender's `callback_secret`, `X-Herald-Timestamp` (unix seconds) and
/// `X-Herald-Signature: sha256=<hex HMAC-SHA256 of "{timestamp}.{raw body}">`, at most five
/// minutes old.
#[utoipa::path(post, path = "/v1/callbacks/{sender_id}", tag = "callbacks", security(()),
    params(("sender_id" = SenderId, Path, description = "The sender the provider reports for"),
           ("X-Herald-Timestamp" = String, Header, description = "Unix seconds"),
           ("X-Herald-Signature" = String, Header, description = "`sha256=<hex>`")),
    request_body(content = CallbackPayload, content_type = "application/json"),
    responses((status = 200, description = "Ingested", body = Received),
              (status = 401, description = "`unauthenticated`: bad or stale signature, or unknown sender",
               body = super::error::ErrorEnvelope)))]
async fn receive(
    State(state): State<AppState>,
    Path(sender_id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Received>> {
    let sender_id: SenderId = sender_id.parse().map_err(|_| ApiError::NotFound)?;
    let request = CallbackRequest {
        headers: &headers,
        // Platforms that sign nothing (Mavibot) carry a token in the URL they are given.
        query: query.as_deref(),
        body: &body,
        now: state.clock.now(),
    };
    let ingested = callbacks::receive(&state.ingestor, sender_id, &request)
        .await
        .map_err(refused)?;
    crate::metrics::ingested(ingested.inbound_recorded, ingested.replies_queued);
    if ingested.replies_queued > 0 {
        state.wakeups.wake(sender_id);
    }
    Ok(Json(Received {
        applied: ingested.statuses_applied,
        inbound: ingested.inbound_recorded,
        deferred: ingested.deferred,
        replies: ingested.replies_queued,
    }))
}

/// Answer a platform's verification of its webhook
///
/// Platforms that verify a webhook with a `GET` (Meta's `hub.challenge`) get their challenge
/// back when the token matches the sender's; providers that have no such check answer 405.
#[utoipa::path(get, path = "/v1/callbacks/{sender_id}", tag = "callbacks", security(()),
    params(("sender_id" = SenderId, Path, description = "The sender the platform verifies")),
    responses((status = 200, description = "The challenge, as plain text", body = String),
              (status = 403, description = "`forbidden`: the token does not match",
               body = super::error::ErrorEnvelope),
              (status = 405, description = "`method_not_allowed`: the provider has no challenge",
               body = super::error::ErrorEnvelope)))]
async fn challenge(
    State(state): State<AppState>,
    Path(sender_id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> ApiResult<String> {
    let sender_id: SenderId = sender_id.parse().map_err(|_| ApiError::NotFound)?;
    let request = CallbackRequest {
        headers: &headers,
        query: query.as_deref(),
        body: &[],
        now: state.clock.now(),
    };
    callbacks::challenge(&state.db, sender_id, &request)
        .await
        .map_err(refused)
}

fn refused(refusal: Refused) -> ApiError {
    let (sender, error) = match refusal {
        Refused::UnknownSender => return ApiError::Unauthenticated,
        Refused::Store(error) => return error.into(),
        Refused::Provider { sender, error } => (sender, error),
    };
    match error {
        CallbackError::Unauthenticated(reason) => {
            tracing::warn!(sender_id = %sender, %reason, "callback refused");
            ApiError::Unauthenticated
        }
        CallbackError::Forbidden(reason) => {
            tracing::warn!(sender_id = %sender, %reason, "callback challenge refused");
            ApiError::Forbidden(reason)
        }
        CallbackError::Malformed(message) => ApiError::InvalidJson(message),
        CallbackError::Invalid { field, message } => ApiError::validation(&field, message),
        CallbackError::NoChallenge => ApiError::MethodNotAllowed,
    }
}
