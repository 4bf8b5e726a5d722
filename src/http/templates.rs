//! `/v1/templates`: message templates with `<<variable>>` and `<<variable|fallback>>`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::List;
use super::auth::{Authorized, can};
use super::error::{ApiError, ApiResult};
use super::extract::{Id, JsonBody, PageParams, Query};
use crate::domain::ids::{ContactId, TemplateId};
use crate::domain::template::Template;
use crate::render::render_once;
use crate::service::templates as service;
use crate::store::templates::{self, TemplateRecord};
use crate::store::{StoreError, contacts};

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
}

#[derive(Debug, Deserialize, ToSchema)]
struct TemplatePatch {
    name: Option<String>,
    content: Option<String>,
    media_url: Option<String>,
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

/// Create a template
#[utoipa::path(post, path = "/v1/templates", tag = "templates", request_body = NewTemplate,
    responses((status = 201, description = "Created, with the variables it uses", body = TemplateRecord)))]
async fn create(
    auth: Authorized<can::CampaignsWrite>,
    State(state): State<AppState>,
    JsonBody(new): JsonBody<NewTemplate>,
) -> ApiResult<(StatusCode, Json<TemplateRecord>)> {
    let record = service::create(
        &state.db,
        auth.workspace,
        &new.name,
        &new.content,
        new.media_url.as_deref(),
        state.clock.now(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(record)))
}

/// List templates
#[utoipa::path(get, path = "/v1/templates", tag = "templates", params(PageParams),
    responses((status = 200, description = "A page of templates, newest first", body = inline(List<TemplateRecord>))))]
async fn list(
    auth: Authorized<can::CampaignsRead>,
    State(state): State<AppState>,
    Query(params): Query<PageParams>,
) -> ApiResult<Json<List<TemplateRecord>>> {
    let page = params.page()?;
    let mut conn = state.db.read().await?;
    let (records, total) = templates::list(conn.conn(), auth.workspace, page).await?;
    Ok(Json(List::new(records, page, total)))
}

/// Show a template
#[utoipa::path(get, path = "/v1/templates/{id}", tag = "templates",
    params(("id" = TemplateId, Path, description = "Template id")),
    responses((status = 200, description = "The template", body = TemplateRecord)))]
async fn show(
    auth: Authorized<can::CampaignsRead>,
    State(state): State<AppState>,
    Id(id): Id<TemplateId>,
) -> ApiResult<Json<TemplateRecord>> {
    let mut conn = state.db.read().await?;
    Ok(Json(templates::get(conn.conn(), auth.workspace, id).await?))
}

/// Change a template
///
/// Campaigns already created keep the content they were created with.
#[utoipa::path(patch, path = "/v1/templates/{id}", tag = "templates", request_body = TemplatePatch,
    params(("id" = TemplateId, Path, description = "Template id")),
    responses((status = 200, description = "The changed template", body = TemplateRecord)))]
async fn update(
    auth: Authorized<can::CampaignsWrite>,
    State(state): State<AppState>,
    Id(id): Id<TemplateId>,
    JsonBody(patch): JsonBody<TemplatePatch>,
) -> ApiResult<Json<TemplateRecord>> {
    let record = service::update(
        &state.db,
        auth.workspace,
        id,
        patch.name,
        patch.content,
        patch.media_url,
        state.clock.now(),
    )
    .await?;
    Ok(Json(record))
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
    let mut conn = state.db.read().await?;
    let record = templates::get(conn.conn(), auth.workspace, id).await?;
    let contact = match request.contact_id {
        Some(contact_id) => {
            // Scoped first: another workspace's contact is not found.
            let contact = contacts::get(conn.conn(), auth.workspace, contact_id)
                .await
                .map_err(|error| match error {
                    StoreError::NotFound => ApiError::validation("contact_id", "no such contact"),
                    other => other.into(),
                })?;
            contacts::render_fields(conn.conn(), &[contact.id])
                .await?
                .pop()
        }
        None => None,
    };
    let template = Template::parse(&record.content)
        .map_err(|error| ApiError::validation("content", error.to_string()))?;
    let rendered =
        render_once(&template, contact.as_ref(), &request.variables).map_err(|missing| {
            ApiError::Validation(crate::service::messages::missing_variables(&missing))
        })?;
    Ok(Json(Preview { rendered }))
}
