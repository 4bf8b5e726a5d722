//! Provider callbacks: a platform's request is verified and read by its sender's provider
//! module, and its events — like the sandbox's own reports — take one path into the store.
//! Their types and Herald's signature scheme are the domain's (`domain::callback`).

use chrono::{DateTime, Utc};

use crate::domain::callback::{CallbackEvent, SenderEvents};
use crate::domain::ids::SenderId;
use crate::providers::{self, CallbackError, CallbackRequest, CallbackSender};
use crate::store::messages::StatusReport;
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

/// A platform's callback for `sender`: verified and read by the sender's provider module, then
/// ingested. Durable before it returns (invariant 7): a report that overtook the record of its
/// send is parked in the same transaction.
pub async fn receive(
    db: &Db,
    sender: SenderId,
    request: &CallbackRequest<'_>,
) -> Result<Ingested, Refused> {
    let sender = addressed(db, sender).await?;
    let module = providers::module_of(sender.provider);
    let addressee = CallbackSender {
        callback_secret: &sender.callback_secret,
        config: &sender.provider_config.0,
    };
    let refused = |error| Refused::Provider {
        sender: sender.id,
        error,
    };
    module
        .verify_callback(request, &addressee)
        .map_err(refused)?;
    let events = module.parse_callback(request.body).map_err(refused)?;
    let batch = SenderEvents::new(sender.id, events);
    Ok(ingest(db, &batch, request.now).await?)
}

/// A platform's `GET` verification of its webhook: the challenge to answer with.
pub async fn challenge(
    db: &Db,
    sender: SenderId,
    request: &CallbackRequest<'_>,
) -> Result<String, Refused> {
    let sender = addressed(db, sender).await?;
    let module = providers::module_of(sender.provider);
    let addressee = CallbackSender {
        callback_secret: &sender.callback_secret,
        config: &sender.provider_config.0,
    };
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
}

/// Applies one sender's events in one transaction: statuses move messages forward (and their
/// campaign's counters), reports about sends not recorded yet are parked, inbound messages are
/// recorded. When it returns, all of it is durable.
#[tracing::instrument(name = "callback", skip_all, fields(sender_id = %batch.sender, events = batch.events.len()))]
pub async fn ingest(db: &Db, batch: &SenderEvents, now: DateTime<Utc>) -> store::Result<Ingested> {
    let mut reports = Vec::new();
    let mut inbound = Vec::new();
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
            CallbackEvent::Inbound { from, body, at } => {
                inbound.push((from.as_str(), body.as_str(), *at))
            }
        }
    }
    let mut tx = db.begin().await?;
    let parked =
        store::messages::record_status_reports(&mut tx, batch.sender, &reports, now).await?;
    for (from, body, at) in &inbound {
        store::messages::insert_inbound(tx.conn(), batch.sender, from, body, *at, now).await?;
    }
    tx.commit().await?;
    Ok(Ingested {
        statuses_applied: reports.len() - parked.len(),
        inbound_recorded: inbound.len(),
        deferred: parked.len(),
    })
}
