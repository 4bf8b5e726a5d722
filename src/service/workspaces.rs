//! Workspaces: the tenants every other row belongs to, named by their operator.

use chrono::{DateTime, Utc};

use super::{ServiceError, ServiceResult};
use crate::store::Db;
use crate::store::workspaces::{self, Workspace};

/// The workspace called `name`, created when it does not exist yet.
pub async fn ensure(db: &Db, name: &str, now: DateTime<Utc>) -> ServiceResult<Workspace> {
    let name = name.trim();
    if name.is_empty() {
        return Err(ServiceError::validation("workspace", "must not be empty"));
    }
    let mut conn = db.write().await?;
    Ok(workspaces::ensure(conn.conn(), name, now).await?)
}
