//! `/v1/webhooks`: endpoints that receive Herald's events, signed (Standard Webhooks), with
//! their delivery log, tests and replays.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::List;
use super::auth::{Authorized, can};
use super::error::ApiResult;
use super::extract::{Id, Ids, JsonBody, PageParams, Query, present};
use crate::domain::ids::{DeliveryId, WebhookId};
use crate::domain::webhook::{DeliveryStatus, webhook_id};
use crate::service::webhooks::{self as service, WebhookChange, WebhookInput};
use crate::store::webhooks::{Delivery, Webhook};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(show, update, delete))
        .routes(routes!(test))
        .routes(routes!(deliveries))
        .routes(routes!(replay))
}

#[derive(Debug, Deserialize, ToSchema)]
struct NewWebhook {
    /// Where events are POSTed: http(s), no credentials, not a private address.
    url: String,
    /// Event names, `prefix.*` or `*`.
    events: Vec<String>,
    description: Option<String>,
    /// Default true.
    enabled: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
struct WebhookPatch {
    url: Option<String>,
    events: Option<Vec<String>>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    description: Option<Option<String>>,
    enabled: Option<bool>,
}

/// An endpoint, as API.md shows it: never its secret, once created.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Webhook)]
struct WebhookBody {
    id: WebhookId,
    url: String,
    events: Vec<String>,
    description: Option<String>,
    enabled: bool,
    /// Why Herald turned it off (it answered 410 Gone).
    disabled_reason: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<Webhook> for WebhookBody {
    fn from(webhook: Webhook) -> Self {
        Self {
            id: webhook.id,
            url: webhook.url,
            events: webhook.events.0.into_iter().map(String::from).collect(),
            description: webhook.description,
            enabled: webhook.enabled,
            disabled_reason: webhook.disabled_reason,
            created_at: webhook.created_at,
            updated_at: webhook.updated_at,
        }
    }
}

/// A new endpoint with the secret it is signed with, shown this once.
#[derive(Debug, Serialize, ToSchema)]
struct CreatedWebhook {
    #[serde(flatten)]
    webhook: WebhookBody,
    /// `whsec_` and the base64 of 32 random bytes: the key of every signature.
    secret: String,
}

/// One event's delivery to the endpoint.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WebhookDelivery)]
struct DeliveryBody {
    id: DeliveryId,
    /// The `webhook-id` header: the same on every retry and replay.
    event_id: String,
    #[serde(rename = "type")]
    kind: String,
    status: DeliveryStatus,
    attempts: i64,
    /// The last attempt's HTTP status; `null` when it got no answer.
    response_status: Option<i64>,
    error: Option<String>,
    duration_ms: Option<i64>,
    next_attempt_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<Delivery> for DeliveryBody {
    fn from(delivery: Delivery) -> Self {
        Self {
            id: delivery.id,
            event_id: webhook_id(delivery.event_id),
            kind: delivery.kind,
            status: delivery.status,
            attempts: delivery.attempts,
            response_status: delivery.response_status,
            error: delivery.error,
            duration_ms: delivery.duration_ms,
            next_attempt_at: delivery.next_attempt_at,
            created_at: delivery.created_at,
            updated_at: delivery.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct DeliveryQuery {
    #[param(inline)]
    status: Option<DeliveryStatus>,
}

/// Accepted: the work is queued.
#[derive(Debug, Serialize, ToSchema)]
struct Queued {
    status: &'static str,
}

/// Create an endpoint
///
/// The answer carries the signing secret; it is never shown again.
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", request_body = NewWebhook,
    responses((status = 201, description = "Created, with its secret", body = CreatedWebhook)))]
async fn create(
    auth: Authorized<can::WebhooksWrite>,
    State(state): State<AppState>,
    JsonBody(new): JsonBody<NewWebhook>,
) -> ApiResult<(StatusCode, Json<CreatedWebhook>)> {
    let input = WebhookInput {
        url: new.url,
        events: new.events,
        description: new.description,
        enabled: new.enabled.unwrap_or(true),
    };
    let (webhook, secret) = service::create(
        &state.db,
        auth.workspace,
        input,
        state.config.url_guard(),
        state.clock.now(),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedWebhook {
            webhook: webhook.into(),
            secret,
        }),
    ))
}

/// List endpoints
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks", params(PageParams),
    responses((status = 200, description = "A page of endpoints, oldest first", body = inline(List<WebhookBody>))))]
async fn list(
    auth: Authorized<can::WebhooksWrite>,
    State(state): State<AppState>,
    Query(page): Query<PageParams>,
) -> ApiResult<Json<List<WebhookBody>>> {
    let page = page.page()?;
    let (webhooks, total) = service::list(&state.db, auth.workspace, page).await?;
    Ok(Json(List::of(webhooks, page, total)))
}

/// Show an endpoint
#[utoipa::path(get, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = WebhookId, Path, description = "Webhook id")),
    responses((status = 200, description = "The endpoint", body = WebhookBody)))]
async fn show(
    auth: Authorized<can::WebhooksWrite>,
    State(state): State<AppState>,
    Id(id): Id<WebhookId>,
) -> ApiResult<Json<WebhookBody>> {
    Ok(Json(
        service::get(&state.db, auth.workspace, id).await?.into(),
    ))
}

/// Change an endpoint
///
/// Enabling an endpoint Herald disabled (after a 410) clears the reason; its pending
/// deliveries go out again.
#[utoipa::path(patch, path = "/v1/webhooks/{id}", tag = "webhooks", request_body = WebhookPatch,
    params(("id" = WebhookId, Path, description = "Webhook id")),
    responses((status = 200, description = "The changed endpoint", body = WebhookBody)))]
async fn update(
    auth: Authorized<can::WebhooksWrite>,
    State(state): State<AppState>,
    Id(id): Id<WebhookId>,
    JsonBody(patch): JsonBody<WebhookPatch>,
) -> ApiResult<Json<WebhookBody>> {
    let change = WebhookChange {
        url: patch.url,
        events: patch.events,
        description: patch.description,
        enabled: patch.enabled,
    };
    let webhook = service::update(
        &state.db,
        auth.workspace,
        id,
        change,
        state.config.url_guard(),
        state.clock.now(),
    )
    .await?;
    Ok(Json(webhook.into()))
}

/// Delete an endpoint, with its deliveries
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = WebhookId, Path, description = "Webhook id")),
    responses((status = 204, description = "Deleted")))]
async fn delete(
    auth: Authorized<can::WebhooksWrite>,
    State(state): State<AppState>,
    Id(id): Id<WebhookId>,
) -> ApiResult<StatusCode> {
    service::delete(&state.db, auth.workspace, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Send a test event
///
/// A `webhook.test` event, to this endpoint alone, whatever its `events`.
#[utoipa::path(post, path = "/v1/webhooks/{id}/test", tag = "webhooks",
    params(("id" = WebhookId, Path, description = "Webhook id")),
    responses((status = 202, description = "Queued", body = Queued)))]
async fn test(
    auth: Authorized<can::WebhooksWrite>,
    State(state): State<AppState>,
    Id(id): Id<WebhookId>,
) -> ApiResult<(StatusCode, Json<Queued>)> {
    service::test(&state.db, auth.workspace, id, state.clock.now()).await?;
    Ok((StatusCode::ACCEPTED, Json(Queued { status: "queued" })))
}

/// An endpoint's deliveries
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = WebhookId, Path, description = "Webhook id"), PageParams, DeliveryQuery),
    responses((status = 200, description = "A page of deliveries, newest first", body = inline(List<DeliveryBody>))))]
async fn deliveries(
    auth: Authorized<can::WebhooksWrite>,
    State(state): State<AppState>,
    Id(id): Id<WebhookId>,
    Query(page): Query<PageParams>,
    Query(query): Query<DeliveryQuery>,
) -> ApiResult<Json<List<DeliveryBody>>> {
    let page = page.page()?;
    let (deliveries, total) =
        service::deliveries(&state.db, auth.workspace, id, query.status, page).await?;
    Ok(Json(List::of(deliveries, page, total)))
}

/// Deliver again
///
/// From the first attempt of the retry schedule, with the same `webhook-id`.
#[utoipa::path(post, path = "/v1/webhooks/{id}/deliveries/{delivery_id}/replay", tag = "webhooks",
    params(("id" = WebhookId, Path, description = "Webhook id"),
           ("delivery_id" = DeliveryId, Path, description = "Delivery id")),
    responses((status = 202, description = "Queued", body = Queued)))]
async fn replay(
    auth: Authorized<can::WebhooksWrite>,
    State(state): State<AppState>,
    Ids(id, delivery): Ids<WebhookId, DeliveryId>,
) -> ApiResult<(StatusCode, Json<Queued>)> {
    service::replay(&state.db, auth.workspace, id, delivery, state.clock.now()).await?;
    Ok((StatusCode::ACCEPTED, Json(Queued { status: "queued" })))
}
