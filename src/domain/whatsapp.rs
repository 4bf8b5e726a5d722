//! A template's WhatsApp part: the template approved at Meta that a campaign sends through
//! providers with templates, its body parameters and header rendered per contact like the
//! content (`<<variable|fallback>>`).

use serde::{Deserialize, Serialize};

use super::template::{MissingVariable, Template, Variables};
use super::validation::FieldErrors;

super::named_enum! {
    /// What a template's header carries.
    pub enum HeaderKind {
        Image => "image",
        Video => "video",
        Document => "document",
        Text => "text",
    }
}

/// As API.md spells it: `{"name", "language", "body_params", "header"?: {"type", "value"}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WhatsAppTemplate {
    /// The template's name at Meta (`spring_sale`).
    pub name: String,
    /// Its language code at Meta (`en_US`, `ar`).
    pub language: String,
    /// One text per `{{n}}` of the template's body, each rendered per contact.
    #[serde(default)]
    pub body_params: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<WhatsAppHeader>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WhatsAppHeader {
    #[serde(rename = "type")]
    pub kind: HeaderKind,
    /// The header's text, or the media's https link; either may use `<<variables>>`.
    pub value: String,
}

/// A WhatsApp part whose texts are parsed.
#[derive(Clone, Debug)]
pub struct CompiledWhatsApp {
    pub name: String,
    pub language: String,
    pub body: Vec<Template>,
    pub header: Option<(HeaderKind, Template)>,
}

/// What one recipient is sent; a single message keeps it as it was rendered when queued.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderedWhatsApp {
    pub name: String,
    pub language: String,
    pub body_params: Vec<String>,
    pub header: Option<(HeaderKind, String)>,
}

/// Meta's parameter limit per component is far above this; a longer list is a mistake.
const MAX_BODY_PARAMS: usize = 100;

impl WhatsAppTemplate {
    /// Checks the part as Meta would name things, and parses every text; each problem is named
    /// under `field` (`whatsapp.body_params.1`).
    pub fn compile(&self, field: &str) -> Result<CompiledWhatsApp, FieldErrors> {
        let mut errors = FieldErrors::new();
        let name = self.name.trim();
        if name.is_empty()
            || name.len() > 512
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            errors.add(
                format!("{field}.name"),
                "must be the template's name at Meta: lowercase letters, digits and underscores",
            );
        }
        let language = self.language.trim();
        if !is_language_code(language) {
            errors.add(
                format!("{field}.language"),
                "must be a language code Meta knows, like en, en_US or pt_BR",
            );
        }
        if self.body_params.len() > MAX_BODY_PARAMS {
            errors.add(
                format!("{field}.body_params"),
                format!("at most {MAX_BODY_PARAMS} parameters"),
            );
        }
        let mut body = Vec::with_capacity(self.body_params.len());
        for (index, text) in self.body_params.iter().enumerate() {
            let field = format!("{field}.body_params.{index}");
            if text.trim().is_empty() {
                errors.add(field, "must not be empty (Meta refuses empty parameters)");
                continue;
            }
            match Template::parse(text) {
                Ok(template) => body.push(template),
                Err(error) => errors.add(field, error.to_string()),
            }
        }
        let header = match &self.header {
            None => None,
            Some(header) => {
                let field = format!("{field}.header.value");
                let value = header.value.trim();
                if value.is_empty() {
                    errors.add(&field, "must not be empty");
                    None
                } else if header.kind != HeaderKind::Text
                    && !(value.starts_with("https://")
                        || value.starts_with("http://")
                        || value.starts_with("<<"))
                {
                    errors.add(&field, "a media header is an http(s) link");
                    None
                } else {
                    match Template::parse(value) {
                        Ok(template) => Some((header.kind, template)),
                        Err(error) => {
                            errors.add(&field, error.to_string());
                            None
                        }
                    }
                }
            }
        };
        errors.into_result()?;
        Ok(CompiledWhatsApp {
            name: name.to_owned(),
            language: language.to_owned(),
            body,
            header,
        })
    }
}

/// `en`, `fil`, `en_US`, `zh_HK`: what Meta's language codes look like.
fn is_language_code(code: &str) -> bool {
    let (language, region) = match code.split_once('_') {
        Some((language, region)) => (language, Some(region)),
        None => (code, None),
    };
    (2..=3).contains(&language.len())
        && language.chars().all(|c| c.is_ascii_lowercase())
        && region.is_none_or(|region| {
            region.len() == 2 && region.chars().all(|c| c.is_ascii_uppercase())
        })
}

impl CompiledWhatsApp {
    fn templates(&self) -> impl Iterator<Item = &Template> {
        self.header
            .iter()
            .map(|(_, template)| template)
            .chain(self.body.iter())
    }

    /// Every variable its texts use, each once, in order of first use (header first).
    pub fn variables(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for name in self.templates().flat_map(Template::variables) {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        names
    }

    /// Variables some text uses without a fallback: a recipient must supply these.
    pub fn required_variables(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for name in self.templates().flat_map(Template::required_variables) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names
    }

    pub fn render(&self, variables: &dyn Variables) -> Result<RenderedWhatsApp, MissingVariable> {
        let body_params = self
            .body
            .iter()
            .map(|template| template.render(variables))
            .collect::<Result<Vec<_>, _>>()?;
        let header = match &self.header {
            Some((kind, template)) => Some((*kind, template.render(variables)?)),
            None => None,
        };
        Ok(RenderedWhatsApp {
            name: self.name.clone(),
            language: self.language.clone(),
            body_params,
            header,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn spring() -> WhatsAppTemplate {
        WhatsAppTemplate {
            name: "spring_sale".into(),
            language: "en_US".into(),
            body_params: vec!["<<name|there>>".into(), "<<code>>".into()],
            header: Some(WhatsAppHeader {
                kind: HeaderKind::Image,
                value: "https://cdn.example.com/<<city|all>>.jpg".into(),
            }),
        }
    }

    #[test]
    fn parameters_render_per_contact_and_their_variables_are_known() {
        let compiled = spring().compile("whatsapp").unwrap();
        assert_eq!(compiled.variables(), ["city", "name", "code"]);
        assert_eq!(compiled.required_variables(), ["code"]);
        let values = BTreeMap::from([
            ("name".to_owned(), "Jane".to_owned()),
            ("code".to_owned(), "SPRING".to_owned()),
        ]);
        let rendered = compiled.render(&values).unwrap();
        assert_eq!(rendered.body_params, ["Jane", "SPRING"]);
        assert_eq!(
            rendered.header,
            Some((HeaderKind::Image, "https://cdn.example.com/all.jpg".into()))
        );
        assert!(
            compiled.render(&BTreeMap::new()).is_err(),
            "code is required"
        );
    }

    #[test]
    fn every_bad_part_is_named() {
        let bad = WhatsAppTemplate {
            name: "Spring Sale".into(),
            language: "english".into(),
            body_params: vec!["ok".into(), " ".into(), "<<broken".into()],
            header: Some(WhatsAppHeader {
                kind: HeaderKind::Document,
                value: "price-list.pdf".into(),
            }),
        };
        let errors = bad.compile("whatsapp").unwrap_err();
        let fields: Vec<&str> = errors.fields().collect();
        assert_eq!(
            fields,
            [
                "whatsapp.body_params.1",
                "whatsapp.body_params.2",
                "whatsapp.header.value",
                "whatsapp.language",
                "whatsapp.name"
            ]
        );
        for code in ["en", "fil", "en_US", "pt_BR"] {
            assert!(is_language_code(code), "{code}");
        }
        for code in ["EN", "en-US", "en_us", "e"] {
            assert!(!is_language_code(code), "{code}");
        }
    }
}
