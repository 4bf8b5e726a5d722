//! Rules of templates and of what a campaign or single message sends: `<<variable>>` content that
//! parses, media by http(s) URL, a template of the workspace.

use crate::domain::ids::{TemplateId, WorkspaceId};
use crate::domain::template::Template;
use crate::domain::validation::FieldErrors;
use crate::store::{Conn, StoreError, templates};

use super::ServiceResult;

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
