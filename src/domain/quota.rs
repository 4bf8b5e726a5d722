//! API keys' request quotas: the UTC periods requests are counted in, and when each ends.

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, Timelike, Utc};

/// The periods a request at one instant counts in, as the keys of `api_key_usage`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Periods {
    /// `d:YYYY-MM-DD`
    pub day: String,
    /// `m:YYYY-MM`
    pub month: String,
    /// `min:YYYY-MM-DDTHH:MM`
    pub minute: String,
}

impl Periods {
    pub fn at(now: DateTime<Utc>) -> Self {
        Self {
            day: format!("d:{}", now.format("%Y-%m-%d")),
            month: format!("m:{}", now.format("%Y-%m")),
            minute: minute_key(now),
        }
    }
}

/// The per-minute window's key of `now`.
pub fn minute_key(now: DateTime<Utc>) -> String {
    format!("min:{}", now.format("%Y-%m-%dT%H:%M"))
}

/// Whole seconds (at least 1) until the next UTC midnight: when a daily quota refills.
pub fn seconds_to_next_day(now: DateTime<Utc>) -> u64 {
    let tomorrow = now.date_naive() + Days::new(1);
    seconds_until(now, tomorrow)
}

/// Whole seconds (at least 1) until the first of next month, UTC: when a monthly quota refills.
pub fn seconds_to_next_month(now: DateTime<Utc>) -> u64 {
    let first = now.date_naive().with_day(1).unwrap_or(now.date_naive());
    let next = first.checked_add_months(Months::new(1)).unwrap_or(first);
    seconds_until(now, next)
}

/// Whole seconds (at least 1) until the next minute starts.
pub fn seconds_to_next_minute(now: DateTime<Utc>) -> u64 {
    u64::from(60 - now.second()).max(1)
}

fn seconds_until(now: DateTime<Utc>, date: NaiveDate) -> u64 {
    let at = date.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    let milliseconds = (at - now).num_milliseconds().max(0);
    let seconds = (milliseconds + 999) / 1000;
    u64::try_from(seconds).unwrap_or(0).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn periods_are_utc_days_months_and_minutes() {
        let periods = Periods::at(at("2026-12-31T23:59:30Z"));
        assert_eq!(periods.day, "d:2026-12-31");
        assert_eq!(periods.month, "m:2026-12");
        assert_eq!(periods.minute, "min:2026-12-31T23:59");
    }

    #[test]
    fn quotas_refill_at_the_next_utc_midnight_and_month() {
        let now = at("2026-12-31T23:59:30Z");
        assert_eq!(seconds_to_next_day(now), 30);
        assert_eq!(seconds_to_next_month(now), 30);
        assert_eq!(seconds_to_next_minute(now), 30);
        let mid_month = at("2026-02-14T12:00:00Z");
        assert_eq!(seconds_to_next_day(mid_month), 12 * 3600);
        assert_eq!(seconds_to_next_month(mid_month), (14 * 24 + 12) * 3600);
        assert_eq!(seconds_to_next_day(at("2026-02-14T23:59:59.500Z")), 1);
    }
}
