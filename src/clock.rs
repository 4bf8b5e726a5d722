//! Time as a dependency: production reads the system clock, tests set and advance their own, so
//! schedules, warmup days and pacing are tested exactly and instantly.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, Duration, SubsecRound, Utc};
use tokio::sync::watch;

/// A wait on a [`Clock`].
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// What the engine asks of time: the instant now, and a wait until an instant. Deciding and
/// sleeping on one clock is what lets tests run the engine on a clock they move.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;

    /// Resolves once `now()` has reached `at` (at once if it already has).
    fn sleep_until(&self, at: DateTime<Utc>) -> Sleep;
}

#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    /// Microseconds: what PostgreSQL's `timestamptz` keeps, so a time reads back as written on
    /// either database.
    fn now(&self) -> DateTime<Utc> {
        Utc::now().trunc_subsecs(6)
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> Sleep {
        let wait = (at - Utc::now()).to_std().unwrap_or_default();
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A clock that stands still until told to move; sleepers wake when it passes their instant.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<watch::Sender<DateTime<Utc>>>);

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self(Arc::new(watch::Sender::new(start)))
    }

    pub fn set(&self, to: DateTime<Utc>) {
        self.0.send_replace(to);
    }

    pub fn advance(&self, by: Duration) {
        self.0.send_modify(|now| *now += by);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.borrow()
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> Sleep {
        let mut time = self.0.subscribe();
        Box::pin(async move {
            // The sender lives as long as any clone of the clock; if every clone is gone, the
            // time can never come, so the wait never ends.
            if time.wait_for(|now| *now >= at).await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn system_time_has_microsecond_precision() {
        assert_eq!(SystemClock.now().timestamp_subsec_nanos() % 1000, 0);
    }

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let start = Utc.with_ymd_and_hms(2026, 3, 8, 6, 0, 0).unwrap();
        let clock = ManualClock::new(start);
        assert_eq!(clock.now(), start);
        clock.advance(Duration::minutes(90));
        assert_eq!(clock.now(), start + Duration::minutes(90));
        let shared = clock.clone();
        shared.set(start);
        assert_eq!(clock.now(), start);
    }

    #[tokio::test]
    async fn sleepers_on_a_manual_clock_wake_when_it_passes_their_instant() {
        let start = Utc.with_ymd_and_hms(2026, 3, 8, 6, 0, 0).unwrap();
        let clock = ManualClock::new(start);
        let mut sleeper = tokio::spawn(clock.sleep_until(start + Duration::hours(1)));
        clock.advance(Duration::minutes(59));
        let early = tokio::time::timeout(std::time::Duration::from_millis(20), &mut sleeper).await;
        assert!(early.is_err(), "woke before its instant");
        clock.advance(Duration::minutes(1));
        tokio::time::timeout(std::time::Duration::from_secs(5), sleeper)
            .await
            .expect("woke at its instant")
            .unwrap();
        // An instant already past resolves at once.
        clock.sleep_until(start).await;
    }
}
