//! Where a polled provider left off, per sender (`provider_cursors`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::{Conn, Result, on_conn};
use crate::domain::ids::SenderId;

/// Every cursor of `sender`, by name.
pub async fn of_sender(conn: Conn<'_>, sender: SenderId) -> Result<HashMap<String, String>> {
    let rows: Vec<(String, String)> = on_conn!(conn, c => sqlx::query_as(
        "SELECT name, value FROM provider_cursors WHERE sender_id = $1",
    )
    .bind(sender)
    .fetch_all(&mut *c)
    .await?);
    Ok(rows.into_iter().collect())
}

/// Sets each `(name, value)` of `sender`.
pub async fn put(
    conn: Conn<'_>,
    sender: SenderId,
    cursors: &[(String, String)],
    now: DateTime<Utc>,
) -> Result<()> {
    let mut conn = conn;
    for (name, value) in cursors {
        on_conn!(conn.reborrow(), c => sqlx::query(
            "INSERT INTO provider_cursors (sender_id, name, value, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (sender_id, name) DO UPDATE SET value = excluded.value,
                                                         updated_at = excluded.updated_at",
        )
        .bind(sender)
        .bind(name)
        .bind(value)
        .bind(now)
        .execute(&mut *c)
        .await
        .map(drop))?;
    }
    Ok(())
}

/// The senders of `providers` (by name): those the engine polls.
pub async fn polled_senders(conn: Conn<'_>, providers: &[&str]) -> Result<Vec<SenderId>> {
    let mut found = Vec::new();
    let mut conn = conn;
    for provider in providers {
        let ids: Vec<SenderId> = on_conn!(conn.reborrow(), c => sqlx::query_scalar(
            "SELECT id FROM senders WHERE provider = $1",
        )
        .bind(*provider)
        .fetch_all(&mut *c)
        .await?);
        found.extend(ids);
    }
    Ok(found)
}
