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
use super::error::{ApiError, ApiResult};
use super::extract::{Id, JsonBody, PageParams, Query};
use crate::domain::auth::random_secret;
use crate::domain::contact::parse_timezone;
use crate::domain::ids::SenderId;
use crate::domain::pacing::Pacing;
use crate::domain::validation::FieldErrors;
use crate::engine::pacing::{local_day, warmup_day};
use crate::providers::{self, ProviderConfigError, secrets};
use crate::store::senders::{self, Sender, SenderFields};
use crate::store::usage;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(show, update, delete))
}

/// `provider_config` fit to show: the secrets its provider module declares masked (sending the
/// mask back in a PATCH keeps the stored value). A provider Herald does not know shows nothing,
/// rather than a guess at what is secret.
fn shown_config(provider: &str, config: &Value) -> Value {
    match providers::module(provider) {
        Ok(module) => secrets::masked(config, module.secrets()),
        Err(_) => Value::Object(Default::default()),
    }
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
            provider: sender.provider.clone(),
            provider_config: shown_config(&sender.provider, &sender.provider_config.0),
            timezone: sender.timezone.clone(),
            pacing: sender.pacing(),
            callback_secret: None,
            today: None,
            created_at: sender.created_at,
            updated_at: sender.updated_at,
        }
    }
}

/// A sender's fields, checked together.
struct Checked {
    name: String,
    provider: String,
    provider_config: Value,
    timezone: String,
    pacing: Pacing,
}

impl Checked {
    /// The store's fields; warmup day 1 is kept from `previous` while warmup stays on.
    fn fields(&self, previous: Option<&Sender>, now: DateTime<Utc>) -> SenderFields<'_> {
        SenderFields {
            name: &self.name,
            provider: &self.provider,
            provider_config: &self.provider_config,
            timezone: &self.timezone,
            pacing: &self.pacing,
            warmup_started_on: warmup_start(&self.pacing, previous, &self.timezone, now),
        }
    }
}

fn check(checked: Checked) -> ApiResult<Checked> {
    let mut errors = FieldErrors::new();
    if checked.name.trim().is_empty() {
        errors.add("name", "must not be empty");
    }
    if !checked.provider_config.is_object() {
        errors.add("provider_config", "must be an object");
    } else if let Err(error) = providers::validate(&checked.provider, &checked.provider_config) {
        match error {
            ProviderConfigError::Unknown(_) => errors.add("provider", error.to_string()),
            ProviderConfigError::Invalid { field, message } => {
                errors.add(format!("provider_config.{field}"), message)
            }
        }
    }
    if let Err(error) = parse_timezone(&checked.timezone) {
        errors.add("timezone", error.to_string());
    }
    if let Err(pacing_errors) = checked.pacing.validate() {
        return Err(ApiError::Validation(errors.merged(pacing_errors)));
    }
    errors.into_result().map_err(ApiError::Validation)?;
    Ok(Checked {
        name: checked.name.trim().to_owned(),
        ..checked
    })
}

/// Local date of warmup day 1: today when warmup starts now, else unchanged.
fn warmup_start(
    pacing: &Pacing,
    previous: Option<&Sender>,
    timezone: &str,
    now: DateTime<Utc>,
) -> Option<NaiveDate> {
    if !pacing.warmup_enabled {
        return None;
    }
    previous
        .filter(|sender| sender.warmup_enabled)
        .and_then(|sender| sender.warmup_started_on)
        .or_else(|| parse_timezone(timezone).ok().map(|tz| local_day(now, tz)))
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
    let checked = check(Checked {
        name: new.name,
        provider: new.provider,
        provider_config: new
            .provider_config
            .unwrap_or_else(|| Value::Object(Map::new())),
        timezone: new.timezone.unwrap_or_else(|| "UTC".into()),
        pacing: new.pacing.unwrap_or_default(),
    })?;
    let now = state.clock.now();
    let callback_secret = random_secret();
    let fields = checked.fields(None, now);
    let mut tx = state.db.begin().await?;
    let sender = senders::insert(&mut tx, auth.workspace, &fields, &callback_secret, now).await?;
    tx.commit().await?;
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
    let mut conn = state.db.read().await?;
    let (senders, total) = senders::list(conn.conn(), auth.workspace, page).await?;
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
    let mut conn = state.db.read().await?;
    let sender = senders::get(conn.conn(), auth.workspace, id).await?;
    let pacing = sender.pacing();
    let tz = sender.tz()?;
    let date = local_day(state.clock.now(), tz);
    let day = warmup_day(sender.warmup_started_on, date);
    let sent = usage::sent_on(conn.conn(), sender.id, date).await?;
    let mut view = SenderView::of(&sender);
    view.today = Some(Today {
        date,
        sent,
        limit: pacing.daily_cap(day),
        warmup_day: pacing.warmup().map(|_| day),
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
    let mut tx = state.db.begin().await?;
    let current = senders::get(tx.conn(), auth.workspace, id).await?;
    let provider = patch.provider.unwrap_or_else(|| current.provider.clone());
    let provider_config = match patch.provider_config {
        // The mask stands for the stored secret only while the provider stays the same.
        Some(mut config) if provider == current.provider => {
            if let Ok(module) = providers::module(&provider) {
                secrets::restore_masked(&mut config, &current.provider_config.0, module.secrets());
            }
            config
        }
        Some(config) => config,
        None => current.provider_config.0.clone(),
    };
    let checked = check(Checked {
        name: patch.name.unwrap_or_else(|| current.name.clone()),
        provider,
        provider_config,
        timezone: patch.timezone.unwrap_or_else(|| current.timezone.clone()),
        pacing: patch.pacing.unwrap_or_else(|| current.pacing()),
    })?;
    let now = state.clock.now();
    let fields = checked.fields(Some(&current), now);
    let sender = senders::update(tx.conn(), auth.workspace, id, &fields, now).await?;
    tx.commit().await?;
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
    let mut conn = state.db.write().await?;
    senders::delete(conn.conn(), auth.workspace, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
