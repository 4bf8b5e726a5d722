//! Local time for senders and schedules: calendar days in a zone, warmup days, and wall-clock
//! times resolved to instants on the days clocks change.

use chrono::{DateTime, Days, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

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
