//! Workspaces: the tenants every other row belongs to.

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use super::{Conn, Result, on_conn};
use crate::domain::ids::WorkspaceId;

#[derive(Clone, Debug, PartialEq, Eq, FromRow)]
pub struct Workspace {
    pub id: WorkspaceId,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// The workspace called `name`, created when it does not exist yet.
pub async fn ensure(mut conn: Conn<'_>, name: &str, now: DateTime<Utc>) -> Result<Workspace> {
    on_conn!(conn.reborrow(), c => {
        sqlx::query(
            "INSERT INTO workspaces (id, name, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(WorkspaceId::generate())
        .bind(name)
        .bind(now)
        .execute(&mut *c)
        .await?;
        Ok(sqlx::query_as("SELECT id, name, created_at FROM workspaces WHERE name = $1")
            .bind(name)
            .fetch_one(&mut *c)
            .await?)
    })
}

pub async fn get(conn: Conn<'_>, id: WorkspaceId) -> Result<Workspace> {
    on_conn!(conn, c => Ok(sqlx::query_as("SELECT id, name, created_at FROM workspaces WHERE id = $1")
        .bind(id)
        .fetch_one(&mut *c)
        .await?))
}

/// The workspace called `name`, if there is one.
pub async fn find_by_name(conn: Conn<'_>, name: &str) -> Result<Option<Workspace>> {
    on_conn!(conn, c => Ok(sqlx::query_as("SELECT id, name, created_at FROM workspaces WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut *c)
        .await?))
}
