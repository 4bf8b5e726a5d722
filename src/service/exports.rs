//! CSV exports, streamed: a page of rows is read (on a connection held only for that read),
//! written as CSV and handed to the client before the next is read, so memory stays flat at
//! any size. The contacts file has the import's columns, so it imports back as it is.

use bytes::Bytes;
use futures::{Stream, StreamExt};

use super::{ServiceError, ServiceResult};
use crate::domain::ids::{CampaignId, ContactId, MessageId, WorkspaceId};
use crate::domain::message::MessageStatus;
use crate::store::contacts::{self, Contact, ContactFilter};
use crate::store::messages::{self, Message};
use crate::store::{Db, StoreError, analytics, campaigns};

/// Rows read and written per step.
const PAGE: i64 = 1000;

/// The columns the import reads (`service::imports`), custom fields after them.
const CONTACT_COLUMNS: [&str; 5] = ["phone", "name", "email", "tags", "timezone"];

/// A chunk of the file, or why the rest cannot come.
pub type Chunk = Result<Bytes, StoreError>;

/// The contacts `filter` keeps, as CSV: `phone, name, email, tags` (`;`-separated),
/// `timezone`, then one column per custom field.
pub async fn contacts_csv(
    db: &Db,
    workspace: WorkspaceId,
    filter: ContactFilter,
) -> ServiceResult<impl Stream<Item = Chunk> + Send + 'static> {
    let custom = {
        let mut conn = db.read().await?;
        contacts::custom_field_names(conn.conn(), workspace, &filter).await?
    };
    // A custom field named like a column would be read back as that column.
    let custom: Vec<String> = custom
        .into_iter()
        .filter(|name| {
            !CONTACT_COLUMNS
                .iter()
                .any(|column| column.eq_ignore_ascii_case(name.trim()))
                && !name.trim().is_empty()
        })
        .collect();
    let mut header: Vec<&str> = CONTACT_COLUMNS.to_vec();
    header.extend(custom.iter().map(String::as_str));
    let first = csv_line(&header);
    let state = Some((db.clone(), None::<ContactId>));
    let rows = futures::stream::unfold(state, move |state| {
        let (filter, custom) = (filter.clone(), custom.clone());
        async move {
            let (db, after) = state?;
            let page = async {
                let mut conn = db.read().await?;
                let page =
                    contacts::page_after(conn.conn(), workspace, &filter, after, PAGE).await?;
                analytics::forget_cached_pages(conn.conn()).await?;
                Ok(page)
            };
            match page.await {
                Err(error) => Some((Err(error), None)),
                Ok(page) if page.is_empty() => None,
                Ok(page) => {
                    let last = page.last().map(|contact| contact.id);
                    let chunk = contact_rows(&page, &custom);
                    Some((Ok(chunk), Some((db, last))))
                }
            }
        }
    });
    Ok(futures::stream::once(async move { Ok(first) }).chain(rows))
}

fn contact_rows(page: &[Contact], custom: &[String]) -> Bytes {
    let mut writer = csv::Writer::from_writer(Vec::with_capacity(page.len() * 64));
    for contact in page {
        let tags = contact.tags.0.join(";");
        let mut record: Vec<&str> = vec![
            &contact.phone,
            contact.name.as_deref().unwrap_or(""),
            contact.email.as_deref().unwrap_or(""),
            &tags,
            contact.timezone.as_deref().unwrap_or(""),
        ];
        record.extend(
            custom
                .iter()
                .map(|name| contact.custom_fields.0.get(name).map_or("", String::as_str)),
        );
        // Writing to memory cannot fail.
        let _ = writer.write_record(&record);
    }
    Bytes::from(writer.into_inner().unwrap_or_default())
}

const MESSAGE_COLUMNS: [&str; 13] = [
    "id",
    "contact_id",
    "phone",
    "status",
    "attempts",
    "provider_message_id",
    "error",
    "created_at",
    "sent_at",
    "delivered_at",
    "read_at",
    "failed_at",
    "updated_at",
];

/// A campaign's messages as CSV, by status (in the lifecycle's order) then id; only `status`'s
/// when one is asked for. Another workspace's campaign is not found.
pub async fn campaign_messages_csv(
    db: &Db,
    workspace: WorkspaceId,
    campaign: CampaignId,
    status: Option<MessageStatus>,
) -> ServiceResult<impl Stream<Item = Chunk> + Send + 'static> {
    {
        let mut conn = db.read().await?;
        campaigns::get(conn.conn(), workspace, campaign)
            .await
            .map_err(ServiceError::from)?;
    }
    let statuses: Vec<MessageStatus> = match status {
        Some(status) => vec![status],
        None => MessageStatus::ALL.to_vec(),
    };
    let first = csv_line(&MESSAGE_COLUMNS);
    let state = Some((db.clone(), 0usize, None::<MessageId>));
    let rows = futures::stream::unfold(state, move |state| {
        let statuses = statuses.clone();
        async move {
            let (db, mut index, mut after) = state?;
            loop {
                let status = *statuses.get(index)?;
                let page = async {
                    let mut conn = db.read().await?;
                    let page =
                        messages::campaign_page_after(conn.conn(), campaign, status, after, PAGE)
                            .await?;
                    analytics::forget_cached_pages(conn.conn()).await?;
                    Ok(page)
                };
                match page.await {
                    Err(error) => return Some((Err(error), None)),
                    Ok(page) if page.is_empty() => {
                        index += 1;
                        after = None;
                    }
                    Ok(page) => {
                        let last = page.last().map(|message| message.id);
                        return Some((Ok(message_rows(&page)), Some((db, index, last))));
                    }
                }
            }
        }
    });
    Ok(futures::stream::once(async move { Ok(first) }).chain(rows))
}

fn message_rows(page: &[Message]) -> Bytes {
    let time = |at: Option<chrono::DateTime<chrono::Utc>>| {
        at.map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_default()
    };
    let mut writer = csv::Writer::from_writer(Vec::with_capacity(page.len() * 160));
    for message in page {
        let record = [
            message.id.to_string(),
            message
                .contact_id
                .map(|id| id.to_string())
                .unwrap_or_default(),
            message.phone.clone(),
            message.status.as_str().to_owned(),
            message.attempts.to_string(),
            message.provider_message_id.clone().unwrap_or_default(),
            message.error.clone().unwrap_or_default(),
            time(Some(message.created_at)),
            time(message.sent_at),
            time(message.delivered_at),
            time(message.read_at),
            time(message.failed_at),
            time(Some(message.updated_at)),
        ];
        let _ = writer.write_record(&record);
    }
    Bytes::from(writer.into_inner().unwrap_or_default())
}

/// One CSV line of `fields`.
fn csv_line(fields: &[&str]) -> Bytes {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let _ = writer.write_record(fields);
    Bytes::from(writer.into_inner().unwrap_or_default())
}
