//! Local time for senders and schedules: calendar days in a zone, warmup days, and wall-clock
//! times resolved to instants on the days clocks change.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Days, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

use super::contact::{UnknownTimeZone, parse_timezone};

/// An IANA time zone, known to chrono-tz: a sender's, stored by its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Zone(Tz);

impl Zone {
    pub const UTC: Zone = Zone(Tz::UTC);

    pub fn tz(self) -> Tz {
        self.0
    }

    pub fn as_str(self) -> &'static str {
        self.0.name()
    }
}

impl From<Tz> for Zone {
    fn from(tz: Tz) -> Self {
        Self(tz)
    }
}

impl FromStr for Zone {
    type Err = UnknownTimeZone;
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        parse_timezone(name).map(Self)
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Zone {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Zone {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// A wall-clock time of day to the minute, written `HH:MM` (a send window's bounds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LocalTime(NaiveTime);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be a local time as HH:MM")]
pub struct BadLocalTime;

impl LocalTime {
    pub fn hm(hour: u32, minute: u32) -> Option<Self> {
        NaiveTime::from_hms_opt(hour, minute, 0).map(Self)
    }

    pub fn time(self) -> NaiveTime {
        self.0
    }
}

impl FromStr for LocalTime {
    type Err = BadLocalTime;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        NaiveTime::parse_from_str(text.trim(), "%H:%M")
            .map(Self)
            .map_err(|_| BadLocalTime)
    }
}

impl fmt::Display for LocalTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%H:%M"))
    }
}

impl serde::Serialize for LocalTime {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for LocalTime {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The sender's local calendar day at `now`.
pub fn local_day(now: DateTime<Utc>, tz: Tz) -> NaiveDate {
    now.with_timezone(&tz).date_naive()
}

/// Warmup day number (1-based) of `today`, counting from the local day warmup began.
pub fn warmup_day(started_on: Option<NaiveDate>, today: NaiveDate) -> u32 {
    let Some(started) = started_on else { return 1 };
    let days = (today - started).num_days().max(0);
    u32::try_from(days + 1).unwrap_or(u32::MAX)
}

/// The first instant of the local day after `now`'s: when a spent daily cap refills.
pub fn next_local_midnight(now: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
    let tomorrow = local_day(now, tz) + Days::new(1);
    resolve_local(tz, tomorrow.and_time(NaiveTime::MIN))
}

/// A local wall-clock time as an instant. An ambiguous time (clocks going back) is its first
/// occurrence; a time that does not exist (clocks going forward) is the first one after the gap.
pub fn resolve_local(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    let mut candidate = local;
    // Gaps are at most a few hours; a day of minutes bounds the search for any real zone.
    for _ in 0..(24 * 60) {
        if let Some(instant) = tz.from_local_datetime(&candidate).earliest() {
            return instant.with_timezone(&Utc);
        }
        candidate += chrono::Duration::minutes(1);
    }
    tz.from_utc_datetime(&local).with_timezone(&Utc)
}
