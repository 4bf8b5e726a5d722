//! Senders: each one's pacing, today's sends against its cap and its warmup day, and a form
//! for its pacing.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use serde::{Deserialize, Serialize};

use super::{Frame, NoteQuery, PageError, Session, SignedForm, parse_id, render, see_other};
use crate::domain::auth::Ability;
use crate::domain::ids::SenderId;
use crate::domain::pacing::{Pacing, SendWindow};
use crate::domain::time::LocalTime;
use crate::domain::validation::FieldErrors;
use crate::http::AppState;
use crate::service::ServiceError;
use crate::service::senders::{self, SenderChange};
use crate::store::Page;
use crate::store::senders::Sender;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/senders", get(list))
        .route("/senders/{id}", get(show).post(save))
}

#[derive(Serialize)]
struct Row {
    id: SenderId,
    name: String,
    provider: String,
    timezone: String,
    sent_today: i64,
    cap: Option<u32>,
    warmup_day: Option<u32>,
    warmup_days: Option<u32>,
    /// The pacing gates that are on, as a person reads them.
    gates: Vec<String>,
}

async fn list(State(state): State<AppState>, session: Session) -> Result<Response, PageError> {
    session.require(Ability::SendersRead)?;
    let now = state.clock.now();
    let all = Page {
        page: 1,
        per_page: Page::MAX_PER_PAGE,
    };
    let (rows, total) = senders::list(&state.db, session.workspace(), all).await?;
    let mut senders_shown = Vec::with_capacity(rows.len());
    for sender in rows {
        let today = senders::today(&state.db, &sender, now).await?;
        let pacing = sender.pacing();
        let mut gates = Vec::new();
        if let Some(rate) = pacing.rate_per_minute {
            gates.push(format!("{rate} a minute at most"));
        }
        match (pacing.shift_min_ms, pacing.shift_max_ms) {
            (Some(min), Some(max)) => gates.push(format!("{min}–{max} ms between sends")),
            (Some(gap), None) | (None, Some(gap)) => gates.push(format!("{gap} ms between sends")),
            (None, None) => {}
        }
        if let (true, Some(cps)) = (pacing.typing_enabled, pacing.typing_cps) {
            gates.push(format!("types at {cps} characters a second"));
        }
        if let Some(window) = &pacing.send_window {
            let days: Vec<String> = window.days.iter().map(u8::to_string).collect();
            gates.push(format!(
                "sends {}–{} on days {} (1 = Monday)",
                window.start,
                window.end,
                days.join(",")
            ));
        }
        senders_shown.push(Row {
            id: sender.id,
            name: sender.name.clone(),
            provider: sender.provider.to_string(),
            timezone: sender.timezone.as_str().to_owned(),
            sent_today: today.sent,
            cap: today.limit,
            warmup_day: today.warmup_day,
            warmup_days: pacing.warmup().map(|warmup| warmup.days),
            gates,
        });
    }
    #[derive(Serialize)]
    struct Body {
        senders: Vec<Row>,
        more: bool,
    }
    let body = Body {
        more: total > i64::try_from(senders_shown.len()).unwrap_or(i64::MAX),
        senders: senders_shown,
    };
    Ok(render(
        "senders",
        Frame::new(&session, "Senders", None),
        &body,
    ))
}

/// A sender's pacing form, as posted: every field as typed (an empty one turns its gate off).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
struct PacingForm {
    name: String,
    timezone: String,
    daily_limit: String,
    warmup_enabled: Option<String>,
    warmup_start_limit: String,
    warmup_max_limit: String,
    warmup_days: String,
    rate_per_minute: String,
    shift_min_ms: String,
    shift_max_ms: String,
    typing_enabled: Option<String>,
    typing_cps: String,
    typing_min_ms: String,
    typing_max_ms: String,
    window_start: String,
    window_end: String,
    day_1: Option<String>,
    day_2: Option<String>,
    day_3: Option<String>,
    day_4: Option<String>,
    day_5: Option<String>,
    day_6: Option<String>,
    day_7: Option<String>,
}

impl PacingForm {
    fn of(sender: &Sender) -> Self {
        let pacing = sender.pacing();
        let number = |value: Option<u32>| value.map(|v| v.to_string()).unwrap_or_default();
        let window = pacing.send_window.as_ref();
        let day = |day: u8| {
            window
                .is_some_and(|window| window.days.contains(&day))
                .then(|| "on".to_owned())
        };
        Self {
            name: sender.name.clone(),
            timezone: sender.timezone.as_str().to_owned(),
            daily_limit: number(pacing.daily_limit),
            warmup_enabled: pacing.warmup_enabled.then(|| "on".to_owned()),
            warmup_start_limit: number(pacing.warmup_start_limit),
            warmup_max_limit: number(pacing.warmup_max_limit),
            warmup_days: number(pacing.warmup_days),
            rate_per_minute: number(pacing.rate_per_minute),
            shift_min_ms: number(pacing.shift_min_ms),
            shift_max_ms: number(pacing.shift_max_ms),
            typing_enabled: pacing.typing_enabled.then(|| "on".to_owned()),
            typing_cps: number(pacing.typing_cps),
            typing_min_ms: number(pacing.typing_min_ms),
            typing_max_ms: number(pacing.typing_max_ms),
            window_start: window.map(|w| w.start.to_string()).unwrap_or_default(),
            window_end: window.map(|w| w.end.to_string()).unwrap_or_default(),
            day_1: day(1),
            day_2: day(2),
            day_3: day(3),
            day_4: day(4),
            day_5: day(5),
            day_6: day(6),
            day_7: day(7),
        }
    }

    /// The pacing the form describes; each field that is not a number is named.
    fn pacing(&self) -> Result<Pacing, FieldErrors> {
        let mut errors = FieldErrors::new();
        let mut number = |field: &str, text: &str| -> Option<u32> {
            let text = text.trim();
            if text.is_empty() {
                return None;
            }
            text.parse()
                .map_err(|_| {
                    errors.add(
                        format!("pacing.{field}"),
                        format!("'{text}' is not a whole number"),
                    )
                })
                .ok()
        };
        let mut pacing = Pacing {
            daily_limit: number("daily_limit", &self.daily_limit),
            warmup_enabled: self.warmup_enabled.is_some(),
            warmup_start_limit: number("warmup_start_limit", &self.warmup_start_limit),
            warmup_max_limit: number("warmup_max_limit", &self.warmup_max_limit),
            warmup_days: number("warmup_days", &self.warmup_days),
            shift_min_ms: number("shift_min_ms", &self.shift_min_ms),
            shift_max_ms: number("shift_max_ms", &self.shift_max_ms),
            typing_enabled: self.typing_enabled.is_some(),
            typing_cps: number("typing_cps", &self.typing_cps),
            typing_min_ms: number("typing_min_ms", &self.typing_min_ms),
            typing_max_ms: number("typing_max_ms", &self.typing_max_ms),
            rate_per_minute: number("rate_per_minute", &self.rate_per_minute),
            send_window: None,
        };
        let (start, end) = (self.window_start.trim(), self.window_end.trim());
        if !start.is_empty() || !end.is_empty() {
            let time = |field: &str, text: &str, errors: &mut FieldErrors| {
                text.parse::<LocalTime>()
                    .map_err(|_| {
                        errors.add(
                            format!("pacing.send_window.{field}"),
                            "must be a time such as 09:00",
                        )
                    })
                    .ok()
            };
            let days: Vec<u8> = [
                &self.day_1,
                &self.day_2,
                &self.day_3,
                &self.day_4,
                &self.day_5,
                &self.day_6,
                &self.day_7,
            ]
            .iter()
            .zip(1u8..)
            .filter(|(checked, _)| checked.is_some())
            .map(|(_, day)| day)
            .collect();
            let start = time("start", start, &mut errors);
            let end = time("end", end, &mut errors);
            if let (Some(start), Some(end)) = (start, end) {
                pacing.send_window = Some(SendWindow { days, start, end });
            }
        }
        errors.into_result().map(|()| pacing)
    }
}

async fn show(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(query): Query<NoteQuery>,
) -> Result<Response, PageError> {
    session.require(Ability::SendersRead)?;
    let id: SenderId = parse_id(&id)?;
    let (sender, _) =
        senders::with_today(&state.db, session.workspace(), id, state.clock.now()).await?;
    let form = PacingForm::of(&sender);
    Ok(sender_page(&session, id, form, None, query.note.as_deref()))
}

fn sender_page(
    session: &Session,
    id: SenderId,
    form: PacingForm,
    problem: Option<String>,
    note: Option<&str>,
) -> Response {
    #[derive(Serialize)]
    struct Body {
        id: SenderId,
        form: PacingForm,
        problem: Option<String>,
        may_write: bool,
    }
    let title = form.name.clone();
    let refused = problem.is_some();
    let body = Body {
        id,
        form,
        problem,
        may_write: session.may(Ability::SendersWrite),
    };
    let mut response = render("sender", Frame::new(session, &title, note), &body);
    if refused {
        *response.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
    }
    response
}

/// Saves the name, time zone and pacing through the senders service (its checks, its rules for
/// warmup's start day); a refusal shows the form again with the reason.
async fn save(
    State(state): State<AppState>,
    Path(id): Path<String>,
    SignedForm { session, form }: SignedForm<PacingForm>,
) -> Result<Response, PageError> {
    session.require(Ability::SendersWrite)?;
    let id: SenderId = parse_id(&id)?;
    let pacing = match form.pacing() {
        Ok(pacing) => pacing,
        Err(errors) => {
            return Ok(sender_page(
                &session,
                id,
                form,
                Some(errors.to_string()),
                None,
            ));
        }
    };
    let change = SenderChange {
        name: Some(form.name.clone()),
        timezone: Some(form.timezone.clone()),
        pacing: Some(pacing),
        ..SenderChange::default()
    };
    let saved = senders::update(
        &state.db,
        session.workspace(),
        id,
        change,
        state.config.url_guard(),
        state.clock.now(),
    )
    .await;
    match saved {
        Ok(_) => Ok(see_other(&format!("/senders/{id}"), Some("Saved."))),
        Err(ServiceError::Validation(errors)) => Ok(sender_page(
            &session,
            id,
            form,
            Some(errors.to_string()),
            None,
        )),
        Err(error) => Err(error.into()),
    }
}
