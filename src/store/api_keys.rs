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

/// The key a token names, unless it was revoked or has expired at `now`. Read from the database
/// on every request, so a revocation holds from the very next request, in every process.
pub async fn find_active(
    conn: Conn<'_>,
    id: ApiKeyId,
    now: DateTime<Utc>,
) -> Result<Option<ApiKey>> {
    on_conn!(conn, c => Ok(sqlx::query_as(
        "SELECT id, workspace_id, name, secret_digest, abilities, rate_per_minute, created_at
         FROM api_keys
         WHERE id = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)",
    )
    .bind(id)
    .bind(now)
    .fetch_optional(&mut *c)
    .await?))
}

/// A key as `herald api-key list` shows it: never its secret's digest.
#[derive(Clone, Debug, FromRow)]
pub struct KeyListing {
    pub id: ApiKeyId,
    pub workspace: String,
    pub name: String,
    pub abilities: Json<Vec<Ability>>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Every key, or a workspace's, oldest first, with its workspace's name.
pub async fn list(conn: Conn<'_>, workspace: Option<WorkspaceId>) -> Result<Vec<KeyListing>> {
    on_conn!(conn, c => Ok(sqlx::query_as(
        "SELECT k.id, w.name AS workspace, k.name, k.abilities, k.created_at, k.expires_at,
                k.revoked_at
         FROM api_keys k JOIN workspaces w ON w.id = k.workspace_id
         WHERE $1 IS NULL OR k.workspace_id = $1
         ORDER BY k.created_at, k.id",
    )
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
