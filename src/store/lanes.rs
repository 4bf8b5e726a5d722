//! Sender lanes' leases: at any moment one lane, in one process, owns a sender.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgListener;

use super::{Conn, Db, Result, on_conn};
use crate::domain::ids::{ContactId, SenderId};

/// The PostgreSQL channel on which processes tell each other that a sender has work now.
const WORK_CHANNEL: &str = "herald_sender_work";

/// Tells every process on the database that `sender` has work that should not wait for their
/// next look at the queue (an automatic reply), wherever its lane runs: PostgreSQL delivers it
/// when the transaction commits, and not at all if it rolls back. Nothing on SQLite, which one
/// process serves (it wakes its own lanes).
pub async fn announce_work(conn: Conn<'_>, sender: SenderId) -> Result<()> {
    super::notify(conn, WORK_CHANNEL, sender.to_string()).await
}

/// This process's hearing of what other processes tell it: [`announce_work`] and withdrawn
/// consent ([`super::withdrawals::tell_other_processes`]), on a connection of its own.
pub struct Listener(PgListener);

/// What another process (or this one) told.
#[derive(Debug, PartialEq, Eq)]
pub enum Heard {
    /// `sender` has work that should not wait for the next look at the queue.
    Work(SenderId),
    /// This contact may have withdrawn its consent.
    Withdrawn(ContactId),
}

/// Listens to what any process tells; `None` on SQLite, which one process serves.
pub async fn listen(db: &Db) -> Result<Option<Listener>> {
    let Db::Postgres(pool) = db else {
        return Ok(None);
    };
    let mut listener = PgListener::connect_with(pool).await?;
    listener
        .listen_all([WORK_CHANNEL, super::withdrawals::CHANNEL])
        .await?;
    Ok(Some(Listener(listener)))
}

impl Listener {
    /// The next thing told; `None` for a payload that names nothing. A lost connection is
    /// opened again and listens again (work announced meanwhile is found by the next look at
    /// the queue, a withdrawal by the check of each batch claimed ahead); an error is one that
    /// could not, or the pool closing.
    pub async fn next(&mut self) -> Result<Option<Heard>> {
        let notification = self.0.recv().await?;
        let payload = notification.payload();
        Ok(match notification.channel() {
            WORK_CHANNEL => payload.parse().ok().map(Heard::Work),
            super::withdrawals::CHANNEL => payload.parse().ok().map(Heard::Withdrawn),
            _ => None,
        })
    }
}

/// Takes the lease of `sender` for `owner` until `until`, if it is free, expired, or already
/// `owner`'s. Returns the sender's last send time when the lease was taken, `None` otherwise.
pub async fn acquire(
    conn: Conn<'_>,
    sender: SenderId,
    owner: &str,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Option<Option<DateTime<Utc>>>> {
    on_conn!(conn, c => Ok(sqlx::query_scalar(
        "INSERT INTO sender_lanes (sender_id, owner, lease_expires_at) VALUES ($1, $2, $4)
         ON CONFLICT (sender_id) DO UPDATE SET owner = excluded.owner, lease_expires_at = excluded.lease_expires_at
         WHERE sender_lanes.lease_expires_at <= $3 OR sender_lanes.owner = excluded.owner
         RETURNING last_send_at",
    )
    .bind(sender)
    .bind(owner)
    .bind(now)
    .bind(until)
    .fetch_optional(&mut *c)
    .await?))
}

/// Extends `owner`'s lease; `false` when the lease is no longer `owner`'s.
pub async fn renew(
    conn: Conn<'_>,
    sender: SenderId,
    owner: &str,
    until: DateTime<Utc>,
) -> Result<bool> {
    let renewed = on_conn!(conn, c => sqlx::query(
        "UPDATE sender_lanes SET lease_expires_at = $3 WHERE sender_id = $1 AND owner = $2",
    )
    .bind(sender)
    .bind(owner)
    .bind(until)
    .execute(&mut *c)
    .await?
    .rows_affected());
    Ok(renewed == 1)
}

/// Gives the lease up at once, so another process can take the sender without waiting.
pub async fn release(
    conn: Conn<'_>,
    sender: SenderId,
    owner: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    on_conn!(conn, c => sqlx::query(
        "UPDATE sender_lanes SET lease_expires_at = $3 WHERE sender_id = $1 AND owner = $2",
    )
    .bind(sender)
    .bind(owner)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(drop))?;
    Ok(())
}

/// Records when `owner`'s lane last started a send; `false` when the lease is no longer
/// `owner`'s (the sends happened all the same, and the caller must stop).
pub async fn record_send(
    conn: Conn<'_>,
    sender: SenderId,
    owner: &str,
    at: DateTime<Utc>,
) -> Result<bool> {
    let recorded = on_conn!(conn, c => sqlx::query(
        "UPDATE sender_lanes SET last_send_at = $3 WHERE sender_id = $1 AND owner = $2",
    )
    .bind(sender)
    .bind(owner)
    .bind(at)
    .execute(&mut *c)
    .await?
    .rows_affected());
    Ok(recorded == 1)
}

/// Whether `owner` holds an unexpired lease of `sender`: the fence a claim passes in its own
/// transaction. On PostgreSQL the lease row is share-locked, so a takeover waits for the claim
/// to commit and a claim after the takeover sees it; SQLite's single writer gives that order.
pub async fn holds(
    conn: Conn<'_>,
    sender: SenderId,
    owner: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    let lock = match conn.dialect() {
        super::Dialect::Sqlite => "",
        super::Dialect::Postgres => " FOR SHARE",
    };
    let sql = format!(
        "SELECT COUNT(*) FROM (SELECT sender_id FROM sender_lanes
         WHERE sender_id = $1 AND owner = $2 AND lease_expires_at > $3{lock}) held"
    );
    let held: i64 = on_conn!(conn, c => sqlx::query_scalar(super::sql::trusted(&sql))
        .bind(sender)
        .bind(owner)
        .bind(now)
        .fetch_one(&mut *c)
        .await?);
    Ok(held > 0)
}

/// Senders with something to send: a running campaign with messages left, or a single message
/// that is due.
pub async fn senders_with_work(conn: Conn<'_>, now: DateTime<Utc>) -> Result<Vec<SenderId>> {
    on_conn!(conn, c => Ok(sqlx::query_scalar(
        "SELECT sender_id FROM campaigns WHERE status = 'running' AND pending_count > 0
         UNION
         SELECT sender_id FROM messages WHERE campaign_id IS NULL AND status = 'pending' AND not_before <= $1",
    )
    .bind(now)
    .fetch_all(&mut *c)
    .await?))
}

/// The lanes held at `now`, by owner: how many senders each process is sending for.
pub async fn holders(conn: Conn<'_>, now: DateTime<Utc>) -> Result<Vec<(String, i64)>> {
    on_conn!(conn, c => Ok(sqlx::query_as(
        "SELECT owner, COUNT(*) FROM sender_lanes WHERE lease_expires_at > $1 GROUP BY owner",
    )
    .bind(now)
    .fetch_all(&mut *c)
    .await?))
}
