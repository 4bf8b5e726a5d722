//! Rules for contact data that need no storage: tags, time zones, emails, imports' states.

use chrono_tz::Tz;

super::named_enum! {
    /// Where a CSV import of contacts stands.
    pub enum ImportStatus {
        Queued => "queued",
        Running => "running",
        Completed => "completed",
        /// The file as a whole could not be imported (its header row).
        Failed => "failed",
    }
}

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

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not an email address")]
pub struct BadEmail(pub String);

/// An email address as stored: trimmed, with a local part, one `@` and a dotted domain. Whether
/// it receives mail is not Herald's to know.
pub fn parse_email(text: &str) -> Result<String, BadEmail> {
    let email = text.trim();
    let valid = email.len() <= 254
        && !email.chars().any(char::is_whitespace)
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.contains('@')
                && domain.split('.').count() >= 2
                && domain.split('.').all(|label| !label.is_empty())
        });
    if valid {
        Ok(email.to_owned())
    } else {
        Err(BadEmail(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_need_a_local_part_and_a_dotted_domain() {
        assert_eq!(
            parse_email(" jane@example.com ").unwrap(),
            "jane@example.com"
        );
        for bad in [
            "",
            "jane",
            "jane@",
            "@example.com",
            "jane@example",
            "a@b@c.com",
            "a b@c.com",
            "jane@.com",
        ] {
            assert!(parse_email(bad).is_err(), "{bad:?}");
        }
    }

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
