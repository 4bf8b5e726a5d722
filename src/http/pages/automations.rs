//! Automations: the rules in the order they are tried, each one's recent replies, and a switch.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Serialize;

use super::{
    Frame, NoteQuery, PageError, Session, SignedForm, parse_id, render, see_other, short_time,
};
use crate::domain::auth::Ability;
use crate::domain::automation::Trigger;
use crate::domain::ids::AutomationId;
use crate::http::AppState;
use crate::service::automations;
use crate::store::Page;
use crate::store::automations::{Automation, AutomationFilter};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/automations", get(list))
        .route("/automations/{id}", get(show))
        .route("/automations/{id}/toggle", post(toggle))
}

#[derive(Serialize)]
struct Rule {
    id: AutomationId,
    name: String,
    priority: i64,
    enabled: bool,
    trigger: String,
    reply: String,
    cooldown_s: i64,
}

impl From<Automation> for Rule {
    fn from(rule: Automation) -> Self {
        let trigger = match &rule.trigger_spec.0 {
            Trigger::Keyword { keywords, mode } => {
                format!("{} {}", serde_plain(mode), keywords.join(", "))
            }
            Trigger::Welcome => "a contact's first message".to_owned(),
            Trigger::Away { .. } => "outside opening hours".to_owned(),
            Trigger::Fallback => "when no other rule answers".to_owned(),
        };
        let reply = match (&rule.reply_spec.0.content, &rule.reply_spec.0.template_id) {
            (Some(text), _) => text.clone(),
            (None, Some(template)) => format!("template {template}"),
            (None, None) => String::new(),
        };
        Self {
            id: rule.id,
            name: rule.name,
            priority: rule.priority,
            enabled: rule.enabled,
            trigger,
            reply,
            cooldown_s: rule.cooldown_s,
        }
    }
}

/// A keyword match mode as API.md spells it (`exact`, `contains`, …).
fn serde_plain(value: &impl Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_default()
}

async fn list(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<NoteQuery>,
) -> Result<Response, PageError> {
    // Reading rules is `campaigns.read`, as in the API.
    session.require(Ability::CampaignsRead)?;
    let all = Page {
        page: 1,
        per_page: Page::MAX_PER_PAGE,
    };
    let (rules, total) = automations::list(
        &state.db,
        session.workspace(),
        AutomationFilter::default(),
        all,
    )
    .await?;
    #[derive(Serialize)]
    struct Body {
        rules: Vec<Rule>,
        more: bool,
        may_write: bool,
    }
    let body = Body {
        more: total > i64::try_from(rules.len()).unwrap_or(i64::MAX),
        rules: rules.into_iter().map(Rule::from).collect(),
        may_write: session.may(Ability::AutomationsWrite),
    };
    Ok(render(
        "automations",
        Frame::new(&session, "Automations", query.note.as_deref()),
        &body,
    ))
}

async fn show(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(query): Query<NoteQuery>,
) -> Result<Response, PageError> {
    session.require(Ability::CampaignsRead)?;
    let id: AutomationId = parse_id(&id)?;
    let workspace = session.workspace();
    let rule = automations::get(&state.db, workspace, id).await?;
    let page = Page {
        page: 1,
        per_page: 50,
    };
    let (runs, total) = automations::runs(&state.db, workspace, id, page).await?;
    #[derive(Serialize)]
    struct RunRow {
        contact_id: String,
        at: String,
    }
    #[derive(Serialize)]
    struct Body {
        rule: Rule,
        runs: Vec<RunRow>,
        total: i64,
        may_write: bool,
    }
    let name = rule.name.clone();
    let body = Body {
        rule: rule.into(),
        runs: runs
            .into_iter()
            .map(|run| RunRow {
                contact_id: run.contact_id.to_string(),
                at: short_time(run.at),
            })
            .collect(),
        total,
        may_write: session.may(Ability::AutomationsWrite),
    };
    Ok(render(
        "automation",
        Frame::new(&session, &name, query.note.as_deref()),
        &body,
    ))
}

async fn toggle(
    State(state): State<AppState>,
    Path(id): Path<String>,
    SignedForm { session, .. }: SignedForm<serde::de::IgnoredAny>,
) -> Result<Response, PageError> {
    session.require(Ability::AutomationsWrite)?;
    let id: AutomationId = parse_id(&id)?;
    let rule = automations::toggle(&state.db, session.workspace(), id, state.clock.now()).await?;
    let note = if rule.enabled {
        "Turned on."
    } else {
        "Turned off."
    };
    Ok(see_other("/automations", Some(note)))
}
