//! Message templates: `<<variable>>` and `<<variable|fallback>>` placeholders.
//!
//! A template is parsed once into literal and variable segments; rendering a recipient's message
//! is then a concatenation. Nothing in the text is ever interpreted as code: `{{`, `}}`, `<`, `>`
//! and backslashes come out exactly as typed.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

const OPEN: &str = "<<";
const CLOSE: &str = ">>";

/// A parsed template, ready to render any number of times.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    segments: Vec<Segment>,
    /// Distinct variable names in order of first use.
    variables: Vec<String>,
    /// Bytes of literal text: the size a rendered message starts from.
    literal_len: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(Box<str>),
    Variable {
        /// Index into `Template::variables`.
        slot: usize,
        fallback: Option<Box<str>>,
    },
}

/// Where a parse error is, 1-based, counted in characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("'<<' at {0} is never closed with '>>'")]
    Unclosed(Position),
    #[error("placeholder at {0} has no variable name")]
    EmptyName(Position),
    #[error(
        "variable names may only use letters, digits, '_', '-' and '.'; found {found:?} at {position}"
    )]
    BadCharacter { found: char, position: Position },
}

impl ParseError {
    pub fn position(&self) -> Position {
        match self {
            Self::Unclosed(position) | Self::EmptyName(position) => *position,
            Self::BadCharacter { position, .. } => *position,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("variable '{0}' has no value and no fallback")]
pub struct MissingVariable(pub String);

/// Where rendering looks variables up. An empty value counts as missing, so that
/// `<<name|there>>` reads "there" for a contact whose name is blank.
pub trait Variables {
    fn get(&self, name: &str) -> Option<&str>;
}

impl Variables for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        HashMap::get(self, name).map(String::as_str)
    }
}

impl Variables for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        BTreeMap::get(self, name).map(String::as_str)
    }
}

/// Tries each source in turn: the first one with a non-empty value wins.
pub struct Layered<'a>(pub &'a [&'a dyn Variables]);

impl Variables for Layered<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find_map(|source| source.get(name).filter(|value| !value.is_empty()))
    }
}

impl Template {
    pub fn parse(source: &str) -> Result<Self, ParseError> {
        let mut segments = Vec::new();
        let mut variables: Vec<String> = Vec::new();
        let mut literal_len = 0;
        let mut rest = source;
        let mut offset = 0;

        while let Some(open) = rest.find(OPEN) {
            if open > 0 {
                push_literal(&mut segments, &rest[..open]);
                literal_len += open;
            }
            let placeholder_at = offset + open;
            let inner_start = open + OPEN.len();
            let Some(close) = rest[inner_start..].find(CLOSE) else {
                return Err(ParseError::Unclosed(position_of(source, placeholder_at)));
            };
            let inner = &rest[inner_start..inner_start + close];
            let (raw_name, fallback) = match inner.split_once('|') {
                Some((name, fallback)) => (name, Some(fallback)),
                None => (inner, None),
            };
            let name = raw_name.trim_matches(' ');
            if name.is_empty() {
                return Err(ParseError::EmptyName(position_of(source, placeholder_at)));
            }
            let leading_spaces = raw_name.len() - raw_name.trim_start_matches(' ').len();
            if let Some((index, found)) = name.char_indices().find(|&(_, c)| !is_name_char(c)) {
                let at = offset + inner_start + leading_spaces + index;
                return Err(ParseError::BadCharacter {
                    found,
                    position: position_of(source, at),
                });
            }
            let slot = match variables.iter().position(|known| known == name) {
                Some(slot) => slot,
                None => {
                    variables.push(name.to_owned());
                    variables.len() - 1
                }
            };
            segments.push(Segment::Variable {
                slot,
                fallback: fallback.map(Into::into),
            });
            let consumed = inner_start + close + CLOSE.len();
            rest = &rest[consumed..];
            offset += consumed;
        }
        if !rest.is_empty() {
            push_literal(&mut segments, rest);
            literal_len += rest.len();
        }
        Ok(Self {
            segments,
            variables,
            literal_len,
        })
    }

    /// Distinct variable names, in order of first use.
    pub fn variables(&self) -> &[String] {
        &self.variables
    }

    /// Variables that have no fallback anywhere in the template: a recipient must supply these.
    pub fn required_variables(&self) -> impl Iterator<Item = &str> {
        self.variables
            .iter()
            .enumerate()
            .filter(|&(slot, _)| {
                self.segments.iter().any(|segment| {
                    matches!(segment, Segment::Variable { slot: s, fallback: None } if *s == slot)
                })
            })
            .map(|(_, name)| name.as_str())
    }

    pub fn render(&self, variables: &dyn Variables) -> Result<String, MissingVariable> {
        let mut out = String::with_capacity(self.literal_len + 16 * self.variables.len());
        self.render_into(variables, &mut out)?;
        Ok(out)
    }

    /// Renders into a caller-owned buffer, so a hot loop can reuse one allocation.
    pub fn render_into(
        &self,
        variables: &dyn Variables,
        out: &mut String,
    ) -> Result<(), MissingVariable> {
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => out.push_str(text),
                Segment::Variable { slot, fallback } => {
                    let name = &self.variables[*slot];
                    match (variables.get(name).filter(|v| !v.is_empty()), fallback) {
                        (Some(value), _) => out.push_str(value),
                        (None, Some(fallback)) => out.push_str(fallback),
                        (None, None) => return Err(MissingVariable(name.clone())),
                    }
                }
            }
        }
        Ok(())
    }
}

fn push_literal(segments: &mut Vec<Segment>, text: &str) {
    segments.push(Segment::Literal(text.into()));
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

fn position_of(source: &str, byte_offset: usize) -> Position {
    let before = &source[..byte_offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let column = before[line_start..].chars().count() + 1;
    Position { line, column }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn renders_variables_and_fallbacks() {
        let template = Template::parse("Hi <<name|there>>, your code is <<code>>.").unwrap();
        assert_eq!(template.variables(), ["name", "code"]);
        assert_eq!(
            template
                .render(&vars(&[("name", "Jane"), ("code", "X1")]))
                .unwrap(),
            "Hi Jane, your code is X1."
        );
        assert_eq!(
            template.render(&vars(&[("code", "X1")])).unwrap(),
            "Hi there, your code is X1."
        );
        assert_eq!(
            template
                .render(&vars(&[("name", ""), ("code", "X1")]))
                .unwrap(),
            "Hi there, your code is X1.",
            "an empty value takes the fallback"
        );
    }

    #[test]
    fn a_missing_variable_without_fallback_is_named() {
        let template = Template::parse("<<name|friend>> <<code>>").unwrap();
        assert_eq!(
            template.render(&vars(&[])),
            Err(MissingVariable("code".into()))
        );
        assert_eq!(template.required_variables().collect::<Vec<_>>(), ["code"]);
    }

    #[test]
    fn variables_are_listed_once_in_order_of_first_use() {
        let template = Template::parse("<<b>> <<a>> <<b|x>> <<c.d>> <<a>>").unwrap();
        assert_eq!(template.variables(), ["b", "a", "c.d"]);
        // `b` has no fallback at its first use, so it is required.
        assert_eq!(
            template.required_variables().collect::<Vec<_>>(),
            ["b", "a", "c.d"]
        );
    }

    #[test]
    fn user_text_is_never_interpreted() {
        let text = r"{{name}} }} {{#if x}} <b> a > b < c \n \\ <<name>> ${x} %s";
        let template = Template::parse(text).unwrap();
        assert_eq!(
            template
                .render(&vars(&[("name", "{{evil}} <<x>>")]))
                .unwrap(),
            r"{{name}} }} {{#if x}} <b> a > b < c \n \\ {{evil}} <<x>> ${x} %s"
        );
    }

    #[test]
    fn fallbacks_may_hold_any_text_but_the_closing_marker() {
        let template = Template::parse("<<name|dear {{friend}} | you>>").unwrap();
        assert_eq!(
            template.render(&vars(&[])).unwrap(),
            "dear {{friend}} | you"
        );
        let empty = Template::parse("[<<name|>>]").unwrap();
        assert_eq!(empty.render(&vars(&[])).unwrap(), "[]");
    }

    #[test]
    fn spaces_around_a_name_are_ignored() {
        let template = Template::parse("<< name >>").unwrap();
        assert_eq!(template.variables(), ["name"]);
    }

    #[test]
    fn parse_errors_carry_their_position() {
        assert_eq!(
            Template::parse("Hello <<name"),
            Err(ParseError::Unclosed(Position { line: 1, column: 7 }))
        );
        assert_eq!(
            Template::parse("Hi\nthere <<>>"),
            Err(ParseError::EmptyName(Position { line: 2, column: 7 }))
        );
        assert_eq!(
            Template::parse("Hi\nthere <<  |x>>"),
            Err(ParseError::EmptyName(Position { line: 2, column: 7 }))
        );
        assert_eq!(
            Template::parse("héllo <<first name>>"),
            Err(ParseError::BadCharacter {
                found: ' ',
                position: Position {
                    line: 1,
                    column: 14
                }
            })
        );
        assert_eq!(
            Template::parse("<<na$me>>").unwrap_err().position(),
            Position { line: 1, column: 5 }
        );
        assert!(Template::parse("<<a\nb>>").is_err());
    }

    #[test]
    fn closing_markers_alone_are_literal_text() {
        let template = Template::parse("a >> b > c").unwrap();
        assert!(template.variables().is_empty());
        assert_eq!(template.render(&vars(&[])).unwrap(), "a >> b > c");
    }

    #[test]
    fn layered_sources_prefer_the_first_non_empty_value() {
        let contact = vars(&[("name", ""), ("city", "Cairo")]);
        let campaign = vars(&[("name", "friend"), ("city", "Giza"), ("code", "X")]);
        let layered = Layered(&[&contact, &campaign]);
        let template = Template::parse("<<name>> <<city>> <<code>>").unwrap();
        assert_eq!(template.render(&layered).unwrap(), "friend Cairo X");
    }

    #[test]
    fn the_example_templates_parse() {
        let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        let mut checked = 0;
        for entry in std::fs::read_dir(folder).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|ext| ext == "txt") {
                let source = std::fs::read_to_string(&path).unwrap();
                let template =
                    Template::parse(&source).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert!(!template.variables().is_empty(), "{}", path.display());
                checked += 1;
            }
        }
        assert!(checked >= 3);
    }

    proptest! {
        #[test]
        fn parse_and_render_never_panic(source in ".{0,80}", value in ".{0,10}") {
            if let Ok(template) = Template::parse(&source) {
                let names: HashMap<String, String> = template
                    .variables()
                    .iter()
                    .map(|name| (name.clone(), value.clone()))
                    .collect();
                let _ = template.render(&names);
                let _ = template.render(&HashMap::new());
            }
        }

        #[test]
        fn text_without_placeholders_renders_to_itself(source in ".{0,80}") {
            prop_assume!(!source.contains(OPEN));
            let template = Template::parse(&source).unwrap();
            prop_assert_eq!(template.render(&HashMap::new()).unwrap(), source);
        }

        #[test]
        fn rendering_substitutes_exactly_the_placeholders(
            parts in proptest::collection::vec(("[^<]{0,12}", "[a-z_]{1,6}", "[^<>]{0,12}"), 0..6)
        ) {
            let mut source = String::new();
            let mut expected = String::new();
            let mut values = HashMap::new();
            for (literal, name, value) in &parts {
                source.push_str(literal);
                source.push_str(&format!("<<{name}>>"));
                values.entry(name.clone()).or_insert_with(|| value.clone());
            }
            for (literal, name, _) in &parts {
                expected.push_str(literal);
                let value = &values[name];
                expected.push_str(value);
            }
            let template = Template::parse(&source).unwrap();
            // Rendering stops at the first empty variable in order of use.
            match template.variables().iter().find(|name| values[*name].is_empty()) {
                Some(first_empty) => prop_assert_eq!(
                    template.render(&values),
                    Err(MissingVariable(first_empty.clone()))
                ),
                None => prop_assert_eq!(template.render(&values).unwrap(), expected),
            }
        }
    }
}
