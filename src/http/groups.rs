//! `/v1/groups`: static groups hold members; dynamic groups hold filters, resolved at use.

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
use crate::domain::campaign::Audience;
use crate::domain::group::{GroupFilters, GroupKind};
use crate::domain::ids::{ContactId, GroupId};
use crate::domain::phone::Phone;
use crate::domain::validation::FieldErrors;
use crate::store::audience;
use crate::store::contacts;
use crate::store::groups::{self, Group};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(show, update, delete))
        .routes(routes!(add_members, remove_members))
}

/// Most contacts one membership request may name.
const MAX_MEMBERS_PER_REQUEST: usize = 10_000;

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

#[derive(Debug, Serialize, ToSchema)]
struct GroupView {
    #[serde(flatten)]
    group: Group,
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

fn check_name(name: &str, errors: &mut FieldErrors) {
    if name.trim().is_empty() {
        errors.add("name", "must not be empty");
    }
}

fn check_filters(kind: GroupKind, filters: Option<&GroupFilters>, errors: &mut FieldErrors) {
    if kind == GroupKind::Static && filters.is_some_and(|f| !f.is_empty()) {
        errors.add(
            "filters",
            "only dynamic groups have filters; add members to a static group",
        );
    }
}

async fn view(state: &AppState, group: Group) -> ApiResult<GroupView> {
    let mut conn = state.db.read().await?;
    let contact_count = audience::count(
        conn.conn(),
        group.workspace_id,
        &Audience::Group { group_id: group.id },
    )
    .await?;
    Ok(GroupView {
        group,
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
    let mut errors = FieldErrors::new();
    check_name(&new.name, &mut errors);
    check_filters(new.kind, new.filters.as_ref(), &mut errors);
    errors.into_result().map_err(ApiError::Validation)?;
    let group = {
        let mut conn = state.db.write().await?;
        groups::insert(
            conn.conn(),
            auth.workspace,
            new.name.trim(),
            new.kind,
            &new.filters.unwrap_or_default(),
            state.clock.now(),
        )
        .await?
    };
    Ok((StatusCode::CREATED, Json(view(&state, group).await?)))
}

/// List groups
#[utoipa::path(get, path = "/v1/groups", tag = "groups", params(PageParams),
    responses((status = 200, description = "A page of groups, by name", body = inline(List<Group>))))]
async fn list(
    auth: Authorized<can::ContactsRead>,
    State(state): State<AppState>,
    Query(params): Query<PageParams>,
) -> ApiResult<Json<List<Group>>> {
    let page = params.page()?;
    let mut conn = state.db.read().await?;
    let (groups, total) = groups::list(conn.conn(), auth.workspace, page).await?;
    Ok(Json(List::new(groups, page, total)))
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
    let group = {
        let mut conn = state.db.read().await?;
        groups::get(conn.conn(), auth.workspace, id).await?
    };
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
    let group = {
        let mut conn = state.db.write().await?;
        let current = groups::get(conn.conn(), auth.workspace, id).await?;
        let mut errors = FieldErrors::new();
        let name = patch.name.unwrap_or_else(|| current.name.clone());
        check_name(&name, &mut errors);
        check_filters(current.kind, patch.filters.as_ref(), &mut errors);
        errors.into_result().map_err(ApiError::Validation)?;
        let filters = patch.filters.unwrap_or_else(|| current.filters.0.clone());
        groups::update(
            conn.conn(),
            auth.workspace,
            id,
            name.trim(),
            &filters,
            state.clock.now(),
        )
        .await?
    };
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
    let mut conn = state.db.write().await?;
    groups::delete(conn.conn(), auth.workspace, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The contacts a membership request names: its ids and the contacts of its phones.
async fn resolve_members(
    state: &AppState,
    auth: &Authorized<can::ContactsWrite>,
    group: GroupId,
    members: Members,
) -> ApiResult<(Vec<ContactId>, Vec<String>)> {
    let mut errors = FieldErrors::new();
    if members.contact_ids.len() + members.phones.len() > MAX_MEMBERS_PER_REQUEST {
        errors.add(
            "contact_ids",
            format!("at most {MAX_MEMBERS_PER_REQUEST} contacts per request"),
        );
    }
    if members.contact_ids.is_empty() && members.phones.is_empty() {
        errors.add("contact_ids", "give contact_ids or phones");
    }
    let mut phones = Vec::new();
    for (index, text) in members.phones.iter().enumerate() {
        match Phone::parse(text) {
            Ok(phone) => phones.push((text.clone(), phone)),
            Err(error) => errors.add(format!("phones.{index}"), error.to_string()),
        }
    }
    errors.into_result().map_err(ApiError::Validation)?;

    let mut conn = state.db.read().await?;
    let group = groups::get(conn.conn(), auth.workspace, group).await?;
    if group.kind == GroupKind::Dynamic {
        return Err(ApiError::validation(
            "type",
            "a dynamic group's members come from its filters; change the filters instead",
        ));
    }
    let mut ids = members.contact_ids;
    let mut unknown = Vec::new();
    for (text, phone) in phones {
        match contacts::find_by_phone(conn.conn(), auth.workspace, &phone).await? {
            Some(contact) => ids.push(contact.id),
            None => unknown.push(text),
        }
    }
    ids.sort();
    ids.dedup();
    Ok((ids, unknown))
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
    let (ids, unknown_phones) = resolve_members(&state, &auth, id, members).await?;
    let mut conn = state.db.write().await?;
    let changed =
        groups::add_members(conn.conn(), auth.workspace, id, &ids, state.clock.now()).await?;
    Ok(Json(MembershipChange {
        changed,
        unknown_phones,
    }))
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
    let (ids, unknown_phones) = resolve_members(&state, &auth, id, members).await?;
    let mut conn = state.db.write().await?;
    let changed = groups::remove_members(conn.conn(), auth.workspace, id, &ids).await?;
    Ok(Json(MembershipChange {
        changed,
        unknown_phones,
    }))
}
