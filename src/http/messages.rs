//! `/v1/messages`: single messages, sent now or at `scheduled_at`, paced like any other send;
//! and every message of the workspace, inbound and outbound.

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
use super::error::ApiResult;
use super::extract::{Id, JsonBody, PageParams, Query};
use crate::domain::ids::{CampaignId, ContactId, MessageId, SenderId, TemplateId};
use crate::domain::message::{Direction, MessageStatus};
use crate::service::messages::{self as service, SingleMessage};
use crate::store::messages::{Message, MessageFilter};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(send, list))
        .routes(routes!(show, cancel))
}

#[derive(Debug, Deserialize, ToSchema)]
struct NewSingleMessage {
    sender_id: SenderId,
    /// The recipient's phone, in any common spelling.
    to: String,
    /// The text (may use `<<variables>>`)…
    content: Option<String>,
    /// …or a template's.
    template_id: Option<TemplateId>,
    media_url: Option<String>,
    /// Values for variables the recipient's contact (if any) does not supply.
    #[serde(default)]
    variables: BTreeMap<String, String>,
    /// Not sent before this instant; now when absent.
    scheduled_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
struct Accepted {
    id: MessageId,
    status: MessageStatus,
}

/// A message, as API.md shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Message)]
pub(super) struct MessageBody {
    id: MessageId,
    campaign_id: Option<CampaignId>,
    sender_id: SenderId,
    contact_id: Option<ContactId>,
    direction: Direction,
    /// The contact's phone, in E.164.
    to: String,
    /// Inbound messages only: who wrote (E.164).
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<String>,
    /// Inbound messages only: when the platform says it was written.
    #[serde(skip_serializing_if = "Option::is_none")]
    received_at: Option<DateTime<Utc>>,
    /// Automatic replies only: the inbound message this one answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_to: Option<MessageId>,
    body: Option<String>,
    media_url: Option<String>,
    status: MessageStatus,
    attempts: i64,
    /// Not sent before this time.
    not_before: DateTime<Utc>,
    provider_message_id: Option<String>,
    error: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    sent_at: Option<DateTime<Utc>>,
    delivered_at: Option<DateTime<Utc>>,
    read_at: Option<DateTime<Utc>>,
    failed_at: Option<DateTime<Utc>>,
}

impl From<Message> for MessageBody {
    fn from(message: Message) -> Self {
        let inbound = message.direction == Direction::Inbound;
        Self {
            from: inbound.then(|| message.phone.clone()),
            received_at: message.delivered_at.filter(|_| inbound),
            id: message.id,
            campaign_id: message.campaign_id,
            sender_id: message.sender_id,
            contact_id: message.contact_id,
            direction: message.direction,
            to: message.phone,
            reply_to: message.reply_to,
            body: message.body,
            media_url: message.media_url,
            status: message.status,
            attempts: message.attempts,
            not_before: message.not_before,
            provider_message_id: message.provider_message_id,
            error: message.error,
            created_at: message.created_at,
            updated_at: message.updated_at,
            sent_at: message.sent_at,
            delivered_at: message.delivered_at,
            read_at: message.read_at,
            failed_at: message.failed_at,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct MessageQuery {
    #[param(inline)]
    status: Option<MessageStatus>,
    #[param(inline)]
    direction: Option<Direction>,
}

/// Send one message
///
/// Rendered now, with the fields of the contact that has this phone, if any; queued behind the
/// sender's pacing.
#[utoipa::path(post, path = "/v1/messages", tag = "messages", request_body = NewSingleMessage,
    responses((status = 202, description = "Queued", body = Accepted)))]
async fn send(
    auth: Authorized<can::MessagesSend>,
    State(state): State<AppState>,
    JsonBody(new): JsonBody<NewSingleMessage>,
) -> ApiResult<(StatusCode, Json<Accepted>)> {
    let single = SingleMessage {
        sender_id: new.sender_id,
        to: new.to,
        content: new.content,
        template_id: new.template_id,
        media_url: new.media_url,
        variables: new.variables,
        scheduled_at: new.scheduled_at,
    };
    let now = state.clock.now();
    let message = service::send(&state.db, auth.workspace, single, now).await?;
    if message.not_before <= now {
        state.wakeups.wake(message.sender_id);
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            id: message.id,
            status: message.status,
        }),
    ))
}

/// List messages, newest first
#[utoipa::path(get, path = "/v1/messages", tag = "messages", params(PageParams, MessageQuery),
    responses((status = 200, description = "A page of messages", body = inline(List<MessageBody>))))]
async fn list(
    auth: Authorized<can::MessagesRead>,
    State(state): State<AppState>,
    Query(page): Query<PageParams>,
    Query(query): Query<MessageQuery>,
) -> ApiResult<Json<List<MessageBody>>> {
    let page = page.page()?;
    let filter = MessageFilter {
        campaign: None,
        status: query.status,
        direction: query.direction,
        contact: None,
    };
    let (messages, total) = service::list(&state.db, auth.workspace, filter, page).await?;
    Ok(Json(List::of(messages, page, total)))
}

/// Show a message, with its status and times
#[utoipa::path(get, path = "/v1/messages/{id}", tag = "messages",
    params(("id" = MessageId, Path, description = "Message id")),
    responses((status = 200, description = "The message", body = MessageBody)))]
async fn show(
    auth: Authorized<can::MessagesRead>,
    State(state): State<AppState>,
    Id(id): Id<MessageId>,
) -> ApiResult<Json<MessageBody>> {
    let message = service::get(&state.db, auth.workspace, id).await?;
    Ok(Json(message.into()))
}

/// Cancel a single message that is still pending
#[utoipa::path(delete, path = "/v1/messages/{id}", tag = "messages",
    params(("id" = MessageId, Path, description = "Message id")),
    responses((status = 200, description = "Canceled (now `skipped`)", body = MessageBody)))]
async fn cancel(
    auth: Authorized<can::MessagesSend>,
    State(state): State<AppState>,
    Id(id): Id<MessageId>,
) -> ApiResult<Json<MessageBody>> {
    let message = service::cancel(&state.db, auth.workspace, id, state.clock.now()).await?;
    Ok(Json(message.into()))
}
