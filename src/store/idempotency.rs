//! Idempotency keys: the first response to a key, per API key and path, replayed for 24 hours.

use chrono::{DateTime, Duration, Utc};
use sqlx::FromRow;

use super::{Conn, Result, on_conn};
use crate::domain::ids::ApiKeyId;

/// Which request a key belongs to.
#[derive(Clone, Debug)]
pub struct Scope<'a> {
    pub api_key: ApiKeyId,
    pub path: &'a str,
    pub key: &'a str,
}

/// A finished request's response, as first sent.
#[derive(Clone, Debug, PartialEq, FromRow)]
pub struct StoredResponse {
    pub status: i64,
    pub body: Vec<u8>,
    pub content_type: Option<String>,
}

#[derive(Debug, PartialEq)]
pub enum Claim {
    /// The caller runs the request, then stores its response with [`finish`].
    Started,
    Replay(StoredResponse),
    InProgress,
    /// The key was first used for a different request.
    Reused,
}

#[derive(FromRow)]
struct Row {
    request_fingerprint: String,
    status: Option<i64>,
    body: Option<Vec<u8>>,
    content_type: Option<String>,
}

/// Claims `scope` for a request with `fingerprint`. A key whose response has expired, or whose
/// request has held it past `locked_until` (its process died), is claimed afresh.
pub async fn claim(
    mut conn: Conn<'_>,
    scope: &Scope<'_>,
    fingerprint: &str,
    now: DateTime<Utc>,
    lock_for: Duration,
    keep_for: Duration,
) -> Result<Claim> {
    let inserted = on_conn!(conn.reborrow(), c => sqlx::query(
        "INSERT INTO idempotency_keys (api_key_id, path, key, request_fingerprint, locked_until,
                                       created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (api_key_id, path, key) DO UPDATE SET
             request_fingerprint = excluded.request_fingerprint, status = NULL, body = NULL,
             content_type = NULL, locked_until = excluded.locked_until,
             created_at = excluded.created_at, expires_at = excluded.expires_at
         WHERE idempotency_keys.expires_at <= $6
            OR (idempotency_keys.status IS NULL AND idempotency_keys.locked_until <= $6)",
    )
    .bind(scope.api_key)
    .bind(scope.path)
    .bind(scope.key)
    .bind(fingerprint)
    .bind(now + lock_for)
    .bind(now)
    .bind(now + keep_for)
    .execute(&mut *c)
    .await?
    .rows_affected());
    if inserted == 1 {
        return Ok(Claim::Started);
    }
    let row: Option<Row> = on_conn!(conn, c => sqlx::query_as(
        "SELECT request_fingerprint, status, body, content_type FROM idempotency_keys
         WHERE api_key_id = $1 AND path = $2 AND key = $3",
    )
    .bind(scope.api_key)
    .bind(scope.path)
    .bind(scope.key)
    .fetch_optional(&mut *c)
    .await?);
    Ok(match row {
        // Deleted between the two statements: its request failed; the client may retry.
        None => Claim::InProgress,
        Some(row) if row.request_fingerprint != fingerprint => Claim::Reused,
        Some(Row {
            status: Some(status),
            body,
            content_type,
            ..
        }) => Claim::Replay(StoredResponse {
            status,
            body: body.unwrap_or_default(),
            content_type,
        }),
        Some(_) => Claim::InProgress,
    })
}

/// Stores the response of a request that [`claim`] started.
pub async fn finish(conn: Conn<'_>, scope: &Scope<'_>, response: &StoredResponse) -> Result<()> {
    on_conn!(conn, c => sqlx::query(
        "UPDATE idempotency_keys SET status = $4, body = $5, content_type = $6
         WHERE api_key_id = $1 AND path = $2 AND key = $3",
    )
    .bind(scope.api_key)
    .bind(scope.path)
    .bind(scope.key)
    .bind(response.status)
    .bind(&response.body)
    .bind(response.content_type.as_deref())
    .execute(&mut *c)
    .await
    .map(drop))?;
    Ok(())
}

/// Forgets a key whose request failed on the server's side, so that a retry runs again.
pub async fn release(conn: Conn<'_>, scope: &Scope<'_>) -> Result<()> {
    on_conn!(conn, c => sqlx::query(
        "DELETE FROM idempotency_keys WHERE api_key_id = $1 AND path = $2 AND key = $3",
    )
    .bind(scope.api_key)
    .bind(scope.path)
    .bind(scope.key)
    .execute(&mut *c)
    .await
    .map(drop))?;
    Ok(())
}

/// Deletes responses past their 24 hours; returns how many.
pub async fn purge_expired(conn: Conn<'_>, now: DateTime<Utc>) -> Result<u64> {
    on_conn!(conn, c => Ok(sqlx::query("DELETE FROM idempotency_keys WHERE expires_at <= $1")
        .bind(now)
        .execute(&mut *c)
        .await?
        .rows_affected()))
}
