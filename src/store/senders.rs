//! Senders: one sending identity each, with its provider and pacing. Pacing fields are columns
//! of their own, so the engine and operators can query them.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;
use sqlx::FromRow;
use sqlx::types::Json;

use super::sql::{Param, SqlBuilder, fetch_page};
use super::{Conn, Page, Result, StoreError, Tx, on_conn};
use crate::domain::ids::{SenderId, WorkspaceId};
use crate::domain::pacing::{Pacing, SendWindow};
use crate::domain::provider::ProviderKind;
use crate::domain::time::{LocalTime, Zone};

macro_rules! columns {
    () => {
        "id, workspace_id, name, provider, provider_config, timezone, callback_secret, \
         daily_limit, warmup_enabled, warmup_start_limit, warmup_max_limit, warmup_days, \
         warmup_started_on, shift_min_ms, shift_max_ms, typing_enabled, typing_cps, typing_min_ms, \
         typing_max_ms, rate_per_minute, window_days, window_start, window_end, created_at, updated_at"
    };
}

#[derive(Clone, Debug, PartialEq, FromRow)]
pub struct Sender {
    pub id: SenderId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub provider: ProviderKind,
    pub provider_config: Json<Value>,
    pub timezone: Zone,
    pub callback_secret: String,
    pub daily_limit: Option<i64>,
    pub warmup_enabled: bool,
    pub warmup_start_limit: Option<i64>,
    pub warmup_max_limit: Option<i64>,
    pub warmup_days: Option<i64>,
    /// The sender's local date that was warmup day 1.
    pub warmup_started_on: Option<NaiveDate>,
    pub shift_min_ms: Option<i64>,
    pub shift_max_ms: Option<i64>,
    pub typing_enabled: bool,
    pub typing_cps: Option<i64>,
    pub typing_min_ms: Option<i64>,
    pub typing_max_ms: Option<i64>,
    pub rate_per_minute: Option<i64>,
    pub window_days: Option<Json<Vec<u8>>>,
    pub window_start: Option<LocalTime>,
    pub window_end: Option<LocalTime>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Columns hold what `Pacing` validated, so a value outside `u32` can only come from a hand edit.
fn small(value: Option<i64>) -> Option<u32> {
    value.and_then(|v| u32::try_from(v).ok())
}

impl Sender {
    /// The sender's time zone. A stored name that is no zone fails the read of the row, never
    /// becomes UTC: that would silently move the sender's day, daily cap and send window.
    pub fn tz(&self) -> chrono_tz::Tz {
        self.timezone.tz()
    }

    pub fn pacing(&self) -> Pacing {
        Pacing {
            daily_limit: small(self.daily_limit),
            warmup_enabled: self.warmup_enabled,
            warmup_start_limit: small(self.warmup_start_limit),
            warmup_max_limit: small(self.warmup_max_limit),
            warmup_days: small(self.warmup_days),
            shift_min_ms: small(self.shift_min_ms),
            shift_max_ms: small(self.shift_max_ms),
            typing_enabled: self.typing_enabled,
            typing_cps: small(self.typing_cps),
            typing_min_ms: small(self.typing_min_ms),
            typing_max_ms: small(self.typing_max_ms),
            rate_per_minute: small(self.rate_per_minute),
            send_window: match (&self.window_days, self.window_start, self.window_end) {
                (Some(days), Some(start), Some(end)) => Some(SendWindow {
                    days: days.0.clone(),
                    start,
                    end,
                }),
                _ => None,
            },
        }
    }
}

/// A sender's fields, already validated.
pub struct SenderFields<'a> {
    pub name: &'a str,
    pub provider: ProviderKind,
    pub provider_config: &'a Value,
    pub timezone: Zone,
    pub pacing: &'a Pacing,
    /// Local date of warmup day 1; `None` when warmup is off.
    pub warmup_started_on: Option<NaiveDate>,
}

/// Creates a sender: a row with its identity, then the same field write as [`update`], in one
/// transaction so no half-written sender is ever seen.
pub async fn insert(
    tx: &mut Tx,
    workspace: WorkspaceId,
    fields: &SenderFields<'_>,
    callback_secret: &str,
    now: DateTime<Utc>,
) -> Result<Sender> {
    let id = SenderId::generate();
    on_conn!(tx.conn(), c => {
        sqlx::query(
            "INSERT INTO senders (id, workspace_id, callback_secret, created_at, updated_at,
                                  name, provider, timezone)
             VALUES ($1, $2, $3, $4, $4, '', '', 'UTC')",
        )
        .bind(id)
        .bind(workspace)
        .bind(callback_secret)
        .bind(now)
        .execute(&mut *c)
        .await?;
    });
    update(tx.conn(), workspace, id, fields, now).await
}

/// Replaces every editable field of a sender.
pub async fn update(
    mut conn: Conn<'_>,
    workspace: WorkspaceId,
    id: SenderId,
    fields: &SenderFields<'_>,
    now: DateTime<Utc>,
) -> Result<Sender> {
    let pacing = fields.pacing;
    let long = |value: Option<u32>| value.map(i64::from);
    let window = pacing.send_window.as_ref();
    let updated = on_conn!(conn.reborrow(), c => sqlx::query(
        "UPDATE senders SET
             name = $3, provider = $4, provider_config = $5, timezone = $6,
             daily_limit = $7, warmup_enabled = $8, warmup_start_limit = $9, warmup_max_limit = $10,
             warmup_days = $11, warmup_started_on = $12, shift_min_ms = $13, shift_max_ms = $14,
             typing_enabled = $15, typing_cps = $16, typing_min_ms = $17, typing_max_ms = $18,
             rate_per_minute = $19, window_days = $20, window_start = $21, window_end = $22,
             updated_at = $23
         WHERE id = $1 AND workspace_id = $2",
    )
    .bind(id)
    .bind(workspace)
    .bind(fields.name)
    .bind(fields.provider)
    .bind(Json(fields.provider_config))
    .bind(fields.timezone)
    .bind(long(pacing.daily_limit))
    .bind(pacing.warmup_enabled)
    .bind(long(pacing.warmup_start_limit))
    .bind(long(pacing.warmup_max_limit))
    .bind(long(pacing.warmup_days))
    .bind(fields.warmup_started_on)
    .bind(long(pacing.shift_min_ms))
    .bind(long(pacing.shift_max_ms))
    .bind(pacing.typing_enabled)
    .bind(long(pacing.typing_cps))
    .bind(long(pacing.typing_min_ms))
    .bind(long(pacing.typing_max_ms))
    .bind(long(pacing.rate_per_minute))
    .bind(window.map(|w| Json(w.days.clone())))
    .bind(window.map(|w| w.start))
    .bind(window.map(|w| w.end))
    .bind(now)
    .execute(&mut *c)
    .await?
    .rows_affected());
    if updated == 0 {
        return Err(StoreError::NotFound);
    }
    get(conn, workspace, id).await
}

pub async fn get(conn: Conn<'_>, workspace: WorkspaceId, id: SenderId) -> Result<Sender> {
    on_conn!(conn, c => Ok(sqlx::query_as(concat!(
        "SELECT ", columns!(), " FROM senders WHERE id = $1 AND workspace_id = $2"
    ))
    .bind(id)
    .bind(workspace)
    .fetch_one(&mut *c)
    .await?))
}

/// A sender by id alone: provider callbacks prove their workspace with the sender's secret.
pub async fn get_unscoped(conn: Conn<'_>, id: SenderId) -> Result<Sender> {
    on_conn!(conn, c => Ok(sqlx::query_as(concat!("SELECT ", columns!(), " FROM senders WHERE id = $1"))
        .bind(id)
        .fetch_one(&mut *c)
        .await?))
}

pub async fn list(
    conn: Conn<'_>,
    workspace: WorkspaceId,
    page: Page,
) -> Result<(Vec<Sender>, i64)> {
    let mut from_where = SqlBuilder::new("FROM senders WHERE workspace_id = ");
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

/// Deletes a sender that no campaign or message refers to; otherwise [`StoreError::InUse`].
pub async fn delete(conn: Conn<'_>, workspace: WorkspaceId, id: SenderId) -> Result<()> {
    let deleted = on_conn!(conn, c => sqlx::query("DELETE FROM senders WHERE id = $1 AND workspace_id = $2")
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
