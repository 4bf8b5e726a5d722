//! Periods of local dates and the rollups' quarter hours they cover.
//!
//! Rollups count per UTC hour, split into four quarters. Every time zone in use is a whole number
//! of quarter hours from UTC, so a local day or hour, in any zone and on the days clocks change,
//! starts and ends on a quarter: its count is an exact sum of quarters, never an estimate.

use chrono::{DateTime, Days, NaiveDate, NaiveTime, Offset, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

use super::contact::parse_timezone;
use super::time::{local_day, resolve_local};
use super::validation::FieldErrors;

/// Seconds in a quarter hour, the rollups' finest bucket.
pub const QUARTER_SECONDS: i64 = 900;
/// The longest period one query may cover, in days.
pub const MAX_PERIOD_DAYS: u64 = 366;
/// A period's length when the caller names no `from`.
pub const DEFAULT_PERIOD_DAYS: u64 = 30;

/// Quarter hours since the Unix epoch, `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quarters {
    pub start: i64,
    pub end: i64,
}

impl Quarters {
    /// The UTC hours that hold these quarters, inclusive.
    pub fn hours(self) -> (i64, i64) {
        (self.start.div_euclid(4), (self.end - 1).div_euclid(4))
    }

    pub fn contains(self, quarter: i64) -> bool {
        (self.start..self.end).contains(&quarter)
    }

    /// The quarters between two instants, the first rounded down, the second up.
    pub fn between(start: DateTime<Utc>, end: DateTime<Utc>) -> Self {
        Self {
            start: start.timestamp().div_euclid(QUARTER_SECONDS),
            end: (end.timestamp() + QUARTER_SECONDS - 1).div_euclid(QUARTER_SECONDS),
        }
    }
}

/// Local dates `from..=to` in a zone, as API.md's `from`, `to` and `timezone` name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Period {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub zone: Tz,
}

impl Period {
    /// Reads a period from a query's text, every problem naming its field. Defaults: UTC, and the
    /// last 30 days up to `today` in the zone.
    pub fn parse(
        from: Option<&str>,
        to: Option<&str>,
        timezone: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Period, FieldErrors> {
        let mut errors = FieldErrors::new();
        let zone = match timezone.map(str::trim).filter(|name| !name.is_empty()) {
            None => Tz::UTC,
            Some(name) => parse_timezone(name).unwrap_or_else(|error| {
                errors.add("timezone", error.to_string());
                Tz::UTC
            }),
        };
        let date = |field: &str, text: Option<&str>, errors: &mut FieldErrors| {
            let text = text?;
            match NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d") {
                Ok(date) => Some(date),
                Err(_) => {
                    errors.add(field, format!("'{text}' is not a date (YYYY-MM-DD)"));
                    None
                }
            }
        };
        let from = date("from", from, &mut errors);
        let to = date("to", to, &mut errors);
        errors.into_result()?;
        let to = to.unwrap_or_else(|| local_day(now, zone));
        let from = from.unwrap_or_else(|| {
            to.checked_sub_days(Days::new(DEFAULT_PERIOD_DAYS - 1))
                .unwrap_or(to)
        });
        if from > to {
            return Err(FieldErrors::single(
                "from",
                format!("{from} is after to ({to})"),
            ));
        }
        if (to - from).num_days() >= MAX_PERIOD_DAYS as i64 {
            return Err(FieldErrors::single(
                "to",
                format!("a period covers at most {MAX_PERIOD_DAYS} days"),
            ));
        }
        Ok(Period { from, to, zone })
    }

    /// One local day, `date`, in `zone`.
    pub fn day(date: NaiveDate, zone: Tz) -> Period {
        Period {
            from: date,
            to: date,
            zone,
        }
    }

    /// The instants the period starts and ends at (`to`'s next midnight).
    pub fn instants(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        let midnight = |date: NaiveDate| resolve_local(self.zone, date.and_time(NaiveTime::MIN));
        let after = self.to.checked_add_days(Days::new(1)).unwrap_or(self.to);
        (midnight(self.from), midnight(after))
    }

    pub fn quarters(&self) -> Quarters {
        let (start, end) = self.instants();
        Quarters::between(start, end)
    }

    /// Every date of the period, in order.
    pub fn dates(&self) -> impl Iterator<Item = NaiveDate> + use<> {
        self.from.iter_days().take_while({
            let to = self.to;
            move |date| *date <= to
        })
    }
}

/// The local date and hour a quarter hour falls in.
pub fn local_slot(zone: Tz, quarter: i64) -> (NaiveDate, u32) {
    let at = DateTime::from_timestamp(quarter * QUARTER_SECONDS, 0).unwrap_or_default();
    let local = zone.from_utc_datetime(&at.naive_utc());
    (local.date_naive(), local.hour())
}

/// [`local_slot`] of the four quarters of a UTC hour (hours since the epoch). The zone's
/// offset is looked up at the hour's start and end only: when they agree (every hour but the
/// one clocks change in), it holds for all four.
pub fn local_slots_of_hour(zone: Tz, hour: i64) -> [(NaiveDate, u32); 4] {
    let offset_at = |seconds: i64| {
        let at = DateTime::from_timestamp(seconds, 0).unwrap_or_default();
        zone.offset_from_utc_datetime(&at.naive_utc()).fix()
    };
    let start = hour * 3600;
    let first = offset_at(start);
    if first != offset_at(start + 3599) {
        return std::array::from_fn(|index| local_slot(zone, hour * 4 + index as i64));
    }
    std::array::from_fn(|index| {
        let at = DateTime::from_timestamp(start + index as i64 * QUARTER_SECONDS, 0)
            .unwrap_or_default()
            .naive_utc()
            + first;
        (at.date(), at.hour())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn period(from: &str, to: &str, zone: &str) -> Period {
        Period::parse(Some(from), Some(to), Some(zone), at("2026-12-01T00:00:00Z")).unwrap()
    }

    #[test]
    fn a_utc_day_is_ninety_six_quarters_from_midnight() {
        let quarters = period("2026-12-01", "2026-12-01", "UTC").quarters();
        assert_eq!(quarters.start * 900, at("2026-12-01T00:00:00Z").timestamp());
        assert_eq!(quarters.end - quarters.start, 96);
        assert_eq!(quarters.hours().1 - quarters.hours().0, 23);
    }

    #[test]
    fn a_half_hour_zone_starts_its_day_mid_hour() {
        // Kolkata is UTC+05:30: its 1 December starts at 18:30 UTC the day before.
        let quarters = period("2026-12-01", "2026-12-01", "Asia/Kolkata").quarters();
        assert_eq!(quarters.start * 900, at("2026-11-30T18:30:00Z").timestamp());
        assert_eq!(quarters.end - quarters.start, 96);
        let zone: Tz = "Asia/Kolkata".parse().unwrap();
        let last_of_previous_day = quarters.start - 1;
        assert_eq!(
            local_slot(zone, last_of_previous_day),
            (NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(), 23)
        );
        assert_eq!(
            local_slot(zone, quarters.start),
            (NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(), 0)
        );
        // Kathmandu, UTC+05:45, falls on a quarter too.
        let nepal = period("2026-12-01", "2026-12-01", "Asia/Kathmandu").quarters();
        assert_eq!(nepal.start * 900, at("2026-11-30T18:15:00Z").timestamp());
    }

    #[test]
    fn dst_days_have_twenty_three_and_twenty_five_hours() {
        let spring = period("2026-03-08", "2026-03-08", "America/New_York").quarters();
        assert_eq!(spring.end - spring.start, 23 * 4);
        let autumn = period("2026-11-01", "2026-11-01", "America/New_York").quarters();
        assert_eq!(autumn.end - autumn.start, 25 * 4);
        let zone: Tz = "America/New_York".parse().unwrap();
        // 06:00 UTC on 8 March is 01:00 EST; an hour later it is 03:00 EDT.
        let six = at("2026-03-08T06:00:00Z").timestamp() / 900;
        let day = NaiveDate::from_ymd_opt(2026, 3, 8).unwrap();
        assert_eq!(local_slot(zone, six), (day, 1));
        assert_eq!(local_slot(zone, six + 4), (day, 3));
    }

    #[test]
    fn an_hours_quarters_map_like_each_quarter_alone() {
        for zone in [
            "Asia/Kolkata",
            "America/New_York",
            "Australia/Lord_Howe",
            "UTC",
        ] {
            let zone: Tz = zone.parse().unwrap();
            // Around New York's spring-forward and autumn days, and Lord Howe's half-hour DST.
            for start in [
                "2026-03-08T00:00:00Z",
                "2026-11-01T00:00:00Z",
                "2026-04-04T12:00:00Z",
            ] {
                let first = at(start).timestamp() / 3600;
                for hour in first..first + 24 {
                    let each: Vec<_> = (0..4).map(|q| local_slot(zone, hour * 4 + q)).collect();
                    assert_eq!(
                        local_slots_of_hour(zone, hour).to_vec(),
                        each,
                        "{zone} {hour}"
                    );
                }
            }
        }
    }

    #[test]
    fn bad_periods_name_their_field() {
        let now = at("2026-12-01T12:00:00Z");
        let errors =
            Period::parse(Some("2026-13-01"), Some("x"), Some("Mars/Base"), now).unwrap_err();
        assert!(errors.get("from").is_some());
        assert!(errors.get("to").is_some());
        assert!(errors.get("timezone").is_some());
        let after = Period::parse(Some("2026-12-02"), Some("2026-12-01"), None, now).unwrap_err();
        assert!(after.get("from").is_some());
        let long = Period::parse(Some("2025-01-01"), Some("2026-01-02"), None, now).unwrap_err();
        assert!(long.get("to").is_some());
        let year = Period::parse(Some("2025-01-01"), Some("2026-01-01"), None, now).unwrap();
        assert_eq!(year.dates().count(), 366);
    }

    #[test]
    fn the_default_period_is_the_last_thirty_days_in_the_zone() {
        // 23:30 UTC on 1 December is already 2 December in Tokyo.
        let period =
            Period::parse(None, None, Some("Asia/Tokyo"), at("2026-12-01T23:30:00Z")).unwrap();
        assert_eq!(period.to, NaiveDate::from_ymd_opt(2026, 12, 2).unwrap());
        assert_eq!(period.dates().count(), 30);
    }
}
