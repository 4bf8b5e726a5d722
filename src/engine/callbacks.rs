//! Provider callbacks applied: HTTP callbacks and the sandbox's own reports take this one path
//! into the store. Their types and Herald's signature scheme are the domain's
//! (`domain::callback`).

use chrono::{DateTime, Utc};

pub use crate::domain::callback::{
    CallbackEvent, CallbackPayload, SIGNATURE_TOLERANCE_SECONDS, SenderEvents, SignatureError,
    StatusKind, sign, verify_signature,
};
use crate::store::messages::StatusReport;
use crate::store::{self, Db};

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
