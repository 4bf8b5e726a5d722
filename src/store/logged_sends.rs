//! Sends that happened, durable before they are applied to `messages` (migration 0025).
//!
//! A lane must make each send durable within milliseconds of its answer, so that a `kill -9`
//! repeats at most the sends in flight (invariant 1). Recording a send in full rewrites its
//! message, that row's index entries, its event, its campaign's counters and the rollups; done
//! for every 64 sends, each commit writes nearly the pages that one for 1,024 did. A log row per
//! send is one small append, so the lane logs each group of completed sends as it arrives and
//! applies them to `messages` in bulk ([`LoggedGroup`]s, in one transaction that also deletes
//! their rows). Whatever a dead lane logged and did not apply is recorded by
//! [`record_expired`] before its claims are requeued, never sent again.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::messages::{Outcome, record_outcomes};
use super::sql::{Param, SqlBuilder, bind_params, rows_per_statement};
use super::{Conn, Result, Tx, on_conn};
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
pub async fn log(conn: Conn<'_>, group: &LoggedGroup) -> Result<()> {
    if group.sends.is_empty() {
        return Ok(());
    }
    match conn {
        Conn::Postgres(c) => {
            let ids: Vec<uuid::Uuid> = group.sends.iter().map(|(id, _)| id.0).collect();
            let provider_ids: Vec<Option<&str>> = group
                .sends
                .iter()
                .map(|(_, provider_id)| provider_id.as_deref())
                .collect();
            sqlx::query(
                "INSERT INTO logged_sends (message_id, provider_message_id, sent_at)
                 SELECT id, provider_id, $3 FROM unnest($1::uuid[], $2::text[]) AS s (id, provider_id)
                 ON CONFLICT DO NOTHING",
            )
            .bind(ids)
            .bind(provider_ids)
            .bind(group.at)
            .execute(&mut *c)
            .await?;
        }
        Conn::Sqlite(c) => {
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
                         INSERT INTO logged_sends (message_id, provider_message_id, sent_at)
                         SELECT id, provider_id, ",
                    )
                    .bind(Param::Time(group.at))
                    .push(" FROM s WHERE true ON CONFLICT DO NOTHING");
                bind_params!(sqlx::query(super::sql::built(&insert, &*c)), &insert.params)
                    .execute(&mut *c)
                    .await?;
            }
        }
    }
    Ok(())
}

/// Records logged sends on their messages, each group at the time it was logged, and deletes
/// their rows, in the caller's transaction: a send is logged or recorded, never neither. Sends
/// whose message moved on meanwhile are taken as [`record_outcomes`] takes any send. (All the
/// groups in one statement, at the latest group's time, measured 3× slower on SQLite.)
pub async fn apply(tx: &mut Tx, groups: &[LoggedGroup]) -> Result<()> {
    for group in groups {
        let outcomes: Vec<(MessageId, Outcome)> = group
            .sends
            .iter()
            .map(|(id, provider_message_id)| {
                let sent = Outcome::Sent {
                    provider_message_id: provider_message_id.clone(),
                };
                (*id, sent)
            })
            .collect();
        record_outcomes(tx, &outcomes, group.at).await?;
    }
    let ids: Vec<MessageId> = groups
        .iter()
        .flat_map(|group| group.sends.iter().map(|(id, _)| *id))
        .collect();
    forget(tx.conn(), &ids).await
}

async fn forget(conn: Conn<'_>, ids: &[MessageId]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    match conn {
        Conn::Postgres(c) => {
            let ids: Vec<uuid::Uuid> = ids.iter().map(|id| id.0).collect();
            sqlx::query("DELETE FROM logged_sends WHERE message_id = ANY($1::uuid[])")
                .bind(ids)
                .execute(&mut *c)
                .await?;
        }
        Conn::Sqlite(c) => {
            for chunk in ids.chunks(rows_per_statement(1)) {
                let mut delete = SqlBuilder::new("DELETE FROM logged_sends WHERE message_id IN ");
                delete.bind_list(chunk.iter().map(|id| Param::Id(id.0)));
                bind_params!(sqlx::query(super::sql::built(&delete, &*c)), &delete.params)
                    .execute(&mut *c)
                    .await?;
            }
        }
    }
    Ok(())
}

/// Records the logged sends of messages whose claims ran out (their lane died after logging
/// them, before applying them), so that the requeue that follows in the same transaction does
/// not send them again. Returns how many.
pub async fn record_expired(tx: &mut Tx, now: DateTime<Utc>) -> Result<usize> {
    let rows: Vec<(MessageId, Option<String>, DateTime<Utc>)> = on_conn!(tx.conn(), c => sqlx::query_as(
        "SELECT l.message_id, l.provider_message_id, l.sent_at
         FROM logged_sends l JOIN messages m ON m.id = l.message_id
         WHERE m.status = 'sending' AND m.lease_expires_at <= $1
         ORDER BY l.message_id",
    )
    .bind(now)
    .fetch_all(&mut *c)
    .await?);
    let count = rows.len();
    let mut by_time: BTreeMap<DateTime<Utc>, Vec<(MessageId, Option<String>)>> = BTreeMap::new();
    for (id, provider_message_id, at) in rows {
        by_time
            .entry(at)
            .or_default()
            .push((id, provider_message_id));
    }
    let groups: Vec<LoggedGroup> = by_time
        .into_iter()
        .map(|(at, sends)| LoggedGroup { at, sends })
        .collect();
    apply(tx, &groups).await?;
    Ok(count)
}

/// Deletes the rows of sends already applied, or whose message moved on or was deleted: left by
/// a lane that logged a send its successor had recorded, then died before applying it. A row
/// whose message is still `sending` is a live lane's, or waits for [`record_expired`].
pub async fn sweep(conn: Conn<'_>) -> Result<u64> {
    on_conn!(conn, c => Ok(sqlx::query(
        "DELETE FROM logged_sends
         WHERE NOT EXISTS (SELECT 1 FROM messages m
                           WHERE m.id = logged_sends.message_id AND m.status = 'sending')",
    )
    .execute(&mut *c)
    .await?
    .rows_affected()))
}
