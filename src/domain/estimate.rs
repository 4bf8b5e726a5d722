//! When a campaign should finish under its sender's pacing: the same gates the lane obeys
//! (rate, shift gaps, typing delay, daily cap with its warmup ramp, send window), walked day by
//! day in the sender's time zone. Shift gaps count at their mean; provider latency is not
//! known ahead and is left out, so the estimate is the earliest the pacing allows.

use chrono::{DateTime, Datelike, Days, NaiveDate, NaiveTime, Utc};
use chrono_tz::Tz;

use super::pacing::{Pacing, spaces_sends, typing_delay};
use super::time::{resolve_local, warmup_day};

/// The estimate for a campaign.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// Nothing spaces or caps the sends: as fast as the provider answers.
    Unpaced,
    /// The last send, at the earliest.
    At(DateTime<Utc>),
    /// The pacing never lets it finish (a cap of 0, a window with no day), or not within ten
    /// years.
    Never,
}

/// What the estimate needs to know of the sender and the campaign.
pub struct Plan<'a> {
    pub pacing: &'a Pacing,
    pub tz: Tz,
    pub warmup_started_on: Option<NaiveDate>,
    /// Sends the sender has already made on `start`'s local day.
    pub sent_today: i64,
    pub recipients: i64,
    /// Characters of a typical message (the typing delay grows with it).
    pub chars: usize,
    pub start: DateTime<Utc>,
}

const HORIZON_DAYS: u64 = 3660;

pub fn finish(plan: &Plan<'_>) -> Finish {
    let pacing = plan.pacing;
    if plan.recipients <= 0 {
        return Finish::At(plan.start);
    }
    let capped = pacing.daily_limit.is_some() || pacing.warmup().is_some();
    if !spaces_sends(pacing) && !capped && pacing.send_window.is_none() {
        return Finish::Unpaced;
    }
    let gap = seconds_between_sends(pacing, plan.chars);
    let mut left = plan.recipients;
    let first_day = plan.start.with_timezone(&plan.tz).date_naive();
    for ahead in 0..HORIZON_DAYS {
        let day = first_day + Days::new(ahead);
        let Some((opens, closes)) = open_hours(pacing, plan.tz, day) else {
            continue;
        };
        let opens = opens.max(plan.start);
        if closes <= opens {
            continue;
        }
        let mut cap = pacing
            .daily_cap(warmup_day(plan.warmup_started_on, day))
            .map_or(i64::MAX, i64::from);
        if ahead == 0 {
            cap -= plan.sent_today;
        }
        if cap <= 0 {
            continue;
        }
        let seconds = (closes - opens).num_milliseconds() as f64 / 1000.0;
        // Sends go at the opening and then a gap apart, the last one before the close.
        let fit = if gap > 0.0 {
            (seconds / gap).ceil() as i64
        } else {
            i64::MAX
        };
        let today = cap.min(fit);
        if left <= today {
            let millis = ((left - 1) as f64 * gap * 1000.0).round() as i64;
            return Finish::At(opens + chrono::Duration::milliseconds(millis));
        }
        left -= today;
    }
    Finish::Never
}

/// The steady gap between two sends: the slowest of the rate limit and shift gap plus typing.
fn seconds_between_sends(pacing: &Pacing, chars: usize) -> f64 {
    let rate = pacing
        .rate_per_minute
        .filter(|&rate| rate > 0)
        .map_or(0.0, |rate| 60.0 / f64::from(rate));
    let shift = match (pacing.shift_min_ms, pacing.shift_max_ms) {
        (None, None) => 0.0,
        (Some(one), None) | (None, Some(one)) => f64::from(one),
        (Some(min), Some(max)) => (f64::from(min) + f64::from(max)) / 2.0,
    } / 1000.0;
    rate.max(shift + typing_delay(pacing, chars).as_secs_f64())
}

/// When sending is allowed on local `day`: the whole day, or its window (one that runs over
/// midnight counts from its start to its end the next morning). `None` when the window skips
/// the day.
fn open_hours(pacing: &Pacing, tz: Tz, day: NaiveDate) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let next = day + Days::new(1);
    let Some(window) = &pacing.send_window else {
        return Some((
            resolve_local(tz, day.and_time(NaiveTime::MIN)),
            resolve_local(tz, next.and_time(NaiveTime::MIN)),
        ));
    };
    let weekday = day.weekday().number_from_monday() as u8;
    if !window.days.contains(&weekday) {
        return None;
    }
    let (start, end) = (window.start.time(), window.end.time());
    let end_day = if start < end { day } else { next };
    Some((
        resolve_local(tz, day.and_time(start)),
        resolve_local(tz, end_day.and_time(end)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::pacing::SendWindow;
    use crate::domain::time::LocalTime;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn plan(pacing: &Pacing, recipients: i64, start: &str) -> Finish {
        finish(&Plan {
            pacing,
            tz: chrono_tz::UTC,
            warmup_started_on: None,
            sent_today: 0,
            recipients,
            chars: 50,
            start: at(start),
        })
    }

    #[test]
    fn no_gate_is_unpaced_and_a_rate_spaces_the_sends() {
        assert_eq!(
            plan(&Pacing::default(), 1000, "2026-12-01T09:00:00Z"),
            Finish::Unpaced
        );
        let per_minute = Pacing {
            rate_per_minute: Some(60),
            ..Pacing::default()
        };
        // 61 sends at one a second: the first at once, the last a minute later.
        assert_eq!(
            plan(&per_minute, 61, "2026-12-01T09:00:00Z"),
            Finish::At(at("2026-12-01T09:01:00Z"))
        );
    }

    #[test]
    fn a_daily_cap_spills_over_to_the_next_days_and_warmup_ramps_it() {
        let capped = Pacing {
            daily_limit: Some(100),
            ..Pacing::default()
        };
        // 100 today, 100 tomorrow, the last 50 at the start of the third day.
        assert_eq!(
            plan(&capped, 250, "2026-12-01T09:00:00Z"),
            Finish::At(at("2026-12-03T00:00:00Z"))
        );
        let warming = Pacing {
            warmup_enabled: true,
            warmup_start_limit: Some(10),
            warmup_max_limit: Some(30),
            warmup_days: Some(3),
            ..Pacing::default()
        };
        // Days 1–3 allow 10, 20, 30: 60 recipients finish on day 3.
        let started = NaiveDate::from_ymd_opt(2026, 12, 1);
        let estimate = finish(&Plan {
            pacing: &warming,
            tz: chrono_tz::UTC,
            warmup_started_on: started,
            sent_today: 0,
            recipients: 60,
            chars: 10,
            start: at("2026-12-01T10:00:00Z"),
        });
        assert_eq!(estimate, Finish::At(at("2026-12-03T00:00:00Z")));
        let none = Pacing {
            daily_limit: Some(0),
            ..Pacing::default()
        };
        assert_eq!(plan(&none, 1, "2026-12-01T09:00:00Z"), Finish::Never);
    }

    #[test]
    fn a_send_window_in_the_senders_zone_holds_the_sends() {
        let window = Pacing {
            rate_per_minute: Some(1),
            send_window: Some(SendWindow {
                days: vec![1, 2, 3, 4, 5],
                start: LocalTime::hm(9, 0).unwrap(),
                end: LocalTime::hm(10, 0).unwrap(),
            }),
            ..Pacing::default()
        };
        // Friday 2026-12-04, 09:00 in Cairo (UTC+2): 60 sends fit in the hour, the 61st waits
        // for Monday's window.
        let estimate = finish(&Plan {
            pacing: &window,
            tz: chrono_tz::Africa::Cairo,
            warmup_started_on: None,
            sent_today: 0,
            recipients: 61,
            chars: 10,
            start: at("2026-12-04T07:00:00Z"),
        });
        assert_eq!(estimate, Finish::At(at("2026-12-07T07:00:00Z")));
    }
}
