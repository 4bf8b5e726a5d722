//! Rules for contact data that need no storage: tags and time zones.

use chrono_tz::Tz;

/// Tags as stored: trimmed, non-empty, each once, in the order first given.
pub fn normalize_tags<I, S>(tags: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut normalized: Vec<String> = Vec::new();
    for tag in tags {
        let tag = tag.as_ref().trim();
        if !tag.is_empty() && !normalized.iter().any(|known| known == tag) {
            normalized.push(tag.to_owned());
        }
    }
    normalized
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not an IANA time zone (for example Europe/Berlin or America/New_York)")]
pub struct UnknownTimeZone(pub String);

/// An IANA time zone name, resolved against chrono-tz's database.
pub fn parse_timezone(name: &str) -> Result<Tz, UnknownTimeZone> {
    name.trim()
        .parse::<Tz>()
        .map_err(|_| UnknownTimeZone(name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_trimmed_deduplicated_and_keep_their_order() {
        assert_eq!(
            normalize_tags([" vip", "new", "", "vip ", "  "]),
            ["vip", "new"]
        );
    }

    #[test]
    fn time_zones_resolve_by_iana_name() {
        assert_eq!(
            parse_timezone("Asia/Jerusalem").unwrap(),
            chrono_tz::Asia::Jerusalem
        );
        assert!(parse_timezone("Mars/Olympus").is_err());
        assert!(parse_timezone("").is_err());
    }
}
