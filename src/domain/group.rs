//! Contact groups: static ones list their members, dynamic ones are saved filters resolved
//! whenever the group is used.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupKind {
    Static,
    Dynamic,
}

impl GroupKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Static => "static",
            Self::Dynamic => "dynamic",
        }
    }
}

impl fmt::Display for GroupKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown group type '{0}': use static or dynamic")]
pub struct UnknownGroupKind(pub String);

impl FromStr for GroupKind {
    type Err = UnknownGroupKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "static" => Ok(Self::Static),
            "dynamic" => Ok(Self::Dynamic),
            _ => Err(UnknownGroupKind(s.to_owned())),
        }
    }
}

/// A dynamic group's rule. Every condition given must hold: the contact carries all of `tags`,
/// has every custom field value of `custom_fields`, and was created within the range.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupFilters {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_fields: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_from: Option<TimeBound>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_to: Option<TimeBound>,
}

/// A range end given as a calendar date (`2026-01-01`, a whole UTC day) or an instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum TimeBound {
    Date(NaiveDate),
    Instant(DateTime<Utc>),
}

impl TimeBound {
    /// The first instant inside a range that starts here.
    pub fn start(self) -> DateTime<Utc> {
        match self {
            Self::Date(date) => date.and_time(chrono::NaiveTime::MIN).and_utc(),
            Self::Instant(instant) => instant,
        }
    }

    /// The first instant past a range that ends here: a date includes its whole day.
    pub fn end_exclusive(self) -> DateTime<Utc> {
        match self {
            Self::Date(date) => (date + chrono::Days::new(1))
                .and_time(chrono::NaiveTime::MIN)
                .and_utc(),
            Self::Instant(instant) => instant + chrono::Duration::microseconds(1),
        }
    }
}

impl GroupFilters {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for kind in [GroupKind::Static, GroupKind::Dynamic] {
            assert_eq!(kind.as_str().parse::<GroupKind>().unwrap(), kind);
        }
        assert!("smart".parse::<GroupKind>().is_err());
    }

    #[test]
    fn a_date_bound_covers_its_whole_day() {
        let date: TimeBound = serde_json::from_str("\"2026-01-31\"").unwrap();
        assert_eq!(date.start().to_rfc3339(), "2026-01-31T00:00:00+00:00");
        assert_eq!(
            date.end_exclusive().to_rfc3339(),
            "2026-02-01T00:00:00+00:00"
        );
        let instant: TimeBound = serde_json::from_str("\"2026-01-31T10:00:00Z\"").unwrap();
        assert_eq!(instant.start().to_rfc3339(), "2026-01-31T10:00:00+00:00");
        assert!(serde_json::from_str::<TimeBound>("\"yesterday\"").is_err());
    }

    #[test]
    fn filters_use_the_api_shape_and_refuse_unknown_keys() {
        let filters: GroupFilters = serde_json::from_str(
            r#"{"tags": ["vip"], "custom_fields": {"city": "Cairo"}, "created_from": "2026-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(filters.tags, ["vip"]);
        assert!(filters.created_to.is_none());
        let from = filters.created_from.unwrap();
        assert_eq!(from.start().to_rfc3339(), "2026-01-01T00:00:00+00:00");
        assert!(serde_json::from_str::<GroupFilters>(r#"{"tag": "vip"}"#).is_err());
    }
}
