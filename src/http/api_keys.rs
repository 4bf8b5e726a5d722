//! `GET /v1/me` (the calling key, its limits and usage) and `/v1/api-keys`: a workspace's keys
//! over HTTP, for keys holding `*`.

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Authorized, Caller, can};
use super::error::ApiResult;
use super::extract::{Id, JsonBody};
use super::{AppState, List};
use crate::domain::auth::Ability;
use crate::domain::ids::ApiKeyId;
use crate::service::api_keys::{self as service, NewKey};
use crate::store::Page;
use crate::store::api_keys::KeyListing;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(me))
        .routes(routes!(create, list))
        .routes(routes!(revoke))
}

#[derive(Debug, Serialize, ToSchema)]
struct Limits {
    /// Requests a minute.
    per_minute: i64,
    /// Requests a UTC day; `null`: no quota.
    daily: Option<i64>,
    /// Requests a UTC month; `null`: no quota.
    monthly: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
struct Usage {
    /// Requests today (UTC), this one included.
    today: i64,
    /// Requests this month (UTC), this one included.
    month: i64,
}

/// The calling key.
#[derive(Debug, Serialize, ToSchema)]
struct MeBody {
    id: ApiKeyId,
    name: String,
    /// The workspace's name.
    workspace: String,
    #[schema(value_type = Vec<String>)]
    abilities: Vec<Ability>,
    limits: Limits,
    usage: Usage,
    expires_at: Option<DateTime<Utc>>,
}

/// The calling key, its limits and its usage
#[utoipa::path(get, path = "/v1/me", tag = "api_keys",
    responses((status = 200, description = "The key of this request's token", body = MeBody)))]
async fn me(
    Extension(caller): Extension<Caller>,
    State(state): State<AppState>,
) -> ApiResult<Json<MeBody>> {
    let me = service::me(&state.db, caller.key_id, state.clock.now()).await?;
    let per_minute = me
        .key
        .rate_per_minute
        .unwrap_or(i64::from(state.config.api_rate_per_minute));
    Ok(Json(MeBody {
        id: me.key.id,
        name: me.key.name,
        workspace: me.workspace,
        abilities: me.key.abilities.0,
        limits: Limits {
            per_minute,
            daily: me.key.daily_quota,
            monthly: me.key.monthly_quota,
        },
        usage: Usage {
            today: me.today,
            month: me.month,
        },
        expires_at: me.key.expires_at,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
struct NewKeyBody {
    name: String,
    /// Ability names; default `["*"]`.
    #[schema(value_type = Option<Vec<String>>)]
    abilities: Option<Vec<Ability>>,
    rate_per_minute: Option<u32>,
    daily_quota: Option<u32>,
    monthly_quota: Option<u32>,
    expires_at: Option<DateTime<Utc>>,
}

/// A key of the workspace: never its token once created.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ApiKey)]
struct KeyBody {
    id: ApiKeyId,
    name: String,
    #[schema(value_type = Vec<String>)]
    abilities: Vec<Ability>,
    rate_per_minute: Option<i64>,
    daily_quota: Option<i64>,
    monthly_quota: Option<i64>,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

impl From<KeyListing> for KeyBody {
    fn from(key: KeyListing) -> Self {
        Self {
            id: key.id,
            name: key.name,
            abilities: key.abilities.0,
            rate_per_minute: key.rate_per_minute,
            daily_quota: key.daily_quota,
            monthly_quota: key.monthly_quota,
            created_at: key.created_at,
            expires_at: key.expires_at,
            revoked_at: key.revoked_at,
        }
    }
}

/// A new key with its token, shown this once.
#[derive(Debug, Serialize, ToSchema)]
struct CreatedKey {
    id: ApiKeyId,
    name: String,
    /// The bearer token: only its digest is kept.
    token: String,
}

/// Create a key in this workspace
#[utoipa::path(post, path = "/v1/api-keys", tag = "api_keys", request_body = NewKeyBody,
    responses((status = 201, description = "Created, with its token", body = CreatedKey)))]
async fn create(
    auth: Authorized<can::All>,
    State(state): State<AppState>,
    JsonBody(new): JsonBody<NewKeyBody>,
) -> ApiResult<(StatusCode, Json<CreatedKey>)> {
    let workspace = {
        let mut conn = state.db.read().await?;
        crate::store::workspaces::get(conn.conn(), auth.workspace)
            .await?
            .name
    };
    let key = NewKey {
        workspace: &workspace,
        name: &new.name,
        abilities: new.abilities.unwrap_or_else(|| vec![Ability::All]),
        rate_per_minute: new.rate_per_minute,
        daily_quota: new.daily_quota,
        monthly_quota: new.monthly_quota,
        expires_at: new.expires_at,
    };
    let minted = service::create(&state.db, key, state.clock.now()).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            id: minted.id,
            name: new.name.trim().to_owned(),
            token: minted.token,
        }),
    ))
}

/// The workspace's keys
///
/// Oldest first, revoked and expired ones included.
#[utoipa::path(get, path = "/v1/api-keys", tag = "api_keys",
    responses((status = 200, description = "Every key of the workspace", body = inline(List<KeyBody>))))]
async fn list(
    auth: Authorized<can::All>,
    State(state): State<AppState>,
) -> ApiResult<Json<List<KeyBody>>> {
    let keys = service::list_in(&state.db, auth.workspace).await?;
    let total = keys.len() as i64;
    let page = Page {
        page: 1,
        per_page: u32::try_from(keys.len()).unwrap_or(u32::MAX).max(1),
    };
    Ok(Json(List::of(keys, page, total)))
}

/// Revoke a key
///
/// Its next request gets `401`, in every process.
#[utoipa::path(delete, path = "/v1/api-keys/{id}", tag = "api_keys",
    params(("id" = ApiKeyId, Path, description = "Key id")),
    responses((status = 204, description = "Revoked")))]
async fn revoke(
    auth: Authorized<can::All>,
    State(state): State<AppState>,
    Id(id): Id<ApiKeyId>,
) -> ApiResult<StatusCode> {
    service::revoke_in(&state.db, auth.workspace, id, state.clock.now()).await?;
    Ok(StatusCode::NO_CONTENT)
}
