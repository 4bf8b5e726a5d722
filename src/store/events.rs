//! The event log's table: appended in the transaction of the change it describes, read in order
//! of position by consumers that record how far they have read, pruned behind all of them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::value::RawValue;
use sqlx::FromRow;
use uuid::Uuid;

use super::sql::{Param, SqlBuilder, bind_params, rows_per_statement};
use super::{Conn, Dialect, Result, StoreError, on_conn};
use crate::domain::event::{EventType, MessageEvent};
use crate::domain::ids::{CampaignId, ContactId, MessageId, SenderId, WorkspaceId};

/// An event to append.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub workspace: WorkspaceId,
    pub kind: EventType,
    /// The message, campaign, contact or import it is about.
    pub subject: Uuid,
    pub payload: Box<RawValue>,
    pub at: DateTime<Utc>,
}

impl NewEvent {
    pub fn new(
        workspace: WorkspaceId,
        kind: EventType,
        subject: impl Into<Uuid>,
        data: &impl Serialize,
        at: DateTime<Utc>,
    ) -> Result<Self> {
        let payload = serde_json::value::to_raw_value(data)
            .map_err(|error| StoreError::Corrupt(format!("an event payload: {error}")))?;
        Ok(Self {
            workspace,
            kind,
            subject: subject.into(),
            payload,
            at,
        })
    }
}

/// Appends `events` in order, a few hundred per statement.
pub async fn append(mut conn: Conn<'_>, events: &[NewEvent]) -> Result<()> {
    for chunk in events.chunks(rows_per_statement(5)) {
        let mut insert = SqlBuilder::new(
            "INSERT INTO events (workspace_id, type, subject_id, payload, occurred_at) VALUES ",
        );
        for (index, event) in chunk.iter().enumerate() {
            if index > 0 {
                insert.push(", ");
            }
            insert.bind_list([
                Param::Id(event.workspace.0),
                Param::Text(event.kind.as_str().to_owned()),
                Param::Id(event.subject),
                Param::RawJson(event.payload.clone()),
                Param::Time(event.at),
            ]);
        }
        on_conn!(conn.reborrow(), c => bind_params!(sqlx::query(super::sql::built(&insert, &*c)), &insert.params)
            .execute(&mut *c)
            .await
            .map(drop))?;
    }
    Ok(())
}

/// One event as the log holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    /// Its place in the log: later events have higher positions. Also its id.
    pub position: i64,
    pub workspace: WorkspaceId,
    pub kind: EventType,
    pub subject: Uuid,
    pub payload: serde_json::Value,
    pub occurred_at: DateTime<Utc>,
}

/// An event as read, with its message's row where the database told the event (no payload),
/// and the snapshot of the read (PostgreSQL). Every column is optional: PostgreSQL's read of an
/// empty log still returns one row, for its snapshot.
#[derive(FromRow)]
struct EventRow {
    xmin: Option<String>,
    xmax: Option<String>,
    position: Option<i64>,
    workspace_id: Option<WorkspaceId>,
    #[sqlx(rename = "type")]
    kind: Option<String>,
    subject_id: Option<Uuid>,
    payload: Option<sqlx::types::Json<serde_json::Value>>,
    occurred_at: Option<DateTime<Utc>>,
    message_campaign_id: Option<CampaignId>,
    message_contact_id: Option<ContactId>,
    message_sender_id: Option<SenderId>,
    message_to: Option<String>,
    message_error: Option<String>,
}

impl EventRow {
    fn snapshot(&self) -> Result<Option<Snapshot>> {
        let parse = |text: &str| {
            text.parse::<u64>()
                .map_err(|_| StoreError::Corrupt(format!("a snapshot bound '{text}'")))
        };
        match (&self.xmin, &self.xmax) {
            (Some(xmin), Some(xmax)) => Ok(Some(Snapshot {
                xmin: parse(xmin)?,
                xmax: parse(xmax)?,
            })),
            _ => Ok(None),
        }
    }

    fn event(self) -> Result<Option<StoredEvent>> {
        let (Some(position), Some(workspace), Some(kind), Some(subject), Some(occurred_at)) = (
            self.position,
            self.workspace_id,
            self.kind,
            self.subject_id,
            self.occurred_at,
        ) else {
            return Ok(None);
        };
        let kind: EventType = kind
            .parse()
            .map_err(|error| StoreError::Corrupt(format!("event {position}: {error}")))?;
        let payload = match self.payload {
            Some(payload) => payload.0,
            None => {
                let status = kind.message_status().ok_or_else(|| {
                    StoreError::Corrupt(format!("event {position} ({kind}) has no payload"))
                })?;
                let data = MessageEvent {
                    message_id: MessageId(subject),
                    campaign_id: self.message_campaign_id,
                    contact_id: self.message_contact_id,
                    // A message deleted with its campaign still names its subject.
                    sender_id: self.message_sender_id,
                    to: self.message_to,
                    status,
                    error: self.message_error,
                };
                serde_json::to_value(&data)
                    .map_err(|error| StoreError::Corrupt(format!("event {position}: {error}")))?
            }
        };
        Ok(Some(StoredEvent {
            position,
            workspace,
            kind,
            subject,
            payload,
            occurred_at,
        }))
    }
}

/// Which transactions had ended when a read was made (PostgreSQL's `pg_current_snapshot()` of
/// the read itself): every transaction id below `xmin` had ended, none at or above `xmax` had
/// begun to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub xmin: u64,
    pub xmax: u64,
}

const READ_EVENTS: &str = "SELECT e.position, e.workspace_id, e.type, e.subject_id, e.payload,
           e.occurred_at, m.campaign_id AS message_campaign_id,
           m.contact_id AS message_contact_id, m.sender_id AS message_sender_id,
           m.phone AS message_to, m.error AS message_error
    FROM events e LEFT JOIN messages m ON e.payload IS NULL AND m.id = e.subject_id
    WHERE e.position > $1 ORDER BY e.position LIMIT $2";

/// Events after `position`, in order, at most `limit`, and — on PostgreSQL — the snapshot they
/// were read under, which tells a gap that may still fill from one that never will.
pub async fn read_after(
    conn: Conn<'_>,
    position: i64,
    limit: i64,
) -> Result<(Vec<StoredEvent>, Option<Snapshot>)> {
    let rows: Vec<EventRow> = match conn {
        Conn::Sqlite(c) => {
            let sql = format!(
                "SELECT NULL AS xmin, NULL AS xmax, r.* FROM ({READ_EVENTS}) r ORDER BY r.position"
            );
            sqlx::query_as(super::sql::trusted(&sql))
                .bind(position)
                .bind(limit)
                .fetch_all(&mut *c)
                .await?
        }
        Conn::Postgres(c) => {
            // One statement, so that the snapshot is the one its rows were read under; an empty
            // log still answers with the snapshot (the LEFT JOIN keeps one row).
            let sql = format!(
                "SELECT pg_snapshot_xmin(s.snapshot)::text AS xmin,
                        pg_snapshot_xmax(s.snapshot)::text AS xmax, r.*
                 FROM (SELECT pg_current_snapshot() AS snapshot) s
                 LEFT JOIN LATERAL ({READ_EVENTS}) r ON TRUE
                 ORDER BY r.position"
            );
            sqlx::query_as(super::sql::trusted(&sql))
                .bind(position)
                .bind(limit)
                .fetch_all(&mut *c)
                .await?
        }
    };
    let mut snapshot = None;
    let mut events = Vec::with_capacity(rows.len());
    for row in rows {
        snapshot = row.snapshot()?;
        if let Some(event) = row.event()? {
            events.push(event);
        }
    }
    Ok((events, snapshot))
}

/// The highest position handed out so far (0 for an empty log).
pub async fn last_position(conn: Conn<'_>) -> Result<i64> {
    let last: Option<i64> = on_conn!(conn, c => sqlx::query_scalar("SELECT MAX(position) FROM events")
        .fetch_one(&mut *c)
        .await?);
    Ok(last.unwrap_or(0))
}

/// A consumer's recorded position, or `None` for a consumer never registered.
pub async fn consumer_position(conn: Conn<'_>, name: &str) -> Result<Option<i64>> {
    Ok(on_conn!(conn, c => sqlx::query_scalar(
        "SELECT position FROM event_consumers WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(&mut *c)
    .await?))
}

/// Registers `name` at `position` unless it is registered already; returns its position.
pub async fn register_consumer(
    mut conn: Conn<'_>,
    name: &str,
    position: i64,
    now: DateTime<Utc>,
) -> Result<i64> {
    on_conn!(conn.reborrow(), c => sqlx::query(
        "INSERT INTO event_consumers (name, position, updated_at) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(position)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(drop))?;
    consumer_position(conn, name)
        .await?
        .ok_or(StoreError::NotFound)
}

/// Records that `name` has handled everything up to `position`. Never moves a consumer back.
pub async fn save_position(
    conn: Conn<'_>,
    name: &str,
    position: i64,
    now: DateTime<Utc>,
) -> Result<()> {
    on_conn!(conn, c => sqlx::query(
        "UPDATE event_consumers SET position = $2, updated_at = $3
         WHERE name = $1 AND position < $2",
    )
    .bind(name)
    .bind(position)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(drop))?;
    Ok(())
}

/// Deletes events older than `before` that every registered consumer has read, at most
/// `limit` of them (a sweep deletes in slices, never in one long transaction). Returns how many.
/// Events are appended in time order, so the oldest are the first by position: the sweep walks
/// the primary key from its start and needs no index on time, which every append would pay for.
pub async fn prune(conn: Conn<'_>, before: DateTime<Utc>, limit: i64) -> Result<u64> {
    let lock_free = match conn.dialect() {
        Dialect::Sqlite => "",
        Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
    };
    let sql = format!(
        "DELETE FROM events WHERE position IN (
             SELECT position FROM events
             WHERE position <= COALESCE((SELECT MIN(position) FROM event_consumers), position)
             ORDER BY position LIMIT $2{lock_free})
           AND occurred_at < $1"
    );
    Ok(on_conn!(conn, c => sqlx::query(super::sql::trusted(&sql))
        .bind(before)
        .bind(limit)
        .execute(&mut *c)
        .await?
        .rows_affected()))
}

/// Takes or renews the lease on consumer `name` for `owner` until `until`, when it is free, run
/// out, or `owner`'s already: one process at a time reads for a consumer, and another takes
/// over once a dead one's lease has run out. Registers the consumer at `start` if it is new.
pub async fn lease_consumer(
    mut conn: Conn<'_>,
    name: &str,
    owner: &str,
    start: i64,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<bool> {
    register_consumer(conn.reborrow(), name, start, now).await?;
    let taken = on_conn!(conn, c => sqlx::query(
        "UPDATE event_consumers SET lease_owner = $2, lease_until = $4
         WHERE name = $1
           AND (lease_owner IS NULL OR lease_owner = $2 OR lease_until < $3)",
    )
    .bind(name)
    .bind(owner)
    .bind(now)
    .bind(until)
    .execute(&mut *c)
    .await?
    .rows_affected());
    Ok(taken == 1)
}
