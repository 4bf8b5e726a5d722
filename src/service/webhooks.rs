//! Outbound webhooks: endpoints checked (the URL passes the private-address guard, now and
//! after DNS; every event pattern can match), a secret minted once, tests and replays. The
//! deliveries themselves are the dispatcher's (`crate::webhooks`).

use chrono::{DateTime, Utc};

use super::ServiceResult;
use crate::domain::event::{EventType, WebhookTestEvent};
use crate::domain::ids::{DeliveryId, WebhookId, WorkspaceId};
use crate::domain::validation::FieldErrors;
use crate::domain::webhook::{DeliveryStatus, EventPattern, new_secret};
use crate::store::events::{self, NewEvent};
use crate::store::webhooks::{self, Delivery, Webhook, WebhookFields};
use crate::store::{Db, Page};
use crate::url_guard::UrlGuard;

/// An endpoint as a client writes it.
#[derive(Clone, Debug, Default)]
pub struct WebhookInput {
    pub url: String,
    pub events: Vec<String>,
    pub description: Option<String>,
    pub enabled: bool,
}

/// Fields to change; `None` keeps one, `description: Some(None)` clears it.
#[derive(Clone, Debug, Default)]
pub struct WebhookChange {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub description: Option<Option<String>>,
    pub enabled: Option<bool>,
}

const MAX_DESCRIPTION_LEN: usize = 500;
const MAX_URL_LEN: usize = 2048;
const MAX_PATTERNS: usize = 50;

/// An endpoint's checked fields.
struct Checked {
    url: String,
    events: Vec<EventPattern>,
    description: Option<String>,
    enabled: bool,
}

impl Checked {
    fn fields(&self) -> WebhookFields<'_> {
        WebhookFields {
            url: &self.url,
            description: self.description.as_deref(),
            events: &self.events,
            enabled: self.enabled,
        }
    }
}

/// Every problem with `input` at once, each naming its field.
async fn check(input: WebhookInput, guard: UrlGuard) -> ServiceResult<Checked> {
    let mut errors = FieldErrors::new();
    let url = input.url.trim().to_owned();
    if url.len() > MAX_URL_LEN {
        errors.add("url", format!("is longer than {MAX_URL_LEN} characters"));
    } else if let Err(refused) = guard.parse_and_resolve(&url).await {
        errors.add("url", refused.to_string());
    }
    let mut events = Vec::new();
    if input.events.is_empty() {
        errors.add("events", "must name at least one event, 'prefix.*' or '*'");
    } else if input.events.len() > MAX_PATTERNS {
        errors.add("events", format!("takes at most {MAX_PATTERNS} patterns"));
    }
    for pattern in input.events {
        match EventPattern::try_from(pattern) {
            Ok(pattern) if !events.contains(&pattern) => events.push(pattern),
            Ok(_) => {}
            Err(message) => errors.add("events", message),
        }
    }
    let description = input
        .description
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty());
    if description
        .as_ref()
        .is_some_and(|text| text.chars().count() > MAX_DESCRIPTION_LEN)
    {
        errors.add(
            "description",
            format!("is longer than {MAX_DESCRIPTION_LEN} characters"),
        );
    }
    if !errors.is_empty() {
        return Err(errors.into());
    }
    Ok(Checked {
        url,
        events,
        description,
        enabled: input.enabled,
    })
}

/// Creates an endpoint; returns it with its signing secret, which is never shown again.
pub async fn create(
    db: &Db,
    workspace: WorkspaceId,
    input: WebhookInput,
    guard: UrlGuard,
    now: DateTime<Utc>,
) -> ServiceResult<(Webhook, String)> {
    let checked = check(input, guard).await?;
    let secret = new_secret();
    let mut tx = db.begin().await?;
    let webhook = webhooks::insert(tx.conn(), workspace, &checked.fields(), &secret, now).await?;
    tx.commit().await?;
    Ok((webhook, secret))
}

pub async fn update(
    db: &Db,
    workspace: WorkspaceId,
    id: WebhookId,
    change: WebhookChange,
    guard: UrlGuard,
    now: DateTime<Utc>,
) -> ServiceResult<Webhook> {
    let current = get(db, workspace, id).await?;
    let input = WebhookInput {
        url: change.url.unwrap_or(current.url),
        events: change.events.unwrap_or_else(|| {
            current
                .events
                .0
                .iter()
                .map(|pattern| pattern.as_str().to_owned())
                .collect()
        }),
        description: change.description.unwrap_or(current.description),
        enabled: change.enabled.unwrap_or(current.enabled),
    };
    // Checked outside the transaction: the URL's resolution may take a while.
    let checked = check(input, guard).await?;
    let mut tx = db.begin().await?;
    let webhook = webhooks::update(tx.conn(), workspace, id, &checked.fields(), now).await?;
    tx.commit().await?;
    Ok(webhook)
}

pub async fn get(db: &Db, workspace: WorkspaceId, id: WebhookId) -> ServiceResult<Webhook> {
    let mut conn = db.read().await?;
    Ok(webhooks::get(conn.conn(), workspace, id).await?)
}

pub async fn list(
    db: &Db,
    workspace: WorkspaceId,
    page: Page,
) -> ServiceResult<(Vec<Webhook>, i64)> {
    let mut conn = db.read().await?;
    Ok(webhooks::list(conn.conn(), workspace, page).await?)
}

/// Its deliveries go with it.
pub async fn delete(db: &Db, workspace: WorkspaceId, id: WebhookId) -> ServiceResult<()> {
    let mut tx = db.begin().await?;
    webhooks::delete(tx.conn(), workspace, id).await?;
    tx.commit().await?;
    Ok(())
}

/// Sends the endpoint a `webhook.test` event (to it alone, whatever its events).
pub async fn test(
    db: &Db,
    workspace: WorkspaceId,
    id: WebhookId,
    now: DateTime<Utc>,
) -> ServiceResult<()> {
    let mut tx = db.begin().await?;
    webhooks::get(tx.conn(), workspace, id).await?;
    let data = WebhookTestEvent {
        webhook_id: id,
        message: "A test event from Herald: this endpoint receives its events.".into(),
    };
    let event = NewEvent::new(workspace, EventType::WebhookTest, id, &data, now)?;
    events::append(tx.conn(), &[event]).await?;
    tx.commit().await?;
    Ok(())
}

/// A page of an endpoint's deliveries, newest first.
pub async fn deliveries(
    db: &Db,
    workspace: WorkspaceId,
    id: WebhookId,
    status: Option<DeliveryStatus>,
    page: Page,
) -> ServiceResult<(Vec<Delivery>, i64)> {
    let mut conn = db.read().await?;
    webhooks::get(conn.conn(), workspace, id).await?;
    Ok(webhooks::deliveries(conn.conn(), workspace, id, status, page).await?)
}

/// Delivers again from the start of the retry schedule, with the same `webhook-id`.
pub async fn replay(
    db: &Db,
    workspace: WorkspaceId,
    webhook: WebhookId,
    delivery: DeliveryId,
    now: DateTime<Utc>,
) -> ServiceResult<()> {
    let mut tx = db.begin().await?;
    webhooks::replay(tx.conn(), workspace, webhook, delivery, now).await?;
    tx.commit().await?;
    Ok(())
}
