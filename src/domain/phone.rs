//! Phone numbers in E.164, parsed and validated with libphonenumber's metadata.
//!
//! Contacts are keyed by their E.164 form, so every spelling of one number must land on the same
//! string: `+20 101-234-5678`, `201012345678` and `00201012345678` are one contact.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A valid phone number in E.164 form (`+` and up to 15 digits).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Phone(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("phone number is empty")]
    Empty,
    #[error("phone number is too long")]
    TooLong,
    #[error("phone number may only contain digits, spaces, '+', '-', '.', '(' and ')'")]
    BadCharacter,
    #[error("phone number could not be parsed: {0}")]
    Unparseable(String),
    #[error("{0} is not a valid phone number for its country")]
    Invalid(String),
}

/// Longer input than this is junk however it is punctuated; checking first keeps the parser's
/// work bounded for hostile input.
const MAX_INPUT_LEN: usize = 40;

impl Phone {
    /// Parses a number written internationally: with `+`, with the `00` international prefix, or
    /// as bare digits starting with the country code. Separators are ignored.
    pub fn parse(input: &str) -> Result<Self, PhoneError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(PhoneError::Empty);
        }
        if trimmed.len() > MAX_INPUT_LEN {
            return Err(PhoneError::TooLong);
        }
        let mut digits = String::with_capacity(trimmed.len() + 1);
        for (index, ch) in trimmed.char_indices() {
            match ch {
                '0'..='9' => digits.push(ch),
                '+' if index == 0 => {}
                ' ' | '-' | '.' | '(' | ')' | '\u{a0}' => {}
                _ => return Err(PhoneError::BadCharacter),
            }
        }
        let international = digits.strip_prefix("00").unwrap_or(&digits);
        if international.is_empty() {
            return Err(PhoneError::Empty);
        }
        let candidate = format!("+{international}");
        let parsed = phonenumber::parse(region_to_read_by(international), &candidate)
            .map_err(|error| PhoneError::Unparseable(error.to_string()))?;
        if !has_a_possible_length(&parsed) {
            return Err(PhoneError::Invalid(candidate));
        }
        Ok(Self(
            parsed.format().mode(phonenumber::Mode::E164).to_string(),
        ))
    }

    /// Wraps a value that was validated before it was stored.
    pub fn from_trusted(e164: String) -> Self {
        Self(e164)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// The region whose rules read a number, where naming one changes nothing but the time taken.
///
/// Without a region, the `phonenumber` crate searches for the number's region among those
/// sharing its country code, matching it against their patterns through a shared regex cache:
/// for `+1`, 25 regions and ~13 µs a number, the dearest step of an inbound message. A
/// region's rules matter only to strip a national prefix or expand a local number, and no region
/// of `+1` does either to a ten-digit number whose area code starts with 2–9 (every one of them
/// has the national prefix `1` and expands only seven-digit local numbers), so such a number is
/// read by the US's rules at once. Every other number is read exactly as before; a unit test
/// checks both forms agree over all regions' example numbers and random ones.
fn region_to_read_by(international: &str) -> Option<phonenumber::country::Id> {
    let national = international.strip_prefix('1')?;
    let area_code_starts_with_2_to_9 = matches!(national.bytes().next(), Some(b'2'..=b'9'));
    (national.len() == 10 && area_code_starts_with_2_to_9).then_some(phonenumber::country::Id::US)
}

/// Whether the number's length is one its country's numbering plan gives numbers of (any kind:
/// fixed line, mobile, toll free, …). Whether its range is assigned to a carrier yet is not asked
/// (libphonenumber's `is_valid` does): `+1 555 …`, where WhatsApp's test numbers live, has a
/// possible length and is accepted, as API.md says.
fn has_a_possible_length(number: &phonenumber::PhoneNumber) -> bool {
    let national = number.national().to_string();
    let Ok(length) = u16::try_from(national.len()) else {
        return false;
    };
    let plans = phonenumber::metadata::DATABASE
        .by_code(&number.code().value())
        .unwrap_or_default();
    plans
        .iter()
        .any(|plan| kinds_of_number(plan).any(|kind| kind.possible_length().contains(&length)))
}

/// Every kind of number a region's plan describes (fixed line, mobile, toll free, …), with the
/// description of them all.
fn kinds_of_number(
    plan: &phonenumber::metadata::Metadata,
) -> impl Iterator<Item = &phonenumber::metadata::Descriptor> {
    let kinds = plan.descriptors();
    [
        Some(kinds.general()),
        kinds.fixed_line(),
        kinds.mobile(),
        kinds.toll_free(),
        kinds.premium_rate(),
        kinds.shared_cost(),
        kinds.personal_number(),
        kinds.voip(),
        kinds.pager(),
        kinds.uan(),
        kinds.voicemail(),
    ]
    .into_iter()
    .flatten()
}

impl fmt::Display for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Phone {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Phone::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::strategy::{Strategy, ValueTree};

    use super::*;

    #[test]
    fn every_spelling_of_one_number_is_one_phone() {
        let expected = "+201012345678";
        for spelling in [
            "+20 101-234-5678",
            "201012345678",
            "00201012345678",
            "+20 (101) 234.5678",
            "  +201012345678 ",
        ] {
            assert_eq!(
                Phone::parse(spelling).unwrap().as_str(),
                expected,
                "{spelling}"
            );
        }
    }

    #[test]
    fn numbers_of_other_countries_keep_their_country_code() {
        assert_eq!(
            Phone::parse("+1 (415) 555-2671").unwrap().as_str(),
            "+14155552671"
        );
        assert_eq!(
            Phone::parse("+972 50-234-5678").unwrap().as_str(),
            "+972502345678"
        );
        assert_eq!(
            Phone::parse("447911123456").unwrap().as_str(),
            "+447911123456"
        );
    }

    #[test]
    fn numbers_of_the_right_form_in_unassigned_ranges_are_accepted() {
        // WhatsApp's test numbers and API.md's own examples.
        assert_eq!(
            Phone::parse("+1 555 123 4567").unwrap().as_str(),
            "+15551234567"
        );
        assert_eq!(
            Phone::parse("+15550001111").unwrap().as_str(),
            "+15550001111"
        );
    }

    #[test]
    fn impossible_lengths_and_forms_are_refused() {
        for impossible in [
            "+1 555 123 456",      // nine digits where NANP has ten
            "+1 555 123 45678",    // eleven
            "+20 1012 34",         // too short for any Egyptian number
            "+44 7911 1234 56789", // too long for the UK
        ] {
            assert!(
                matches!(
                    Phone::parse(impossible),
                    Err(PhoneError::Invalid(_) | PhoneError::Unparseable(_))
                ),
                "{impossible}: {:?}",
                Phone::parse(impossible)
            );
        }
    }

    #[test]
    fn junk_is_a_clear_error() {
        assert_eq!(Phone::parse(""), Err(PhoneError::Empty));
        assert_eq!(Phone::parse("   "), Err(PhoneError::Empty));
        assert_eq!(Phone::parse("+"), Err(PhoneError::Empty));
        assert_eq!(Phone::parse("call me"), Err(PhoneError::BadCharacter));
        assert_eq!(Phone::parse("12+34"), Err(PhoneError::BadCharacter));
        assert_eq!(Phone::parse(&"1".repeat(41)), Err(PhoneError::TooLong));
        assert!(matches!(
            Phone::parse("+999 123"),
            Err(PhoneError::Unparseable(_))
        ));
        // Parses, but no such number exists in Egypt's numbering plan.
        assert!(matches!(
            Phone::parse("+20 1"),
            Err(PhoneError::Unparseable(_) | PhoneError::Invalid(_))
        ));
        assert!(matches!(
            Phone::parse("+20 999 999 9999 9"),
            Err(PhoneError::Invalid(_) | PhoneError::Unparseable(_))
        ));
    }

    #[test]
    fn deserializing_validates() {
        let phone: Phone = serde_json::from_str("\"00201012345678\"").unwrap();
        assert_eq!(phone.as_str(), "+201012345678");
        assert!(serde_json::from_str::<Phone>("\"nope\"").is_err());
    }

    /// `Phone::parse` as it reads every number when no region is named.
    fn parse_searching_the_region(input: &str) -> Result<String, ()> {
        let parsed = phonenumber::parse(None, input).map_err(|_| ())?;
        if !has_a_possible_length(&parsed) {
            return Err(());
        }
        Ok(parsed.format().mode(phonenumber::Mode::E164).to_string())
    }

    #[test]
    fn naming_the_region_changes_no_number() {
        use phonenumber::metadata::DATABASE;
        let mut inputs = Vec::new();
        for region in DATABASE.iter() {
            let code = region.country_code();
            for example in kinds_of_number(region).filter_map(|kind| kind.example()) {
                // As written, and behind each NANP-style or trunk national prefix.
                for prefix in ["", "0", "1"] {
                    inputs.push(format!("+{code}{prefix}{example}"));
                }
            }
        }
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let national = "[0-9]{4,14}";
        let ten_digits = "[0-9]{10}";
        for _ in 0..20_000 {
            for (code, pattern) in [
                (1, ten_digits),
                (1, national),
                (44, national),
                (7, national),
            ] {
                let digits = pattern.new_tree(&mut runner).unwrap().current();
                inputs.push(format!("+{code}{digits}"));
            }
        }
        for input in &inputs {
            assert_eq!(
                Phone::parse(input).map(Phone::into_string).map_err(|_| ()),
                parse_searching_the_region(input),
                "{input}"
            );
        }
    }

    const VALID: &[&str] = &[
        "+201012345678",
        "+14155552671",
        "+972502345678",
        "+447911123456",
        "+4915112345678",
    ];

    proptest! {
        #[test]
        fn parse_never_panics(input in ".{0,60}") {
            let _ = Phone::parse(&input);
        }

        #[test]
        fn parse_never_panics_on_digit_soup(input in "[+0-9 ()-]{0,40}") {
            if let Ok(phone) = Phone::parse(&input) {
                prop_assert!(phone.as_str().starts_with('+'));
                prop_assert!(phone.as_str()[1..].bytes().all(|b| b.is_ascii_digit()));
            }
        }

        #[test]
        fn separators_and_prefixes_do_not_change_the_number(
            index in 0..VALID.len(),
            separators in proptest::collection::vec(prop_oneof![Just(""), Just(" "), Just("-"), Just(".")], 16),
            prefix in prop_oneof![Just("+"), Just("00"), Just("")],
        ) {
            let e164 = VALID[index];
            let mut spelled = String::from(prefix);
            for (digit, separator) in e164[1..].chars().zip(separators.iter().cycle()) {
                spelled.push(digit);
                spelled.push_str(separator);
            }
            let parsed = Phone::parse(&spelled).unwrap();
            prop_assert_eq!(parsed.as_str(), e164);
        }

        #[test]
        fn parsing_e164_is_idempotent(index in 0..VALID.len()) {
            let once = Phone::parse(VALID[index]).unwrap();
            prop_assert_eq!(Phone::parse(once.as_str()).unwrap(), once);
        }
    }
}
