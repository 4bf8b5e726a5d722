//! Campaigns: every status change is one compare-and-set (`UPDATE … WHERE status IN (…)`), so
//! two processes can never both win it; counters change in the same transaction as the
//! messages they count.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::FromRow;
use sqlx::types::Json;

use super::audience;
use super::events::{self, NewEvent};
use super::sql::{Param, SqlBuilder, bind_params, fetch_page};
use super::{Conn, Dialect, Page, Result, StoreError, Tx, on_conn};
use crate::domain::campaign::{Audience, CampaignStats, CampaignStatus};
use crate::domain::event::{CampaignEvent, EventType};
use crate::domain::ids::{CampaignId, SenderId, TemplateId, WorkspaceId};
use crate::domain::message::Counters;
use crate::domain::whatsapp::WhatsAppTemplate;

macro_rules! columns {
    () => {
        "id, workspace_id, name, sender_id, template_id, content, media_url, whatsapp, audience, variables, \
         status, scheduled_at, started_at, paused_at, paused_reason, completed_at, canceled_at, \
         total_count, \
         pending_count, sent_count, delivered_count, read_count, failed_count, skipped_count, \
         created_at, updated_at"
    };
}

#[derive(Clone, Debug, PartialEq, FromRow)]
pub struct Campaign {
    pub id: CampaignId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub sender_id: SenderId,
    pub template_id: Option<TemplateId>,
    pub content: String,
    pub media_url: Option<String>,
    /// The template's WhatsApp part, copied when the campaign was written.
    pub whatsapp: Option<Json<WhatsAppTemplate>>,
    pub audience: Json<Audience>,
    pub variables: Json<BTreeMap<String, String>>,
    pub status: CampaignStatus,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub paused_at: Option<DateTime<Utc>>,
    /// Why Herald paused it itself (its sender cannot send); `null` when a person paused it.
    pub paused_reason: Option<String>,
    pub completed_at: Option<DateTime<Utc>>,
    pub canceled_at: Option<DateTime<Utc>>,
    pub total_count: i64,
    pub pending_count: i64,
    pub sent_count: i64,
    pub delivered_count: i64,
    pub read_count: i64,
    pub failed_count: i64,
    pub skipped_count: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Campaign {
    pub fn stats(&self) -> CampaignStats {
        let counters = self.counters();
        CampaignStats {
            status: self.status,
            counters,
            delivery_rate: counters.delivery_rate(),
            read_rate: counters.read_rate(),
        }
    }

    pub fn counters(&self) -> Counters {
        Counters {
            total: self.total_count,
            pending: self.pending_count,
            sent: self.sent_count,
            delivered: self.delivered_count,
            read: self.read_count,
            failed: self.failed_count,
            skipped: self.skipped_count,
        }
    }
}

/// A campaign's editable fields, already validated.
#[derive(Clone, Debug)]
pub struct CampaignFields {
    pub name: String,
    pub sender_id: SenderId,
    pub template_id: Option<TemplateId>,
    /// The text to send: the template's content at the time of writing, or the campaign's own.
    pub content: String,
    pub media_url: Option<String>,
    /// The template's WhatsApp part at the time of writing.
    pub whatsapp: Option<WhatsAppTemplate>,
    pub audience: Audience,
    pub variables: BTreeMap<String, String>,
}

pub async fn insert(
    mut conn: Conn<'_>,
    workspace: WorkspaceId,
    fields: &CampaignFields,
    now: DateTime<Utc>,
) -> Result<Campaign> {
    let id = CampaignId::generate();
    on_conn!(conn.reborrow(), c => sqlx::query(
        "INSERT INTO campaigns (id, workspace_id, name, sender_id, template_id, content, media_url,
                                audience, variables, status, created_at, updated_at, whatsapp)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'draft', $10, $10, $11)",
    )
    .bind(id)
    .bind(workspace)
    .bind(&fields.name)
    .bind(fields.sender_id)
    .bind(fields.template_id)
    .bind(&fields.content)
    .bind(fields.media_url.as_deref())
    .bind(Json(&fields.audience))
    .bind(Json(&fields.variables))
    .bind(now)
    .bind(fields.whatsapp.as_ref().map(Json))
    .execute(&mut *c)
    .await.map(drop))?;
    get(conn, workspace, id).await
}

pub async fn get(conn: Conn<'_>, workspace: WorkspaceId, id: CampaignId) -> Result<Campaign> {
    on_conn!(conn, c => Ok(sqlx::query_as(concat!(
        "SELECT ", columns!(), " FROM campaigns WHERE id = $1 AND workspace_id = $2"
    ))
    .bind(id)
    .bind(workspace)
    .fetch_one(&mut *c)
    .await?))
}

/// A campaign by id alone, for the engine, which works across workspaces.
pub async fn get_unscoped(conn: Conn<'_>, id: CampaignId) -> Result<Campaign> {
    on_conn!(conn, c => Ok(sqlx::query_as(concat!("SELECT ", columns!(), " FROM campaigns WHERE id = $1"))
        .bind(id)
        .fetch_one(&mut *c)
        .await?))
}

/// Scheduled campaigns whose time has come, oldest first.
pub async fn due(
    conn: Conn<'_>,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<(WorkspaceId, CampaignId)>> {
    on_conn!(conn, c => Ok(sqlx::query_as(
        "SELECT workspace_id, id FROM campaigns WHERE status = 'scheduled' AND scheduled_at <= $1
         ORDER BY scheduled_at LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(&mut *c)
    .await?))
}

pub async fn list(
    conn: Conn<'_>,
    workspace: WorkspaceId,
    status: Option<CampaignStatus>,
    page: Page,
) -> Result<(Vec<Campaign>, i64)> {
    let mut from_where = SqlBuilder::new("FROM campaigns WHERE workspace_id = ");
    from_where.bind(Param::Id(workspace.0));
    if let Some(status) = status {
        from_where
            .push(" AND status = ")
            .bind(Param::Text(status.as_str().into()));
    }
    fetch_page(
        conn,
        columns!(),
        &from_where,
        "created_at DESC, id DESC",
        page,
    )
    .await
}

/// Rewrites a campaign that has not started (draft or scheduled).
pub async fn update(
    mut conn: Conn<'_>,
    workspace: WorkspaceId,
    id: CampaignId,
    fields: &CampaignFields,
    now: DateTime<Utc>,
) -> Result<Campaign> {
    let sql = format!(
        "UPDATE campaigns SET name = $3, sender_id = $4, template_id = $5, content = $6,
                              media_url = $7, audience = $8, variables = $9, updated_at = $10,
                              whatsapp = $11
         WHERE id = $1 AND workspace_id = $2 AND status IN ({})
         RETURNING {}",
        status_list(&editable()),
        columns!()
    );
    let updated: Option<Campaign> = on_conn!(conn.reborrow(), c => sqlx::query_as(super::sql::trusted(&sql))
        .bind(id)
        .bind(workspace)
        .bind(&fields.name)
        .bind(fields.sender_id)
        .bind(fields.template_id)
        .bind(&fields.content)
        .bind(fields.media_url.as_deref())
        .bind(Json(&fields.audience))
        .bind(Json(&fields.variables))
        .bind(now)
        .bind(fields.whatsapp.as_ref().map(Json))
        .fetch_optional(&mut *c)
        .await?);
    match updated {
        Some(campaign) => Ok(campaign),
        None => Err(refusal(conn, workspace, id).await),
    }
}

/// Deletes a draft, scheduled or canceled campaign, with its messages.
pub async fn delete(mut conn: Conn<'_>, workspace: WorkspaceId, id: CampaignId) -> Result<()> {
    let deletable: Vec<_> = CampaignStatus::ALL
        .into_iter()
        .filter(|s| s.is_deletable())
        .collect();
    let sql = format!(
        "DELETE FROM campaigns WHERE id = $1 AND workspace_id = $2 AND status IN ({})",
        status_list(&deletable)
    );
    let deleted = on_conn!(conn.reborrow(), c => sqlx::query(super::sql::trusted(&sql))
        .bind(id)
        .bind(workspace)
        .execute(&mut *c)
        .await?
        .rows_affected());
    if deleted == 0 {
        return Err(refusal(conn, workspace, id).await);
    }
    Ok(())
}

fn editable() -> Vec<CampaignStatus> {
    CampaignStatus::ALL
        .into_iter()
        .filter(|s| s.is_editable())
        .collect()
}

/// `'draft', 'scheduled'`: status names are fixed identifiers, never user input.
fn status_list(statuses: &[CampaignStatus]) -> String {
    statuses
        .iter()
        .map(|status| format!("'{}'", status.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why a compare-and-set matched no row: the campaign is missing, or in another status.
async fn refusal(conn: Conn<'_>, workspace: WorkspaceId, id: CampaignId) -> StoreError {
    let current: Result<Option<CampaignStatus>> = on_conn!(conn, c =>
        sqlx::query_scalar("SELECT status FROM campaigns WHERE id = $1 AND workspace_id = $2")
            .bind(id)
            .bind(workspace)
            .fetch_optional(&mut *c)
            .await
            .map_err(StoreError::from));
    match current {
        Ok(Some(current)) => StoreError::InvalidTransition { current },
        Ok(None) => StoreError::NotFound,
        Err(error) => error,
    }
}

/// Moves a campaign from one of `from` to `to` in one statement, stamping the time of the move.
async fn transition(
    mut conn: Conn<'_>,
    workspace: WorkspaceId,
    id: CampaignId,
    from: &[CampaignStatus],
    to: CampaignStatus,
    scheduled_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<Campaign> {
    debug_assert!(
        from.iter().all(|source| source.can_become(to)),
        "{from:?} -> {to}"
    );
    if matches!(to, CampaignStatus::Paused | CampaignStatus::Canceled) {
        wait_for_claims(conn.reborrow(), "id = $1", id.0).await?;
    }
    let stamp = match to {
        CampaignStatus::Draft => "",
        CampaignStatus::Scheduled => ", scheduled_at = $5",
        CampaignStatus::Running => {
            ", started_at = COALESCE(started_at, $4), paused_at = NULL, paused_reason = NULL"
        }
        CampaignStatus::Paused => ", paused_at = $4, paused_reason = NULL",
        CampaignStatus::Canceled => ", canceled_at = $4",
        CampaignStatus::Completed => ", completed_at = $4",
    };
    let sql = format!(
        "UPDATE campaigns SET status = $3, updated_at = $4{stamp}
         WHERE id = $1 AND workspace_id = $2 AND status IN ({})
         RETURNING {}",
        status_list(from),
        columns!()
    );
    let moved: Option<Campaign> = on_conn!(conn.reborrow(), c => {
        let query = sqlx::query_as(super::sql::trusted(&sql)).bind(id).bind(workspace).bind(to).bind(now);
        let query = if to == CampaignStatus::Scheduled { query.bind(scheduled_at) } else { query };
        query.fetch_optional(&mut *c).await?
    });
    match moved {
        Some(campaign) => Ok(campaign),
        None => Err(refusal(conn, workspace, id).await),
    }
}

/// Schedules a draft, or moves a scheduled campaign's launch time.
pub async fn schedule(
    conn: Conn<'_>,
    workspace: WorkspaceId,
    id: CampaignId,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Campaign> {
    use CampaignStatus::*;
    transition(
        conn,
        workspace,
        id,
        &[Draft, Scheduled],
        Scheduled,
        Some(at),
        now,
    )
    .await
}

/// Starts a draft or scheduled campaign: moves it to `running` and materialises its recipients,
/// in one transaction, so a launch happens at most once however many processes try.
pub async fn launch(
    tx: &mut Tx,
    workspace: WorkspaceId,
    id: CampaignId,
    now: DateTime<Utc>,
) -> Result<Campaign> {
    use CampaignStatus::*;
    let campaign = transition(
        tx.conn(),
        workspace,
        id,
        &[Draft, Scheduled],
        Running,
        None,
        now,
    )
    .await?;
    let recipients = materialize(tx, &campaign, now).await?;
    let started = get(tx.conn(), workspace, id).await?;
    announce(tx.conn(), &started, EventType::CampaignStarted, now).await?;
    if recipients == 0 {
        // Nothing to send: the campaign is done the moment it starts.
        let done = transition(tx.conn(), workspace, id, &[Running], Completed, None, now).await?;
        announce(tx.conn(), &done, EventType::CampaignCompleted, now).await?;
        return Ok(done);
    }
    Ok(started)
}

/// Appends the event of a campaign's transition, with its stats as they now are.
async fn announce(
    conn: Conn<'_>,
    campaign: &Campaign,
    kind: EventType,
    now: DateTime<Utc>,
) -> Result<()> {
    let data = CampaignEvent {
        campaign_id: campaign.id,
        name: campaign.name.clone(),
        status: campaign.status,
        counters: campaign.counters(),
        paused_reason: campaign.paused_reason.clone(),
    };
    let event = NewEvent::new(campaign.workspace_id, kind, campaign.id, &data, now)?;
    events::append(conn, &[event]).await
}

/// Makes a move out of `running` wait for the claims in progress of the campaigns `which`
/// selects (by `$1`), so that no message of theirs is claimed once the move has committed. On
/// PostgreSQL a claim key-share-locks its running campaigns, which lets the recorder's counter
/// updates pass while a claim is out and conflicts only with this lock; SQLite's single writer
/// orders the two anyway.
async fn wait_for_claims(conn: Conn<'_>, which: &str, key: uuid::Uuid) -> Result<()> {
    if conn.dialect() == Dialect::Sqlite {
        return Ok(());
    }
    let sql = format!("SELECT id FROM campaigns WHERE {which} AND status = 'running' FOR UPDATE");
    on_conn!(conn, c => sqlx::query(super::sql::trusted(&sql))
        .bind(key)
        .fetch_all(&mut *c)
        .await
        .map(drop))?;
    Ok(())
}

pub async fn pause(
    mut conn: Conn<'_>,
    workspace: WorkspaceId,
    id: CampaignId,
    now: DateTime<Utc>,
) -> Result<Campaign> {
    use CampaignStatus::*;
    let paused = transition(
        conn.reborrow(),
        workspace,
        id,
        &[Running],
        Paused,
        None,
        now,
    )
    .await?;
    announce(conn, &paused, EventType::CampaignPaused, now).await?;
    Ok(paused)
}

/// Pauses every running campaign of `sender`, saying why: what Herald does when the sender
/// cannot send at all. Returns the campaigns paused.
/// Pauses one running campaign that cannot go on as it is, with the reason; false when it is
/// not running (already paused, or finished).
pub async fn pause_with_reason(
    mut conn: Conn<'_>,
    id: CampaignId,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    wait_for_claims(conn.reborrow(), "id = $1", id.0).await?;
    let sql = format!(
        "UPDATE campaigns SET status = 'paused', paused_at = $3, paused_reason = $2, updated_at = $3
         WHERE id = $1 AND status = 'running'
         RETURNING {}",
        columns!()
    );
    let paused: Option<Campaign> = on_conn!(conn.reborrow(), c => sqlx::query_as(super::sql::trusted(&sql))
        .bind(id)
        .bind(reason)
        .bind(now)
        .fetch_optional(&mut *c)
        .await?);
    match paused {
        Some(campaign) => {
            announce(conn, &campaign, EventType::CampaignPaused, now).await?;
            Ok(true)
        }
        None => Ok(false),
    }
}

pub async fn pause_for_sender(
    mut conn: Conn<'_>,
    sender: SenderId,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Vec<CampaignId>> {
    wait_for_claims(conn.reborrow(), "sender_id = $1", sender.0).await?;
    let sql = format!(
        "UPDATE campaigns SET status = 'paused', paused_at = $3, paused_reason = $2, updated_at = $3
         WHERE sender_id = $1 AND status = 'running'
         RETURNING {}",
        columns!()
    );
    let paused: Vec<Campaign> = on_conn!(conn.reborrow(), c => sqlx::query_as(super::sql::trusted(&sql))
        .bind(sender)
        .bind(reason)
        .bind(now)
        .fetch_all(&mut *c)
        .await?);
    for campaign in &paused {
        announce(conn.reborrow(), campaign, EventType::CampaignPaused, now).await?;
    }
    Ok(paused.into_iter().map(|campaign| campaign.id).collect())
}

pub async fn resume(
    mut conn: Conn<'_>,
    workspace: WorkspaceId,
    id: CampaignId,
    now: DateTime<Utc>,
) -> Result<Campaign> {
    use CampaignStatus::*;
    let resumed = transition(
        conn.reborrow(),
        workspace,
        id,
        &[Paused],
        Running,
        None,
        now,
    )
    .await?;
    announce(conn, &resumed, EventType::CampaignResumed, now).await?;
    Ok(resumed)
}

/// Cancels a scheduled, running or paused campaign; its messages still pending become
/// `skipped` ("campaign canceled") in the same transaction. Messages in flight finish.
pub async fn cancel(
    tx: &mut Tx,
    workspace: WorkspaceId,
    id: CampaignId,
    now: DateTime<Utc>,
) -> Result<Campaign> {
    use CampaignStatus::*;
    transition(
        tx.conn(),
        workspace,
        id,
        &[Scheduled, Running, Paused],
        Canceled,
        None,
        now,
    )
    .await?;
    let skipped = on_conn!(tx.conn(), c => sqlx::query(
        "UPDATE messages SET status = 'skipped', error = 'campaign canceled', updated_at = $2
         WHERE campaign_id = $1 AND status = 'pending'",
    )
    .bind(id)
    .bind(now)
    .execute(&mut *c)
    .await?
    .rows_affected());
    let skipped = i64::try_from(skipped).unwrap_or(i64::MAX);
    let change = Counters {
        pending: -skipped,
        skipped,
        ..Counters::default()
    };
    add_to_counters(tx.conn(), id, &change, now).await?;
    let canceled = get(tx.conn(), workspace, id).await?;
    announce(tx.conn(), &canceled, EventType::CampaignCanceled, now).await?;
    Ok(canceled)
}

/// Completes a running or paused campaign with nothing left pending or in flight. Returns
/// whether this call completed it.
pub async fn complete_if_done(
    mut conn: Conn<'_>,
    id: CampaignId,
    now: DateTime<Utc>,
) -> Result<bool> {
    use CampaignStatus::*;
    let sql = format!(
        "UPDATE campaigns SET status = $3, completed_at = $2, updated_at = $2
         WHERE id = $1 AND status IN ({}) AND pending_count = 0
         RETURNING {}",
        status_list(CampaignStatus::sources_of(Completed)),
        columns!()
    );
    let done: Option<Campaign> = on_conn!(conn.reborrow(), c => sqlx::query_as(super::sql::trusted(&sql))
        .bind(id)
        .bind(now)
        .bind(Completed)
        .fetch_optional(&mut *c)
        .await?);
    match done {
        Some(campaign) => {
            announce(conn, &campaign, EventType::CampaignCompleted, now).await?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Inserts one pending message per contact of the campaign's audience, with one set-based
/// statement, and counts them. Returns how many recipients it created.
pub(crate) async fn materialize(
    tx: &mut Tx,
    campaign: &Campaign,
    now: DateTime<Utc>,
) -> Result<u64> {
    let mut insert = SqlBuilder::new(
        "INSERT INTO messages (id, workspace_id, campaign_id, sender_id, contact_id, direction, phone,
                               media_url, status, attempts, not_before, created_at, updated_at)
         SELECT ",
    );
    let id_prefix = format!("{:012x}", now.timestamp_millis().max(0));
    let dialect = tx.conn().dialect();
    push_message_id(&mut insert, dialect, Param::Text(id_prefix));
    insert
        .push(", ")
        .bind(Param::Id(campaign.workspace_id.0))
        .push(", ")
        .bind(Param::Id(campaign.id.0))
        .push(", ")
        .bind(Param::Id(campaign.sender_id.0))
        .push(", a.id, 'outbound', a.phone, ");
    match &campaign.media_url {
        Some(url) => insert.bind(Param::Text(url.clone())),
        None => insert.push("NULL"),
    };
    insert
        .push(", 'pending', 0, ")
        .bind(Param::Time(now))
        .push(", ");
    insert
        .bind(Param::Time(now))
        .push(", ")
        .bind(Param::Time(now));
    // The id's counter: on SQLite the contact's rowid, which is unique and, in the audience's
    // scan order (`contacts_workspace_created`: creation, then rowid), ascending; ROW_NUMBER()
    // there runs every row through a temporary table (a fifth of a million-recipient launch).
    // Read in another order, the ids would not ascend and a large launch would insert all over
    // its b-trees (ten times slower, measured with a covering index ending in the contact id):
    // `launch_materialises_ten_thousand_recipients_in_one_statement` checks the order.
    // PostgreSQL has no rowid and numbers rows cheaply.
    let counter = match dialect {
        Dialect::Sqlite => "c.rowid",
        Dialect::Postgres => "ROW_NUMBER() OVER ()",
    };
    insert.push(&format!(
        " FROM (SELECT c.id, c.phone, {counter} AS rn FROM contacts c WHERE "
    ));
    audience::push_predicate(
        tx.conn(),
        &mut insert,
        campaign.workspace_id,
        &campaign.audience.0,
    )
    .await?;
    insert.push(") a");

    let created = on_conn!(tx.conn(), c => bind_params!(sqlx::query(super::sql::built(&insert, &*c)), &insert.params)
        .execute(&mut *c)
        .await?
        .rows_affected());
    let count = i64::try_from(created).unwrap_or(i64::MAX);
    let change = Counters {
        total: count,
        pending: count,
        ..Counters::default()
    };
    add_to_counters(tx.conn(), campaign.id, &change, now).await?;
    Ok(created)
}

/// A UUIDv7 built in SQL for row `a.rn` of a launch: 48 bits of the launch's milliseconds
/// (`prefix`, 12 hex digits), the version, a 28-bit counter from `a.rn` (RFC 9562's monotonic
/// counter method, so one launch's ids ascend and its inserts append), the variant, and 46
/// random bits. `a.rn` is unique within the launch; past 2^28 the counter wraps and the random
/// bits alone keep ids apart.
fn push_message_id(builder: &mut SqlBuilder, dialect: Dialect, prefix: Param) {
    match dialect {
        Dialect::Sqlite => {
            builder.push("unhex(").bind(prefix).push(
                " || printf('7%03x%x%015x', (a.rn >> 16) & 4095, 8 + ((a.rn >> 14) & 3), \
                 ((a.rn & 16383) << 46) | (random() & 70368744177663)))",
            );
        }
        // Two numbers whose hex is always as long as its field, so no `lpad`: the version and
        // the counter's high bits from 0x7000, and the variant's top bit set makes the rest a
        // negative bigint, written in 16 digits (a third less time for the id than with `lpad`s).
        Dialect::Postgres => {
            builder.push("(").bind(prefix).push(
                " || to_hex(28672 | ((a.rn >> 16) & 4095)) \
                 || to_hex(-9223372036854775808 | (((a.rn >> 14) & 3) << 60) \
                           | ((a.rn & 16383) << 46) | floor(random() * 70368744177664)::bigint))::uuid",
            );
        }
    }
}

/// Adds `change` to a campaign's counters; returns its pending count after (`None` when
/// nothing changed).
pub(crate) async fn add_to_counters(
    conn: Conn<'_>,
    id: CampaignId,
    change: &Counters,
    now: DateTime<Utc>,
) -> Result<Option<i64>> {
    if change.is_zero() {
        return Ok(None);
    }
    let pending = on_conn!(conn, c => sqlx::query_scalar(
        "UPDATE campaigns SET total_count = total_count + $2, pending_count = pending_count + $3,
                              sent_count = sent_count + $4, delivered_count = delivered_count + $5,
                              read_count = read_count + $6, failed_count = failed_count + $7,
                              skipped_count = skipped_count + $8, updated_at = $9
         WHERE id = $1
         RETURNING pending_count",
    )
    .bind(id)
    .bind(change.total)
    .bind(change.pending)
    .bind(change.sent)
    .bind(change.delivered)
    .bind(change.read)
    .bind(change.failed)
    .bind(change.skipped)
    .bind(now)
    .fetch_optional(&mut *c)
    .await?);
    Ok(pending)
}

#[derive(FromRow)]
struct CounterRow {
    total: i64,
    pending: i64,
    sent: i64,
    delivered: i64,
    read: i64,
    failed: i64,
    skipped: i64,
}

/// The counters recomputed from the messages themselves, with the stage definitions of
/// `Counters::of`: what the stored counters must always equal.
pub async fn counted_from_messages(conn: Conn<'_>, id: CampaignId) -> Result<Counters> {
    let row: CounterRow = on_conn!(conn, c => sqlx::query_as(
        "SELECT COUNT(*) AS total,
                COALESCE(SUM(CASE WHEN status IN ('pending', 'sending') THEN 1 ELSE 0 END), 0) AS pending,
                COALESCE(SUM(CASE WHEN sent_at IS NOT NULL THEN 1 ELSE 0 END), 0) AS sent,
                COALESCE(SUM(CASE WHEN delivered_at IS NOT NULL THEN 1 ELSE 0 END), 0) AS delivered,
                COALESCE(SUM(CASE WHEN read_at IS NOT NULL THEN 1 ELSE 0 END), 0) AS read,
                COALESCE(SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), 0) AS failed,
                COALESCE(SUM(CASE WHEN status = 'skipped' THEN 1 ELSE 0 END), 0) AS skipped
         FROM messages WHERE campaign_id = $1",
    )
    .bind(id)
    .fetch_one(&mut *c)
    .await?);
    Ok(Counters {
        total: row.total,
        pending: row.pending,
        sent: row.sent,
        delivered: row.delivered,
        read: row.read,
        failed: row.failed,
        skipped: row.skipped,
    })
}
