//! Automations: the rules of a workspace, the replies they sent (runs), and the workspace's
//! consent-keyword replies. Every change to the rules stamps the workspace with a new version,
//! in the same transaction, so that processes caching compiled rules know when to reload.

use chrono::{DateTime, Utc};
use sqlx::FromRow;
use sqlx::types::Json;

use super::sql::{Param, SqlBuilder, fetch_page};
use super::{Conn, Page, Result, StoreError, on_conn};
use crate::domain::automation::{KeywordReplies, Reply, Trigger, TriggerType};
use crate::domain::ids::{
    AutomationId, AutomationRunId, ContactId, MessageId, SenderId, WorkspaceId,
};

macro_rules! columns {
    () => {
        "id, workspace_id, sender_id, name, priority, enabled, cooldown_s, trigger_type, \
         trigger_spec, reply_spec, created_at, updated_at"
    };
}

#[derive(Clone, Debug, PartialEq, FromRow)]
pub struct Automation {
    pub id: AutomationId,
    pub workspace_id: WorkspaceId,
    pub sender_id: Option<SenderId>,
    pub name: String,
    pub priority: i64,
    pub enabled: bool,
    pub cooldown_s: i64,
    pub trigger_type: TriggerType,
    pub trigger_spec: Json<Trigger>,
    pub reply_spec: Json<Reply>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A rule's fields, checked.
pub struct AutomationFields<'a> {
    pub sender_id: Option<SenderId>,
    pub name: &'a str,
    pub priority: i64,
    pub enabled: bool,
    pub cooldown_s: i64,
    pub trigger: &'a Trigger,
    pub reply: &'a Reply,
}

pub async fn insert(
    mut conn: Conn<'_>,
    workspace: WorkspaceId,
    fields: &AutomationFields<'_>,
    now: DateTime<Utc>,
) -> Result<Automation> {
    let id = AutomationId::generate();
    on_conn!(conn.reborrow(), c => sqlx::query(
        "INSERT INTO automations (id, workspace_id, sender_id, name, priority, enabled, cooldown_s,
                                  trigger_type, trigger_spec, reply_spec, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)",
    )
    .bind(id)
    .bind(workspace)
    .bind(fields.sender_id)
    .bind(fields.name)
    .bind(fields.priority)
    .bind(fields.enabled)
    .bind(fields.cooldown_s)
    .bind(fields.trigger.kind())
    .bind(Json(fields.trigger))
    .bind(Json(fields.reply))
    .bind(now)
    .execute(&mut *c)
    .await
    .map(drop))?;
    stamp_version(conn.reborrow(), workspace).await?;
    get(conn, workspace, id).await
}

pub async fn get(conn: Conn<'_>, workspace: WorkspaceId, id: AutomationId) -> Result<Automation> {
    on_conn!(conn, c => Ok(sqlx::query_as(concat!(
        "SELECT ", columns!(), " FROM automations WHERE id = $1 AND workspace_id = $2"
    ))
    .bind(id)
    .bind(workspace)
    .fetch_one(&mut *c)
    .await?))
}

#[derive(Clone, Copy, Debug, Default)]
pub struct AutomationFilter {
    pub sender: Option<SenderId>,
    pub enabled: Option<bool>,
    pub trigger_type: Option<TriggerType>,
}

/// A page of the workspace's rules in the order they are tried.
pub async fn list(
    conn: Conn<'_>,
    workspace: WorkspaceId,
    filter: AutomationFilter,
    page: Page,
) -> Result<(Vec<Automation>, i64)> {
    let mut from_where = SqlBuilder::new("FROM automations WHERE workspace_id = ");
    from_where.bind(Param::Id(workspace.0));
    if let Some(sender) = filter.sender {
        from_where
            .push(" AND sender_id = ")
            .bind(Param::Id(sender.0));
    }
    if let Some(enabled) = filter.enabled {
        from_where
            .push(" AND enabled = ")
            .bind(Param::Bool(enabled));
    }
    if let Some(kind) = filter.trigger_type {
        from_where
            .push(" AND trigger_type = ")
            .bind(Param::Text(kind.as_str().into()));
    }
    fetch_page(conn, columns!(), &from_where, ORDER, page).await
}

/// The order rules are tried in: highest priority first, ties oldest first.
const ORDER: &str = "priority DESC, created_at, id";

/// The workspace's enabled rules, in the order they are tried.
pub async fn enabled(conn: Conn<'_>, workspace: WorkspaceId) -> Result<Vec<Automation>> {
    on_conn!(conn, c => Ok(sqlx::query_as(super::sql::trusted(&format!(
        "SELECT {} FROM automations WHERE workspace_id = $1 AND enabled ORDER BY {ORDER}",
        columns!()
    )))
    .bind(workspace)
    .fetch_all(&mut *c)
    .await?))
}

pub async fn update(
    mut conn: Conn<'_>,
    workspace: WorkspaceId,
    id: AutomationId,
    fields: &AutomationFields<'_>,
    now: DateTime<Utc>,
) -> Result<Automation> {
    let updated = on_conn!(conn.reborrow(), c => sqlx::query(
        "UPDATE automations
         SET sender_id = $3, name = $4, priority = $5, enabled = $6, cooldown_s = $7,
             trigger_type = $8, trigger_spec = $9, reply_spec = $10, updated_at = $11
         WHERE id = $1 AND workspace_id = $2",
    )
    .bind(id)
    .bind(workspace)
    .bind(fields.sender_id)
    .bind(fields.name)
    .bind(fields.priority)
    .bind(fields.enabled)
    .bind(fields.cooldown_s)
    .bind(fields.trigger.kind())
    .bind(Json(fields.trigger))
    .bind(Json(fields.reply))
    .bind(now)
    .execute(&mut *c)
    .await?
    .rows_affected());
    if updated == 0 {
        return Err(StoreError::NotFound);
    }
    stamp_version(conn.reborrow(), workspace).await?;
    get(conn, workspace, id).await
}

pub async fn delete(mut conn: Conn<'_>, workspace: WorkspaceId, id: AutomationId) -> Result<()> {
    let deleted = on_conn!(conn.reborrow(), c => sqlx::query(
        "DELETE FROM automations WHERE id = $1 AND workspace_id = $2",
    )
    .bind(id)
    .bind(workspace)
    .execute(&mut *c)
    .await?
    .rows_affected());
    if deleted == 0 {
        return Err(StoreError::NotFound);
    }
    stamp_version(conn, workspace).await
}

/// Gives the workspace's rules a new version: caches of the old one are stale.
async fn stamp_version(conn: Conn<'_>, workspace: WorkspaceId) -> Result<()> {
    let version = uuid::Uuid::new_v4().simple().to_string();
    on_conn!(conn, c => sqlx::query("UPDATE workspaces SET automations_version = $2 WHERE id = $1")
        .bind(workspace)
        .bind(version)
        .execute(&mut *c)
        .await
        .map(drop))?;
    Ok(())
}

/// The version of the workspace's rules (`None` until a rule is first written).
pub async fn version(conn: Conn<'_>, workspace: WorkspaceId) -> Result<Option<String>> {
    on_conn!(conn, c => Ok(sqlx::query_scalar(
        "SELECT automations_version FROM workspaces WHERE id = $1",
    )
    .bind(workspace)
    .fetch_optional(&mut *c)
    .await?
    .flatten()))
}

/// One reply a rule sent.
#[derive(Clone, Debug, PartialEq, FromRow)]
pub struct Run {
    pub id: AutomationRunId,
    pub automation_id: AutomationId,
    pub inbound_message_id: MessageId,
    pub contact_id: ContactId,
    pub reply_message_id: MessageId,
    pub at: DateTime<Utc>,
}

pub struct NewRun {
    pub automation_id: AutomationId,
    pub inbound_message_id: MessageId,
    pub contact_id: ContactId,
    pub reply_message_id: MessageId,
}

pub async fn insert_run(
    conn: Conn<'_>,
    workspace: WorkspaceId,
    run: &NewRun,
    now: DateTime<Utc>,
) -> Result<()> {
    on_conn!(conn, c => sqlx::query(
        "INSERT INTO automation_runs (id, workspace_id, automation_id, inbound_message_id,
                                      contact_id, reply_message_id, at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(AutomationRunId::generate())
    .bind(workspace)
    .bind(run.automation_id)
    .bind(run.inbound_message_id)
    .bind(run.contact_id)
    .bind(run.reply_message_id)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(drop))?;
    Ok(())
}

/// A page of a rule's runs, newest first (the rule checked against the workspace first).
pub async fn runs(
    mut conn: Conn<'_>,
    workspace: WorkspaceId,
    automation: AutomationId,
    page: Page,
) -> Result<(Vec<Run>, i64)> {
    get(conn.reborrow(), workspace, automation).await?;
    let mut from_where = SqlBuilder::new("FROM automation_runs WHERE automation_id = ");
    from_where.bind(Param::Id(automation.0));
    fetch_page(
        conn,
        "id, automation_id, inbound_message_id, contact_id, reply_message_id, at",
        &from_where,
        "at DESC, id DESC",
        page,
    )
    .await
}

/// Whether `automation` replied to `contact` after `since` (its cooldown).
pub async fn replied_since(
    conn: Conn<'_>,
    automation: AutomationId,
    contact: ContactId,
    since: DateTime<Utc>,
) -> Result<bool> {
    on_conn!(conn, c => Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM automation_runs
                        WHERE automation_id = $1 AND contact_id = $2 AND at > $3)",
    )
    .bind(automation)
    .bind(contact)
    .bind(since)
    .fetch_one(&mut *c)
    .await?))
}

/// Automatic replies (rules' and consent keywords') queued for `contact` after `since`.
pub async fn replies_to_contact_since(
    conn: Conn<'_>,
    contact: ContactId,
    since: DateTime<Utc>,
) -> Result<i64> {
    on_conn!(conn, c => Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM messages
         WHERE contact_id = $1 AND created_at > $2 AND reply_to IS NOT NULL",
    )
    .bind(contact)
    .bind(since)
    .fetch_one(&mut *c)
    .await?))
}

/// The workspace's consent-keyword replies: API.md's texts until it sets its own.
pub async fn keyword_replies(conn: Conn<'_>, workspace: WorkspaceId) -> Result<KeywordReplies> {
    let row: Option<(Option<String>, Option<String>, Option<String>)> = on_conn!(conn, c => sqlx::query_as(
        "SELECT opt_out_reply, opt_in_reply, help_reply FROM keyword_replies WHERE workspace_id = $1",
    )
    .bind(workspace)
    .fetch_optional(&mut *c)
    .await?);
    Ok(match row {
        Some((opt_out_reply, opt_in_reply, help_reply)) => KeywordReplies {
            opt_out_reply,
            opt_in_reply,
            help_reply,
        },
        None => KeywordReplies::default(),
    })
}

pub async fn set_keyword_replies(
    conn: Conn<'_>,
    workspace: WorkspaceId,
    replies: &KeywordReplies,
    now: DateTime<Utc>,
) -> Result<()> {
    on_conn!(conn, c => sqlx::query(
        "INSERT INTO keyword_replies (workspace_id, opt_out_reply, opt_in_reply, help_reply, updated_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (workspace_id) DO UPDATE SET opt_out_reply = excluded.opt_out_reply,
             opt_in_reply = excluded.opt_in_reply, help_reply = excluded.help_reply,
             updated_at = excluded.updated_at",
    )
    .bind(workspace)
    .bind(replies.opt_out_reply.as_deref())
    .bind(replies.opt_in_reply.as_deref())
    .bind(replies.help_reply.as_deref())
    .bind(now)
    .execute(&mut *c)
    .await
    .map(drop))?;
    Ok(())
}
