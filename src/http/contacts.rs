//! `/v1/contacts` and `/v1/imports`: contacts keyed by E.164 phone, their consent flags, and
//! CSV imports run by the engine.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::List;
use super::auth::{Authorized, can};
use super::error::ApiResult;
use super::extract::{Id, JsonBody, PageParams, Query, present};
use super::messages::MessageBody;
use crate::domain::contact::ImportStatus;
use crate::domain::ids::{ContactId, ImportId};
use crate::domain::message::Direction;
use crate::service::contacts::{self as service, ContactChange, ContactInput};
use crate::service::imports;
use crate::store::contacts::{Contact, ContactFilter};
use crate::store::imports::Import;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(show, update, delete))
        .routes(routes!(block))
        .routes(routes!(unblock))
        .routes(routes!(opt_out))
        .routes(routes!(opt_in))
        .routes(routes!(conversation))
        .routes(routes!(import))
        .routes(routes!(show_import))
}

#[derive(Debug, Deserialize, ToSchema)]
struct NewContact {
    /// Any common spelling; stored in E.164 (`+20 101-234-5678` → `+201012345678`).
    phone: String,
    name: Option<String>,
    email: Option<String>,
    tags: Option<Vec<String>>,
    /// Values may be strings, numbers or booleans; they are stored as text.
    #[schema(value_type = Object)]
    custom_fields: Option<BTreeMap<String, Value>>,
    /// IANA time zone.
    timezone: Option<String>,
}

/// Fields to change; a field sent as `null` is cleared, an absent one kept.
#[derive(Debug, Default, Deserialize, ToSchema)]
struct ContactPatch {
    phone: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    email: Option<Option<String>>,
    tags: Option<Vec<String>>,
    /// Replaces the custom fields.
    #[schema(value_type = Object)]
    custom_fields: Option<BTreeMap<String, Value>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    timezone: Option<Option<String>>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ContactQuery {
    /// Part of the name, phone or email, case-insensitive.
    search: Option<String>,
    /// Contacts carrying this tag.
    tag: Option<String>,
    opted_out: Option<bool>,
    blocked: Option<bool>,
}

/// A contact, as API.md shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Contact)]
pub(super) struct ContactBody {
    id: ContactId,
    /// E.164.
    phone: String,
    name: Option<String>,
    email: Option<String>,
    tags: Vec<String>,
    custom_fields: BTreeMap<String, String>,
    timezone: Option<String>,
    opted_out_at: Option<DateTime<Utc>>,
    blocked: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<Contact> for ContactBody {
    fn from(contact: Contact) -> Self {
        Self {
            id: contact.id,
            phone: contact.phone,
            name: contact.name,
            email: contact.email,
            tags: contact.tags.0,
            custom_fields: contact.custom_fields.0,
            timezone: contact.timezone,
            opted_out_at: contact.opted_out_at,
            blocked: contact.blocked,
            created_at: contact.created_at,
            updated_at: contact.updated_at,
        }
    }
}

/// An import's progress, as API.md shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Import)]
struct ImportBody {
    id: ImportId,
    status: ImportStatus,
    /// Data rows read so far.
    total: i64,
    created: i64,
    updated: i64,
    failed: i64,
    /// The rows that were not imported, by line (the header is line 1); the first 1,000.
    errors: Vec<RowErrorBody>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = RowError)]
struct RowErrorBody {
    line: u64,
    message: String,
}

impl From<Import> for ImportBody {
    fn from(import: Import) -> Self {
        Self {
            id: import.id,
            status: import.status,
            total: import.total,
            created: import.created,
            updated: import.updated,
            failed: import.failed,
            errors: import
                .errors
                .0
                .into_iter()
                .map(|error| RowErrorBody {
                    line: error.line,
                    message: error.message,
                })
                .collect(),
            created_at: import.created_at,
            updated_at: import.updated_at,
            finished_at: import.finished_at,
        }
    }
}

/// Create a contact
#[utoipa::path(post, path = "/v1/contacts", tag = "contacts", request_body = NewContact,
    responses((status = 201, description = "Created", body = ContactBody)))]
async fn create(
    auth: Authorized<can::ContactsWrite>,
    State(state): State<AppState>,
    JsonBody(new): JsonBody<NewContact>,
) -> ApiResult<(StatusCode, Json<ContactBody>)> {
    let input = ContactInput {
        phone: Some(new.phone),
        name: new.name,
        email: new.email,
        tags: new.tags.unwrap_or_default(),
        custom_fields: new.custom_fields.unwrap_or_default(),
        timezone: new.timezone,
    };
    let contact = service::create(&state.db, auth.workspace, input, state.clock.now()).await?;
    Ok((StatusCode::CREATED, Json(contact.into())))
}

/// List and search contacts
#[utoipa::path(get, path = "/v1/contacts", tag = "contacts", params(PageParams, ContactQuery),
    responses((status = 200, description = "A page of contacts, newest first", body = inline(List<ContactBody>))))]
async fn list(
    auth: Authorized<can::ContactsRead>,
    State(state): State<AppState>,
    Query(page): Query<PageParams>,
    Query(query): Query<ContactQuery>,
) -> ApiResult<Json<List<ContactBody>>> {
    let page = page.page()?;
    let filter = ContactFilter {
        search: query.search,
        tag: query.tag,
        opted_out: query.opted_out,
        blocked: query.blocked,
    };
    let (contacts, total) = service::list(&state.db, auth.workspace, &filter, page).await?;
    Ok(Json(List::of(contacts, page, total)))
}

/// Show a contact
#[utoipa::path(get, path = "/v1/contacts/{id}", tag = "contacts",
    params(("id" = ContactId, Path, description = "Contact id")),
    responses((status = 200, description = "The contact", body = ContactBody)))]
async fn show(
    auth: Authorized<can::ContactsRead>,
    State(state): State<AppState>,
    Id(id): Id<ContactId>,
) -> ApiResult<Json<ContactBody>> {
    let contact = service::get(&state.db, auth.workspace, id).await?;
    Ok(Json(contact.into()))
}

/// Change a contact
#[utoipa::path(patch, path = "/v1/contacts/{id}", tag = "contacts", request_body = ContactPatch,
    params(("id" = ContactId, Path, description = "Contact id")),
    responses((status = 200, description = "The changed contact", body = ContactBody)))]
async fn update(
    auth: Authorized<can::ContactsWrite>,
    State(state): State<AppState>,
    Id(id): Id<ContactId>,
    JsonBody(patch): JsonBody<ContactPatch>,
) -> ApiResult<Json<ContactBody>> {
    let change = ContactChange {
        phone: patch.phone,
        name: patch.name,
        email: patch.email,
        tags: patch.tags,
        custom_fields: patch.custom_fields,
        timezone: patch.timezone,
    };
    let contact = service::update(&state.db, auth.workspace, id, change, state.clock.now()).await?;
    Ok(Json(contact.into()))
}

/// Delete a contact
///
/// Its messages stay, for the campaigns' records.
#[utoipa::path(delete, path = "/v1/contacts/{id}", tag = "contacts",
    params(("id" = ContactId, Path, description = "Contact id")),
    responses((status = 204, description = "Deleted")))]
async fn delete(
    auth: Authorized<can::ContactsWrite>,
    State(state): State<AppState>,
    Id(id): Id<ContactId>,
) -> ApiResult<StatusCode> {
    service::delete(&state.db, auth.workspace, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Block a contact: no campaign or message reaches it
#[utoipa::path(post, path = "/v1/contacts/{id}/block", tag = "contacts",
    params(("id" = ContactId, Path, description = "Contact id")),
    responses((status = 200, description = "The contact", body = ContactBody)))]
async fn block(
    auth: Authorized<can::ContactsWrite>,
    State(state): State<AppState>,
    Id(id): Id<ContactId>,
) -> ApiResult<Json<ContactBody>> {
    let contact =
        service::set_blocked(&state.db, auth.workspace, id, true, state.clock.now()).await?;
    Ok(Json(contact.into()))
}

/// Unblock a contact
#[utoipa::path(post, path = "/v1/contacts/{id}/unblock", tag = "contacts",
    params(("id" = ContactId, Path, description = "Contact id")),
    responses((status = 200, description = "The contact", body = ContactBody)))]
async fn unblock(
    auth: Authorized<can::ContactsWrite>,
    State(state): State<AppState>,
    Id(id): Id<ContactId>,
) -> ApiResult<Json<ContactBody>> {
    let contact =
        service::set_blocked(&state.db, auth.workspace, id, false, state.clock.now()).await?;
    Ok(Json(contact.into()))
}

/// Record that a contact opted out of messages
#[utoipa::path(post, path = "/v1/contacts/{id}/opt-out", tag = "contacts",
    params(("id" = ContactId, Path, description = "Contact id")),
    responses((status = 200, description = "The contact", body = ContactBody)))]
async fn opt_out(
    auth: Authorized<can::ContactsWrite>,
    State(state): State<AppState>,
    Id(id): Id<ContactId>,
) -> ApiResult<Json<ContactBody>> {
    let contact =
        service::set_opted_out(&state.db, auth.workspace, id, true, state.clock.now()).await?;
    Ok(Json(contact.into()))
}

/// Record that a contact opted back in
#[utoipa::path(post, path = "/v1/contacts/{id}/opt-in", tag = "contacts",
    params(("id" = ContactId, Path, description = "Contact id")),
    responses((status = 200, description = "The contact", body = ContactBody)))]
async fn opt_in(
    auth: Authorized<can::ContactsWrite>,
    State(state): State<AppState>,
    Id(id): Id<ContactId>,
) -> ApiResult<Json<ContactBody>> {
    let contact =
        service::set_opted_out(&state.db, auth.workspace, id, false, state.clock.now()).await?;
    Ok(Json(contact.into()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ConversationQuery {
    #[param(inline)]
    direction: Option<Direction>,
}

/// A contact's conversation
///
/// Both directions, newest first: what campaigns and single sends sent it, and what it wrote
/// (inbound messages carry `from` and `received_at`).
#[utoipa::path(get, path = "/v1/contacts/{id}/messages", tag = "contacts",
    params(("id" = ContactId, Path, description = "Contact id"), PageParams, ConversationQuery),
    responses((status = 200, description = "A page of its messages", body = inline(List<MessageBody>))))]
async fn conversation(
    auth: Authorized<can::MessagesRead>,
    State(state): State<AppState>,
    Id(id): Id<ContactId>,
    Query(page): Query<PageParams>,
    Query(query): Query<ConversationQuery>,
) -> ApiResult<Json<List<MessageBody>>> {
    let page = page.page()?;
    let (messages, total) =
        service::conversation(&state.db, auth.workspace, id, query.direction, page).await?;
    Ok(Json(List::of(messages, page, total)))
}

#[derive(Serialize, ToSchema)]
struct ImportAccepted {
    import_id: ImportId,
}

/// Import contacts from CSV
///
/// Header row: `phone`, `name`, `email`, `tags` (separated by `;`), `timezone`; any other column
/// is a custom field. Phones are normalised; a phone the workspace has updates its contact. The
/// import runs as a job: follow it at `/v1/imports/{import_id}`.
#[utoipa::path(post, path = "/v1/contacts/import", tag = "contacts",
    request_body(content = String, content_type = "text/csv",
                 example = "phone,name,tags,plan\n+15551234567,Jane,vip;new,gold\n"),
    responses((status = 202, description = "Queued", body = ImportAccepted)))]
async fn import(
    auth: Authorized<can::ContactsWrite>,
    State(state): State<AppState>,
    csv: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<(StatusCode, Json<ImportAccepted>)> {
    let csv = csv?;
    let import = imports::upload(&state.db, auth.workspace, &csv, state.clock.now()).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(ImportAccepted {
            import_id: import.id,
        }),
    ))
}

/// Follow an import
#[utoipa::path(get, path = "/v1/imports/{id}", tag = "contacts",
    params(("id" = ImportId, Path, description = "Import id")),
    responses((status = 200, description = "Its progress", body = ImportBody)))]
async fn show_import(
    auth: Authorized<can::ContactsRead>,
    State(state): State<AppState>,
    Id(id): Id<ImportId>,
) -> ApiResult<Json<ImportBody>> {
    let import = imports::get(&state.db, auth.workspace, id).await?;
    Ok(Json(import.into()))
}
