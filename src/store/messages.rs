//! Messages: the recipients of campaigns and single sends, and the queue sender lanes claim
//! from. Every status change goes through the domain's `Progress::apply` and moves its
//! campaign's counters in the same transaction; the database appends its `message.*` event
//! (a trigger of migration 0010, so that the send path pays no round trip for it).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use super::events::{self, NewEvent};
use super::sql::{
    Param, SqlBuilder, bind_params, fetch_page, fetch_rows, rows_per_statement, update_rows,
};
use super::{Conn, Dialect, Page, Result, StoreError, Tx, on_conn};
use super::{analytics, campaigns, logged_sends};
use crate::domain::event::{EventType, InboundEvent};
use crate::domain::ids::{CampaignId, ContactId, MessageId, SenderId, WorkspaceId};
use crate::domain::message::{Counters, Direction, Event, MessageStatus, Progress};
use crate::domain::whatsapp::RenderedWhatsApp;

macro_rules! columns {
    () => {
        "id, workspace_id, campaign_id, sender_id, contact_id, direction, phone, body, media_url, \
         status, attempts, not_before, provider_message_id, error, created_at, updated_at, \
         sent_at, delivered_at, read_at, failed_at, reply_to"
    };
}

#[derive(Clone, Debug, PartialEq, FromRow)]
pub struct Message {
    pub id: MessageId,
    pub workspace_id: WorkspaceId,
    pub campaign_id: Option<CampaignId>,
    pub sender_id: SenderId,
    pub contact_id: Option<ContactId>,
    pub direction: Direction,
    pub phone: String,
    pub body: Option<String>,
    pub media_url: Option<String>,
    pub status: MessageStatus,
    pub attempts: i64,
    pub not_before: DateTime<Utc>,
    pub provider_message_id: Option<String>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub read_at: Option<DateTime<Utc>>,
    pub failed_at: Option<DateTime<Utc>>,
    /// An automatic reply's inbound message.
    pub reply_to: Option<MessageId>,
}

/// A single outbound message, rendered before it is queued.
pub struct NewMessage<'a> {
    pub sender_id: SenderId,
    pub contact_id: Option<ContactId>,
    pub phone: &'a str,
    pub body: &'a str,
    pub media_url: Option<&'a str>,
    /// Not sent before this time (now, or its schedule).
    pub not_before: DateTime<Utc>,
    /// The inbound message this automatic reply answers.
    pub reply_to: Option<MessageId>,
    /// The template approved at Meta, rendered for the recipient, when the message was made
    /// from a template that has one.
    pub whatsapp: Option<&'a RenderedWhatsApp>,
}

pub async fn insert_single(
    mut conn: Conn<'_>,
    workspace: WorkspaceId,
    message: &NewMessage<'_>,
    now: DateTime<Utc>,
) -> Result<Message> {
    let id = MessageId::generate();
    on_conn!(conn.reborrow(), c => sqlx::query(
        "INSERT INTO messages (id, workspace_id, sender_id, contact_id, direction, phone, body,
                               media_url, status, attempts, not_before, created_at, updated_at,
                               reply_to, whatsapp)
         VALUES ($1, $2, $3, $4, 'outbound', $5, $6, $7, 'pending', 0, $8, $9, $9, $10, $11)",
    )
    .bind(id)
    .bind(workspace)
    .bind(message.sender_id)
    .bind(message.contact_id)
    .bind(message.phone)
    .bind(message.body)
    .bind(message.media_url)
    .bind(message.not_before)
    .bind(now)
    .bind(message.reply_to)
    .bind(message.whatsapp.map(sqlx::types::Json))
    .execute(&mut *c)
    .await.map(drop))?;
    super::lanes::announce_work(conn.reborrow(), message.sender_id).await?;
    get(conn, workspace, id).await
}

pub async fn get(conn: Conn<'_>, workspace: WorkspaceId, id: MessageId) -> Result<Message> {
    on_conn!(conn, c => Ok(sqlx::query_as(concat!(
        "SELECT ", columns!(), " FROM messages WHERE id = $1 AND workspace_id = $2"
    ))
    .bind(id)
    .bind(workspace)
    .fetch_one(&mut *c)
    .await?))
}

/// When a campaign's first and last sends were recorded: the pace it held, for a benchmark.
pub async fn sent_between(
    conn: Conn<'_>,
    campaign: CampaignId,
) -> Result<Option<(DateTime<Utc>, DateTime<Utc>)>> {
    let (first, last): (Option<DateTime<Utc>>, Option<DateTime<Utc>>) = on_conn!(conn, c => sqlx::query_as(
        "SELECT MIN(sent_at), MAX(sent_at) FROM messages WHERE campaign_id = $1",
    )
    .bind(campaign)
    .fetch_one(&mut *c)
    .await?);
    Ok(first.zip(last))
}

#[derive(Clone, Copy, Debug, Default)]
pub struct MessageFilter {
    pub campaign: Option<CampaignId>,
    pub status: Option<MessageStatus>,
    pub direction: Option<Direction>,
    /// One contact's conversation, both directions (checked against the workspace first).
    pub contact: Option<ContactId>,
}

/// One page of a workspace's messages, newest first.
pub async fn list(
    conn: Conn<'_>,
    workspace: WorkspaceId,
    filter: MessageFilter,
    page: Page,
) -> Result<(Vec<Message>, i64)> {
    let (from_where, order) = matching(workspace, &filter);
    fetch_page(conn, columns!(), &from_where, order, page).await
}

/// One page as [`list`] gives it, without counting every match.
pub async fn list_rows(
    conn: Conn<'_>,
    workspace: WorkspaceId,
    filter: MessageFilter,
    page: Page,
) -> Result<Vec<Message>> {
    let (from_where, order) = matching(workspace, &filter);
    fetch_rows(conn, columns!(), &from_where, order, page).await
}

/// The messages `filter` names, and the order they are listed in.
fn matching(workspace: WorkspaceId, filter: &MessageFilter) -> (SqlBuilder, &'static str) {
    let mut from_where = SqlBuilder::new("FROM messages WHERE ");
    match filter.campaign {
        // The campaign is checked against the workspace once, so the (campaign_id, status)
        // index answers alone: a condition on the messages' own workspace_id would read every
        // matching row (a million of them, for a big campaign's count).
        Some(campaign) => from_where
            .push("campaign_id = (SELECT id FROM campaigns WHERE id = ")
            .bind(Param::Id(campaign.0))
            .push(" AND workspace_id = ")
            .bind(Param::Id(workspace.0))
            .push(")"),
        None => from_where
            .push("workspace_id = ")
            .bind(Param::Id(workspace.0)),
    };
    if let Some(status) = filter.status {
        from_where
            .push(" AND status = ")
            .bind(Param::Text(status.as_str().into()));
    }
    if let Some(contact) = filter.contact {
        from_where
            .push(" AND contact_id = ")
            .bind(Param::Id(contact.0));
    }
    if let Some(direction) = filter.direction {
        from_where
            .push(" AND direction = ")
            .bind(Param::Text(direction.as_str().into()));
    }
    let order = if filter.campaign.is_some() {
        "id"
    } else {
        "created_at DESC, id DESC"
    };
    (from_where, order)
}

/// Cancels a single message that is still pending: it becomes `skipped` ("canceled").
pub async fn cancel_single(
    mut conn: Conn<'_>,
    workspace: WorkspaceId,
    id: MessageId,
    now: DateTime<Utc>,
) -> Result<Message> {
    let canceled = on_conn!(conn.reborrow(), c => sqlx::query(
        "UPDATE messages SET status = 'skipped', error = 'canceled', updated_at = $3
         WHERE id = $1 AND workspace_id = $2 AND campaign_id IS NULL AND status = 'pending'",
    )
    .bind(id)
    .bind(workspace)
    .bind(now)
    .execute(&mut *c)
    .await?
    .rows_affected());
    let message = get(conn, workspace, id).await?;
    if canceled == 0 {
        return Err(StoreError::MessageNotPending {
            status: message.status,
        });
    }
    Ok(message)
}

/// One claim of a message: the message and the attempt its claim made. Releasing or renewing
/// a claim names both, so a lane whose claim ran out can never touch the claim another lane
/// made of the same message since.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HeldClaim {
    pub id: MessageId,
    pub attempt: i64,
}

/// Narrows an update to these claims, still `sending`: the id list finds the rows by their key,
/// the `CASE` keeps only those whose attempt is still the claim's (a list, where a chain of
/// `OR`s would pass SQLite's limit on an expression's depth).
fn of_claims(update: &mut SqlBuilder, claims: &[HeldClaim]) {
    update
        .push(" WHERE status = 'sending' AND id IN ")
        .bind_list(claims.iter().map(|claim| Param::Id(claim.id.0)))
        .push(" AND attempts = CASE id");
    for claim in claims {
        update
            .push(" WHEN ")
            .bind(Param::Id(claim.id.0))
            .push(" THEN ")
            .bind(Param::Int(claim.attempt));
    }
    update.push(" END");
}

/// A message a lane has claimed and must now send.
#[derive(Clone, Debug, PartialEq, FromRow)]
pub struct Claimed {
    pub id: MessageId,
    pub campaign_id: Option<CampaignId>,
    pub contact_id: Option<ContactId>,
    pub phone: String,
    /// A single message's own; a campaign's messages render the campaign's content.
    pub body: Option<String>,
    /// A single message's own; a campaign's messages carry the campaign's.
    pub media_url: Option<String>,
    /// A single message's own, rendered; a campaign's messages render the campaign's.
    pub whatsapp: Option<sqlx::types::Json<RenderedWhatsApp>>,
    pub attempts: i64,
}

/// A claimed campaign message, as the claim returns it.
#[derive(FromRow)]
struct ClaimedOfCampaign {
    id: MessageId,
    contact_id: Option<ContactId>,
    phone: String,
    attempts: i64,
}

/// Claims up to `limit` messages of `sender` that are due: single messages first, then those of
/// the sender's running campaigns, oldest campaign first. Claimed messages are `sending` until
/// `lease_until`; if their result is not recorded by then, [`requeue_expired`] frees them.
/// Paused and canceled campaigns' messages are never claimed.
pub async fn claim(
    tx: &mut Tx,
    sender: SenderId,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<Claimed>> {
    let mut claimed = claim_from(tx, sender, None, now, lease_until, limit).await?;
    if claimed.len() as u32 >= limit {
        return Ok(claimed);
    }
    // The campaign rows are key-share-locked on PostgreSQL: a pause or cancel takes their
    // update lock first (`campaigns::wait_for_claims`), so it waits for this claim to commit,
    // and a claim after it sees the new status. So once a pause has returned, no message of that
    // campaign is claimed, which is to say no new send of it starts. A counter update is not
    // kept waiting (a share lock would hold each group of recorded sends behind the claim
    // ahead). SQLite's single writer gives the same order.
    let running_sql = match tx.conn().dialect() {
        Dialect::Sqlite => RUNNING_CAMPAIGNS,
        Dialect::Postgres => RUNNING_CAMPAIGNS_LOCKED,
    };
    let running: Vec<CampaignId> = on_conn!(tx.conn(), c => sqlx::query_scalar(running_sql)
        .bind(sender)
        .fetch_all(&mut *c)
        .await?);
    for campaign in running {
        let room = limit - claimed.len() as u32;
        if room == 0 {
            break;
        }
        claimed.extend(claim_from(tx, sender, Some(campaign), now, lease_until, room).await?);
    }
    Ok(claimed)
}

const RUNNING_CAMPAIGNS: &str =
    "SELECT id FROM campaigns WHERE sender_id = $1 AND status = 'running' ORDER BY started_at, id";
const RUNNING_CAMPAIGNS_LOCKED: &str = "SELECT id FROM campaigns WHERE sender_id = $1 AND status = 'running' ORDER BY started_at, id FOR KEY SHARE";

/// Claims in the caller's transaction, which a failure of the claim's `UPDATE` ends (see
/// [`update_rows`]).
async fn claim_from(
    tx: &mut Tx,
    sender: SenderId,
    campaign: Option<CampaignId>,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<Claimed>> {
    let queue = if campaign.is_some() {
        "campaign_id = $5"
    } else {
        "campaign_id IS NULL"
    };
    // SQLite has one writer, so its claims cannot collide; PostgreSQL processes skip each
    // other's locked rows instead of waiting on them. PostgreSQL gets the ids as an array, so
    // that it finds each by its key: given `IN (subquery)`, its planner may join the claimed
    // ids to a sequential scan of every message (it did at 20,000).
    let dialect = tx.conn().dialect();
    let (ids_from, ids_end, lock) = match dialect {
        Dialect::Sqlite => ("id IN (", ")", ""),
        Dialect::Postgres => ("id = ANY(ARRAY(", "))", " FOR UPDATE SKIP LOCKED"),
    };
    // A campaign's messages have no body of their own and the campaign's media, so only what
    // differs between them comes back: each value returned costs a copy on SQLite.
    let returning = if campaign.is_some() {
        "id, contact_id, phone, attempts"
    } else {
        "id, campaign_id, contact_id, phone, body, media_url, whatsapp, attempts"
    };
    let update = update_rows(dialect);
    let sql = format!(
        "{update} messages SET status = 'sending', attempts = attempts + 1, lease_expires_at = $3,
                             updated_at = $2
         WHERE {ids_from}SELECT id FROM messages
                      WHERE sender_id = $1 AND {queue} AND status = 'pending' AND not_before <= $2
                      ORDER BY not_before, id LIMIT $4{lock}{ids_end}
         RETURNING {returning}"
    );
    let mut claimed: Vec<Claimed> = match campaign {
        None => on_conn!(tx.conn(), c => sqlx::query_as(super::sql::trusted(&sql))
            .bind(sender)
            .bind(now)
            .bind(lease_until)
            .bind(i64::from(limit))
            .fetch_all(&mut *c)
            .await?),
        Some(campaign_id) => {
            let rows: Vec<ClaimedOfCampaign> = on_conn!(tx.conn(), c => sqlx::query_as(super::sql::trusted(&sql))
                .bind(sender)
                .bind(now)
                .bind(lease_until)
                .bind(i64::from(limit))
                .bind(campaign_id)
                .fetch_all(&mut *c)
                .await?);
            rows.into_iter()
                .map(|row| Claimed {
                    id: row.id,
                    campaign_id: Some(campaign_id),
                    contact_id: row.contact_id,
                    phone: row.phone,
                    body: None,
                    media_url: None,
                    whatsapp: None,
                    attempts: row.attempts,
                })
                .collect()
        }
    };
    // RETURNING gives no order; ids are time-ordered, so this restores queue order.
    claimed.sort_unstable_by_key(|message| message.id);
    Ok(claimed)
}

/// What [`requeue_expired`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Expired {
    /// Claims whose sends were logged as they completed: recorded as sent, not sent again.
    pub recorded: usize,
    /// Claims that are pending again.
    pub requeued: u64,
}

/// Frees claims whose lease ran out (their process died): the sends their lane logged are
/// recorded ([`logged_sends::record_expired`]), the others become pending again and keep their
/// id, which providers see as the idempotency key of the retry. Then sweeps the log.
pub async fn requeue_expired(db: &super::Db, now: DateTime<Utc>) -> Result<Expired> {
    let logged = match db.send_log() {
        Some(send_log) => send_log.read()?,
        None => Vec::new(),
    };
    let mut tx = db.begin().await?;
    let recorded = logged_sends::record_expired(&mut tx, logged, now).await?;
    let requeued = on_conn!(tx.conn(), c => sqlx::query(
        "UPDATE messages SET status = 'pending', lease_expires_at = NULL, updated_at = $1
         WHERE status = 'sending' AND lease_expires_at <= $1",
    )
    .bind(now)
    .execute(&mut *c)
    .await?
    .rows_affected());
    tx.commit().await?;
    if recorded > 0 {
        logged_sends::sweep(db).await?;
    }
    Ok(Expired { recorded, requeued })
}

/// Extends `claims`, where they still hold, until `until`: a lane whose batch
/// outlasts a third of its claims' lease (a slow database, a slow provider) keeps them, so they
/// are not freed and sent a second time while its sends are out.
pub async fn renew_claims(
    conn: Conn<'_>,
    claims: &[HeldClaim],
    until: DateTime<Utc>,
) -> Result<()> {
    update_held(conn, claims, "lease_expires_at = $1", until).await
}

/// Hands claimed messages that were never sent back to the queue (their lane lost its lease
/// before their turn): pending again, the claim's attempt undone. A message no longer held by
/// that claim (recorded, or claimed again after the claim ran out) is left as it is. In flight
/// counts as pending, so counters do not move.
pub async fn release_unsent(
    conn: Conn<'_>,
    claims: &[HeldClaim],
    now: DateTime<Utc>,
) -> Result<()> {
    update_held(
        conn,
        claims,
        "status = 'pending', attempts = attempts - 1, lease_expires_at = NULL, updated_at = $1",
        now,
    )
    .await
}

/// `UPDATE messages SET {set}`, where `$1` is `at`, of the messages `claims` still hold.
async fn update_held(
    conn: Conn<'_>,
    claims: &[HeldClaim],
    set: &str,
    at: DateTime<Utc>,
) -> Result<()> {
    if claims.is_empty() {
        return Ok(());
    }
    match conn {
        // Two arrays: one statement of one shape for any number of claims.
        Conn::Postgres(c) => {
            let ids: Vec<uuid::Uuid> = claims.iter().map(|claim| claim.id.0).collect();
            let attempts: Vec<i64> = claims.iter().map(|claim| claim.attempt).collect();
            let sql = format!(
                "UPDATE messages SET {set}
                 FROM unnest($2::uuid[], $3::bigint[]) AS held (id, attempt)
                 WHERE messages.id = held.id AND messages.attempts = held.attempt
                   AND messages.status = 'sending'"
            );
            sqlx::query(super::sql::trusted(&sql))
                .bind(at)
                .bind(ids)
                .bind(attempts)
                .execute(&mut *c)
                .await?;
        }
        Conn::Sqlite(c) => {
            for chunk in claims.chunks(rows_per_statement(3)) {
                let mut update =
                    SqlBuilder::after_placeholders(1, &format!("UPDATE messages SET {set}"));
                of_claims(&mut update, chunk);
                bind_params!(
                    sqlx::query(super::sql::built(&update, &*c)).bind(at),
                    &update.params
                )
                .execute(&mut *c)
                .await?;
            }
        }
    }
    Ok(())
}

/// What became of one send attempt.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Sent {
        provider_message_id: Option<String>,
    },
    /// A transient failure: try again at `not_before`.
    Retry {
        not_before: DateTime<Utc>,
        error: String,
    },
    Failed {
        error: String,
    },
    /// Not sent on purpose, for `reason` (`outside_customer_service_window`).
    Skipped {
        reason: String,
    },
    /// Failed because the recipient refuses the sender's messages: its contact is opted out
    /// in the same transaction.
    Unwanted {
        error: String,
    },
    /// Not sent because its campaign cannot go out as it is: the campaign is paused with the
    /// reason in the same transaction, and the message waits in the queue.
    CampaignBlocked {
        reason: String,
    },
}

/// Records a batch of send outcomes in one transaction, moving counters and completing
/// campaigns with nothing left to send.
pub async fn record_outcomes(
    tx: &mut Tx,
    outcomes: &[(MessageId, Outcome)],
    now: DateTime<Utc>,
) -> Result<()> {
    let changes: Vec<Change> = outcomes
        .iter()
        .map(|(id, outcome)| outcome.change(*id, now))
        .collect();
    record_changes(tx, changes, now).await?;
    for (id, outcome) in outcomes {
        match outcome {
            Outcome::Unwanted { .. } => opt_out_recipient(tx, *id, now).await?,
            Outcome::CampaignBlocked { reason } => pause_campaign_of(tx, *id, reason, now).await?,
            _ => {}
        }
    }
    Ok(())
}

/// Records sends the provider took, each sent at its own time (its `provider_message_id`, if
/// the provider gave one), as [`record_outcomes`] records them.
pub async fn record_sends(
    tx: &mut Tx,
    sends: Vec<(MessageId, Option<String>, DateTime<Utc>)>,
    now: DateTime<Utc>,
) -> Result<()> {
    let changes = sends
        .into_iter()
        .map(|(id, provider_message_id, at)| {
            Outcome::Sent {
                provider_message_id,
            }
            .change(id, at)
        })
        .collect();
    record_changes(tx, changes, now).await
}

/// Writes `changes`: sends of messages still as they were claimed in bulk, the rest one
/// message at a time.
async fn record_changes(tx: &mut Tx, changes: Vec<Change>, now: DateTime<Utc>) -> Result<()> {
    let sends: Vec<&Change> = changes
        .iter()
        .filter(|change| matches!(change.event, Event::Sent { .. }))
        .collect();
    let mut recorded = record_plain_sends(tx, &sends, now).await?;
    if recorded.len() == changes.len() {
        return Ok(());
    }
    // Everything the fast path did not take: failures, and sends of messages that moved on.
    let rest: Vec<Change> = changes
        .into_iter()
        .filter(|change| {
            !(matches!(change.event, Event::Sent { .. }) && recorded.remove(&change.id))
        })
        .collect();
    apply_changes(tx.conn(), &rest, now).await
}

/// Opts out the contact a message went to (its `contact.opted_out` event included).
async fn opt_out_recipient(tx: &mut Tx, id: MessageId, now: DateTime<Utc>) -> Result<()> {
    let recipient: Option<(WorkspaceId, Option<ContactId>)> = on_conn!(tx.conn(), c => sqlx::query_as(
        "SELECT workspace_id, contact_id FROM messages WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *c)
    .await?);
    if let Some((workspace, Some(contact))) = recipient {
        match super::contacts::set_opted_out(tx.conn(), workspace, contact, Some(now), now).await {
            Ok(_) | Err(StoreError::NotFound) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Pauses the running campaign a message belongs to, with the reason.
async fn pause_campaign_of(
    tx: &mut Tx,
    id: MessageId,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    let campaign: Option<Option<CampaignId>> = on_conn!(tx.conn(), c => sqlx::query_scalar(
        "SELECT campaign_id FROM messages WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *c)
    .await?);
    if let Some(Some(campaign)) = campaign {
        campaigns::pause_with_reason(tx.conn(), campaign, reason, now).await?;
    }
    Ok(())
}

/// The common case of [`record_outcomes`], without reading each message first: sends of
/// messages still just as they were claimed (no callback has overtaken them). They share one
/// `before`, so the domain's rules give them one `after` and one counter change; one guarded
/// `UPDATE … RETURNING` writes that `after` where the row still is that `before` (PostgreSQL
/// locks each row it updates; SQLite's single writer keeps them still) and says which rows they
/// were. The caller takes the rest through the general path, [`apply_changes`].
async fn record_plain_sends(
    tx: &mut Tx,
    sends: &[&Change],
    now: DateTime<Utc>,
) -> Result<std::collections::HashSet<MessageId>> {
    let mut recorded = std::collections::HashSet::with_capacity(sends.len());
    let Some(claimed) = Progress::pending().apply(Event::Claimed) else {
        return Ok(recorded);
    };
    // Sends differ only in when they were sent: one `after` but for its `sent_at`, which each
    // row carries, and one counter change.
    let sent_at = |change: &Change| match change.event {
        Event::Sent { at } => at,
        _ => now,
    };
    let sent = |at| claimed.apply(Event::Sent { at });
    let Some(sent_now) = sent(now) else {
        return Ok(recorded);
    };
    let each = Counters::change(&claimed, &sent_now);
    if sends.is_empty() {
        return Ok(recorded);
    }
    let mut per_campaign: HashMap<Option<CampaignId>, i64> = HashMap::new();
    let mut steps = Vec::with_capacity(sends.len());
    // PostgreSQL takes the whole group as three arrays: one statement of one shape, planned
    // once; SQLite takes a list of values, at most a lane's group at a time, so that the
    // statement's few shapes stay prepared.
    let dialect = tx.conn().dialect();
    let rows_at_once = match dialect {
        Dialect::Postgres => sends.len(),
        Dialect::Sqlite => PLAIN_SENDS_PER_STATEMENT,
    };
    for chunk in sends.chunks(rows_at_once) {
        let mut update = match dialect {
            Dialect::Postgres => SqlBuilder::after_placeholders(
                3,
                "WITH v (id, provider_message_id, sent_at) AS
                     (SELECT * FROM unnest($1::uuid[], $2::text[], $3::timestamptz[]))
                 UPDATE messages SET ",
            ),
            Dialect::Sqlite => {
                let mut update =
                    SqlBuilder::new("WITH v (id, provider_message_id, sent_at) AS (VALUES ");
                for (index, change) in chunk.iter().enumerate() {
                    if index > 0 {
                        update.push(", ");
                    }
                    update.bind_list([
                        Param::Id(change.id.0),
                        Param::OptText(change.details.provider_message_id.clone()),
                        Param::Time(sent_at(change)),
                    ]);
                }
                update.push(&format!(")\n {} messages SET ", update_rows(dialect)));
                update
            }
        };
        set_progress(&mut update, &sent_now, "v.sent_at");
        update
            .push(
                ", provider_message_id = COALESCE(v.provider_message_id, messages.provider_message_id),
                 lease_expires_at = NULL, updated_at = ",
            )
            .bind(Param::Time(now))
            .push(" FROM v WHERE messages.id = v.id AND ");
        progress_is(&mut update, &claimed);
        update.push(
            " RETURNING messages.id, messages.campaign_id, messages.workspace_id, messages.sender_id",
        );
        let rows: Vec<(MessageId, Option<CampaignId>, WorkspaceId, SenderId)> = match tx.conn() {
            Conn::Postgres(c) => {
                let ids: Vec<uuid::Uuid> = chunk.iter().map(|change| change.id.0).collect();
                let provider_ids: Vec<Option<String>> = chunk
                    .iter()
                    .map(|change| change.details.provider_message_id.clone())
                    .collect();
                let times: Vec<DateTime<Utc>> =
                    chunk.iter().map(|change| sent_at(change)).collect();
                let query = sqlx::query_as(super::sql::built(&update, &*c))
                    .bind(ids)
                    .bind(provider_ids)
                    .bind(times);
                bind_params!(query, &update.params)
                    .fetch_all(&mut *c)
                    .await?
            }
            Conn::Sqlite(c) => {
                bind_params!(
                    sqlx::query_as(super::sql::built(&update, &*c)),
                    &update.params
                )
                .fetch_all(&mut *c)
                .await?
            }
        };
        let sent_at_of: HashMap<MessageId, DateTime<Utc>> = chunk
            .iter()
            .map(|change| (change.id, sent_at(change)))
            .collect();
        for (id, campaign, workspace, sender) in rows {
            let after = sent_at_of.get(&id).and_then(|at| sent(*at));
            if let Some(after) = after
                && recorded.insert(id)
            {
                *per_campaign.entry(campaign).or_default() += 1;
                steps.extend(analytics::steps_between(
                    (workspace, sender, campaign),
                    &claimed,
                    &after,
                ));
            }
        }
    }
    analytics::add_steps(tx.conn(), &steps).await?;
    let changes = per_campaign
        .into_iter()
        .filter_map(|(campaign, n)| Some((campaign?, each * n)));
    move_counters(tx.conn(), changes, now).await?;
    Ok(recorded)
}

/// Rows of one `UPDATE` of plain sends on SQLite: a lane's group commit, so that a group is one
/// statement, and an apply of many groups a few statements of the same shape.
const PLAIN_SENDS_PER_STATEMENT: usize = 64;

/// A progress's times, each with the column it is kept in.
fn times_of(progress: &Progress) -> [(&'static str, Option<DateTime<Utc>>); 4] {
    [
        ("sent_at", progress.sent_at),
        ("delivered_at", progress.delivered_at),
        ("read_at", progress.read_at),
        ("failed_at", progress.failed_at),
    ]
}

/// `status = …, sent_at = …, …`: a message's whole progress, as the domain computed it, but
/// for its `sent_at`, which is `sent_at` (an expression: each row's own time). The status is a
/// literal (a name of the domain's closed set), so the planner sees what a hand-written
/// statement would show it.
fn set_progress(update: &mut SqlBuilder, progress: &Progress, sent_at: &str) {
    update.push(&format!("status = '{}'", progress.status.as_str()));
    for (column, at) in times_of(progress) {
        match (column, at) {
            ("sent_at", _) => update.push(&format!(", sent_at = {sent_at}")),
            (_, None) => update.push(&format!(", {column} = NULL")),
            (_, Some(at)) => update.push(&format!(", {column} = ")).bind(Param::Time(at)),
        };
    }
}

/// A guard that a row's progress is exactly `progress`, in literals where it can be (see
/// [`set_progress`]).
fn progress_is(query: &mut SqlBuilder, progress: &Progress) {
    query.push(&format!("messages.status = '{}'", progress.status.as_str()));
    for (column, at) in times_of(progress) {
        match at {
            None => query.push(&format!(" AND messages.{column} IS NULL")),
            Some(at) => query
                .push(&format!(" AND messages.{column} = "))
                .bind(Param::Time(at)),
        };
    }
}

/// Adds each campaign's change to its counters, and completes those left with nothing to send.
async fn move_counters(
    mut conn: Conn<'_>,
    changes: impl IntoIterator<Item = (CampaignId, Counters)>,
    now: DateTime<Utc>,
) -> Result<()> {
    for (campaign, change) in changes {
        let pending = campaigns::add_to_counters(conn.reborrow(), campaign, &change, now).await?;
        if change.pending < 0 && pending == Some(0) {
            campaigns::complete_if_done(conn.reborrow(), campaign, now).await?;
        }
    }
    Ok(())
}

impl Outcome {
    /// The outcome as a step of the message's lifecycle, with what else it brings.
    fn change(&self, id: MessageId, now: DateTime<Utc>) -> Change {
        let (event, details) = match self {
            Outcome::Sent {
                provider_message_id,
            } => (
                Event::Sent { at: now },
                Details {
                    provider_message_id: provider_message_id.clone(),
                    ..Details::default()
                },
            ),
            Outcome::Retry { not_before, error } => (
                Event::Retry,
                Details::error(error).waiting_until(*not_before),
            ),
            Outcome::Failed { error } | Outcome::Unwanted { error } => {
                (Event::Failed { at: now }, Details::error(error))
            }
            Outcome::Skipped { reason } => (Event::Skipped, Details::error(reason)),
            Outcome::CampaignBlocked { reason } => {
                (Event::Retry, Details::error(reason).waiting_until(now))
            }
        };
        Change { id, event, details }
    }
}

/// A provider's report about one message, named by Herald's id or the provider's.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusReport {
    pub reference: String,
    pub event: Event,
    pub error: Option<String>,
}

/// Applies provider status reports for `sender`'s messages. A report that names no message of
/// the sender yet — a provider's callback can overtake the record of its own answer — is parked
/// in the same transaction and applied by [`apply_parked_reports`] once the send is recorded.
/// Returns the parked reports.
pub async fn record_status_reports(
    tx: &mut Tx,
    sender: SenderId,
    reports: &[StatusReport],
    now: DateTime<Utc>,
) -> Result<Vec<StatusReport>> {
    let found = resolve_references(
        tx.conn(),
        sender,
        reports.iter().map(|r| r.reference.as_str()),
    )
    .await?;
    let mut changes = Vec::with_capacity(reports.len());
    let mut unmatched = Vec::new();
    for report in reports {
        match found.get(report.reference.as_str()) {
            Some(&id) => changes.push(Change {
                id,
                event: report.event,
                details: Details {
                    error: report.error.clone(),
                    ..Details::default()
                },
            }),
            None => unmatched.push(report.clone()),
        }
    }
    apply_changes(tx.conn(), &changes, now).await?;
    park_reports(tx.conn(), sender, &unmatched, now).await?;
    Ok(unmatched)
}

/// A report's event as it is parked: its kind and instant.
fn parked_kind(event: Event) -> Option<(&'static str, DateTime<Utc>)> {
    match event {
        Event::Sent { at } => Some(("sent", at)),
        Event::Delivered { at } => Some(("delivered", at)),
        Event::Read { at } => Some(("read", at)),
        Event::Failed { at } => Some(("failed", at)),
        Event::Claimed | Event::Retry | Event::Skipped => None,
    }
}

fn parked_event(kind: &str, at: DateTime<Utc>) -> Result<Event> {
    match kind {
        "sent" => Ok(Event::Sent { at }),
        "delivered" => Ok(Event::Delivered { at }),
        "read" => Ok(Event::Read { at }),
        "failed" => Ok(Event::Failed { at }),
        other => Err(StoreError::Corrupt(format!(
            "parked report of kind '{other}'"
        ))),
    }
}

async fn park_reports(
    mut conn: Conn<'_>,
    sender: SenderId,
    reports: &[StatusReport],
    now: DateTime<Utc>,
) -> Result<()> {
    for report in reports {
        let Some((kind, at)) = parked_kind(report.event) else {
            continue;
        };
        on_conn!(conn.reborrow(), c => sqlx::query(
            "INSERT INTO parked_reports (id, sender_id, reference, kind, at, error, received_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(uuid::Uuid::now_v7())
        .bind(sender)
        .bind(&report.reference)
        .bind(kind)
        .bind(at)
        .bind(report.error.as_deref())
        .bind(now)
        .execute(&mut *c)
        .await
        .map(drop))?;
    }
    Ok(())
}

/// Whether any report is parked: a cheap read, so that an idle sweep takes no write lock.
pub async fn has_parked_reports(conn: Conn<'_>) -> Result<bool> {
    let any: i64 = on_conn!(conn, c => sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT 1 FROM parked_reports LIMIT 1) parked",
    )
    .fetch_one(&mut *c)
    .await?);
    Ok(any > 0)
}

#[derive(FromRow)]
struct ParkedMatch {
    parked_id: uuid::Uuid,
    message_id: MessageId,
    kind: String,
    at: DateTime<Utc>,
    error: Option<String>,
}

/// What a sweep of parked reports did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParkedSweep {
    /// Reports whose message's send is now recorded, applied.
    pub applied: u64,
    /// Reports older than the retention that never found their message, dropped.
    pub expired: u64,
}

/// Applies parked reports whose message now carries the provider's id (its send was recorded),
/// in order of arrival, and drops those that found no message within `keep`.
pub async fn apply_parked_reports(
    tx: &mut Tx,
    now: DateTime<Utc>,
    keep: chrono::Duration,
) -> Result<ParkedSweep> {
    const SWEEP: i64 = 1000;
    let matched: Vec<ParkedMatch> = on_conn!(tx.conn(), c => sqlx::query_as(
        "SELECT p.id AS parked_id, m.id AS message_id, p.kind, p.at, p.error
         FROM parked_reports p
         JOIN messages m ON m.provider_message_id = p.reference AND m.sender_id = p.sender_id
         ORDER BY p.id LIMIT $1",
    )
    .bind(SWEEP)
    .fetch_all(&mut *c)
    .await?);
    let mut changes = Vec::with_capacity(matched.len());
    for parked in &matched {
        changes.push(Change {
            id: parked.message_id,
            event: parked_event(&parked.kind, parked.at)?,
            details: Details {
                error: parked.error.clone(),
                ..Details::default()
            },
        });
    }
    apply_changes(tx.conn(), &changes, now).await?;
    let ids: Vec<uuid::Uuid> = matched.iter().map(|parked| parked.parked_id).collect();
    for chunk in ids.chunks(rows_per_statement(1)) {
        let mut delete = SqlBuilder::new("DELETE FROM parked_reports WHERE id IN ");
        delete.bind_list(chunk.iter().map(|id| Param::Id(*id)));
        on_conn!(tx.conn(), c => bind_params!(sqlx::query(super::sql::built(&delete, &*c)), &delete.params)
            .execute(&mut *c)
            .await
            .map(drop))?;
    }
    let expired = on_conn!(tx.conn(), c => sqlx::query(
        "DELETE FROM parked_reports WHERE received_at < $1",
    )
    .bind(now - keep)
    .execute(&mut *c)
    .await?
    .rows_affected());
    Ok(ParkedSweep {
        applied: matched.len() as u64,
        expired,
    })
}

/// Finds `sender`'s messages named by Herald's id or the provider's, a few hundred per query:
/// Herald ids through the primary key, provider ids through their own index. (One query with
/// `id = … OR provider_message_id = …` reads the whole table on SQLite.)
async fn resolve_references<'r>(
    mut conn: Conn<'_>,
    sender: SenderId,
    references: impl Iterator<Item = &'r str>,
) -> Result<HashMap<&'r str, MessageId>> {
    const CHUNK: usize = 500;
    let mut by_herald_id: HashMap<MessageId, &'r str> = HashMap::new();
    let mut by_provider_id: HashMap<&'r str, &'r str> = HashMap::new();
    for reference in references {
        match reference.parse::<MessageId>() {
            Ok(id) => by_herald_id.insert(id, reference),
            Err(_) => by_provider_id.insert(reference, reference),
        };
    }
    let mut found = HashMap::with_capacity(by_herald_id.len() + by_provider_id.len());
    let herald_ids: Vec<MessageId> = by_herald_id.keys().copied().collect();
    for chunk in herald_ids.chunks(CHUNK) {
        let mut select = SqlBuilder::new("SELECT id FROM messages WHERE id IN ");
        select
            .bind_list(chunk.iter().map(|id| Param::Id(id.0)))
            .push(" AND sender_id = ")
            .bind(Param::Id(sender.0));
        let ids: Vec<MessageId> = on_conn!(conn.reborrow(), c => bind_params!(sqlx::query_scalar(super::sql::built(&select, &*c)), &select.params)
            .fetch_all(&mut *c)
            .await?);
        found.extend(
            ids.into_iter()
                .filter_map(|id| by_herald_id.get(&id).map(|reference| (*reference, id))),
        );
    }
    let provider_ids: Vec<&str> = by_provider_id.keys().copied().collect();
    for chunk in provider_ids.chunks(CHUNK) {
        let mut select = SqlBuilder::new(
            "SELECT id, provider_message_id FROM messages
             WHERE direction = 'outbound' AND provider_message_id IN ",
        );
        select
            .bind_list(chunk.iter().map(|id| Param::Text((*id).to_owned())))
            .push(" AND sender_id = ")
            .bind(Param::Id(sender.0));
        let rows: Vec<(MessageId, String)> = on_conn!(conn.reborrow(), c => bind_params!(sqlx::query_as(super::sql::built(&select, &*c)), &select.params)
            .fetch_all(&mut *c)
            .await?);
        for (id, provider_id) in rows {
            if let Some(reference) = by_provider_id.get(provider_id.as_str()) {
                found.insert(*reference, id);
            }
        }
    }
    Ok(found)
}

/// A step of one message's lifecycle — a send's outcome, a provider's report — and what else it
/// brings. Every write of a message's progress starts as one.
struct Change {
    id: MessageId,
    event: Event,
    details: Details,
}

/// What a change brings besides the step; each is kept when the change brings none.
#[derive(Clone, Debug, Default, PartialEq)]
struct Details {
    provider_message_id: Option<String>,
    error: Option<String>,
    not_before: Option<DateTime<Utc>>,
}

impl Details {
    fn error(text: &str) -> Self {
        Self {
            error: Some(text.to_owned()),
            ..Self::default()
        }
    }

    fn waiting_until(self, not_before: DateTime<Utc>) -> Self {
        Self {
            not_before: Some(not_before),
            ..self
        }
    }

    /// Adds what a later change of the same message brings.
    fn absorb(&mut self, later: &Details) {
        if later.provider_message_id.is_some() {
            self.provider_message_id = later.provider_message_id.clone();
        }
        if later.error.is_some() {
            self.error = later.error.clone();
        }
        self.not_before = later.not_before.or(self.not_before);
    }
}

#[derive(FromRow)]
struct ProgressRow {
    id: MessageId,
    workspace_id: WorkspaceId,
    sender_id: SenderId,
    campaign_id: Option<CampaignId>,
    status: MessageStatus,
    sent_at: Option<DateTime<Utc>>,
    delivered_at: Option<DateTime<Utc>>,
    read_at: Option<DateTime<Utc>>,
    failed_at: Option<DateTime<Utc>>,
}

impl ProgressRow {
    fn progress(&self) -> Progress {
        Progress {
            status: self.status,
            sent_at: self.sent_at,
            delivered_at: self.delivered_at,
            read_at: self.read_at,
            failed_at: self.failed_at,
        }
    }
}

/// Reads a batch's current progress, applies each change through the domain's rules, writes
/// what changed, and moves each campaign's counters by the sum of its messages' changes.
async fn apply_changes(mut conn: Conn<'_>, changes: &[Change], now: DateTime<Utc>) -> Result<()> {
    const READ_BATCH: usize = rows_per_statement(1);
    let lock = match conn.dialect() {
        Dialect::Sqlite => "",
        Dialect::Postgres => " FOR UPDATE",
    };
    let mut current: HashMap<MessageId, ProgressRow> = HashMap::with_capacity(changes.len());
    for chunk in changes.chunks(READ_BATCH) {
        let mut select = SqlBuilder::new(
            "SELECT id, workspace_id, sender_id, campaign_id, status, sent_at, delivered_at, read_at,
                    failed_at
             FROM messages WHERE id IN ",
        );
        select
            .bind_list(chunk.iter().map(|change| Param::Id(change.id.0)))
            .push(lock);
        let rows: Vec<ProgressRow> = on_conn!(conn.reborrow(), c => bind_params!(sqlx::query_as(super::sql::built(&select, &*c)), &select.params)
            .fetch_all(&mut *c)
            .await?);
        current.extend(rows.into_iter().map(|row| (row.id, row)));
    }

    let mut campaign_changes: HashMap<CampaignId, Counters> = HashMap::new();
    let mut steps = Vec::new();
    // A message changed twice in one batch is written once, with where it ended.
    let mut writes: Vec<Write> = Vec::with_capacity(changes.len());
    let mut write_of: HashMap<MessageId, usize> = HashMap::with_capacity(changes.len());
    for change in changes {
        let Some(row) = current.get_mut(&change.id) else {
            continue;
        };
        let before = row.progress();
        let after = before.apply(change.event);
        // A send result can carry news (the provider's id) even when the status stands still.
        if after.is_none() && change.details.provider_message_id.is_none() {
            continue;
        }
        let after = after.unwrap_or(before);
        steps.extend(analytics::steps_between(
            (row.workspace_id, row.sender_id, row.campaign_id),
            &before,
            &after,
        ));
        if let Some(campaign) = row.campaign_id {
            *campaign_changes.entry(campaign).or_default() += Counters::change(&before, &after);
        }
        row.status = after.status;
        row.sent_at = after.sent_at;
        row.delivered_at = after.delivered_at;
        row.read_at = after.read_at;
        row.failed_at = after.failed_at;
        let index = *write_of.entry(change.id).or_insert_with(|| {
            writes.push(Write {
                id: change.id,
                progress: after,
                details: Details::default(),
            });
            writes.len() - 1
        });
        let write = &mut writes[index];
        write.progress = after;
        write.details.absorb(&change.details);
    }
    for chunk in writes.chunks(rows_per_statement(9)) {
        write_progress(conn.reborrow(), chunk, now).await?;
    }
    analytics::add_steps(conn.reborrow(), &steps).await?;
    move_counters(conn, campaign_changes, now).await
}

/// A message's new progress, and what its changes brought.
struct Write {
    id: MessageId,
    progress: Progress,
    details: Details,
}

/// Writes many messages' progress in one statement: a `VALUES` list joined to `messages`.
async fn write_progress(conn: Conn<'_>, writes: &[Write], now: DateTime<Utc>) -> Result<()> {
    let mut update = SqlBuilder::new(
        "WITH v (id, status, sent_at, delivered_at, read_at, failed_at, provider_message_id,
                 error, not_before) AS (VALUES ",
    );
    for (index, write) in writes.iter().enumerate() {
        if index > 0 {
            update.push(", ");
        }
        let progress = &write.progress;
        update.bind_list([
            Param::Id(write.id.0),
            Param::Text(progress.status.as_str().to_owned()),
            Param::OptTime(progress.sent_at),
            Param::OptTime(progress.delivered_at),
            Param::OptTime(progress.read_at),
            Param::OptTime(progress.failed_at),
            Param::OptText(write.details.provider_message_id.clone()),
            Param::OptText(write.details.error.clone()),
            Param::OptTime(write.details.not_before),
        ]);
    }
    update
        .push(
            ")
         UPDATE messages SET status = v.status, sent_at = v.sent_at,
             delivered_at = v.delivered_at, read_at = v.read_at, failed_at = v.failed_at,
             provider_message_id = COALESCE(v.provider_message_id, messages.provider_message_id),
             error = COALESCE(v.error, messages.error),
             not_before = COALESCE(v.not_before, messages.not_before),
             lease_expires_at = CASE WHEN messages.status = 'sending' AND v.status = 'sending'
                                     THEN messages.lease_expires_at END,
             updated_at = ",
        )
        .bind(Param::Time(now))
        .push(" FROM v WHERE messages.id = v.id");
    on_conn!(conn, c => bind_params!(sqlx::query(super::sql::built(&update, &*c)), &update.params)
        .execute(&mut *c)
        .await
        .map(drop))?;
    Ok(())
}

/// An inbound message as a platform reported it.
#[derive(Clone, Copy, Debug)]
pub struct NewInbound<'a> {
    pub from: &'a str,
    pub body: &'a str,
    pub at: DateTime<Utc>,
    /// The name the person gave the platform.
    pub name: Option<&'a str>,
    /// The platform's id of the message, when it gives one.
    pub id: Option<&'a str>,
}

/// An inbound message, as recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct Inbound {
    pub id: MessageId,
    pub workspace: WorkspaceId,
    pub contact: Option<ContactId>,
    /// The phone as stored (E.164 when it parses).
    pub phone: String,
}

/// An inbound message to record: who wrote it to which sender, and when it was taken in.
#[derive(Clone, Copy, Debug)]
pub struct Arrival<'a> {
    pub sender: SenderId,
    pub workspace: WorkspaceId,
    /// The contact with the writer's phone, when there is one.
    pub contact: Option<ContactId>,
    /// The writer's number as recorded: E.164 when it is a phone, else as written.
    pub phone: &'a str,
    pub message: &'a NewInbound<'a>,
    pub now: DateTime<Utc>,
}

/// Records messages contacts sent, each with its `message.received` event and its sender's
/// customer-service window, in a few statements whatever their number. For each arrival, in
/// order: the message recorded, or `None` when the platform's id of it is recorded already (the
/// platform delivered it again, perhaps twice in `arrivals`). Their counts in the rollups are
/// pushed to `received`, for the caller to add with the others of its transaction
/// ([`analytics::add_steps`]).
pub async fn insert_inbound(
    mut conn: Conn<'_>,
    arrivals: &[Arrival<'_>],
    received: &mut Vec<analytics::Step>,
) -> Result<Vec<Option<Inbound>>> {
    let ids: Vec<MessageId> = arrivals.iter().map(|_| MessageId::generate()).collect();
    let mut inserted = std::collections::HashSet::with_capacity(arrivals.len());
    let per_statement = rows_per_statement(14);
    for (chunk, chunk_ids) in arrivals
        .chunks(per_statement)
        .zip(ids.chunks(per_statement))
    {
        let mut insert = SqlBuilder::new(
            "INSERT INTO messages (id, workspace_id, sender_id, contact_id, phone, body,
                                   not_before, created_at, updated_at, delivered_at,
                                   provider_message_id, direction, status, attempts) VALUES ",
        );
        for (index, (arrival, id)) in chunk.iter().zip(chunk_ids).enumerate() {
            if index > 0 {
                insert.push(", ");
            }
            insert.bind_list([
                Param::Id(id.0),
                Param::Id(arrival.workspace.0),
                Param::Id(arrival.sender.0),
                Param::OptId(arrival.contact.map(|contact| contact.0)),
                Param::Text(arrival.phone.to_owned()),
                Param::Text(arrival.message.body.to_owned()),
                Param::Time(arrival.message.at),
                Param::Time(arrival.now),
                Param::Time(arrival.now),
                Param::Time(arrival.message.at),
                Param::OptText(arrival.message.id.map(str::to_owned)),
                Param::Text(Direction::Inbound.as_str().to_owned()),
                Param::Text(MessageStatus::Delivered.as_str().to_owned()),
                Param::Int(0),
            ]);
        }
        insert.push(
            " ON CONFLICT (sender_id, provider_message_id)
                 WHERE direction = 'inbound' AND provider_message_id IS NOT NULL DO NOTHING
              RETURNING id",
        );
        let recorded: Vec<MessageId> = on_conn!(conn.reborrow(), c => bind_params!(sqlx::query_scalar(super::sql::built(&insert, &*c)), &insert.params)
            .fetch_all(&mut *c)
            .await?);
        inserted.extend(recorded);
    }

    let mut recorded = Vec::with_capacity(arrivals.len());
    // By conversation (sender, phone): its latest message's time and platform id.
    type Latest<'a> = (DateTime<Utc>, Option<&'a str>);
    let mut windows: HashMap<(SenderId, &str), Latest> = HashMap::new();
    let mut events = Vec::new();
    for (arrival, id) in arrivals.iter().zip(&ids) {
        let phone = arrival.phone;
        if !inserted.contains(id) {
            recorded.push(None);
            continue;
        }
        let message = arrival.message;
        received.push(analytics::Step {
            workspace: arrival.workspace,
            sender: arrival.sender,
            campaign: None,
            outcome: analytics::Outcome::Received,
            at: message.at,
        });
        // The customer-service window opens (again) with every message the person writes; its
        // id is what a typing indicator answers. One row per conversation: a statement may
        // not change a row twice.
        windows
            .entry((arrival.sender, phone))
            .and_modify(|latest| {
                if message.at > latest.0 {
                    *latest = (message.at, message.id);
                }
            })
            .or_insert((message.at, message.id));
        let data = InboundEvent {
            message_id: *id,
            contact_id: arrival.contact,
            sender_id: arrival.sender,
            from: phone.to_owned(),
            body: message.body.to_owned(),
            received_at: message.at,
        };
        events.push(NewEvent::new(
            arrival.workspace,
            EventType::MessageReceived,
            *id,
            &data,
            arrival.now,
        )?);
        recorded.push(Some(Inbound {
            id: *id,
            workspace: arrival.workspace,
            contact: arrival.contact,
            phone: phone.to_owned(),
        }));
    }
    let windows: Vec<_> = windows.into_iter().collect();
    for chunk in windows.chunks(rows_per_statement(4)) {
        let mut upsert = SqlBuilder::new(
            "INSERT INTO conversations (sender_id, phone, last_inbound_at, last_inbound_id) VALUES ",
        );
        for (index, ((sender, phone), (at, id))) in chunk.iter().enumerate() {
            if index > 0 {
                upsert.push(", ");
            }
            upsert.bind_list([
                Param::Id(sender.0),
                Param::Text((*phone).to_owned()),
                Param::Time(*at),
                Param::OptText(id.map(str::to_owned)),
            ]);
        }
        upsert.push(
            " ON CONFLICT (sender_id, phone) DO UPDATE SET last_inbound_at = excluded.last_inbound_at,
                                                         last_inbound_id = excluded.last_inbound_id
              WHERE excluded.last_inbound_at > conversations.last_inbound_at",
        );
        on_conn!(conn.reborrow(), c => bind_params!(sqlx::query(super::sql::built(&upsert, &*c)), &upsert.params)
            .execute(&mut *c)
            .await
            .map(drop))?;
    }
    events::append(conn, &events).await?;
    Ok(recorded)
}

/// Whether `contact` wrote to `sender` before its message `inbound`.
pub async fn wrote_before(
    conn: Conn<'_>,
    sender: SenderId,
    contact: ContactId,
    inbound: MessageId,
) -> Result<bool> {
    on_conn!(conn, c => Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM messages
                        WHERE contact_id = $1 AND sender_id = $2 AND direction = 'inbound'
                              AND id < $3)",
    )
    .bind(contact)
    .bind(sender)
    .bind(inbound)
    .fetch_one(&mut *c)
    .await?))
}

/// Skips every outbound message still waiting for `contact` (its campaigns' and single ones),
/// with `reason` as their error, moving their campaigns' counters. Messages already claimed are
/// in flight and end as their send does.
pub async fn skip_pending_to(
    mut conn: Conn<'_>,
    contact: ContactId,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<usize> {
    let waiting: Vec<MessageId> = on_conn!(conn.reborrow(), c => sqlx::query_scalar(
        "SELECT id FROM messages
         WHERE contact_id = $1 AND direction = 'outbound' AND status = 'pending'",
    )
    .bind(contact)
    .fetch_all(&mut *c)
    .await?);
    let changes: Vec<Change> = waiting
        .iter()
        .map(|id| Change {
            id: *id,
            event: Event::Skipped,
            details: Details::error(reason),
        })
        .collect();
    apply_changes(conn, &changes, now).await?;
    Ok(waiting.len())
}

/// Up to `limit` of a campaign's messages with `status`, in id order after `after`: an export
/// walks each status's range of `messages_campaign_status` in pages of this.
pub async fn campaign_page_after(
    conn: Conn<'_>,
    campaign: CampaignId,
    status: MessageStatus,
    after: Option<MessageId>,
    limit: i64,
) -> Result<Vec<Message>> {
    let mut query = SqlBuilder::new(concat!(
        "SELECT ",
        columns!(),
        " FROM messages WHERE campaign_id = "
    ));
    query.bind(Param::Id(campaign.0));
    query.push(&format!(" AND status = '{}'", status.as_str()));
    if let Some(after) = after {
        query.push(" AND id > ").bind(Param::Id(after.0));
    }
    query.push(" ORDER BY id LIMIT ").bind(Param::Int(limit));
    on_conn!(conn, c => Ok(bind_params!(sqlx::query_as(super::sql::built(&query, &*c)), &query.params)
        .fetch_all(&mut *c)
        .await?))
}
