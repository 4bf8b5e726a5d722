//! A sender lane: the one task, in one process, that sends for a sender.
//!
//! Each turn passes the gates of DESIGN.md with nothing claimed — send window, spacing (rate
//! limit, shift interval, provider holds) — then, in one short transaction, reserves from the
//! daily cap and claims exactly what it will send now. Claiming is the start of a send: it only
//! takes messages of running campaigns, so a pause or cancel stops new sends at once. Then it
//! renders, shows typing, sends (many in flight when nothing spaces the sends), and records the
//! outcomes in one transaction. No transaction or pooled connection is held while it waits or
//! sends.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use futures::StreamExt;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::Shared;
use super::pacing::{
    Pacer, local_day, next_local_midnight, spaces_sends, to_chrono, typing_delay, warmup_day,
    window_opens_at,
};
use super::render::{CampaignCache, CompiledCampaign, ContactIndex, render};
use super::retry::{Next, after_failure};
use crate::domain::ids::{CampaignId, MessageId, SenderId};
use crate::domain::template::Template;
use crate::providers::{self, Outbound, Provider, SendError};
use crate::store::messages::{Claimed, Outcome};
use crate::store::senders::Sender;
use crate::store::{self, StoreError};

/// Why a lane stopped.
#[derive(Debug, thiserror::Error)]
pub enum LaneError {
    #[error("the lease was taken over")]
    LeaseLost,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("sender's provider: {0}")]
    Provider(#[from] providers::ProviderConfigError),
}

/// Tries to record a batch's outcomes before the lane gives up (and the claims expire).
const RECORD_ATTEMPTS: u32 = 5;

/// What a claim got: messages (claimed, then rendered into a [`Batch`]), or nothing for now.
enum Claim<Messages = Batch> {
    Messages(Messages),
    /// The daily cap is spent until this instant.
    CapSpentUntil(DateTime<Utc>),
}

/// Claimed messages, rendered: those ready to send, and those that failed to render.
struct Batch {
    ready: Vec<Prepared>,
    failed: Vec<(MessageId, Outcome)>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.ready.is_empty() && self.failed.is_empty()
    }
}

/// Whether the lane goes on after a turn, or exits (idle for long enough).
#[derive(Debug, PartialEq)]
enum AfterTurn {
    Continue,
    Exit,
}

/// Outcomes of sends that happened and are not recorded yet.
struct Unrecorded {
    outcomes: Vec<(MessageId, Outcome)>,
    started_at: DateTime<Utc>,
    finished_at: DateTime<Utc>,
}

struct Prepared {
    id: MessageId,
    to: String,
    body: String,
    media_url: Option<String>,
    attempts: i64,
}

pub(super) struct Lane {
    shared: Arc<Shared>,
    sender: Sender,
    tz: Tz,
    provider: Arc<dyn Provider>,
    pacer: Pacer,
    rng: StdRng,
    campaigns: CampaignCache,
    renew_at: DateTime<Utc>,
    idle_since: Option<DateTime<Utc>>,
    /// The last batch's outcomes, recorded while the next batch is sent: the database and the
    /// provider work at the same time instead of taking turns.
    unrecorded: Option<Unrecorded>,
    /// The next batch, claimed and rendered while the last one was sent. Its sends have
    /// started (a claim is the start of a send), so it is sent even when the lane stops.
    claimed_ahead: Option<Result<Claim, LaneError>>,
}

impl Lane {
    pub(super) async fn start(
        shared: Arc<Shared>,
        sender: SenderId,
        last_send_at: Option<DateTime<Utc>>,
    ) -> Result<Self, LaneError> {
        let sender = {
            let mut conn = shared.db.read().await?;
            store::senders::get_unscoped(conn.conn(), sender).await?
        };
        let mut rng = StdRng::from_rng(&mut rand::rng());
        let provider = providers::build(
            &sender.provider,
            &sender.provider_config.0,
            &shared.providers.for_sender(sender.id),
        )?;
        let pacer = Pacer::new(
            sender.pacing(),
            shared.clock.clone(),
            last_send_at,
            &mut rng,
        );
        let tz = sender.timezone.parse().unwrap_or(chrono_tz::UTC);
        let renew_at = shared.clock.now() + to_chrono(shared.config.lease / 3);
        Ok(Self {
            shared,
            sender,
            tz,
            provider,
            pacer,
            rng,
            campaigns: CampaignCache::default(),
            renew_at,
            idle_since: None,
            unrecorded: None,
            claimed_ahead: None,
        })
    }

    pub(super) fn sender_id(&self) -> SenderId {
        self.sender.id
    }

    fn now(&self) -> DateTime<Utc> {
        self.shared.clock.now()
    }

    /// Sends until there is nothing left (or shutdown), then records what it sent last.
    pub(super) async fn run(&mut self) -> Result<(), LaneError> {
        let sent = self.send_while_there_is_work().await;
        let recorded = self.record_unrecorded().await;
        sent.and(recorded.map_err(LaneError::from))
    }

    async fn send_while_there_is_work(&mut self) -> Result<(), LaneError> {
        loop {
            if let Some(ahead) = self.claimed_ahead.take() {
                // Claimed while the last batch was sent, its gates passed then.
                if self.take_turn(ahead?, false).await? == AfterTurn::Exit {
                    return Ok(());
                }
                continue;
            }
            if self.shared.is_shutting_down() {
                return Ok(());
            }
            self.keep_lease().await?;
            let now = self.now();
            let spaced = spaces_sends(self.pacer.pacing());
            if spaced {
                // Paced sends are recorded one by one, before the lane waits for the next.
                self.record_unrecorded().await?;
            }
            if let Some(opens) = self.window_opens_at(now) {
                tracing::debug!(sender_id = %self.sender.id, %opens, "send window closed");
                self.record_unrecorded().await?;
                self.wait_until(opens).await?;
                continue;
            }
            if spaced && let Some(at) = self.pacer.next_send_at() {
                self.wait_until(at).await?;
                continue;
            }
            let wanted = if spaced {
                1
            } else {
                self.shared.config.batch_size
            };
            let claim = self.claim(wanted).await?;
            if self.take_turn(claim, spaced).await? == AfterTurn::Exit {
                return Ok(());
            }
        }
    }

    /// Sends a claimed batch, or waits when there was nothing to claim.
    async fn take_turn(&mut self, claim: Claim, spaced: bool) -> Result<AfterTurn, LaneError> {
        let now = self.now();
        match claim {
            Claim::CapSpentUntil(until) => {
                tracing::info!(sender_id = %self.sender.id, %until, "daily cap reached");
                self.record_unrecorded().await?;
                self.wait_until(until).await?;
            }
            Claim::Messages(batch) if batch.is_empty() => {
                self.record_unrecorded().await?;
                let idle_since = *self.idle_since.get_or_insert(now);
                if now - idle_since >= to_chrono(self.shared.config.idle_exit) {
                    return Ok(AfterTurn::Exit);
                }
                self.wait_until(now + to_chrono(self.shared.config.tick))
                    .await?;
            }
            Claim::Messages(batch) => {
                self.idle_since = None;
                self.send(batch, spaced).await?;
            }
        }
        Ok(AfterTurn::Continue)
    }

    /// When the send window opens next, if it is closed at `now`.
    fn window_opens_at(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.pacer
            .pacing()
            .send_window
            .as_ref()
            .and_then(|w| window_opens_at(w, self.tz, now))
    }

    /// Whether the next batch may be claimed while this one is sent: only when nothing would
    /// come between the two batches — no spacing, no closed window, no lease renewal (which may
    /// bring new settings), no shutdown.
    fn may_claim_ahead(&self, spaced: bool) -> bool {
        let now = self.now();
        !spaced
            && !self.shared.is_shutting_down()
            && now < self.renew_at
            && self.window_opens_at(now).is_none()
    }

    /// Claims up to `wanted` messages and renders them.
    async fn claim(&mut self, wanted: u32) -> Result<Claim, LaneError> {
        match self.claim_messages(wanted).await? {
            Claim::Messages(claimed) => Ok(Claim::Messages(self.render(claimed).await?)),
            Claim::CapSpentUntil(until) => Ok(Claim::CapSpentUntil(until)),
        }
    }

    /// Reserves from today's cap and claims up to that many messages, in one transaction.
    async fn claim_messages(&self, wanted: u32) -> Result<Claim<Vec<Claimed>>, LaneError> {
        let now = self.now();
        let pacing = self.pacer.pacing();
        let day = local_day(now, self.tz);
        let cap = pacing
            .daily_cap(warmup_day(self.sender.warmup_started_on, day))
            .map(i64::from);
        let lease_until = now + to_chrono(self.shared.config.claim_lease);
        let mut tx = self.shared.db.begin().await?;
        let granted = match cap {
            Some(_) => {
                store::usage::reserve(
                    &mut tx,
                    self.sender.workspace_id,
                    self.sender.id,
                    day,
                    i64::from(wanted),
                    cap,
                )
                .await?
            }
            None => i64::from(wanted),
        };
        if granted == 0 {
            return Ok(Claim::CapSpentUntil(next_local_midnight(now, self.tz)));
        }
        let claimed =
            store::messages::claim(&mut tx, self.sender.id, now, lease_until, granted as u32)
                .await?;
        let unused = granted - claimed.len() as i64;
        if cap.is_some() && unused > 0 {
            store::usage::release(tx.conn(), self.sender.id, day, unused).await?;
        }
        tx.commit().await?;
        Ok(Claim::Messages(claimed))
    }

    async fn send(&mut self, batch: Batch, spaced: bool) -> Result<(), LaneError> {
        let Batch {
            ready: prepared,
            failed: mut outcomes,
        } = batch;
        let started_at = self.now();
        if spaced {
            self.pacer.sent(&mut self.rng);
            if let Some(message) = prepared.first() {
                let delay = typing_delay(self.pacer.pacing(), message.body.chars().count());
                if !delay.is_zero() {
                    if let Err(error) = self.provider.typing(&message.to).await {
                        tracing::debug!(%error, "typing indicator failed");
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        }
        let provider = self.provider.clone();
        let sending = futures::stream::iter(prepared)
            .map(|message| {
                let provider = provider.clone();
                async move {
                    let outbound = Outbound {
                        id: message.id,
                        to: &message.to,
                        body: &message.body,
                        media_url: message.media_url.as_deref(),
                    };
                    let result = provider.send(&outbound).await;
                    (message.id, message.attempts, result)
                }
            })
            .buffer_unordered(self.shared.config.concurrency)
            .collect::<Vec<_>>();
        let previous = self.unrecorded.take();
        let claim_ahead = self.may_claim_ahead(spaced);
        let wanted = self.shared.config.batch_size;
        // While the provider works, the database does too: the last batch is recorded and the
        // next one claimed and rendered.
        let database_work = async {
            self.record_with_retries(previous).await?;
            if claim_ahead {
                self.claimed_ahead = Some(self.claim(wanted).await);
            }
            Ok::<(), StoreError>(())
        };
        let (results, recorded) = tokio::join!(sending, database_work);
        let now = self.now();
        for (id, attempts, result) in results {
            outcomes.push((id, self.outcome(result, attempts, now)));
        }
        // Kept before an error returns, so that the lane's exit still records these sends.
        self.unrecorded = Some(Unrecorded {
            outcomes,
            started_at,
            finished_at: now,
        });
        recorded?;
        if spaced {
            self.record_unrecorded().await?;
        }
        Ok(())
    }

    async fn record_unrecorded(&mut self) -> Result<(), StoreError> {
        let unrecorded = self.unrecorded.take();
        self.record_with_retries(unrecorded).await
    }

    /// These sends happened: a passing store error must not leave them claimed, to be sent
    /// again when their lease runs out.
    async fn record_with_retries(&self, unrecorded: Option<Unrecorded>) -> Result<(), StoreError> {
        let Some(batch) = unrecorded else {
            return Ok(());
        };
        let mut attempt = 0;
        loop {
            match self
                .record(&batch.outcomes, batch.started_at, batch.finished_at)
                .await
            {
                Ok(()) => return Ok(()),
                Err(error) if attempt < RECORD_ATTEMPTS => {
                    attempt += 1;
                    tracing::warn!(sender_id = %self.sender.id, %error, attempt, "recording sends failed; trying again");
                    tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn record(
        &self,
        outcomes: &[(MessageId, Outcome)],
        started_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.shared.db.begin().await?;
        store::messages::record_outcomes(&mut tx, outcomes, now).await?;
        store::lanes::record_send(tx.conn(), self.sender.id, &self.shared.owner, started_at)
            .await?;
        tx.commit().await
    }

    fn outcome(
        &mut self,
        result: Result<providers::Accepted, SendError>,
        attempts: i64,
        now: DateTime<Utc>,
    ) -> Outcome {
        let error = match result {
            Ok(accepted) => {
                return Outcome::Sent {
                    provider_message_id: accepted.provider_message_id,
                };
            }
            Err(error) => error,
        };
        if let SendError::Retryable {
            after,
            throttled: true,
            ..
        } = &error
        {
            let hold = after.unwrap_or(Duration::from_secs(30));
            self.pacer.hold_until(now + to_chrono(hold));
            tracing::warn!(sender_id = %self.sender.id, ?hold, "provider throttled the sender");
        }
        match after_failure(
            &error,
            attempts,
            self.shared.config.retry_base,
            &mut self.rng,
        ) {
            Next::RetryIn(wait) => Outcome::Retry {
                not_before: now + to_chrono(wait),
                error: error.to_string(),
            },
            Next::GiveUp => Outcome::Failed {
                error: error.to_string(),
            },
        }
    }

    /// Renders a batch; messages that cannot be rendered fail with the reason.
    async fn render(&mut self, batch: Vec<Claimed>) -> Result<Batch, LaneError> {
        let missing: HashSet<CampaignId> = batch
            .iter()
            .filter_map(|m| m.campaign_id)
            .filter(|id| self.campaigns.get(id).is_none())
            .collect();
        let contact_ids: Vec<_> = batch
            .iter()
            .filter(|m| m.campaign_id.is_some())
            .filter_map(|m| m.contact_id)
            .collect();
        let contacts: ContactIndex = {
            let mut conn = self.shared.db.read().await?;
            for id in missing {
                let campaign = store::campaigns::get_unscoped(conn.conn(), id).await?;
                let compiled = CompiledCampaign {
                    template: Template::parse(&campaign.content),
                    variables: campaign.variables.0,
                    media_url: campaign.media_url,
                };
                self.campaigns.insert(id, compiled);
            }
            store::contacts::render_fields(conn.conn(), &contact_ids)
                .await?
                .into_iter()
                .map(|c| (c.id, c))
                .collect()
        };
        let mut prepared = Vec::with_capacity(batch.len());
        let mut failed = Vec::new();
        for message in batch {
            let (body, media_url) = match (message.campaign_id, message.body) {
                (None, body) => (body.unwrap_or_default(), message.media_url),
                (Some(campaign), _) => {
                    let compiled = self.campaigns.get(&campaign).ok_or(StoreError::NotFound)?;
                    let contact = message.contact_id.and_then(|id| contacts.get(&id));
                    let mut body = String::new();
                    if let Err(error) = render(&compiled, contact, &mut body) {
                        failed.push((message.id, Outcome::Failed { error }));
                        continue;
                    }
                    (
                        body,
                        message.media_url.or_else(|| compiled.media_url.clone()),
                    )
                }
            };
            prepared.push(Prepared {
                id: message.id,
                to: message.phone,
                body,
                media_url,
                attempts: message.attempts,
            });
        }
        Ok(Batch {
            ready: prepared,
            failed,
        })
    }

    /// Renews the lease when due, and picks up changed sender settings then.
    async fn keep_lease(&mut self) -> Result<(), LaneError> {
        let now = self.now();
        if now < self.renew_at {
            return Ok(());
        }
        let until = now + to_chrono(self.shared.config.lease);
        let mut conn = self.shared.db.write().await?;
        if !store::lanes::renew(conn.conn(), self.sender.id, &self.shared.owner, until).await? {
            return Err(LaneError::LeaseLost);
        }
        drop(conn);
        self.renew_at = now + to_chrono(self.shared.config.lease / 3);
        let fresh = {
            let mut conn = self.shared.db.read().await?;
            store::senders::get_unscoped(conn.conn(), self.sender.id).await?
        };
        if fresh.updated_at != self.sender.updated_at {
            tracing::info!(sender_id = %fresh.id, "sender settings changed");
            self.provider = providers::build(
                &fresh.provider,
                &fresh.provider_config.0,
                &self.shared.providers.for_sender(fresh.id),
            )?;
            self.pacer = Pacer::new(
                fresh.pacing(),
                self.shared.clock.clone(),
                Some(now),
                &mut self.rng,
            );
            self.tz = fresh.timezone.parse().unwrap_or(chrono_tz::UTC);
            self.sender = fresh;
        }
        Ok(())
    }

    /// Waits until `until`, renewing the lease meanwhile; returns early on shutdown.
    async fn wait_until(&mut self, until: DateTime<Utc>) -> Result<(), LaneError> {
        loop {
            let now = self.now();
            if now >= until || self.shared.is_shutting_down() {
                return Ok(());
            }
            let step = (until - now)
                .min(self.renew_at - now)
                .max(chrono::Duration::milliseconds(1));
            let mut shutdown = self.shared.shutdown.clone();
            tokio::select! {
                () = tokio::time::sleep(step.to_std().unwrap_or(Duration::from_millis(1))) => {}
                _ = shutdown.changed() => return Ok(()),
            }
            self.keep_lease().await?;
        }
    }

    pub(super) async fn release(&self) {
        let now = self.now();
        let released = async {
            let mut conn = self.shared.db.write().await?;
            store::lanes::release(conn.conn(), self.sender.id, &self.shared.owner, now).await
        };
        if let Err(error) = released.await {
            tracing::warn!(sender_id = %self.sender.id, %error, "could not release the lane's lease");
        }
    }
}
