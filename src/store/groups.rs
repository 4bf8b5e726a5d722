//! Contact groups: static members, or dynamic filters resolved at use.

use chrono::{DateTime, Utc};
use sqlx::FromRow;
use sqlx::types::Json;

use super::sql::{Param, SqlBuilder, bind_params, fetch_page};
use super::{Conn, Page, Result, StoreError, on_conn};
use crate::domain::group::{GroupFilters, GroupKind};
use crate::domain::ids::{ContactId, GroupId, WorkspaceId};

macro_rules! columns {
    () => {
        "id, workspace_id, name, kind, filters, created_at, updated_at"
    };
}

#[derive(Clone, Debug, PartialEq, FromRow)]
pub struct Group {
    pub id: GroupId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub kind: GroupKind,
    pub filters: Json<GroupFilters>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub async fn insert(
    mut conn: Conn<'_>,
    workspace: WorkspaceId,
    name: &str,
    kind: GroupKind,
    filters: &GroupFilters,
    now: DateTime<Utc>,
) -> Result<Group> {
    let id = GroupId::generate();
    on_conn!(conn.reborrow(), c => sqlx::query(
        "INSERT INTO contact_groups (id, workspace_id, name, kind, filters, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $6)",
    )
    .bind(id)
    .bind(workspace)
    .bind(name)
    .bind(kind)
    .bind(Json(filters))
    .bind(now)
    .execute(&mut *c)
    .await.map(drop))?;
    get(conn, workspace, id).await
}

pub async fn get(conn: Conn<'_>, workspace: WorkspaceId, id: GroupId) -> Result<Group> {
    on_conn!(conn, c => Ok(sqlx::query_as(concat!(
        "SELECT ", columns!(), " FROM contact_groups WHERE id = $1 AND workspace_id = $2"
    ))
    .bind(id)
    .bind(workspace)
    .fetch_one(&mut *c)
    .await?))
}

pub async fn list(conn: Conn<'_>, workspace: WorkspaceId, page: Page) -> Result<(Vec<Group>, i64)> {
    let mut from_where = SqlBuilder::new("FROM contact_groups WHERE workspace_id = ");
    from_where.bind(Param::Id(workspace.0));
    fetch_page(conn, columns!(), &from_where, "name, id", page).await
}

/// Renames a group or replaces its filters; a group's type never changes.
pub async fn update(
    mut conn: Conn<'_>,
    workspace: WorkspaceId,
    id: GroupId,
    name: &str,
    filters: &GroupFilters,
    now: DateTime<Utc>,
) -> Result<Group> {
    let updated = on_conn!(conn.reborrow(), c => sqlx::query(
        "UPDATE contact_groups SET name = $3, filters = $4, updated_at = $5
         WHERE id = $1 AND workspace_id = $2",
    )
    .bind(id)
    .bind(workspace)
    .bind(name)
    .bind(Json(filters))
    .bind(now)
    .execute(&mut *c)
    .await?
    .rows_affected());
    if updated == 0 {
        return Err(StoreError::NotFound);
    }
    get(conn, workspace, id).await
}

pub async fn delete(conn: Conn<'_>, workspace: WorkspaceId, id: GroupId) -> Result<()> {
    let deleted = on_conn!(conn, c => sqlx::query("DELETE FROM contact_groups WHERE id = $1 AND workspace_id = $2")
        .bind(id)
        .bind(workspace)
        .execute(&mut *c)
        .await?
        .rows_affected());
    if deleted == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// Adds contacts of the group's own workspace to a static group; ids of other workspaces are
/// never added. Returns how many were new members.
pub async fn add_members(
    conn: Conn<'_>,
    workspace: WorkspaceId,
    group: GroupId,
    contacts: &[ContactId],
    now: DateTime<Utc>,
) -> Result<u64> {
    if contacts.is_empty() {
        return Ok(0);
    }
    let mut insert = SqlBuilder::new(
        "INSERT INTO contact_group_members (group_id, contact_id, workspace_id, added_at)
         SELECT g.id, c.id, c.workspace_id, ",
    );
    insert
        .bind(Param::Time(now))
        .push(" FROM contact_groups g JOIN contacts c ON c.workspace_id = g.workspace_id WHERE g.id = ")
        .bind(Param::Id(group.0))
        .push(" AND g.workspace_id = ")
        .bind(Param::Id(workspace.0))
        .push(" AND g.kind = 'static' AND c.id IN ")
        .bind_list(contacts.iter().map(|id| Param::Id(id.0)))
        .push(" ON CONFLICT DO NOTHING");
    on_conn!(conn, c => Ok(bind_params!(sqlx::query(super::sql::built(&insert, &*c)), &insert.params)
        .execute(&mut *c)
        .await?
        .rows_affected()))
}

/// Removes contacts from a static group; returns how many were members.
pub async fn remove_members(
    conn: Conn<'_>,
    workspace: WorkspaceId,
    group: GroupId,
    contacts: &[ContactId],
) -> Result<u64> {
    let mut delete = SqlBuilder::new("DELETE FROM contact_group_members WHERE workspace_id = ");
    delete
        .bind(Param::Id(workspace.0))
        .push(" AND group_id = ")
        .bind(Param::Id(group.0))
        .push(" AND contact_id IN ")
        .bind_list(contacts.iter().map(|id| Param::Id(id.0)));
    on_conn!(conn, c => Ok(bind_params!(sqlx::query(super::sql::built(&delete, &*c)), &delete.params)
        .execute(&mut *c)
        .await?
        .rows_affected()))
}
