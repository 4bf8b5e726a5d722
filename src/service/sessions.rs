//! Dashboard sessions. A person signs in with an API token; the browser then holds only a
//! random session secret (never the token), whose digest is stored. A session can do exactly
//! what its key can, in its key's workspace, for as long as both are valid.

use chrono::{DateTime, Duration, Utc};

use super::ServiceResult;
use super::api_keys;
use crate::domain::auth::{digest, random_secret};
use crate::store::Db;
use crate::store::sessions::{self, ActiveSession, NewSession};

/// How long a session lasts after sign-in: a working day, so a forgotten browser does not stay
/// signed in for long.
pub const LIFETIME: Duration = Duration::hours(12);

/// A session just opened: the secret for the cookie and the token its forms carry.
pub struct Opened {
    pub secret: String,
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

/// Opens a session for the key `token` proves; `None` when the token proves no active key.
pub async fn sign_in(db: &Db, token: &str, now: DateTime<Utc>) -> ServiceResult<Option<Opened>> {
    let Some(key) = api_keys::authenticate(db, token.trim(), now).await? else {
        return Ok(None);
    };
    let opened = Opened {
        secret: random_secret(),
        csrf_token: random_secret(),
        expires_at: now + LIFETIME,
    };
    let mut conn = db.write().await?;
    sessions::delete_expired(conn.conn(), now).await?;
    sessions::insert(
        conn.conn(),
        &NewSession {
            secret_digest: &digest(&opened.secret),
            api_key_id: key.id,
            csrf_token: &opened.csrf_token,
            expires_at: opened.expires_at,
        },
        now,
    )
    .await?;
    Ok(Some(opened))
}

/// The live session a cookie's secret names.
pub async fn find(
    db: &Db,
    secret: &str,
    now: DateTime<Utc>,
) -> ServiceResult<Option<ActiveSession>> {
    let mut conn = db.read().await?;
    Ok(sessions::find_active(conn.conn(), &digest(secret), now).await?)
}

/// Ends a session; ending one that has already ended is not an error.
pub async fn sign_out(db: &Db, secret: &str) -> ServiceResult<()> {
    let mut conn = db.write().await?;
    Ok(sessions::delete(conn.conn(), &digest(secret)).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::api_keys::NewKey;

    #[tokio::test]
    async fn a_session_lives_until_sign_out_expiry_or_its_key_is_revoked() {
        let (db, _, _) = crate::service::testing::workspace_with_one_contact().await;
        let now = Utc::now();
        let minted = api_keys::create(
            &db,
            NewKey {
                workspace: "acme",
                name: "dashboard",
                abilities: vec![crate::domain::auth::Ability::All],
                rate_per_minute: None,
                daily_quota: None,
                monthly_quota: None,
                expires_at: None,
            },
            now,
        )
        .await
        .unwrap();
        assert!(sign_in(&db, "hrl_nonsense", now).await.unwrap().is_none());

        let opened = sign_in(&db, &minted.token, now).await.unwrap().unwrap();
        let found = find(&db, &opened.secret, now).await.unwrap().unwrap();
        assert_eq!(found.key.id, minted.id);
        assert_eq!(found.csrf_token, opened.csrf_token);
        assert!(find(&db, &opened.csrf_token, now).await.unwrap().is_none());
        assert!(
            find(&db, &opened.secret, now + LIFETIME)
                .await
                .unwrap()
                .is_none(),
            "expired"
        );
        sign_out(&db, &opened.secret).await.unwrap();
        assert!(find(&db, &opened.secret, now).await.unwrap().is_none());

        let again = sign_in(&db, &minted.token, now).await.unwrap().unwrap();
        api_keys::revoke(&db, minted.id, now).await.unwrap();
        assert!(
            find(&db, &again.secret, now).await.unwrap().is_none(),
            "revoked key"
        );
    }
}
