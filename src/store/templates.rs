//! Message templates; `variables` is derived from the content (and the WhatsApp part) when
//! it is written.

use chrono::{DateTime, Utc};
use sqlx::FromRow;
use sqlx::types::Json;

use super::sql::{Param, SqlBuilder, fetch_page};
use super::{Conn, Page, Result, StoreError, on_conn};
use crate::domain::ids::{TemplateId, WorkspaceId};
use crate::domain::whatsapp::WhatsAppTemplate;

macro_rules! columns {
    () => {
        "id, workspace_id, name, content, media_url, variables, whatsapp, created_at, updated_at"
    };
}

#[derive(Clone, Debug, PartialEq, FromRow)]
pub struct TemplateRecord {
    pub id: TemplateId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub content: String,
    pub media_url: Option<String>,
    /// The variables the content and the WhatsApp part use, in order of first use.
    pub variables: Json<Vec<String>>,
    /// The template approved at Meta that providers with templates send.
    pub whatsapp: Option<Json<WhatsAppTemplate>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A template's fields; `variables` must be what parsing `content` and `whatsapp` found.
pub struct TemplateFields<'a> {
    pub name: &'a str,
    pub content: &'a str,
    pub media_url: Option<&'a str>,
    pub variables: &'a [String],
    pub whatsapp: Option<&'a WhatsAppTemplate>,
}

pub async fn insert(
    mut conn: Conn<'_>,
    workspace: WorkspaceId,
    fields: &TemplateFields<'_>,
    now: DateTime<Utc>,
) -> Result<TemplateRecord> {
    let id = TemplateId::generate();
    on_conn!(conn.reborrow(), c => sqlx::query(
        "INSERT INTO templates (id, workspace_id, name, content, media_url, variables, whatsapp,
                                created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $8, $7, $7)",
    )
    .bind(id)
    .bind(workspace)
    .bind(fields.name)
    .bind(fields.content)
    .bind(fields.media_url)
    .bind(Json(fields.variables))
    .bind(now)
    .bind(fields.whatsapp.map(Json))
    .execute(&mut *c)
    .await.map(drop))?;
    get(conn, workspace, id).await
}

pub async fn get(conn: Conn<'_>, workspace: WorkspaceId, id: TemplateId) -> Result<TemplateRecord> {
    on_conn!(conn, c => Ok(sqlx::query_as(concat!(
        "SELECT ", columns!(), " FROM templates WHERE id = $1 AND workspace_id = $2"
    ))
    .bind(id)
    .bind(workspace)
    .fetch_one(&mut *c)
    .await?))
}

pub async fn list(
    conn: Conn<'_>,
    workspace: WorkspaceId,
    page: Page,
) -> Result<(Vec<TemplateRecord>, i64)> {
    let mut from_where = SqlBuilder::new("FROM templates WHERE workspace_id = ");
    from_where.bind(Param::Id(workspace.0));
    fetch_page(
        conn,
        columns!(),
        &from_where,
        "created_at DESC, id DESC",
        page,
    )
    .await
}

pub async fn update(
    mut conn: Conn<'_>,
    workspace: WorkspaceId,
    id: TemplateId,
    fields: &TemplateFields<'_>,
    now: DateTime<Utc>,
) -> Result<TemplateRecord> {
    let updated = on_conn!(conn.reborrow(), c => sqlx::query(
        "UPDATE templates SET name = $3, content = $4, media_url = $5, variables = $6, updated_at = $7,
                              whatsapp = $8
         WHERE id = $1 AND workspace_id = $2",
    )
    .bind(id)
    .bind(workspace)
    .bind(fields.name)
    .bind(fields.content)
    .bind(fields.media_url)
    .bind(Json(fields.variables))
    .bind(now)
    .bind(fields.whatsapp.map(Json))
    .execute(&mut *c)
    .await?
    .rows_affected());
    if updated == 0 {
        return Err(StoreError::NotFound);
    }
    get(conn, workspace, id).await
}

pub async fn delete(conn: Conn<'_>, workspace: WorkspaceId, id: TemplateId) -> Result<()> {
    let deleted = on_conn!(conn, c => sqlx::query("DELETE FROM templates WHERE id = $1 AND workspace_id = $2")
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
