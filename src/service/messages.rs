//! Single messages: a phone in any common spelling, a sender and a source of the workspace, a
//! time that is not past, a recipient that is neither blocked nor opted out, and a body rendered
//! now with the recipient's contact fields.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::templates::resolve_source;
use super::{ServiceError, ServiceResult};
use crate::domain::ids::{MessageId, SenderId, TemplateId, WorkspaceId};
use crate::domain::phone::Phone;
use crate::domain::validation::FieldErrors;
use crate::render::{render_once, render_whatsapp_once};
use crate::store::messages::{self, Message, MessageFilter, NewMessage};
use crate::store::{Db, Page, StoreError, campaigns, contacts, senders};

/// A single message as asked for.
#[derive(Clone, Debug)]
pub struct SingleMessage {
    pub sender_id: SenderId,
    /// The recipient's phone, in any common spelling.
    pub to: String,
    /// The text (may use `<<variables>>`)…
    pub content: Option<String>,
    /// …or a template's.
    pub template_id: Option<TemplateId>,
    pub media_url: Option<String>,
    /// Values for variables the recipient's contact (if any) does not supply.
    pub variables: BTreeMap<String, String>,
    /// Not sent before this instant; now when absent.
    pub scheduled_at: Option<DateTime<Utc>>,
}

/// Checks, renders and queues one message behind its sender's pacing.
pub async fn send(
    db: &Db,
    workspace: WorkspaceId,
    new: SingleMessage,
    now: DateTime<Utc>,
) -> ServiceResult<Message> {
    let mut errors = FieldErrors::new();
    let phone = Phone::parse(&new.to)
        .map_err(|error| errors.add("to", error.to_string()))
        .ok();
    if new.scheduled_at.is_some_and(|at| at < now) {
        errors.add("scheduled_at", "is in the past");
    }
    let mut conn = db.read().await?;
    match senders::get(conn.conn(), workspace, new.sender_id).await {
        Ok(_) => {}
        Err(StoreError::NotFound) => errors.add("sender_id", "no such sender"),
        Err(error) => return Err(error.into()),
    }
    let source = resolve_source(
        conn.conn(),
        workspace,
        new.template_id,
        new.content,
        new.media_url,
        &mut errors,
    )
    .await?;
    errors.into_result()?;
    let media_url = source.media_url;
    let whatsapp = source.whatsapp.map(|(_, compiled)| compiled);
    let (Some(phone), Some(template)) = (phone, source.template) else {
        return Err(ServiceError::validation("content", "cannot be parsed"));
    };

    let contact = contacts::find_by_phone(conn.conn(), workspace, &phone).await?;
    if let Some(contact) = &contact {
        if contact.blocked {
            return Err(ServiceError::validation("to", "this contact is blocked"));
        }
        if contact.opted_out_at.is_some() {
            return Err(ServiceError::validation("to", "this contact has opted out"));
        }
    }
    let fields = match &contact {
        Some(contact) => contacts::render_fields(conn.conn(), &[contact.id])
            .await?
            .pop(),
        None => None,
    };
    drop(conn);
    let body = render_once(&template, fields.as_ref(), &new.variables)
        .map_err(|missing| ServiceError::Validation(missing_variables(&missing)))?;
    // The template's part approved at Meta, for a platform that sends templates.
    let whatsapp = whatsapp
        .map(|part| render_whatsapp_once(&part, fields.as_ref(), &new.variables))
        .transpose()
        .map_err(|missing| ServiceError::Validation(missing_variables(&missing)))?;
    let message = NewMessage {
        sender_id: new.sender_id,
        contact_id: contact.as_ref().map(|contact| contact.id),
        phone: phone.as_str(),
        body: &body,
        media_url: media_url.as_deref(),
        not_before: new.scheduled_at.unwrap_or(now).max(now),
        reply_to: None,
        whatsapp: whatsapp.as_ref(),
    };
    let mut conn = db.write().await?;
    Ok(messages::insert_single(conn.conn(), workspace, &message, now).await?)
}

/// One error per variable that has no value and no fallback.
pub fn missing_variables(missing: &[String]) -> FieldErrors {
    let mut errors = FieldErrors::new();
    for name in missing {
        errors.add(
            format!("variables.{name}"),
            format!("variable '{name}' has no value and no fallback"),
        );
    }
    errors
}

/// Cancels a single message still pending: it becomes `skipped`.
pub async fn cancel(
    db: &Db,
    workspace: WorkspaceId,
    id: MessageId,
    now: DateTime<Utc>,
) -> ServiceResult<Message> {
    let mut conn = db.write().await?;
    Ok(messages::cancel_single(conn.conn(), workspace, id, now).await?)
}

pub async fn get(db: &Db, workspace: WorkspaceId, id: MessageId) -> ServiceResult<Message> {
    let mut conn = db.read().await?;
    Ok(messages::get(conn.conn(), workspace, id).await?)
}

/// A page of the workspace's messages, newest first; a campaign's are in the order it sends
/// them, and only when the campaign is the workspace's.
pub async fn list(
    db: &Db,
    workspace: WorkspaceId,
    filter: MessageFilter,
    page: Page,
) -> ServiceResult<(Vec<Message>, i64)> {
    let mut conn = db.read().await?;
    if let Some(campaign) = filter.campaign {
        campaigns::get(conn.conn(), workspace, campaign).await?;
    }
    Ok(messages::list(conn.conn(), workspace, filter, page).await?)
}

/// A page of messages without their total: for a campaign's page, whose counters already say
/// how many of each status there are.
pub async fn rows(
    db: &Db,
    workspace: WorkspaceId,
    filter: MessageFilter,
    page: Page,
) -> ServiceResult<Vec<Message>> {
    let mut conn = db.read().await?;
    if let Some(campaign) = filter.campaign {
        campaigns::get(conn.conn(), workspace, campaign).await?;
    }
    Ok(messages::list_rows(conn.conn(), workspace, filter, page).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to_jane(sender: SenderId) -> SingleMessage {
        SingleMessage {
            sender_id: sender,
            to: "+20 100 000 0001".into(),
            content: Some("Hi <<name|there>>, code <<code>>".into()),
            template_id: None,
            media_url: None,
            variables: BTreeMap::from([("code".into(), "42".into())]),
            scheduled_at: None,
        }
    }

    #[tokio::test]
    async fn a_single_message_is_rendered_now_and_never_reaches_an_opted_out_contact() {
        let (db, ws, sender) = crate::service::testing::workspace_with_one_contact().await;
        let now = Utc::now();
        let queued = send(&db, ws, to_jane(sender), now).await.unwrap();
        assert_eq!(queued.body.as_deref(), Some("Hi there, code 42"));
        assert_eq!(queued.phone, "+201000000001");

        let missing = SingleMessage {
            variables: BTreeMap::new(),
            ..to_jane(sender)
        };
        assert!(matches!(
            send(&db, ws, missing, now).await,
            Err(ServiceError::Validation(errors)) if errors.to_string().contains("variables.code")
        ));

        let jane = {
            let mut conn = db.read().await.unwrap();
            let phone = Phone::parse("+201000000001").unwrap();
            contacts::find_by_phone(conn.conn(), ws, &phone)
                .await
                .unwrap()
                .unwrap()
        };
        {
            let mut conn = db.write().await.unwrap();
            contacts::set_opted_out(conn.conn(), ws, jane.id, Some(now), now)
                .await
                .unwrap();
        }
        assert!(matches!(
            send(&db, ws, to_jane(sender), now).await,
            Err(ServiceError::Validation(errors)) if errors.to_string().contains("opted out")
        ));
    }
}
