//! Sends that happened, durable before they are applied to `messages`: SQLite's log of sends.
//!
//! A lane must make each send durable within milliseconds of its answer, so that a `kill -9`
//! repeats at most the sends in flight (invariant 1). Recording a send in full rewrites its
//! message, that row's index entries, its event, its campaign's counters and the rollups; done
//! for every 64 sends, each commit writes nearly the pages that one for 1,024 did. So a lane
//! appends each group of completed sends to a [`Segment`] of the log as it arrives, applies them
//! to `messages` in bulk ([`apply`]), then deletes the segment. Whatever a dead lane logged and
//! did not apply is recorded by [`record_expired`] before its claims are requeued, never sent
//! again.
//!
//! The log is a directory beside the database file (`<database>-send-log`) of segments: a file
//! per lane and apply, written with one `write` per group on the lane's own thread, and held
//! under an exclusive lock (`flock`) while its lane may write to it. A `kill -9` keeps every
//! `write` that returned (it is in the kernel's cache, as a SQLite commit with
//! `synchronous = NORMAL` is) and drops the lock, so an unlocked segment is one no lane will
//! write again: [`sweep`] deletes it once none of its messages is still `sending`. Each group is
//! a frame with its length and CRC-32, so one that a crash cut short is a send not yet durable,
//! one of those in flight. The log was a SQLite file of its own before: each group's commit was
//! a hand-off to that file's thread and back (0.4–0.5 ms while the cores were busy with the
//! sends), and a send's slot waited for it. PostgreSQL commits concurrently and logs nothing
//! ([`Db::logs_sends`](super::Db::logs_sends)).

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::messages::record_sends;
use super::sql::{Param, SqlBuilder, bind_params, rows_per_statement};
use super::{Conn, Db, Result, Tx};
use crate::domain::ids::MessageId;

/// Sends logged by one append: what the provider said of each, and when.
#[derive(Clone, Debug, PartialEq)]
pub struct LoggedGroup {
    pub at: DateTime<Utc>,
    /// Each message with its provider's id, when the provider gave one.
    pub sends: Vec<(MessageId, Option<String>)>,
}

/// A logged send: the message, its provider's id, and when it was logged.
pub type LoggedSend = (MessageId, Option<String>, DateTime<Utc>);

/// A segment's file: made under [`MAKING`], renamed to [`SEGMENT`] once its lane holds its lock.
const SEGMENT: &str = "log";
const MAKING: &str = "new";

/// The log of sends of one SQLite database: a directory of segments.
#[derive(Debug)]
pub struct SendLog {
    dir: PathBuf,
    earlier_file: PathBuf,
}

impl SendLog {
    /// The log beside the database file `database` (`<database>-send-log`), made if missing.
    pub fn beside(database: &Path) -> io::Result<Self> {
        let beside = |suffix: &str| {
            let mut path = database.as_os_str().to_owned();
            path.push(suffix);
            PathBuf::from(path)
        };
        let dir = beside("-send-log");
        fs::create_dir_all(&dir)?;
        Ok(Self {
            dir,
            earlier_file: beside("-sends"),
        })
    }

    /// Where the version before kept its log: a SQLite file of its own.
    pub(super) fn earlier_file(&self) -> PathBuf {
        self.earlier_file.clone()
    }

    /// Copies `sends` into a segment no lane holds, synced to disk (what an earlier version
    /// logged, about to be deleted where it was), to be recorded when their claims run out.
    pub(super) fn keep(&self, sends: &[LoggedSend]) -> io::Result<()> {
        if sends.is_empty() {
            return Ok(());
        }
        let mut segment = self.segment()?;
        for group in groups_by_time(sends.iter().cloned()) {
            segment.append(&group)?;
        }
        segment.file.sync_all()
    }

    /// A new segment, locked as its lane's until it is dropped. It is made under another name
    /// and renamed once locked, so that [`sweep`] never takes a segment being made for one whose
    /// lane is gone.
    pub fn segment(&self) -> io::Result<Segment> {
        let name = uuid::Uuid::now_v7();
        let making = self.dir.join(format!("{name}.{MAKING}"));
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&making)?;
        file.lock()?;
        let path = self.dir.join(format!("{name}.{SEGMENT}"));
        fs::rename(&making, &path)?;
        Ok(Segment {
            file,
            path,
            frame: Vec::new(),
        })
    }

    /// Every send in the log, each message once, as first logged: a few hundred a lane at most,
    /// since a lane applies what it logged within a quarter of a second.
    pub fn read(&self) -> io::Result<Vec<LoggedSend>> {
        let mut seen = HashSet::new();
        let mut sends = Vec::new();
        for path in self.files(SEGMENT)? {
            let mut bytes = Vec::new();
            match File::open(&path).and_then(|mut file| file.read_to_end(&mut bytes)) {
                Ok(_) => {}
                // Applied and deleted by its lane meanwhile.
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => return Err(error),
            }
            sends.extend(decode(&bytes).filter(|(id, _, _)| seen.insert(*id)));
        }
        Ok(sends)
    }

    /// The files of one kind, in the order they were made (their names are UUIDv7s).
    fn files(&self, extension: &str) -> io::Result<Vec<PathBuf>> {
        let mut paths = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|found| found == extension) {
                paths.push(path);
            }
        }
        paths.sort();
        Ok(paths)
    }

    /// The files of one kind that no lane holds, each with its lock now held by the caller.
    fn abandoned(&self, extension: &str) -> io::Result<Vec<(PathBuf, File)>> {
        let mut abandoned = Vec::new();
        for path in self.files(extension)? {
            let file = match File::open(&path) {
                Ok(file) => file,
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => return Err(error),
            };
            match file.try_lock() {
                Ok(()) => abandoned.push((path, file)),
                Err(fs::TryLockError::WouldBlock) => {}
                Err(fs::TryLockError::Error(error)) => return Err(error),
            }
        }
        Ok(abandoned)
    }
}

/// A segment of the log that a lane writes: locked while it is open, deleted by
/// [`Segment::discard`] once every send in it is applied.
#[derive(Debug)]
pub struct Segment {
    file: File,
    path: PathBuf,
    frame: Vec<u8>,
}

impl Segment {
    /// Appends `group` with one `write`: once it returns, a `kill -9` keeps it. After an error
    /// the segment may end with a partial frame, and must not be appended to again.
    pub fn append(&mut self, group: &LoggedGroup) -> io::Result<()> {
        self.frame.clear();
        encode(group, &mut self.frame);
        self.file.write_all(&self.frame)
    }

    /// Deletes the segment, whose sends are all applied.
    pub fn discard(self) -> io::Result<()> {
        remove_if_there(&self.path)
    }
}

pub(super) fn remove_if_there(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

/// Appends `group`'s frame to `frame`: the payload's length and CRC-32 (little-endian `u32`s),
/// then the payload: the group's time (seconds as `i64`, nanoseconds as `u32`), its count of
/// sends (`u32`), and each send's message id (16 bytes) and provider id (its length as `u32`,
/// `u32::MAX` for none, then its UTF-8).
fn encode(group: &LoggedGroup, frame: &mut Vec<u8>) {
    let start = frame.len();
    frame.extend_from_slice(&[0; 8]);
    frame.extend_from_slice(&group.at.timestamp().to_le_bytes());
    frame.extend_from_slice(&group.at.timestamp_subsec_nanos().to_le_bytes());
    frame.extend_from_slice(&length(group.sends.len()).to_le_bytes());
    for (id, provider_message_id) in &group.sends {
        frame.extend_from_slice(id.0.as_bytes());
        match provider_message_id {
            Some(provider_message_id) => {
                frame.extend_from_slice(&length(provider_message_id.len()).to_le_bytes());
                frame.extend_from_slice(provider_message_id.as_bytes());
            }
            None => frame.extend_from_slice(&u32::MAX.to_le_bytes()),
        }
    }
    let payload = &frame[start + 8..];
    let header = [
        length(payload.len()).to_le_bytes(),
        crc32fast::hash(payload).to_le_bytes(),
    ];
    frame[start..start + 8].copy_from_slice(header.as_flattened());
}

/// A length as a frame stores it: no group, provider id or frame comes near 4 GiB.
fn length(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX - 1)
}

/// The sends of a segment's whole frames, up to the first frame that is cut short or damaged:
/// its append did not return, so its sends were still in flight.
fn decode(mut bytes: &[u8]) -> impl Iterator<Item = LoggedSend> + '_ {
    let mut frame: std::vec::IntoIter<LoggedSend> = Vec::new().into_iter();
    std::iter::from_fn(move || {
        loop {
            if let Some(send) = frame.next() {
                return Some(send);
            }
            frame = next_frame(&mut bytes)?.into_iter();
        }
    })
}

fn next_frame(bytes: &mut &[u8]) -> Option<Vec<LoggedSend>> {
    let len = usize::try_from(u32_at(bytes)?).ok()?;
    let crc = u32_at(bytes)?;
    let payload = take(bytes, len)?;
    if crc32fast::hash(payload) != crc {
        *bytes = &[];
        return None;
    }
    let mut payload = payload;
    let payload = &mut payload;
    let seconds = i64::from_le_bytes(take(payload, 8)?.try_into().ok()?);
    let nanoseconds = u32_at(payload)?;
    let at = DateTime::from_timestamp(seconds, nanoseconds)?;
    let count = u32_at(payload)?;
    let mut sends = Vec::new();
    for _ in 0..count {
        let id = uuid::Uuid::from_slice(take(payload, 16)?).ok()?;
        let provider_message_id = match u32_at(payload)? {
            u32::MAX => None,
            len => {
                Some(String::from_utf8(take(payload, usize::try_from(len).ok()?)?.to_vec()).ok()?)
            }
        };
        sends.push((MessageId(id), provider_message_id, at));
    }
    Some(sends)
}

fn take<'a>(bytes: &mut &'a [u8], len: usize) -> Option<&'a [u8]> {
    if bytes.len() < len {
        *bytes = &[];
        return None;
    }
    let (taken, rest) = bytes.split_at(len);
    *bytes = rest;
    Some(taken)
}

fn u32_at(bytes: &mut &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(take(bytes, 4)?.try_into().ok()?))
}

/// Records logged sends on their messages, each at the time its group was logged, in the
/// caller's transaction; their rows stay until [`forget`] (after the commit) or the sweep.
/// Sends whose message moved on meanwhile are taken as
/// [`super::messages::record_outcomes`] takes any send, so applying twice changes nothing.
pub async fn apply(tx: &mut Tx, groups: &[LoggedGroup]) -> Result<()> {
    let Some(latest) = groups.iter().map(|group| group.at).max() else {
        return Ok(());
    };
    let sends: Vec<_> = groups
        .iter()
        .flat_map(|group| {
            group
                .sends
                .iter()
                .map(|(id, provider_message_id)| (*id, provider_message_id.clone(), group.at))
        })
        .collect();
    record_sends(tx, sends, latest).await
}

/// Records those of the `logged` sends whose message's claim ran out (their lane died after
/// logging them, before applying them), so that the requeue that follows in the same
/// transaction does not send them again; their rows are swept afterwards. Returns how many.
pub async fn record_expired(
    tx: &mut Tx,
    logged: Vec<LoggedSend>,
    now: DateTime<Utc>,
) -> Result<usize> {
    if logged.is_empty() {
        return Ok(0);
    }
    let Conn::Sqlite(c) = tx.conn() else {
        return Ok(0);
    };
    let expired: HashSet<MessageId> = sqlx::query_scalar(
        "SELECT id FROM messages WHERE status = 'sending' AND lease_expires_at <= $1",
    )
    .bind(now)
    .fetch_all(&mut *c)
    .await?
    .into_iter()
    .collect();
    let recorded: Vec<LoggedSend> = logged
        .into_iter()
        .filter(|(id, _, _)| expired.contains(id))
        .collect();
    let count = recorded.len();
    apply(tx, &groups_by_time(recorded)).await?;
    Ok(count)
}

/// Sends as groups of one time each, in the order of their times.
fn groups_by_time(sends: impl IntoIterator<Item = LoggedSend>) -> Vec<LoggedGroup> {
    let mut by_time: BTreeMap<DateTime<Utc>, Vec<(MessageId, Option<String>)>> = BTreeMap::new();
    for (id, provider_message_id, at) in sends {
        by_time
            .entry(at)
            .or_default()
            .push((id, provider_message_id));
    }
    by_time
        .into_iter()
        .map(|(at, sends)| LoggedGroup { at, sends })
        .collect()
}

/// Deletes the segments no lane holds once none of their messages is still `sending` (applied
/// before their lane ended, or recorded by [`record_expired`]), and files whose making a crash
/// cut short. A segment of a message still `sending` is a dead lane's whose claims have not run
/// out yet, and waits for [`record_expired`]. Returns how many files it deleted.
pub async fn sweep(db: &Db) -> Result<u64> {
    let Some(log) = db.send_log() else {
        return Ok(0);
    };
    let mut deleted = 0;
    for (path, _held) in log.abandoned(MAKING)? {
        remove_if_there(&path)?;
        deleted += 1;
    }
    for (path, mut held) in log.abandoned(SEGMENT)? {
        let mut bytes = Vec::new();
        held.read_to_end(&mut bytes)?;
        let ids: Vec<MessageId> = decode(&bytes).map(|(id, _, _)| id).collect();
        let in_flight = {
            let mut conn = db.read().await?;
            any_sending(conn.conn(), &ids).await?
        };
        if !in_flight {
            remove_if_there(&path)?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// Whether any of `ids` is a message still `sending`.
async fn any_sending(conn: Conn<'_>, ids: &[MessageId]) -> Result<bool> {
    let Conn::Sqlite(c) = conn else {
        return Ok(false);
    };
    for chunk in ids.chunks(rows_per_statement(1)) {
        let mut select = SqlBuilder::new(
            "SELECT EXISTS (SELECT 1 FROM messages WHERE status = 'sending' AND id IN ",
        );
        select.bind_list(chunk.iter().map(|id| Param::Id(id.0)));
        select.push(")");
        let sending: bool = bind_params!(
            sqlx::query_scalar(super::sql::built(&select, &*c)),
            &select.params
        )
        .fetch_one(&mut *c)
        .await?;
        if sending {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(at: DateTime<Utc>, sends: &[(u128, Option<&str>)]) -> LoggedGroup {
        LoggedGroup {
            at,
            sends: sends
                .iter()
                .map(|(id, provider)| {
                    (
                        MessageId(uuid::Uuid::from_u128(*id)),
                        provider.map(str::to_owned),
                    )
                })
                .collect(),
        }
    }

    fn framed(groups: &[LoggedGroup]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for group in groups {
            encode(group, &mut bytes);
        }
        bytes
    }

    #[test]
    fn frames_give_back_each_send_with_its_group_time() {
        let first = DateTime::from_timestamp(1_790_000_000, 123_456_789).unwrap();
        let second = first + chrono::Duration::milliseconds(3);
        let groups = [
            group(first, &[(1, Some("wamid.1")), (2, None)]),
            group(second, &[(3, Some(""))]),
        ];
        let sends: Vec<_> = decode(&framed(&groups)).collect();
        let expected: Vec<LoggedSend> = groups
            .iter()
            .flat_map(|group| {
                group
                    .sends
                    .iter()
                    .map(|(id, provider)| (*id, provider.clone(), group.at))
            })
            .collect();
        assert_eq!(sends, expected);
    }

    #[test]
    fn a_frame_cut_short_or_damaged_ends_the_segment() {
        let at = DateTime::from_timestamp(1_790_000_000, 0).unwrap();
        let bytes = framed(&[group(at, &[(1, Some("a"))]), group(at, &[(2, Some("b"))])]);
        let whole = decode(&bytes).count();
        assert_eq!(whole, 2);
        // Every cut inside the second frame leaves the first whole frame only.
        let first_len = framed(&[group(at, &[(1, Some("a"))])]).len();
        for cut in first_len..bytes.len() {
            assert_eq!(decode(&bytes[..cut]).count(), 1, "cut at {cut}");
        }
        let mut damaged = bytes.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 0x20;
        assert_eq!(decode(&damaged).count(), 1);
        let mut zeroed = bytes;
        zeroed[first_len..].fill(0);
        assert_eq!(decode(&zeroed).count(), 1);
    }

    #[test]
    fn a_segment_is_held_while_its_lane_has_it_and_read_by_others() {
        let dir = tempfile::tempdir().unwrap();
        let log = SendLog::beside(&dir.path().join("herald.db")).unwrap();
        let at = DateTime::from_timestamp(1_790_000_000, 0).unwrap();
        let mut held = log.segment().unwrap();
        held.append(&group(at, &[(1, None)])).unwrap();
        let mut dropped = log.segment().unwrap();
        // A send logged again (a lane that lost its lease) keeps its first logging.
        dropped
            .append(&group(
                at + chrono::Duration::seconds(1),
                &[(1, Some("again")), (2, None)],
            ))
            .unwrap();
        drop(dropped);
        assert_eq!(
            log.read()
                .unwrap()
                .into_iter()
                .map(|(id, provider, _)| (id.0.as_u128(), provider))
                .collect::<Vec<_>>(),
            vec![(1, None), (2, None)]
        );
        let abandoned: Vec<PathBuf> = log
            .abandoned(SEGMENT)
            .unwrap()
            .into_iter()
            .map(|(path, _)| path)
            .collect();
        assert_eq!(abandoned.len(), 1, "only the dropped segment is free");
        assert_ne!(abandoned[0], held.path);
        held.discard().unwrap();
        assert_eq!(log.files(SEGMENT).unwrap(), abandoned);
    }
}
