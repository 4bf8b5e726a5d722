//! Provider callbacks: a platform's request is verified and read by its sender's provider
//! module, and its events — like the sandbox's own reports — take one path into the store.
//! Their types and Herald's signature scheme are the domain's (`domain::callback`).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};

use super::automations;
use crate::domain::callback::{CallbackEvent, SenderEvents};
use crate::domain::ids::{ContactId, SenderId, WorkspaceId};
use crate::domain::phone::Phone;
use crate::providers::{self, CallbackError, CallbackRequest, CallbackSender};
use crate::store::contacts::{self, Contact, ContactFields};
use crate::store::messages::{Arrival, NewInbound, StatusReport};
use crate::store::senders::{self, Sender};
use crate::store::{self, Db, StoreError};

/// Why a callback was not taken.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// No sender has this id: refused like a bad signature, so ids cannot be probed.
    #[error("no such sender")]
    UnknownSender,
    /// The sender's provider module refused the request.
    #[error("{error}")]
    Provider {
        sender: SenderId,
        error: CallbackError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

async fn addressed(db: &Db, sender: SenderId) -> Result<Sender, Refused> {
    let mut conn = db.read().await?;
    match senders::get_unscoped(conn.conn(), sender).await {
        Ok(sender) => Ok(sender),
        Err(StoreError::NotFound) => Err(Refused::UnknownSender),
        Err(error) => Err(error.into()),
    }
}

/// What a sender's callbacks are checked against: Herald's secret and the platform's settings.
fn addressee(sender: &Sender) -> CallbackSender<'_> {
    CallbackSender {
        callback_secret: &sender.callback_secret,
        config: &sender.provider_config.0,
    }
}

/// A platform's callback for `sender`: verified and read by the sender's provider module, then
/// ingested. Durable before it returns (invariant 7): a report that overtook the record of its
/// send is parked in the same transaction.
pub async fn receive(
    ingestor: &Ingestor,
    sender: SenderId,
    request: &CallbackRequest<'_>,
) -> Result<Ingested, Refused> {
    let sender = addressed(&ingestor.db, sender).await?;
    let module = providers::module_of(sender.provider);
    let addressee = addressee(&sender);
    let refused = |error| Refused::Provider {
        sender: sender.id,
        error,
    };
    module
        .verify_callback(request, &addressee)
        .map_err(refused)?;
    let events = module.parse_callback(request.body).map_err(refused)?;
    let batch = SenderEvents::new(sender.id, events);
    Ok(ingestor.ingest(batch, request.now).await?)
}

/// Callbacks that arrive together are committed together: each waits for the commit that
/// holds its events (so it is durable before it is answered, invariant 7), and many share it,
/// instead of each taking the database's writer for a transaction of its own.
#[derive(Clone)]
pub struct Ingestor {
    db: Db,
    queue: mpsc::Sender<Job>,
}

struct Job {
    batch: SenderEvents,
    numbers: Vec<Number>,
    now: DateTime<Utc>,
    answer: oneshot::Sender<store::Result<Ingested>>,
}

/// Callbacks one commit holds at most.
const CALLBACKS_PER_COMMIT: usize = 64;

impl Ingestor {
    /// Starts the task that commits callbacks on `db`; it stops when the last handle is gone.
    pub fn start(db: Db) -> Self {
        let (queue, jobs) = mpsc::channel(CALLBACKS_PER_COMMIT * 16);
        tokio::spawn(commit_in_groups(db.clone(), jobs));
        Self { db, queue }
    }

    async fn ingest(&self, batch: SenderEvents, now: DateTime<Utc>) -> store::Result<Ingested> {
        let (answer, answered) = oneshot::channel();
        // Read here, by the request's own task, rather than by the task that commits for all.
        let numbers = Number::all_of(&batch);
        let job = Job {
            batch,
            numbers,
            now,
            answer,
        };
        // The task ends only with the process: a closed queue is a database being closed.
        let closed = || StoreError::Database(sqlx::Error::PoolClosed);
        self.queue.send(job).await.map_err(|_| closed())?;
        answered.await.map_err(|_| closed())?
    }
}

async fn commit_in_groups(db: Db, mut jobs: mpsc::Receiver<Job>) {
    while let Some(first) = jobs.recv().await {
        let mut group = vec![first];
        while group.len() < CALLBACKS_PER_COMMIT {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        match commit_together(&db, &group).await {
            Ok(ingested) => {
                for (job, ingested) in group.into_iter().zip(ingested) {
                    let _ = job.answer.send(Ok(ingested));
                }
            }
            // One callback's failure (a deadlock on PostgreSQL, a constraint) must not fail
            // the others: each is tried again on its own.
            Err(_) if group.len() > 1 => {
                for job in group {
                    let ingested = ingest(&db, &job.batch, job.now).await;
                    let _ = job.answer.send(ingested);
                }
            }
            Err(error) => {
                if let Some(job) = group.pop() {
                    let _ = job.answer.send(Err(error));
                }
            }
        }
    }
}

async fn commit_together(db: &Db, group: &[Job]) -> store::Result<Vec<Ingested>> {
    let callbacks: Vec<Taken> = group
        .iter()
        .map(|job| Taken {
            batch: &job.batch,
            numbers: &job.numbers,
            now: job.now,
        })
        .collect();
    let mut tx = db.begin().await?;
    let ingested = ingest_in(&mut tx, &callbacks).await?;
    tx.commit().await?;
    Ok(ingested)
}

/// A platform's `GET` verification of its webhook: the challenge to answer with.
pub async fn challenge(
    db: &Db,
    sender: SenderId,
    request: &CallbackRequest<'_>,
) -> Result<String, Refused> {
    let sender = addressed(db, sender).await?;
    let module = providers::module_of(sender.provider);
    let addressee = addressee(&sender);
    module
        .challenge(request, &addressee)
        .map_err(|error| Refused::Provider {
            sender: sender.id,
            error,
        })
}

/// What ingesting a batch did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ingested {
    pub statuses_applied: usize,
    pub inbound_recorded: usize,
    /// Status reports that named no message yet: parked in the database, applied once the
    /// send they report on is recorded.
    pub deferred: usize,
    /// Automatic replies queued for the sender's lane to send.
    pub replies_queued: usize,
}

/// Applies one sender's events in one transaction: statuses move messages forward (and their
/// campaign's counters), reports about sends not recorded yet are parked, inbound messages are
/// recorded. When it returns, all of it is durable.
#[tracing::instrument(name = "callback", skip_all, fields(sender_id = %batch.sender, events = batch.events.len()))]
pub async fn ingest(db: &Db, batch: &SenderEvents, now: DateTime<Utc>) -> store::Result<Ingested> {
    let mut tx = db.begin().await?;
    let ingested = ingest_one(&mut tx, batch, now).await?;
    tx.commit().await?;
    Ok(ingested)
}

/// Stores what a poll of `batch.sender`'s platform brought and where it left off, in one
/// transaction: a crash before the commit polls the same again, one after it finds the cursors.
pub async fn ingest_polled(
    db: &Db,
    batch: &SenderEvents,
    cursors: &[(String, String)],
    now: DateTime<Utc>,
) -> store::Result<Ingested> {
    let mut tx = db.begin().await?;
    let ingested = ingest_one(&mut tx, batch, now).await?;
    store::cursors::put(tx.conn(), batch.sender, cursors, now).await?;
    tx.commit().await?;
    Ok(ingested)
}

async fn ingest_one(
    tx: &mut store::Tx,
    batch: &SenderEvents,
    now: DateTime<Utc>,
) -> store::Result<Ingested> {
    let numbers = Number::all_of(batch);
    let taken = Taken {
        batch,
        numbers: &numbers,
        now,
    };
    let mut ingested = ingest_in(tx, &[taken]).await?;
    Ok(ingested.pop().unwrap_or_default())
}

/// A callback's events and when it was taken in.
struct Taken<'a> {
    batch: &'a SenderEvents,
    /// The numbers of its inbound messages, in order.
    numbers: &'a [Number],
    now: DateTime<Utc>,
}

/// The number an inbound message came from.
struct Number {
    /// The number, when it is a phone.
    phone: Option<Phone>,
    /// The number as the message records it: E.164 when it is a phone, else as written.
    stored: String,
}

impl Number {
    /// The numbers of `batch`'s inbound messages, in order, each parsed once: a phone number's
    /// parse is the dearest step of an inbound message.
    fn all_of(batch: &SenderEvents) -> Vec<Self> {
        batch
            .events
            .iter()
            .filter_map(|event| match event {
                CallbackEvent::Inbound { from, .. } => Some(from),
                _ => None,
            })
            .map(|from| {
                let phone = Phone::parse(from).ok();
                let stored = phone
                    .as_ref()
                    .map_or_else(|| from.trim().to_owned(), |phone| phone.as_str().to_owned());
                Self { phone, stored }
            })
            .collect()
    }
}

/// A callback's events by kind, each kind in the order the platform gave.
#[derive(Default)]
struct Sorted<'a> {
    reports: Vec<StatusReport>,
    inbound: Vec<NewInbound<'a>>,
    /// Opt-outs (`Some(since)`) and opt-ins (`None`) the platform reported.
    consent: Vec<(&'a str, Option<DateTime<Utc>>)>,
}

impl<'a> Sorted<'a> {
    fn of(batch: &'a SenderEvents) -> Self {
        let mut sorted = Self::default();
        for event in &batch.events {
            match event {
                CallbackEvent::Status {
                    reference,
                    kind,
                    at,
                    error,
                } => sorted.reports.push(StatusReport {
                    reference: reference.clone(),
                    event: kind.event(*at),
                    error: error.clone(),
                }),
                CallbackEvent::Inbound {
                    from,
                    body,
                    at,
                    name,
                    id,
                } => sorted.inbound.push(NewInbound {
                    from,
                    body,
                    at: *at,
                    name: name.as_deref(),
                    id: id.as_deref(),
                }),
                CallbackEvent::OptOut { from, at } => sorted.consent.push((from, Some(*at))),
                CallbackEvent::OptIn { from, at: _ } => sorted.consent.push((from, None)),
            }
        }
        sorted
    }
}

/// Applies callbacks' events within `tx`, in a few statements for all of their inbound messages
/// whatever their number. Each callback's inbound messages are answered in order, each seeing
/// the consent the ones before it left, and then its opt-outs and opt-ins are applied, before
/// the next callback's messages are answered. The log holds the group's `message.received`
/// events first, then what each answer appended: all were received before any was answered.
async fn ingest_in(tx: &mut store::Tx, callbacks: &[Taken<'_>]) -> store::Result<Vec<Ingested>> {
    let sorted: Vec<Sorted> = callbacks
        .iter()
        .map(|taken| Sorted::of(taken.batch))
        .collect();
    let mut ingested = vec![Ingested::default(); callbacks.len()];
    for ((taken, sorted), ingested) in callbacks.iter().zip(&sorted).zip(&mut ingested) {
        if sorted.reports.is_empty() {
            continue;
        }
        let parked = store::messages::record_status_reports(
            tx,
            taken.batch.sender,
            &sorted.reports,
            taken.now,
        )
        .await?;
        ingested.statuses_applied = sorted.reports.len() - parked.len();
        ingested.deferred = parked.len();
    }

    // A sender deleted meanwhile has no workspace to record anything in.
    let mut workspaces: HashMap<SenderId, Option<WorkspaceId>> = HashMap::new();
    for (taken, sorted) in callbacks.iter().zip(&sorted) {
        let sender = taken.batch.sender;
        if (sorted.inbound.is_empty() && sorted.consent.is_empty())
            || workspaces.contains_key(&sender)
        {
            continue;
        }
        let workspace = match senders::get_unscoped(tx.conn(), sender).await {
            Ok(sender) => Some(sender.workspace_id),
            Err(StoreError::NotFound) => None,
            Err(error) => return Err(error),
        };
        workspaces.insert(sender, workspace);
    }
    let mut writers = Vec::new();
    for (index, (taken, sorted)) in callbacks.iter().zip(&sorted).enumerate() {
        let sender = taken.batch.sender;
        let Some(Some(workspace)) = workspaces.get(&sender) else {
            continue;
        };
        writers.extend(
            sorted
                .inbound
                .iter()
                .zip(taken.numbers)
                .map(|(message, number)| Writer {
                    callback: index,
                    sender,
                    workspace: *workspace,
                    number,
                    message,
                    now: taken.now,
                }),
        );
    }
    let mut people = People::of(tx, &writers).await?;
    let arrivals: Vec<Arrival> = writers
        .iter()
        .map(|writer| Arrival {
            sender: writer.sender,
            workspace: writer.workspace,
            contact: writer
                .number
                .phone
                .as_ref()
                .and_then(|phone| people.id_of(writer.workspace, phone)),
            phone: &writer.number.stored,
            message: writer.message,
            now: writer.now,
        })
        .collect();
    let mut received = Vec::with_capacity(arrivals.len());
    let recorded = store::messages::insert_inbound(tx.conn(), &arrivals, &mut received).await?;

    let mut rules = automations::RulesRead::default();
    let mut answering = writers.iter().zip(recorded).peekable();
    for (index, (taken, sorted)) in callbacks.iter().zip(&sorted).enumerate() {
        let sender = taken.batch.sender;
        while let Some((writer, recorded)) =
            answering.next_if(|(writer, _)| writer.callback == index)
        {
            // A message already recorded (delivered again) is not answered again.
            let Some(recorded) = recorded else { continue };
            ingested[index].inbound_recorded += 1;
            let contact = people.get_mut(recorded.workspace, &recorded.phone);
            let answer = automations::answer(
                tx.conn(),
                sender,
                &recorded,
                contact,
                writer.message,
                &mut rules,
                taken.now,
            )
            .await?;
            ingested[index].replies_queued += usize::from(answer.is_some());
        }
        if let Some(Some(workspace)) = workspaces.get(&sender) {
            for (from, opted_out_at) in &sorted.consent {
                set_consent(tx, *workspace, from, *opted_out_at, taken.now, &mut people).await?;
            }
        }
    }
    store::analytics::add_steps(tx.conn(), &received).await?;
    Ok(ingested)
}

/// An inbound message of a callback, with the workspace it is recorded in.
struct Writer<'a> {
    /// The callback's place in its group.
    callback: usize,
    sender: SenderId,
    workspace: WorkspaceId,
    number: &'a Number,
    message: &'a NewInbound<'a>,
    now: DateTime<Utc>,
}

/// The contacts who wrote, by workspace and phone, as answering their messages leaves them.
struct People(HashMap<(WorkspaceId, String), Contact>);

impl People {
    /// Finds the contact of each writer whose number is a phone, creating the missing ones with
    /// the name the platform gave with their first message (a number that is no phone is
    /// recorded on the message alone).
    async fn of(tx: &mut store::Tx, writers: &[Writer<'_>]) -> store::Result<Self> {
        let mut wanted: HashMap<WorkspaceId, Vec<(&Phone, Option<&str>)>> = HashMap::new();
        let mut seen = HashSet::new();
        for writer in writers {
            let Some(phone) = &writer.number.phone else {
                continue;
            };
            if seen.insert((writer.workspace, phone.as_str())) {
                wanted
                    .entry(writer.workspace)
                    .or_default()
                    .push((phone, writer.message.name));
            }
        }
        let mut people = HashMap::with_capacity(seen.len());
        for (workspace, wanted) in wanted {
            let phones: Vec<&str> = wanted.iter().map(|(phone, _)| phone.as_str()).collect();
            let mut found = contacts::find_by_phones(tx.conn(), workspace, &phones).await?;
            let known: HashSet<&str> = found.iter().map(|contact| contact.phone.as_str()).collect();
            let fresh: Vec<ContactFields> = wanted
                .iter()
                .filter(|(phone, _)| !known.contains(phone.as_str()))
                .map(|(phone, name)| {
                    let mut fields = ContactFields::new((*phone).clone());
                    fields.name = name
                        .map(str::trim)
                        .filter(|name| !name.is_empty())
                        .map(str::to_owned);
                    fields
                })
                .collect();
            if !fresh.is_empty() {
                let now = writers
                    .iter()
                    .map(|writer| writer.now)
                    .max()
                    .unwrap_or_default();
                contacts::insert_new_batch(tx, workspace, &fresh, now).await?;
                let phones: Vec<&str> = fresh
                    .iter()
                    .filter_map(|fields| fields.phone.as_ref().map(Phone::as_str))
                    .collect();
                found.extend(contacts::find_by_phones(tx.conn(), workspace, &phones).await?);
            }
            people.extend(
                found
                    .into_iter()
                    .map(|contact| ((workspace, contact.phone.clone()), contact)),
            );
        }
        Ok(Self(people))
    }

    fn id_of(&self, workspace: WorkspaceId, phone: &Phone) -> Option<ContactId> {
        self.0
            .get(&(workspace, phone.as_str().to_owned()))
            .map(|contact| contact.id)
    }

    fn get_mut(&mut self, workspace: WorkspaceId, phone: &str) -> Option<&mut Contact> {
        self.0.get_mut(&(workspace, phone.to_owned()))
    }

    /// Keeps a contact as a change left it.
    fn update(&mut self, contact: Contact) {
        let key = (contact.workspace_id, contact.phone.clone());
        if let Some(known) = self.0.get_mut(&key) {
            *known = contact;
        }
    }
}

/// Opts the contact with this phone out (`Some(since)`) or back in (`None`); a phone no
/// contact has changes nothing.
async fn set_consent(
    tx: &mut store::Tx,
    workspace: WorkspaceId,
    from: &str,
    opted_out_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    people: &mut People,
) -> store::Result<()> {
    let Ok(phone) = Phone::parse(from) else {
        return Ok(());
    };
    if let Some(contact) = contacts::find_by_phone(tx.conn(), workspace, &phone).await? {
        let contact =
            contacts::set_opted_out(tx.conn(), workspace, contact.id, opted_out_at, now).await?;
        people.update(contact);
    }
    Ok(())
}
