//! Sends per sender per local day. Lanes reserve from the day's cap before sending, in the
//! database, so the cap holds across restarts and across processes.

use chrono::NaiveDate;

use super::{Conn, Dialect, Result, Tx, on_conn};
use crate::domain::ids::{SenderId, WorkspaceId};

/// How many sends `sender` has used on its local `day`.
pub async fn sent_on(conn: Conn<'_>, sender: SenderId, day: NaiveDate) -> Result<i64> {
    on_conn!(conn, c => Ok(sqlx::query_scalar(
        "SELECT COALESCE((SELECT sent FROM sender_daily_usage WHERE sender_id = $1 AND day = $2), 0)",
    )
    .bind(sender)
    .bind(day)
    .fetch_one(&mut *c)
    .await?))
}

/// Takes up to `wanted` sends from the day's `cap` (no cap: all of them) and returns how many
/// were granted; never more than what is left.
pub async fn reserve(
    tx: &mut Tx,
    workspace: WorkspaceId,
    sender: SenderId,
    day: NaiveDate,
    wanted: i64,
    cap: Option<i64>,
) -> Result<i64> {
    let lock = match tx.conn().dialect() {
        Dialect::Sqlite => "",
        Dialect::Postgres => " FOR UPDATE",
    };
    let select =
        format!("SELECT sent FROM sender_daily_usage WHERE sender_id = $1 AND day = $2{lock}");
    let used: i64 = on_conn!(tx.conn(), c => {
        sqlx::query(
            "INSERT INTO sender_daily_usage (sender_id, day, workspace_id, sent) VALUES ($1, $2, $3, 0)
             ON CONFLICT (sender_id, day) DO NOTHING",
        )
        .bind(sender)
        .bind(day)
        .bind(workspace)
        .execute(&mut *c)
        .await?;
        sqlx::query_scalar(super::sql::trusted(&select)).bind(sender).bind(day).fetch_one(&mut *c).await?
    });
    let granted = match cap {
        Some(cap) => (cap - used).clamp(0, wanted.max(0)),
        None => wanted.max(0),
    };
    if granted > 0 {
        on_conn!(tx.conn(), c => sqlx::query(
            "UPDATE sender_daily_usage SET sent = sent + $3 WHERE sender_id = $1 AND day = $2",
        )
        .bind(sender)
        .bind(day)
        .bind(granted)
        .execute(&mut *c)
        .await.map(drop))?;
    }
    Ok(granted)
}

/// Gives back reserved sends that did not happen (the batch had fewer messages than reserved).
pub async fn release(conn: Conn<'_>, sender: SenderId, day: NaiveDate, unused: i64) -> Result<()> {
    on_conn!(conn, c => sqlx::query(
        "UPDATE sender_daily_usage SET sent = CASE WHEN sent > $3 THEN sent - $3 ELSE 0 END
         WHERE sender_id = $1 AND day = $2",
    )
    .bind(sender)
    .bind(day)
    .bind(unused.max(0))
    .execute(&mut *c)
    .await.map(drop))?;
    Ok(())
}
