//! Rules of templates and of what a campaign or single message sends: `<<variable>>` content that
//! parses, media by http(s) URL, a template of the workspace.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::domain::ids::{ContactId, TemplateId, WorkspaceId};
use crate::domain::template::Template;
use crate::domain::validation::FieldErrors;
use crate::render::render_once;
use crate::store::templates::{TemplateFields, TemplateRecord};
use crate::store::{Conn, Db, Page, StoreError, contacts, templates};

use super::{ServiceError, ServiceResult};

/// Creates a template; its variables are read from its content.
pub async fn create(
    db: &Db,
    workspace: WorkspaceId,
    name: &str,
    content: &str,
    media_url: Option<&str>,
    now: DateTime<Utc>,
) -> ServiceResult<TemplateRecord> {
    let template = checked(name, content, media_url)?;
    let fields = TemplateFields {
        name: name.trim(),
        content,
        media_url,
        variables: template.variables(),
    };
    let mut conn = db.write().await?;
    Ok(templates::insert(conn.conn(), workspace, &fields, now).await?)
}

/// Changes a template; `None` keeps a field. Campaigns already created keep the content they
/// were created with.
pub async fn update(
    db: &Db,
    workspace: WorkspaceId,
    id: TemplateId,
    name: Option<String>,
    content: Option<String>,
    media_url: Option<String>,
    now: DateTime<Utc>,
) -> ServiceResult<TemplateRecord> {
    let mut conn = db.write().await?;
    let current = templates::get(conn.conn(), workspace, id).await?;
    let name = name.unwrap_or(current.name);
    let content = content.unwrap_or(current.content);
    let media_url = media_url.or(current.media_url);
    let template = checked(&name, &content, media_url.as_deref())?;
    let fields = TemplateFields {
        name: name.trim(),
        content: &content,
        media_url: media_url.as_deref(),
        variables: template.variables(),
    };
    Ok(templates::update(conn.conn(), workspace, id, &fields, now).await?)
}

pub async fn get(db: &Db, workspace: WorkspaceId, id: TemplateId) -> ServiceResult<TemplateRecord> {
    let mut conn = db.read().await?;
    Ok(templates::get(conn.conn(), workspace, id).await?)
}

/// A page of the workspace's templates, newest first.
pub async fn list(
    db: &Db,
    workspace: WorkspaceId,
    page: Page,
) -> ServiceResult<(Vec<TemplateRecord>, i64)> {
    let mut conn = db.read().await?;
    Ok(templates::list(conn.conn(), workspace, page).await?)
}

/// A template rendered with a contact's fields (when given) and `variables` where the contact
/// has none; every variable left without a value is an error.
pub async fn preview(
    db: &Db,
    workspace: WorkspaceId,
    id: TemplateId,
    contact: Option<ContactId>,
    variables: &BTreeMap<String, String>,
) -> ServiceResult<String> {
    let mut conn = db.read().await?;
    let record = templates::get(conn.conn(), workspace, id).await?;
    let fields = match contact {
        Some(contact) => {
            // Scoped first: another workspace's contact is not found.
            let contact = match contacts::get(conn.conn(), workspace, contact).await {
                Err(StoreError::NotFound) => {
                    return Err(ServiceError::validation("contact_id", "no such contact"));
                }
                found => found?,
            };
            contacts::render_fields(conn.conn(), &[contact.id])
                .await?
                .pop()
        }
        None => None,
    };
    let template = Template::parse(&record.content)
        .map_err(|error| ServiceError::validation("content", error.to_string()))?;
    render_once(&template, fields.as_ref(), variables)
        .map_err(|missing| super::messages::missing_variables(&missing).into())
}

pub async fn delete(db: &Db, workspace: WorkspaceId, id: TemplateId) -> ServiceResult<()> {
    let mut conn = db.write().await?;
    Ok(templates::delete(conn.conn(), workspace, id).await?)
}

/// A template's fields checked together; returns its parsed content.
fn checked(name: &str, content: &str, media_url: Option<&str>) -> ServiceResult<Template> {
    let mut errors = FieldErrors::new();
    if name.trim().is_empty() {
        errors.add("name", "must not be empty");
    }
    let template = check_content(content, "content", &mut errors);
    check_media_url(media_url, &mut errors);
    errors.into_result()?;
    template.ok_or_else(|| ServiceError::validation("content", "cannot be parsed"))
}

/// What a campaign or a single message sends, checked: its own `content` or a template's, and
/// its media (its own, else the template's).
pub struct Source {
    pub content: Option<String>,
    pub template: Option<Template>,
    pub media_url: Option<String>,
}

/// Resolves `template_id` or `content` (exactly one) within `workspace`; each problem is added
/// to `errors`.
pub async fn resolve_source(
    conn: Conn<'_>,
    workspace: WorkspaceId,
    template_id: Option<TemplateId>,
    content: Option<String>,
    media_url: Option<String>,
    errors: &mut FieldErrors,
) -> ServiceResult<Source> {
    let (content, template_media) = match (template_id, content) {
        (Some(_), Some(_)) => {
            errors.add("content", "give template_id or content, not both");
            (None, None)
        }
        (None, None) => {
            errors.add("content", "give template_id or content");
            (None, None)
        }
        (None, Some(content)) => (Some(content), None),
        (Some(id), None) => match templates::get(conn, workspace, id).await {
            Ok(template) => (Some(template.content), template.media_url),
            Err(StoreError::NotFound) => {
                errors.add("template_id", "no such template");
                (None, None)
            }
            Err(error) => return Err(error.into()),
        },
    };
    let template = content
        .as_deref()
        .and_then(|content| check_content(content, "content", errors));
    let media_url = media_url.or(template_media);
    check_media_url(media_url.as_deref(), errors);
    Ok(Source {
        content,
        template,
        media_url,
    })
}

/// Checks a template's fields; returns its parsed content.
pub fn check_content(content: &str, field: &str, errors: &mut FieldErrors) -> Option<Template> {
    if content.trim().is_empty() {
        errors.add(field, "must not be empty");
        return None;
    }
    match Template::parse(content) {
        Ok(template) => Some(template),
        Err(error) => {
            errors.add(field, error.to_string());
            None
        }
    }
}

pub fn check_media_url(media_url: Option<&str>, errors: &mut FieldErrors) {
    if let Some(url) = media_url
        && !(url.starts_with("https://") || url.starts_with("http://"))
    {
        errors.add("media_url", "must be an http:// or https:// URL");
    }
}
