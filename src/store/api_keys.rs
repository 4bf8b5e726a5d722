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
}

pub async fn insert(conn: Conn<'_>, key: &NewApiKey<'_>, now: DateTime<Utc>) -> Result<()> {
    on_conn!(conn, c => sqlx::query(
        "INSERT INTO api_keys (id, workspace_id, name, secret_digest, abilities, rate_per_minute, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(key.id)
    .bind(key.workspace_id)
    .bind(key.name)
    .bind(key.secret_digest)
    .bind(Json(key.abilities))
    .bind(key.rate_per_minute.map(i64::from))
    .bind(now)
    .execute(&mut *c)
    .await.map(drop))?;
    Ok(())
}

/// The key a token names, unless it was revoked.
pub async fn find_active(conn: Conn<'_>, id: ApiKeyId) -> Result<Option<ApiKey>> {
    on_conn!(conn, c => Ok(sqlx::query_as(
        "SELECT id, workspace_id, name, secret_digest, abilities, rate_per_minute, created_at
         FROM api_keys WHERE id = $1 AND revoked_at IS NULL",
    )
    .bind(id)
    .fetch_optional(&mut *c)
    .await?))
}

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
