//! Contacts: search and filters, a contact's page with its conversation and consent buttons,
//! CSV import with live progress, and export.

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    Frame, NoteQuery, PageError, Pager, Session, SignedForm, check_csrf, live_json, parse_id,
    render, see_other,
};
use crate::domain::auth::Ability;
use crate::domain::contact::ImportStatus;
use crate::domain::ids::{ContactId, ImportId};
use crate::domain::message::{Direction, MessageStatus};
use crate::http::AppState;
use crate::service::{contacts, exports, imports};
use crate::store::Page;
use crate::store::contacts::{Contact, ContactFilter};
use crate::store::imports::Import;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/contacts", get(list))
        .route("/contacts/export.csv", get(export))
        .route("/contacts/imports", post(import))
        .route("/contacts/imports/{id}", get(show_import))
        .route("/contacts/imports/{id}/live", get(import_live))
        .route("/contacts/{id}", get(show))
        .route("/contacts/{id}/{action}", post(act))
}

const PER_PAGE: u32 = 50;

#[derive(Clone, Default, Deserialize, Serialize)]
#[serde(default)]
struct ContactQuery {
    q: String,
    tag: String,
    /// `opted_out`, `blocked`, `reachable` or empty for all.
    state: String,
    page: Option<u32>,
    note: Option<String>,
}

impl ContactQuery {
    fn filter(&self) -> ContactFilter {
        let text = |value: &str| Some(value.trim().to_owned()).filter(|v| !v.is_empty());
        let (opted_out, blocked) = match self.state.as_str() {
            "opted_out" => (Some(true), None),
            "blocked" => (None, Some(true)),
            "reachable" => (Some(false), Some(false)),
            _ => (None, None),
        };
        ContactFilter {
            search: text(&self.q),
            tag: text(&self.tag),
            opted_out,
            blocked,
        }
    }

    /// The list's URL with these filters, for the pager and the export.
    fn query_string(&self) -> String {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("q", &self.q)
            .append_pair("tag", &self.tag)
            .append_pair("state", &self.state)
            .finish()
    }
}

#[derive(Serialize)]
struct Row {
    id: ContactId,
    name: String,
    phone: String,
    tags: String,
    opted_out: bool,
    blocked: bool,
    created: String,
}

impl From<Contact> for Row {
    fn from(contact: Contact) -> Self {
        Self {
            id: contact.id,
            name: contact.name.unwrap_or_default(),
            phone: contact.phone,
            tags: contact.tags.0.join(", "),
            opted_out: contact.opted_out_at.is_some(),
            blocked: contact.blocked,
            created: contact.created_at.format("%Y-%m-%d").to_string(),
        }
    }
}

async fn list(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<ContactQuery>,
) -> Result<Response, PageError> {
    session.require(Ability::ContactsRead)?;
    let page = Page {
        page: query.page.unwrap_or(1).max(1),
        per_page: PER_PAGE,
    };
    let (rows, total) =
        contacts::list(&state.db, session.workspace(), &query.filter(), page).await?;
    #[derive(Serialize)]
    struct State_ {
        value: &'static str,
        label: &'static str,
        selected: bool,
    }
    #[derive(Serialize)]
    struct Body {
        contacts: Vec<Row>,
        query: ContactQuery,
        states: Vec<State_>,
        pager: Pager,
        export: Option<String>,
        may_import: bool,
    }
    let filters = query.query_string();
    let body = Body {
        contacts: rows.into_iter().map(Row::from).collect(),
        states: [
            ("", "any"),
            ("reachable", "reachable"),
            ("opted_out", "opted out"),
            ("blocked", "blocked"),
        ]
        .into_iter()
        .map(|(value, label)| State_ {
            value,
            label,
            selected: value == query.state,
        })
        .collect(),
        pager: Pager::new(&format!("/contacts?{filters}"), page, total),
        export: session
            .may(Ability::AnalyticsRead)
            .then(|| format!("/contacts/export.csv?{filters}")),
        may_import: session.may(Ability::ContactsWrite),
        query: query.clone(),
    };
    Ok(render(
        "contacts",
        Frame::new(&session, "Contacts", query.note.as_deref()),
        &body,
    ))
}

/// The contacts the list shows, as the API's export writes them (re-importable as is).
async fn export(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<ContactQuery>,
) -> Result<Response, PageError> {
    session.require(Ability::AnalyticsRead)?;
    let rows = exports::contacts_csv(&state.db, session.workspace(), query.filter()).await?;
    let mut response = Body::from_stream(rows).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"contacts.csv\""),
    );
    Ok(response)
}

async fn show(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(query): Query<NoteQuery>,
) -> Result<Response, PageError> {
    session.require(Ability::ContactsRead)?;
    let id: ContactId = parse_id(&id)?;
    let workspace = session.workspace();
    let contact = contacts::get(&state.db, workspace, id).await?;
    #[derive(Serialize)]
    struct Line {
        inbound: bool,
        text: String,
        status: MessageStatus,
        at: DateTime<Utc>,
        when: String,
    }
    let conversation = if session.may(Ability::MessagesRead) {
        let page = Page {
            page: 1,
            per_page: PER_PAGE,
        };
        let (messages, _) = contacts::conversation(&state.db, workspace, id, None, page).await?;
        // Oldest first, as a chat reads.
        let mut lines: Vec<Line> = messages
            .into_iter()
            .map(|message| Line {
                inbound: message.direction == Direction::Inbound,
                text: message.body.unwrap_or_default(),
                status: message.status,
                when: message.created_at.format("%Y-%m-%d %H:%M UTC").to_string(),
                at: message.created_at,
            })
            .collect();
        lines.reverse();
        Some(lines)
    } else {
        None
    };
    #[derive(Serialize)]
    struct Field {
        name: String,
        value: String,
    }
    #[derive(Serialize)]
    struct Body {
        contact: Row,
        email: String,
        timezone: String,
        fields: Vec<Field>,
        conversation: Option<Vec<Line>>,
        may_write: bool,
    }
    let body = Body {
        email: contact.email.clone().unwrap_or_default(),
        timezone: contact.timezone.clone().unwrap_or_default(),
        fields: contact
            .custom_fields
            .0
            .iter()
            .map(|(name, value)| Field {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
        conversation,
        may_write: session.may(Ability::ContactsWrite),
        contact: contact.into(),
    };
    let title = if body.contact.name.is_empty() {
        body.contact.phone.clone()
    } else {
        body.contact.name.clone()
    };
    Ok(render(
        "contact",
        Frame::new(&session, &title, query.note.as_deref()),
        &body,
    ))
}

/// Block, unblock, opt out or opt back in, as the API's routes do.
async fn act(
    State(state): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    SignedForm { session, .. }: SignedForm<serde::de::IgnoredAny>,
) -> Result<Response, PageError> {
    session.require(Ability::ContactsWrite)?;
    let id: ContactId = parse_id(&id)?;
    let (db, workspace, now) = (&state.db, session.workspace(), state.clock.now());
    let note = match action.as_str() {
        "block" => {
            contacts::set_blocked(db, workspace, id, true, now).await?;
            "Blocked: no campaign or message reaches this contact."
        }
        "unblock" => {
            contacts::set_blocked(db, workspace, id, false, now).await?;
            "Unblocked."
        }
        "opt-out" => {
            contacts::set_opted_out(db, workspace, id, true, now).await?;
            "Opted out: campaigns skip this contact."
        }
        "opt-in" => {
            contacts::set_opted_out(db, workspace, id, false, now).await?;
            "Opted back in."
        }
        _ => return Err(PageError::NotFound),
    };
    Ok(see_other(&format!("/contacts/{id}"), Some(note)))
}

/// A CSV file from the import form (multipart, with the session's CSRF token as a field before
/// the file, as the form orders them).
async fn import(State(state): State<AppState>, request: Request) -> Result<Response, PageError> {
    let (mut parts, body) = request.into_parts();
    let session = <Session as axum::extract::FromRequestParts<AppState>>::from_request_parts(
        &mut parts, &state,
    )
    .await?;
    session.require(Ability::ContactsWrite)?;
    let request = Request::from_parts(parts, body);
    let mut multipart = Multipart::from_request(request, &state)
        .await
        .map_err(|_| PageError::Invalid("the upload could not be read".into()))?;
    let (mut csrf, mut file) = (None, None);
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|error| PageError::Invalid(format!("the upload could not be read: {error}")))?
    {
        match field.name() {
            Some("csrf") => csrf = field.text().await.ok(),
            Some("file") => {
                // Checked before the file is read, so a forged upload costs nothing to store.
                check_csrf(&session, csrf.as_deref().unwrap_or(""))?;
                file = Some(field.bytes().await.map_err(|error| {
                    PageError::Invalid(format!("the file could not be read: {error}"))
                })?);
            }
            _ => {}
        }
    }
    check_csrf(&session, csrf.as_deref().unwrap_or(""))?;
    let file = file.ok_or_else(|| PageError::Invalid("choose a CSV file to import".into()))?;
    let started = imports::upload(&state.db, session.workspace(), &file, state.clock.now()).await?;
    Ok(see_other(
        &format!("/contacts/imports/{}", started.id),
        None,
    ))
}

#[derive(Serialize)]
struct Progress {
    status: ImportStatus,
    finished: bool,
    total: i64,
    created: i64,
    updated: i64,
    failed: i64,
    errors: Vec<String>,
}

impl From<Import> for Progress {
    fn from(import: Import) -> Self {
        Self {
            finished: matches!(
                import.status,
                ImportStatus::Completed | ImportStatus::Failed
            ),
            status: import.status,
            total: import.total,
            created: import.created,
            updated: import.updated,
            failed: import.failed,
            // The first rows' problems: enough to fix a file, bounded for a page.
            errors: import
                .errors
                .0
                .iter()
                .take(20)
                .map(|error| format!("line {}: {}", error.line, error.message))
                .collect(),
        }
    }
}

async fn show_import(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    session.require(Ability::ContactsRead)?;
    let id: ImportId = parse_id(&id)?;
    let import = imports::get(&state.db, session.workspace(), id).await?;
    #[derive(Serialize)]
    struct Body {
        id: ImportId,
        progress: Progress,
    }
    let body = Body {
        id,
        progress: import.into(),
    };
    Ok(render(
        "import",
        Frame::new(&session, "Import", None),
        &body,
    ))
}

async fn import_live(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    session.require(Ability::ContactsRead)?;
    let id: ImportId = parse_id(&id)?;
    let import = imports::get(&state.db, session.workspace(), id).await?;
    Ok(live_json(&Progress::from(import)))
}
