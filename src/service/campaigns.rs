//! Campaigns: a draft checked against its workspace (sender, template, audience, and every
//! variable fillable), its edits while it may be edited, its schedule in a time zone, and the
//! one way a campaign is launched — by a person, a launch job or the sweep alike.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, Utc};

use super::templates::resolve_source;
use super::{ServiceError, ServiceResult};
use crate::domain::campaign::{Audience, CampaignStatus};
use crate::domain::contact::parse_timezone;
use crate::domain::estimate::{self, Finish, Plan};
use crate::domain::ids::{CampaignId, SenderId, TemplateId, WorkspaceId};
use crate::domain::time::{local_day, resolve_local};
use crate::domain::validation::FieldErrors;
use crate::providers;
use crate::store::campaigns::{self, Campaign, CampaignFields};
use crate::store::{Conn, Db, Page, StoreError, audience, groups, senders, usage};

/// Most contacts a `contacts` audience may name (each is one query parameter at launch).
pub const MAX_AUDIENCE_CONTACTS: usize = 10_000;

/// A campaign's fields as given, before they are checked against the workspace.
#[derive(Clone, Debug)]
pub struct Draft {
    pub name: String,
    pub sender_id: SenderId,
    /// Send this template's content (copied now; later edits to it do not change the campaign)…
    pub template_id: Option<TemplateId>,
    /// …or this text.
    pub content: Option<String>,
    pub media_url: Option<String>,
    pub audience: Audience,
    /// Values for the template's variables that no contact field supplies.
    pub variables: BTreeMap<String, String>,
}

/// Fields to change while the campaign is a draft or scheduled; `None` keeps the current one.
#[derive(Clone, Debug, Default)]
pub struct Patch {
    pub name: Option<String>,
    pub sender_id: Option<SenderId>,
    pub template_id: Option<TemplateId>,
    pub content: Option<String>,
    pub media_url: Option<String>,
    pub audience: Option<Audience>,
    pub variables: Option<BTreeMap<String, String>>,
}

pub async fn get(db: &Db, workspace: WorkspaceId, id: CampaignId) -> ServiceResult<Campaign> {
    let mut conn = db.read().await?;
    Ok(campaigns::get(conn.conn(), workspace, id).await?)
}

/// A page of the workspace's campaigns, newest first.
pub async fn list(
    db: &Db,
    workspace: WorkspaceId,
    status: Option<CampaignStatus>,
    page: Page,
) -> ServiceResult<(Vec<Campaign>, i64)> {
    let mut conn = db.read().await?;
    Ok(campaigns::list(conn.conn(), workspace, status, page).await?)
}

/// Something about a campaign that is allowed but likely not what its author wants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    pub code: &'static str,
    pub message: String,
    /// How many recipients it concerns.
    pub count: i64,
}

/// What a campaign's author should know before it starts: through a sender whose platform
/// keeps a customer-service window, free-form text (no WhatsApp part) is skipped for every
/// recipient who has not written in the last 24 hours.
pub async fn warnings(
    db: &Db,
    campaign: &Campaign,
    now: DateTime<Utc>,
) -> ServiceResult<Vec<Warning>> {
    if campaign.whatsapp.is_some() {
        return Ok(Vec::new());
    }
    let mut conn = db.read().await?;
    let sender = senders::get(conn.conn(), campaign.workspace_id, campaign.sender_id).await?;
    if !providers::module_of(sender.provider)
        .capabilities()
        .customer_service_window
    {
        return Ok(Vec::new());
    }
    let since = now - chrono::Duration::hours(24);
    let audience = &campaign.audience.0;
    let silent = audience::silent_since(
        conn.conn(),
        campaign.workspace_id,
        audience,
        sender.id,
        since,
    )
    .await?;
    if silent == 0 {
        return Ok(Vec::new());
    }
    let total = audience::count(conn.conn(), campaign.workspace_id, audience).await?;
    Ok(vec![Warning {
        code: "outside_customer_service_window",
        message: format!(
            "{silent} of {total} recipients have not written to this number in the last 24 \
             hours: free-form text will be skipped for them; use a template with a whatsapp part \
             to reach them"
        ),
        count: silent,
    }])
}

/// How many contacts `audience` reaches now (those a launch would materialise).
pub async fn audience_size(
    db: &Db,
    workspace: WorkspaceId,
    audience: &Audience,
) -> ServiceResult<i64> {
    let mut conn = db.read().await?;
    if let Audience::Group { group_id } = audience {
        groups::get(conn.conn(), workspace, *group_id).await?;
    }
    Ok(audience::count(conn.conn(), workspace, audience).await?)
}

/// When `recipients` messages of about `chars` characters, started at `start`, should finish
/// under `sender`'s pacing (its warmup day, today's sends and its window included).
pub async fn forecast(
    db: &Db,
    workspace: WorkspaceId,
    sender: SenderId,
    recipients: i64,
    chars: usize,
    start: DateTime<Utc>,
) -> ServiceResult<Finish> {
    let mut conn = db.read().await?;
    let sender = senders::get(conn.conn(), workspace, sender).await?;
    let today = local_day(start, sender.tz());
    let sent_today = usage::sent_on(conn.conn(), sender.id, today).await?;
    Ok(estimate::finish(&Plan {
        pacing: &sender.pacing(),
        tz: sender.tz(),
        warmup_started_on: sender.warmup_started_on,
        sent_today,
        recipients,
        chars,
        start,
    }))
}

/// Checks a campaign against its workspace: the sender, template and group exist there, the
/// content parses, and every variable without a fallback has a source.
async fn check(
    mut conn: Conn<'_>,
    workspace: WorkspaceId,
    draft: Draft,
) -> ServiceResult<CampaignFields> {
    let mut errors = FieldErrors::new();
    if draft.name.trim().is_empty() {
        errors.add("name", "must not be empty");
    }
    match senders::get(conn.reborrow(), workspace, draft.sender_id).await {
        Ok(_) => {}
        Err(StoreError::NotFound) => errors.add("sender_id", "no such sender"),
        Err(error) => return Err(error.into()),
    }
    let source = resolve_source(
        conn.reborrow(),
        workspace,
        draft.template_id,
        draft.content,
        draft.media_url,
        &mut errors,
    )
    .await?;
    match &draft.audience {
        Audience::All => {}
        Audience::Group { group_id } => {
            match groups::get(conn.reborrow(), workspace, *group_id).await {
                Ok(_) => {}
                Err(StoreError::NotFound) => errors.add("audience.group_id", "no such group"),
                Err(error) => return Err(error.into()),
            }
        }
        Audience::Tags { tags } => {
            if tags.iter().all(|tag| tag.trim().is_empty()) {
                errors.add("audience.tags", "give at least one tag");
            }
        }
        Audience::Contacts { contact_ids } => {
            if contact_ids.is_empty() {
                errors.add("audience.contact_ids", "give at least one contact");
            } else if contact_ids.len() > MAX_AUDIENCE_CONTACTS {
                errors.add(
                    "audience.contact_ids",
                    format!(
                        "at most {MAX_AUDIENCE_CONTACTS} contacts; use a group or tags for more"
                    ),
                );
            }
        }
    }
    errors.into_result()?;

    if source.template.is_some() {
        let mut unfillable = FieldErrors::new();
        let reaches_anyone =
            audience::count(conn.reborrow(), workspace, &draft.audience).await? > 0;
        for name in source.required_variables() {
            let given = draft.variables.get(name).is_some_and(|v| !v.is_empty());
            if given || !reaches_anyone {
                continue;
            }
            if !audience::any_can_fill(conn.reborrow(), workspace, &draft.audience, name).await? {
                unfillable.add(
                    format!("variables.{name}"),
                    format!(
                        "variable '{name}' has no fallback, no campaign value and no recipient \
                         with a value for it"
                    ),
                );
            }
        }
        unfillable.into_result()?;
    }
    Ok(CampaignFields {
        name: draft.name.trim().to_owned(),
        sender_id: draft.sender_id,
        template_id: draft.template_id,
        content: source.content.unwrap_or_default(),
        media_url: source.media_url,
        whatsapp: source.whatsapp.map(|(part, _)| part),
        audience: draft.audience,
        variables: draft.variables,
    })
}

/// Creates a campaign as a draft.
pub async fn create(
    db: &Db,
    workspace: WorkspaceId,
    draft: Draft,
    now: DateTime<Utc>,
) -> ServiceResult<Campaign> {
    let fields = {
        let mut conn = db.read().await?;
        check(conn.conn(), workspace, draft).await?
    };
    let mut conn = db.write().await?;
    Ok(campaigns::insert(conn.conn(), workspace, &fields, now).await?)
}

/// Changes a draft or scheduled campaign. A new template or new text replaces the old source
/// entirely; with neither, the campaign keeps the content it copied (not its template's later
/// edits).
pub async fn update(
    db: &Db,
    workspace: WorkspaceId,
    id: CampaignId,
    patch: Patch,
    now: DateTime<Utc>,
) -> ServiceResult<Campaign> {
    let fields = {
        let mut conn = db.read().await?;
        let current = campaigns::get(conn.conn(), workspace, id).await?;
        if !current.status.is_editable() {
            return Err(StoreError::InvalidTransition {
                current: current.status,
            }
            .into());
        }
        let keeps_content = patch.template_id.is_none() && patch.content.is_none();
        let (template_id, content) = match (patch.template_id, patch.content) {
            (None, None) => (None, Some(current.content)),
            given => given,
        };
        let draft = Draft {
            name: patch.name.unwrap_or(current.name),
            sender_id: patch.sender_id.unwrap_or(current.sender_id),
            template_id,
            content,
            media_url: patch.media_url.or(current.media_url),
            audience: patch.audience.unwrap_or(current.audience.0),
            variables: patch.variables.unwrap_or(current.variables.0),
        };
        let mut fields = check(conn.conn(), workspace, draft).await?;
        if keeps_content {
            fields.template_id = current.template_id;
        }
        fields
    };
    let mut conn = db.write().await?;
    Ok(campaigns::update(conn.conn(), workspace, id, &fields, now).await?)
}

/// Deletes a draft, scheduled or canceled campaign with its messages.
pub async fn delete(db: &Db, workspace: WorkspaceId, id: CampaignId) -> ServiceResult<()> {
    let mut conn = db.write().await?;
    Ok(campaigns::delete(conn.conn(), workspace, id).await?)
}

/// When a schedule request means: an instant with an offset, or a local time in `timezone`
/// (the sender's when absent).
pub fn schedule_time(
    at: &str,
    timezone: Option<&str>,
    sender_timezone: &str,
) -> ServiceResult<DateTime<Utc>> {
    let at = at.trim();
    if let Ok(instant) = DateTime::parse_from_rfc3339(at) {
        return Ok(instant.with_timezone(&Utc));
    }
    let local = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|format| NaiveDateTime::parse_from_str(at, format).ok())
    .ok_or_else(|| {
        ServiceError::validation(
            "at",
            "must be a date and time such as 2026-12-01T09:00:00, with a UTC offset or a timezone",
        )
    })?;
    let zone = timezone.unwrap_or(sender_timezone);
    let tz = parse_timezone(zone)
        .map_err(|error| ServiceError::validation("timezone", error.to_string()))?;
    Ok(resolve_local(tz, local))
}

/// Schedules a draft, or moves a scheduled campaign's time: `at` with a UTC offset, or local in
/// `timezone` (the sender's when absent), and in the future. The engine of any process launches
/// it once its time has come (the database is the queue).
pub async fn schedule(
    db: &Db,
    workspace: WorkspaceId,
    id: CampaignId,
    at: &str,
    timezone: Option<&str>,
    now: DateTime<Utc>,
) -> ServiceResult<Campaign> {
    let at = {
        let mut conn = db.read().await?;
        let campaign = campaigns::get(conn.conn(), workspace, id).await?;
        if !campaign.status.can_become(CampaignStatus::Scheduled) {
            return Err(StoreError::InvalidTransition {
                current: campaign.status,
            }
            .into());
        }
        let sender = senders::get(conn.conn(), workspace, campaign.sender_id).await?;
        schedule_time(at, timezone, sender.timezone.as_str())?
    };
    if at <= now {
        return Err(ServiceError::validation("at", "is in the past"));
    }
    let mut conn = db.write().await?;
    Ok(campaigns::schedule(conn.conn(), workspace, id, at, now).await?)
}

/// Who launches a campaign.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LaunchBy {
    /// Someone asked to start it now: a refusal is an answer to them.
    Person,
    /// Its time came (the engine found it due): a campaign that was rescheduled later,
    /// deleted, canceled, started by hand or launched by another process is left alone.
    Schedule,
}

/// Launches a campaign: moves it to `running` and materialises its recipients in one
/// transaction, so a launch happens at most once however many processes try. `None` when a
/// scheduled launch finds nothing to do.
pub async fn launch(
    db: &Db,
    workspace: WorkspaceId,
    id: CampaignId,
    by: LaunchBy,
    now: DateTime<Utc>,
) -> ServiceResult<Option<Campaign>> {
    let mut tx = db.begin().await?;
    if by == LaunchBy::Schedule {
        match campaigns::get(tx.conn(), workspace, id).await {
            // Rescheduled later: launched when the new time comes.
            Ok(campaign) if campaign.scheduled_at.is_some_and(|at| at > now) => return Ok(None),
            Ok(_) => {}
            Err(StoreError::NotFound) => return Ok(None),
            Err(error) => return Err(error.into()),
        }
    }
    match campaigns::launch(&mut tx, workspace, id, now).await {
        Ok(launched) => {
            tx.commit().await?;
            tracing::info!(campaign_id = %id, recipients = launched.total_count, ?by, "campaign launched");
            Ok(Some(launched))
        }
        Err(StoreError::InvalidTransition { .. }) if by == LaunchBy::Schedule => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// Pauses a running campaign: no new send starts once this returns.
pub async fn pause(
    db: &Db,
    workspace: WorkspaceId,
    id: CampaignId,
    now: DateTime<Utc>,
) -> ServiceResult<Campaign> {
    let mut conn = db.write().await?;
    Ok(campaigns::pause(conn.conn(), workspace, id, now).await?)
}

pub async fn resume(
    db: &Db,
    workspace: WorkspaceId,
    id: CampaignId,
    now: DateTime<Utc>,
) -> ServiceResult<Campaign> {
    let mut conn = db.write().await?;
    Ok(campaigns::resume(conn.conn(), workspace, id, now).await?)
}

/// Cancels a scheduled, running or paused campaign; its pending messages are skipped.
pub async fn cancel(
    db: &Db,
    workspace: WorkspaceId,
    id: CampaignId,
    now: DateTime<Utc>,
) -> ServiceResult<Campaign> {
    let mut tx = db.begin().await?;
    let campaign = campaigns::cancel(&mut tx, workspace, id, now).await?;
    tx.commit().await?;
    Ok(campaign)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_times_resolve_offsets_and_local_times() {
        let utc = |text: &str| text.parse::<DateTime<Utc>>().unwrap();
        assert_eq!(
            schedule_time("2026-12-01T09:00:00", Some("Asia/Jerusalem"), "UTC").unwrap(),
            utc("2026-12-01T07:00:00Z")
        );
        assert_eq!(
            schedule_time("2026-12-01T09:00:00+01:00", None, "UTC").unwrap(),
            utc("2026-12-01T08:00:00Z")
        );
        // No zone given: the sender's.
        assert_eq!(
            schedule_time("2026-07-01T09:00", None, "America/New_York").unwrap(),
            utc("2026-07-01T13:00:00Z")
        );
        assert!(schedule_time("tomorrow", None, "UTC").is_err());
        assert!(schedule_time("2026-12-01T09:00:00", Some("Mars/Base"), "UTC").is_err());
    }

    fn draft(sender: SenderId, content: &str) -> Draft {
        Draft {
            name: "Spring".into(),
            sender_id: sender,
            template_id: None,
            content: Some(content.into()),
            media_url: None,
            audience: Audience::All,
            variables: BTreeMap::new(),
        }
    }

    #[tokio::test]
    async fn a_variable_no_recipient_can_fill_is_refused_whoever_asks() {
        let (db, ws, sender) = crate::service::testing::workspace_with_one_contact().await;
        let refused = create(&db, ws, draft(sender, "Code <<code>>"), Utc::now()).await;
        match refused {
            Err(ServiceError::Validation(errors)) => {
                assert!(errors.to_string().contains("variables.code"), "{errors}")
            }
            other => panic!("an unfillable variable is refused: {other:?}"),
        }
        let with_value = Draft {
            variables: BTreeMap::from([("code".into(), "SPRING".into())]),
            ..draft(sender, "Code <<code>>")
        };
        assert!(create(&db, ws, with_value, Utc::now()).await.is_ok());
        let with_fallback = draft(sender, "Hi <<name|there>>");
        assert!(create(&db, ws, with_fallback, Utc::now()).await.is_ok());
    }

    #[tokio::test]
    async fn a_scheduled_launch_leaves_alone_what_a_person_would_be_refused() {
        let (db, ws, sender) = crate::service::testing::workspace_with_one_contact().await;
        let now = Utc::now();
        let campaign = create(&db, ws, draft(sender, "Hi"), now).await.unwrap();
        assert!(
            cancel(&db, ws, campaign.id, now).await.is_err(),
            "a draft cannot be canceled"
        );
        let launched = launch(&db, ws, campaign.id, LaunchBy::Person, now)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (launched.status, launched.total_count),
            (CampaignStatus::Running, 1)
        );
        // Launched once: a job or a sweep arriving later leaves it alone, a person is told why.
        assert!(matches!(
            launch(&db, ws, campaign.id, LaunchBy::Schedule, now).await,
            Ok(None)
        ));
        assert!(matches!(
            launch(&db, ws, campaign.id, LaunchBy::Person, now).await,
            Err(ServiceError::Store(StoreError::InvalidTransition { .. }))
        ));
        let gone = CampaignId::generate();
        assert!(matches!(
            launch(&db, ws, gone, LaunchBy::Schedule, now).await,
            Ok(None)
        ));
    }
}
