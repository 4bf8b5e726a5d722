//! A message's lifecycle and the campaign counters derived from it.
//!
//! A message only moves forward: `pending → sending → sent → delivered → read`, or to `failed` /
//! `skipped`. Provider callbacks arrive out of order, so every change goes through [`Progress::apply`],
//! which keeps the furthest stage reached; a late `delivered` never undoes a `read`.
//!
//! Counters are *memberships*: each message belongs to a set of stages ([`Counters::of`]); a
//! change moves the campaign's counters by `of(new) − of(old)`. The truth query over `messages`
//! uses the same definitions, so counters and truth cannot drift apart.

use std::fmt;
use std::ops::{Add, AddAssign, Mul, Sub};
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

super::named_enum! {
    /// Whether Herald sent the message or received it.
    pub enum Direction {
        Outbound => "outbound",
        Inbound => "inbound",
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    Pending,
    /// Claimed by a sender lane; the lease says until when.
    Sending,
    Sent,
    Delivered,
    Read,
    Failed,
    Skipped,
}

impl MessageStatus {
    pub const ALL: [MessageStatus; 7] = [
        Self::Pending,
        Self::Sending,
        Self::Sent,
        Self::Delivered,
        Self::Read,
        Self::Failed,
        Self::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }

    /// Not finished yet: waiting for its turn or in flight.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Pending | Self::Sending)
    }
}

impl fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown message status '{0}'")]
pub struct UnknownMessageStatus(pub String);

impl FromStr for MessageStatus {
    type Err = UnknownMessageStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownMessageStatus(s.to_owned()))
    }
}

/// What can happen to a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A lane took it to send.
    Claimed,
    /// The provider accepted it.
    Sent {
        at: DateTime<Utc>,
    },
    /// A transient failure: back to the queue for another attempt.
    Retry,
    Delivered {
        at: DateTime<Utc>,
    },
    Read {
        at: DateTime<Utc>,
    },
    Failed {
        at: DateTime<Utc>,
    },
    /// Left unsent on purpose (campaign canceled, contact opted out, …).
    Skipped,
}

/// The part of a message row that its lifecycle and its counters depend on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    pub status: MessageStatus,
    pub sent_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub read_at: Option<DateTime<Utc>>,
    pub failed_at: Option<DateTime<Utc>>,
}

impl Progress {
    pub fn pending() -> Self {
        Self {
            status: MessageStatus::Pending,
            sent_at: None,
            delivered_at: None,
            read_at: None,
            failed_at: None,
        }
    }

    /// The progress after `event`, or `None` when the event changes nothing (it came too late, or
    /// it does not apply to this status).
    pub fn apply(self, event: Event) -> Option<Progress> {
        use MessageStatus::*;
        let mut next = self;
        match (self.status, event) {
            (Pending, Event::Claimed) => next.status = Sending,
            (Sending, Event::Retry) => next.status = Pending,
            // Unsent on purpose: before a lane took it, or by the lane itself (the recipient is
            // outside a window the platform keeps).
            (Pending | Sending, Event::Skipped) => next.status = Skipped,
            // The provider's word that it has the message beats our own bookkeeping: a message
            // skipped after its lease ran out may still have gone out.
            (Pending | Sending | Skipped, Event::Sent { at }) => {
                next.status = Sent;
                next.sent_at.get_or_insert(at);
            }
            // A delivery or read callback can overtake the record of the send itself.
            (Delivered | Read | Failed, Event::Sent { at }) => {
                next.sent_at.get_or_insert(at);
            }
            (Pending | Sending | Sent | Skipped, Event::Delivered { at }) => {
                next.status = Delivered;
                next.sent_at.get_or_insert(at);
                next.delivered_at.get_or_insert(at);
            }
            (Pending | Sending | Sent | Delivered | Skipped, Event::Read { at }) => {
                next.status = Read;
                next.sent_at.get_or_insert(at);
                next.delivered_at.get_or_insert(at);
                next.read_at.get_or_insert(at);
            }
            (Pending | Sending | Sent, Event::Failed { at }) => {
                next.status = Failed;
                next.failed_at.get_or_insert(at);
            }
            _ => return None,
        }
        (next != self).then_some(next)
    }
}

/// Campaign counters, cumulative by stage as API.md defines them: `sent` counts every message
/// that reached sent or later, `delivered` those that reached delivered or read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Counters {
    pub total: i64,
    /// Pending or in flight.
    pub pending: i64,
    pub sent: i64,
    pub delivered: i64,
    pub read: i64,
    pub failed: i64,
    pub skipped: i64,
}

impl Counters {
    /// The stages one message counts in.
    pub fn of(progress: &Progress) -> Counters {
        Counters {
            total: 1,
            pending: progress.status.is_open() as i64,
            sent: progress.sent_at.is_some() as i64,
            delivered: progress.delivered_at.is_some() as i64,
            read: progress.read_at.is_some() as i64,
            failed: (progress.status == MessageStatus::Failed) as i64,
            skipped: (progress.status == MessageStatus::Skipped) as i64,
        }
    }

    /// How a campaign's counters move when one message goes from `before` to `after`.
    pub fn change(before: &Progress, after: &Progress) -> Counters {
        Counters::of(after) - Counters::of(before)
    }

    pub fn is_zero(&self) -> bool {
        *self == Counters::default()
    }

    /// `delivered / sent × 100`, two decimals, 0 when nothing was sent.
    pub fn delivery_rate(&self) -> f64 {
        percentage(self.delivered, self.sent)
    }

    /// `read / delivered × 100`, two decimals, 0 when nothing was delivered.
    pub fn read_rate(&self) -> f64 {
        percentage(self.read, self.delivered)
    }
}

/// `part / whole × 100`, two decimals, 0 when there is no whole.
pub fn percentage(part: i64, whole: i64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    (part as f64 * 10_000.0 / whole as f64).round() / 100.0
}

impl Add for Counters {
    type Output = Counters;
    fn add(self, other: Counters) -> Counters {
        Counters {
            total: self.total + other.total,
            pending: self.pending + other.pending,
            sent: self.sent + other.sent,
            delivered: self.delivered + other.delivered,
            read: self.read + other.read,
            failed: self.failed + other.failed,
            skipped: self.skipped + other.skipped,
        }
    }
}

impl AddAssign for Counters {
    fn add_assign(&mut self, other: Counters) {
        *self = *self + other;
    }
}

/// The change of `n` messages that each changed by `self`.
impl Mul<i64> for Counters {
    type Output = Counters;
    fn mul(self, n: i64) -> Counters {
        Counters {
            total: self.total * n,
            pending: self.pending * n,
            sent: self.sent * n,
            delivered: self.delivered * n,
            read: self.read * n,
            failed: self.failed * n,
            skipped: self.skipped * n,
        }
    }
}

impl Sub for Counters {
    type Output = Counters;
    fn sub(self, other: Counters) -> Counters {
        Counters {
            total: self.total - other.total,
            pending: self.pending - other.pending,
            sent: self.sent - other.sent,
            delivered: self.delivered - other.delivered,
            read: self.read - other.read,
            failed: self.failed - other.failed,
            skipped: self.skipped - other.skipped,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use proptest::prelude::*;

    use super::MessageStatus::*;
    use super::*;

    fn at(second: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 21, 10, 0, second).unwrap()
    }

    fn run(events: &[Event]) -> Progress {
        events.iter().fold(Progress::pending(), |progress, &event| {
            progress.apply(event).unwrap_or(progress)
        })
    }

    #[test]
    fn the_happy_path_moves_forward() {
        let progress = run(&[
            Event::Claimed,
            Event::Sent { at: at(1) },
            Event::Delivered { at: at(2) },
            Event::Read { at: at(3) },
        ]);
        assert_eq!(progress.status, Read);
        assert_eq!(
            (progress.sent_at, progress.delivered_at, progress.read_at),
            (Some(at(1)), Some(at(2)), Some(at(3)))
        );
    }

    #[test]
    fn a_late_delivered_never_undoes_a_read() {
        let read = run(&[
            Event::Claimed,
            Event::Sent { at: at(1) },
            Event::Read { at: at(3) },
        ]);
        assert_eq!(read.apply(Event::Delivered { at: at(2) }), None);
        assert_eq!(read.status, Read);
        assert_eq!(read.delivered_at, Some(at(3)), "read implies delivered");
    }

    #[test]
    fn a_callback_may_overtake_the_send_result() {
        let delivered = run(&[Event::Claimed, Event::Delivered { at: at(2) }]);
        assert_eq!(delivered.status, Delivered);
        assert_eq!(delivered.sent_at, Some(at(2)));
        // The send result recorded afterwards changes nothing that matters.
        assert_eq!(delivered.apply(Event::Sent { at: at(1) }), None);
    }

    #[test]
    fn failed_after_sent_is_recorded_but_not_after_delivery() {
        let failed = run(&[
            Event::Claimed,
            Event::Sent { at: at(1) },
            Event::Failed { at: at(2) },
        ]);
        assert_eq!(failed.status, Failed);
        assert_eq!(failed.sent_at, Some(at(1)));
        let delivered = run(&[
            Event::Claimed,
            Event::Sent { at: at(1) },
            Event::Delivered { at: at(2) },
        ]);
        assert_eq!(delivered.apply(Event::Failed { at: at(3) }), None);
    }

    #[test]
    fn only_pending_messages_are_claimed_and_only_sending_ones_retried() {
        let sending = run(&[Event::Claimed]);
        assert_eq!(sending.apply(Event::Claimed), None);
        // Its lane may still decide not to send it (the recipient is outside WhatsApp's window).
        assert_eq!(
            sending.apply(Event::Skipped).map(|p| p.status),
            Some(Skipped)
        );
        let sent = run(&[Event::Claimed, Event::Sent { at: at(1) }]);
        assert_eq!(sent.apply(Event::Skipped), None, "what went out stays out");
        assert_eq!(sending.apply(Event::Retry).map(|p| p.status), Some(Pending));
        assert_eq!(Progress::pending().apply(Event::Retry), None);
        assert_eq!(
            Progress::pending().apply(Event::Skipped).map(|p| p.status),
            Some(Skipped)
        );
    }

    #[test]
    fn counters_are_cumulative_by_stage() {
        let read = run(&[Event::Claimed, Event::Read { at: at(3) }]);
        assert_eq!(
            Counters::of(&read),
            Counters {
                total: 1,
                pending: 0,
                sent: 1,
                delivered: 1,
                read: 1,
                failed: 0,
                skipped: 0
            }
        );
        let sending = run(&[Event::Claimed]);
        assert_eq!(
            Counters::of(&sending).pending,
            1,
            "in flight counts as pending"
        );
    }

    #[test]
    fn rates_have_two_decimals_and_no_division_by_zero() {
        let counters = Counters {
            sent: 3,
            delivered: 2,
            read: 1,
            ..Counters::default()
        };
        assert_eq!(counters.delivery_rate(), 66.67);
        assert_eq!(counters.read_rate(), 50.0);
        assert_eq!(Counters::default().delivery_rate(), 0.0);
        assert_eq!(Counters::default().read_rate(), 0.0);
    }

    fn any_event() -> impl Strategy<Value = Event> {
        prop_oneof![
            Just(Event::Claimed),
            Just(Event::Retry),
            Just(Event::Skipped),
            (0u32..60).prop_map(|s| Event::Sent { at: at(s) }),
            (0u32..60).prop_map(|s| Event::Delivered { at: at(s) }),
            (0u32..60).prop_map(|s| Event::Read { at: at(s) }),
            (0u32..60).prop_map(|s| Event::Failed { at: at(s) }),
        ]
    }

    proptest! {
        #[test]
        fn summed_changes_equal_the_final_membership(events in proptest::collection::vec(any_event(), 0..30)) {
            let mut progress = Progress::pending();
            let mut counters = Counters::of(&progress);
            for event in events {
                if let Some(next) = progress.apply(event) {
                    counters += Counters::change(&progress, &next);
                    progress = next;
                }
            }
            prop_assert_eq!(counters, Counters::of(&progress));
        }

        #[test]
        fn stages_once_reached_are_never_lost(events in proptest::collection::vec(any_event(), 0..30)) {
            let mut progress = Progress::pending();
            for event in events {
                let before = progress;
                progress = progress.apply(event).unwrap_or(progress);
                prop_assert!(before.sent_at.is_none() || progress.sent_at == before.sent_at);
                prop_assert!(before.delivered_at.is_none() || progress.delivered_at == before.delivered_at);
                prop_assert!(before.read_at.is_none() || progress.read_at == before.read_at);
                prop_assert!(progress.read_at.is_none() || progress.delivered_at.is_some());
                prop_assert!(progress.delivered_at.is_none() || progress.sent_at.is_some());
            }
        }
    }
}
