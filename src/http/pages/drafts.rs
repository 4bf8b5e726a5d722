//! The new-campaign form: a draft written with its preview for a chosen contact, its
//! recipient count and its earliest finish under the sender's pacing, then created, started or
//! scheduled through the campaigns service.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    Choice, Frame, PageError, Session, SignedForm, live_json, render, see_other, short_time,
};
use crate::domain::auth::Ability;
use crate::domain::campaign::Audience;
use crate::domain::estimate::Finish;
use crate::domain::ids::{GroupId, SenderId, TemplateId};
use crate::http::AppState;
use crate::service::campaigns::{self as service, Draft, LaunchBy};
use crate::service::{ServiceError, contacts, groups, senders, templates};
use crate::store::Page;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/campaigns", axum::routing::post(create))
        .route("/campaigns/new", get(new_form))
        .route("/campaigns/new/check", get(check))
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
