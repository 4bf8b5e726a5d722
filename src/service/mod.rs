//! Services own the rules: the HTTP handlers, the CLI, `demo` and `bench` parse input, call a
//! service and present its answer, so a rule (an unfillable variable, an impossible schedule) is
//! enforced the same way whoever asks. A service takes the store and the time, and answers with
//! domain errors; it knows nothing of HTTP.

use crate::domain::validation::FieldErrors;
use crate::store::StoreError;

/// Analytics from the rollups, in the caller's local dates and hours.
pub mod analytics;
/// API keys: minted, listed, revoked, and the tokens they prove.
pub mod api_keys;
/// Automatic replies: rules, consent keywords, and the answer to each inbound message.
pub mod automations;
/// Provider callbacks: verified by the sender's module, ingested on one path.
pub mod callbacks;
/// Campaigns: checks, the state machine's moves, and the one way a campaign is launched.
pub mod campaigns;
/// Contacts: their fields checked, their consent flags.
pub mod contacts;
/// CSV exports of contacts and of a campaign's messages, streamed.
pub mod exports;
/// Static and dynamic groups and their members.
pub mod groups;
/// CSV imports of contacts: the upload checked, the run in batches that survive a crash.
pub mod imports;
/// Single messages: the recipient's consent, rendering, pacing.
pub mod messages;
/// Senders: provider settings, time zone, pacing, warmup, masked secrets.
pub mod senders;
/// Dashboard sessions: signed in with an API token, ended by sign-out, expiry or revocation.
pub mod sessions;
/// What a campaign or a single message sends: content, template and media checked.
pub mod templates;

/// Outbound webhooks: endpoints, tests and replays.
pub mod webhooks;
/// Workspaces, the tenants.
pub mod workspaces;

/// Why a service refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The input breaks a rule; each field says which.
    #[error("validation failed: {0}")]
    Validation(FieldErrors),
    /// Not found, refused by the state machine, a duplicate, or the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<FieldErrors> for ServiceError {
    fn from(errors: FieldErrors) -> Self {
        Self::Validation(errors)
    }
}

impl ServiceError {
    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        Self::Validation(FieldErrors::single(field, message))
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;

#[cfg(test)]
pub(crate) mod testing {
    use chrono::Utc;

    use crate::domain::ids::{SenderId, WorkspaceId};
    use crate::store::{Db, senders};

    /// A fresh in-memory database with a workspace, one contact (+201000000001) and a
    /// sandbox sender.
    pub async fn workspace_with_one_contact() -> (Db, WorkspaceId, SenderId) {
        use crate::domain::phone::Phone;
        use crate::store::contacts::{self, ContactFields};
        let db = Db::connect("sqlite::memory:", &crate::store::DbOptions::default())
            .await
            .unwrap();
        db.migrate().await.unwrap();
        let now = Utc::now();
        let mut tx = db.begin().await.unwrap();
        let ws = crate::store::workspaces::ensure(tx.conn(), "acme", now)
            .await
            .unwrap()
            .id;
        let jane = ContactFields::new(Phone::from_trusted("+201000000001".into()));
        contacts::insert_new_batch(&mut tx, ws, &[jane], now)
            .await
            .unwrap();
        let fields = senders::SenderFields {
            name: "S",
            provider: crate::domain::provider::ProviderKind::Sandbox,
            provider_config: &serde_json::json!({}),
            timezone: crate::domain::time::Zone::UTC,
            pacing: &crate::domain::pacing::Pacing::default(),
            warmup_started_on: None,
        };
        let sender = senders::insert(&mut tx, ws, &fields, "secret", now)
            .await
            .unwrap()
            .id;
        tx.commit().await.unwrap();
        (db, ws, sender)
    }
}
