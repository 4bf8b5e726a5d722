//! Senders: a provider configuration its module accepts, a time zone that exists, pacing that
//! holds together, warmup's day 1 kept while warmup stays on, and secrets shown masked.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;

use super::{ServiceError, ServiceResult};
use crate::domain::auth::random_secret;
use crate::domain::ids::{SenderId, WorkspaceId};
use crate::domain::pacing::Pacing;
use crate::domain::provider::ProviderKind;
use crate::domain::time::{Zone, local_day, warmup_day};
use crate::domain::validation::FieldErrors;
use crate::providers::{self, ProviderConfigError, secrets};
use crate::store::senders::{self, Sender, SenderFields};
use crate::store::{Db, Page, usage};
use crate::url_guard::UrlGuard;

/// A sender's settings, whole.
#[derive(Clone, Debug)]
pub struct SenderSettings {
    pub name: String,
    pub provider: String,
    pub provider_config: Value,
    pub timezone: String,
    pub pacing: Pacing,
}

/// Settings to change; `None` keeps the current one, and `pacing` replaces the whole pacing.
#[derive(Clone, Debug, Default)]
pub struct SenderChange {
    pub name: Option<String>,
    pub provider: Option<String>,
    /// Secrets sent back as the mask they were shown as keep their stored value.
    pub provider_config: Option<Value>,
    pub timezone: Option<String>,
    pub pacing: Option<Pacing>,
}

/// A sender's local day: what it has sent and may send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Today {
    pub date: NaiveDate,
    /// Sends started today (attempts count against the cap).
    pub sent: i64,
    /// Today's cap, `None` when nothing caps the day.
    pub limit: Option<u32>,
    /// 1-based warmup day, `None` when warmup is off.
    pub warmup_day: Option<u32>,
}

/// `provider_config` fit to show: the secrets its provider module declares masked (sending the
/// mask back keeps the stored value). A provider Herald does not know shows nothing, rather
/// than a guess at what is secret.
pub fn shown_config(provider: ProviderKind, config: &Value) -> Value {
    secrets::masked(config, providers::module_of(provider).secrets())
}

/// Creates a sender; returns it with its callback secret, which is never shown again.
pub async fn create(
    db: &Db,
    workspace: WorkspaceId,
    settings: SenderSettings,
    url_guard: UrlGuard,
    now: DateTime<Utc>,
) -> ServiceResult<(Sender, String)> {
    let settings = check(settings, url_guard)?;
    let callback_secret = random_secret();
    let fields = fields(&settings, None, now);
    let mut tx = db.begin().await?;
    let sender = senders::insert(&mut tx, workspace, &fields, &callback_secret, now).await?;
    tx.commit().await?;
    Ok((sender, callback_secret))
}

/// Changes a sender.
pub async fn update(
    db: &Db,
    workspace: WorkspaceId,
    id: SenderId,
    change: SenderChange,
    url_guard: UrlGuard,
    now: DateTime<Utc>,
) -> ServiceResult<Sender> {
    let mut tx = db.begin().await?;
    let current = senders::get(tx.conn(), workspace, id).await?;
    let provider = change
        .provider
        .unwrap_or_else(|| current.provider.to_string());
    let provider_config = match change.provider_config {
        // The mask stands for the stored secret only while the provider stays the same.
        Some(mut config) if provider == current.provider.as_str() => {
            let secrets = providers::module_of(current.provider).secrets();
            secrets::restore_masked(&mut config, &current.provider_config.0, secrets);
            config
        }
        Some(config) => config,
        None => current.provider_config.0.clone(),
    };
    let settings = check(
        SenderSettings {
            name: change.name.unwrap_or_else(|| current.name.clone()),
            provider,
            provider_config,
            timezone: change
                .timezone
                .unwrap_or_else(|| current.timezone.to_string()),
            pacing: change.pacing.unwrap_or_else(|| current.pacing()),
        },
        url_guard,
    )?;
    let fields = fields(&settings, Some(&current), now);
    let sender = senders::update(tx.conn(), workspace, id, &fields, now).await?;
    tx.commit().await?;
    Ok(sender)
}

/// A sender with its local day's sends and cap.
pub async fn with_today(
    db: &Db,
    workspace: WorkspaceId,
    id: SenderId,
    now: DateTime<Utc>,
) -> ServiceResult<(Sender, Today)> {
    let sender = {
        let mut conn = db.read().await?;
        senders::get(conn.conn(), workspace, id).await?
    };
    let today = today(db, &sender, now).await?;
    Ok((sender, today))
}

/// A sender's local day at `now`: its sends, its cap and its warmup day.
pub async fn today(db: &Db, sender: &Sender, now: DateTime<Utc>) -> ServiceResult<Today> {
    let mut conn = db.read().await?;
    let pacing = sender.pacing();
    let date = local_day(now, sender.tz());
    let day = warmup_day(sender.warmup_started_on, date);
    let sent = usage::sent_on(conn.conn(), sender.id, date).await?;
    Ok(Today {
        date,
        sent,
        limit: pacing.daily_cap(day),
        warmup_day: pacing.warmup().map(|_| day),
    })
}

/// Deletes a sender that no campaign or message refers to.
/// A page of the workspace's senders.
pub async fn list(
    db: &Db,
    workspace: WorkspaceId,
    page: Page,
) -> ServiceResult<(Vec<Sender>, i64)> {
    let mut conn = db.read().await?;
    Ok(senders::list(conn.conn(), workspace, page).await?)
}

pub async fn delete(db: &Db, workspace: WorkspaceId, id: SenderId) -> ServiceResult<()> {
    let mut conn = db.write().await?;
    Ok(senders::delete(conn.conn(), workspace, id).await?)
}

/// Settings that passed [`check`], with their time zone resolved.
struct Checked {
    settings: SenderSettings,
    provider: ProviderKind,
    zone: Zone,
}

/// The store's fields; warmup day 1 is kept from `previous` while warmup stays on.
fn fields<'a>(
    checked: &'a Checked,
    previous: Option<&Sender>,
    now: DateTime<Utc>,
) -> SenderFields<'a> {
    let settings = &checked.settings;
    SenderFields {
        name: &settings.name,
        provider: checked.provider,
        provider_config: &settings.provider_config,
        timezone: checked.zone,
        pacing: &settings.pacing,
        warmup_started_on: warmup_start(&settings.pacing, previous, checked.zone, now),
    }
}

/// Every problem with `settings` at once, each naming its field.
fn check(settings: SenderSettings, url_guard: UrlGuard) -> ServiceResult<Checked> {
    let mut errors = FieldErrors::new();
    if settings.name.trim().is_empty() {
        errors.add("name", "must not be empty");
    }
    let provider = match providers::module(settings.provider.trim()) {
        Ok(module) => Some(module.kind()),
        Err(unknown) => {
            errors.add("provider", unknown.to_string());
            None
        }
    };
    if !settings.provider_config.is_object() {
        errors.add("provider_config", "must be an object");
    } else if let Some(kind) = provider
        && let Err(error) = providers::validate(kind, &settings.provider_config, url_guard)
    {
        match error {
            ProviderConfigError::Unknown(_) => errors.add("provider", error.to_string()),
            _ => {
                for (field, message) in error.field_messages() {
                    errors.add(field, message);
                }
            }
        }
    }
    let zone = match settings.timezone.parse::<Zone>() {
        Ok(zone) => Some(zone),
        Err(error) => {
            errors.add("timezone", error.to_string());
            None
        }
    };
    if let Err(pacing_errors) = settings.pacing.validate() {
        return Err(ServiceError::Validation(errors.merged(pacing_errors)));
    }
    errors.into_result()?;
    // A provider or zone that failed to parse was reported above.
    let (Some(provider), Some(zone)) = (provider, zone) else {
        return Err(ServiceError::validation("provider", "is not known"));
    };
    // A platform's documented throughput is the pace a sender keeps unless told otherwise.
    let mut pacing = settings.pacing;
    if pacing.rate_per_minute.is_none() {
        pacing.rate_per_minute = providers::module_of(provider).default_rate_per_minute();
    }
    Ok(Checked {
        settings: SenderSettings {
            name: settings.name.trim().to_owned(),
            pacing,
            ..settings
        },
        provider,
        zone,
    })
}

/// Local date of warmup day 1: today when warmup starts now, else unchanged.
fn warmup_start(
    pacing: &Pacing,
    previous: Option<&Sender>,
    zone: Zone,
    now: DateTime<Utc>,
) -> Option<NaiveDate> {
    if !pacing.warmup_enabled {
        return None;
    }
    previous
        .filter(|sender| sender.warmup_enabled)
        .and_then(|sender| sender.warmup_started_on)
        .or_else(|| Some(local_day(now, zone.tz())))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn whatsapp(pacing: Pacing) -> SenderSettings {
        SenderSettings {
            name: "Store line".into(),
            provider: "whatsapp_cloud".into(),
            provider_config: json!({"phone_number_id": "1122334455667", "access_token": "t",
                                    "app_secret": "s", "verify_token": "v"}),
            timezone: "Africa/Cairo".into(),
            pacing,
        }
    }

    #[tokio::test]
    async fn a_whatsapp_number_keeps_metas_default_throughput_unless_told_otherwise() {
        let (db, ws, _) = crate::service::testing::workspace_with_one_contact().await;
        let now = Utc::now();
        let (default, _) = create(&db, ws, whatsapp(Pacing::default()), UrlGuard::STRICT, now)
            .await
            .unwrap();
        assert_eq!(default.pacing().rate_per_minute, Some(80 * 60));
        let slower = Pacing {
            rate_per_minute: Some(600),
            ..Pacing::default()
        };
        let (slower, _) = create(&db, ws, whatsapp(slower), UrlGuard::STRICT, now)
            .await
            .unwrap();
        assert_eq!(slower.pacing().rate_per_minute, Some(600));
        let sandbox = SenderSettings {
            provider: "sandbox".into(),
            provider_config: json!({}),
            ..whatsapp(Pacing::default())
        };
        let (sandbox, _) = create(&db, ws, sandbox, UrlGuard::STRICT, now)
            .await
            .unwrap();
        assert_eq!(
            sandbox.pacing().rate_per_minute,
            None,
            "the simulator has no limit"
        );
    }
}
