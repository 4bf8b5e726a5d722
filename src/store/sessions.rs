//! Dashboard sessions (`dashboard_sessions`), found by the digest of the cookie's secret.

use chrono::{DateTime, Utc};

use super::api_keys::ApiKey;
use super::{Conn, Result, on_conn};
use crate::domain::ids::ApiKeyId;

pub struct NewSession<'a> {
    pub secret_digest: &'a str,
    pub api_key_id: ApiKeyId,
    pub csrf_token: &'a str,
    pub expires_at: DateTime<Utc>,
}

pub async fn insert(conn: Conn<'_>, session: &NewSession<'_>, now: DateTime<Utc>) -> Result<()> {
    on_conn!(conn, c => sqlx::query(
        "INSERT INTO dashboard_sessions (secret_digest, api_key_id, csrf_token, created_at,
                                         expires_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(session.secret_digest)
    .bind(session.api_key_id)
    .bind(session.csrf_token)
    .bind(now)
    .bind(session.expires_at)
    .execute(&mut *c)
    .await
    .map(drop))?;
    Ok(())
}

/// A live session: its key (active at `now`) and its CSRF token.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ActiveSession {
    #[sqlx(flatten)]
    pub key: ApiKey,
    pub csrf_token: String,
}

/// The session a cookie's digest names, unless it or its key has expired or the key was
/// revoked: read on every page, so a revocation signs the browser out at its next click.
pub async fn find_active(
    conn: Conn<'_>,
    secret_digest: &str,
    now: DateTime<Utc>,
) -> Result<Option<ActiveSession>> {
    on_conn!(conn, c => Ok(sqlx::query_as(
        "SELECT k.id, k.workspace_id, k.name, k.secret_digest, k.abilities, k.rate_per_minute,
                k.daily_quota, k.monthly_quota, k.created_at, k.expires_at,
                s.csrf_token
         FROM dashboard_sessions s JOIN api_keys k ON k.id = s.api_key_id
         WHERE s.secret_digest = $1 AND s.expires_at > $2
           AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > $2)",
    )
    .bind(secret_digest)
    .bind(now)
    .fetch_optional(&mut *c)
    .await?))
}

pub async fn delete(conn: Conn<'_>, secret_digest: &str) -> Result<()> {
    on_conn!(conn, c => sqlx::query("DELETE FROM dashboard_sessions WHERE secret_digest = $1")
        .bind(secret_digest)
        .execute(&mut *c)
        .await
        .map(drop))?;
    Ok(())
}

/// Forgets sessions that ended before `now`.
pub async fn delete_expired(conn: Conn<'_>, now: DateTime<Utc>) -> Result<u64> {
    on_conn!(conn, c => Ok(sqlx::query("DELETE FROM dashboard_sessions WHERE expires_at <= $1")
        .bind(now)
        .execute(&mut *c)
        .await?
        .rows_affected()))
}
