//! The pacing gates of a sender, as exact functions of time.
//!
//! A lane asks [`Pacer::next_send_at`] when it may send next and waits that long with nothing
//! claimed; the daily cap is counted in the database (`store::usage`), and everything here is
//! computed from the injected clock, so tests move time instead of waiting for it.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Datelike, Days, NaiveDate, Utc};
use chrono_tz::Tz;
use governor::clock::Clock as GovernorClockTrait;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use rand::Rng;

use crate::clock::Clock;
use crate::domain::pacing::{Pacing, SendWindow};

// Pure rules of local time, shared with the services: the domain's.
pub use crate::domain::pacing::{spaces_sends, typing_delay};
pub use crate::domain::time::{local_day, next_local_midnight, resolve_local, warmup_day};

/// When `window` next opens for a sender in `tz`, or `None` if it is open at `now`.
pub fn window_opens_at(window: &SendWindow, tz: Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let (start, end) = (window.start.time(), window.end.time());
    let allowed = |day: NaiveDate| {
        window
            .days
            .contains(&(day.weekday().number_from_monday() as u8))
    };
    let local = now.with_timezone(&tz).naive_local();
    let today = local.date();
    let time = local.time();
    let open_now = if start < end {
        allowed(today) && time >= start && time < end
    } else {
        // Overnight: opened yesterday evening and still running, or opened this evening.
        (allowed(today) && time >= start) || (allowed(today - Days::new(1)) && time < end)
    };
    if open_now {
        return None;
    }
    (0..=7u64)
        .map(|ahead| today + Days::new(ahead))
        .filter(|&day| allowed(day))
        .map(|day| resolve_local(tz, day.and_time(start)))
        .find(|&opens| opens > now)
}

/// A uniform random gap in `[shift_min_ms, shift_max_ms]` (one bound alone is used as both).
pub fn shift_gap(pacing: &Pacing, rng: &mut impl Rng) -> Duration {
    let (min, max) = match (pacing.shift_min_ms, pacing.shift_max_ms) {
        (None, None) => return Duration::ZERO,
        (Some(min), None) => (min, min),
        (None, Some(max)) => (max, max),
        (Some(min), Some(max)) => (min.min(max), max.max(min)),
    };
    Duration::from_millis(u64::from(rng.random_range(min..=max)))
}

/// Below this interval between sends, the rate limiter lets a lane catch up one interval.
const CATCH_UP_BELOW: Duration = Duration::from_millis(100);

/// How many sends the rate limiter lets through at once. With none to spare, a lane that wakes a
/// little after its turn (a timer has millisecond steps) loses that lateness for good, every
/// send: at Meta's 80 a second, a millisecond a send is 8 % of the rate. Fast rates may therefore
/// catch up one interval (two sends together at most, once, after a pause); slow ones keep
/// strictly one per interval, where a millisecond is nothing.
fn burst_for(interval: Duration) -> NonZeroU32 {
    if interval < CATCH_UP_BELOW {
        NonZeroU32::MIN.saturating_add(1)
    } else {
        NonZeroU32::MIN
    }
}

/// governor on Herald's clock: time since the epoch, so a manual clock drives it in tests.
#[derive(Clone)]
struct EngineClock(Arc<dyn Clock>);

impl GovernorClockTrait for EngineClock {
    type Instant = Duration;
    fn now(&self) -> Duration {
        Duration::from_micros(self.0.now().timestamp_micros().max(0) as u64)
    }
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, EngineClock, NoOpMiddleware<Duration>>;

/// The gates that space one sender's sends: rate limit, shift interval and provider holds.
pub struct Pacer {
    clock: Arc<dyn Clock>,
    limiter: Option<Limiter>,
    /// No send before this: the shift gap after the last send, or a provider's 429.
    not_before: Option<DateTime<Utc>>,
    pacing: Pacing,
}

impl Pacer {
    /// A pacer for `pacing`, continuing from the sender's last recorded send so that a restart
    /// never shortens a gap.
    pub fn new(
        pacing: Pacing,
        clock: Arc<dyn Clock>,
        last_send_at: Option<DateTime<Utc>>,
        rng: &mut impl Rng,
    ) -> Self {
        // One send per interval: 60 a minute means one a second, not 60 at once.
        let limiter = pacing
            .rate_per_minute
            .and_then(NonZeroU32::new)
            .and_then(|per_minute| {
                let interval = Duration::from_secs(60) / per_minute.get();
                Quota::with_period(interval).map(|quota| quota.allow_burst(burst_for(interval)))
            })
            .map(|quota| RateLimiter::direct_with_clock(quota, EngineClock(clock.clone())));
        let rate_interval = pacing
            .rate_per_minute
            .filter(|&n| n > 0)
            .map_or(Duration::ZERO, |n| Duration::from_secs(60) / n);
        let not_before =
            last_send_at.map(|last| last + to_chrono(rate_interval.max(shift_gap(&pacing, rng))));
        Self {
            clock,
            limiter,
            not_before,
            pacing,
        }
    }

    pub fn pacing(&self) -> &Pacing {
        &self.pacing
    }

    /// `None` when a send may start now; otherwise the earliest instant it may. A `None` takes
    /// the rate limiter's cell for this send.
    pub fn next_send_at(&self) -> Option<DateTime<Utc>> {
        let now = self.clock.now();
        if let Some(at) = self.not_before.filter(|&at| at > now) {
            return Some(at);
        }
        let limiter = self.limiter.as_ref()?;
        match limiter.check() {
            Ok(()) => None,
            Err(not_until) => {
                let wait = not_until.wait_time_from(EngineClock(self.clock.clone()).now());
                Some(now + to_chrono(wait.max(Duration::from_millis(1))))
            }
        }
    }

    /// Records a send that just started, and draws the gap before the next one.
    pub fn sent(&mut self, rng: &mut impl Rng) {
        let gap = shift_gap(&self.pacing, rng);
        self.not_before = (!gap.is_zero()).then(|| self.clock.now() + to_chrono(gap));
    }

    /// Holds every send of this sender until `until` (a provider's 429 with `Retry-After`);
    /// says whether that holds them longer than before.
    pub fn hold_until(&mut self, until: DateTime<Utc>) -> bool {
        if self.not_before.is_some_and(|at| at >= until) {
            return false;
        }
        self.not_before = Some(until);
        true
    }
}

pub fn to_chrono(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use chrono::TimeZone;

    use super::*;
    use crate::clock::ManualClock;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn window(days: &[u8], start: &str, end: &str) -> SendWindow {
        SendWindow {
            days: days.to_vec(),
            start: start.parse().unwrap(),
            end: end.parse().unwrap(),
        }
    }

    #[test]
    fn days_roll_over_at_local_midnight_even_when_clocks_change() {
        let new_york = chrono_tz::America::New_York;
        // 2026-03-08 is the spring-forward day in New York: 23 hours long.
        let before_midnight = utc(2026, 3, 8, 3, 59); // 23:59 on Mar 7 (EST, UTC-5)
        assert_eq!(
            local_day(before_midnight, new_york),
            NaiveDate::from_ymd_opt(2026, 3, 7).unwrap()
        );
        assert_eq!(
            next_local_midnight(before_midnight, new_york),
            utc(2026, 3, 8, 5, 0)
        );
        let spring_day = utc(2026, 3, 8, 12, 0);
        assert_eq!(
            local_day(spring_day, new_york),
            NaiveDate::from_ymd_opt(2026, 3, 8).unwrap()
        );
        assert_eq!(
            next_local_midnight(spring_day, new_york),
            utc(2026, 3, 9, 4, 0),
            "midnight is now EDT, UTC-4"
        );
        assert_eq!(
            next_local_midnight(spring_day, new_york)
                - next_local_midnight(before_midnight, new_york),
            chrono::Duration::hours(23)
        );
        // 2026-11-01 falls back: a 25-hour day.
        let fall_day = utc(2026, 11, 1, 12, 0);
        assert_eq!(
            next_local_midnight(fall_day, new_york) - utc(2026, 11, 1, 4, 0),
            chrono::Duration::hours(25)
        );
    }

    #[test]
    fn warmup_days_count_from_the_start_day() {
        let start = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        assert_eq!(warmup_day(Some(start), start), 1);
        assert_eq!(
            warmup_day(Some(start), NaiveDate::from_ymd_opt(2026, 11, 14).unwrap()),
            14
        );
        assert_eq!(
            warmup_day(Some(start), NaiveDate::from_ymd_opt(2026, 10, 30).unwrap()),
            1,
            "never before day 1"
        );
        assert_eq!(warmup_day(None, start), 1);
    }

    #[test]
    fn local_times_in_gaps_and_overlaps_resolve_sensibly() {
        let new_york = chrono_tz::America::New_York;
        let gap = NaiveDate::from_ymd_opt(2026, 3, 8)
            .unwrap()
            .and_hms_opt(2, 30, 0)
            .unwrap();
        assert_eq!(
            resolve_local(new_york, gap),
            utc(2026, 3, 8, 7, 0),
            "02:30 does not exist: 03:00 EDT"
        );
        let overlap = NaiveDate::from_ymd_opt(2026, 11, 1)
            .unwrap()
            .and_hms_opt(1, 30, 0)
            .unwrap();
        assert_eq!(
            resolve_local(new_york, overlap),
            utc(2026, 11, 1, 5, 30),
            "the first 01:30, EDT"
        );
    }

    #[test]
    fn send_windows_open_on_their_days_and_hours_in_the_sender_zone() {
        let jerusalem = chrono_tz::Asia::Jerusalem; // UTC+2 in November
        let weekdays = window(&[1, 2, 3, 4, 5], "09:00", "20:00");
        // Friday 2026-11-20 10:00 local.
        assert_eq!(
            window_opens_at(&weekdays, jerusalem, utc(2026, 11, 20, 8, 0)),
            None
        );
        // Friday 20:00 local is closed; next open is Monday 09:00 local.
        assert_eq!(
            window_opens_at(&weekdays, jerusalem, utc(2026, 11, 20, 18, 0)),
            Some(utc(2026, 11, 23, 7, 0))
        );
        // Monday 08:59 local opens a minute later.
        assert_eq!(
            window_opens_at(&weekdays, jerusalem, utc(2026, 11, 23, 6, 59)),
            Some(utc(2026, 11, 23, 7, 0))
        );
        assert_eq!(
            window_opens_at(&weekdays, jerusalem, utc(2026, 11, 23, 7, 0)),
            None,
            "the start is inside"
        );
    }

    #[test]
    fn overnight_windows_span_midnight() {
        let utc_zone = chrono_tz::UTC;
        // Saturday 22:00 to Sunday 06:00 only.
        let nights = window(&[6], "22:00", "06:00");
        assert_eq!(
            window_opens_at(&nights, utc_zone, utc(2026, 11, 21, 23, 0)),
            None,
            "Saturday night"
        );
        assert_eq!(
            window_opens_at(&nights, utc_zone, utc(2026, 11, 22, 5, 59)),
            None,
            "early Sunday, same window"
        );
        assert_eq!(
            window_opens_at(&nights, utc_zone, utc(2026, 11, 22, 6, 0)),
            Some(utc(2026, 11, 28, 22, 0))
        );
        assert_eq!(
            window_opens_at(&nights, utc_zone, utc(2026, 11, 22, 23, 0)),
            Some(utc(2026, 11, 28, 22, 0)),
            "Sunday night is not Saturday's"
        );
    }

    #[test]
    fn a_window_opening_in_a_dst_gap_opens_after_it() {
        let new_york = chrono_tz::America::New_York;
        let early = window(&[7], "02:30", "04:00");
        // Sunday 2026-03-08 01:00 EST: 02:30 never happens that night.
        assert_eq!(
            window_opens_at(&early, new_york, utc(2026, 3, 8, 6, 0)),
            Some(utc(2026, 3, 8, 7, 0))
        );
    }

    #[test]
    fn typing_delays_are_proportional_and_clamped() {
        let pacing = Pacing {
            typing_enabled: true,
            typing_cps: Some(12),
            typing_min_ms: Some(800),
            typing_max_ms: Some(8000),
            ..Pacing::default()
        };
        assert_eq!(typing_delay(&pacing, 24), Duration::from_millis(2000));
        assert_eq!(
            typing_delay(&pacing, 1),
            Duration::from_millis(800),
            "clamped up"
        );
        assert_eq!(
            typing_delay(&pacing, 1200),
            Duration::from_millis(8000),
            "clamped down"
        );
        assert_eq!(
            typing_delay(
                &Pacing {
                    typing_enabled: false,
                    ..pacing.clone()
                },
                24
            ),
            Duration::ZERO
        );
    }

    #[test]
    fn shift_gaps_are_uniform_within_their_bounds() {
        let pacing = Pacing {
            shift_min_ms: Some(2000),
            shift_max_ms: Some(5000),
            ..Pacing::default()
        };
        let mut rng = StdRng::seed_from_u64(7);
        let gaps: Vec<u64> = (0..2000)
            .map(|_| shift_gap(&pacing, &mut rng).as_millis() as u64)
            .collect();
        assert!(gaps.iter().all(|gap| (2000..=5000).contains(gap)));
        let mean = gaps.iter().sum::<u64>() as f64 / gaps.len() as f64;
        assert!((3400.0..3600.0).contains(&mean), "mean {mean}");
        assert!(
            gaps.iter().any(|&g| g < 2300) && gaps.iter().any(|&g| g > 4700),
            "the whole range is used"
        );
        assert_eq!(shift_gap(&Pacing::default(), &mut rng), Duration::ZERO);
    }

    #[test]
    fn the_rate_limit_spaces_sends_evenly_with_no_burst() {
        let start = utc(2026, 11, 21, 10, 0);
        let clock = ManualClock::new(start);
        let mut rng = StdRng::seed_from_u64(1);
        let pacing = Pacing {
            rate_per_minute: Some(60),
            ..Pacing::default()
        };
        let mut pacer = Pacer::new(pacing, Arc::new(clock.clone()), None, &mut rng);
        assert_eq!(pacer.next_send_at(), None, "the first send goes at once");
        pacer.sent(&mut rng);
        assert_eq!(
            pacer.next_send_at(),
            Some(start + chrono::Duration::seconds(1)),
            "then one a second"
        );
        clock.advance(chrono::Duration::milliseconds(999));
        assert!(pacer.next_send_at().is_some());
        clock.advance(chrono::Duration::milliseconds(1));
        assert_eq!(pacer.next_send_at(), None);
        // Sixty sends take a minute, never less.
        let mut sends = 1;
        while sends < 60 {
            match pacer.next_send_at() {
                None => sends += 1,
                Some(at) => clock.set(at),
            }
        }
        assert_eq!(clock.now(), start + chrono::Duration::seconds(60));
    }

    #[test]
    fn a_fast_rate_holds_when_the_lane_wakes_late_each_time() {
        let start = utc(2026, 11, 21, 10, 0);
        let clock = ManualClock::new(start);
        let mut rng = StdRng::seed_from_u64(2);
        // Meta's default: 80 a second, one each 12.5 ms.
        let pacing = Pacing {
            rate_per_minute: Some(4800),
            ..Pacing::default()
        };
        let pacer = Pacer::new(pacing, Arc::new(clock.clone()), None, &mut rng);
        let mut sends = 0;
        while clock.now() < start + chrono::Duration::seconds(10) {
            match pacer.next_send_at() {
                None => sends += 1,
                // Every wait ends 1.5 ms after it was due.
                Some(at) => clock.set(at + chrono::Duration::microseconds(1500)),
            }
        }
        assert!((799..=801).contains(&sends), "{sends} sends in 10 s");
        // The catch-up is one interval, no more: after a pause, two sends go together.
        clock.advance(chrono::Duration::seconds(10));
        let mut together = 0;
        while pacer.next_send_at().is_none() {
            together += 1;
        }
        assert_eq!(together, 2);
    }

    #[test]
    fn shift_gaps_and_holds_delay_the_next_send() {
        let start = utc(2026, 11, 21, 10, 0);
        let clock = ManualClock::new(start);
        let mut rng = StdRng::seed_from_u64(3);
        let pacing = Pacing {
            shift_min_ms: Some(2000),
            shift_max_ms: Some(2000),
            ..Pacing::default()
        };
        let mut pacer = Pacer::new(pacing, Arc::new(clock.clone()), None, &mut rng);
        assert_eq!(pacer.next_send_at(), None);
        pacer.sent(&mut rng);
        assert_eq!(
            pacer.next_send_at(),
            Some(start + chrono::Duration::seconds(2))
        );
        pacer.hold_until(start + chrono::Duration::seconds(30));
        assert_eq!(
            pacer.next_send_at(),
            Some(start + chrono::Duration::seconds(30)),
            "a 429 holds the lane"
        );
        clock.advance(chrono::Duration::seconds(30));
        assert_eq!(pacer.next_send_at(), None);
    }

    #[test]
    fn a_restarted_pacer_keeps_the_gap_after_the_last_send() {
        let start = utc(2026, 11, 21, 10, 0);
        let clock = ManualClock::new(start);
        let mut rng = StdRng::seed_from_u64(5);
        let pacing = Pacing {
            rate_per_minute: Some(6),
            ..Pacing::default()
        };
        let last = start - chrono::Duration::seconds(4);
        let pacer = Pacer::new(pacing, Arc::new(clock.clone()), Some(last), &mut rng);
        assert_eq!(
            pacer.next_send_at(),
            Some(last + chrono::Duration::seconds(10)),
            "6 a minute: 10 s after the last send"
        );
    }

    #[test]
    fn only_spacing_gates_make_a_lane_send_one_at_a_time() {
        assert!(!spaces_sends(&Pacing {
            daily_limit: Some(10),
            ..Pacing::default()
        }));
        assert!(spaces_sends(&Pacing {
            rate_per_minute: Some(10),
            ..Pacing::default()
        }));
        assert!(spaces_sends(&Pacing {
            shift_min_ms: Some(1),
            ..Pacing::default()
        }));
        assert!(
            !spaces_sends(&Pacing {
                typing_cps: Some(10),
                ..Pacing::default()
            }),
            "typing off"
        );
    }
}
