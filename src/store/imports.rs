//! CSV imports of contacts: the upload, and the progress its job reports.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::FromRow;
use sqlx::types::Json;

use super::events::{self, NewEvent};
use super::{Conn, Result, StoreError, on_conn};
use crate::domain::contact::ImportStatus;
use crate::domain::event::{EventType, ImportEvent};
use crate::domain::ids::{ImportId, WorkspaceId};

/// At most this many row errors are kept; `failed` still counts them all.
pub const MAX_ERRORS_KEPT: usize = 1000;

/// An upload and how far its run has come.
#[derive(Clone, Debug, PartialEq, FromRow)]
pub struct Import {
    pub id: ImportId,
    pub workspace_id: WorkspaceId,
    pub status: ImportStatus,
    /// Data rows read so far.
    pub total: i64,
    pub created: i64,
    pub updated: i64,
    pub failed: i64,
    pub errors: Json<Vec<RowError>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A row that was not imported, by its line in the file (the header is line 1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowError {
    pub line: u64,
    pub message: String,
}

/// How far an import has come: every figure is a running total.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Progress {
    pub total: i64,
    pub created: i64,
    pub updated: i64,
    pub failed: i64,
    pub errors: Vec<RowError>,
}

impl From<&Import> for Progress {
    fn from(import: &Import) -> Self {
        Self {
            total: import.total,
            created: import.created,
            updated: import.updated,
            failed: import.failed,
            errors: import.errors.0.clone(),
        }
    }
}

macro_rules! columns {
    () => {
        "id, workspace_id, status, total, created, updated, failed, errors, created_at, \
         updated_at, finished_at"
    };
}

pub async fn insert(
    mut conn: Conn<'_>,
    workspace: WorkspaceId,
    csv: &[u8],
    now: DateTime<Utc>,
) -> Result<Import> {
    let id = ImportId::generate();
    on_conn!(conn.reborrow(), c => sqlx::query(
        "INSERT INTO contact_imports (id, workspace_id, status, csv, created_at, updated_at)
         VALUES ($1, $2, 'queued', $3, $4, $4)",
    )
    .bind(id)
    .bind(workspace)
    .bind(csv)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(drop))?;
    get(conn, workspace, id).await
}

pub async fn get(conn: Conn<'_>, workspace: WorkspaceId, id: ImportId) -> Result<Import> {
    on_conn!(conn, c => Ok(sqlx::query_as(concat!(
        "SELECT ", columns!(), " FROM contact_imports WHERE id = $1 AND workspace_id = $2"
    ))
    .bind(id)
    .bind(workspace)
    .fetch_one(&mut *c)
    .await?))
}

/// How long a run holds an import without committing a batch; each batch renews it.
pub const IMPORT_LEASE: chrono::Duration = chrono::Duration::seconds(60);

/// An unfinished import and its file, for the run that takes it: marks it running under
/// `owner`'s lease until `lease_until`. `NotFound` when it is finished, gone, or a run (of any
/// process, this one included) holds an unexpired lease on it.
pub async fn start(
    mut conn: Conn<'_>,
    id: ImportId,
    owner: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
) -> Result<(Import, Vec<u8>)> {
    let csv: Option<Option<Vec<u8>>> = on_conn!(conn.reborrow(), c => sqlx::query_scalar(
        "UPDATE contact_imports SET status = 'running', updated_at = $2, lease_owner = $3,
                                    lease_expires_at = $4
         WHERE id = $1 AND status IN ('queued', 'running')
           AND (lease_expires_at IS NULL OR lease_expires_at <= $2)
         RETURNING csv",
    )
    .bind(id)
    .bind(now)
    .bind(owner)
    .bind(lease_until)
    .fetch_optional(&mut *c)
    .await?);
    let csv = csv.ok_or(StoreError::NotFound)?.unwrap_or_default();
    let import = on_conn!(conn, c => sqlx::query_as(concat!(
        "SELECT ", columns!(), " FROM contact_imports WHERE id = $1"
    ))
    .bind(id)
    .fetch_one(&mut *c)
    .await?);
    Ok((import, csv))
}

/// Imports no run is working on: uploaded and never taken, or running under a lease that ran
/// out (their process died mid-file). Oldest first.
pub async fn waiting(conn: Conn<'_>, now: DateTime<Utc>) -> Result<Vec<ImportId>> {
    on_conn!(conn, c => Ok(sqlx::query_scalar(
        "SELECT id FROM contact_imports
         WHERE (status = 'queued' AND lease_expires_at IS NULL)
            OR (status IN ('queued', 'running') AND lease_expires_at <= $1)
         ORDER BY created_at LIMIT 16",
    )
    .bind(now)
    .fetch_all(&mut *c)
    .await?))
}

/// Records progress, in the transaction that wrote the rows it counts, so a rerun after a crash
/// resumes after the last batch; renews `owner`'s lease. `false`, having written nothing, when
/// the import is no longer `owner`'s (its lease ran out and another run took it): that run
/// must stop.
pub async fn record_progress(
    conn: Conn<'_>,
    id: ImportId,
    owner: &str,
    progress: &Progress,
    now: DateTime<Utc>,
) -> Result<bool> {
    let recorded = on_conn!(conn, c => sqlx::query(
        "UPDATE contact_imports SET total = $2, created = $3, updated = $4, failed = $5,
                                    errors = $6, updated_at = $7, lease_expires_at = $8
         WHERE id = $1 AND lease_owner = $9",
    )
    .bind(id)
    .bind(progress.total)
    .bind(progress.created)
    .bind(progress.updated)
    .bind(progress.failed)
    .bind(Json(&progress.errors))
    .bind(now)
    .bind(now + IMPORT_LEASE)
    .bind(owner)
    .execute(&mut *c)
    .await?
    .rows_affected());
    Ok(recorded == 1)
}

/// Ends an import as `completed` or `failed` (with a file-level error) and lets its file go;
/// `false`, having written nothing, when the import is no longer `owner`'s.
pub async fn finish(
    mut conn: Conn<'_>,
    id: ImportId,
    owner: &str,
    progress: &Progress,
    completed: bool,
    now: DateTime<Utc>,
) -> Result<bool> {
    if !record_progress(conn.reborrow(), id, owner, progress, now).await? {
        return Ok(false);
    }
    let status = if completed {
        ImportStatus::Completed
    } else {
        ImportStatus::Failed
    };
    let workspace: WorkspaceId = on_conn!(conn.reborrow(), c => sqlx::query_scalar(
        "UPDATE contact_imports SET status = $2, csv = NULL, finished_at = $3 WHERE id = $1
         RETURNING workspace_id",
    )
    .bind(id)
    .bind(status)
    .bind(now)
    .fetch_one(&mut *c)
    .await?);
    let data = ImportEvent {
        import_id: id,
        status,
        total: progress.total,
        created: progress.created,
        updated: progress.updated,
        failed: progress.failed,
    };
    let event = NewEvent::new(workspace, EventType::ImportCompleted, id, &data, now)?;
    events::append(conn, &[event]).await?;
    Ok(true)
}
