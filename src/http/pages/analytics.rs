//! Analytics: a period's totals, activity by local hour of the day, and campaigns' delivery and
//! read rates over time, all from the rollups the API's analytics read.

use axum::Router;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use serde::{Deserialize, Serialize};

use super::{Frame, PageError, Session, charts, render};
use crate::domain::analytics::Period;
use crate::domain::auth::Ability;
use crate::http::AppState;
use crate::service::analytics::{self, ActivityDirection};

pub fn router() -> Router<AppState> {
    Router::new().route("/analytics", get(show))
}

#[derive(Clone, Default, Deserialize, Serialize)]
#[serde(default)]
struct PeriodQuery {
    from: String,
    to: String,
    timezone: String,
}

async fn show(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<PeriodQuery>,
) -> Result<Response, PageError> {
    session.require(Ability::AnalyticsRead)?;
    let given = |text: &str| {
        Some(text.trim())
            .filter(|text| !text.is_empty())
            .map(str::to_owned)
    };
    let (from, to, zone) = (given(&query.from), given(&query.to), given(&query.timezone));
    let period = Period::parse(
        from.as_deref(),
        to.as_deref(),
        zone.as_deref(),
        state.clock.now(),
    )
    .map_err(|errors| PageError::Invalid(errors.to_string()))?;
    let workspace = session.workspace();
    let campaigns = analytics::campaigns(&state.db, workspace, period).await?;
    let activity = analytics::activity(&state.db, workspace, period, None).await?;
    let (mut outbound, mut inbound) = ([0i64; 24], [0i64; 24]);
    for slot in &activity {
        let hour = (slot.hour as usize).min(23);
        match slot.direction {
            ActivityDirection::Outbound => outbound[hour] += slot.count,
            ActivityDirection::Inbound => inbound[hour] += slot.count,
        }
    }
    // Oldest first, for a line over time; campaigns that never sent have no rates.
    let mut rates: Vec<_> = campaigns
        .campaigns
        .iter()
        .filter(|campaign| campaign.sent > 0)
        .filter_map(|campaign| {
            campaign
                .started_at
                .map(|at| (at, campaign.delivery_rate, campaign.read_rate))
        })
        .collect();
    rates.sort_by_key(|point| point.0);
    #[derive(Serialize)]
    struct Body {
        query: PeriodQuery,
        from: String,
        to: String,
        zone: String,
        summary: analytics::CampaignsSummary,
        sent: i64,
        received: i64,
        hours_chart: String,
        rates_chart: String,
        campaigns: Vec<analytics::CampaignReport>,
    }
    let body = Body {
        from: period.from.to_string(),
        to: period.to.to_string(),
        zone: period.zone.name().to_owned(),
        summary: campaigns.summary.clone(),
        sent: outbound.iter().sum(),
        received: inbound.iter().sum(),
        hours_chart: charts::hours(&outbound, &inbound),
        rates_chart: charts::rates(&rates),
        campaigns: campaigns.campaigns.into_iter().take(50).collect(),
        query,
    };
    Ok(render(
        "analytics",
        Frame::new(&session, "Analytics", None),
        &body,
    ))
}
