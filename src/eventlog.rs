//! Reading the event log: named consumers (the webhook dispatcher, live pages, automations)
//! read it in order of position, in batches, and record how far they have handled it, so that
//! a consumer restarted after a crash resumes where it had recorded — events may be seen again
//! (consumers are idempotent by position), never skipped.
//!
//! PostgreSQL hands positions out in insert order but commits transactions in any order: a
//! reader may see position 12 before 11 is committed. A missing position is therefore a *gap*
//! that may still fill, and the reader stops before it until every transaction that could hold
//! it has ended (the read's snapshot says which had begun), after which it is a rollback and is
//! passed. SQLite's single writer commits in position order, so a gap there is always a
//! rollback.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::store::events::{self as log, Snapshot, StoredEvent};
use crate::store::{self, Db};

/// How often an idle reader looks for new events.
pub const IDLE_POLL: Duration = Duration::from_millis(200);

/// Where a consumer registered for the first time starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    /// The oldest event still kept.
    Beginning,
    /// Only events appended from now on.
    End,
}

/// The log of one database.
#[derive(Clone)]
pub struct EventLog {
    db: Db,
    clock: Arc<dyn Clock>,
}

impl EventLog {
    pub fn new(db: Db, clock: Arc<dyn Clock>) -> Self {
        Self { db, clock }
    }

    /// The reader of consumer `name`, from its recorded position (or from `start` when `name`
    /// has never read).
    pub async fn reader(&self, name: &str, start: StartAt) -> store::Result<EventReader> {
        let mut conn = self.db.write().await?;
        let from = match start {
            StartAt::Beginning => 0,
            StartAt::End => log::last_position(conn.conn()).await?,
        };
        let position = log::register_consumer(conn.conn(), name, from, self.clock.now()).await?;
        Ok(EventReader {
            db: self.db.clone(),
            clock: self.clock.clone(),
            name: name.to_owned(),
            position,
            gap: None,
            idle_poll: IDLE_POLL,
        })
    }
}

/// One consumer's place in the log.
pub struct EventReader {
    db: Db,
    clock: Arc<dyn Clock>,
    name: String,
    /// Every event up to here has been returned by this reader.
    position: i64,
    gap: Option<Gap>,
    idle_poll: Duration,
}

impl EventReader {
    /// Whether the last poll stopped before a position that a running transaction may still
    /// commit: more events may be readable soon even though the poll returned none.
    pub fn waiting_on_gap(&self) -> bool {
        self.gap.is_some()
    }

    /// The events readable now, in order, at most `max`; empty when there are none yet.
    pub async fn poll(&mut self, max: usize) -> store::Result<Vec<StoredEvent>> {
        let limit = i64::try_from(max.max(1)).unwrap_or(i64::MAX);
        let (events, snapshot) = {
            let mut conn = self.db.read().await?;
            log::read_after(conn.conn(), self.position, limit).await?
        };
        Ok(take_readable(
            &mut self.position,
            &mut self.gap,
            events,
            snapshot,
        ))
    }

    /// The next events, waiting for at least one: a read when events keep coming, a few reads
    /// a second while the log is idle.
    pub async fn next_batch(&mut self, max: usize) -> store::Result<Vec<StoredEvent>> {
        loop {
            let events = self.poll(max).await?;
            if !events.is_empty() {
                return Ok(events);
            }
            tokio::time::sleep(self.idle_poll).await;
        }
    }

    /// Records that everything up to `position` is handled: a restarted consumer resumes after
    /// it.
    pub async fn commit(&mut self, position: i64) -> store::Result<()> {
        let mut conn = self.db.write().await?;
        log::save_position(conn.conn(), &self.name, position, self.clock.now()).await
    }
}

/// A position seen missing while a later one was visible.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Gap {
    /// The first missing position.
    from: i64,
    /// The first position visible after it when it was first seen: every missing position
    /// before it was handed out by then.
    to: i64,
    /// The snapshot's `xmax` when it was first seen: the transactions that hold the missing
    /// positions all have ids below it.
    horizon: u64,
}

/// Takes from `events` (ordered, after `position`) those that can be handed out: up to the first
/// gap that may still fill. Advances `position` past what it returns.
fn take_readable(
    position: &mut i64,
    gap: &mut Option<Gap>,
    events: Vec<StoredEvent>,
    snapshot: Option<Snapshot>,
) -> Vec<StoredEvent> {
    let mut readable = Vec::with_capacity(events.len());
    for event in events {
        let expected = *position + 1;
        if event.position > expected {
            let settled = match snapshot {
                None => true,
                Some(snapshot) => {
                    let seen = match *gap {
                        // Seen before: keep the horizon of its first sight, or it never settles.
                        Some(seen) if seen.from == expected => seen,
                        _ => Gap {
                            from: expected,
                            to: event.position,
                            horizon: snapshot.xmax,
                        },
                    };
                    *gap = Some(seen);
                    // Every transaction below the horizon has ended (at first sight too, when
                    // none was running): what is still missing was rolled back, or pruned.
                    snapshot.xmin >= seen.horizon && event.position <= seen.to
                }
            };
            if !settled {
                return readable;
            }
        }
        *gap = None;
        *position = event.position;
        readable.push(event);
    }
    readable
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::domain::event::EventType;
    use crate::domain::ids::WorkspaceId;

    fn event(position: i64) -> StoredEvent {
        StoredEvent {
            position,
            workspace: WorkspaceId::generate(),
            kind: EventType::MessageSent,
            subject: uuid::Uuid::now_v7(),
            payload: serde_json::json!({}),
            occurred_at: Utc::now(),
        }
    }

    fn positions(events: &[StoredEvent]) -> Vec<i64> {
        events.iter().map(|e| e.position).collect()
    }

    #[test]
    fn sqlite_passes_holes_at_once() {
        let (mut position, mut gap) = (0, None);
        let read = take_readable(&mut position, &mut gap, vec![event(1), event(3)], None);
        assert_eq!(positions(&read), [1, 3]);
        assert_eq!(position, 3);
    }

    #[test]
    fn a_gap_holds_the_reader_until_every_transaction_that_could_fill_it_has_ended() {
        let (mut position, mut gap) = (0, None);
        let open = Snapshot {
            xmin: 90,
            xmax: 100,
        };
        // 2 is handed out but not committed; 3 is.
        let read = take_readable(
            &mut position,
            &mut gap,
            vec![event(1), event(3)],
            Some(open),
        );
        assert_eq!(positions(&read), [1], "stops before the gap");
        assert_eq!(position, 1);
        // Still an older transaction open: wait, and never move the horizon.
        let later = Snapshot {
            xmin: 95,
            xmax: 130,
        };
        let read = take_readable(&mut position, &mut gap, vec![event(3)], Some(later));
        assert!(read.is_empty());
        assert_eq!(gap.map(|g| g.horizon), Some(100));
        // The transaction committed: 2 is visible and read in order.
        let read = take_readable(
            &mut position,
            &mut gap,
            vec![event(2), event(3)],
            Some(later),
        );
        assert_eq!(positions(&read), [2, 3]);
        assert_eq!(gap, None);
    }

    #[test]
    fn a_gap_whose_transactions_all_ended_was_a_rollback() {
        let (mut position, mut gap) = (4, None);
        let read = take_readable(
            &mut position,
            &mut gap,
            vec![event(6), event(9)],
            Some(Snapshot { xmin: 10, xmax: 20 }),
        );
        assert!(read.is_empty());
        // Everything below 20 has ended and 5 never appeared; 7 and 8 were handed out after
        // the gap was seen, so they are a gap of their own.
        let read = take_readable(
            &mut position,
            &mut gap,
            vec![event(6), event(9)],
            Some(Snapshot { xmin: 20, xmax: 25 }),
        );
        assert_eq!(positions(&read), [6]);
        assert_eq!(position, 6);
        assert_eq!(
            gap,
            Some(Gap {
                from: 7,
                to: 9,
                horizon: 25
            })
        );
    }
}
