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

/// Serializes a date as `YYYY-MM-DD`, as chrono does, but digit by digit: chrono's goes through
/// the formatting machinery, and the 4,300 dates of a 90-day activity response were a third of
/// its serialization that way.
pub fn serialize_date<S: serde::Serializer>(
    date: &NaiveDate,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut text = *b"0000-00-00";
    if write_date(&mut text, date) {
        serialize_ascii(&text, serializer)
    } else {
        serializer.collect_str(date)
    }
}

/// Serializes an instant as chrono does (RFC 3339, `Z`), whole seconds digit by digit for the
/// same reason as [`serialize_date`]: a timeline's buckets are thousands of them.
pub fn serialize_utc<S: serde::Serializer>(
    at: &DateTime<Utc>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use chrono::Timelike;
    use serde::Serialize;
    let mut text = *b"0000-00-00T00:00:00Z";
    if at.nanosecond() != 0 || !write_date(&mut text, &at.date_naive()) {
        return at.serialize(serializer);
    }
    for (start, value) in [(11, at.hour()), (14, at.minute()), (17, at.second())] {
        write_digits(&mut text[start..start + 2], value);
    }
    serialize_ascii(&text, serializer)
}

/// Writes `date` as `YYYY-MM-DD` at the start of `text`; false for a year outside 0–9999,
/// which chrono writes differently (a sign, more digits).
fn write_date(text: &mut [u8], date: &NaiveDate) -> bool {
    use chrono::Datelike;
    let Some(year) = u32::try_from(date.year()).ok().filter(|year| *year <= 9999) else {
        return false;
    };
    write_digits(&mut text[0..4], year);
    write_digits(&mut text[5..7], date.month());
    write_digits(&mut text[8..10], date.day());
    true
}

/// `value`'s last `digits.len()` decimal digits, zero-padded.
fn write_digits(digits: &mut [u8], mut value: u32) {
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

fn serialize_ascii<S: serde::Serializer>(text: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    match std::str::from_utf8(text) {
        Ok(text) => serializer.serialize_str(text),
        Err(error) => Err(serde::ser::Error::custom(error)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize)]
    struct Dated {
        #[serde(serialize_with = "serialize_date")]
        date: NaiveDate,
    }

    #[test]
    fn a_date_is_written_as_chrono_writes_it() {
        let days = [
            NaiveDate::MIN,
            NaiveDate::from_ymd_opt(-1, 12, 31).unwrap(),
            NaiveDate::from_ymd_opt(0, 1, 1).unwrap(),
            NaiveDate::from_ymd_opt(9, 2, 3).unwrap(),
            NaiveDate::from_ymd_opt(9999, 12, 31).unwrap(),
            NaiveDate::from_ymd_opt(10000, 1, 1).unwrap(),
            NaiveDate::MAX,
        ];
        let every_day_of_four_years =
            (0..1461).map(|day| NaiveDate::from_ymd_opt(2024, 1, 1).unwrap() + Days::new(day));
        for date in days.into_iter().chain(every_day_of_four_years) {
            let written = serde_json::to_string(&Dated { date }).unwrap();
            assert_eq!(written, format!(r#"{{"date":"{date}"}}"#));
        }
    }

    #[derive(serde::Serialize)]
    struct Timed {
        #[serde(serialize_with = "serialize_utc")]
        at: DateTime<Utc>,
    }

    #[test]
    fn an_instant_is_written_as_chrono_writes_it() {
        let start: DateTime<Utc> = "2026-03-29T00:00:00Z".parse().unwrap();
        let instants = [
            DateTime::<Utc>::MIN_UTC,
            "0000-01-01T00:00:00Z".parse().unwrap(),
            "9999-12-31T23:59:59Z".parse().unwrap(),
            "2026-12-03T10:55:34.5Z".parse().unwrap(),
            "2026-12-03T10:55:34.000000001Z".parse().unwrap(),
            DateTime::<Utc>::MAX_UTC,
        ];
        let every_seven_seconds_of_two_days =
            (0..24_686).map(|step| start + chrono::Duration::seconds(step * 7));
        for at in instants.into_iter().chain(every_seven_seconds_of_two_days) {
            let written = serde_json::to_string(&Timed { at }).unwrap();
            let chronos = serde_json::to_string(&at).unwrap();
            assert_eq!(written, format!(r#"{{"at":{chronos}}}"#));
        }
    }
}
