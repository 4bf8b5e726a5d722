//! `/v1/campaigns`: drafts, their schedule, and the state machine of DESIGN.md
//! (`draft → scheduled → running ⇄ paused → completed`, `… → canceled`).

use std::collections::BTreeMap;

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
use super::error::{ApiError, ApiResult};
use super::extract::{Id, JsonBody, PageParams, Query};
use super::messages::MessageBody;
use crate::domain::campaign::{Audience, CampaignStats, CampaignStatus};
use crate::domain::ids::{CampaignId, SenderId, TemplateId};
use crate::domain::message::{Counters, MessageStatus};
use crate::domain::whatsapp::WhatsAppTemplate;
use crate::service::campaigns::{self as service, Draft, LaunchBy, Patch};
use crate::service::messages;
use crate::store::campaigns::Campaign;
use crate::store::messages::MessageFilter;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(show, update, delete))
        .routes(routes!(schedule))
        .routes(routes!(start))
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(cancel))
        .routes(routes!(stats))
        .routes(routes!(campaign_messages))
}

#[derive(Debug, Deserialize, ToSchema)]
struct NewCampaign {
    name: String,
    sender_id: SenderId,
    /// Send this template's content (copied now; later edits to it do not change the campaign)…
    template_id: Option<TemplateId>,
    /// …or this text.
    content: Option<String>,
    media_url: Option<String>,
    audience: Audience,
    /// Values for the template's variables that no contact field supplies.
    #[serde(default)]
    variables: BTreeMap<String, String>,
}

/// Fields to change while the campaign is a draft or scheduled.
#[derive(Debug, Default, Deserialize, ToSchema)]
struct CampaignPatch {
    name: Option<String>,
    sender_id: Option<SenderId>,
    template_id: Option<TemplateId>,
    content: Option<String>,
    media_url: Option<String>,
    audience: Option<Audience>,
    variables: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize, ToSchema)]
struct ScheduleRequest {
    /// `2026-12-01T09:00:00` in `timezone`, or an instant with a UTC offset.
    at: String,
    /// IANA time zone of a local `at`; the sender's time zone when absent.
    timezone: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct CampaignQuery {
    #[param(inline)]
    status: Option<CampaignStatus>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct MessageQuery {
    #[param(inline)]
    status: Option<MessageStatus>,
}

/// A campaign, as API.md shows it (its counters are at `/stats`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Campaign)]
struct CampaignBody {
    id: CampaignId,
    name: String,
    sender_id: SenderId,
    template_id: Option<TemplateId>,
    content: String,
    media_url: Option<String>,
    /// The template's WhatsApp part, as it was when the campaign was written.
    whatsapp: Option<WhatsAppTemplate>,
    audience: Audience,
    variables: BTreeMap<String, String>,
    status: CampaignStatus,
    scheduled_at: Option<DateTime<Utc>>,
    started_at: Option<DateTime<Utc>>,
    paused_at: Option<DateTime<Utc>>,
    /// Why Herald paused it itself (its sender cannot send); `null` when a person paused it.
    paused_reason: Option<String>,
    completed_at: Option<DateTime<Utc>>,
    canceled_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// On create and change only: what is allowed but likely unwanted (free-form text through
    /// WhatsApp to people outside the 24-hour window).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<WarningBody>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Warning)]
struct WarningBody {
    code: &'static str,
    message: String,
    /// How many recipients it concerns.
    count: i64,
}

impl CampaignBody {
    fn warned(mut self, warnings: Vec<service::Warning>) -> Self {
        self.warnings = warnings
            .into_iter()
            .map(|warning| WarningBody {
                code: warning.code,
                message: warning.message,
                count: warning.count,
            })
            .collect();
        self
    }
}

impl From<Campaign> for CampaignBody {
    fn from(campaign: Campaign) -> Self {
        Self {
            id: campaign.id,
            name: campaign.name,
            sender_id: campaign.sender_id,
            template_id: campaign.template_id,
            content: campaign.content,
            media_url: campaign.media_url,
            whatsapp: campaign.whatsapp.map(|part| part.0),
            audience: campaign.audience.0,
            variables: campaign.variables.0,
            status: campaign.status,
            scheduled_at: campaign.scheduled_at,
            started_at: campaign.started_at,
            paused_at: campaign.paused_at,
            paused_reason: campaign.paused_reason,
            completed_at: campaign.completed_at,
            canceled_at: campaign.canceled_at,
            created_at: campaign.created_at,
            updated_at: campaign.updated_at,
            warnings: Vec::new(),
        }
    }
}

/// `GET /v1/campaigns/{id}/stats`, as API.md defines it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CampaignStats)]
pub struct CampaignStatsBody {
    status: CampaignStatus,
    #[serde(flatten)]
    counters: Counters,
    delivery_rate: f64,
    read_rate: f64,
}

impl From<CampaignStats> for CampaignStatsBody {
    fn from(stats: CampaignStats) -> Self {
        Self {
            status: stats.status,
            counters: stats.counters,
            delivery_rate: stats.delivery_rate,
            read_rate: stats.read_rate,
        }
    }
}

/// Create a campaign (as a draft)
#[utoipa::path(post, path = "/v1/campaigns", tag = "campaigns", request_body = NewCampaign,
    responses((status = 201, description = "Created as a draft", body = CampaignBody)))]
async fn create(
    auth: Authorized<can::CampaignsWrite>,
    State(state): State<AppState>,
    JsonBody(new): JsonBody<NewCampaign>,
) -> ApiResult<(StatusCode, Json<CampaignBody>)> {
    let draft = Draft {
        name: new.name,
        sender_id: new.sender_id,
        template_id: new.template_id,
        content: new.content,
        media_url: new.media_url,
        audience: new.audience,
        variables: new.variables,
    };
    let now = state.clock.now();
    let campaign = service::create(&state.db, auth.workspace, draft, now).await?;
    let warnings = service::warnings(&state.db, &campaign, now).await?;
    Ok((
        StatusCode::CREATED,
        Json(CampaignBody::from(campaign).warned(warnings)),
    ))
}

/// List campaigns
#[utoipa::path(get, path = "/v1/campaigns", tag = "campaigns", params(PageParams, CampaignQuery),
    responses((status = 200, description = "A page of campaigns, newest first", body = inline(List<CampaignBody>))))]
async fn list(
    auth: Authorized<can::CampaignsRead>,
    State(state): State<AppState>,
    Query(page): Query<PageParams>,
    Query(query): Query<CampaignQuery>,
) -> ApiResult<Json<List<CampaignBody>>> {
    let page = page.page()?;
    let (campaigns, total) = service::list(&state.db, auth.workspace, query.status, page).await?;
    Ok(Json(List::of(campaigns, page, total)))
}

/// Show a campaign
#[utoipa::path(get, path = "/v1/campaigns/{id}", tag = "campaigns",
    params(("id" = CampaignId, Path, description = "Campaign id")),
    responses((status = 200, description = "The campaign", body = CampaignBody)))]
async fn show(
    auth: Authorized<can::CampaignsRead>,
    State(state): State<AppState>,
    Id(id): Id<CampaignId>,
) -> ApiResult<Json<CampaignBody>> {
    let campaign = service::get(&state.db, auth.workspace, id).await?;
    Ok(Json(campaign.into()))
}

/// Change a draft or scheduled campaign
#[utoipa::path(patch, path = "/v1/campaigns/{id}", tag = "campaigns", request_body = CampaignPatch,
    params(("id" = CampaignId, Path, description = "Campaign id")),
    responses((status = 200, description = "The changed campaign", body = CampaignBody)))]
async fn update(
    auth: Authorized<can::CampaignsWrite>,
    State(state): State<AppState>,
    Id(id): Id<CampaignId>,
    JsonBody(patch): JsonBody<CampaignPatch>,
) -> ApiResult<Json<CampaignBody>> {
    let patch = Patch {
        name: patch.name,
        sender_id: patch.sender_id,
        template_id: patch.template_id,
        content: patch.content,
        media_url: patch.media_url,
        audience: patch.audience,
        variables: patch.variables,
    };
    let now = state.clock.now();
    let campaign = service::update(&state.db, auth.workspace, id, patch, now).await?;
    let warnings = service::warnings(&state.db, &campaign, now).await?;
    Ok(Json(CampaignBody::from(campaign).warned(warnings)))
}

/// Delete a draft, scheduled or canceled campaign, with its messages
#[utoipa::path(delete, path = "/v1/campaigns/{id}", tag = "campaigns",
    params(("id" = CampaignId, Path, description = "Campaign id")),
    responses((status = 204, description = "Deleted")))]
async fn delete(
    auth: Authorized<can::CampaignsWrite>,
    State(state): State<AppState>,
    Id(id): Id<CampaignId>,
) -> ApiResult<StatusCode> {
    service::delete(&state.db, auth.workspace, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Schedule a draft, or move a scheduled campaign's time
#[utoipa::path(post, path = "/v1/campaigns/{id}/schedule", tag = "campaigns",
    request_body = ScheduleRequest,
    params(("id" = CampaignId, Path, description = "Campaign id")),
    responses((status = 200, description = "Scheduled", body = CampaignBody)))]
async fn schedule(
    auth: Authorized<can::CampaignsWrite>,
    State(state): State<AppState>,
    Id(id): Id<CampaignId>,
    JsonBody(request): JsonBody<ScheduleRequest>,
) -> ApiResult<Json<CampaignBody>> {
    let campaign = service::schedule(
        &state.db,
        auth.workspace,
        id,
        &request.at,
        request.timezone.as_deref(),
        state.clock.now(),
    )
    .await?;
    Ok(Json(campaign.into()))
}

/// Start a draft or scheduled campaign now
#[utoipa::path(post, path = "/v1/campaigns/{id}/start", tag = "campaigns",
    params(("id" = CampaignId, Path, description = "Campaign id")),
    responses((status = 200, description = "Running (or completed, when no one is in the audience)", body = CampaignBody)))]
async fn start(
    auth: Authorized<can::CampaignsWrite>,
    State(state): State<AppState>,
    Id(id): Id<CampaignId>,
) -> ApiResult<Json<CampaignBody>> {
    let launched = service::launch(
        &state.db,
        auth.workspace,
        id,
        LaunchBy::Person,
        state.clock.now(),
    )
    .await?;
    // A person's launch is never left alone: refusals are errors.
    launched
        .map(|campaign| Json(campaign.into()))
        .ok_or(ApiError::NotFound)
}

/// Pause a running campaign: no new send starts once this returns
#[utoipa::path(post, path = "/v1/campaigns/{id}/pause", tag = "campaigns",
    params(("id" = CampaignId, Path, description = "Campaign id")),
    responses((status = 200, description = "Paused", body = CampaignBody)))]
async fn pause(
    auth: Authorized<can::CampaignsWrite>,
    State(state): State<AppState>,
    Id(id): Id<CampaignId>,
) -> ApiResult<Json<CampaignBody>> {
    let campaign = service::pause(&state.db, auth.workspace, id, state.clock.now()).await?;
    Ok(Json(campaign.into()))
}

/// Resume a paused campaign
#[utoipa::path(post, path = "/v1/campaigns/{id}/resume", tag = "campaigns",
    params(("id" = CampaignId, Path, description = "Campaign id")),
    responses((status = 200, description = "Running again", body = CampaignBody)))]
async fn resume(
    auth: Authorized<can::CampaignsWrite>,
    State(state): State<AppState>,
    Id(id): Id<CampaignId>,
) -> ApiResult<Json<CampaignBody>> {
    let campaign = service::resume(&state.db, auth.workspace, id, state.clock.now()).await?;
    Ok(Json(campaign.into()))
}

/// Cancel a scheduled, running or paused campaign; pending messages are skipped
#[utoipa::path(post, path = "/v1/campaigns/{id}/cancel", tag = "campaigns",
    params(("id" = CampaignId, Path, description = "Campaign id")),
    responses((status = 200, description = "Canceled", body = CampaignBody)))]
async fn cancel(
    auth: Authorized<can::CampaignsWrite>,
    State(state): State<AppState>,
    Id(id): Id<CampaignId>,
) -> ApiResult<Json<CampaignBody>> {
    let campaign = service::cancel(&state.db, auth.workspace, id, state.clock.now()).await?;
    Ok(Json(campaign.into()))
}

/// A campaign's delivery statistics
///
/// Counts are cumulative by stage: `sent` counts every message that reached sent or later,
/// `delivered` those that reached delivered or read. Rates are percentages with two decimals.
#[utoipa::path(get, path = "/v1/campaigns/{id}/stats", tag = "campaigns",
    params(("id" = CampaignId, Path, description = "Campaign id")),
    responses((status = 200, description = "Its counters", body = CampaignStatsBody)))]
async fn stats(
    auth: Authorized<can::CampaignsRead>,
    State(state): State<AppState>,
    Id(id): Id<CampaignId>,
) -> ApiResult<Json<CampaignStatsBody>> {
    let campaign = service::get(&state.db, auth.workspace, id).await?;
    Ok(Json(campaign.stats().into()))
}

/// A campaign's messages
#[utoipa::path(get, path = "/v1/campaigns/{id}/messages", tag = "campaigns",
    params(("id" = CampaignId, Path, description = "Campaign id"), PageParams, MessageQuery),
    responses((status = 200, description = "A page of its messages", body = inline(List<MessageBody>))))]
async fn campaign_messages(
    auth: Authorized<can::CampaignsRead>,
    State(state): State<AppState>,
    Id(id): Id<CampaignId>,
    Query(page): Query<PageParams>,
    Query(query): Query<MessageQuery>,
) -> ApiResult<Json<List<MessageBody>>> {
    let page = page.page()?;
    let filter = MessageFilter {
        campaign: Some(id),
        status: query.status,
        direction: None,
        contact: None,
    };
    let (messages, total) = messages::list(&state.db, auth.workspace, filter, page).await?;
    Ok(Json(List::of(messages, page, total)))
}
