//! Webhooks: the endpoints, each one's delivery log, a test event and replays.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::{
    Frame, NoteQuery, PageError, Pager, Session, SignedForm, parse_id, render, see_other,
    short_time,
};
use crate::domain::auth::Ability;
use crate::domain::ids::{DeliveryId, WebhookId};
use crate::domain::webhook::DeliveryStatus;
use crate::http::AppState;
use crate::service::webhooks;
use crate::store::Page;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/webhooks", get(list))
        .route("/webhooks/{id}", get(show))
        .route("/webhooks/{id}/test", post(test))
        .route("/webhooks/{id}/deliveries/{delivery}/replay", post(replay))
}

#[derive(Serialize)]
struct Endpoint {
    id: WebhookId,
    url: String,
    description: String,
    events: String,
    enabled: bool,
    disabled_reason: Option<String>,
}

impl From<crate::store::webhooks::Webhook> for Endpoint {
    fn from(webhook: crate::store::webhooks::Webhook) -> Self {
        Self {
            id: webhook.id,
            url: webhook.url,
            description: webhook.description.unwrap_or_default(),
            events: webhook
                .events
                .0
                .iter()
                .map(|pattern| pattern.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            enabled: webhook.enabled,
            disabled_reason: webhook.disabled_reason,
        }
    }
}

async fn list(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<NoteQuery>,
) -> Result<Response, PageError> {
    session.require(Ability::WebhooksWrite)?;
    let all = Page {
        page: 1,
        per_page: Page::MAX_PER_PAGE,
    };
    let (endpoints, _) = webhooks::list(&state.db, session.workspace(), all).await?;
    #[derive(Serialize)]
    struct Body {
        endpoints: Vec<Endpoint>,
    }
    let body = Body {
        endpoints: endpoints.into_iter().map(Endpoint::from).collect(),
    };
    Ok(render(
        "webhooks",
        Frame::new(&session, "Webhooks", query.note.as_deref()),
        &body,
    ))
}

#[derive(Deserialize)]
struct DeliveryQuery {
    #[serde(default)]
    status: String,
    page: Option<u32>,
    note: Option<String>,
}

async fn show(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(query): Query<DeliveryQuery>,
) -> Result<Response, PageError> {
    session.require(Ability::WebhooksWrite)?;
    let id: WebhookId = parse_id(&id)?;
    let workspace = session.workspace();
    let endpoint = webhooks::get(&state.db, workspace, id).await?;
    let status = [
        DeliveryStatus::Pending,
        DeliveryStatus::Succeeded,
        DeliveryStatus::Failed,
    ]
    .into_iter()
    .find(|status| status.as_str() == query.status);
    let page = Page {
        page: query.page.unwrap_or(1).max(1),
        per_page: 50,
    };
    let (deliveries, total) = webhooks::deliveries(&state.db, workspace, id, status, page).await?;
    #[derive(Serialize)]
    struct Row {
        id: DeliveryId,
        kind: String,
        status: DeliveryStatus,
        attempts: i64,
        response: String,
        error: String,
        at: String,
        replayable: bool,
    }
    #[derive(Serialize)]
    struct Body {
        endpoint: Endpoint,
        deliveries: Vec<Row>,
        pager: Pager,
        status: String,
    }
    let base = format!("/webhooks/{id}?status={}", query.status);
    let title = endpoint.url.clone();
    let body = Body {
        endpoint: endpoint.into(),
        deliveries: deliveries
            .into_iter()
            .map(|delivery| Row {
                id: delivery.id,
                kind: delivery.kind,
                replayable: delivery.status != DeliveryStatus::Pending,
                status: delivery.status,
                attempts: delivery.attempts,
                response: delivery
                    .response_status
                    .map(|code| match delivery.duration_ms {
                        Some(ms) => format!("{code} in {ms} ms"),
                        None => code.to_string(),
                    })
                    .unwrap_or_default(),
                error: delivery.error.unwrap_or_default(),
                at: short_time(delivery.created_at),
            })
            .collect(),
        pager: Pager::new(&base, page, total),
        status: query.status.clone(),
    };
    Ok(render(
        "webhook",
        Frame::new(&session, &title, query.note.as_deref()),
        &body,
    ))
}

async fn test(
    State(state): State<AppState>,
    Path(id): Path<String>,
    SignedForm { session, .. }: SignedForm<serde::de::IgnoredAny>,
) -> Result<Response, PageError> {
    session.require(Ability::WebhooksWrite)?;
    let id: WebhookId = parse_id(&id)?;
    webhooks::test(&state.db, session.workspace(), id, state.clock.now()).await?;
    Ok(see_other(
        &format!("/webhooks/{id}"),
        Some("A webhook.test event is on its way."),
    ))
}

async fn replay(
    State(state): State<AppState>,
    Path((id, delivery)): Path<(String, String)>,
    SignedForm { session, .. }: SignedForm<serde::de::IgnoredAny>,
) -> Result<Response, PageError> {
    session.require(Ability::WebhooksWrite)?;
    let id: WebhookId = parse_id(&id)?;
    let delivery: DeliveryId = parse_id(&delivery)?;
    webhooks::replay(
        &state.db,
        session.workspace(),
        id,
        delivery,
        state.clock.now(),
    )
    .await?;
    Ok(see_other(
        &format!("/webhooks/{id}"),
        Some("Replayed: the event goes out again, with the same webhook-id."),
    ))
}
