//! `/v1/contacts` and `/v1/imports`: contacts keyed by E.164 phone, their consent flags, and
//! CSV imports run as jobs.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::List;
use super::auth::{Authorized, can};
use super::error::{ApiError, ApiResult};
use super::extract::{Id, JsonBody, PageParams, Query};
use crate::domain::contact::{normalize_tags, parse_email, parse_timezone};
use crate::domain::ids::{ContactId, ImportId};
use crate::domain::phone::Phone;
use crate::domain::validation::FieldErrors;
use crate::store::contacts::{self, Contact, ContactFields, ContactFilter};
use crate::store::imports::{self, Import};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(show, update, delete))
        .routes(routes!(block))
        .routes(routes!(unblock))
        .routes(routes!(opt_out))
        .routes(routes!(opt_in))
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

/// Tells a field sent as `null` (`Some(None)`) from an absent one (`None`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
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

/// Checks what a client sent for a contact; every problem is reported at once.
#[derive(Default)]
struct ContactInput {
    phone: Option<String>,
    name: Option<String>,
    email: Option<String>,
    tags: Vec<String>,
    custom_fields: BTreeMap<String, Value>,
    timezone: Option<String>,
}

impl ContactInput {
    fn check(self) -> ApiResult<ContactFields> {
        let mut errors = FieldErrors::new();
        let phone = match self.phone.as_deref().map(Phone::parse) {
            Some(Ok(phone)) => Some(phone),
            Some(Err(error)) => {
                errors.add("phone", error.to_string());
                None
            }
            None => {
                errors.add("phone", "is required");
                None
            }
        };
        let email = match self
            .email
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            Some(email) => match parse_email(email) {
                Ok(email) => Some(email),
                Err(error) => {
                    errors.add("email", error.to_string());
                    None
                }
            },
            None => None,
        };
        let timezone = self
            .timezone
            .map(|zone| zone.trim().to_owned())
            .filter(|zone| !zone.is_empty());
        if let Some(Err(error)) = timezone.as_deref().map(parse_timezone) {
            errors.add("timezone", error.to_string());
        }
        let mut custom_fields = BTreeMap::new();
        for (name, value) in self.custom_fields {
            let text = match value {
                Value::String(text) => text,
                Value::Number(number) => number.to_string(),
                Value::Bool(flag) => flag.to_string(),
                Value::Null => continue,
                Value::Array(_) | Value::Object(_) => {
                    errors.add(
                        format!("custom_fields.{name}"),
                        "must be a string, number or boolean",
                    );
                    continue;
                }
            };
            if name.trim().is_empty() {
                errors.add("custom_fields", "field names must not be empty");
                continue;
            }
            custom_fields.insert(name.trim().to_owned(), text);
        }
        errors.into_result().map_err(ApiError::Validation)?;
        Ok(ContactFields {
            phone,
            name: self
                .name
                .map(|name| name.trim().to_owned())
                .filter(|name| !name.is_empty()),
            email,
            tags: normalize_tags(self.tags),
            custom_fields,
            timezone,
        })
    }
}

/// Create a contact
#[utoipa::path(post, path = "/v1/contacts", tag = "contacts", request_body = NewContact,
    responses((status = 201, description = "Created", body = Contact)))]
async fn create(
    auth: Authorized<can::ContactsWrite>,
    State(state): State<AppState>,
    JsonBody(new): JsonBody<NewContact>,
) -> ApiResult<(StatusCode, Json<Contact>)> {
    let fields = ContactInput {
        phone: Some(new.phone),
        name: new.name,
        email: new.email,
        tags: new.tags.unwrap_or_default(),
        custom_fields: new.custom_fields.unwrap_or_default(),
        timezone: new.timezone,
    }
    .check()?;
    let mut tx = state.db.begin().await?;
    let contact = contacts::insert(&mut tx, auth.workspace, &fields, state.clock.now()).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(contact)))
}

/// List and search contacts
#[utoipa::path(get, path = "/v1/contacts", tag = "contacts", params(PageParams, ContactQuery),
    responses((status = 200, description = "A page of contacts, newest first", body = inline(List<Contact>))))]
async fn list(
    auth: Authorized<can::ContactsRead>,
    State(state): State<AppState>,
    Query(page): Query<PageParams>,
    Query(query): Query<ContactQuery>,
) -> ApiResult<Json<List<Contact>>> {
    let page = page.page()?;
    let filter = ContactFilter {
        search: query.search,
        tag: query.tag,
        opted_out: query.opted_out,
        blocked: query.blocked,
    };
    let mut conn = state.db.read().await?;
    let (contacts, total) = contacts::list(conn.conn(), auth.workspace, &filter, page).await?;
    Ok(Json(List::new(contacts, page, total)))
}

/// Show a contact
#[utoipa::path(get, path = "/v1/contacts/{id}", tag = "contacts",
    params(("id" = ContactId, Path, description = "Contact id")),
    responses((status = 200, description = "The contact", body = Contact)))]
async fn show(
    auth: Authorized<can::ContactsRead>,
    State(state): State<AppState>,
    Id(id): Id<ContactId>,
) -> ApiResult<Json<Contact>> {
    let mut conn = state.db.read().await?;
    Ok(Json(contacts::get(conn.conn(), auth.workspace, id).await?))
}

/// Change a contact
#[utoipa::path(patch, path = "/v1/contacts/{id}", tag = "contacts", request_body = ContactPatch,
    params(("id" = ContactId, Path, description = "Contact id")),
    responses((status = 200, description = "The changed contact", body = Contact)))]
async fn update(
    auth: Authorized<can::ContactsWrite>,
    State(state): State<AppState>,
    Id(id): Id<ContactId>,
    JsonBody(patch): JsonBody<ContactPatch>,
) -> ApiResult<Json<Contact>> {
    let mut tx = state.db.begin().await?;
    let current = contacts::get(tx.conn(), auth.workspace, id).await?;
    let fields = ContactInput {
        phone: Some(patch.phone.unwrap_or_else(|| current.phone.clone())),
        name: patch.name.unwrap_or_else(|| current.name.clone()),
        email: patch.email.unwrap_or_else(|| current.email.clone()),
        tags: patch.tags.unwrap_or_else(|| current.tags.0.clone()),
        custom_fields: patch.custom_fields.unwrap_or_else(|| {
            current
                .custom_fields
                .0
                .iter()
                .map(|(name, value)| (name.clone(), Value::from(value.as_str())))
                .collect()
        }),
        timezone: patch.timezone.unwrap_or_else(|| current.timezone.clone()),
    }
    .check()?;
    let contact = contacts::update(&mut tx, auth.workspace, id, &fields, state.clock.now()).await?;
    tx.commit().await?;
    Ok(Json(contact))
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
    let mut conn = state.db.write().await?;
    contacts::delete(conn.conn(), auth.workspace, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_blocked(
    state: &AppState,
    auth: &Authorized<can::ContactsWrite>,
    id: ContactId,
    blocked: bool,
) -> ApiResult<Json<Contact>> {
    let mut conn = state.db.write().await?;
    let contact =
        contacts::set_blocked(conn.conn(), auth.workspace, id, blocked, state.clock.now()).await?;
    Ok(Json(contact))
}

async fn set_opted_out(
    state: &AppState,
    auth: &Authorized<can::ContactsWrite>,
    id: ContactId,
    opted_out: bool,
) -> ApiResult<Json<Contact>> {
    let now = state.clock.now();
    let mut conn = state.db.write().await?;
    let contact = contacts::set_opted_out(
        conn.conn(),
        auth.workspace,
        id,
        opted_out.then_some(now),
        now,
    )
    .await?;
    Ok(Json(contact))
}

/// Block a contact: no campaign or message reaches it
#[utoipa::path(post, path = "/v1/contacts/{id}/block", tag = "contacts",
    params(("id" = ContactId, Path, description = "Contact id")),
    responses((status = 200, description = "The contact", body = Contact)))]
async fn block(
    auth: Authorized<can::ContactsWrite>,
    State(state): State<AppState>,
    Id(id): Id<ContactId>,
) -> ApiResult<Json<Contact>> {
    set_blocked(&state, &auth, id, true).await
}

/// Unblock a contact
#[utoipa::path(post, path = "/v1/contacts/{id}/unblock", tag = "contacts",
    params(("id" = ContactId, Path, description = "Contact id")),
    responses((status = 200, description = "The contact", body = Contact)))]
async fn unblock(
    auth: Authorized<can::ContactsWrite>,
    State(state): State<AppState>,
    Id(id): Id<ContactId>,
) -> ApiResult<Json<Contact>> {
    set_blocked(&state, &auth, id, false).await
}

/// Record that a contact opted out of messages
#[utoipa::path(post, path = "/v1/contacts/{id}/opt-out", tag = "contacts",
    params(("id" = ContactId, Path, description = "Contact id")),
    responses((status = 200, description = "The contact", body = Contact)))]
async fn opt_out(
    auth: Authorized<can::ContactsWrite>,
    State(state): State<AppState>,
    Id(id): Id<ContactId>,
) -> ApiResult<Json<Contact>> {
    set_opted_out(&state, &auth, id, true).await
}

/// Record that a contact opted back in
#[utoipa::path(post, path = "/v1/contacts/{id}/opt-in", tag = "contacts",
    params(("id" = ContactId, Path, description = "Contact id")),
    responses((status = 200, description = "The contact", body = Contact)))]
async fn opt_in(
    auth: Authorized<can::ContactsWrite>,
    State(state): State<AppState>,
    Id(id): Id<ContactId>,
) -> ApiResult<Json<Contact>> {
    set_opted_out(&state, &auth, id, false).await
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
    if csv.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::validation(
            "body",
            "send the CSV file as the body, with a header row",
        ));
    }
    crate::engine::import::check_header(&csv)
        .map_err(|error| ApiError::validation("body", error))?;
    let import = {
        let mut conn = state.db.write().await?;
        imports::insert(conn.conn(), auth.workspace, &csv, state.clock.now()).await?
    };
    if let Err(error) = state.jobs.queue_import(import.id).await {
        // The upload is committed: the engine's sweep runs an import whose job never came.
        tracing::warn!(import_id = %import.id, %error, "import job not queued; the sweep will run it");
    }
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
    responses((status = 200, description = "Its progress", body = Import)))]
async fn show_import(
    auth: Authorized<can::ContactsRead>,
    State(state): State<AppState>,
    Id(id): Id<ImportId>,
) -> ApiResult<Json<Import>> {
    let mut conn = state.db.read().await?;
    Ok(Json(imports::get(conn.conn(), auth.workspace, id).await?))
}
