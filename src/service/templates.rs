//! Rules of templates and of what a campaign or single message sends: `<<variable>>` content that
//! parses, media by http(s) URL, a template of the workspace.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::domain::ids::{ContactId, TemplateId, WorkspaceId};
use crate::domain::template::Template;
use crate::domain::validation::FieldErrors;
use crate::domain::whatsapp::{CompiledWhatsApp, WhatsAppTemplate};
use crate::render::render_once;
use crate::store::templates::{TemplateFields, TemplateRecord};
use crate::store::{Conn, Db, Page, StoreError, contacts, templates};

use super::{ServiceError, ServiceResult};

/// A template as a client gives it.
#[derive(Clone, Debug, Default)]
pub struct TemplateInput {
    pub name: String,
    pub content: String,
    pub media_url: Option<String>,
    pub whatsapp: Option<WhatsAppTemplate>,
}

/// Fields to change; `None` keeps a field, `whatsapp: Some(None)` removes the WhatsApp part.
#[derive(Clone, Debug, Default)]
pub struct TemplateChange {
    pub name: Option<String>,
    pub content: Option<String>,
    pub media_url: Option<String>,
    pub whatsapp: Option<Option<WhatsAppTemplate>>,
}

/// Creates a template; its variables are read from its content and its WhatsApp part.
pub async fn create(
    db: &Db,
    workspace: WorkspaceId,
    input: TemplateInput,
    now: DateTime<Utc>,
) -> ServiceResult<TemplateRecord> {
    let variables = checked(&input)?;
    let fields = TemplateFields {
        name: input.name.trim(),
        content: &input.content,
        media_url: input.media_url.as_deref(),
        variables: &variables,
        whatsapp: input.whatsapp.as_ref(),
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
    change: TemplateChange,
    now: DateTime<Utc>,
) -> ServiceResult<TemplateRecord> {
    let mut conn = db.write().await?;
    let current = templates::get(conn.conn(), workspace, id).await?;
    let input = TemplateInput {
        name: change.name.unwrap_or(current.name),
        content: change.content.unwrap_or(current.content),
        media_url: change.media_url.or(current.media_url),
        whatsapp: change
            .whatsapp
            .unwrap_or_else(|| current.whatsapp.map(|part| part.0)),
    };
    let variables = checked(&input)?;
    let fields = TemplateFields {
        name: input.name.trim(),
        content: &input.content,
        media_url: input.media_url.as_deref(),
        variables: &variables,
        whatsapp: input.whatsapp.as_ref(),
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
    let content = {
        let mut conn = db.read().await?;
        templates::get(conn.conn(), workspace, id).await?.content
    };
    preview_text(db, workspace, &content, contact, variables).await
}

/// Text with `<<variables>>` rendered as [`preview`] renders a template: what a campaign's
/// draft would send to `contact`.
pub async fn preview_text(
    db: &Db,
    workspace: WorkspaceId,
    content: &str,
    contact: Option<ContactId>,
    variables: &BTreeMap<String, String>,
) -> ServiceResult<String> {
    let mut conn = db.read().await?;
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
    let template = Template::parse(content)
        .map_err(|error| ServiceError::validation("content", error.to_string()))?;
    render_once(&template, fields.as_ref(), variables)
        .map_err(|missing| super::messages::missing_variables(&missing).into())
}

pub async fn delete(db: &Db, workspace: WorkspaceId, id: TemplateId) -> ServiceResult<()> {
    let mut conn = db.write().await?;
    Ok(templates::delete(conn.conn(), workspace, id).await?)
}

/// A template's fields checked together; returns the variables its content and WhatsApp
/// part use, in order of first use.
fn checked(input: &TemplateInput) -> ServiceResult<Vec<String>> {
    let mut errors = FieldErrors::new();
    if input.name.trim().is_empty() {
        errors.add("name", "must not be empty");
    }
    let template = check_content(&input.content, "content", &mut errors);
    check_media_url(input.media_url.as_deref(), &mut errors);
    let whatsapp = check_whatsapp(input.whatsapp.as_ref(), &mut errors);
    errors.into_result()?;
    let mut variables = template.map(|t| t.variables().to_vec()).unwrap_or_default();
    for name in whatsapp.iter().flat_map(CompiledWhatsApp::variables) {
        if !variables.contains(&name) {
            variables.push(name);
        }
    }
    Ok(variables)
}

/// Parses a WhatsApp part, adding each problem to `errors`.
pub fn check_whatsapp(
    whatsapp: Option<&WhatsAppTemplate>,
    errors: &mut FieldErrors,
) -> Option<CompiledWhatsApp> {
    match whatsapp.map(|part| part.compile("whatsapp")) {
        Some(Ok(compiled)) => Some(compiled),
        Some(Err(problems)) => {
            *errors = std::mem::take(errors).merged(problems);
            None
        }
        None => None,
    }
}

/// What a campaign or a single message sends, checked: its own `content` or a template's, and
/// its media (its own, else the template's).
pub struct Source {
    pub content: Option<String>,
    pub template: Option<Template>,
    pub media_url: Option<String>,
    /// The template's WhatsApp part, when the source is a template that has one.
    pub whatsapp: Option<(WhatsAppTemplate, CompiledWhatsApp)>,
}

impl Source {
    /// Variables some text of the source uses without a fallback, each once.
    pub fn required_variables(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        let content = self.template.iter().flat_map(Template::required_variables);
        let whatsapp = self
            .whatsapp
            .iter()
            .flat_map(|(_, compiled)| compiled.required_variables());
        for name in content.chain(whatsapp) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names
    }
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
    let (content, template_media, whatsapp) = match (template_id, content) {
        (Some(_), Some(_)) => {
            errors.add("content", "give template_id or content, not both");
            (None, None, None)
        }
        (None, None) => {
            errors.add("content", "give template_id or content");
            (None, None, None)
        }
        (None, Some(content)) => (Some(content), None, None),
        (Some(id), None) => match templates::get(conn, workspace, id).await {
            Ok(template) => (
                Some(template.content),
                template.media_url,
                template.whatsapp.map(|part| part.0),
            ),
            Err(StoreError::NotFound) => {
                errors.add("template_id", "no such template");
                (None, None, None)
            }
            Err(error) => return Err(error.into()),
        },
    };
    let whatsapp = whatsapp.and_then(|part| {
        let compiled = check_whatsapp(Some(&part), errors)?;
        Some((part, compiled))
    });
    let template = content
        .as_deref()
        .and_then(|content| check_content(content, "content", errors));
    let media_url = media_url.or(template_media);
    check_media_url(media_url.as_deref(), errors);
    Ok(Source {
        content,
        template,
        media_url,
        whatsapp,
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
