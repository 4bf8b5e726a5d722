//! API keys: only the digest of each token's secret is stored.

use chrono::{DateTime, Utc};
use sqlx::FromRow;
use sqlx::types::Json;

use super::sql::{Param, SqlBuilder, bind_params};
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
    pub daily_quota: Option<i64>,
    pub monthly_quota: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

pub struct NewApiKey<'a> {
    pub id: ApiKeyId,
    pub workspace_id: WorkspaceId,
    pub name: &'a str,
    pub secret_digest: &'a str,
    pub abilities: &'a [Ability],
    pub rate_per_minute: Option<u32>,
    pub daily_quota: Option<i64>,
    pub monthly_quota: Option<i64>,
    pub expires_at: Option<DateTime<Utc>>,
}

pub async fn insert(conn: Conn<'_>, key: &NewApiKey<'_>, now: DateTime<Utc>) -> Result<()> {
    on_conn!(conn, c => sqlx::query(
        "INSERT INTO api_keys (id, workspace_id, name, secret_digest, abilities, rate_per_minute,
                               created_at, expires_at, daily_quota, monthly_quota)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(key.id)
    .bind(key.workspace_id)
    .bind(key.name)
    .bind(key.secret_digest)
    .bind(Json(key.abilities))
    .bind(key.rate_per_minute.map(i64::from))
    .bind(now)
    .bind(key.expires_at)
    .bind(key.daily_quota)
    .bind(key.monthly_quota)
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
        "SELECT id, workspace_id, name, secret_digest, abilities, rate_per_minute, daily_quota,
                monthly_quota, created_at, expires_at
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
    pub rate_per_minute: Option<i64>,
    pub daily_quota: Option<i64>,
    pub monthly_quota: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Every key, or a workspace's, oldest first, with its workspace's name.
pub async fn list(conn: Conn<'_>, workspace: Option<WorkspaceId>) -> Result<Vec<KeyListing>> {
    on_conn!(conn, c => Ok(sqlx::query_as(
        "SELECT k.id, w.name AS workspace, k.name, k.abilities, k.rate_per_minute, k.daily_quota,
                k.monthly_quota, k.created_at, k.expires_at, k.revoked_at
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

/// Revokes a key of `workspace`; `false` when it has no such active key.
pub async fn revoke_in(
    conn: Conn<'_>,
    workspace: WorkspaceId,
    id: ApiKeyId,
    now: DateTime<Utc>,
) -> Result<bool> {
    let done = on_conn!(conn, c => sqlx::query(
        "UPDATE api_keys SET revoked_at = $3
         WHERE id = $1 AND workspace_id = $2 AND revoked_at IS NULL",
    )
    .bind(id)
    .bind(workspace)
    .bind(now)
    .execute(&mut *c)
    .await?
    .rows_affected());
    Ok(done == 1)
}

/// Counts one request of `key` in each of `periods` and returns each period's count after it.
pub async fn count_request(
    conn: Conn<'_>,
    key: ApiKeyId,
    periods: &[&str],
) -> Result<Vec<(String, i64)>> {
    let mut upsert =
        SqlBuilder::new("INSERT INTO api_key_usage (api_key_id, period, requests) VALUES ");
    for (index, period) in periods.iter().enumerate() {
        if index > 0 {
            upsert.push(", ");
        }
        upsert.bind_list([
            Param::Id(key.0),
            Param::Text((*period).to_owned()),
            Param::Int(1),
        ]);
    }
    upsert.push(
        " ON CONFLICT (api_key_id, period) DO UPDATE SET requests = api_key_usage.requests + 1
          RETURNING period, requests",
    );
    on_conn!(conn, c => Ok(bind_params!(sqlx::query_as(super::sql::built(&upsert, &*c)), &upsert.params)
        .fetch_all(&mut *c)
        .await?))
}

/// Takes back a request counted in `periods` (it was refused: a refused request uses no quota).
pub async fn uncount_request(conn: Conn<'_>, key: ApiKeyId, periods: &[&str]) -> Result<()> {
    let mut update =
        SqlBuilder::new("UPDATE api_key_usage SET requests = requests - 1 WHERE api_key_id = ");
    update.bind(Param::Id(key.0)).push(" AND period IN ");
    update.bind_list(
        periods
            .iter()
            .map(|period| Param::Text((*period).to_owned())),
    );
    on_conn!(conn, c => bind_params!(sqlx::query(super::sql::built(&update, &*c)), &update.params)
        .execute(&mut *c)
        .await
        .map(drop))?;
    Ok(())
}

/// Requests of `key` counted in `period` so far.
pub async fn requests_in(conn: Conn<'_>, key: ApiKeyId, period: &str) -> Result<i64> {
    on_conn!(conn, c => Ok(sqlx::query_scalar(
        "SELECT COALESCE((SELECT requests FROM api_key_usage WHERE api_key_id = $1 AND period = $2), 0)",
    )
    .bind(key)
    .bind(period)
    .fetch_one(&mut *c)
    .await?))
}

/// One step of `key`'s per-minute cell rate (`domain::quota::MinuteRate`) at `now_us`: moves
/// its theoretical arrival time a request's `interval_us` on and returns it, or `None` (nothing
/// changed) when that would put it more than a minute ahead of now. One statement, so that
/// processes sharing the database take turns on the row.
pub async fn pace(
    conn: Conn<'_>,
    key: ApiKeyId,
    now_us: i64,
    interval_us: i64,
) -> Result<Option<i64>> {
    on_conn!(conn, c => Ok(sqlx::query_scalar(
        "INSERT INTO api_key_pace (api_key_id, arrival_us) VALUES ($1, $2 + $3)
         ON CONFLICT (api_key_id) DO UPDATE
         SET arrival_us = CASE WHEN api_key_pace.arrival_us > $2
                               THEN api_key_pace.arrival_us ELSE $2 END + $3
         WHERE CASE WHEN api_key_pace.arrival_us > $2
                    THEN api_key_pace.arrival_us ELSE $2 END + $3 - $2 <= $4
         RETURNING arrival_us",
    )
    .bind(key)
    .bind(now_us)
    .bind(interval_us)
    .bind(crate::domain::quota::MINUTE_US)
    .fetch_optional(&mut *c)
    .await?))
}

/// `key`'s theoretical arrival time, once it made a request.
pub async fn paced_arrival(conn: Conn<'_>, key: ApiKeyId) -> Result<Option<i64>> {
    on_conn!(conn, c => Ok(sqlx::query_scalar(
        "SELECT arrival_us FROM api_key_pace WHERE api_key_id = $1",
    )
    .bind(key)
    .fetch_optional(&mut *c)
    .await?))
}
