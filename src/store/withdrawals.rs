//! Consent withdrawn in this process, told at once to the lanes sending here.
//!
//! Opting a contact out or blocking it skips what still waits for it, in the same transaction;
//! but a lane may already hold a message to it, claimed in the batch it is sending or in the one
//! it claimed ahead. Each lane subscribes before its first claim, and [`announce`] tells every
//! subscriber of a withdrawal once its statements have run, while its transaction still holds
//! the contact's row (SQLite: the writer). A lane that then meets the contact asks the database
//! ([`super::contacts::withdrawn`] waiting for writers), which answers once that transaction has
//! ended: a withdrawal rolled back skips nothing.
//!
//! A withdrawal announced before a lane's claim cannot reach its batch: the messages it skipped
//! were locked by its transaction (SQLite: the writer was), so the claim either waited for the
//! commit and found them skipped, or passed over them.
//!
//! Process-wide, like the metrics registry: contact ids are unique across databases, so a lane of
//! another database never matches one. On PostgreSQL [`announce`] also tells the other
//! processes, whose engines tell their own lanes ([`tell_lanes_here`]) when it commits; a batch
//! claimed ahead is still checked against the database before it starts, for what a process
//! hears late (a listening connection being opened again).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use super::{Conn, Result};
use crate::domain::ids::ContactId;

/// The PostgreSQL channel on which a process tells the others that consent was withdrawn.
pub(super) const CHANNEL: &str = "herald_consent_withdrawn";

static SUBSCRIBERS: Mutex<Vec<Weak<Inbox>>> = Mutex::new(Vec::new());

#[derive(Default)]
struct Inbox {
    /// Set with the first contact: a lane whose inbox is empty pays one load per send.
    any: AtomicBool,
    contacts: Mutex<HashSet<ContactId>>,
}

/// One lane's hearing of withdrawals (its clones share it); dropping the last unsubscribes.
#[derive(Clone)]
pub struct Subscription(Arc<Inbox>);

/// Subscribes to withdrawals announced from now on.
pub fn subscribe() -> Subscription {
    let inbox = Arc::new(Inbox::default());
    let mut subscribers = SUBSCRIBERS.lock().unwrap_or_else(PoisonError::into_inner);
    subscribers.retain(|subscriber| subscriber.strong_count() > 0);
    subscribers.push(Arc::downgrade(&inbox));
    Subscription(inbox)
}

/// Tells every lane that `contact` may have withdrawn its consent, in this process at once and,
/// on PostgreSQL, in the others when the transaction commits: call it after the statements that
/// withdraw it, inside their transaction.
pub(super) async fn announce(conn: Conn<'_>, contact: ContactId) -> Result<()> {
    tell_lanes_here(contact);
    tell_other_processes(conn, contact).await
}

/// Tells this process's subscribers that `contact` may have withdrawn its consent: a withdrawal
/// here, or one another process told of.
pub fn tell_lanes_here(contact: ContactId) {
    let subscribers = SUBSCRIBERS.lock().unwrap_or_else(PoisonError::into_inner);
    for inbox in subscribers.iter().filter_map(Weak::upgrade) {
        inbox
            .contacts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(contact);
        inbox.any.store(true, Ordering::Release);
    }
}

/// Tells the other processes on a PostgreSQL database that `contact` may have withdrawn its
/// consent, for their lanes: PostgreSQL delivers it when the transaction commits (a
/// lane that then asks the database sees the withdrawal), and not at all if it rolls back.
/// Nothing on SQLite, which one process serves.
pub async fn tell_other_processes(conn: Conn<'_>, contact: ContactId) -> Result<()> {
    super::notify(conn, CHANNEL, contact.to_string()).await
}

impl Subscription {
    /// Whether a withdrawal of `contact` was announced since the subscription or the last
    /// [`Subscription::forget`]: if so, ask the database before sending to it.
    pub fn may_have_withdrawn(&self, contact: ContactId) -> bool {
        self.0.any.load(Ordering::Acquire)
            && self
                .0
                .contacts
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(&contact)
    }

    /// Forgets what was heard: for a lane that holds no claimed message, before it claims
    /// (what was announced until then cannot be in its next claim).
    pub fn forget(&self) {
        if self.0.any.swap(false, Ordering::AcqRel) {
            self.0
                .contacts
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscriber_hears_what_is_announced_after_it_subscribed_until_it_forgets() {
        let before = ContactId::generate();
        tell_lanes_here(before);
        let lane = subscribe();
        let (stopped, other) = (ContactId::generate(), ContactId::generate());
        assert!(!lane.may_have_withdrawn(stopped));
        tell_lanes_here(stopped);
        assert!(lane.may_have_withdrawn(stopped));
        assert!(!lane.may_have_withdrawn(other));
        assert!(
            !lane.may_have_withdrawn(before),
            "announced before it listened"
        );
        lane.forget();
        assert!(!lane.may_have_withdrawn(stopped));
        tell_lanes_here(other);
        assert!(lane.may_have_withdrawn(other));
    }

    #[test]
    fn a_dropped_subscription_is_not_told_any_more() {
        let lane = subscribe();
        let inbox = Arc::downgrade(&lane.0);
        drop(lane);
        tell_lanes_here(ContactId::generate());
        assert!(inbox.upgrade().is_none());
        let _ = subscribe();
        let subscribers = SUBSCRIBERS.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(subscribers.iter().all(|s| !Weak::ptr_eq(s, &inbox)));
    }
}
