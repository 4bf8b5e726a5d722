//! API keys: minted for a workspace with abilities, a rate and an expiry; the token is shown
//! once and only its digest is kept; a presented token is checked in constant time against it,
//! from the database on every request, so a revocation holds from the next request in every
//! process.

use chrono::{DateTime, Utc};

use super::{ServiceError, ServiceResult};
use crate::domain::auth::{Ability, NewToken, PresentedToken};
use crate::domain::ids::{ApiKeyId, WorkspaceId};
use crate::domain::quota::{
    MinuteRate, Periods, epoch_micros, seconds_to_next_day, seconds_to_next_month,
};
use crate::store::api_keys::{self, ApiKey, KeyListing};
use crate::store::{Db, workspaces};

/// A key to mint, before it is checked.
pub struct NewKey<'a> {
    /// The workspace it acts in, created when it does not exist yet.
    pub workspace: &'a str,
    pub name: &'a str,
    pub abilities: Vec<Ability>,
    pub rate_per_minute: Option<u32>,
    /// Requests a UTC day; `None`: no quota.
    pub daily_quota: Option<u32>,
    /// Requests a UTC month; `None`: no quota.
    pub monthly_quota: Option<u32>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A minted key: its workspace's name and the token, which is never shown again.
pub struct Minted {
    pub id: ApiKeyId,
    pub workspace: String,
    pub token: String,
}

pub async fn create(db: &Db, key: NewKey<'_>, now: DateTime<Utc>) -> ServiceResult<Minted> {
    let name = key.name.trim();
    let workspace_name = key.workspace.trim();
    let mut errors = crate::domain::validation::FieldErrors::new();
    if name.is_empty() {
        errors.add("name", "must not be empty");
    }
    if workspace_name.is_empty() {
        errors.add("workspace", "must not be empty");
    }
    if key.abilities.is_empty() {
        errors.add("abilities", "must name at least one ability");
    }
    if key.expires_at.is_some_and(|at| at <= now) {
        errors.add("expires_at", "must be in the future");
    }
    if key.rate_per_minute == Some(0) {
        errors.add("rate_per_minute", "must be at least 1");
    }
    if key.daily_quota == Some(0) {
        errors.add("daily_quota", "must be at least 1");
    }
    if key.monthly_quota == Some(0) {
        errors.add("monthly_quota", "must be at least 1");
    }
    errors.into_result()?;
    let minted = NewToken::generate();
    let mut tx = db.begin().await?;
    let workspace = workspaces::ensure(tx.conn(), workspace_name, now).await?;
    let row = api_keys::NewApiKey {
        id: minted.key_id,
        workspace_id: workspace.id,
        name,
        secret_digest: &minted.secret_digest,
        abilities: &key.abilities,
        rate_per_minute: key.rate_per_minute,
        daily_quota: key.daily_quota.map(i64::from),
        monthly_quota: key.monthly_quota.map(i64::from),
        expires_at: key.expires_at,
    };
    api_keys::insert(tx.conn(), &row, now).await?;
    tx.commit().await?;
    Ok(Minted {
        id: minted.key_id,
        workspace: workspace.name,
        token: minted.token,
    })
}

/// Every key, or a workspace's keys, revoked and expired ones included.
pub async fn list(db: &Db, workspace: Option<&str>) -> ServiceResult<Vec<KeyListing>> {
    let mut conn = db.read().await?;
    let workspace_id = match workspace {
        Some(name) => match workspaces::find_by_name(conn.conn(), name.trim()).await? {
            Some(workspace) => Some(workspace.id),
            None => {
                return Err(ServiceError::validation(
                    "workspace",
                    format!("no workspace is called '{name}'"),
                ));
            }
        },
        None => None,
    };
    Ok(api_keys::list(conn.conn(), workspace_id).await?)
}

/// Whether an active key was revoked (false when none has this id).
pub async fn revoke(db: &Db, id: ApiKeyId, now: DateTime<Utc>) -> ServiceResult<bool> {
    let mut conn = db.write().await?;
    Ok(api_keys::revoke(conn.conn(), id, now).await?)
}

/// The active key a bearer token proves, if any.
pub async fn authenticate(
    db: &Db,
    token: &str,
    now: DateTime<Utc>,
) -> ServiceResult<Option<ApiKey>> {
    let Some(presented) = PresentedToken::parse(token) else {
        return Ok(None);
    };
    let key = {
        let mut conn = db.read().await?;
        api_keys::find_active(conn.conn(), presented.key_id, now).await?
    };
    Ok(key.filter(|key| presented.matches(&key.secret_digest)))
}

/// What a request's key may still do, once counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    Admitted {
        /// The daily quota and what is left of it, when the key has one.
        daily: Option<(i64, i64)>,
        /// Requests that could still come at once under the per-minute limit.
        minute_remaining: i64,
    },
    DailyQuotaExceeded {
        retry_after: u64,
        quota: i64,
    },
    MonthlyQuotaExceeded {
        retry_after: u64,
    },
    /// Past the per-minute limit.
    RateLimited {
        retry_after: u64,
    },
}

/// Counts a request of `key` against its quotas and its `per_minute` limit, all kept in the
/// database so that every process shares them. A refused request is taken back: it uses none
/// of the key's quota nor of its minute.
pub async fn admit(
    db: &Db,
    key: &ApiKey,
    per_minute: u32,
    now: DateTime<Utc>,
) -> ServiceResult<Admission> {
    let periods = Periods::at(now);
    let counted = [periods.day.as_str(), periods.month.as_str()];
    let mut conn = db.write().await?;
    let counts = api_keys::count_request(conn.conn(), key.id, &counted).await?;
    let count_of = |period: &str| {
        counts
            .iter()
            .find(|(name, _)| name == period)
            .map_or(0, |(_, count)| *count)
    };
    let today = count_of(&periods.day);
    // Ok: what is left of the minute once admitted; Err: the refusal.
    let outcome = if key.daily_quota.is_some_and(|quota| today > quota) {
        Err(Admission::DailyQuotaExceeded {
            retry_after: seconds_to_next_day(now),
            quota: key.daily_quota.unwrap_or_default(),
        })
    } else if key
        .monthly_quota
        .is_some_and(|quota| count_of(&periods.month) > quota)
    {
        Err(Admission::MonthlyQuotaExceeded {
            retry_after: seconds_to_next_month(now),
        })
    } else {
        let rate = MinuteRate::per_minute(per_minute);
        let now_us = epoch_micros(now);
        match api_keys::pace(conn.conn(), key.id, now_us, rate.interval_us).await? {
            Some(arrival) => Ok(rate.remaining(arrival, now_us)),
            None => {
                let arrival = api_keys::paced_arrival(conn.conn(), key.id)
                    .await?
                    .unwrap_or(now_us);
                Err(Admission::RateLimited {
                    retry_after: rate.retry_after(arrival, now_us),
                })
            }
        }
    };
    match outcome {
        Ok(minute_remaining) => Ok(Admission::Admitted {
            daily: key.daily_quota.map(|quota| (quota, (quota - today).max(0))),
            minute_remaining,
        }),
        Err(refusal) => {
            api_keys::uncount_request(conn.conn(), key.id, &counted).await?;
            Ok(refusal)
        }
    }
}

/// A key as `GET /v1/me` shows it, with its usage so far.
#[derive(Clone, Debug)]
pub struct Me {
    pub key: ApiKey,
    pub workspace: String,
    pub today: i64,
    pub month: i64,
}

pub async fn me(db: &Db, key: ApiKeyId, now: DateTime<Utc>) -> ServiceResult<Me> {
    let periods = Periods::at(now);
    let mut conn = db.read().await?;
    let key = api_keys::find_active(conn.conn(), key, now)
        .await?
        .ok_or(crate::store::StoreError::NotFound)?;
    let workspace = workspaces::get(conn.conn(), key.workspace_id).await?.name;
    let today = api_keys::requests_in(conn.conn(), key.id, &periods.day).await?;
    let month = api_keys::requests_in(conn.conn(), key.id, &periods.month).await?;
    Ok(Me {
        key,
        workspace,
        today,
        month,
    })
}

/// A workspace's keys, oldest first (revoked and expired ones included).
pub async fn list_in(db: &Db, workspace: WorkspaceId) -> ServiceResult<Vec<KeyListing>> {
    let mut conn = db.read().await?;
    Ok(api_keys::list(conn.conn(), Some(workspace)).await?)
}

/// Revokes a key of `workspace`; another workspace's key, or none, is not found.
pub async fn revoke_in(
    db: &Db,
    workspace: WorkspaceId,
    id: ApiKeyId,
    now: DateTime<Utc>,
) -> ServiceResult<()> {
    let mut conn = db.write().await?;
    if api_keys::revoke_in(conn.conn(), workspace, id, now).await? {
        Ok(())
    } else {
        Err(crate::store::StoreError::NotFound.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn db() -> Db {
        let db = Db::connect("sqlite::memory:", &crate::store::DbOptions::default())
            .await
            .unwrap();
        db.migrate().await.unwrap();
        db
    }

    fn key(expires_at: Option<DateTime<Utc>>) -> NewKey<'static> {
        NewKey {
            workspace: "acme",
            name: "ci",
            abilities: vec![Ability::ContactsRead],
            rate_per_minute: None,
            daily_quota: None,
            monthly_quota: None,
            expires_at,
        }
    }

    #[tokio::test]
    async fn a_token_works_until_its_key_is_revoked_or_expires() {
        let db = db().await;
        let now = Utc::now();
        let minted = create(&db, key(None), now).await.unwrap();
        let found = authenticate(&db, &minted.token, now).await.unwrap();
        assert_eq!(found.map(|key| key.id), Some(minted.id));

        let forged = format!("{}x", minted.token);
        assert!(authenticate(&db, &forged, now).await.unwrap().is_none());

        assert!(revoke(&db, minted.id, now).await.unwrap());
        assert!(
            authenticate(&db, &minted.token, now)
                .await
                .unwrap()
                .is_none()
        );
        assert!(!revoke(&db, minted.id, now).await.unwrap(), "revoked once");

        let hour = chrono::Duration::hours(1);
        let brief = create(&db, key(Some(now + hour)), now).await.unwrap();
        let later = now + hour * 2;
        assert!(
            authenticate(&db, &brief.token, later)
                .await
                .unwrap()
                .is_none()
        );
        let refused = create(&db, key(Some(now - hour)), now).await;
        assert!(
            matches!(refused, Err(ServiceError::Validation(e)) if e.get("expires_at").is_some())
        );
    }
}
