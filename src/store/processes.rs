//! The engine processes sharing the database (`engine_processes`): each says it is alive every
//! tick, so that each can tell how many share the senders with work.

use chrono::{DateTime, Utc};

use super::{Conn, Result, on_conn};

/// Says `owner` is alive at `now`, and returns how many processes were alive since `since`
/// (itself included).
pub async fn alive(
    conn: Conn<'_>,
    owner: &str,
    now: DateTime<Utc>,
    since: DateTime<Utc>,
) -> Result<u32> {
    let mut conn = conn;
    on_conn!(conn.reborrow(), c => sqlx::query(
        "INSERT INTO engine_processes (owner, started_at, seen_at) VALUES ($1, $2, $2)
         ON CONFLICT (owner) DO UPDATE SET seen_at = excluded.seen_at",
    )
    .bind(owner)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(drop))?;
    // Itself included even if its clock is behind the others'.
    Ok(live(conn, since).await?.max(1))
}

/// How many processes said they were alive since `since`.
pub async fn live(conn: Conn<'_>, since: DateTime<Utc>) -> Result<u32> {
    let live: i64 = on_conn!(conn, c => sqlx::query_scalar(
        "SELECT COUNT(*) FROM engine_processes WHERE seen_at > $1",
    )
    .bind(since)
    .fetch_one(&mut *c)
    .await?);
    Ok(u32::try_from(live).unwrap_or(u32::MAX))
}

/// `owner` stops: the others count one process fewer from their next tick.
pub async fn leave(conn: Conn<'_>, owner: &str) -> Result<()> {
    on_conn!(conn, c => sqlx::query("DELETE FROM engine_processes WHERE owner = $1")
        .bind(owner)
        .execute(&mut *c)
        .await
        .map(drop))?;
    Ok(())
}

/// Forgets processes not seen since `before` (they died without leaving).
pub async fn forget_gone(conn: Conn<'_>, before: DateTime<Utc>) -> Result<u64> {
    on_conn!(conn, c => Ok(sqlx::query("DELETE FROM engine_processes WHERE seen_at < $1")
        .bind(before)
        .execute(&mut *c)
        .await?
        .rows_affected()))
}

/// PostgreSQL's connections against what the processes sharing it may open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionBudget {
    /// The server's `max_connections`…
    pub server_max: u32,
    /// …less these, kept for superusers.
    pub reserved: u32,
    /// Client connections open now.
    pub open: u32,
    /// The processes that share the database, counting the one starting.
    pub processes: u32,
    /// The most connections each opens (its pool's size).
    pub per_process: u32,
}

impl ConnectionBudget {
    /// Connections the processes may open, at most.
    pub fn needed(&self) -> u32 {
        self.processes.saturating_mul(self.per_process)
    }

    /// Connections the server accepts from processes that are not superusers.
    pub fn available(&self) -> u32 {
        self.server_max.saturating_sub(self.reserved)
    }

    pub fn fits(&self) -> bool {
        self.needed() <= self.available()
    }
}

/// The connection budget of a process about to join the live ones (seen since `since`) with a
/// pool of `per_process` connections; `None` on SQLite, which has no server.
pub async fn connection_budget(
    conn: Conn<'_>,
    per_process: u32,
    since: DateTime<Utc>,
) -> Result<Option<ConnectionBudget>> {
    let Conn::Postgres(c) = conn else {
        return Ok(None);
    };
    let (server_max, reserved, open, others): (i32, i32, i64, i64) = sqlx::query_as(
        "SELECT current_setting('max_connections')::int,
                current_setting('superuser_reserved_connections')::int,
                (SELECT COUNT(*) FROM pg_stat_activity WHERE backend_type = 'client backend'),
                (SELECT COUNT(*) FROM engine_processes WHERE seen_at > $1)",
    )
    .bind(since)
    .fetch_one(&mut *c)
    .await?;
    let count = |n: i64| u32::try_from(n).unwrap_or(u32::MAX);
    Ok(Some(ConnectionBudget {
        server_max: u32::try_from(server_max).unwrap_or(0),
        reserved: u32::try_from(reserved).unwrap_or(0),
        open: count(open),
        processes: count(others).saturating_add(1),
        per_process,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_fits_when_every_process_can_open_its_whole_pool() {
        let budget = ConnectionBudget {
            server_max: 100,
            reserved: 3,
            open: 12,
            processes: 9,
            per_process: 10,
        };
        assert_eq!((budget.needed(), budget.available()), (90, 97));
        assert!(budget.fits());
        let one_more = ConnectionBudget {
            processes: 10,
            ..budget
        };
        assert!(!one_more.fits(), "100 connections where 97 are allowed");
    }
}
