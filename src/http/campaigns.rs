//! `/v1/campaigns`: drafts, their schedule, and the state machine of DESIGN.md
//! (`draft → scheduled → running ⇄ paused → completed`, `… → canceled`).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::List;
use super::auth::{Authorized, can};
use super::error::{ApiError, ApiResult};
use super::extract::{Id, JsonBody, PageParams, Query};
use super::templates::resolve_source;
use crate::domain::campaign::{Audience, CampaignStatus};
use crate::domain::contact::parse_timezone;
use crate::domain::ids::{CampaignId, SenderId, TemplateId, WorkspaceId};
use crate::domain::message::MessageStatus;
use crate::domain::validation::FieldErrors;
use crate::engine::pacing::resolve_local;
use crate::store::campaigns::{self, Campaign, CampaignFields, CampaignStats};
use crate::store::messages::{self, Message, MessageFilter};
use crate::store::{Conn, StoreError, audience, groups, senders};

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

/// Most contacts a `contacts` audience may name (each is one query parameter at launch).
pub const MAX_AUDIENCE_CONTACTS: usize = 10_000;

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

/// A campaign's fields as sent, before they are checked against the workspace.
struct Draft {
    name: String,
    sender_id: SenderId,
    template_id: Option<TemplateId>,
    content: Option<String>,
    media_url: Option<String>,
    audience: Audience,
    variables: BTreeMap<String, String>,
}

/// Checks a campaign against its workspace: the sender, template and group exist there, the
/// content parses, and every variable without a fallback has a source.
async fn check(
    mut conn: Conn<'_>,
    workspace: WorkspaceId,
    draft: Draft,
) -> ApiResult<CampaignFields> {
    let mut errors = FieldErrors::new();
    if draft.name.trim().is_empty() {
        errors.add("name", "must not be empty");
    }
    match senders::get(conn.reborrow(), workspace, draft.sender_id).await {
        Ok(_) => {}
        Err(StoreError::NotFound) => errors.add("sender_id", "no such sender"),
        Err(error) => return Err(error.into()),
    }
    let source = resolve_source(
        conn.reborrow(),
        workspace,
        draft.template_id,
        draft.content,
        draft.media_url,
        &mut errors,
    )
    .await?;
    match &draft.audience {
        Audience::All => {}
        Audience::Group { group_id } => {
            match groups::get(conn.reborrow(), workspace, *group_id).await {
                Ok(_) => {}
                Err(StoreError::NotFound) => errors.add("audience.group_id", "no such group"),
                Err(error) => return Err(error.into()),
            }
        }
        Audience::Tags { tags } => {
            if tags.iter().all(|tag| tag.trim().is_empty()) {
                errors.add("audience.tags", "give at least one tag");
            }
        }
        Audience::Contacts { contact_ids } => {
            if contact_ids.is_empty() {
                errors.add("audience.contact_ids", "give at least one contact");
            } else if contact_ids.len() > MAX_AUDIENCE_CONTACTS {
                errors.add(
                    "audience.contact_ids",
                    format!(
                        "at most {MAX_AUDIENCE_CONTACTS} contacts; use a group or tags for more"
                    ),
                );
            }
        }
    }
    errors.into_result().map_err(ApiError::Validation)?;

    if let Some(template) = &source.template {
        let mut unfillable = FieldErrors::new();
        let reaches_anyone =
            audience::count(conn.reborrow(), workspace, &draft.audience).await? > 0;
        for name in template.required_variables() {
            let given = draft.variables.get(name).is_some_and(|v| !v.is_empty());
            if given || !reaches_anyone {
                continue;
            }
            if !audience::any_can_fill(conn.reborrow(), workspace, &draft.audience, name).await? {
                unfillable.add(
                    format!("variables.{name}"),
                    format!(
                        "variable '{name}' has no fallback, no campaign value and no recipient \
                         with a value for it"
                    ),
                );
            }
        }
        unfillable.into_result().map_err(ApiError::Validation)?;
    }
    Ok(CampaignFields {
        name: draft.name.trim().to_owned(),
        sender_id: draft.sender_id,
        template_id: draft.template_id,
        content: source.content.unwrap_or_default(),
        media_url: source.media_url,
        audience: draft.audience,
        variables: draft.variables,
    })
}

/// Create a campaign (as a draft)
#[utoipa::path(post, path = "/v1/campaigns", tag = "campaigns", request_body = NewCampaign,
    responses((status = 201, description = "Created as a draft", body = Campaign)))]
async fn create(
    auth: Authorized<can::CampaignsWrite>,
    State(state): State<AppState>,
    JsonBody(new): JsonBody<NewCampaign>,
) -> ApiResult<(StatusCode, Json<Campaign>)> {
    let draft = Draft {
        name: new.name,
        sender_id: new.sender_id,
        template_id: new.template_id,
        content: new.content,
        media_url: new.media_url,
        audience: new.audience,
        variables: new.variables,
    };
    let fields = {
        let mut conn = state.db.read().await?;
        check(conn.conn(), auth.workspace, draft).await?
    };
    let mut conn = state.db.write().await?;
    let campaign =
        campaigns::insert(conn.conn(), auth.workspace, &fields, state.clock.now()).await?;
    Ok((StatusCode::CREATED, Json(campaign)))
}

/// List campaigns
#[utoipa::path(get, path = "/v1/campaigns", tag = "campaigns", params(PageParams, CampaignQuery),
    responses((status = 200, description = "A page of campaigns, newest first", body = inline(List<Campaign>))))]
async fn list(
    auth: Authorized<can::CampaignsRead>,
    State(state): State<AppState>,
    Query(page): Query<PageParams>,
    Query(query): Query<CampaignQuery>,
) -> ApiResult<Json<List<Campaign>>> {
    let page = page.page()?;
    let mut conn = state.db.read().await?;
    let (campaigns, total) =
        campaigns::list(conn.conn(), auth.workspace, query.status, page).await?;
    Ok(Json(List::new(campaigns, page, total)))
}

/// Show a campaign
#[utoipa::path(get, path = "/v1/campaigns/{id}", tag = "campaigns",
    params(("id" = CampaignId, Path, description = "Campaign id")),
    responses((status = 200, description = "The campaign", body = Campaign)))]
async fn show(
    auth: Authorized<can::CampaignsRead>,
    State(state): State<AppState>,
    Id(id): Id<CampaignId>,
) -> ApiResult<Json<Campaign>> {
    let mut conn = state.db.read().await?;
    Ok(Json(campaigns::get(conn.conn(), auth.workspace, id).await?))
}

/// Change a draft or scheduled campaign
#[utoipa::path(patch, path = "/v1/campaigns/{id}", tag = "campaigns", request_body = CampaignPatch,
    params(("id" = CampaignId, Path, description = "Campaign id")),
    responses((status = 200, description = "The changed campaign", body = Campaign)))]
async fn update(
    auth: Authorized<can::CampaignsWrite>,
    State(state): State<AppState>,
    Id(id): Id<CampaignId>,
    JsonBody(patch): JsonBody<CampaignPatch>,
) -> ApiResult<Json<Campaign>> {
    let fields = {
        let mut conn = state.db.read().await?;
        let current = campaigns::get(conn.conn(), auth.workspace, id).await?;
        if !current.status.is_editable() {
            return Err(ApiError::InvalidTransition {
                status: current.status.to_string(),
            });
        }
        // A new template or new text replaces the old source entirely; with neither, the
        // campaign keeps the content it copied (not its template's later edits).
        let keeps_content = patch.template_id.is_none() && patch.content.is_none();
        let (template_id, content) = match (patch.template_id, patch.content) {
            (None, None) => (None, Some(current.content)),
            given => given,
        };
        let draft = Draft {
            name: patch.name.unwrap_or(current.name),
            sender_id: patch.sender_id.unwrap_or(current.sender_id),
            template_id,
            content,
            media_url: patch.media_url.or(current.media_url),
            audience: patch.audience.unwrap_or(current.audience.0),
            variables: patch.variables.unwrap_or(current.variables.0),
        };
        let mut fields = check(conn.conn(), auth.workspace, draft).await?;
        if keeps_content {
            fields.template_id = current.template_id;
        }
        fields
    };
    let mut conn = state.db.write().await?;
    let campaign =
        campaigns::update(conn.conn(), auth.workspace, id, &fields, state.clock.now()).await?;
    Ok(Json(campaign))
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
    let mut conn = state.db.write().await?;
    campaigns::delete(conn.conn(), auth.workspace, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// When a schedule request means: an instant with an offset, or a local time in `timezone`
/// (the sender's when absent).
fn schedule_time(request: &ScheduleRequest, sender_timezone: &str) -> ApiResult<DateTime<Utc>> {
    let at = request.at.trim();
    if let Ok(instant) = DateTime::parse_from_rfc3339(at) {
        return Ok(instant.with_timezone(&Utc));
    }
    let local = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|format| NaiveDateTime::parse_from_str(at, format).ok())
    .ok_or_else(|| {
        ApiError::validation(
            "at",
            "must be a date and time such as 2026-12-01T09:00:00, with a UTC offset or a timezone",
        )
    })?;
    let zone = request.timezone.as_deref().unwrap_or(sender_timezone);
    let tz = parse_timezone(zone)
        .map_err(|error| ApiError::validation("timezone", error.to_string()))?;
    Ok(resolve_local(tz, local))
}

/// Schedule a draft, or move a scheduled campaign's time
#[utoipa::path(post, path = "/v1/campaigns/{id}/schedule", tag = "campaigns",
    request_body = ScheduleRequest,
    params(("id" = CampaignId, Path, description = "Campaign id")),
    responses((status = 200, description = "Scheduled", body = Campaign)))]
async fn schedule(
    auth: Authorized<can::CampaignsWrite>,
    State(state): State<AppState>,
    Id(id): Id<CampaignId>,
    JsonBody(request): JsonBody<ScheduleRequest>,
) -> ApiResult<Json<Campaign>> {
    let now = state.clock.now();
    let at = {
        let mut conn = state.db.read().await?;
        let campaign = campaigns::get(conn.conn(), auth.workspace, id).await?;
        if !campaign.status.can_become(CampaignStatus::Scheduled) {
            return Err(ApiError::InvalidTransition {
                status: campaign.status.to_string(),
            });
        }
        let sender = senders::get(conn.conn(), auth.workspace, campaign.sender_id).await?;
        schedule_time(&request, &sender.timezone)?
    };
    if at <= now {
        return Err(ApiError::validation("at", "is in the past"));
    }
    let campaign =
        crate::engine::schedule_campaign(&state.db, &state.jobs, auth.workspace, id, at, now)
            .await?;
    Ok(Json(campaign))
}

/// Start a draft or scheduled campaign now
#[utoipa::path(post, path = "/v1/campaigns/{id}/start", tag = "campaigns",
    params(("id" = CampaignId, Path, description = "Campaign id")),
    responses((status = 200, description = "Running (or completed, when no one is in the audience)", body = Campaign)))]
async fn start(
    auth: Authorized<can::CampaignsWrite>,
    State(state): State<AppState>,
    Id(id): Id<CampaignId>,
) -> ApiResult<Json<Campaign>> {
    let mut tx = state.db.begin().await?;
    let campaign = campaigns::launch(&mut tx, auth.workspace, id, state.clock.now()).await?;
    tx.commit().await?;
    tracing::info!(campaign_id = %id, recipients = campaign.total_count, "campaign started");
    Ok(Json(campaign))
}

/// Pause a running campaign: no new send starts once this returns
#[utoipa::path(post, path = "/v1/campaigns/{id}/pause", tag = "campaigns",
    params(("id" = CampaignId, Path, description = "Campaign id")),
    responses((status = 200, description = "Paused", body = Campaign)))]
async fn pause(
    auth: Authorized<can::CampaignsWrite>,
    State(state): State<AppState>,
    Id(id): Id<CampaignId>,
) -> ApiResult<Json<Campaign>> {
    let mut conn = state.db.write().await?;
    Ok(Json(
        campaigns::pause(conn.conn(), auth.workspace, id, state.clock.now()).await?,
    ))
}

/// Resume a paused campaign
#[utoipa::path(post, path = "/v1/campaigns/{id}/resume", tag = "campaigns",
    params(("id" = CampaignId, Path, description = "Campaign id")),
    responses((status = 200, description = "Running again", body = Campaign)))]
async fn resume(
    auth: Authorized<can::CampaignsWrite>,
    State(state): State<AppState>,
    Id(id): Id<CampaignId>,
) -> ApiResult<Json<Campaign>> {
    let mut conn = state.db.write().await?;
    Ok(Json(
        campaigns::resume(conn.conn(), auth.workspace, id, state.clock.now()).await?,
    ))
}

/// Cancel a scheduled, running or paused campaign; pending messages are skipped
#[utoipa::path(post, path = "/v1/campaigns/{id}/cancel", tag = "campaigns",
    params(("id" = CampaignId, Path, description = "Campaign id")),
    responses((status = 200, description = "Canceled", body = Campaign)))]
async fn cancel(
    auth: Authorized<can::CampaignsWrite>,
    State(state): State<AppState>,
    Id(id): Id<CampaignId>,
) -> ApiResult<Json<Campaign>> {
    let mut tx = state.db.begin().await?;
    let campaign = campaigns::cancel(&mut tx, auth.workspace, id, state.clock.now()).await?;
    tx.commit().await?;
    Ok(Json(campaign))
}

/// A campaign's delivery statistics
///
/// Counts are cumulative by stage: `sent` counts every message that reached sent or later,
/// `delivered` those that reached delivered or read. Rates are percentages with two decimals.
#[utoipa::path(get, path = "/v1/campaigns/{id}/stats", tag = "campaigns",
    params(("id" = CampaignId, Path, description = "Campaign id")),
    responses((status = 200, description = "Its counters", body = CampaignStats)))]
async fn stats(
    auth: Authorized<can::CampaignsRead>,
    State(state): State<AppState>,
    Id(id): Id<CampaignId>,
) -> ApiResult<Json<CampaignStats>> {
    let mut conn = state.db.read().await?;
    let campaign = campaigns::get(conn.conn(), auth.workspace, id).await?;
    Ok(Json(campaign.stats()))
}

/// A campaign's messages
#[utoipa::path(get, path = "/v1/campaigns/{id}/messages", tag = "campaigns",
    params(("id" = CampaignId, Path, description = "Campaign id"), PageParams, MessageQuery),
    responses((status = 200, description = "A page of its messages", body = inline(List<Message>))))]
async fn campaign_messages(
    auth: Authorized<can::CampaignsRead>,
    State(state): State<AppState>,
    Id(id): Id<CampaignId>,
    Query(page): Query<PageParams>,
    Query(query): Query<MessageQuery>,
) -> ApiResult<Json<List<Message>>> {
    let page = page.page()?;
    let mut conn = state.db.read().await?;
    campaigns::get(conn.conn(), auth.workspace, id).await?;
    let filter = MessageFilter {
        campaign: Some(id),
        status: query.status,
        inbound: None,
    };
    let (messages, total) = messages::list(conn.conn(), auth.workspace, filter, page).await?;
    Ok(Json(List::new(messages, page, total)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(at: &str, timezone: Option<&str>) -> ScheduleRequest {
        ScheduleRequest {
            at: at.into(),
            timezone: timezone.map(Into::into),
        }
    }

    #[test]
    fn schedule_times_resolve_offsets_and_local_times() {
        let utc = |text: &str| text.parse::<DateTime<Utc>>().unwrap();
        assert_eq!(
            schedule_time(
                &request("2026-12-01T09:00:00", Some("Asia/Jerusalem")),
                "UTC"
            )
            .unwrap(),
            utc("2026-12-01T07:00:00Z")
        );
        assert_eq!(
            schedule_time(&request("2026-12-01T09:00:00+01:00", None), "UTC").unwrap(),
            utc("2026-12-01T08:00:00Z")
        );
        // No zone given: the sender's.
        assert_eq!(
            schedule_time(&request("2026-07-01T09:00", None), "America/New_York").unwrap(),
            utc("2026-07-01T13:00:00Z")
        );
        assert!(schedule_time(&request("tomorrow", None), "UTC").is_err());
        assert!(schedule_time(&request("2026-12-01T09:00:00", Some("Mars/Base")), "UTC").is_err());
    }
}
