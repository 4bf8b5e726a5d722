//! Outbound webhooks: the endpoints of a workspace, one delivery per (endpoint, event) — the
//! event's body kept with it, so that retries and replays outlive the event log's pruning — and
//! each attempt a delivery made.
//!
//! Deliveries are claimed with a lease, like messages: a process that dies mid-delivery leaves
//! its claims to expire, and another attempt is made (receivers dedupe by `webhook-id`). A
//! delivery is claimed only when no earlier delivery of the same subject to the same endpoint
//! is still pending, which is what keeps one message's or campaign's events in order.

use chrono::{DateTime, Utc};
use sqlx::FromRow;
use sqlx::types::Json;

use super::sql::{Param, SqlBuilder, bind_params, fetch_page, rows_per_statement};
use super::{Conn, Dialect, Page, Result, on_conn};
use crate::domain::event::EventType;
use crate::domain::ids::{DeliveryId, WebhookId, WorkspaceId};
use crate::domain::webhook::{DeliveryStatus, EventPattern};

macro_rules! webhook_columns {
    () => {
        "id, workspace_id, url, description, events, secret, enabled, disabled_reason, \
         created_at, updated_at"
    };
}

#[derive(Clone, Debug, PartialEq, FromRow)]
pub struct Webhook {
    pub id: WebhookId,
    pub workspace_id: WorkspaceId,
    pub url: String,
    pub description: Option<String>,
    pub events: Json<Vec<EventPattern>>,
    /// Read back to sign; the API never shows it after creation.
    pub secret: String,
    pub enabled: bool,
    /// Why Herald turned the endpoint off (it answered 410).
    pub disabled_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An endpoint's fields, checked.
pub struct WebhookFields<'a> {
    pub url: &'a str,
    pub description: Option<&'a str>,
    pub events: &'a [EventPattern],
    pub enabled: bool,
}

pub async fn insert(
    mut conn: Conn<'_>,
    workspace: WorkspaceId,
    fields: &WebhookFields<'_>,
    secret: &str,
    now: DateTime<Utc>,
) -> Result<Webhook> {
    let id = WebhookId::generate();
    on_conn!(conn.reborrow(), c => sqlx::query(
        "INSERT INTO webhooks (id, workspace_id, url, description, events, secret, enabled,
                               created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
    )
    .bind(id)
    .bind(workspace)
    .bind(fields.url)
    .bind(fields.description)
    .bind(Json(fields.events))
    .bind(secret)
    .bind(fields.enabled)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(drop))?;
    get(conn, workspace, id).await
}

pub async fn get(conn: Conn<'_>, workspace: WorkspaceId, id: WebhookId) -> Result<Webhook> {
    on_conn!(conn, c => Ok(sqlx::query_as(concat!(
        "SELECT ", webhook_columns!(), " FROM webhooks WHERE id = $1 AND workspace_id = $2"
    ))
    .bind(id)
    .bind(workspace)
    .fetch_one(&mut *c)
    .await?))
}

/// A page of the workspace's endpoints, oldest first.
pub async fn list(
    conn: Conn<'_>,
    workspace: WorkspaceId,
    page: Page,
) -> Result<(Vec<Webhook>, i64)> {
    let mut from_where = SqlBuilder::new("FROM webhooks WHERE workspace_id = ");
    from_where.bind(Param::Id(workspace.0));
    fetch_page(
        conn,
        webhook_columns!(),
        &from_where,
        "created_at, id",
        page,
    )
    .await
}

/// Every endpoint of these workspaces, enabled or not: what the fan-out matches events with.
pub async fn of_workspaces(conn: Conn<'_>, workspaces: &[WorkspaceId]) -> Result<Vec<Webhook>> {
    select_where_in(conn, "workspace_id", workspaces.iter().map(|ws| ws.0)).await
}

/// The endpoints with these ids, whatever their workspace: the deliverer's view of what it
/// claimed.
pub async fn by_ids(conn: Conn<'_>, ids: &[WebhookId]) -> Result<Vec<Webhook>> {
    select_where_in(conn, "id", ids.iter().map(|id| id.0)).await
}

/// The endpoints whose `column` (a fixed name, never input) is one of `values`.
async fn select_where_in(
    conn: Conn<'_>,
    column: &'static str,
    values: impl IntoIterator<Item = uuid::Uuid>,
) -> Result<Vec<Webhook>> {
    let mut query = SqlBuilder::new(concat!(
        "SELECT ",
        webhook_columns!(),
        " FROM webhooks WHERE "
    ));
    query.push(column).push(" IN ");
    query.bind_list(values.into_iter().map(Param::Id));
    on_conn!(conn, c => Ok(bind_params!(
        sqlx::query_as(super::sql::built(&query, &*c)),
        &query.params
    )
    .fetch_all(&mut *c)
    .await?))
}

/// Changes an endpoint; turning it on clears why it was off.
pub async fn update(
    mut conn: Conn<'_>,
    workspace: WorkspaceId,
    id: WebhookId,
    fields: &WebhookFields<'_>,
    now: DateTime<Utc>,
) -> Result<Webhook> {
    let changed = on_conn!(conn.reborrow(), c => sqlx::query(
        "UPDATE webhooks SET url = $3, description = $4, events = $5, enabled = $6,
                disabled_reason = CASE WHEN $6 THEN NULL ELSE disabled_reason END,
                updated_at = $7
         WHERE id = $1 AND workspace_id = $2",
    )
    .bind(id)
    .bind(workspace)
    .bind(fields.url)
    .bind(fields.description)
    .bind(Json(fields.events))
    .bind(fields.enabled)
    .bind(now)
    .execute(&mut *c)
    .await?
    .rows_affected());
    if changed == 0 {
        return Err(super::StoreError::NotFound);
    }
    get(conn, workspace, id).await
}

/// Deletes an endpoint with its deliveries and their attempts.
pub async fn delete(mut conn: Conn<'_>, workspace: WorkspaceId, id: WebhookId) -> Result<()> {
    // Explicit rather than by cascade: SQLite enforces foreign keys only when asked to.
    on_conn!(conn.reborrow(), c => sqlx::query(
        "DELETE FROM webhook_attempts WHERE delivery_id IN (
             SELECT id FROM webhook_deliveries WHERE webhook_id = $1 AND workspace_id = $2)",
    )
    .bind(id)
    .bind(workspace)
    .execute(&mut *c)
    .await
    .map(drop))?;
    on_conn!(conn.reborrow(), c => sqlx::query(
        "DELETE FROM webhook_deliveries WHERE webhook_id = $1 AND workspace_id = $2",
    )
    .bind(id)
    .bind(workspace)
    .execute(&mut *c)
    .await
    .map(drop))?;
    let deleted = on_conn!(conn, c => sqlx::query(
        "DELETE FROM webhooks WHERE id = $1 AND workspace_id = $2",
    )
    .bind(id)
    .bind(workspace)
    .execute(&mut *c)
    .await?
    .rows_affected());
    if deleted == 0 {
        return Err(super::StoreError::NotFound);
    }
    Ok(())
}

/// Turns an endpoint off, saying why (it answered 410 Gone).
pub async fn disable(
    conn: Conn<'_>,
    id: WebhookId,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    on_conn!(conn, c => sqlx::query(
        "UPDATE webhooks SET enabled = FALSE, disabled_reason = $2, updated_at = $3 WHERE id = $1",
    )
    .bind(id)
    .bind(reason)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(drop))?;
    Ok(())
}

/// One event for one endpoint, as the fan-out records it.
#[derive(Clone, Debug)]
pub struct NewDelivery {
    pub id: DeliveryId,
    pub workspace: WorkspaceId,
    pub webhook: WebhookId,
    /// The event's position in the log.
    pub event_id: i64,
    pub kind: EventType,
    pub subject: uuid::Uuid,
    /// `{"type", "timestamp", "data"}`, as sent.
    pub body: String,
}

/// Records deliveries due at `now`, claimed already by `claimed_by` (owner, until) when it is
/// given; an event fanned out again (after a crash) adds nothing.
pub async fn insert_deliveries(
    mut conn: Conn<'_>,
    deliveries: &[NewDelivery],
    now: DateTime<Utc>,
    claimed_by: Option<(&str, DateTime<Utc>)>,
) -> Result<()> {
    for chunk in deliveries.chunks(rows_per_statement(15)) {
        let mut insert = SqlBuilder::new(
            "INSERT INTO webhook_deliveries (id, workspace_id, webhook_id, event_id, type,
                 subject_id, body, created_at, status, attempts, failures, next_attempt_at,
                 updated_at, lease_owner, lease_until) VALUES ",
        );
        for (index, delivery) in chunk.iter().enumerate() {
            if index > 0 {
                insert.push(", ");
            }
            insert.bind_list([
                Param::Id(delivery.id.0),
                Param::Id(delivery.workspace.0),
                Param::Id(delivery.webhook.0),
                Param::Int(delivery.event_id),
                Param::Text(delivery.kind.as_str().to_owned()),
                Param::Id(delivery.subject),
                Param::Text(delivery.body.clone()),
                Param::Time(now),
                Param::Text(DeliveryStatus::Pending.as_str().to_owned()),
                Param::Int(0),
                Param::Int(0),
                Param::Time(now),
                Param::Time(now),
                Param::OptText(claimed_by.map(|(owner, _)| owner.to_owned())),
                Param::OptTime(claimed_by.map(|(_, until)| until)),
            ]);
        }
        insert.push(" ON CONFLICT (webhook_id, event_id) DO NOTHING");
        on_conn!(conn.reborrow(), c => bind_params!(
            sqlx::query(super::sql::built(&insert, &*c)),
            &insert.params
        )
        .execute(&mut *c)
        .await
        .map(drop))?;
    }
    Ok(())
}

/// Whether any delivery is pending: when none is, no subject waits behind one, and the fan-out
/// needs to look no further.
pub async fn any_pending(conn: Conn<'_>) -> Result<bool> {
    on_conn!(conn, c => Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM webhook_deliveries WHERE status = 'pending')",
    )
    .fetch_one(&mut *c)
    .await?))
}

/// Which of `subjects` have a pending delivery at one of `webhooks`: their later events wait
/// behind it.
pub async fn pending_subjects(
    conn: Conn<'_>,
    webhooks: &[WebhookId],
    subjects: &[uuid::Uuid],
) -> Result<Vec<(WebhookId, uuid::Uuid)>> {
    let mut query = SqlBuilder::new(
        "SELECT DISTINCT webhook_id, subject_id FROM webhook_deliveries
         WHERE status = 'pending' AND webhook_id IN ",
    );
    query.bind_list(webhooks.iter().map(|id| Param::Id(id.0)));
    query.push(" AND subject_id IN ");
    query.bind_list(subjects.iter().map(|id| Param::Id(*id)));
    on_conn!(conn, c => Ok(bind_params!(
        sqlx::query_as(super::sql::built(&query, &*c)),
        &query.params
    )
    .fetch_all(&mut *c)
    .await?))
}

/// Records deliveries made at once, with their first attempt: one row each, in the state the
/// attempt left it (succeeded, pending a retry, failed). A delivery recorded already (its event
/// fanned out again after a crash) is left as it is, and so is its attempt.
pub async fn insert_attempted(
    mut conn: Conn<'_>,
    attempted: &[(NewDelivery, Attempted)],
) -> Result<()> {
    for chunk in attempted.chunks(rows_per_statement(16)) {
        let mut insert = SqlBuilder::new(
            "INSERT INTO webhook_deliveries (id, workspace_id, webhook_id, event_id, type,
                 subject_id, body, created_at, status, attempts, failures, next_attempt_at,
                 updated_at, response_status, error, duration_ms) VALUES ",
        );
        for (index, (delivery, attempt)) in chunk.iter().enumerate() {
            if index > 0 {
                insert.push(", ");
            }
            insert.bind_list([
                Param::Id(delivery.id.0),
                Param::Id(delivery.workspace.0),
                Param::Id(delivery.webhook.0),
                Param::Int(delivery.event_id),
                Param::Text(delivery.kind.as_str().to_owned()),
                Param::Id(delivery.subject),
                Param::Text(delivery.body.clone()),
                Param::Time(attempt.at),
                Param::Text(attempt.status.as_str().to_owned()),
                Param::Int(attempt.number),
                Param::Int(attempt.failures),
                Param::OptTime(attempt.next_attempt_at),
                Param::Time(attempt.at),
                Param::OptInt(attempt.response_status),
                Param::OptText(attempt.error.clone()),
                Param::Int(attempt.duration_ms),
            ]);
        }
        insert.push(" ON CONFLICT (webhook_id, event_id) DO NOTHING");
        on_conn!(conn.reborrow(), c => bind_params!(
            sqlx::query(super::sql::built(&insert, &*c)),
            &insert.params
        )
        .execute(&mut *c)
        .await
        .map(drop))?;
    }
    let attempts: Vec<Attempted> = attempted.iter().map(|(_, a)| a.clone()).collect();
    insert_attempt_rows(conn, &attempts).await
}

/// A delivery claimed for an attempt.
#[derive(Clone, Debug, FromRow)]
pub struct Claimed {
    pub id: DeliveryId,
    pub webhook_id: WebhookId,
    pub event_id: i64,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub body: String,
    /// Failed attempts since the delivery (re)started: where it is in the retry schedule.
    pub failures: i64,
    /// Attempts made so far.
    pub attempts: i64,
}

/// Claims up to `limit` due deliveries for `owner` until `until`: pending, not leased by a live
/// claim, of an enabled endpoint (a test goes to a disabled one too), first of their subject at
/// their endpoint, and not of an endpoint in `skip` (this process has enough of its work).
pub async fn claim_due(
    conn: Conn<'_>,
    owner: &str,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
    limit: i64,
    skip: &[WebhookId],
) -> Result<Vec<Claimed>> {
    let mut claim = SqlBuilder::new("UPDATE webhook_deliveries SET lease_owner = ");
    claim.bind(Param::Text(owner.to_owned()));
    claim.push(", lease_until = ").bind(Param::Time(until));
    claim.push(
        " WHERE id IN (
            SELECT d.id FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
            WHERE d.status = 'pending' AND d.next_attempt_at <= ",
    );
    claim.bind(Param::Time(now));
    claim.push(" AND (d.lease_until IS NULL OR d.lease_until < ");
    claim.bind(Param::Time(now));
    claim.push(
        ") AND (w.enabled OR d.type = 'webhook.test')
              AND NOT EXISTS (
                  SELECT 1 FROM webhook_deliveries p
                  WHERE p.status = 'pending' AND p.webhook_id = d.webhook_id
                    AND p.subject_id = d.subject_id AND p.event_id < d.event_id)",
    );
    if !skip.is_empty() {
        claim.push(" AND d.webhook_id NOT IN ");
        claim.bind_list(skip.iter().map(|id| Param::Id(id.0)));
    }
    claim.push(" ORDER BY d.next_attempt_at, d.event_id LIMIT ");
    claim.bind(Param::Int(limit));
    if conn.dialect() == Dialect::Postgres {
        claim.push(" FOR UPDATE OF d SKIP LOCKED");
    }
    claim.push(") RETURNING id, webhook_id, event_id, type, body, failures, attempts");
    on_conn!(conn, c => Ok(bind_params!(
        sqlx::query_as(super::sql::built(&claim, &*c)),
        &claim.params
    )
    .fetch_all(&mut *c)
    .await?))
}

/// What one attempt of a claimed delivery came to.
#[derive(Clone, Debug)]
pub struct Attempted {
    pub delivery: DeliveryId,
    /// Which attempt of the delivery this was: 1 for the first, counting on through replays.
    pub number: i64,
    pub at: DateTime<Utc>,
    /// Where the delivery now stands: succeeded, pending again (at `next_attempt_at`), failed.
    pub status: DeliveryStatus,
    pub failures: i64,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub response_status: Option<i64>,
    pub error: Option<String>,
    pub duration_ms: i64,
    pub response_excerpt: Option<String>,
}

/// Records attempts and what they make of their deliveries, releasing the claims: one
/// statement per few hundred attempts, since the dispatcher shares SQLite's one writer with the
/// send path. A delivery replayed or finished by another process meanwhile is left as it is.
pub async fn record_attempts(mut conn: Conn<'_>, attempts: &[Attempted]) -> Result<()> {
    for chunk in attempts.chunks(rows_per_statement(8)) {
        let mut update = SqlBuilder::new(
            "UPDATE webhook_deliveries
             SET status = v.column2, attempts = attempts + 1, failures = v.column3,
                 next_attempt_at = v.column4, response_status = v.column5, error = v.column6,
                 duration_ms = v.column7, lease_owner = NULL, lease_until = NULL,
                 updated_at = v.column8
             FROM (VALUES ",
        );
        for (index, attempt) in chunk.iter().enumerate() {
            if index > 0 {
                update.push(", ");
            }
            update.bind_list([
                Param::Id(attempt.delivery.0),
                Param::Text(attempt.status.as_str().to_owned()),
                Param::Int(attempt.failures),
                Param::OptTime(attempt.next_attempt_at),
                Param::OptInt(attempt.response_status),
                Param::OptText(attempt.error.clone()),
                Param::Int(attempt.duration_ms),
                Param::Time(attempt.at),
            ]);
        }
        update.push(
            ") AS v WHERE webhook_deliveries.id = v.column1
               AND webhook_deliveries.status = 'pending'",
        );
        on_conn!(conn.reborrow(), c => bind_params!(
            sqlx::query(super::sql::built(&update, &*c)),
            &update.params
        )
        .execute(&mut *c)
        .await
        .map(drop))?;
    }
    insert_attempt_rows(conn, attempts).await
}

/// The attempts' own rows; an attempt of a delivery that is not recorded (its row was not
/// written: another copy of it was) or recorded already is left out.
async fn insert_attempt_rows(mut conn: Conn<'_>, attempts: &[Attempted]) -> Result<()> {
    for chunk in attempts.chunks(rows_per_statement(7)) {
        let mut insert = SqlBuilder::new(
            "INSERT INTO webhook_attempts (delivery_id, attempt, at, response_status, error,
                                           duration_ms, response_excerpt)
             SELECT v.column1, v.column2, v.column3, v.column4, v.column5, v.column6, v.column7
             FROM (VALUES ",
        );
        for (index, attempt) in chunk.iter().enumerate() {
            if index > 0 {
                insert.push(", ");
            }
            insert.bind_list([
                Param::Id(attempt.delivery.0),
                Param::Int(attempt.number),
                Param::Time(attempt.at),
                Param::OptInt(attempt.response_status),
                Param::OptText(attempt.error.clone()),
                Param::Int(attempt.duration_ms),
                Param::OptText(attempt.response_excerpt.clone()),
            ]);
        }
        insert.push(
            ") AS v WHERE EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.id = v.column1)
             ON CONFLICT (delivery_id, attempt) DO NOTHING",
        );
        on_conn!(conn.reborrow(), c => bind_params!(
            sqlx::query(super::sql::built(&insert, &*c)),
            &insert.params
        )
        .execute(&mut *c)
        .await
        .map(drop))?;
    }
    Ok(())
}

/// Gives claims back unattempted (a process shutting down), due at once for whoever is next.
pub async fn release(conn: Conn<'_>, ids: &[DeliveryId]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut release = SqlBuilder::new(
        "UPDATE webhook_deliveries SET lease_owner = NULL, lease_until = NULL
         WHERE status = 'pending' AND id IN ",
    );
    release.bind_list(ids.iter().map(|id| Param::Id(id.0)));
    on_conn!(conn, c => bind_params!(
        sqlx::query(super::sql::built(&release, &*c)),
        &release.params
    )
    .execute(&mut *c)
    .await
    .map(drop))?;
    Ok(())
}

/// A delivery as its endpoint's log shows it.
#[derive(Clone, Debug, PartialEq, FromRow)]
pub struct Delivery {
    pub id: DeliveryId,
    pub webhook_id: WebhookId,
    pub event_id: i64,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub response_status: Option<i64>,
    pub error: Option<String>,
    pub duration_ms: Option<i64>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const DELIVERY_COLUMNS: &str = "id, webhook_id, event_id, type, status, attempts, \
    response_status, error, duration_ms, next_attempt_at, created_at, updated_at";

/// A page of an endpoint's deliveries, newest event first.
pub async fn deliveries(
    conn: Conn<'_>,
    workspace: WorkspaceId,
    webhook: WebhookId,
    status: Option<DeliveryStatus>,
    page: Page,
) -> Result<(Vec<Delivery>, i64)> {
    let mut from_where = SqlBuilder::new("FROM webhook_deliveries WHERE workspace_id = ");
    from_where.bind(Param::Id(workspace.0));
    from_where
        .push(" AND webhook_id = ")
        .bind(Param::Id(webhook.0));
    if let Some(status) = status {
        from_where
            .push(" AND status = ")
            .bind(Param::Text(status.as_str().to_owned()));
    }
    fetch_page(conn, DELIVERY_COLUMNS, &from_where, "event_id DESC", page).await
}

/// Delivers again, from the first attempt of the schedule, whatever the delivery's status.
pub async fn replay(
    conn: Conn<'_>,
    workspace: WorkspaceId,
    webhook: WebhookId,
    delivery: DeliveryId,
    now: DateTime<Utc>,
) -> Result<()> {
    let replayed = on_conn!(conn, c => sqlx::query(
        "UPDATE webhook_deliveries
         SET status = 'pending', failures = 0, next_attempt_at = $4, lease_owner = NULL,
             lease_until = NULL, updated_at = $4
         WHERE id = $1 AND webhook_id = $2 AND workspace_id = $3",
    )
    .bind(delivery)
    .bind(webhook)
    .bind(workspace)
    .bind(now)
    .execute(&mut *c)
    .await?
    .rows_affected());
    if replayed == 0 {
        return Err(super::StoreError::NotFound);
    }
    Ok(())
}

/// An attempt as recorded.
#[derive(Clone, Debug, PartialEq, FromRow)]
pub struct Attempt {
    pub attempt: i64,
    pub at: DateTime<Utc>,
    pub response_status: Option<i64>,
    pub error: Option<String>,
    pub duration_ms: i64,
    pub response_excerpt: Option<String>,
}

/// A delivery's attempts, oldest first.
pub async fn attempts(conn: Conn<'_>, delivery: DeliveryId) -> Result<Vec<Attempt>> {
    on_conn!(conn, c => Ok(sqlx::query_as(
        "SELECT attempt, at, response_status, error, duration_ms, response_excerpt
         FROM webhook_attempts WHERE delivery_id = $1 ORDER BY attempt",
    )
    .bind(delivery)
    .fetch_all(&mut *c)
    .await?))
}

/// Extends every claim `owner` holds to `until`: deliveries waiting for a slow endpoint stay
/// this process's while it lives.
pub async fn renew_claims(conn: Conn<'_>, owner: &str, until: DateTime<Utc>) -> Result<()> {
    on_conn!(conn, c => sqlx::query(
        "UPDATE webhook_deliveries SET lease_until = $2
         WHERE lease_owner = $1 AND status = 'pending' AND lease_until IS NOT NULL",
    )
    .bind(owner)
    .bind(until)
    .execute(&mut *c)
    .await
    .map(drop))?;
    Ok(())
}
