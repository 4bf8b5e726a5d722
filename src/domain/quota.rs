//! API keys' request quotas: the UTC periods requests are counted in, and when each ends; and
//! the per-minute limit, a cell rate kept in the database.

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, Utc};

/// The periods a request at one instant counts in, as the keys of `api_key_usage`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Periods {
    /// `d:YYYY-MM-DD`
    pub day: String,
    /// `m:YYYY-MM`
    pub month: String,
}

impl Periods {
    pub fn at(now: DateTime<Utc>) -> Self {
        Self {
            day: format!("d:{}", now.format("%Y-%m-%d")),
            month: format!("m:{}", now.format("%Y-%m")),
        }
    }
}

/// A per-minute limit as a generic cell rate (GCRA, the rule governor uses): requests are
/// spaced `60 s / limit` apart on average and up to a minute's worth may come at once. The whole
/// state is one instant per key, the theoretical arrival time (TAT) of the next request, so the
/// database can keep it for every process in one conditional upsert. Unlike counting requests
/// per clock minute, it has no edges: a key that spent its minute at 12:00:59 gets one request
/// per interval from then on, not a second minute's worth at 12:01:00.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MinuteRate {
    /// Microseconds between requests at the steady rate.
    pub interval_us: i64,
}

/// How far ahead of now the TAT may run: a minute, the burst.
pub const MINUTE_US: i64 = 60_000_000;

impl MinuteRate {
    pub fn per_minute(limit: u32) -> Self {
        // Above 60,000,000 a minute, the microsecond is the finest step: as good as no limit.
        Self {
            interval_us: (MINUTE_US / i64::from(limit.max(1))).max(1),
        }
    }

    /// The TAT after admitting a request at `now_us` with the stored `tat_us`, or `None` when
    /// the request is over the limit. The store's upsert computes the same.
    pub fn admit(self, tat_us: Option<i64>, now_us: i64) -> Option<i64> {
        let next = tat_us.unwrap_or(now_us).max(now_us) + self.interval_us;
        (next - now_us <= MINUTE_US).then_some(next)
    }

    /// Requests that could still come at once after an admission that left `tat_us`.
    pub fn remaining(self, tat_us: i64, now_us: i64) -> i64 {
        ((now_us + MINUTE_US - tat_us) / self.interval_us).max(0)
    }

    /// Whole seconds (at least 1) until a request refused at `now_us` would be admitted.
    pub fn retry_after(self, tat_us: i64, now_us: i64) -> u64 {
        let wait_us = tat_us + self.interval_us - MINUTE_US - now_us;
        u64::try_from((wait_us + 999_999) / 1_000_000)
            .unwrap_or(0)
            .max(1)
    }
}

/// Microseconds since the epoch: the unit of a `MinuteRate`'s instants.
pub fn epoch_micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
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
    fn periods_are_utc_days_and_months() {
        let periods = Periods::at(at("2026-12-31T23:59:30Z"));
        assert_eq!(periods.day, "d:2026-12-31");
        assert_eq!(periods.month, "m:2026-12");
    }

    #[test]
    fn a_minute_rate_admits_a_minutes_worth_at_once_then_one_per_interval() {
        let rate = MinuteRate::per_minute(3);
        let start = epoch_micros(at("2026-12-31T23:59:59Z"));
        let mut tat = None;
        for left in [2, 1, 0] {
            let next = rate.admit(tat, start).expect("within the burst");
            assert_eq!(rate.remaining(next, start), left);
            tat = Some(next);
        }
        let spent = tat.unwrap();
        assert_eq!(rate.admit(tat, start), None);
        // The next minute starts a second later: a fixed window would admit three more here.
        let past_the_edge = start + 1_000_000;
        assert_eq!(rate.admit(tat, past_the_edge), None);
        assert_eq!(rate.retry_after(spent, past_the_edge), 19);
        // One interval (20 s) after the burst, one request, and only one.
        let later = start + 20_000_000;
        let next = rate.admit(tat, later).expect("an interval later");
        assert_eq!(rate.remaining(next, later), 0);
        assert_eq!(rate.admit(Some(next), later), None);
        // A key left alone for a minute has its whole burst again.
        let idle = start + 90_000_000;
        assert_eq!(
            rate.remaining(rate.admit(Some(next), idle).unwrap(), idle),
            2
        );
    }

    #[test]
    fn a_limit_past_a_request_a_microsecond_is_as_good_as_none() {
        let rate = MinuteRate::per_minute(u32::MAX);
        let now = epoch_micros(at("2026-12-31T23:59:59Z"));
        let tat = rate.admit(None, now).expect("admitted");
        assert_eq!(rate.remaining(tat, now), MINUTE_US - 1);
        assert_eq!(rate.retry_after(now + MINUTE_US, now), 1);
    }

    #[test]
    fn quotas_refill_at_the_next_utc_midnight_and_month() {
        let now = at("2026-12-31T23:59:30Z");
        assert_eq!(seconds_to_next_day(now), 30);
        assert_eq!(seconds_to_next_month(now), 30);
        let mid_month = at("2026-02-14T12:00:00Z");
        assert_eq!(seconds_to_next_day(mid_month), 12 * 3600);
        assert_eq!(seconds_to_next_month(mid_month), (14 * 24 + 12) * 3600);
        assert_eq!(seconds_to_next_day(at("2026-02-14T23:59:59.500Z")), 1);
    }
}
