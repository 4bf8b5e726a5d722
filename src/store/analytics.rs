//! The rollups of migration 0014, which analytics read instead of `messages`: each answer costs
//! the same whatever the number of messages, bounded by the period's hours.
//!
//! A message's steps are added by the store functions that make them ([`add_steps`], called in
//! their transaction): the send path adds a whole group's sends with one upsert, where a row
//! trigger would pay two per send. Contacts' rollups are kept by triggers (migration 0014).

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use std::collections::BTreeMap;

use super::sql::{Param, SqlBuilder, bind_params, rows_per_statement};
use super::{Conn, Result, on_conn};
use crate::domain::analytics::Quarters;
use crate::domain::campaign::CampaignStatus;
use crate::domain::ids::{CampaignId, SenderId, WorkspaceId};

/// A step of a message, counted in the rollups when its time appears: `sent`, `delivered`,
/// `read` or `failed` of an outbound message, `received` of an inbound one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub workspace: WorkspaceId,
    pub sender: SenderId,
    pub campaign: Option<CampaignId>,
    pub outcome: Outcome,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Sent,
    Delivered,
    Read,
    Failed,
    Received,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::Delivered => "delivered",
            Outcome::Read => "read",
            Outcome::Failed => "failed",
            Outcome::Received => "received",
        }
    }

    fn direction(self) -> &'static str {
        match self {
            Outcome::Received => "inbound",
            _ => "outbound",
        }
    }

    /// Its column of `campaign_timeline`, for outbound steps.
    fn timeline_index(self) -> Option<usize> {
        match self {
            Outcome::Sent => Some(0),
            Outcome::Delivered => Some(1),
            Outcome::Read => Some(2),
            Outcome::Failed => Some(3),
            Outcome::Received => None,
        }
    }
}

/// Adds `steps` to the rollups: summed by bucket first, then one upsert per table (in key
/// order, so that concurrent transactions on PostgreSQL lock shared rows in one order).
pub async fn add_steps(mut conn: Conn<'_>, steps: &[Step]) -> Result<()> {
    if steps.is_empty() {
        return Ok(());
    }
    // A campaign's steps go to its timeline, whose trigger carries them on to the hourly
    // rollups (a group of campaign sends is one statement); other steps (single messages,
    // inbound) to the hourly rollups directly. The levels above follow by triggers.
    let mut hours: BTreeMap<(WorkspaceId, i64, SenderId, Outcome), [i64; 4]> = BTreeMap::new();
    let mut minutes: BTreeMap<(CampaignId, i64), (WorkspaceId, SenderId, [i64; 4])> =
        BTreeMap::new();
    for step in steps {
        let seconds = step.at.timestamp();
        match (step.campaign, step.outcome.timeline_index()) {
            (Some(campaign), Some(index)) => {
                let entry = minutes
                    .entry((campaign, seconds.div_euclid(60)))
                    .or_insert((step.workspace, step.sender, [0; 4]));
                entry.2[index] += 1;
            }
            _ => {
                let quarter = seconds.rem_euclid(3600) as usize / 900;
                let key = (
                    step.workspace,
                    seconds.div_euclid(3600),
                    step.sender,
                    step.outcome,
                );
                hours.entry(key).or_default()[quarter] += 1;
            }
        }
    }
    add_counts(
        conn.reborrow(),
        (
            "campaign_timeline",
            &["campaign_id", "minute"],
            &["workspace_id", "sender_id"],
            &["sent", "delivered", "read", "failed"],
        ),
        minutes
            .into_iter()
            .map(|((campaign, minute), (workspace, sender, counts))| {
                let key = vec![
                    Param::Id(campaign.0),
                    Param::Int(minute),
                    Param::Id(workspace.0),
                    Param::Id(sender.0),
                ];
                (key, counts.to_vec())
            }),
    )
    .await?;
    add_counts(
        conn,
        (
            "message_rollups",
            &["workspace_id", "hour", "sender_id", "direction", "outcome"],
            &[],
            &["q0", "q1", "q2", "q3"],
        ),
        hours
            .into_iter()
            .map(|((workspace, hour, sender, outcome), counts)| {
                let key = vec![
                    Param::Id(workspace.0),
                    Param::Int(hour),
                    Param::Id(sender.0),
                    Param::Text(outcome.direction().to_owned()),
                    Param::Text(outcome.as_str().to_owned()),
                ];
                (key, counts.to_vec())
            }),
    )
    .await
}

/// Adds counts to a rollup table: `rows` of (the key's values then the other columns', counts),
/// each key once, upserted many to a statement. Table and column names are this module's
/// constants.
async fn add_counts(
    mut conn: Conn<'_>,
    (table, keys, others, counts): (&str, &[&str], &[&str], &[&str]),
    rows: impl Iterator<Item = (Vec<Param>, Vec<i64>)>,
) -> Result<()> {
    let rows: Vec<(Vec<Param>, Vec<i64>)> = rows.collect();
    let additions: Vec<String> = counts
        .iter()
        .map(|column| format!("{column} = {table}.{column} + excluded.{column}"))
        .collect();
    let columns: Vec<&str> = keys.iter().chain(others).chain(counts).copied().collect();
    for chunk in rows.chunks(rows_per_statement(columns.len())) {
        let mut upsert = SqlBuilder::new(&format!(
            "INSERT INTO {table} ({}) VALUES ",
            columns.join(", ")
        ));
        for (index, (key, values)) in chunk.iter().enumerate() {
            if index > 0 {
                upsert.push(", ");
            }
            upsert.bind_list(
                key.iter()
                    .cloned()
                    .chain(values.iter().map(|value| Param::Int(*value))),
            );
        }
        upsert.push(&format!(
            " ON CONFLICT ({}) DO UPDATE SET {}",
            keys.join(", "),
            additions.join(", ")
        ));
        on_conn!(conn.reborrow(), c => bind_params!(sqlx::query(super::sql::built(&upsert, &*c)), &upsert.params)
            .execute(&mut *c)
            .await
            .map(drop))?;
    }
    Ok(())
}

/// The steps of one message between two states of its progress: each time that appeared.
pub fn steps_between(
    message: (WorkspaceId, SenderId, Option<CampaignId>),
    before: &crate::domain::message::Progress,
    after: &crate::domain::message::Progress,
) -> impl Iterator<Item = Step> {
    let (workspace, sender, campaign) = message;
    [
        (Outcome::Sent, before.sent_at, after.sent_at),
        (Outcome::Delivered, before.delivered_at, after.delivered_at),
        (Outcome::Read, before.read_at, after.read_at),
        (Outcome::Failed, before.failed_at, after.failed_at),
    ]
    .into_iter()
    .filter_map(move |(outcome, was, is)| match (was, is) {
        (None, Some(at)) => Some(Step {
            workspace,
            sender,
            campaign,
            outcome,
            at,
        }),
        _ => None,
    })
}

/// A count of one outcome of one sender's messages over some quarters.
#[derive(Clone, Debug, PartialEq, Eq, FromRow)]
pub struct SenderCount {
    pub sender_id: SenderId,
    pub outcome: String,
    pub count: i64,
}

/// An hour's four quarter counts of one outcome.
#[derive(Clone, Debug, PartialEq, Eq, FromRow)]
pub struct HourCounts {
    pub hour: i64,
    pub outcome: String,
    pub q0: i64,
    pub q1: i64,
    pub q2: i64,
    pub q3: i64,
}

impl HourCounts {
    /// Each quarter (quarter hours since the epoch) with its count.
    pub fn quarters(&self) -> impl Iterator<Item = (i64, i64)> {
        let first = self.hour * 4;
        [self.q0, self.q1, self.q2, self.q3]
            .into_iter()
            .enumerate()
            .map(move |(index, count)| (first + index as i64, count))
    }
}

/// The quarter columns of `message_rollups` that fall in `[$2, $3)`, summed.
const QUARTERS_IN_RANGE: &str = "CASE WHEN hour * 4 >= $2 AND hour * 4 < $3 THEN q0 ELSE 0 END
     + CASE WHEN hour * 4 + 1 >= $2 AND hour * 4 + 1 < $3 THEN q1 ELSE 0 END
     + CASE WHEN hour * 4 + 2 >= $2 AND hour * 4 + 2 < $3 THEN q2 ELSE 0 END
     + CASE WHEN hour * 4 + 3 >= $2 AND hour * 4 + 3 < $3 THEN q3 ELSE 0 END";

/// Quarters in a UTC day.
const QUARTERS_A_DAY: i64 = 96;

/// Every sender's messages in `quarters`, by outcome (sent, delivered, read, failed, received):
/// the whole UTC days inside from the daily rollups, the partial days at either end (a zone's
/// midnight is rarely UTC's) from the hourly ones, quarter by quarter.
pub async fn sender_counts(
    mut conn: Conn<'_>,
    workspace: WorkspaceId,
    quarters: Quarters,
) -> Result<Vec<SenderCount>> {
    let first_day = (quarters.start + QUARTERS_A_DAY - 1).div_euclid(QUARTERS_A_DAY);
    let end_day = quarters.end.div_euclid(QUARTERS_A_DAY);
    if first_day >= end_day {
        return sender_counts_by_quarter(conn, workspace, quarters).await;
    }
    let mut parts = Vec::new();
    for edge in [
        Quarters {
            start: quarters.start,
            end: first_day * QUARTERS_A_DAY,
        },
        Quarters {
            start: end_day * QUARTERS_A_DAY,
            end: quarters.end,
        },
    ] {
        if edge.start < edge.end {
            parts.extend(sender_counts_by_quarter(conn.reborrow(), workspace, edge).await?);
        }
    }
    let days: Vec<SenderCount> = on_conn!(conn, c => sqlx::query_as(
        "SELECT sender_id, outcome, CAST(SUM(count) AS BIGINT) AS count
         FROM message_rollups_daily
         WHERE workspace_id = $1 AND day >= $2 AND day < $3
         GROUP BY sender_id, outcome",
    )
    .bind(workspace)
    .bind(first_day)
    .bind(end_day)
    .fetch_all(&mut *c)
    .await?);
    parts.extend(days);
    let mut sums: BTreeMap<(SenderId, String), i64> = BTreeMap::new();
    for part in parts {
        *sums.entry((part.sender_id, part.outcome)).or_default() += part.count;
    }
    Ok(sums
        .into_iter()
        .map(|((sender_id, outcome), count)| SenderCount {
            sender_id,
            outcome,
            count,
        })
        .collect())
}

async fn sender_counts_by_quarter(
    conn: Conn<'_>,
    workspace: WorkspaceId,
    quarters: Quarters,
) -> Result<Vec<SenderCount>> {
    let (first_hour, last_hour) = quarters.hours();
    let sql = format!(
        "SELECT sender_id, outcome, CAST(SUM({QUARTERS_IN_RANGE}) AS BIGINT) AS count
         FROM message_rollups
         WHERE workspace_id = $1 AND hour >= $4 AND hour <= $5
         GROUP BY sender_id, outcome"
    );
    on_conn!(conn, c => Ok(sqlx::query_as(super::sql::trusted(&sql))
        .bind(workspace)
        .bind(quarters.start)
        .bind(quarters.end)
        .bind(first_hour)
        .bind(last_hour)
        .fetch_all(&mut *c)
        .await?))
}

/// One UTC hour's sends and inbound messages (outcomes `sent` and `received`), by quarter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActivityHour {
    pub hour: i64,
    pub sent: [i64; 4],
    pub received: [i64; 4],
}

/// hour, then sent_q0..q3, then received_q0..q3: read by position, as a name costs a lookup
/// per column and a 90-day period is 2,160 rows of nine.
type ActivityRow = (i64, i64, i64, i64, i64, i64, i64, i64, i64);

impl From<ActivityRow> for ActivityHour {
    fn from((hour, s0, s1, s2, s3, r0, r1, r2, r3): ActivityRow) -> Self {
        ActivityHour {
            hour,
            sent: [s0, s1, s2, s3],
            received: [r0, r1, r2, r3],
        }
    }
}

/// Sends and inbound messages by UTC hour over `hours` (inclusive), of one sender or all, in
/// order of hour: a row an hour.
pub async fn activity_by_hour(
    conn: Conn<'_>,
    workspace: WorkspaceId,
    (first_hour, last_hour): (i64, i64),
    sender: Option<SenderId>,
) -> Result<Vec<ActivityHour>> {
    let sql = match sender {
        // One sender's: its two outcomes' rollup rows side by side.
        Some(_) => {
            "SELECT hour,
                    CAST(SUM(CASE WHEN outcome = 'sent' THEN q0 ELSE 0 END) AS BIGINT) AS sent_q0,
                    CAST(SUM(CASE WHEN outcome = 'sent' THEN q1 ELSE 0 END) AS BIGINT) AS sent_q1,
                    CAST(SUM(CASE WHEN outcome = 'sent' THEN q2 ELSE 0 END) AS BIGINT) AS sent_q2,
                    CAST(SUM(CASE WHEN outcome = 'sent' THEN q3 ELSE 0 END) AS BIGINT) AS sent_q3,
                    CAST(SUM(CASE WHEN outcome = 'received' THEN q0 ELSE 0 END) AS BIGINT)
                        AS received_q0,
                    CAST(SUM(CASE WHEN outcome = 'received' THEN q1 ELSE 0 END) AS BIGINT)
                        AS received_q1,
                    CAST(SUM(CASE WHEN outcome = 'received' THEN q2 ELSE 0 END) AS BIGINT)
                        AS received_q2,
                    CAST(SUM(CASE WHEN outcome = 'received' THEN q3 ELSE 0 END) AS BIGINT)
                        AS received_q3
             FROM message_rollups
             WHERE workspace_id = $1 AND hour >= $2 AND hour <= $3 AND sender_id = $4
                   AND (outcome = 'sent' OR outcome = 'received')
             GROUP BY hour ORDER BY hour"
        }
        // Every sender's: the workspace's activity rollup, kept in this shape.
        None => {
            "SELECT hour, sent_q0, sent_q1, sent_q2, sent_q3,
                    received_q0, received_q1, received_q2, received_q3
             FROM workspace_activity
             WHERE workspace_id = $1 AND hour >= $2 AND hour <= $3
             ORDER BY hour"
        }
    };
    on_conn!(conn, c => {
        let query = sqlx::query_as(sql)
            .bind(workspace)
            .bind(first_hour)
            .bind(last_hour);
        let query = match sender {
            Some(sender) => query.bind(sender),
            None => query,
        };
        let rows: Vec<ActivityRow> = query.fetch_all(&mut *c).await?;
        Ok(rows.into_iter().map(ActivityHour::from).collect())
    })
}

/// Contacts created and opted out by UTC hour over `hours` (inclusive).
pub async fn contacts_by_hour(
    conn: Conn<'_>,
    workspace: WorkspaceId,
    (first_hour, last_hour): (i64, i64),
) -> Result<Vec<HourCounts>> {
    on_conn!(conn, c => Ok(sqlx::query_as(
        "SELECT hour, outcome, q0, q1, q2, q3 FROM contact_rollups
         WHERE workspace_id = $1 AND hour >= $2 AND hour <= $3
         ORDER BY hour",
    )
    .bind(workspace)
    .bind(first_hour)
    .bind(last_hour)
    .fetch_all(&mut *c)
    .await?))
}

/// A workspace's contacts now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromRow)]
pub struct ContactTotals {
    pub total: i64,
    pub opted_out: i64,
    pub blocked: i64,
}

pub async fn contact_totals(conn: Conn<'_>, workspace: WorkspaceId) -> Result<ContactTotals> {
    let totals: Option<ContactTotals> = on_conn!(conn, c => sqlx::query_as(
        "SELECT total, opted_out, blocked FROM contact_totals WHERE workspace_id = $1",
    )
    .bind(workspace)
    .fetch_optional(&mut *c)
    .await?);
    Ok(totals.unwrap_or_default())
}

/// One bucket of a campaign's timeline.
#[derive(Clone, Debug, PartialEq, Eq, FromRow)]
pub struct TimelineRow {
    /// Minutes since the epoch at the bucket's start.
    pub minute: i64,
    pub sent: i64,
    pub delivered: i64,
    pub read: i64,
    pub failed: i64,
}

/// A campaign's steps by minute or by hour, the non-empty buckets in order.
pub async fn timeline(
    conn: Conn<'_>,
    campaign: CampaignId,
    hourly: bool,
) -> Result<Vec<TimelineRow>> {
    let sql = if hourly {
        "SELECT hour * 60 AS minute, sent, delivered, read, failed FROM campaign_timeline_hourly
         WHERE campaign_id = $1 AND sent + delivered + read + failed > 0 ORDER BY hour"
    } else {
        "SELECT minute, sent, delivered, read, failed FROM campaign_timeline
         WHERE campaign_id = $1 AND sent + delivered + read + failed > 0 ORDER BY minute"
    };
    on_conn!(conn, c => Ok(sqlx::query_as(sql)
        .bind(campaign)
        .fetch_all(&mut *c)
        .await?))
}

/// A campaign as the analyst sees it: its counters and when it ran.
#[derive(Clone, Debug, PartialEq, FromRow)]
pub struct CampaignRow {
    pub id: CampaignId,
    pub name: String,
    pub status: CampaignStatus,
    pub sent_count: i64,
    pub delivered_count: i64,
    pub read_count: i64,
    pub failed_count: i64,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// The most campaigns one answer lists (the summary counts them all).
pub const MAX_CAMPAIGNS: i64 = 1000;

/// Campaigns that started in `[start, end)`, newest first, at most [`MAX_CAMPAIGNS`].
pub async fn campaigns_started(
    conn: Conn<'_>,
    workspace: WorkspaceId,
    (start, end): (DateTime<Utc>, DateTime<Utc>),
) -> Result<Vec<CampaignRow>> {
    on_conn!(conn, c => Ok(sqlx::query_as(
        "SELECT id, name, status, sent_count, delivered_count, read_count, failed_count,
                started_at, completed_at
         FROM campaigns
         WHERE workspace_id = $1 AND started_at >= $2 AND started_at < $3
         ORDER BY started_at DESC, id
         LIMIT $4",
    )
    .bind(workspace)
    .bind(start)
    .bind(end)
    .bind(MAX_CAMPAIGNS)
    .fetch_all(&mut *c)
    .await?))
}

/// Totals of the campaigns that started in `[start, end)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromRow)]
pub struct CampaignTotals {
    pub campaigns: i64,
    pub sent: i64,
    pub delivered: i64,
    pub read: i64,
    pub failed: i64,
}

pub async fn campaign_totals(
    conn: Conn<'_>,
    workspace: WorkspaceId,
    (start, end): (DateTime<Utc>, DateTime<Utc>),
) -> Result<CampaignTotals> {
    on_conn!(conn, c => Ok(sqlx::query_as(
        "SELECT COUNT(*) AS campaigns, CAST(COALESCE(SUM(sent_count), 0) AS BIGINT) AS sent,
                CAST(COALESCE(SUM(delivered_count), 0) AS BIGINT) AS delivered,
                CAST(COALESCE(SUM(read_count), 0) AS BIGINT) AS read,
                CAST(COALESCE(SUM(failed_count), 0) AS BIGINT) AS failed
         FROM campaigns
         WHERE workspace_id = $1 AND started_at >= $2 AND started_at < $3",
    )
    .bind(workspace)
    .bind(start)
    .bind(end)
    .fetch_one(&mut *c)
    .await?))
}

/// Running and scheduled campaigns, and those started since `month_start`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromRow)]
pub struct CampaignCounts {
    pub running: i64,
    pub scheduled: i64,
    pub this_month: i64,
}

pub async fn campaign_counts(
    conn: Conn<'_>,
    workspace: WorkspaceId,
    month_start: DateTime<Utc>,
) -> Result<CampaignCounts> {
    on_conn!(conn, c => Ok(sqlx::query_as(
        "SELECT COUNT(*) FILTER (WHERE status = 'running') AS running,
                COUNT(*) FILTER (WHERE status = 'scheduled') AS scheduled,
                COUNT(*) FILTER (WHERE started_at >= $2) AS this_month
         FROM campaigns WHERE workspace_id = $1",
    )
    .bind(workspace)
    .bind(month_start)
    .fetch_one(&mut *c)
    .await?))
}

/// A workspace's senders, oldest first: (id, name).
pub async fn senders(conn: Conn<'_>, workspace: WorkspaceId) -> Result<Vec<(SenderId, String)>> {
    on_conn!(conn, c => Ok(sqlx::query_as(
        "SELECT id, name FROM senders WHERE workspace_id = $1 ORDER BY created_at, id",
    )
    .bind(workspace)
    .fetch_all(&mut *c)
    .await?))
}

/// Every rollup of a workspace, keyed as stored, zero buckets left out: what the database kept
/// ([`Snapshot::stored`]) can be compared with what its rows say ([`Snapshot::from_rows`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// (hour, sender, direction, outcome) → quarter counts.
    pub messages: std::collections::BTreeMap<(i64, SenderId, String, String), [i64; 4]>,
    /// (day, sender, direction, outcome) → count.
    pub daily: std::collections::BTreeMap<(i64, SenderId, String, String), i64>,
    /// hour → every sender's sends by quarter, then inbound messages by quarter.
    pub activity: std::collections::BTreeMap<i64, [i64; 8]>,
    /// (campaign, minute) → sent, delivered, read, failed.
    pub timeline: std::collections::BTreeMap<(CampaignId, i64), [i64; 4]>,
    /// (campaign, hour) → sent, delivered, read, failed.
    pub timeline_hourly: std::collections::BTreeMap<(CampaignId, i64), [i64; 4]>,
    /// (hour, outcome) → quarter counts.
    pub contacts: std::collections::BTreeMap<(i64, String), [i64; 4]>,
    pub totals: ContactTotals,
}

#[derive(FromRow)]
struct MessageTimes {
    sender_id: SenderId,
    campaign_id: Option<CampaignId>,
    direction: String,
    created_at: DateTime<Utc>,
    sent_at: Option<DateTime<Utc>>,
    delivered_at: Option<DateTime<Utc>>,
    read_at: Option<DateTime<Utc>>,
    failed_at: Option<DateTime<Utc>>,
}

#[derive(FromRow)]
struct ContactTimes {
    created_at: DateTime<Utc>,
    opted_out_at: Option<DateTime<Utc>>,
    blocked: bool,
}

#[derive(FromRow)]
struct MessageRollupRow {
    hour: i64,
    sender_id: SenderId,
    direction: String,
    outcome: String,
    q0: i64,
    q1: i64,
    q2: i64,
    q3: i64,
}

impl Snapshot {
    /// The rollups as the database keeps them.
    pub async fn stored(mut conn: Conn<'_>, workspace: WorkspaceId) -> Result<Snapshot> {
        let (messages, contacts): (Vec<MessageRollupRow>, Vec<HourCounts>) = on_conn!(conn.reborrow(), c => (
            sqlx::query_as(
                "SELECT hour, sender_id, direction, outcome, q0, q1, q2, q3
                 FROM message_rollups WHERE workspace_id = $1",
            )
            .bind(workspace)
            .fetch_all(&mut *c)
            .await?,
            sqlx::query_as(
                "SELECT hour, outcome, q0, q1, q2, q3 FROM contact_rollups
                 WHERE workspace_id = $1",
            )
            .bind(workspace)
            .fetch_all(&mut *c)
            .await?,
        ));
        let campaign_minutes: Vec<(CampaignId, i64, i64, i64, i64, i64)> = on_conn!(conn.reborrow(), c => sqlx::query_as(
                "SELECT t.campaign_id, t.minute, t.sent, t.delivered, t.read, t.failed
                 FROM campaign_timeline t JOIN campaigns c ON c.id = t.campaign_id
                 WHERE c.workspace_id = $1",
            )
            .bind(workspace)
            .fetch_all(&mut *c)
            .await?);
        let daily: Vec<(i64, SenderId, String, String, i64)> = on_conn!(conn.reborrow(), c => sqlx::query_as(
            "SELECT day, sender_id, direction, outcome, count FROM message_rollups_daily
             WHERE workspace_id = $1",
        )
        .bind(workspace)
        .fetch_all(&mut *c)
        .await?);
        let activity: Vec<ActivityRow> = on_conn!(conn.reborrow(), c => sqlx::query_as(
            "SELECT hour, sent_q0, sent_q1, sent_q2, sent_q3,
                    received_q0, received_q1, received_q2, received_q3
             FROM workspace_activity WHERE workspace_id = $1",
        )
        .bind(workspace)
        .fetch_all(&mut *c)
        .await?);
        let campaign_hours: Vec<(CampaignId, i64, i64, i64, i64, i64)> = on_conn!(conn.reborrow(), c => sqlx::query_as(
                "SELECT t.campaign_id, t.hour, t.sent, t.delivered, t.read, t.failed
                 FROM campaign_timeline_hourly t JOIN campaigns c ON c.id = t.campaign_id
                 WHERE c.workspace_id = $1",
            )
            .bind(workspace)
            .fetch_all(&mut *c)
            .await?);
        let mut snapshot = Snapshot {
            totals: contact_totals(conn, workspace).await?,
            ..Snapshot::default()
        };
        for (day, sender, direction, outcome, count) in daily {
            if count != 0 {
                snapshot
                    .daily
                    .insert((day, sender, direction, outcome), count);
            }
        }
        for (hour, s0, s1, s2, s3, r0, r1, r2, r3) in activity {
            let counts = [s0, s1, s2, s3, r0, r1, r2, r3];
            if counts != [0; 8] {
                snapshot.activity.insert(hour, counts);
            }
        }
        for (campaign, hour, sent, delivered, read, failed) in campaign_hours {
            let counts = [sent, delivered, read, failed];
            if counts != [0; 4] {
                snapshot.timeline_hourly.insert((campaign, hour), counts);
            }
        }
        for row in messages {
            let counts = [row.q0, row.q1, row.q2, row.q3];
            if counts != [0; 4] {
                snapshot.messages.insert(
                    (row.hour, row.sender_id, row.direction, row.outcome),
                    counts,
                );
            }
        }
        for (campaign, minute, sent, delivered, read, failed) in campaign_minutes {
            let counts = [sent, delivered, read, failed];
            if counts != [0; 4] {
                snapshot.timeline.insert((campaign, minute), counts);
            }
        }
        for row in contacts {
            let counts = [row.q0, row.q1, row.q2, row.q3];
            if counts != [0; 4] {
                snapshot.contacts.insert((row.hour, row.outcome), counts);
            }
        }
        Ok(snapshot)
    }

    /// The rollups the workspace's messages and contacts call for, counted row by row.
    pub async fn from_rows(mut conn: Conn<'_>, workspace: WorkspaceId) -> Result<Snapshot> {
        let messages: Vec<MessageTimes> = on_conn!(conn.reborrow(), c => sqlx::query_as(
            "SELECT sender_id, campaign_id, direction, created_at, sent_at, delivered_at, read_at,
                    failed_at
             FROM messages WHERE workspace_id = $1",
        )
        .bind(workspace)
        .fetch_all(&mut *c)
        .await?);
        let contacts: Vec<ContactTimes> = on_conn!(conn, c => sqlx::query_as(
            "SELECT created_at, opted_out_at, blocked FROM contacts WHERE workspace_id = $1",
        )
        .bind(workspace)
        .fetch_all(&mut *c)
        .await?);
        let split = |at: DateTime<Utc>| {
            let seconds = at.timestamp();
            (
                seconds.div_euclid(3600),
                seconds.rem_euclid(3600) as usize / 900,
            )
        };
        let mut snapshot = Snapshot::default();
        for message in messages {
            let steps = if message.direction == "inbound" {
                vec![(
                    "received",
                    Some(message.delivered_at.unwrap_or(message.created_at)),
                )]
            } else {
                vec![
                    ("sent", message.sent_at),
                    ("delivered", message.delivered_at),
                    ("read", message.read_at),
                    ("failed", message.failed_at),
                ]
            };
            for (index, (outcome, at)) in steps.into_iter().enumerate() {
                let Some(at) = at else { continue };
                let (hour, quarter) = split(at);
                let key = (
                    hour,
                    message.sender_id,
                    message.direction.clone(),
                    outcome.to_owned(),
                );
                snapshot.messages.entry(key).or_default()[quarter] += 1;
                *snapshot
                    .daily
                    .entry((
                        at.timestamp().div_euclid(86_400),
                        message.sender_id,
                        message.direction.clone(),
                        outcome.to_owned(),
                    ))
                    .or_default() += 1;
                let activity_slot = match outcome {
                    "sent" => Some(quarter),
                    "received" => Some(4 + quarter),
                    _ => None,
                };
                if let Some(slot) = activity_slot {
                    snapshot.activity.entry(hour).or_insert([0; 8])[slot] += 1;
                }
                if let (Some(campaign), "outbound") =
                    (message.campaign_id, message.direction.as_str())
                {
                    let minute = at.timestamp().div_euclid(60);
                    snapshot.timeline.entry((campaign, minute)).or_default()[index] += 1;
                    snapshot
                        .timeline_hourly
                        .entry((campaign, hour))
                        .or_default()[index] += 1;
                }
            }
        }
        for contact in contacts {
            snapshot.totals.total += 1;
            snapshot.totals.opted_out += contact.opted_out_at.is_some() as i64;
            snapshot.totals.blocked += contact.blocked as i64;
            for (outcome, at) in [
                ("created", Some(contact.created_at)),
                ("opted_out", contact.opted_out_at),
            ] {
                let Some(at) = at else { continue };
                let (hour, quarter) = split(at);
                snapshot
                    .contacts
                    .entry((hour, outcome.to_owned()))
                    .or_default()[quarter] += 1;
            }
        }
        Ok(snapshot)
    }
}

/// Messages waiting to be sent or in flight, in every workspace: campaigns' pending counters
/// plus single messages still queued (an index of them alone).
pub async fn queue_depth(conn: Conn<'_>) -> Result<i64> {
    on_conn!(conn, c => Ok(sqlx::query_scalar(
        "SELECT CAST(COALESCE((SELECT SUM(pending_count) FROM campaigns
                               WHERE status = 'running' OR status = 'paused'), 0)
                     + (SELECT COUNT(*) FROM messages
                        WHERE campaign_id IS NULL AND status = 'pending') AS BIGINT)",
    )
    .fetch_one(&mut *c)
    .await?))
}

/// A message as it ended, written whole: the history `herald bench --analytics` measures
/// analytics over (months of sends cannot be replayed through the engine in a benchmark).
#[derive(Clone, Debug)]
pub struct PastMessage {
    pub workspace: WorkspaceId,
    pub sender: SenderId,
    pub campaign: Option<CampaignId>,
    pub contact: Option<crate::domain::ids::ContactId>,
    pub phone: String,
    /// Inbound: received at `created_at`.
    pub inbound: bool,
    pub created_at: DateTime<Utc>,
    pub progress: crate::domain::message::Progress,
}

/// Writes past messages and their rollups, as the send path would have left them.
pub async fn insert_past(mut conn: Conn<'_>, messages: &[PastMessage]) -> Result<()> {
    use crate::domain::message::Progress;
    let mut steps = Vec::with_capacity(messages.len() * 2);
    for chunk in messages.chunks(rows_per_statement(16)) {
        let mut insert = SqlBuilder::new(
            "INSERT INTO messages (id, workspace_id, campaign_id, sender_id, contact_id, direction,
                                   phone, status, attempts, not_before, created_at, updated_at,
                                   sent_at, delivered_at, read_at, failed_at) VALUES ",
        );
        for (index, message) in chunk.iter().enumerate() {
            if index > 0 {
                insert.push(", ");
            }
            let progress = message.progress;
            let updated_at = [
                progress.sent_at,
                progress.delivered_at,
                progress.read_at,
                progress.failed_at,
            ]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(message.created_at);
            insert.bind_list([
                Param::Id(crate::domain::ids::MessageId::generate().0),
                Param::Id(message.workspace.0),
                Param::OptId(message.campaign.map(|id| id.0)),
                Param::Id(message.sender.0),
                Param::OptId(message.contact.map(|id| id.0)),
                Param::Text(
                    if message.inbound {
                        "inbound"
                    } else {
                        "outbound"
                    }
                    .to_owned(),
                ),
                Param::Text(message.phone.clone()),
                Param::Text(progress.status.as_str().to_owned()),
                Param::Int(1),
                Param::Time(message.created_at),
                Param::Time(message.created_at),
                Param::Time(updated_at),
                Param::OptTime(progress.sent_at),
                Param::OptTime(progress.delivered_at),
                Param::OptTime(progress.read_at),
                Param::OptTime(progress.failed_at),
            ]);
            let owner = (message.workspace, message.sender, message.campaign);
            if message.inbound {
                steps.push(Step {
                    workspace: message.workspace,
                    sender: message.sender,
                    campaign: None,
                    outcome: Outcome::Received,
                    at: message.created_at,
                });
            } else {
                steps.extend(steps_between(owner, &Progress::pending(), &progress));
            }
        }
        on_conn!(conn.reborrow(), c => bind_params!(sqlx::query(super::sql::built(&insert, &*c)), &insert.params)
            .execute(&mut *c)
            .await
            .map(drop))?;
    }
    add_steps(conn, &steps).await
}

/// A campaign that ran from `started_at` to `completed_at` with these counters (the benchmark's
/// history; its messages are written by [`insert_past`]).
pub async fn insert_past_campaign(
    conn: Conn<'_>,
    workspace: WorkspaceId,
    sender: SenderId,
    name: &str,
    (started_at, completed_at): (DateTime<Utc>, DateTime<Utc>),
    counters: crate::domain::message::Counters,
) -> Result<CampaignId> {
    let id = CampaignId::generate();
    on_conn!(conn, c => sqlx::query(
        "INSERT INTO campaigns (id, workspace_id, name, sender_id, content, audience, status,
                                started_at, completed_at, total_count, pending_count, sent_count,
                                delivered_count, read_count, failed_count, skipped_count,
                                created_at, updated_at)
         VALUES ($1, $2, $3, $4, 'Hello <<name>>', '{\"type\":\"all\"}', 'completed', $5, $6, $7,
                 0, $8, $9, $10, $11, $12, $5, $6)",
    )
    .bind(id)
    .bind(workspace)
    .bind(name)
    .bind(sender)
    .bind(started_at)
    .bind(completed_at)
    .bind(counters.total)
    .bind(counters.sent)
    .bind(counters.delivered)
    .bind(counters.read)
    .bind(counters.failed)
    .bind(counters.skipped)
    .execute(&mut *c)
    .await
    .map(drop))?;
    Ok(id)
}

/// Lets go of the pages a bulk read (an export) brought into this connection's cache: they are
/// of no use to the next query, and a million rows' worth would otherwise stay in memory. SQLite
/// only; PostgreSQL's shared buffers already give a bulk read a ring of its own.
pub async fn forget_cached_pages(conn: Conn<'_>) -> Result<()> {
    if let Conn::Sqlite(c) = conn {
        sqlx::query("PRAGMA shrink_memory").execute(&mut *c).await?;
    }
    Ok(())
}
