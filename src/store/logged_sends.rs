//! Sends that happened, durable before they are applied to `messages`: SQLite's log of sends.
//!
//! A lane must make each send durable within milliseconds of its answer, so that a `kill -9`
//! repeats at most the sends in flight (invariant 1). Recording a send in full rewrites its
//! message, that row's index entries, its event, its campaign's counters and the rollups; done
//! for every 64 sends, each commit writes nearly the pages that one for 1,024 did. A log row per
//! send is one small append, so the lane logs each group of completed sends as it arrives and
//! applies them to `messages` in bulk ([`LoggedGroup`]s), then [`forget`]s their rows. Whatever
//! a dead lane logged and did not apply is recorded by [`record_expired`] before its claims are
//! requeued, never sent again.
//!
//! The log is a database file of its own (`<database>-sends`, attached as `sends` to the
//! connections that read it, never to the main writer; migration 0026), written through
//! [`Db::log`](super::Db::log): SQLite has one writer per file, and a log commit that waited
//! behind the main file's claims and applies held the lane's sends with it. No transaction writes
//! both files, since SQLite commits each file of a transaction on its own in WAL mode: a send is
//! applied to `messages` first, and its row deleted after, so a crash between the two leaves a
//! row to sweep, never a send unrecorded. PostgreSQL commits concurrently and logs nothing
//! ([`Db::logs_sends`](super::Db::logs_sends)).

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};

use super::messages::record_sends;
use super::sql::{Param, SqlBuilder, bind_params, rows_per_statement};
use super::{Conn, Result, StoreError, Tx};
use crate::domain::ids::MessageId;

/// Sends logged by one commit: what the provider said of each, and when.
#[derive(Clone, Debug, PartialEq)]
pub struct LoggedGroup {
    pub at: DateTime<Utc>,
    /// Each message with its provider's id, when the provider gave one.
    pub sends: Vec<(MessageId, Option<String>)>,
}

/// Logs `group`'s sends. A message logged already keeps its first row: a lane that lost its
/// lease may log a send that its successor also made (one of the repeats invariant 1 allows).
/// One statement outside any transaction: it locks the log's file only.
pub async fn log(conn: Conn<'_>, group: &LoggedGroup) -> Result<()> {
    let Conn::Sqlite(c) = conn else {
        return Err(StoreError::Corrupt(
            "PostgreSQL keeps no log of sends: its lanes record them".into(),
        ));
    };
    for chunk in group.sends.chunks(rows_per_statement(2)) {
        let mut insert = SqlBuilder::new("WITH s (id, provider_id) AS (VALUES ");
        for (index, (id, provider_id)) in chunk.iter().enumerate() {
            if index > 0 {
                insert.push(", ");
            }
            insert.bind_list([Param::Id(id.0), Param::OptText(provider_id.clone())]);
        }
        // `WHERE true`: SQLite's parser would read `ON` as the SELECT's join otherwise.
        insert
            .push(
                ")
                 INSERT INTO sends.logged_sends (message_id, provider_message_id, sent_at)
                 SELECT id, provider_id, ",
            )
            .bind(Param::Time(group.at))
            .push(" FROM s WHERE true ON CONFLICT DO NOTHING");
        bind_params!(sqlx::query(super::sql::built(&insert, &*c)), &insert.params)
            .execute(&mut *c)
            .await?;
    }
    Ok(())
}

/// Records logged sends on their messages, each at the time its group was logged, in the
/// caller's transaction; their rows stay until [`forget`] (after the commit) or the sweep.
/// Sends whose message moved on meanwhile are taken as
/// [`super::messages::record_outcomes`] takes any send, so applying twice changes nothing.
pub async fn apply(tx: &mut Tx, groups: &[LoggedGroup]) -> Result<()> {
    let Some(latest) = groups.iter().map(|group| group.at).max() else {
        return Ok(());
    };
    let sends: Vec<_> = groups
        .iter()
        .flat_map(|group| {
            group
                .sends
                .iter()
                .map(|(id, provider_message_id)| (*id, provider_message_id.clone(), group.at))
        })
        .collect();
    record_sends(tx, sends, latest).await
}

/// Deletes the rows of `groups`, once they are applied.
pub async fn forget(conn: Conn<'_>, groups: &[LoggedGroup]) -> Result<()> {
    let Conn::Sqlite(c) = conn else {
        return Ok(());
    };
    let ids: Vec<MessageId> = groups
        .iter()
        .flat_map(|group| group.sends.iter().map(|(id, _)| *id))
        .collect();
    for chunk in ids.chunks(rows_per_statement(1)) {
        let mut delete = SqlBuilder::new("DELETE FROM sends.logged_sends WHERE message_id IN ");
        delete.bind_list(chunk.iter().map(|id| Param::Id(id.0)));
        bind_params!(sqlx::query(super::sql::built(&delete, &*c)), &delete.params)
            .execute(&mut *c)
            .await?;
    }
    Ok(())
}

/// A logged send: the message, its provider's id, and when it was logged.
pub type LoggedSend = (MessageId, Option<String>, DateTime<Utc>);

/// Every send in the log: a few hundred rows a lane at most, since a lane applies what it logged
/// within a quarter of a second. Empty on PostgreSQL.
pub async fn read(conn: Conn<'_>) -> Result<Vec<LoggedSend>> {
    let Conn::Sqlite(c) = conn else {
        return Ok(Vec::new());
    };
    Ok(sqlx::query_as(
        "SELECT message_id, provider_message_id, sent_at FROM sends.logged_sends ORDER BY message_id",
    )
    .fetch_all(&mut *c)
    .await?)
}

/// Records those of the `logged` sends whose message's claim ran out (their lane died after
/// logging them, before applying them), so that the requeue that follows in the same
/// transaction does not send them again; their rows are swept afterwards. Returns how many.
pub async fn record_expired(
    tx: &mut Tx,
    logged: Vec<LoggedSend>,
    now: DateTime<Utc>,
) -> Result<usize> {
    if logged.is_empty() {
        return Ok(0);
    }
    let Conn::Sqlite(c) = tx.conn() else {
        return Ok(0);
    };
    let expired: HashSet<MessageId> = sqlx::query_scalar(
        "SELECT id FROM messages WHERE status = 'sending' AND lease_expires_at <= $1",
    )
    .bind(now)
    .fetch_all(&mut *c)
    .await?
    .into_iter()
    .collect();
    let mut by_time: BTreeMap<DateTime<Utc>, Vec<(MessageId, Option<String>)>> = BTreeMap::new();
    let mut count = 0;
    for (id, provider_message_id, at) in logged {
        if expired.contains(&id) {
            count += 1;
            by_time
                .entry(at)
                .or_default()
                .push((id, provider_message_id));
        }
    }
    let groups: Vec<LoggedGroup> = by_time
        .into_iter()
        .map(|(at, sends)| LoggedGroup { at, sends })
        .collect();
    apply(tx, &groups).await?;
    Ok(count)
}

/// Deletes the rows of sends already applied, or whose message moved on or was deleted: left
/// between an apply and its [`forget`], by the requeue's [`record_expired`], or by a lane that
/// logged a send its successor had recorded. A row whose message is still `sending` is a live
/// lane's, or waits for [`record_expired`]. Run on [`Db::log`](super::Db::log).
pub async fn sweep(conn: Conn<'_>) -> Result<u64> {
    let Conn::Sqlite(c) = conn else {
        return Ok(0);
    };
    Ok(sqlx::query(
        "DELETE FROM sends.logged_sends
         WHERE NOT EXISTS (SELECT 1 FROM messages m
                           WHERE m.id = logged_sends.message_id AND m.status = 'sending')",
    )
    .execute(&mut *c)
    .await?
    .rows_affected())
}
