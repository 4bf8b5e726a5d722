//! `/v1/automations`: rules that answer inbound messages, their runs, and
//! `/v1/settings/keywords`, the workspace's answers to STOP, START and HELP.

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
use super::extract::{Id, JsonBody, PageParams, Query, present};
use crate::domain::automation::{KeywordReplies, Reply, Trigger, TriggerInput, TriggerType};
use crate::domain::ids::{AutomationId, AutomationRunId, ContactId, MessageId, SenderId};
use crate::service::automations::{self as service, AutomationChange, AutomationInput};
use crate::store::automations::{Automation, AutomationFilter, Run};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(show, update, delete))
        .routes(routes!(toggle))
        .routes(routes!(runs))
        .routes(routes!(keyword_replies, set_keyword_replies))
}

#[derive(Debug, Deserialize, ToSchema)]
struct NewAutomation {
    name: String,
    /// Answer on this sender only; `null` or absent: on every sender of the workspace.
    sender_id: Option<SenderId>,
    /// Higher first; ties go to the older rule. Default 0.
    #[serde(default)]
    priority: i64,
    /// Default true.
    enabled: Option<bool>,
    /// The rule does not answer the same contact again within this many seconds. Default 0.
    #[serde(default)]
    cooldown_s: i64,
    trigger: TriggerInput,
    /// `{"content"}` or `{"template_id"}`, rendered for the contact.
    reply: Reply,
}

#[derive(Debug, Deserialize, ToSchema)]
struct AutomationPatch {
    name: Option<String>,
    /// `null`: every sender.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<SenderId>)]
    sender_id: Option<Option<SenderId>>,
    priority: Option<i64>,
    enabled: Option<bool>,
    cooldown_s: Option<i64>,
    /// Replaces the trigger.
    trigger: Option<TriggerInput>,
    /// Replaces the reply.
    reply: Option<Reply>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AutomationQuery {
    sender_id: Option<SenderId>,
    enabled: Option<bool>,
    #[param(inline)]
    trigger_type: Option<TriggerType>,
}

/// A rule, as API.md shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Automation)]
struct AutomationBody {
    id: AutomationId,
    name: String,
    sender_id: Option<SenderId>,
    priority: i64,
    enabled: bool,
    cooldown_s: i64,
    trigger: Trigger,
    reply: Reply,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<Automation> for AutomationBody {
    fn from(automation: Automation) -> Self {
        Self {
            id: automation.id,
            name: automation.name,
            sender_id: automation.sender_id,
            priority: automation.priority,
            enabled: automation.enabled,
            cooldown_s: automation.cooldown_s,
            trigger: automation.trigger_spec.0,
            reply: automation.reply_spec.0,
            created_at: automation.created_at,
            updated_at: automation.updated_at,
        }
    }
}

/// One reply a rule sent.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = AutomationRun)]
struct RunBody {
    id: AutomationRunId,
    inbound_message_id: MessageId,
    contact_id: ContactId,
    reply_message_id: MessageId,
    at: DateTime<Utc>,
}

impl From<Run> for RunBody {
    fn from(run: Run) -> Self {
        Self {
            id: run.id,
            inbound_message_id: run.inbound_message_id,
            contact_id: run.contact_id,
            reply_message_id: run.reply_message_id,
            at: run.at,
        }
    }
}

/// Create a rule
#[utoipa::path(post, path = "/v1/automations", tag = "automations", request_body = NewAutomation,
    responses((status = 201, description = "Created", body = AutomationBody)))]
async fn create(
    auth: Authorized<can::AutomationsWrite>,
    State(state): State<AppState>,
    JsonBody(new): JsonBody<NewAutomation>,
) -> ApiResult<(StatusCode, Json<AutomationBody>)> {
    let input = AutomationInput {
        name: new.name,
        sender_id: new.sender_id,
        priority: new.priority,
        enabled: new.enabled.unwrap_or(true),
        cooldown_s: new.cooldown_s,
        trigger: new.trigger,
        reply: new.reply,
    };
    let automation = service::create(&state.db, auth.workspace, input, state.clock.now()).await?;
    Ok((StatusCode::CREATED, Json(automation.into())))
}

/// List rules
///
/// In the order they are tried: highest priority first, ties oldest first.
#[utoipa::path(get, path = "/v1/automations", tag = "automations",
    params(PageParams, AutomationQuery),
    responses((status = 200, description = "A page of rules", body = inline(List<AutomationBody>))))]
async fn list(
    auth: Authorized<can::CampaignsRead>,
    State(state): State<AppState>,
    Query(page): Query<PageParams>,
    Query(query): Query<AutomationQuery>,
) -> ApiResult<Json<List<AutomationBody>>> {
    let page = page.page()?;
    let filter = AutomationFilter {
        sender: query.sender_id,
        enabled: query.enabled,
        trigger_type: query.trigger_type,
    };
    let (automations, total) = service::list(&state.db, auth.workspace, filter, page).await?;
    Ok(Json(List::of(automations, page, total)))
}

/// Show a rule
#[utoipa::path(get, path = "/v1/automations/{id}", tag = "automations",
    params(("id" = AutomationId, Path, description = "Automation id")),
    responses((status = 200, description = "The rule", body = AutomationBody)))]
async fn show(
    auth: Authorized<can::CampaignsRead>,
    State(state): State<AppState>,
    Id(id): Id<AutomationId>,
) -> ApiResult<Json<AutomationBody>> {
    Ok(Json(
        service::get(&state.db, auth.workspace, id).await?.into(),
    ))
}

/// Change a rule
#[utoipa::path(patch, path = "/v1/automations/{id}", tag = "automations",
    request_body = AutomationPatch,
    params(("id" = AutomationId, Path, description = "Automation id")),
    responses((status = 200, description = "The changed rule", body = AutomationBody)))]
async fn update(
    auth: Authorized<can::AutomationsWrite>,
    State(state): State<AppState>,
    Id(id): Id<AutomationId>,
    JsonBody(patch): JsonBody<AutomationPatch>,
) -> ApiResult<Json<AutomationBody>> {
    let change = AutomationChange {
        name: patch.name,
        sender_id: patch.sender_id,
        priority: patch.priority,
        enabled: patch.enabled,
        cooldown_s: patch.cooldown_s,
        trigger: patch.trigger,
        reply: patch.reply,
    };
    let automation =
        service::update(&state.db, auth.workspace, id, change, state.clock.now()).await?;
    Ok(Json(automation.into()))
}

/// Delete a rule, with its runs
#[utoipa::path(delete, path = "/v1/automations/{id}", tag = "automations",
    params(("id" = AutomationId, Path, description = "Automation id")),
    responses((status = 204, description = "Deleted")))]
async fn delete(
    auth: Authorized<can::AutomationsWrite>,
    State(state): State<AppState>,
    Id(id): Id<AutomationId>,
) -> ApiResult<StatusCode> {
    service::delete(&state.db, auth.workspace, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Turn a rule on or off
#[utoipa::path(post, path = "/v1/automations/{id}/toggle", tag = "automations",
    params(("id" = AutomationId, Path, description = "Automation id")),
    responses((status = 200, description = "The rule, enabled if it was not", body = AutomationBody)))]
async fn toggle(
    auth: Authorized<can::AutomationsWrite>,
    State(state): State<AppState>,
    Id(id): Id<AutomationId>,
) -> ApiResult<Json<AutomationBody>> {
    let automation = service::toggle(&state.db, auth.workspace, id, state.clock.now()).await?;
    Ok(Json(automation.into()))
}

/// A rule's replies
#[utoipa::path(get, path = "/v1/automations/{id}/runs", tag = "automations",
    params(("id" = AutomationId, Path, description = "Automation id"), PageParams),
    responses((status = 200, description = "A page of its replies, newest first", body = inline(List<RunBody>))))]
async fn runs(
    auth: Authorized<can::CampaignsRead>,
    State(state): State<AppState>,
    Id(id): Id<AutomationId>,
    Query(page): Query<PageParams>,
) -> ApiResult<Json<List<RunBody>>> {
    let page = page.page()?;
    let (runs, total) = service::runs(&state.db, auth.workspace, id, page).await?;
    Ok(Json(List::of(runs, page, total)))
}

/// The replies to STOP, START and HELP as a client sets them: a field left out gets API.md's
/// text, `null` sends nothing.
#[derive(Debug, Deserialize, ToSchema)]
struct KeywordRepliesInput {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    opt_out_reply: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    opt_in_reply: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    help_reply: Option<Option<String>>,
}

/// The workspace's replies to opt-out keywords
#[utoipa::path(get, path = "/v1/settings/keywords", tag = "automations",
    responses((status = 200, description = "`null` sends nothing", body = KeywordReplies)))]
async fn keyword_replies(
    auth: Authorized<can::CampaignsRead>,
    State(state): State<AppState>,
) -> ApiResult<Json<KeywordReplies>> {
    Ok(Json(
        service::keyword_replies(&state.db, auth.workspace).await?,
    ))
}

/// Set the replies to opt-out keywords
///
/// The keywords themselves always work: STOP opts out whatever the reply.
#[utoipa::path(put, path = "/v1/settings/keywords", tag = "automations",
    request_body = KeywordRepliesInput,
    responses((status = 200, description = "The replies now in force", body = KeywordReplies)))]
async fn set_keyword_replies(
    auth: Authorized<can::AutomationsWrite>,
    State(state): State<AppState>,
    JsonBody(input): JsonBody<KeywordRepliesInput>,
) -> ApiResult<Json<KeywordReplies>> {
    let defaults = KeywordReplies::default();
    let replies = KeywordReplies {
        opt_out_reply: input.opt_out_reply.unwrap_or(defaults.opt_out_reply),
        opt_in_reply: input.opt_in_reply.unwrap_or(defaults.opt_in_reply),
        help_reply: input.help_reply.unwrap_or(defaults.help_reply),
    };
    let replies =
        service::set_keyword_replies(&state.db, auth.workspace, replies, state.clock.now()).await?;
    Ok(Json(replies))
}
