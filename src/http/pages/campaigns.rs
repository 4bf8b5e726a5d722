//! Campaigns: the list, a campaign's page with live counters and the state machine's buttons,
//! and the new-campaign form with its preview, recipient count and finish estimate.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    Frame, PageError, Pager, Session, SignedForm, charts, live_json, parse_id, render, see_other,
    short_time,
};
use crate::domain::auth::Ability;
use crate::domain::campaign::{Audience, CampaignStatus};
use crate::domain::estimate::Finish;
use crate::domain::ids::{CampaignId, GroupId, SenderId, TemplateId};
use crate::domain::message::MessageStatus;
use crate::http::AppState;
use crate::service::analytics::{self, Bucket};
use crate::service::campaigns::{self as service, Draft, LaunchBy};
use crate::service::{ServiceError, contacts, groups, messages, senders, templates};
use crate::store::Page;
use crate::store::campaigns::Campaign;
use crate::store::messages::MessageFilter;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/campaigns", get(list).post(create))
        .route("/campaigns/new", get(new_form))
        .route("/campaigns/new/check", get(check))
        .route("/campaigns/{id}", get(show))
        .route("/campaigns/{id}/live", get(live))
        .route("/campaigns/{id}/{action}", post(act))
}

/// Rows of lists and pages: 50, as the API's default page.
const PER_PAGE: u32 = 50;

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    status: String,
    page: Option<u32>,
    note: Option<String>,
}

#[derive(Serialize)]
struct Row {
    id: CampaignId,
    name: String,
    status: CampaignStatus,
    total: i64,
    done: i64,
    sent: i64,
    delivered: i64,
    read: i64,
    failed: i64,
    created_at: DateTime<Utc>,
    created: String,
}

impl From<Campaign> for Row {
    fn from(campaign: Campaign) -> Self {
        Self {
            done: campaign.total_count - campaign.pending_count,
            id: campaign.id,
            name: campaign.name,
            status: campaign.status,
            total: campaign.total_count,
            sent: campaign.sent_count,
            delivered: campaign.delivered_count,
            read: campaign.read_count,
            failed: campaign.failed_count,
            created: short_time(campaign.created_at),
            created_at: campaign.created_at,
        }
    }
}

const STATUSES: [CampaignStatus; 6] = [
    CampaignStatus::Draft,
    CampaignStatus::Scheduled,
    CampaignStatus::Running,
    CampaignStatus::Paused,
    CampaignStatus::Completed,
    CampaignStatus::Canceled,
];

#[derive(Serialize)]
struct Choice {
    value: String,
    label: String,
    selected: bool,
}

impl Choice {
    fn of(value: impl ToString, label: impl ToString, selected: bool) -> Self {
        Self {
            value: value.to_string(),
            label: label.to_string(),
            selected,
        }
    }
}

async fn list(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<ListQuery>,
) -> Result<Response, PageError> {
    session.require(Ability::CampaignsRead)?;
    let status = STATUSES
        .into_iter()
        .find(|status| status.to_string() == query.status);
    let page = Page {
        page: query.page.unwrap_or(1).max(1),
        per_page: PER_PAGE,
    };
    let (campaigns, total) = service::list(&state.db, session.workspace(), status, page).await?;
    #[derive(Serialize)]
    struct Body {
        campaigns: Vec<Row>,
        statuses: Vec<Choice>,
        filtered: bool,
        pager: Pager,
    }
    let base = match status {
        Some(status) => format!("/campaigns?status={status}"),
        None => "/campaigns?".to_owned(),
    };
    let body = Body {
        campaigns: campaigns.into_iter().map(Row::from).collect(),
        statuses: STATUSES
            .iter()
            .map(|s| Choice::of(s, s, Some(*s) == status))
            .collect(),
        filtered: status.is_some(),
        pager: Pager::new(&base, page, total),
    };
    Ok(render(
        "campaigns",
        Frame::new(&session, "Campaigns", query.note.as_deref()),
        &body,
    ))
}

/// The moves a person can make on a campaign's page, in the order the buttons show.
const ACTIONS: [(&str, &str, CampaignStatus); 4] = [
    ("start", "Start now", CampaignStatus::Running),
    ("pause", "Pause", CampaignStatus::Paused),
    ("resume", "Resume", CampaignStatus::Running),
    ("cancel", "Cancel", CampaignStatus::Canceled),
];

/// Which buttons a campaign in `status` offers: the state machine's moves out of it (start only
/// from a draft or a schedule, resume only from a pause).
fn allowed_actions(status: CampaignStatus) -> Vec<&'static str> {
    ACTIONS
        .iter()
        .filter(|(name, _, target)| {
            let from_pause = status == CampaignStatus::Paused;
            status.can_become(*target)
                && match *name {
                    "start" => !from_pause && status != CampaignStatus::Running,
                    "resume" => from_pause,
                    _ => true,
                }
        })
        .map(|(name, _, _)| *name)
        .collect()
}

#[derive(Serialize)]
struct Stats {
    total: i64,
    done: i64,
    pending: i64,
    sent: i64,
    delivered: i64,
    read: i64,
    failed: i64,
    skipped: i64,
    delivery_rate: f64,
    read_rate: f64,
    status: CampaignStatus,
    actions: Vec<&'static str>,
}

impl Stats {
    fn of(campaign: &Campaign) -> Self {
        let stats = campaign.stats();
        let counters = stats.counters;
        Self {
            total: counters.total,
            done: counters.total - counters.pending,
            pending: counters.pending,
            sent: counters.sent,
            delivered: counters.delivered,
            read: counters.read,
            failed: counters.failed,
            skipped: counters.skipped,
            delivery_rate: stats.delivery_rate,
            read_rate: stats.read_rate,
            status: campaign.status,
            actions: allowed_actions(campaign.status),
        }
    }
}

#[derive(Deserialize)]
struct ShowQuery {
    status: Option<String>,
    /// The page of the shown status's messages.
    page: Option<u32>,
    note: Option<String>,
}

async fn show(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(query): Query<ShowQuery>,
) -> Result<Response, PageError> {
    session.require(Ability::CampaignsRead)?;
    let id: CampaignId = parse_id(&id)?;
    let workspace = session.workspace();
    let campaign = service::get(&state.db, workspace, id).await?;
    let sender = senders::with_today(&state.db, workspace, campaign.sender_id, state.clock.now())
        .await
        .map(|(sender, _)| sender.name)
        .unwrap_or_default();
    let stats = Stats::of(&campaign);
    // The tabs count as the counters above do (by stage: `sent` includes what was delivered
    // since); each lists the messages whose status is that stage now.
    let counts = [
        (MessageStatus::Pending, stats.pending),
        (MessageStatus::Sent, stats.sent),
        (MessageStatus::Delivered, stats.delivered),
        (MessageStatus::Read, stats.read),
        (MessageStatus::Failed, stats.failed),
        (MessageStatus::Skipped, stats.skipped),
    ];
    let shown = query
        .status
        .as_deref()
        .and_then(|wanted| counts.iter().find(|(s, _)| s.to_string() == wanted))
        .or_else(|| counts.iter().find(|(_, count)| *count > 0))
        .map_or(MessageStatus::Pending, |(status, _)| *status);
    let page = Page {
        page: query.page.unwrap_or(1).max(1),
        per_page: PER_PAGE,
    };
    let filter = MessageFilter {
        campaign: Some(id),
        status: Some(shown),
        ..MessageFilter::default()
    };
    let rows = messages::rows(&state.db, workspace, filter, page).await?;
    let more = (rows.len() == PER_PAGE as usize)
        .then(|| format!("/campaigns/{id}?status={shown}&page={}", page.page + 1));
    let chart = if session.may(Ability::AnalyticsRead) {
        let bucket = match (campaign.started_at, campaign.completed_at) {
            (Some(start), Some(end)) if end - start < chrono::Duration::hours(6) => Bucket::Minute,
            (Some(start), None) if state.clock.now() - start < chrono::Duration::hours(6) => {
                Bucket::Minute
            }
            _ => Bucket::Hour,
        };
        let points = analytics::timeline(&state.db, workspace, id, bucket).await?;
        (!points.is_empty()).then(|| charts::timeline(&points, bucket))
    } else {
        None
    };

    #[derive(Serialize)]
    struct Shown {
        id: CampaignId,
        name: String,
        status: CampaignStatus,
        sender: String,
        scheduled_at: Option<DateTime<Utc>>,
        paused_reason: Option<String>,
    }
    #[derive(Serialize)]
    struct Action {
        name: &'static str,
        label: &'static str,
        allowed: bool,
    }
    #[derive(Serialize)]
    struct Tab {
        status: MessageStatus,
        count: i64,
        current: bool,
    }
    #[derive(Serialize)]
    struct MessageRow {
        contact_id: Option<String>,
        phone: String,
        status: MessageStatus,
        content: String,
        updated_at: DateTime<Utc>,
        updated: String,
        error: Option<String>,
    }
    #[derive(Serialize)]
    struct Body {
        campaign: Shown,
        stats: Stats,
        may_write: bool,
        actions: Vec<Action>,
        chart: Option<String>,
        tabs: Vec<Tab>,
        status: MessageStatus,
        messages: Vec<MessageRow>,
        more: Option<String>,
    }
    let body = Body {
        may_write: session.may(Ability::CampaignsWrite),
        actions: ACTIONS
            .iter()
            .map(|(name, label, _)| Action {
                name,
                label,
                allowed: stats.actions.contains(name),
            })
            .collect(),
        stats,
        chart,
        tabs: counts
            .iter()
            .map(|(status, count)| Tab {
                status: *status,
                count: *count,
                current: *status == shown,
            })
            .collect(),
        status: shown,
        messages: rows
            .into_iter()
            .map(|message| MessageRow {
                contact_id: message.contact_id.map(|id| id.to_string()),
                phone: message.phone,
                status: message.status,
                content: message.body.unwrap_or_default(),
                updated: short_time(message.updated_at),
                updated_at: message.updated_at,
                error: message.error,
            })
            .collect(),
        more,
        campaign: Shown {
            id: campaign.id,
            name: campaign.name.clone(),
            status: campaign.status,
            sender,
            scheduled_at: campaign.scheduled_at,
            paused_reason: campaign.paused_reason.clone(),
        },
    };
    Ok(render(
        "campaign",
        Frame::new(&session, &campaign.name, query.note.as_deref()),
        &body,
    ))
}

/// The counters of a campaign's page, polled by its script: one row read.
async fn live(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    session.require(Ability::CampaignsRead)?;
    let id: CampaignId = parse_id(&id)?;
    let campaign = service::get(&state.db, session.workspace(), id).await?;
    Ok(live_json(&Stats::of(&campaign)))
}

/// A button of the state machine. A move the campaign no longer allows (another person or the
/// engine moved it since the page was drawn) comes back to the page with the reason.
async fn act(
    State(state): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    SignedForm { session, .. }: SignedForm<serde::de::IgnoredAny>,
) -> Result<Response, PageError> {
    session.require(Ability::CampaignsWrite)?;
    let id: CampaignId = parse_id(&id)?;
    let (workspace, now) = (session.workspace(), state.clock.now());
    let done = match action.as_str() {
        "start" => service::launch(&state.db, workspace, id, LaunchBy::Person, now)
            .await
            .map(|_| "Started."),
        "pause" => service::pause(&state.db, workspace, id, now)
            .await
            .map(|_| "Paused: no new send starts."),
        "resume" => service::resume(&state.db, workspace, id, now)
            .await
            .map(|_| "Resumed."),
        "cancel" => service::cancel(&state.db, workspace, id, now)
            .await
            .map(|_| "Canceled: its pending messages are skipped."),
        _ => return Err(PageError::NotFound),
    };
    let page = format!("/campaigns/{id}");
    match done {
        Ok(note) => Ok(see_other(&page, Some(note))),
        Err(ServiceError::Store(crate::store::StoreError::InvalidTransition { current })) => {
            Ok(see_other(
                &page,
                Some(&format!(
                    "Cannot {action} this campaign: it is {current} now."
                )),
            ))
        }
        Err(error) => Err(error.into()),
    }
}

/// The new-campaign form as posted (and as its checks are asked for), every field as typed.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
struct DraftForm {
    name: String,
    sender_id: String,
    template_id: String,
    content: String,
    media_url: String,
    variables: String,
    audience: String,
    group_id: String,
    tags: String,
    phones: String,
    preview_phone: String,
    when: String,
    schedule_at: String,
    timezone: String,
}

impl DraftForm {
    fn sender(&self) -> Result<SenderId, ServiceError> {
        self.sender_id
            .parse()
            .map_err(|_| ServiceError::validation("sender_id", "choose a sender"))
    }

    fn template(&self) -> Result<Option<TemplateId>, ServiceError> {
        match self.template_id.trim() {
            "" => Ok(None),
            id => id
                .parse()
                .map(Some)
                .map_err(|_| ServiceError::validation("template_id", "no such template")),
        }
    }

    /// `name=value` lines; a line without `=` is refused rather than guessed at.
    fn variables(&self) -> Result<BTreeMap<String, String>, ServiceError> {
        let mut variables = BTreeMap::new();
        for line in self
            .variables
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
        {
            let (name, value) = line.split_once('=').ok_or_else(|| {
                ServiceError::validation("variables", format!("'{line}' is not name=value"))
            })?;
            variables.insert(name.trim().to_owned(), value.trim().to_owned());
        }
        Ok(variables)
    }

    async fn audience(
        &self,
        state: &AppState,
        session: &Session,
    ) -> Result<Audience, ServiceError> {
        Ok(match self.audience.as_str() {
            "group" => Audience::Group {
                group_id: self
                    .group_id
                    .parse::<GroupId>()
                    .map_err(|_| ServiceError::validation("group_id", "choose a group"))?,
            },
            "tags" => Audience::Tags {
                tags: self
                    .tags
                    .split(',')
                    .map(str::trim)
                    .filter(|tag| !tag.is_empty())
                    .map(str::to_owned)
                    .collect(),
            },
            "contacts" => {
                let phones: Vec<&str> = self
                    .phones
                    .lines()
                    .flat_map(|line| line.split(','))
                    .map(str::trim)
                    .filter(|phone| !phone.is_empty())
                    .collect();
                let contact_ids =
                    contacts::ids_by_phone(&state.db, session.workspace(), &phones, "phones")
                        .await?;
                Audience::Contacts { contact_ids }
            }
            _ => Audience::All,
        })
    }

    /// The text the campaign would send: its template's, or what was typed.
    async fn text(&self, state: &AppState, session: &Session) -> Result<String, ServiceError> {
        match self.template()? {
            Some(id) => Ok(templates::get(&state.db, session.workspace(), id)
                .await?
                .content),
            None => Ok(self.content.clone()),
        }
    }

    /// When it would start: now, or its schedule.
    async fn start(
        &self,
        state: &AppState,
        session: &Session,
    ) -> Result<DateTime<Utc>, ServiceError> {
        if self.when != "schedule" {
            return Ok(state.clock.now());
        }
        let (sender, _) = senders::with_today(
            &state.db,
            session.workspace(),
            self.sender()?,
            state.clock.now(),
        )
        .await?;
        let zone = Some(self.timezone.trim()).filter(|zone| !zone.is_empty());
        service::schedule_time(&self.schedule_at, zone, sender.timezone.as_str())
    }
}

async fn new_form(State(state): State<AppState>, session: Session) -> Result<Response, PageError> {
    session.require(Ability::CampaignsWrite)?;
    draft_page(&state, &session, DraftForm::default(), None).await
}

/// The form, filled with what was typed, and the problem that kept it from being created.
async fn draft_page(
    state: &AppState,
    session: &Session,
    form: DraftForm,
    problem: Option<String>,
) -> Result<Response, PageError> {
    let workspace = session.workspace();
    let choices = Page {
        page: 1,
        per_page: Page::MAX_PER_PAGE,
    };
    let (senders, _) = senders::list(&state.db, workspace, choices).await?;
    let (templates, _) = templates::list(&state.db, workspace, choices).await?;
    let (groups, _) = groups::list(&state.db, workspace, choices).await?;
    #[derive(Serialize)]
    struct Pick {
        id: String,
        name: String,
        provider: String,
        timezone: String,
        selected: bool,
    }
    #[derive(Serialize)]
    struct Body {
        form: DraftForm,
        problem: Option<String>,
        senders: Vec<Pick>,
        templates: Vec<Pick>,
        groups: Vec<Pick>,
        audiences: Vec<Choice>,
        whens: Vec<Choice>,
    }
    let option = |id: String, name: String, selected: &str| Pick {
        selected: id == selected,
        id,
        name,
        provider: String::new(),
        timezone: String::new(),
    };
    let audience = if form.audience.is_empty() {
        "all"
    } else {
        &form.audience
    };
    let when = if form.when.is_empty() {
        "draft"
    } else {
        &form.when
    };
    let body = Body {
        senders: senders
            .into_iter()
            .map(|sender| Pick {
                provider: sender.provider.to_string(),
                timezone: sender.timezone.as_str().to_owned(),
                ..option(sender.id.to_string(), sender.name, &form.sender_id)
            })
            .collect(),
        templates: templates
            .into_iter()
            .map(|t| option(t.id.to_string(), t.name, &form.template_id))
            .collect(),
        groups: groups
            .into_iter()
            .map(|g| option(g.id.to_string(), g.name, &form.group_id))
            .collect(),
        audiences: [
            ("all", "Every contact"),
            ("group", "A group"),
            ("tags", "Contacts with tags"),
            ("contacts", "These contacts"),
        ]
        .into_iter()
        .map(|(value, label)| Choice::of(value, label, value == audience))
        .collect(),
        whens: [
            ("draft", "Keep as a draft"),
            ("now", "Start now"),
            ("schedule", "At a time"),
        ]
        .into_iter()
        .map(|(value, label)| Choice::of(value, label, value == when))
        .collect(),
        form,
        problem,
    };
    let refused = body.problem.is_some();
    let mut response = render(
        "campaign_new",
        Frame::new(session, "New campaign", None),
        &body,
    );
    if refused {
        *response.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
    }
    Ok(response)
}

/// The draft's preview, recipient count and finish estimate, as the form changes.
async fn check(
    State(state): State<AppState>,
    session: Session,
    Query(form): Query<DraftForm>,
) -> Result<Response, PageError> {
    session.require(Ability::CampaignsWrite)?;
    let workspace = session.workspace();
    let text = form.text(&state, &session).await;
    let preview = match &text {
        Ok(text) if text.trim().is_empty() => Err("write the text or choose a template".into()),
        Ok(text) => {
            let contact = match form.preview_phone.trim() {
                "" => None,
                phone => match contacts::find_by_phone(&state.db, workspace, phone).await? {
                    Some(contact) => Some(contact.id),
                    None => None,
                },
            };
            match form.variables() {
                Ok(variables) => {
                    templates::preview_text(&state.db, workspace, text, contact, &variables)
                        .await
                        .map_err(|error| problem_text(&error))
                }
                Err(error) => Err(problem_text(&error)),
            }
        }
        Err(error) => Err(problem_text(error)),
    };
    let recipients = match form.audience(&state, &session).await {
        Ok(audience) => service::audience_size(&state.db, workspace, &audience)
            .await
            .map_err(|error| problem_text(&error)),
        Err(error) => Err(problem_text(&error)),
    };
    let estimate = match (
        &recipients,
        form.sender(),
        form.start(&state, &session).await,
    ) {
        (Ok(count), Ok(sender), Ok(start)) => {
            let chars = preview.as_ref().map_or(0, |text| text.chars().count());
            match service::forecast(&state.db, workspace, sender, *count, chars, start).await {
                Ok(Finish::Unpaced) => "minutes: nothing paces this sender".to_owned(),
                Ok(Finish::At(at)) => finish_text(at, start),
                Ok(Finish::Never) => "never: the sender's cap or window allows no sends".to_owned(),
                Err(error) => problem_text(&error),
            }
        }
        (Err(_), _, _) => "–".to_owned(),
        (_, Err(error), _) | (_, _, Err(error)) => problem_text(&error),
    };
    #[derive(Serialize)]
    struct Checked {
        preview: String,
        preview_ok: bool,
        recipients: String,
        estimate: String,
    }
    Ok(live_json(&Checked {
        preview_ok: preview.is_ok(),
        preview: preview.unwrap_or_else(|problem| problem),
        recipients: match recipients {
            Ok(count) => count.to_string(),
            Err(problem) => problem,
        },
        estimate,
    }))
}

fn finish_text(at: DateTime<Utc>, start: DateTime<Utc>) -> String {
    let took = at - start;
    let span = if took < chrono::Duration::minutes(1) {
        "within a minute".to_owned()
    } else if took < chrono::Duration::hours(2) {
        format!("in about {} minutes", took.num_minutes())
    } else if took < chrono::Duration::days(2) {
        format!("in about {} hours", took.num_hours())
    } else {
        format!("in about {} days", took.num_days())
    };
    format!("{} ({span} from its start)", short_time(at))
}

/// A service's refusal as one line for a person.
fn problem_text(error: &ServiceError) -> String {
    match error {
        ServiceError::Validation(errors) => errors.to_string(),
        ServiceError::Store(crate::store::StoreError::NotFound) => {
            "not found in this workspace".to_owned()
        }
        ServiceError::Store(_) => "could not be checked just now".to_owned(),
    }
}

/// Creates the draft, then schedules or starts it as asked. A refusal shows the form again,
/// filled in, with the reason.
async fn create(
    State(state): State<AppState>,
    SignedForm { session, form }: SignedForm<DraftForm>,
) -> Result<Response, PageError> {
    session.require(Ability::CampaignsWrite)?;
    let workspace = session.workspace();
    let now = state.clock.now();
    let draft = async {
        let content = form.template()?.is_none().then(|| form.content.clone());
        Ok::<_, ServiceError>(Draft {
            name: form.name.trim().to_owned(),
            sender_id: form.sender()?,
            template_id: form.template()?,
            content,
            media_url: Some(form.media_url.trim().to_owned()).filter(|url| !url.is_empty()),
            audience: form.audience(&state, &session).await?,
            variables: form.variables()?,
        })
    }
    .await;
    let created = match draft {
        Ok(draft) => service::create(&state.db, workspace, draft, now).await,
        Err(error) => Err(error),
    };
    let campaign = match created {
        Ok(campaign) => campaign,
        Err(ServiceError::Store(error)) if !matches!(error, crate::store::StoreError::NotFound) => {
            return Err(error.into());
        }
        Err(error) => {
            let problem = problem_text(&error);
            return draft_page(&state, &session, form, Some(problem)).await;
        }
    };
    let page = format!("/campaigns/{}", campaign.id);
    let next = match form.when.as_str() {
        "now" => service::launch(&state.db, workspace, campaign.id, LaunchBy::Person, now)
            .await
            .map(|_| "Created and started."),
        "schedule" => {
            let zone = Some(form.timezone.trim()).filter(|zone| !zone.is_empty());
            service::schedule(
                &state.db,
                workspace,
                campaign.id,
                &form.schedule_at,
                zone,
                now,
            )
            .await
            .map(|_| "Created and scheduled.")
        }
        _ => Ok("Created as a draft."),
    };
    match next {
        Ok(note) => Ok(see_other(&page, Some(note))),
        Err(error) => Ok(see_other(
            &page,
            Some(&format!(
                "Created as a draft, but not {}: {}",
                if form.when == "now" {
                    "started"
                } else {
                    "scheduled"
                },
                problem_text(&error)
            )),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buttons_follow_the_state_machine() {
        use CampaignStatus::*;
        assert_eq!(allowed_actions(Draft), ["start"]);
        assert_eq!(allowed_actions(Scheduled), ["start", "cancel"]);
        assert_eq!(allowed_actions(Running), ["pause", "cancel"]);
        assert_eq!(allowed_actions(Paused), ["resume", "cancel"]);
        assert!(allowed_actions(Completed).is_empty());
        assert!(allowed_actions(Canceled).is_empty());
    }
}
