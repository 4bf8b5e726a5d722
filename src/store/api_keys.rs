//! API keys: only the digest of each token's secret is stored.

use chrono::{DateTime, Utc};
use sqlx::FromRow;
use sqlx::types::Json;

use super::{Conn, Result, on_conn};
use crate::domain::auth::Ability;
use crate::domain::ids::{ApiKeyId, WorkspaceId};

#[derive(Clone, Debug, FromRow)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub secret_digest: String,
    pub abilities: Json<Vec<Ability>>,
    pub rate_per_minute: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

pub struct NewApiKey<'a> {
    pub id: ApiKeyId,
    pub workspace_id: WorkspaceId,
    pub name: &'a str,
    pub secret_digest: &'a str,
    pub abilities: &'a [Ability],
    pub rate_per_minute: Option<u32>,
    pub expires_at: Option<DateTime<Utc>>,
}

pub async fn insert(conn: Conn<'_>, key: &NewApiKey<'_>, now: DateTime<Utc>) -> Result<()> {
    on_conn!(conn, c => sqlx::query(
        "INSERT INTO api_keys (id, workspace_id, name, secret_digest, abilities, rate_per_minute,
                               created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(key.id)
    .bind(key.workspace_id)
    .bind(key.name)
    .bind(key.secret_digest)
    .bind(Json(key.abilities))
    .bind(key.rate_per_minute.map(i64::from))
    .bind(now)
    .bind(key.expires_at)
    .execute(&mut *c)
    .await.map(drop))?;
    Ok(())
}

const COLUMNS: &str = "id, workspace_id, name, secret_digest, abilities, rate_per_minute, \
                       created_at, expires_at, revoked_at";

/// The key a token names, unless it was revoked or has expired at `now`. Read from the database
/// on every request, so a revocation holds from the very next request, in every process.
pub async fn find_active(
    conn: Conn<'_>,
    id: ApiKeyId,
    now: DateTime<Utc>,
) -> Result<Option<ApiKey>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM api_keys
         WHERE id = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)"
    );
    on_conn!(conn, c => Ok(sqlx::query_as(super::sql::trusted(&sql))
    .bind(id)
    .bind(now)
    .fetch_optional(&mut *c)
    .await?))
}

/// Every key, or a workspace's, oldest first, with its workspace's name.
pub async fn list(conn: Conn<'_>, workspace: Option<WorkspaceId>) -> Result<Vec<ApiKey>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM api_keys WHERE $1 IS NULL OR workspace_id = $1 ORDER BY created_at, id"
    );
    on_conn!(conn, c => Ok(sqlx::query_as(super::sql::trusted(&sql))
    .bind(workspace)
    .fetch_all(&mut *c)
    .await?))
}

/// Revokes a key; `false` when there is no such key or it was already revoked.
pub async fn revoke(conn: Conn<'_>, id: ApiKeyId, now: DateTime<Utc>) -> Result<bool> {
    let done = on_conn!(conn, c => sqlx::query(
        "UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
    )
    .bind(id)
    .bind(now)
    .execute(&mut *c)
    .await?
    .rows_affected());
    Ok(done == 1)
}
