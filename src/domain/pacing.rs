//! A sender's pacing settings, exactly as API.md spells them, and the pure rules over them.
//! Every field is optional; an absent one turns its gate off.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::time::LocalTime;
use super::validation::FieldErrors;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Pacing {
    pub daily_limit: Option<u32>,
    #[serde(default)]
    pub warmup_enabled: bool,
    pub warmup_start_limit: Option<u32>,
    pub warmup_max_limit: Option<u32>,
    pub warmup_days: Option<u32>,
    pub shift_min_ms: Option<u32>,
    pub shift_max_ms: Option<u32>,
    #[serde(default)]
    pub typing_enabled: bool,
    pub typing_cps: Option<u32>,
    pub typing_min_ms: Option<u32>,
    pub typing_max_ms: Option<u32>,
    pub rate_per_minute: Option<u32>,
    pub send_window: Option<SendWindow>,
}

/// Allowed ISO weekdays (1 = Monday … 7 = Sunday) and local hours. A window whose end is
/// earlier than its start runs over midnight (22:00–06:00).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendWindow {
    pub days: Vec<u8>,
    #[schema(value_type = String, example = "09:00")]
    pub start: LocalTime,
    #[schema(value_type = String, example = "20:00")]
    pub end: LocalTime,
}

/// The warmup ramp, present only when warmup is on and fully configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Warmup {
    pub start_limit: u32,
    pub max_limit: u32,
    pub days: u32,
}

impl Pacing {
    pub fn validate(&self) -> Result<(), FieldErrors> {
        let mut errors = FieldErrors::new();
        let field = |name: &str| format!("pacing.{name}");
        if self.warmup_enabled {
            for (name, value) in [
                ("warmup_start_limit", self.warmup_start_limit),
                ("warmup_max_limit", self.warmup_max_limit),
                ("warmup_days", self.warmup_days),
            ] {
                match value {
                    None => errors.add(field(name), "is required when warmup_enabled is true"),
                    Some(0) => errors.add(field(name), "must be at least 1"),
                    Some(_) => {}
                }
            }
            if let (Some(start), Some(max)) = (self.warmup_start_limit, self.warmup_max_limit)
                && start > max
            {
                errors.add(
                    field("warmup_max_limit"),
                    "must be at least warmup_start_limit",
                );
            }
        }
        if let (Some(min), Some(max)) = (self.shift_min_ms, self.shift_max_ms)
            && min > max
        {
            errors.add(field("shift_max_ms"), "must be at least shift_min_ms");
        }
        if self.typing_enabled {
            match self.typing_cps {
                None => errors.add(
                    field("typing_cps"),
                    "is required when typing_enabled is true",
                ),
                Some(0) => errors.add(field("typing_cps"), "must be at least 1"),
                Some(_) => {}
            }
        }
        if let (Some(min), Some(max)) = (self.typing_min_ms, self.typing_max_ms)
            && min > max
        {
            errors.add(field("typing_max_ms"), "must be at least typing_min_ms");
        }
        if self.rate_per_minute == Some(0) {
            errors.add(
                field("rate_per_minute"),
                "must be at least 1; leave it out for no limit",
            );
        }
        if let Some(window) = &self.send_window {
            window.validate(&mut errors);
        }
        errors.into_result()
    }

    pub fn warmup(&self) -> Option<Warmup> {
        if !self.warmup_enabled {
            return None;
        }
        Some(Warmup {
            start_limit: self.warmup_start_limit?,
            max_limit: self.warmup_max_limit?,
            days: self.warmup_days?.max(1),
        })
    }

    /// The most a sender may send on warmup day `warmup_day` (1-based, counted in the sender's
    /// time zone from the day warmup began), or `None` when nothing caps the day.
    ///
    /// During warmup the cap rises linearly from the start limit on day 1 to the max limit on the
    /// last warmup day, never above `daily_limit`; after it, `daily_limit` (or the max limit when
    /// there is no daily limit) holds.
    pub fn daily_cap(&self, warmup_day: u32) -> Option<u32> {
        let Some(warmup) = self.warmup() else {
            return self.daily_limit;
        };
        let day = warmup_day.max(1);
        if day > warmup.days {
            return Some(self.daily_limit.unwrap_or(warmup.max_limit));
        }
        let ramp = if warmup.days == 1 {
            warmup.max_limit
        } else {
            let rise = u64::from(warmup.max_limit - warmup.start_limit) * u64::from(day - 1)
                / u64::from(warmup.days - 1);
            warmup.start_limit + rise as u32
        };
        Some(self.daily_limit.map_or(ramp, |limit| ramp.min(limit)))
    }
}

impl SendWindow {
    fn validate(&self, errors: &mut FieldErrors) {
        if self.days.is_empty() {
            errors.add("pacing.send_window.days", "must name at least one day");
        }
        if self.days.iter().any(|day| !(1..=7).contains(day)) {
            errors.add(
                "pacing.send_window.days",
                "days are ISO weekdays, 1 (Monday) to 7 (Sunday)",
            );
        }
        if self.start == self.end {
            errors.add("pacing.send_window.end", "must differ from start");
        }
    }
}

/// How long "typing…" shows before a message of `chars` characters: proportional to its length
/// at `typing_cps` characters a second, clamped to `[typing_min_ms, typing_max_ms]`.
pub fn typing_delay(pacing: &Pacing, chars: usize) -> Duration {
    let Some(cps) = pacing
        .typing_cps
        .filter(|&cps| pacing.typing_enabled && cps > 0)
    else {
        return Duration::ZERO;
    };
    let millis = (chars as u64).saturating_mul(1000) / u64::from(cps);
    let min = u64::from(pacing.typing_min_ms.unwrap_or(0));
    let max = u64::from(pacing.typing_max_ms.unwrap_or(u32::MAX)).max(min);
    Duration::from_millis(millis.clamp(min, max))
}

/// Whether any gate that spaces consecutive sends is on. With none, a lane sends batches with
/// many sends in flight; with any, one message at a time.
pub fn spaces_sends(pacing: &Pacing) -> bool {
    pacing.rate_per_minute.is_some()
        || pacing.shift_min_ms.is_some()
        || pacing.shift_max_ms.is_some()
        || (pacing.typing_enabled && pacing.typing_cps.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warmup(start: u32, max: u32, days: u32, daily_limit: Option<u32>) -> Pacing {
        Pacing {
            daily_limit,
            warmup_enabled: true,
            warmup_start_limit: Some(start),
            warmup_max_limit: Some(max),
            warmup_days: Some(days),
            ..Pacing::default()
        }
    }

    #[test]
    fn no_settings_means_no_cap() {
        assert_eq!(Pacing::default().daily_cap(1), None);
        assert_eq!(Pacing::default().validate(), Ok(()));
    }

    #[test]
    fn a_plain_daily_limit_holds_every_day() {
        let pacing = Pacing {
            daily_limit: Some(500),
            ..Pacing::default()
        };
        assert_eq!(pacing.daily_cap(1), Some(500));
        assert_eq!(pacing.daily_cap(90), Some(500));
    }

    #[test]
    fn warmup_ramps_linearly_from_start_to_max() {
        let pacing = warmup(50, 1000, 14, None);
        let caps: Vec<_> = (1..=16).map(|day| pacing.daily_cap(day).unwrap()).collect();
        assert_eq!(caps[0], 50);
        assert_eq!(caps[13], 1000, "the max is reached on the last warmup day");
        assert_eq!(caps[1], 50 + 950 / 13);
        assert!(caps.windows(2).all(|pair| pair[0] <= pair[1]));
        assert_eq!(
            caps[14], 1000,
            "after warmup the max holds when there is no daily limit"
        );
        assert_eq!(caps[15], 1000);
    }

    #[test]
    fn warmup_never_exceeds_the_daily_limit_and_hands_over_to_it() {
        let pacing = warmup(100, 1000, 10, Some(400));
        assert_eq!(pacing.daily_cap(1), Some(100));
        assert_eq!(
            pacing.daily_cap(5),
            Some(400),
            "ramp is 500 on day 5, capped at 400"
        );
        assert_eq!(pacing.daily_cap(10), Some(400));
        assert_eq!(pacing.daily_cap(11), Some(400));
        let generous = warmup(10, 100, 3, Some(5000));
        assert_eq!(generous.daily_cap(3), Some(100));
        assert_eq!(
            generous.daily_cap(4),
            Some(5000),
            "after warmup the daily limit holds"
        );
    }

    #[test]
    fn a_one_day_warmup_starts_at_max() {
        assert_eq!(warmup(10, 100, 1, None).daily_cap(1), Some(100));
    }

    #[test]
    fn invalid_settings_name_their_fields() {
        let pacing = Pacing {
            warmup_enabled: true,
            warmup_start_limit: Some(200),
            warmup_max_limit: Some(100),
            shift_min_ms: Some(5000),
            shift_max_ms: Some(2000),
            typing_enabled: true,
            rate_per_minute: Some(0),
            send_window: Some(SendWindow {
                days: vec![0, 8],
                start: hm("20:00"),
                end: hm("20:00"),
            }),
            ..Pacing::default()
        };
        let errors = pacing.validate().unwrap_err();
        for field in [
            "pacing.warmup_days",
            "pacing.warmup_max_limit",
            "pacing.shift_max_ms",
            "pacing.typing_cps",
            "pacing.rate_per_minute",
            "pacing.send_window.days",
            "pacing.send_window.end",
        ] {
            assert!(errors.get(field).is_some(), "{field} missing from {errors}");
        }
    }

    fn hm(text: &str) -> LocalTime {
        text.parse().unwrap()
    }

    #[test]
    fn a_window_bound_that_is_no_time_is_refused_when_read() {
        let refused =
            serde_json::from_str::<SendWindow>(r#"{"days": [1], "start": "9am", "end": "20:00"}"#);
        let error = refused.unwrap_err().to_string();
        assert!(error.contains("must be a local time as HH:MM"), "{error}");
    }

    #[test]
    fn the_api_example_is_valid() {
        let pacing: Pacing = serde_json::from_str(
            r#"{"daily_limit": 1000,
                "warmup_enabled": true, "warmup_start_limit": 50, "warmup_max_limit": 1000, "warmup_days": 14,
                "shift_min_ms": 2000, "shift_max_ms": 5000,
                "typing_enabled": true, "typing_cps": 12, "typing_min_ms": 800, "typing_max_ms": 8000,
                "rate_per_minute": 60,
                "send_window": {"days": [1,2,3,4,5], "start": "09:00", "end": "20:00"}}"#,
        )
        .unwrap();
        assert_eq!(pacing.validate(), Ok(()));
        let window = pacing.send_window.unwrap();
        assert_eq!(Some(window.start), LocalTime::hm(9, 0));
    }

    #[test]
    fn overnight_windows_are_valid() {
        let window = SendWindow {
            days: vec![1, 7],
            start: hm("22:00"),
            end: hm("06:00"),
        };
        let pacing = Pacing {
            send_window: Some(window),
            ..Pacing::default()
        };
        assert_eq!(pacing.validate(), Ok(()));
    }
}
