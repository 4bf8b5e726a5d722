//! `/v1/groups`: static groups hold members; dynamic groups hold filters, resolved at use.

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
use super::extract::{Id, JsonBody, PageParams, Query};
use crate::domain::group::{GroupFilters, GroupKind};
use crate::domain::ids::{ContactId, GroupId};
use crate::service::groups as service;
use crate::store::groups::Group;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(show, update, delete))
        .routes(routes!(add_members, remove_members))
}

#[derive(Debug, Deserialize, ToSchema)]
struct NewGroup {
    name: String,
    #[serde(rename = "type")]
    kind: GroupKind,
    /// Dynamic groups only: every condition must hold.
    filters: Option<GroupFilters>,
}

#[derive(Debug, Deserialize, ToSchema)]
struct GroupPatch {
    name: Option<String>,
    /// Dynamic groups only; replaces the filters.
    filters: Option<GroupFilters>,
}

/// A group, as API.md lists it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Group)]
struct GroupBody {
    id: GroupId,
    name: String,
    #[serde(rename = "type")]
    kind: GroupKind,
    filters: GroupFilters,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<Group> for GroupBody {
    fn from(group: Group) -> Self {
        Self {
            id: group.id,
            name: group.name,
            kind: group.kind,
            filters: group.filters.0,
            created_at: group.created_at,
            updated_at: group.updated_at,
        }
    }
}

/// A group with how many contacts it reaches.
#[derive(Debug, Serialize, ToSchema)]
struct GroupView {
    #[serde(flatten)]
    group: GroupBody,
    /// Contacts the group reaches now (opted-out and blocked ones left out).
    contact_count: i64,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
struct Members {
    #[serde(default)]
    contact_ids: Vec<ContactId>,
    /// Phones of existing contacts, in any common spelling.
    #[serde(default)]
    phones: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
struct MembershipChange {
    /// Contacts that became (or stopped being) members.
    changed: u64,
    /// Phones that name no contact of the workspace.
    unknown_phones: Vec<String>,
}

impl From<service::MembershipChange> for MembershipChange {
    fn from(change: service::MembershipChange) -> Self {
        Self {
            changed: change.changed,
            unknown_phones: change.unknown_phones,
        }
    }
}

async fn view(state: &AppState, group: Group) -> ApiResult<GroupView> {
    let contact_count = service::size(&state.db, &group).await?;
    Ok(GroupView {
        group: group.into(),
        contact_count,
    })
}

/// Create a group
#[utoipa::path(post, path = "/v1/groups", tag = "groups", request_body = NewGroup,
    responses((status = 201, description = "Created", body = GroupView)))]
async fn create(
    auth: Authorized<can::ContactsWrite>,
    State(state): State<AppState>,
    JsonBody(new): JsonBody<NewGroup>,
) -> ApiResult<(StatusCode, Json<GroupView>)> {
    let now = state.clock.now();
    let group = service::create(
        &state.db,
        auth.workspace,
        &new.name,
        new.kind,
        new.filters,
        now,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(view(&state, group).await?)))
}

/// List groups
#[utoipa::path(get, path = "/v1/groups", tag = "groups", params(PageParams),
    responses((status = 200, description = "A page of groups, by name", body = inline(List<GroupBody>))))]
async fn list(
    auth: Authorized<can::ContactsRead>,
    State(state): State<AppState>,
    Query(params): Query<PageParams>,
) -> ApiResult<Json<List<GroupBody>>> {
    let page = params.page()?;
    let (groups, total) = service::list(&state.db, auth.workspace, page).await?;
    Ok(Json(List::of(groups, page, total)))
}

/// Show a group, with how many contacts it reaches
#[utoipa::path(get, path = "/v1/groups/{id}", tag = "groups",
    params(("id" = GroupId, Path, description = "Group id")),
    responses((status = 200, description = "The group", body = GroupView)))]
async fn show(
    auth: Authorized<can::ContactsRead>,
    State(state): State<AppState>,
    Id(id): Id<GroupId>,
) -> ApiResult<Json<GroupView>> {
    let group = service::get(&state.db, auth.workspace, id).await?;
    Ok(Json(view(&state, group).await?))
}

/// Rename a group or replace a dynamic group's filters
#[utoipa::path(patch, path = "/v1/groups/{id}", tag = "groups", request_body = GroupPatch,
    params(("id" = GroupId, Path, description = "Group id")),
    responses((status = 200, description = "The changed group", body = GroupView)))]
async fn update(
    auth: Authorized<can::ContactsWrite>,
    State(state): State<AppState>,
    Id(id): Id<GroupId>,
    JsonBody(patch): JsonBody<GroupPatch>,
) -> ApiResult<Json<GroupView>> {
    let now = state.clock.now();
    let group = service::update(
        &state.db,
        auth.workspace,
        id,
        patch.name,
        patch.filters,
        now,
    )
    .await?;
    Ok(Json(view(&state, group).await?))
}

/// Delete a group (its contacts stay)
#[utoipa::path(delete, path = "/v1/groups/{id}", tag = "groups",
    params(("id" = GroupId, Path, description = "Group id")),
    responses((status = 204, description = "Deleted")))]
async fn delete(
    auth: Authorized<can::ContactsWrite>,
    State(state): State<AppState>,
    Id(id): Id<GroupId>,
) -> ApiResult<StatusCode> {
    service::delete(&state.db, auth.workspace, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Add contacts to a static group
///
/// Ids of other workspaces' contacts are ignored.
#[utoipa::path(post, path = "/v1/groups/{id}/contacts", tag = "groups", request_body = Members,
    params(("id" = GroupId, Path, description = "Group id")),
    responses((status = 200, description = "How many became members", body = MembershipChange)))]
async fn add_members(
    auth: Authorized<can::ContactsWrite>,
    State(state): State<AppState>,
    Id(id): Id<GroupId>,
    JsonBody(members): JsonBody<Members>,
) -> ApiResult<Json<MembershipChange>> {
    let members = service::Members {
        contact_ids: members.contact_ids,
        phones: members.phones,
    };
    let change =
        service::add_members(&state.db, auth.workspace, id, members, state.clock.now()).await?;
    Ok(Json(change.into()))
}

/// Remove contacts from a static group
#[utoipa::path(delete, path = "/v1/groups/{id}/contacts", tag = "groups", request_body = Members,
    params(("id" = GroupId, Path, description = "Group id")),
    responses((status = 200, description = "How many stopped being members", body = MembershipChange)))]
async fn remove_members(
    auth: Authorized<can::ContactsWrite>,
    State(state): State<AppState>,
    Id(id): Id<GroupId>,
    JsonBody(members): JsonBody<Members>,
) -> ApiResult<Json<MembershipChange>> {
    let members = service::Members {
        contact_ids: members.contact_ids,
        phones: members.phones,
    };
    let change = service::remove_members(&state.db, auth.workspace, id, members).await?;
    Ok(Json(change.into()))
}
