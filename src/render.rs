//! Rendering a claimed batch: each campaign's template is parsed once and kept; a recipient's
//! message is then a concatenation over its contact's fields.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::domain::ids::{CampaignId, ContactId};
use crate::domain::template::{Layered, MissingVariable, ParseError, Template, Variables};
use crate::domain::whatsapp::{CompiledWhatsApp, RenderedWhatsApp};
use crate::store::contacts::RenderFields;

/// What a campaign sends, compiled.
#[derive(Debug)]
pub struct CompiledCampaign {
    /// Checked when the campaign was written; should it still not parse, its messages fail
    /// with the reason instead of going out wrong.
    pub template: Result<Template, ParseError>,
    pub variables: BTreeMap<String, String>,
    pub media_url: Option<String>,
    /// The template approved at Meta that providers with templates send, parsed; checked when
    /// the campaign was written, like `template`.
    pub whatsapp: Option<Result<CompiledWhatsApp, String>>,
}

/// A contact's variables: `name`, `phone`, `email`, then its custom fields.
struct ContactVariables<'a>(&'a RenderFields);

impl Variables for ContactVariables<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        match name {
            "name" => self.0.name.as_deref(),
            "phone" => Some(&self.0.phone),
            "email" => self.0.email.as_deref(),
            other => self.0.custom_fields.0.get(other).map(String::as_str),
        }
    }
}

/// Renders `campaign`'s message for `contact` (absent when the contact was deleted after
/// launch: only campaign values and fallbacks remain) into `out`, and its WhatsApp part's
/// parameters when it has one.
pub fn render(
    campaign: &CompiledCampaign,
    contact: Option<&RenderFields>,
    out: &mut String,
) -> Result<Option<RenderedWhatsApp>, String> {
    out.clear();
    let template = campaign
        .template
        .as_ref()
        .map_err(|error| format!("template: {error}"))?;
    let fields = contact.map(ContactVariables);
    let mut sources: Vec<&dyn Variables> = Vec::with_capacity(2);
    if let Some(fields) = &fields {
        sources.push(fields);
    }
    sources.push(&campaign.variables);
    let variables = Layered(&sources);
    template
        .render_into(&variables, out)
        .map_err(|missing| format!("template: {missing}"))?;
    match &campaign.whatsapp {
        None => Ok(None),
        Some(Err(error)) => Err(format!("whatsapp: {error}")),
        Some(Ok(whatsapp)) => whatsapp
            .render(&variables)
            .map(Some)
            .map_err(|missing| format!("whatsapp: {missing}")),
    }
}

/// Renders `template` once, for a preview or a single message: contact fields first, then
/// `variables`. Fails with every required variable that is left without a value.
pub fn render_once(
    template: &Template,
    contact: Option<&RenderFields>,
    variables: &BTreeMap<String, String>,
) -> Result<String, Vec<String>> {
    render_once_with(
        contact,
        variables,
        template.required_variables(),
        |layered| template.render(layered),
    )
}

/// Renders a WhatsApp part once, for a single message, as [`render_once`] renders its text.
pub fn render_whatsapp_once(
    part: &CompiledWhatsApp,
    contact: Option<&RenderFields>,
    variables: &BTreeMap<String, String>,
) -> Result<RenderedWhatsApp, Vec<String>> {
    render_once_with(contact, variables, part.required_variables(), |layered| {
        part.render(layered)
    })
}

/// Renders with the contact's fields over `variables`, once every `required` variable has a
/// value; fails with each that has none.
fn render_once_with<'a, T>(
    contact: Option<&RenderFields>,
    variables: &BTreeMap<String, String>,
    required: impl IntoIterator<Item = &'a str>,
    render: impl FnOnce(&Layered<'_>) -> Result<T, MissingVariable>,
) -> Result<T, Vec<String>> {
    let fields = contact.map(ContactVariables);
    let mut sources: Vec<&dyn Variables> = Vec::with_capacity(2);
    if let Some(fields) = &fields {
        sources.push(fields);
    }
    sources.push(variables);
    let layered = Layered(&sources);
    let missing: Vec<String> = required
        .into_iter()
        .filter(|name| layered.get(name).is_none())
        .map(str::to_owned)
        .collect();
    if !missing.is_empty() {
        return Err(missing);
    }
    render(&layered).map_err(|missing| vec![missing.0])
}

/// Templates of the campaigns a lane is sending, compiled on first use.
#[derive(Default)]
pub struct CampaignCache(HashMap<CampaignId, Arc<CompiledCampaign>>);

impl CampaignCache {
    pub fn get(&self, id: &CampaignId) -> Option<Arc<CompiledCampaign>> {
        self.0.get(id).cloned()
    }

    pub fn insert(&mut self, id: CampaignId, compiled: CompiledCampaign) -> Arc<CompiledCampaign> {
        let compiled = Arc::new(compiled);
        self.0.insert(id, compiled.clone());
        compiled
    }
}

/// Contacts of a batch by id.
pub type ContactIndex = HashMap<ContactId, RenderFields>;

#[cfg(test)]
mod tests {
    use sqlx::types::Json;

    use super::*;

    fn contact(name: Option<&str>, custom: &[(&str, &str)]) -> RenderFields {
        RenderFields {
            id: ContactId::generate(),
            phone: "+201012345678".into(),
            name: name.map(str::to_owned),
            email: None,
            custom_fields: Json(
                custom
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
        }
    }

    fn campaign(source: &str, variables: &[(&str, &str)]) -> CompiledCampaign {
        CompiledCampaign {
            whatsapp: None,
            template: Template::parse(source),
            variables: variables
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            media_url: None,
        }
    }

    #[test]
    fn contact_fields_come_first_then_campaign_values_then_fallbacks() {
        let compiled = campaign(
            "Hi <<name|there>> from <<city>>, code <<code>> (<<phone>>)",
            &[("code", "X1"), ("city", "Giza")],
        );
        let mut out = String::new();
        render(
            &compiled,
            Some(&contact(Some("Jane"), &[("city", "Cairo")])),
            &mut out,
        )
        .unwrap();
        assert_eq!(out, "Hi Jane from Cairo, code X1 (+201012345678)");
        render(&compiled, Some(&contact(None, &[])), &mut out).unwrap();
        assert_eq!(out, "Hi there from Giza, code X1 (+201012345678)");
    }

    #[test]
    fn a_variable_nobody_fills_is_the_message_error() {
        let compiled = campaign("Your code is <<code>>", &[]);
        let mut out = String::new();
        let error = render(&compiled, Some(&contact(Some("Jane"), &[])), &mut out).unwrap_err();
        assert!(error.contains("'code'"), "{error}");
        assert!(render(&compiled, None, &mut out).is_err());
        let broken = campaign("Hi <<name", &[]);
        assert!(
            render(&broken, None, &mut out)
                .unwrap_err()
                .contains("never closed")
        );
    }
}
