//! Senders: each one's pacing, today's sends against its cap, and its warmup day.

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use serde::Serialize;

use super::{Frame, PageError, Session, render};
use crate::domain::auth::Ability;
use crate::http::AppState;
use crate::service::senders;
use crate::store::Page;

pub fn router() -> Router<AppState> {
    Router::new().route("/senders", get(list))
}

#[derive(Serialize)]
struct Row {
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
