//! Provider callbacks: a platform's request is verified and read by its sender's provider
//! module, and its events — like the sandbox's own reports — take one path into the store.
//! Their types and Herald's signature scheme are the domain's (`domain::callback`).

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};

use super::automations;
use crate::domain::callback::{CallbackEvent, SenderEvents};
use crate::domain::ids::{SenderId, WorkspaceId};
use crate::domain::phone::Phone;
use crate::providers::{self, CallbackError, CallbackRequest, CallbackSender};
use crate::store::contacts::{self, Contact, ContactFields};
use crate::store::messages::{NewInbound, StatusReport};
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
    Ok(ingestor
        .ingest(sender.workspace_id, batch, request.now)
        .await?)
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
    workspace: WorkspaceId,
    batch: SenderEvents,
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

    async fn ingest(
        &self,
        workspace: WorkspaceId,
        batch: SenderEvents,
        now: DateTime<Utc>,
    ) -> store::Result<Ingested> {
        let (answer, answered) = oneshot::channel();
        let job = Job {
            workspace,
            batch,
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
                    let ingested = ingest_for(&db, Some(job.workspace), &job.batch, job.now).await;
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
    let mut tx = db.begin().await?;
    let mut together = Together::default();
    let mut ingested = Vec::with_capacity(group.len());
    for job in group {
        let batch = &job.batch;
        ingested
            .push(ingest_in(&mut tx, Some(job.workspace), batch, job.now, &mut together).await?);
    }
    together.finish(&mut tx).await?;
    tx.commit().await?;
    Ok(ingested)
}

/// What callbacks committed together share: their workspaces' rules, read once, and the
/// rollup counts of their inbound messages, added once before the commit.
#[derive(Default)]
struct Together {
    rules: automations::RulesRead,
    received: Vec<store::analytics::Step>,
}

impl Together {
    async fn finish(self, tx: &mut store::Tx) -> store::Result<()> {
        store::analytics::add_steps(tx.conn(), &self.received).await
    }
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
    ingest_for(db, None, batch, now).await
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
    let mut together = Together::default();
    let ingested = ingest_in(&mut tx, None, batch, now, &mut together).await?;
    together.finish(&mut tx).await?;
    store::cursors::put(tx.conn(), batch.sender, cursors, now).await?;
    tx.commit().await?;
    Ok(ingested)
}

/// [`ingest`], for a sender whose workspace the caller already read (`None`: read it here).
async fn ingest_for(
    db: &Db,
    workspace: Option<WorkspaceId>,
    batch: &SenderEvents,
    now: DateTime<Utc>,
) -> store::Result<Ingested> {
    let mut tx = db.begin().await?;
    let mut together = Together::default();
    let ingested = ingest_in(&mut tx, workspace, batch, now, &mut together).await?;
    together.finish(&mut tx).await?;
    tx.commit().await?;
    Ok(ingested)
}

/// Applies one sender's events within `tx`; what it shares with the others of the commit is left
/// in `together`, to finish before the commit.
async fn ingest_in(
    tx: &mut store::Tx,
    workspace: Option<WorkspaceId>,
    batch: &SenderEvents,
    now: DateTime<Utc>,
    together: &mut Together,
) -> store::Result<Ingested> {
    let mut reports = Vec::new();
    let mut inbound = Vec::new();
    let mut consent = Vec::new();
    for event in &batch.events {
        match event {
            CallbackEvent::Status {
                reference,
                kind,
                at,
                error,
            } => reports.push(StatusReport {
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
            } => inbound.push(NewInbound {
                from,
                body,
                at: *at,
                name: name.as_deref(),
                id: id.as_deref(),
            }),
            CallbackEvent::OptOut { from, at } => consent.push((from.as_str(), Some(*at))),
            CallbackEvent::OptIn { from, at: _ } => consent.push((from.as_str(), None)),
        }
    }
    let mut replies_queued = 0;
    let mut inbound_recorded = 0;
    let parked = if reports.is_empty() {
        Vec::new()
    } else {
        store::messages::record_status_reports(tx, batch.sender, &reports, now).await?
    };
    if !inbound.is_empty() || !consent.is_empty() {
        // A sender deleted meanwhile has no workspace to record anything in.
        let workspace = match workspace {
            Some(workspace) => Some(workspace),
            None => match senders::get_unscoped(tx.conn(), batch.sender).await {
                Ok(sender) => Some(sender.workspace_id),
                Err(StoreError::NotFound) => None,
                Err(error) => return Err(error),
            },
        };
        if let Some(workspace) = workspace {
            for new in &inbound {
                let contact = ensure_contact(tx, workspace, new.from, new.name, now).await?;
                let recorded = store::messages::insert_inbound(
                    tx.conn(),
                    batch.sender,
                    new,
                    now,
                    &mut together.received,
                )
                .await?;
                // A message already recorded (delivered again) is not answered again.
                let Some(recorded) = recorded else { continue };
                inbound_recorded += 1;
                let answer = automations::answer(
                    tx.conn(),
                    batch.sender,
                    &recorded,
                    contact,
                    new,
                    &mut together.rules,
                    now,
                )
                .await?;
                replies_queued += usize::from(answer.is_some());
            }
            for (from, opted_out_at) in &consent {
                set_consent(tx, workspace, from, *opted_out_at, now).await?;
            }
        }
    }
    Ok(Ingested {
        statuses_applied: reports.len() - parked.len(),
        inbound_recorded,
        deferred: parked.len(),
        replies_queued,
    })
}

/// The contact who wrote: found by phone, or created with the name the platform gave (a number
/// that is no phone is recorded on the message alone).
async fn ensure_contact(
    tx: &mut store::Tx,
    workspace: WorkspaceId,
    from: &str,
    name: Option<&str>,
    now: DateTime<Utc>,
) -> store::Result<Option<Contact>> {
    let Ok(phone) = Phone::parse(from) else {
        return Ok(None);
    };
    if let Some(contact) = contacts::find_by_phone(tx.conn(), workspace, &phone).await? {
        return Ok(Some(contact));
    }
    let mut fields = ContactFields::new(phone);
    fields.name = name
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_owned);
    Ok(Some(contacts::insert(tx, workspace, &fields, now).await?))
}

/// Opts the contact with this phone out (`Some(since)`) or back in (`None`); a phone no
/// contact has changes nothing.
async fn set_consent(
    tx: &mut store::Tx,
    workspace: WorkspaceId,
    from: &str,
    opted_out_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> store::Result<()> {
    let Ok(phone) = Phone::parse(from) else {
        return Ok(());
    };
    if let Some(contact) = contacts::find_by_phone(tx.conn(), workspace, &phone).await? {
        contacts::set_opted_out(tx.conn(), workspace, contact.id, opted_out_at, now).await?;
    }
    Ok(())
}
