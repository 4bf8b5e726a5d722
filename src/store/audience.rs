//! Resolving an audience to contacts, as SQL over `contacts c`: the same predicate serves
//! counting, listing and the set-based launch of a campaign. Opted-out and blocked contacts are
//! always left out, and each contact appears once however many routes reach it.

use super::groups;
use super::sql::{Param, SqlBuilder, bind_params};
use super::{Conn, Result, on_conn};
use crate::domain::campaign::Audience;
use crate::domain::group::{GroupFilters, GroupKind};
use crate::domain::ids::{ContactId, WorkspaceId};

/// Appends conditions on `c` that select `audience` within `workspace`.
pub(crate) async fn push_predicate(
    conn: Conn<'_>,
    builder: &mut SqlBuilder,
    workspace: WorkspaceId,
    audience: &Audience,
) -> Result<()> {
    builder
        .push("c.workspace_id = ")
        .bind(Param::Id(workspace.0))
        .push(" AND c.opted_out_at IS NULL AND NOT c.blocked");
    match audience {
        Audience::All => {}
        Audience::Tags { tags } => {
            builder
                .push(" AND c.id IN (SELECT contact_id FROM contact_tags WHERE workspace_id = ")
                .bind(Param::Id(workspace.0))
                .push(" AND tag IN ")
                .bind_list(tags.iter().map(|tag| Param::Text(tag.trim().to_owned())))
                .push(")");
        }
        Audience::Contacts { contact_ids } => {
            builder
                .push(" AND c.id IN ")
                .bind_list(contact_ids.iter().map(|id| Param::Id(id.0)));
        }
        Audience::Group { group_id } => {
            let group = groups::get(conn, workspace, *group_id).await?;
            match group.kind {
                GroupKind::Static => {
                    builder
                        .push(" AND c.id IN (SELECT contact_id FROM contact_group_members WHERE group_id = ")
                        .bind(Param::Id(group.id.0))
                        .push(")");
                }
                GroupKind::Dynamic => push_filters(builder, workspace, &group.filters.0),
            }
        }
    }
    Ok(())
}

/// A dynamic group's filters: every condition must hold.
pub(crate) fn push_filters(
    builder: &mut SqlBuilder,
    workspace: WorkspaceId,
    filters: &GroupFilters,
) {
    for tag in &filters.tags {
        builder
            .push(" AND c.id IN (SELECT contact_id FROM contact_tags WHERE workspace_id = ")
            .bind(Param::Id(workspace.0))
            .push(" AND tag = ")
            .bind(Param::Text(tag.trim().to_owned()))
            .push(")");
    }
    for (field, value) in &filters.custom_fields {
        // `->>` with a plain key reads the same in SQLite (3.38+) and PostgreSQL.
        builder
            .push(" AND c.custom_fields ->> ")
            .bind(Param::Text(field.clone()))
            .push(" = ")
            .bind(Param::Text(value.clone()));
    }
    if let Some(from) = filters.created_from {
        builder
            .push(" AND c.created_at >= ")
            .bind(Param::Time(from.start()));
    }
    if let Some(to) = filters.created_to {
        builder
            .push(" AND c.created_at < ")
            .bind(Param::Time(to.end_exclusive()));
    }
}

/// How many contacts `audience` reaches now.
pub async fn count(mut conn: Conn<'_>, workspace: WorkspaceId, audience: &Audience) -> Result<i64> {
    let mut query = SqlBuilder::new("SELECT COUNT(*) FROM contacts c WHERE ");
    push_predicate(conn.reborrow(), &mut query, workspace, audience).await?;
    on_conn!(conn, c => Ok(bind_params!(sqlx::query_scalar(super::sql::built(&query, &*c)), &query.params)
        .fetch_one(&mut *c)
        .await?))
}

/// Whether any contact `audience` reaches has a non-empty value for template variable
/// `variable` (`name`, `phone`, `email` or a custom field).
pub async fn any_can_fill(
    mut conn: Conn<'_>,
    workspace: WorkspaceId,
    audience: &Audience,
    variable: &str,
) -> Result<bool> {
    let mut query = SqlBuilder::new("SELECT 1 FROM contacts c WHERE ");
    push_predicate(conn.reborrow(), &mut query, workspace, audience).await?;
    match variable {
        "phone" => &mut query,
        "name" => query.push(" AND COALESCE(c.name, '') <> ''"),
        "email" => query.push(" AND COALESCE(c.email, '') <> ''"),
        field => query
            .push(" AND COALESCE(c.custom_fields ->> ")
            .bind(Param::Text(field.to_owned()))
            .push(", '') <> ''"),
    };
    query.push(" LIMIT 1");
    let found: Option<i32> = on_conn!(conn, c => bind_params!(sqlx::query_scalar(super::sql::built(&query, &*c)), &query.params)
        .fetch_optional(&mut *c)
        .await?);
    Ok(found.is_some())
}

/// The contacts `audience` reaches now, in id order.
pub async fn contact_ids(
    mut conn: Conn<'_>,
    workspace: WorkspaceId,
    audience: &Audience,
) -> Result<Vec<ContactId>> {
    let mut query = SqlBuilder::new("SELECT c.id FROM contacts c WHERE ");
    push_predicate(conn.reborrow(), &mut query, workspace, audience).await?;
    query.push(" ORDER BY c.id");
    on_conn!(conn, c => Ok(bind_params!(sqlx::query_scalar(super::sql::built(&query, &*c)), &query.params)
        .fetch_all(&mut *c)
        .await?))
}

/// How many of the audience have not written to `sender` after `since` (outside WhatsApp's
/// customer-service window).
pub async fn silent_since(
    mut conn: Conn<'_>,
    workspace: WorkspaceId,
    audience: &Audience,
    sender: crate::domain::ids::SenderId,
    since: chrono::DateTime<chrono::Utc>,
) -> Result<i64> {
    let mut query = SqlBuilder::new("SELECT COUNT(*) FROM contacts c WHERE ");
    push_predicate(conn.reborrow(), &mut query, workspace, audience).await?;
    query
        .push(" AND NOT EXISTS (SELECT 1 FROM conversations w WHERE w.sender_id = ")
        .bind(Param::Id(sender.0))
        .push(" AND w.phone = c.phone AND w.last_inbound_at > ")
        .bind(Param::Time(since))
        .push(")");
    on_conn!(conn, c => Ok(bind_params!(sqlx::query_scalar(super::sql::built(&query, &*c)), &query.params)
        .fetch_one(&mut *c)
        .await?))
}
