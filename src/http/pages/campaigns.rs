//! Campaigns: the list, and a campaign's page with live counters and the state machine's
//! buttons. (The new-campaign form is `drafts.rs`.)

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    Choice, Frame, PageError, Pager, Session, SignedForm, charts, live_json, parse_id, render,
    see_other, short_time,
};
use crate::domain::auth::Ability;
use crate::domain::campaign::CampaignStatus;
use crate::domain::ids::CampaignId;
use crate::domain::message::MessageStatus;
use crate::http::AppState;
use crate::service::analytics::{self, Bucket};
use crate::service::campaigns::{self as service, LaunchBy};
use crate::service::{ServiceError, messages, senders};
use crate::store::Page;
use crate::store::campaigns::Campaign;
use crate::store::messages::MessageFilter;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/campaigns", get(list))
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
