//! API keys: minted for a workspace with abilities, a rate and an expiry; the token is shown
//! once and only its digest is kept; a presented token is checked in constant time against it,
//! from the database on every request, so a revocation holds from the next request in every
//! process.

use chrono::{DateTime, Utc};

use super::{ServiceError, ServiceResult};
use crate::domain::auth::{Ability, NewToken, PresentedToken};
use crate::domain::ids::ApiKeyId;
use crate::store::api_keys::{self, ApiKey, KeyListing};
use crate::store::{Db, workspaces};

/// A key to mint, before it is checked.
pub struct NewKey<'a> {
    /// The workspace it acts in, created when it does not exist yet.
    pub workspace: &'a str,
    pub name: &'a str,
    pub abilities: Vec<Ability>,
    pub rate_per_minute: Option<u32>,
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
