//! `/v1/templates`: message templates with `<<variable>>` and `<<variable|fallback>>`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::List;
use super::auth::{Authorized, can};
use super::error::ApiResult;
use super::extract::{Id, JsonBody, PageParams, Query, present};
use crate::domain::ids::{ContactId, TemplateId};
use crate::domain::whatsapp::WhatsAppTemplate;
use crate::service::templates::{self as service, TemplateChange, TemplateInput};
use crate::store::templates::TemplateRecord;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(show, update, delete))
        .routes(routes!(preview))
}

#[derive(Debug, Deserialize, ToSchema)]
struct NewTemplate {
    name: String,
    /// `Hi <<name|there>>, your code is <<code>>`
    content: String,
    media_url: Option<String>,
    /// The template approved at Meta that `whatsapp_cloud` senders send instead of `content`.
    whatsapp: Option<WhatsAppTemplate>,
}

#[derive(Debug, Deserialize, ToSchema)]
struct TemplatePatch {
    name: Option<String>,
    content: Option<String>,
    media_url: Option<String>,
    /// Replaces the WhatsApp part; `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<WhatsAppTemplate>)]
    whatsapp: Option<Option<WhatsAppTemplate>>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
struct PreviewRequest {
    /// Render with this contact's fields (`name`, `phone`, `email`, custom fields)…
    contact_id: Option<ContactId>,
    /// …and these values, used where the contact has none.
    #[serde(default)]
    variables: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, ToSchema)]
struct Preview {
    rendered: String,
}

/// A template, as API.md shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Template)]
struct TemplateBody {
    id: TemplateId,
    name: String,
    content: String,
    media_url: Option<String>,
    /// The variables the content and the WhatsApp part use, in order of first use.
    variables: Vec<String>,
    whatsapp: Option<WhatsAppTemplate>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<TemplateRecord> for TemplateBody {
    fn from(record: TemplateRecord) -> Self {
        Self {
            id: record.id,
            name: record.name,
            content: record.content,
            media_url: record.media_url,
            variables: record.variables.0,
            whatsapp: record.whatsapp.map(|part| part.0),
            created_at: record.created_at,
            updated_at: record.updated_at,
        }
    }
}

/// Create a template
#[utoipa::path(post, path = "/v1/templates", tag = "templates", request_body = NewTemplate,
    responses((status = 201, description = "Created, with the variables it uses", body = TemplateBody)))]
async fn create(
    auth: Authorized<can::CampaignsWrite>,
    State(state): State<AppState>,
    JsonBody(new): JsonBody<NewTemplate>,
) -> ApiResult<(StatusCode, Json<TemplateBody>)> {
    let input = TemplateInput {
        name: new.name,
        content: new.content,
        media_url: new.media_url,
        whatsapp: new.whatsapp,
    };
    let record = service::create(&state.db, auth.workspace, input, state.clock.now()).await?;
    Ok((StatusCode::CREATED, Json(record.into())))
}

/// List templates
#[utoipa::path(get, path = "/v1/templates", tag = "templates", params(PageParams),
    responses((status = 200, description = "A page of templates, newest first", body = inline(List<TemplateBody>))))]
async fn list(
    auth: Authorized<can::CampaignsRead>,
    State(state): State<AppState>,
    Query(params): Query<PageParams>,
) -> ApiResult<Json<List<TemplateBody>>> {
    let page = params.page()?;
    let (records, total) = service::list(&state.db, auth.workspace, page).await?;
    Ok(Json(List::of(records, page, total)))
}

/// Show a template
#[utoipa::path(get, path = "/v1/templates/{id}", tag = "templates",
    params(("id" = TemplateId, Path, description = "Template id")),
    responses((status = 200, description = "The template", body = TemplateBody)))]
async fn show(
    auth: Authorized<can::CampaignsRead>,
    State(state): State<AppState>,
    Id(id): Id<TemplateId>,
) -> ApiResult<Json<TemplateBody>> {
    let record = service::get(&state.db, auth.workspace, id).await?;
    Ok(Json(record.into()))
}

/// Change a template
///
/// Campaigns already created keep the content they were created with.
#[utoipa::path(patch, path = "/v1/templates/{id}", tag = "templates", request_body = TemplatePatch,
    params(("id" = TemplateId, Path, description = "Template id")),
    responses((status = 200, description = "The changed template", body = TemplateBody)))]
async fn update(
    auth: Authorized<can::CampaignsWrite>,
    State(state): State<AppState>,
    Id(id): Id<TemplateId>,
    JsonBody(patch): JsonBody<TemplatePatch>,
) -> ApiResult<Json<TemplateBody>> {
    let change = TemplateChange {
        name: patch.name,
        content: patch.content,
        media_url: patch.media_url,
        whatsapp: patch.whatsapp,
    };
    let record = service::update(&state.db, auth.workspace, id, change, state.clock.now()).await?;
    Ok(Json(record.into()))
}

/// Delete a template
#[utoipa::path(delete, path = "/v1/templates/{id}", tag = "templates",
    params(("id" = TemplateId, Path, description = "Template id")),
    responses((status = 204, description = "Deleted")))]
async fn delete(
    auth: Authorized<can::CampaignsWrite>,
    State(state): State<AppState>,
    Id(id): Id<TemplateId>,
) -> ApiResult<StatusCode> {
    service::delete(&state.db, auth.workspace, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Render a template for a contact or for given values
#[utoipa::path(post, path = "/v1/templates/{id}/preview", tag = "templates",
    request_body = PreviewRequest,
    params(("id" = TemplateId, Path, description = "Template id")),
    responses((status = 200, description = "The rendered text", body = Preview)))]
async fn preview(
    auth: Authorized<can::CampaignsRead>,
    State(state): State<AppState>,
    Id(id): Id<TemplateId>,
    JsonBody(request): JsonBody<PreviewRequest>,
) -> ApiResult<Json<Preview>> {
    let rendered = service::preview(
        &state.db,
        auth.workspace,
        id,
        request.contact_id,
        &request.variables,
    )
    .await?;
    Ok(Json(Preview { rendered }))
}
