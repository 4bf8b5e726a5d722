//! `/v1/analytics/*` and a campaign's timeline: what the analyst reads, from the rollups.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::{Authorized, can};
use super::error::{ApiError, ApiResult};
use super::extract::{Id, JsonRows, Query};
use crate::domain::analytics::Period;
use crate::domain::ids::{CampaignId, SenderId};
use crate::domain::message::MessageStatus;
use crate::service::analytics::{
    self as service, ActivitySlot, Bucket, CampaignsReport, ContactsReport, Overview,
    SendersReport, TimelinePoint,
};
use crate::service::exports;
use crate::store::contacts::ContactFilter;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(overview))
        .routes(routes!(campaigns))
        .routes(routes!(senders))
        .routes(routes!(contacts))
        .routes(routes!(activity))
        .routes(routes!(timeline))
        .routes(routes!(export_contacts))
        .routes(routes!(export_campaign_messages))
}

/// A period of local dates: `from` and `to` inclusive (`YYYY-MM-DD`) in `timezone`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct PeriodQuery {
    /// First local date; default 29 days before `to`.
    from: Option<String>,
    /// Last local date; default today. At most 366 days after `from`.
    to: Option<String>,
    /// IANA zone of the dates and hours; default UTC.
    timezone: Option<String>,
}

impl PeriodQuery {
    fn period(&self, state: &AppState) -> Result<Period, ApiError> {
        Ok(Period::parse(
            self.from.as_deref(),
            self.to.as_deref(),
            self.timezone.as_deref(),
            state.clock.now(),
        )?)
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ZoneQuery {
    /// IANA zone that "today" and "this month" are in; default UTC.
    timezone: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ActivityQuery {
    from: Option<String>,
    to: Option<String>,
    timezone: Option<String>,
    /// Only this sender's messages.
    sender_id: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct TimelineQuery {
    /// `minute` or `hour` (default).
    #[param(inline)]
    bucket: Option<Bucket>,
}

/// The workspace today
#[utoipa::path(get, path = "/v1/analytics/overview", tag = "analytics", params(ZoneQuery),
    responses((status = 200, description = "Contacts, senders, campaigns and today's messages", body = Overview)))]
async fn overview(
    auth: Authorized<can::AnalyticsRead>,
    State(state): State<AppState>,
    Query(query): Query<ZoneQuery>,
) -> ApiResult<Json<Overview>> {
    // Only the zone matters here; the period's rules check it.
    let period = Period::parse(None, None, query.timezone.as_deref(), state.clock.now())?;
    Ok(Json(
        service::overview(&state.db, auth.workspace, period.zone, state.clock.now()).await?,
    ))
}

/// Campaigns that started in a period
#[utoipa::path(get, path = "/v1/analytics/campaigns", tag = "analytics", params(PeriodQuery),
    responses((status = 200, description = "Their summary and each one, newest first", body = CampaignsReport)))]
async fn campaigns(
    auth: Authorized<can::AnalyticsRead>,
    State(state): State<AppState>,
    Query(query): Query<PeriodQuery>,
) -> ApiResult<Json<CampaignsReport>> {
    let period = query.period(&state)?;
    Ok(Json(
        service::campaigns(&state.db, auth.workspace, period).await?,
    ))
}

/// Each sender's messages in a period
#[utoipa::path(get, path = "/v1/analytics/senders", tag = "analytics", params(PeriodQuery),
    responses((status = 200, description = "Every sender, oldest first", body = SendersReport)))]
async fn senders(
    auth: Authorized<can::AnalyticsRead>,
    State(state): State<AppState>,
    Query(query): Query<PeriodQuery>,
) -> ApiResult<Json<SendersReport>> {
    let period = query.period(&state)?;
    Ok(Json(
        service::senders(&state.db, auth.workspace, period).await?,
    ))
}

/// How the contact list grows
#[utoipa::path(get, path = "/v1/analytics/contacts", tag = "analytics", params(PeriodQuery),
    responses((status = 200, description = "Totals and new contacts per date", body = ContactsReport)))]
async fn contacts(
    auth: Authorized<can::AnalyticsRead>,
    State(state): State<AppState>,
    Query(query): Query<PeriodQuery>,
) -> ApiResult<Json<ContactsReport>> {
    let period = query.period(&state)?;
    Ok(Json(
        service::contacts(&state.db, auth.workspace, period).await?,
    ))
}

/// Messages by local date and hour
///
/// Sends (`outbound`) and inbound messages per hour of `timezone`; only hours that had some.
#[utoipa::path(get, path = "/v1/analytics/activity", tag = "analytics", params(ActivityQuery),
    responses((status = 200, description = "Non-zero hours in order", body = Vec<ActivitySlot>)))]
async fn activity(
    auth: Authorized<can::AnalyticsRead>,
    State(state): State<AppState>,
    Query(query): Query<ActivityQuery>,
) -> ApiResult<JsonRows<ActivitySlot>> {
    let period = PeriodQuery {
        from: query.from,
        to: query.to,
        timezone: query.timezone,
    }
    .period(&state)?;
    let sender = match query.sender_id.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => Some(
            text.parse::<SenderId>()
                .map_err(|_| ApiError::validation("sender_id", "is not a sender id"))?,
        ),
    };
    Ok(JsonRows(
        service::activity(&state.db, auth.workspace, period, sender).await?,
    ))
}

/// A campaign's timeline
///
/// What happened to its messages per UTC minute or hour: the buckets where something did.
#[utoipa::path(get, path = "/v1/campaigns/{id}/timeline", tag = "analytics",
    params(("id" = CampaignId, Path, description = "Campaign id"), TimelineQuery),
    responses((status = 200, description = "Buckets in order", body = Vec<TimelinePoint>)))]
async fn timeline(
    auth: Authorized<can::AnalyticsRead>,
    State(state): State<AppState>,
    Id(id): Id<CampaignId>,
    Query(query): Query<TimelineQuery>,
) -> ApiResult<JsonRows<TimelinePoint>> {
    Ok(JsonRows(
        service::timeline(
            &state.db,
            auth.workspace,
            id,
            query.bucket.unwrap_or_default(),
        )
        .await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ContactExportQuery {
    /// Only contacts with this tag.
    tag: Option<String>,
    opted_out: Option<bool>,
    blocked: Option<bool>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct MessageExportQuery {
    /// Only messages in this status.
    #[param(inline)]
    status: Option<MessageStatus>,
}

/// A streamed CSV file, offered for download as `filename`.
fn csv_file(
    filename: &str,
    rows: impl futures::Stream<Item = exports::Chunk> + Send + 'static,
) -> Response {
    let disposition = format!("attachment; filename=\"{filename}\"");
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&disposition)
                    .unwrap_or_else(|_| HeaderValue::from_static("attachment")),
            ),
        ],
        Body::from_stream(rows),
    )
        .into_response()
}

/// Export contacts as CSV
///
/// Streamed, with the import's columns (`phone, name, email, tags, timezone`, then custom
/// fields), so the file imports back as it is.
#[utoipa::path(get, path = "/v1/contacts/export", tag = "analytics", params(ContactExportQuery),
    responses((status = 200, description = "CSV", body = String, content_type = "text/csv")))]
async fn export_contacts(
    auth: Authorized<can::AnalyticsRead>,
    State(state): State<AppState>,
    Query(query): Query<ContactExportQuery>,
) -> ApiResult<Response> {
    let filter = ContactFilter {
        search: None,
        tag: query.tag.filter(|tag| !tag.trim().is_empty()),
        opted_out: query.opted_out,
        blocked: query.blocked,
    };
    let rows = exports::contacts_csv(&state.db, auth.workspace, filter).await?;
    Ok(csv_file("contacts.csv", rows))
}

/// Export a campaign's messages as CSV
///
/// Streamed, by status then id.
#[utoipa::path(get, path = "/v1/campaigns/{id}/messages/export", tag = "analytics",
    params(("id" = CampaignId, Path, description = "Campaign id"), MessageExportQuery),
    responses((status = 200, description = "CSV", body = String, content_type = "text/csv")))]
async fn export_campaign_messages(
    auth: Authorized<can::AnalyticsRead>,
    State(state): State<AppState>,
    Id(id): Id<CampaignId>,
    Query(query): Query<MessageExportQuery>,
) -> ApiResult<Response> {
    let rows = exports::campaign_messages_csv(&state.db, auth.workspace, id, query.status).await?;
    Ok(csv_file(&format!("campaign-{id}-messages.csv"), rows))
}
