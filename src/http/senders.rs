//! `/v1/senders`: sending identities, their provider and their pacing.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::List;
use super::auth::{Authorized, can};
use super::error::ApiResult;
use super::extract::{Id, JsonBody, PageParams, Query};
use crate::domain::ids::SenderId;
use crate::domain::pacing::Pacing;
use crate::service::senders::{self as service, SenderChange, SenderSettings};
use crate::store::senders::Sender;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(show, update, delete))
}

#[derive(Debug, Deserialize, ToSchema)]
struct NewSender {
    name: String,
    /// `sandbox` or `http`.
    provider: String,
    /// The provider's settings (`http`: `url`, `headers`, `body_template`, `timeout_ms`;
    /// `sandbox`: `latency_ms`, `fail_rate`, `deliver_rate`, `read_rate`, …).
    #[schema(value_type = Object)]
    provider_config: Option<Value>,
    /// IANA time zone of the sender's day, window and warmup (`UTC` when absent).
    timezone: Option<String>,
    /// Every field is optional; an absent one turns its gate off.
    pacing: Option<Pacing>,
}

/// Fields to change; `pacing`, when given, replaces the whole pacing.
#[derive(Debug, Deserialize, ToSchema)]
struct SenderPatch {
    name: Option<String>,
    provider: Option<String>,
    #[schema(value_type = Object)]
    provider_config: Option<Value>,
    timezone: Option<String>,
    pacing: Option<Pacing>,
}

#[derive(Debug, Serialize, ToSchema)]
struct SenderView {
    id: SenderId,
    name: String,
    provider: String,
    /// As configured, with header values and secret-looking fields masked.
    #[schema(value_type = Object)]
    provider_config: Value,
    timezone: String,
    pacing: Pacing,
    /// Signs this sender's provider callbacks; shown once, when the sender is created.
    #[serde(skip_serializing_if = "Option::is_none")]
    callback_secret: Option<String>,
    /// The sender's local day: what it has sent and may send.
    #[serde(skip_serializing_if = "Option::is_none")]
    today: Option<Today>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
struct Today {
    date: NaiveDate,
    /// Sends started today (attempts count against the cap).
    sent: i64,
    /// Today's cap, `null` when nothing caps the day.
    limit: Option<u32>,
    /// 1-based warmup day, `null` when warmup is off.
    warmup_day: Option<u32>,
}

impl SenderView {
    fn of(sender: &Sender) -> Self {
        Self {
            id: sender.id,
            name: sender.name.clone(),
            provider: sender.provider.to_string(),
            provider_config: service::shown_config(sender.provider, &sender.provider_config.0),
            timezone: sender.timezone.to_string(),
            pacing: sender.pacing(),
            callback_secret: None,
            today: None,
            created_at: sender.created_at,
            updated_at: sender.updated_at,
        }
    }
}

/// Create a sender
///
/// Its `callback_secret` is in this response only: keep it to sign provider callbacks.
#[utoipa::path(post, path = "/v1/senders", tag = "senders", request_body = NewSender,
    responses((status = 201, description = "Created", body = SenderView)))]
async fn create(
    auth: Authorized<can::SendersWrite>,
    State(state): State<AppState>,
    JsonBody(new): JsonBody<NewSender>,
) -> ApiResult<(StatusCode, Json<SenderView>)> {
    let settings = SenderSettings {
        name: new.name,
        provider: new.provider,
        provider_config: new
            .provider_config
            .unwrap_or_else(|| Value::Object(Map::new())),
        timezone: new.timezone.unwrap_or_else(|| "UTC".into()),
        pacing: new.pacing.unwrap_or_default(),
    };
    let (sender, callback_secret) = service::create(
        &state.db,
        auth.workspace,
        settings,
        state.config.url_guard(),
        state.clock.now(),
    )
    .await?;
    let mut view = SenderView::of(&sender);
    view.callback_secret = Some(callback_secret);
    Ok((StatusCode::CREATED, Json(view)))
}

/// List senders
#[utoipa::path(get, path = "/v1/senders", tag = "senders", params(PageParams),
    responses((status = 200, description = "A page of senders", body = inline(List<SenderView>))))]
async fn list(
    auth: Authorized<can::SendersRead>,
    State(state): State<AppState>,
    Query(params): Query<PageParams>,
) -> ApiResult<Json<List<SenderView>>> {
    let page = params.page()?;
    let (senders, total) = service::list(&state.db, auth.workspace, page).await?;
    Ok(Json(List::new(
        senders.iter().map(SenderView::of).collect(),
        page,
        total,
    )))
}

/// Show a sender, with today's sends and cap
#[utoipa::path(get, path = "/v1/senders/{id}", tag = "senders",
    params(("id" = SenderId, Path, description = "Sender id")),
    responses((status = 200, description = "The sender", body = SenderView)))]
async fn show(
    auth: Authorized<can::SendersRead>,
    State(state): State<AppState>,
    Id(id): Id<SenderId>,
) -> ApiResult<Json<SenderView>> {
    let (sender, today) =
        service::with_today(&state.db, auth.workspace, id, state.clock.now()).await?;
    let mut view = SenderView::of(&sender);
    view.today = Some(Today {
        date: today.date,
        sent: today.sent,
        limit: today.limit,
        warmup_day: today.warmup_day,
    });
    Ok(Json(view))
}

/// Change a sender
#[utoipa::path(patch, path = "/v1/senders/{id}", tag = "senders", request_body = SenderPatch,
    params(("id" = SenderId, Path, description = "Sender id")),
    responses((status = 200, description = "The changed sender", body = SenderView)))]
async fn update(
    auth: Authorized<can::SendersWrite>,
    State(state): State<AppState>,
    Id(id): Id<SenderId>,
    JsonBody(patch): JsonBody<SenderPatch>,
) -> ApiResult<Json<SenderView>> {
    let change = SenderChange {
        name: patch.name,
        provider: patch.provider,
        provider_config: patch.provider_config,
        timezone: patch.timezone,
        pacing: patch.pacing,
    };
    let sender = service::update(
        &state.db,
        auth.workspace,
        id,
        change,
        state.config.url_guard(),
        state.clock.now(),
    )
    .await?;
    Ok(Json(SenderView::of(&sender)))
}

/// Delete a sender that no campaign or message refers to
#[utoipa::path(delete, path = "/v1/senders/{id}", tag = "senders",
    params(("id" = SenderId, Path, description = "Sender id")),
    responses((status = 204, description = "Deleted"),
              (status = 409, description = "Campaigns or messages still use it", body = super::error::ErrorEnvelope)))]
async fn delete(
    auth: Authorized<can::SendersWrite>,
    State(state): State<AppState>,
    Id(id): Id<SenderId>,
) -> ApiResult<StatusCode> {
    service::delete(&state.db, auth.workspace, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
