//! `POST /v1/callbacks/{sender_id}`: a provider's status reports and inbound messages, signed
//! with the sender's callback secret (see API.md). Authenticated by signature, not by token.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiResult};
use crate::app::AppState;
use crate::domain::ids::SenderId;
use crate::engine::callbacks::{self, CallbackPayload, SenderEvents};
use crate::store::{self, StoreError};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(receive))
}

#[derive(Serialize, ToSchema)]
struct Received {
    /// Status reports that changed a message.
    applied: usize,
    /// Inbound messages recorded.
    inbound: usize,
    /// Reports about messages whose send is not recorded yet: kept, and applied once it is.
    deferred: usize,
}

/// Receive a provider's status reports and inbound messages
///
/// Signed with the sender's `callback_secret`: `X-Herald-Timestamp` (unix seconds) and
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
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Received>> {
    let sender_id: SenderId = sender_id.parse().map_err(|_| ApiError::NotFound)?;
    let sender = {
        let mut conn = state.db.read().await?;
        match store::senders::get_unscoped(conn.conn(), sender_id).await {
            Ok(sender) => sender,
            // Unknown senders are refused like bad signatures: no probing for ids.
            Err(StoreError::NotFound) => return Err(ApiError::Unauthenticated),
            Err(error) => return Err(error.into()),
        }
    };
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let now = state.clock.now();
    callbacks::verify_signature(
        &sender.callback_secret,
        header("x-herald-timestamp"),
        header("x-herald-signature"),
        &body,
        now,
    )
    .map_err(|error| {
        tracing::warn!(sender_id = %sender.id, %error, "callback refused");
        ApiError::Unauthenticated
    })?;
    let payload: CallbackPayload = serde_json::from_slice(&body).map_err(|error| {
        if error.is_syntax() || error.is_eof() {
            ApiError::InvalidJson(format!("the body is not valid JSON: {error}"))
        } else {
            ApiError::validation("events", error.to_string())
        }
    })?;
    let batch = SenderEvents::new(sender.id, payload.events);
    // Durable before the answer (invariant 7): a report that overtook the record of its send is
    // parked in the same transaction.
    let ingested = callbacks::ingest(&state.db, &batch, now).await?;
    Ok(Json(Received {
        applied: ingested.statuses_applied,
        inbound: ingested.inbound_recorded,
        deferred: ingested.deferred,
    }))
}
