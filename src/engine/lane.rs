//! A sender lane: the one task, in one process, that sends for a sender.
//!
//! Each turn passes the gates of DESIGN.md with nothing claimed — send window, spacing (rate
//! limit, shift interval, provider holds) — then, in one short transaction, reserves from the
//! daily cap and claims exactly what it will send now. Claiming is the start of a send: it only
//! takes messages of running campaigns, so a pause or cancel stops new sends at once. Then it
//! renders, shows typing, sends (many in flight when nothing spaces the sends), and records each
//! outcome as it arrives: a recorder commits whatever has completed while the next sends are out,
//! and a send's slot is given back only once its outcome is committed. So at any instant the sends
//! that happened but are not recorded are at most the lane's concurrency, and that bounds what a
//! `kill -9` can repeat (invariant 1). On SQLite, plain sends are committed to a log of sends
//! (`store::logged_sends`: one `write` per group, to a file of the lane's own) and
//! applied to their messages in bulk a few times a second, on a task of their own that neither
//! the sends nor the next batch wait for; the requeue of a dead lane's claims records what it
//! logged. No transaction or pooled connection is held while it waits or sends.
//!
//! The lane is fenced by its lease: every claim checks, in its own transaction, that this process
//! still holds the sender, and while a batch is out a heartbeat renews the lease at least every
//! second (paced sends check it with each record). A lane that has lost its lease starts no
//! further send, gives back the messages it claimed and did not start, and stops.
//!
//! Consent withdrawn after a claim (STOP, an opt-out or block through the API) skips the lane's
//! messages to that contact that have not started: the lane hears it at once, from this process
//! or, on PostgreSQL, from another when it commits (`store::withdrawals`), and checks each such
//! message at its turn; on PostgreSQL a batch claimed ahead is also checked against the database
//! first, for what is heard late (a listening connection being opened again).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use futures::StreamExt;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tracing::Instrument;

use super::Shared;
use super::pacing::{
    Pacer, local_day, next_local_midnight, spaces_sends, to_chrono, typing_delay, warmup_day,
    window_opens_at,
};
use super::retry::{Next, after_failure};
use crate::domain::ids::{CampaignId, ContactId, MessageId, SenderId};
use crate::domain::template::Template;
use crate::domain::whatsapp::RenderedWhatsApp;
use crate::metrics::{self, Gate};
use crate::providers::{self, Outbound, Provider, SendError};
use crate::render::{CampaignCache, CompiledCampaign, ContactIndex, render};
use crate::store::logged_sends::{LoggedGroup, Segment, SendLog};
use crate::store::messages::{Claimed, HeldClaim, Outcome};
use crate::store::senders::Sender;
use crate::store::withdrawals::{self, Subscription};
use crate::store::{self, Dialect, StoreError};

/// Why a lane stopped.
#[derive(Debug, thiserror::Error)]
pub enum LaneError {
    #[error("the lease was taken over")]
    LeaseLost,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("sender's provider: {0}")]
    Provider(#[from] providers::ProviderConfigError),
    /// The sender's stored settings cannot be used as they are.
    #[error("the sender's settings: {0}")]
    Settings(String),
    /// The provider refused the sender itself (its credentials, its account).
    #[error("the provider refuses the sender: {0}")]
    SenderUnusable(String),
}

/// WhatsApp's customer-service window: free-form messages reach a person this long after their
/// last message to the number.
const CUSTOMER_SERVICE_WINDOW_HOURS: i64 = 24;
/// How long a typing indicator shows, at most: WhatsApp's lasts 25 seconds, so a longer typing
/// delay shows it again.
const TYPING_SHOWN_FOR: Duration = Duration::from_secs(20);
/// The reason a message skipped for it carries (API.md).
const OUTSIDE_CUSTOMER_SERVICE_WINDOW: &str = "outside_customer_service_window";

/// A sender row that cannot be read as it is stored (a time zone or window time that does not
/// parse) is the sender's settings' fault: its campaigns are paused with the reason.
fn unusable_settings(error: StoreError) -> LaneError {
    match error {
        StoreError::Corrupt(reason) => LaneError::Settings(reason),
        other => other.into(),
    }
}

/// What a claim got: messages (claimed, then rendered into a [`Batch`]), or nothing for now.
enum Claim<Messages = Batch> {
    Messages(Messages),
    /// The daily cap is spent until this instant.
    CapSpentUntil(DateTime<Utc>),
}

/// Claimed messages, rendered: those ready to send, and those that failed to render.
struct Batch {
    ready: Vec<Prepared>,
    failed: Vec<(HeldClaim, Outcome)>,
    /// Until when the claims hold, unless the lane renews them.
    claims_until: DateTime<Utc>,
    /// The local day whose cap the claim reserved from (none when nothing caps the sender):
    /// what is not sent after all is given back to it.
    reserved_on: Option<NaiveDate>,
}

impl Prepared {
    fn claim(&self) -> HeldClaim {
        HeldClaim {
            id: self.id,
            attempt: self.attempts,
        }
    }
}

/// The claims of a batch's messages, rendered or not.
fn claims_of(ready: &[Prepared], failed: &[(HeldClaim, Outcome)]) -> Vec<HeldClaim> {
    ready
        .iter()
        .map(Prepared::claim)
        .chain(failed.iter().map(|(claim, _)| *claim))
        .collect()
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

struct Prepared {
    id: MessageId,
    /// `None` for a single message.
    campaign_id: Option<CampaignId>,
    /// The contact a campaign message goes to: one that withdraws its consent gets no more of
    /// them. `None` for a single message (a STOP's confirmation goes to an opted-out contact).
    campaign_contact: Option<ContactId>,
    to: String,
    body: String,
    media_url: Option<String>,
    /// The template approved at Meta, rendered, for providers that send templates.
    whatsapp: Option<RenderedWhatsApp>,
    attempts: i64,
    /// The local day whose cap its claim reserved a send from.
    reserved_on: Option<NaiveDate>,
}

/// One claimed message's end, as the recorder receives it.
struct Completion {
    claim: HeldClaim,
    end: End,
    /// When its send started (the lane's last send time, for the gap after a restart).
    started_at: DateTime<Utc>,
    /// The day whose cap reserved a send this message did not make after all (handed back,
    /// or skipped at its turn), given back with its record.
    unreserve: Option<NaiveDate>,
    /// The send's slot: held until the outcome is committed, so unrecorded sends never exceed
    /// the lane's concurrency.
    _slot: Option<OwnedSemaphorePermit>,
}

/// A message to send, with the slot it holds until its outcome is committed.
struct Start {
    message: Prepared,
    slot: Option<OwnedSemaphorePermit>,
}

enum End {
    /// The send happened (or failed); this is what to record.
    Outcome(Outcome),
    /// Never sent: the lane lost its lease before this message's turn.
    Unsent,
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
    /// Signalled when this sender gets work that should not wait for the next look.
    work: Arc<Notify>,
    /// Messages claimed at once: the configured batch, or fewer when the provider's timeout
    /// would let a batch outlive its claims (see [`batch_limit`]).
    batch_size: u32,
    /// The next batch, claimed and rendered while the last one was sent. A lane that stops
    /// sending hands it back to the queue.
    claimed_ahead: Option<Result<Claim, LaneError>>,
    /// Set when the lane is to give its sender up: its process stops, or holds more than its
    /// share of the senders with work.
    leave: watch::Receiver<bool>,
    /// Consent withdrawn in this process since the lane last held no claim.
    consent: Subscription,
    /// Sends logged as they completed and not yet applied to their messages.
    logged: Logged,
}

impl Lane {
    pub(super) async fn start(
        shared: Arc<Shared>,
        sender: SenderId,
        last_send_at: Option<DateTime<Utc>>,
        leave: watch::Receiver<bool>,
    ) -> Result<Self, LaneError> {
        let sender = {
            let mut conn = shared.db.read().await?;
            store::senders::get_unscoped(conn.conn(), sender)
                .await
                .map_err(unusable_settings)?
        };
        let mut rng = StdRng::from_rng(&mut rand::rng());
        let provider = providers::build(
            sender.provider,
            &sender.provider_config.0,
            &shared.providers.for_sender(sender.id),
        )?;
        let pacer = Pacer::new(
            sender.pacing(),
            shared.clock.clone(),
            last_send_at,
            &mut rng,
        );
        let tz = sender.tz();
        let renew_at = shared.clock.now() + to_chrono(shared.config.lease / 3);
        let batch_size = batch_limit(&shared.config, provider.send_timeout());
        let work = shared.wakeups.lane(sender.id);
        let consent = withdrawals::subscribe();
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
            work,
            batch_size,
            claimed_ahead: None,
            leave,
            consent,
            logged: Logged::default(),
        })
    }

    fn now(&self) -> DateTime<Utc> {
        self.shared.clock.now()
    }

    /// Whether the lane is to stop sending and give its sender up (see [`Lane::leave`]).
    fn leaving(&self) -> bool {
        self.shared.is_shutting_down() || *self.leave.borrow()
    }

    /// Sends until there is nothing left, the lane is to leave, or the lease is lost. Every send
    /// it made is recorded before it returns.
    pub(super) async fn run(&mut self) -> Result<(), LaneError> {
        let ran = self.send_while_there_is_work().await;
        self.hand_back_claimed_ahead().await;
        if let Err(error) = self.logged.apply_all(&self.shared, self.sender.id).await {
            // They are durable: the requeue records them when their claims run out.
            tracing::warn!(sender_id = %self.sender.id, %error, "logged sends not applied; they are recorded when their claims run out");
        }
        ran
    }

    /// A lane that stops (it leaves, its lease is lost, its store fails) does not send the batch
    /// it claimed ahead: those messages go back to the queue at once instead of waiting for their
    /// claims to expire, for the sender's next lane, here or in another process.
    async fn hand_back_claimed_ahead(&mut self) {
        let Some(Ok(Claim::Messages(batch))) = self.claimed_ahead.take() else {
            return;
        };
        self.hand_back(&claims_of(&batch.ready, &batch.failed))
            .await;
        // Its render failures and window skips were given back when it was rendered.
        self.give_back_reservation(batch.reserved_on, batch.ready.len())
            .await;
    }

    /// Gives `unsent` claimed sends back to the day's cap they were reserved from: a message
    /// skipped, failed before sending or handed back is no send. Logged, never fatal: the cap
    /// then errs on the side of sending less.
    async fn give_back_reservation(&self, reserved_on: Option<NaiveDate>, unsent: usize) {
        let Some(day) = reserved_on.filter(|_| unsent > 0) else {
            return;
        };
        let given_back = async {
            let mut conn = self.shared.db.write().await?;
            store::usage::release(conn.conn(), self.sender.id, day, unsent as i64).await
        };
        if let Err(error) = given_back.await {
            tracing::warn!(sender_id = %self.sender.id, %error, "unsent reservations not given back");
        }
    }

    /// Hands claimed messages that were never sent back to the queue at once, instead of
    /// leaving them to wait for their claims to expire.
    async fn hand_back(&self, claims: &[HeldClaim]) {
        let now = self.now();
        let handed_back = async {
            let mut conn = self.shared.db.write().await?;
            store::messages::release_unsent(conn.conn(), claims, now).await
        };
        match handed_back.await {
            Ok(()) => {
                tracing::info!(sender_id = %self.sender.id, released = claims.len(), "claimed messages handed back unsent")
            }
            // Their claims expire and they are sent then.
            Err(error) => {
                tracing::warn!(sender_id = %self.sender.id, %error, "claimed messages not handed back")
            }
        }
    }

    async fn send_while_there_is_work(&mut self) -> Result<(), LaneError> {
        loop {
            if self.leaving() {
                return Ok(());
            }
            // A batch claimed ahead was claimed unpaced, and its gates passed then.
            let after = if self.claimed_ahead.is_none() && spaces_sends(self.pacer.pacing()) {
                self.send_paced().await?
            } else {
                self.unpaced_turn().await?
            };
            if after == AfterTurn::Exit {
                return Ok(());
            }
        }
    }

    /// With nothing spacing the sends: claims a whole batch and sends it, many in flight.
    async fn unpaced_turn(&mut self) -> Result<AfterTurn, LaneError> {
        if let Some(ahead) = self.claimed_ahead.take() {
            // One process on SQLite hears every withdrawal (`withdrawals`); PostgreSQL's
            // others are asked of the database.
            let ahead = match self.shared.db.dialect() {
                Dialect::Sqlite => ahead?,
                Dialect::Postgres => self.without_withdrawn_consent(ahead?).await?,
            };
            return self.take_turn(ahead).await;
        }
        self.keep_lease().await?;
        if self.wait_for_the_window().await? {
            return Ok(AfterTurn::Continue);
        }
        // Nothing is held: what was withdrawn until now cannot be in the claim.
        self.consent.forget();
        let claim = self.claim(self.batch_size).await?;
        self.take_turn(claim).await
    }

    /// Waits for the send window when it is closed; says whether it waited (the lane then looks
    /// at its gates again).
    async fn wait_for_the_window(&mut self) -> Result<bool, LaneError> {
        let now = self.now();
        let Some(opens) = self.window_opens_at(now) else {
            return Ok(false);
        };
        tracing::debug!(sender_id = %self.sender.id, %opens, "send window closed");
        metrics::lane_waits(Gate::Window, opens - now);
        self.wait_until(opens).await?;
        Ok(true)
    }

    /// Sends a claimed batch, or waits when there was nothing to claim.
    async fn take_turn(&mut self, claim: Claim) -> Result<AfterTurn, LaneError> {
        match claim {
            Claim::CapSpentUntil(until) => self.wait_for_the_cap(until).await?,
            Claim::Messages(batch) if batch.is_empty() => return self.idle().await,
            Claim::Messages(batch) => {
                self.idle_since = None;
                self.send(batch).await?;
            }
        }
        Ok(AfterTurn::Continue)
    }

    async fn wait_for_the_cap(&mut self, until: DateTime<Utc>) -> Result<(), LaneError> {
        tracing::info!(sender_id = %self.sender.id, %until, "daily cap reached");
        metrics::lane_waits(Gate::DailyCap, until - self.now());
        self.wait_until(until).await
    }

    /// Nothing to send: waits a tick for work, or exits when idle for long enough.
    async fn idle(&mut self) -> Result<AfterTurn, LaneError> {
        let now = self.now();
        let idle_since = *self.idle_since.get_or_insert(now);
        if now - idle_since >= to_chrono(self.shared.config.idle_exit) {
            return Ok(AfterTurn::Exit);
        }
        // New work (an automatic reply) ends the wait at once.
        let work = self.work.clone();
        self.wait(now + to_chrono(self.shared.config.tick), Some(&work))
            .await?;
        Ok(AfterTurn::Continue)
    }

    /// Paced sends start one at a time as the gates allow, each claimed just before it starts,
    /// and the next does not wait for the last one's answer: the provider's latency does not
    /// bound the pace (Meta's 80 a second at 30 ms a request needs about three sends out at
    /// once). Outcomes are recorded as they complete, as for a batch. The pipeline lasts while
    /// the sender's settings stay as they were; every send it started is recorded before it
    /// returns.
    async fn send_paced(&mut self) -> Result<AfterTurn, LaneError> {
        // Nothing is held when a pipeline starts.
        self.consent.forget();
        let slots = Arc::new(Semaphore::new(self.shared.config.concurrency.max(1)));
        let stop = Stop::holding_claims_until(self.now(), self.leave.clone());
        let (to_start, mut starts) = mpsc::unbounded_channel::<Start>();
        let (completed, completions) = mpsc::unbounded_channel();
        let shared = self.shared.clone();
        let consent = self.consent.clone();
        let sending = send_all(
            &shared,
            self.provider.clone(),
            metrics::provider_latency(self.sender.provider.as_str()),
            futures::stream::poll_fn(move |cx| starts.poll_recv(cx)),
            &stop,
            &consent,
            completed.clone(),
        );
        // A paced lane records each outcome in full (it logs none), and so first what the
        // lane logged before.
        let mut logged = std::mem::take(&mut self.logged);
        let recording = record_as_completed(
            &shared,
            self.sender.id,
            completions,
            HashSet::new(),
            &stop,
            Recording::Spaced,
            &mut logged,
        );
        // Ending, the turns drop their ends of both channels: the sends out finish, then their
        // records.
        let turns = self.paced_turns(&stop, &slots, to_start, completed);
        let (after, (), recorded) = tokio::join!(turns, sending, recording);
        self.logged = logged;
        recorded?;
        self.hold_if_throttled(&stop);
        stop.ended()?;
        after
    }

    /// The turns of [`Lane::send_paced`]: gates, a slot, a claim of one message, typing, and
    /// its start.
    async fn paced_turns(
        &mut self,
        stop: &Stop,
        slots: &Arc<Semaphore>,
        to_start: mpsc::UnboundedSender<Start>,
        completed: mpsc::UnboundedSender<Completion>,
    ) -> Result<AfterTurn, LaneError> {
        let settings = self.sender.updated_at;
        loop {
            if self.leaving() || !stop.sending_allowed() {
                return Ok(AfterTurn::Continue);
            }
            self.keep_lease().await?;
            if self.sender.updated_at != settings {
                // Another provider or pacing: a new pipeline, or batches.
                return Ok(AfterTurn::Continue);
            }
            self.hold_if_throttled(stop);
            if self.wait_for_the_window().await? {
                continue;
            }
            if let Some(at) = self.pacer.next_send_at() {
                metrics::lane_waits(Gate::Spacing, at - self.now());
                self.wait_until(at).await?;
                continue;
            }
            // Claiming starts the send: a claim waits for a free slot, not the other way round.
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return Ok(AfterTurn::Continue);
            };
            match self.claim(1).await? {
                Claim::CapSpentUntil(until) => self.wait_for_the_cap(until).await?,
                Claim::Messages(batch) if batch.is_empty() => {
                    if self.idle().await? == AfterTurn::Exit {
                        return Ok(AfterTurn::Exit);
                    }
                }
                Claim::Messages(batch) => {
                    self.idle_since = None;
                    self.start_paced(batch, slot, stop, &to_start, &completed)
                        .await?;
                }
            }
        }
    }

    /// Starts a paced send: the gap before the next is drawn, "typing…" shows for its typing
    /// delay, and the message goes to the senders. What was skipped or failed to render is
    /// recorded without a send.
    async fn start_paced(
        &mut self,
        batch: Batch,
        slot: OwnedSemaphorePermit,
        stop: &Stop,
        to_start: &mpsc::UnboundedSender<Start>,
        completed: &mpsc::UnboundedSender<Completion>,
    ) -> Result<(), LaneError> {
        let Batch {
            ready,
            failed,
            claims_until,
            reserved_on,
        } = batch;
        record_unsent(completed, failed, self.now());
        // One message is claimed at a time; skipped or failed, it leaves nothing to send.
        let Some(message) = ready.into_iter().next() else {
            return Ok(());
        };
        self.pacer.sent(&mut self.rng);
        let claims_until = match self.type_before_sending(&message, claims_until).await {
            Ok(until) => until,
            Err(error) => {
                // Nothing was sent: the claim goes back to the queue at once.
                self.hand_back(&[message.claim()]).await;
                self.give_back_reservation(reserved_on, 1).await;
                return Err(error);
            }
        };
        stop.claims_renewed(claims_until);
        // The senders run until this end of the channel is dropped: it cannot be closed here.
        let _ = to_start.send(Start {
            message,
            slot: Some(slot),
        });
        Ok(())
    }

    /// Shows "typing…" for `message`'s typing delay, when the sender's pacing has one; returns
    /// until when the message's claim then holds.
    async fn type_before_sending(
        &mut self,
        message: &Prepared,
        claims_until: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, LaneError> {
        let started_at = self.now();
        let delay = to_chrono(typing_delay(
            self.pacer.pacing(),
            message.body.chars().count(),
        ));
        if delay.is_zero() {
            return Ok(claims_until);
        }
        metrics::lane_waits(Gate::Typing, delay);
        let typed_at = started_at + delay;
        let claims_until = self
            .keep_claim_while_typing(message.claim(), typed_at, claims_until)
            .await?;
        let answering = self.typing_answers(&message.to).await?;
        // Renewing the lane's lease meanwhile: typing may outlast it. The indicator is shown
        // again while a long delay outlasts it.
        loop {
            // An indicator the provider is slow to take never holds the send past its delay.
            tokio::select! {
                shown = self.provider.typing(&message.to, answering.as_deref()) => {
                    if let Err(error) = shown {
                        tracing::debug!(%error, "typing indicator failed");
                    }
                }
                () = self.shared.clock.sleep_until(typed_at) => {}
            }
            let until = typed_at.min(self.now() + to_chrono(TYPING_SHOWN_FOR));
            self.wait_until(until).await?;
            if until >= typed_at || self.leaving() {
                return Ok(claims_until);
            }
        }
    }

    /// What a typing indicator to `to` answers: the platform's id of the person's last message
    /// within the customer-service window, where the provider shows one only in answer
    /// (WhatsApp). `None` where it has no indicator, or nothing to answer.
    async fn typing_answers(&self, to: &str) -> Result<Option<String>, LaneError> {
        let capabilities = providers::module_of(self.sender.provider).capabilities();
        if !capabilities.typing_indicator {
            return Ok(None);
        }
        let since = self.now() - chrono::Duration::hours(CUSTOMER_SERVICE_WINDOW_HOURS);
        let mut conn = self.shared.db.read().await?;
        Ok(store::conversations::last_inbound_id(conn.conn(), self.sender.id, to, since).await?)
    }

    /// A provider that asked the sender to slow down (HTTP 429) holds its next sends.
    fn hold_if_throttled(&mut self, stop: &Stop) {
        if let Some(until) = stop.throttled_until()
            && self.pacer.hold_until(until)
        {
            tracing::warn!(sender_id = %self.sender.id, %until, "provider throttled the sender");
            metrics::lane_waits(Gate::Throttled, until - self.now());
        }
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
    /// come between the two batches — no closed window, no lease renewal (which may
    /// bring new settings), no leaving.
    fn may_claim_ahead(&self) -> bool {
        let now = self.now();
        !self.leaving() && now < self.renew_at && self.window_opens_at(now).is_none()
    }

    /// Claims up to `wanted` messages and renders them.
    async fn claim(&mut self, wanted: u32) -> Result<Claim, LaneError> {
        match self.claim_messages(wanted).await? {
            Claim::Messages((claimed, claims_until, reserved_on)) => Ok(Claim::Messages(
                self.render(claimed, claims_until, reserved_on).await?,
            )),
            Claim::CapSpentUntil(until) => Ok(Claim::CapSpentUntil(until)),
        }
    }

    /// Reserves from today's cap and claims up to that many messages, in one transaction;
    /// returns them with the instant their claims run out.
    async fn claim_messages(
        &self,
        wanted: u32,
    ) -> Result<Claim<(Vec<Claimed>, DateTime<Utc>, Option<NaiveDate>)>, LaneError> {
        let now = self.now();
        let pacing = self.pacer.pacing();
        let day = local_day(now, self.tz);
        let cap = pacing
            .daily_cap(warmup_day(self.sender.warmup_started_on, day))
            .map(i64::from);
        let lease_until = now + to_chrono(self.shared.config.claim_lease);
        let mut tx = self.shared.db.begin().await?;
        // The fence: a lane whose lease another process took claims nothing more.
        if !store::lanes::holds(tx.conn(), self.sender.id, &self.shared.owner, now).await? {
            tracing::warn!(sender_id = %self.sender.id, "lane lost its lease; it claims nothing more");
            return Err(LaneError::LeaseLost);
        }
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
        Ok(Claim::Messages((claimed, lease_until, cap.map(|_| day))))
    }

    /// Sends a batch, many in flight, while the next one is claimed and rendered.
    async fn send(&mut self, batch: Batch) -> Result<(), LaneError> {
        let Batch {
            ready,
            failed,
            claims_until,
            reserved_on: _,
        } = batch;
        let started_at = self.now();
        let stop = Stop::holding_claims_until(claims_until, self.leave.clone());
        let unrecorded: HashSet<HeldClaim> = ready.iter().map(Prepared::claim).collect();
        let (completed, completions) = mpsc::unbounded_channel();
        record_unsent(&completed, failed, started_at);
        let shared = self.shared.clone();
        let slots = Arc::new(Semaphore::new(shared.config.concurrency.max(1)));
        // Each send takes a slot before it starts, in the batch's order.
        let starts = futures::stream::iter(ready).then(move |message| {
            let slots = slots.clone();
            async move {
                let slot = slots.acquire_owned().await.ok();
                Start { message, slot }
            }
        });
        let consent = self.consent.clone();
        let sending = send_all(
            &shared,
            self.provider.clone(),
            metrics::provider_latency(self.sender.provider.as_str()),
            starts,
            &stop,
            &consent,
            completed,
        );
        let claim_ahead = self.may_claim_ahead();
        let (claiming, claim_under_way) = watch::channel(claim_ahead);
        let mut logged = std::mem::take(&mut self.logged);
        let recording = record_as_completed(
            &shared,
            self.sender.id,
            completions,
            unrecorded,
            &stop,
            Recording::Batch { claim_under_way },
            &mut logged,
        );
        let wanted = self.batch_size;
        // While the provider works, the next batch is claimed and rendered.
        let ahead = async {
            if claim_ahead {
                self.claimed_ahead = Some(self.claim(wanted).await);
            }
            drop(claiming);
        };
        let ((), recorded, ()) = tokio::join!(sending, recording, ahead);
        self.logged = logged;
        recorded?;
        // The logged sends ride along into the next batch, applied while it is out; with none
        // ahead, they are applied now.
        if !matches!(&self.claimed_ahead, Some(Ok(Claim::Messages(next))) if !next.is_empty()) {
            self.logged.apply_all(&shared, self.sender.id).await?;
        }
        self.hold_if_throttled(&stop);
        stop.ended()
    }

    /// The person sees "typing…" while the message is claimed: a typing delay that would end
    /// too near the claim's end extends the claim, so the send still starts in time and the
    /// message is not claimed again meanwhile. Returns until when the claim then holds.
    async fn keep_claim_while_typing(
        &self,
        claim: HeldClaim,
        typed_at: DateTime<Utc>,
        claims_until: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, LaneError> {
        let margin = start_margin(&self.shared.config, self.provider.send_timeout());
        if typed_at + margin < claims_until {
            return Ok(claims_until);
        }
        let until = typed_at + to_chrono(self.shared.config.claim_lease);
        let mut conn = self.shared.db.write().await?;
        store::messages::renew_claims(conn.conn(), &[claim], until).await?;
        Ok(until)
    }

    /// Renders a batch; messages that cannot be rendered fail with the reason.
    async fn render(
        &mut self,
        batch: Vec<Claimed>,
        claims_until: DateTime<Utc>,
        reserved_on: Option<NaiveDate>,
    ) -> Result<Batch, LaneError> {
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
                    whatsapp: campaign.whatsapp.map(|part| {
                        part.0
                            .compile("whatsapp")
                            .map_err(|errors| errors.to_string())
                    }),
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
            let (body, media_url, whatsapp) = match (message.campaign_id, message.body) {
                (None, body) => (
                    body.unwrap_or_default(),
                    message.media_url,
                    message.whatsapp.map(|part| part.0),
                ),
                (Some(campaign), _) => {
                    let compiled = self.campaigns.get(&campaign).ok_or(StoreError::NotFound)?;
                    let contact = message.contact_id.and_then(|id| contacts.get(&id));
                    let mut body = String::new();
                    let whatsapp = match render(&compiled, contact, &mut body) {
                        Ok(whatsapp) => whatsapp,
                        Err(error) => {
                            let claim = HeldClaim {
                                id: message.id,
                                attempt: message.attempts,
                            };
                            failed.push((claim, Outcome::Failed { error }));
                            continue;
                        }
                    };
                    (
                        body,
                        message.media_url.or_else(|| compiled.media_url.clone()),
                        whatsapp,
                    )
                }
            };
            prepared.push(Prepared {
                id: message.id,
                campaign_id: message.campaign_id,
                campaign_contact: message.contact_id.filter(|_| message.campaign_id.is_some()),
                to: message.phone,
                body,
                media_url,
                whatsapp,
                attempts: message.attempts,
                reserved_on,
            });
        }
        let prepared = self.within_window(prepared, &mut failed).await?;
        // Skipped or failed before sending: none of them takes a send from today's cap.
        self.give_back_reservation(reserved_on, failed.len()).await;
        Ok(Batch {
            ready: prepared,
            failed,
            claims_until,
            reserved_on,
        })
    }

    /// Where the platform keeps a customer-service window (WhatsApp: 24 hours since the
    /// person's last message), free-form messages to people outside it are skipped with the
    /// reason, never sent; templates always go.
    async fn within_window(
        &self,
        prepared: Vec<Prepared>,
        unsent: &mut Vec<(HeldClaim, Outcome)>,
    ) -> Result<Vec<Prepared>, LaneError> {
        // Most providers keep no window: their batches pass untouched, with nothing collected.
        let capabilities = providers::module_of(self.sender.provider).capabilities();
        if !capabilities.customer_service_window {
            return Ok(prepared);
        }
        let free_form: Vec<&str> = prepared
            .iter()
            .filter(|message| message.whatsapp.is_none())
            .map(|message| message.to.as_str())
            .collect();
        if free_form.is_empty() {
            return Ok(prepared);
        }
        let since = self.now() - chrono::Duration::hours(CUSTOMER_SERVICE_WINDOW_HOURS);
        let open = {
            let mut conn = self.shared.db.read().await?;
            store::conversations::wrote_since(conn.conn(), self.sender.id, &free_form, since)
                .await?
        };
        let (ready, outside): (Vec<_>, Vec<_>) = prepared
            .into_iter()
            .partition(|message| message.whatsapp.is_some() || open.contains(&message.to));
        unsent.extend(outside.into_iter().map(|message| {
            let reason = OUTSIDE_CUSTOMER_SERVICE_WINDOW.to_owned();
            (message.claim(), Outcome::Skipped { reason })
        }));
        Ok(ready)
    }

    /// A batch claimed ahead was claimed while the last one was sent: consent withdrawn since,
    /// in another process too, skips its messages to those contacts (reason `opted_out` or
    /// `blocked`) before any of it starts.
    async fn without_withdrawn_consent(&self, claim: Claim) -> Result<Claim, LaneError> {
        let Claim::Messages(mut batch) = claim else {
            return Ok(claim);
        };
        let contacts: Vec<ContactId> = batch
            .ready
            .iter()
            .filter_map(|message| message.campaign_contact)
            .collect();
        let withdrawn: HashMap<ContactId, &'static str> = {
            let mut conn = self.shared.db.read().await?;
            store::contacts::withdrawn(conn.conn(), &contacts, false)
                .await?
                .into_iter()
                .collect()
        };
        if withdrawn.is_empty() {
            return Ok(Claim::Messages(batch));
        }
        let (skipped, ready): (Vec<_>, Vec<_>) = batch.ready.into_iter().partition(|message| {
            message
                .campaign_contact
                .is_some_and(|contact| withdrawn.contains_key(&contact))
        });
        self.give_back_reservation(batch.reserved_on, skipped.len())
            .await;
        batch.failed.extend(skipped.into_iter().map(|message| {
            let reason = message
                .campaign_contact
                .and_then(|contact| withdrawn.get(&contact))
                .map_or("opted_out", |reason| *reason);
            let skipped = Outcome::Skipped {
                reason: reason.to_owned(),
            };
            (message.claim(), skipped)
        }));
        batch.ready = ready;
        Ok(Claim::Messages(batch))
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
            store::senders::get_unscoped(conn.conn(), self.sender.id)
                .await
                .map_err(unusable_settings)?
        };
        if fresh.updated_at != self.sender.updated_at {
            tracing::info!(sender_id = %fresh.id, "sender settings changed");
            self.provider = providers::build(
                fresh.provider,
                &fresh.provider_config.0,
                &self.shared.providers.for_sender(fresh.id),
            )?;
            self.pacer = Pacer::new(
                fresh.pacing(),
                self.shared.clock.clone(),
                Some(now),
                &mut self.rng,
            );
            self.tz = fresh.tz();
            self.sender = fresh;
        }
        Ok(())
    }

    /// Waits until `until`, renewing the lease meanwhile; returns early when the lane is to
    /// leave.
    async fn wait_until(&mut self, until: DateTime<Utc>) -> Result<(), LaneError> {
        self.wait(until, None).await
    }

    /// Waits until `until`, renewing the lease on the way; when `work` is given, its signal
    /// ends the wait early.
    async fn wait(&mut self, until: DateTime<Utc>, work: Option<&Notify>) -> Result<(), LaneError> {
        loop {
            let now = self.now();
            if now >= until || self.leaving() {
                return Ok(());
            }
            let step = (until - now)
                .min(self.renew_at - now)
                .max(chrono::Duration::milliseconds(1));
            let mut shutdown = self.shared.shutdown.clone();
            let mut leave = self.leave.clone();
            let signalled = async {
                match work {
                    Some(work) => work.notified().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = self.shared.clock.sleep_until(now + step) => {}
                () = signalled => return Ok(()),
                // A dropped sender (an error) says nothing: that branch is just left out.
                Ok(()) = shutdown.changed() => return Ok(()),
                Ok(()) = leave.changed() => return Ok(()),
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

/// Hands the recorder the outcomes of claimed messages that were never sent (skipped, or failed
/// to render): recorded with the next group, without taking a slot.
fn record_unsent(
    completed: &mpsc::UnboundedSender<Completion>,
    unsent: Vec<(HeldClaim, Outcome)>,
    started_at: DateTime<Utc>,
) {
    for (claim, outcome) in unsent {
        // The recorder outlives every sender of completions: this cannot fail.
        let _ = completed.send(Completion {
            claim,
            end: End::Outcome(outcome),
            started_at,
            unreserve: None,
            _slot: None,
        });
    }
}

/// Outcomes committed together at most: a group commit of what has completed.
const GROUP: usize = 64;

/// Messages claimed at once: `configured`, or fewer, so that a batch sent at the provider's
/// slowest (every send taking its whole timeout, `concurrency` at a time) ends within a third of
/// the claim lease. A batch claimed ahead waits for the one before it, so even it is sent well
/// before its claims could expire and be sent again by another lane.
pub(super) fn batch_limit(config: &super::EngineConfig, send_timeout: Duration) -> u32 {
    let third = config.claim_lease / 3;
    let slowest_send = send_timeout.max(Duration::from_millis(1));
    // Whole rounds of `concurrency` sends: a round takes a full timeout however few it holds.
    let rounds = u32::try_from(third.as_nanos() / slowest_send.as_nanos()).unwrap_or(u32::MAX);
    let concurrency = u32::try_from(config.concurrency.max(1)).unwrap_or(u32::MAX);
    config
        .batch_size
        .min(rounds.saturating_mul(concurrency))
        .max(1)
}

/// Whether the lane may still start sends, and why not.
struct Stop {
    /// Until when the batch's claims hold (milliseconds since the epoch): the heartbeat renews
    /// them while the batch is out, and no send starts that could still be out when they end.
    claims_until_ms: AtomicI64,
    /// Another process holds the sender now.
    lease_lost: AtomicBool,
    /// Until when the provider asked the whole sender to wait (HTTP 429), in milliseconds since
    /// the epoch; 0 when it did not.
    throttled_until_ms: AtomicI64,
    /// Outcomes could not be recorded: sending more would only widen what a restart repeats.
    store_failed: AtomicBool,
    /// The lane is to give its sender up: what has not started is handed back.
    leave: watch::Receiver<bool>,
    /// The provider said the sender cannot send at all; the reason is in `unusable_reason`.
    sender_unusable: AtomicBool,
    unusable_reason: std::sync::Mutex<Option<String>>,
}

impl Stop {
    fn holding_claims_until(claims_until: DateTime<Utc>, leave: watch::Receiver<bool>) -> Self {
        Self {
            claims_until_ms: AtomicI64::new(claims_until.timestamp_millis()),
            lease_lost: AtomicBool::default(),
            throttled_until_ms: AtomicI64::default(),
            store_failed: AtomicBool::default(),
            leave,
            sender_unusable: AtomicBool::default(),
            unusable_reason: std::sync::Mutex::default(),
        }
    }

    fn claims_until(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.claims_until_ms.load(Ordering::Acquire))
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// The claims hold until `until` now (a renewal, or a paced send's fresh claim).
    fn claims_renewed(&self, until: DateTime<Utc>) {
        self.claims_until_ms
            .fetch_max(until.timestamp_millis(), Ordering::AcqRel);
    }

    fn throttle(&self, until: DateTime<Utc>) {
        self.throttled_until_ms
            .fetch_max(until.timestamp_millis(), Ordering::AcqRel);
    }

    fn throttled_until(&self) -> Option<DateTime<Utc>> {
        match self.throttled_until_ms.load(Ordering::Acquire) {
            0 => None,
            ms => DateTime::from_timestamp_millis(ms),
        }
    }

    /// Why the lane must stop, once its sends are recorded: its lease is lost, or the provider
    /// refuses the sender.
    fn ended(&self) -> Result<(), LaneError> {
        if self.lease_lost.load(Ordering::Acquire) {
            return Err(LaneError::LeaseLost);
        }
        match self.unusable_reason() {
            Some(reason) => Err(LaneError::SenderUnusable(reason)),
            None => Ok(()),
        }
    }

    fn sending_allowed(&self) -> bool {
        !self.lease_lost.load(Ordering::Acquire)
            && !self.store_failed.load(Ordering::Acquire)
            && !*self.leave.borrow()
            && !self.sender_unusable.load(Ordering::Acquire)
    }

    /// Starts no further send: the sender cannot send until someone fixes it.
    fn sender_unusable(&self, reason: &str) {
        if let Ok(mut kept) = self.unusable_reason.lock() {
            kept.get_or_insert_with(|| reason.to_owned());
        }
        self.sender_unusable.store(true, Ordering::Release);
    }

    fn unusable_reason(&self) -> Option<String> {
        if !self.sender_unusable.load(Ordering::Acquire) {
            return None;
        }
        let reason = self
            .unusable_reason
            .lock()
            .ok()
            .and_then(|kept| kept.clone());
        Some(reason.unwrap_or_default())
    }
}

/// How long before its claim runs out a send may still start: the provider's whole timeout
/// (capped, so a fresh claim always sends), and a tenth of the claims' lease to record it.
fn start_margin(config: &super::EngineConfig, send_timeout: Duration) -> chrono::Duration {
    to_chrono(send_timeout.min(config.claim_lease / 2) + config.claim_lease / 10)
}

/// Sends what `starts` yields, each holding a slot that the recorder frees when its outcome is
/// committed, so at most `concurrency` sends are unrecorded at once. A message whose turn comes
/// after the lane was told to stop, or too close to the end of its claim (the heartbeat could
/// not renew it: a stalled process, a database too slow), is handed back unsent: sent then, it
/// could still be out when another lane claims it again. A campaign message to a contact that
/// has withdrawn its consent since it was claimed is skipped at its turn.
async fn send_all(
    shared: &Shared,
    provider: Arc<dyn Provider>,
    latency: metrics::Histogram,
    starts: impl futures::Stream<Item = Start>,
    stop: &Stop,
    consent: &Subscription,
    completed: mpsc::UnboundedSender<Completion>,
) {
    let concurrency = shared.config.concurrency.max(1);
    let margin = start_margin(&shared.config, provider.send_timeout());
    starts
        .for_each_concurrent(concurrency, |Start { message, slot }| {
            let provider = provider.clone();
            let completed = completed.clone();
            let latency = &latency;
            async move {
                let started_at = shared.clock.now();
                let in_time = started_at + margin < stop.claims_until();
                let withdrawn = match message.campaign_contact {
                    Some(contact) if consent.may_have_withdrawn(contact) => {
                        withdrawn_consent(shared, contact).await
                    }
                    _ => Ok(None),
                };
                let end = if let Ok(Some(reason)) = withdrawn {
                    End::Outcome(Outcome::Skipped {
                        reason: reason.to_owned(),
                    })
                } else if stop.sending_allowed() && in_time && withdrawn.is_ok() {
                    let outbound = Outbound {
                        id: message.id,
                        to: &message.to,
                        body: &message.body,
                        media_url: message.media_url.as_deref(),
                        template: message.whatsapp.as_ref(),
                    };
                    let asked = std::time::Instant::now();
                    let result = provider
                        .send(&outbound)
                        .instrument(tracing::debug_span!(
                            "send",
                            message_id = %message.id,
                            campaign_id = ?message.campaign_id.map(|id| id.0),
                        ))
                        .await;
                    latency.record(asked.elapsed());
                    let now = shared.clock.now();
                    if let Err(SendError::PauseSender(reason)) = &result {
                        stop.sender_unusable(reason);
                    }
                    let (outcome, throttled_until) = outcome_of(
                        result,
                        message.campaign_id.is_some(),
                        message.attempts,
                        now,
                        shared.config.retry_base,
                    );
                    if let Some(until) = throttled_until {
                        stop.throttle(until);
                    }
                    End::Outcome(outcome)
                } else {
                    End::Unsent
                };
                // Its claim reserved a send of the day's cap that it did not make.
                let unreserve = match &end {
                    End::Outcome(Outcome::Skipped { .. }) | End::Unsent => message.reserved_on,
                    End::Outcome(_) => None,
                };
                let _ = completed.send(Completion {
                    claim: message.claim(),
                    end,
                    started_at,
                    unreserve,
                    _slot: slot,
                });
            }
        })
        .await;
}

/// Whether `contact`, announced as withdrawing its consent, did: asked once the transaction
/// that withdrew it has ended, since it may yet roll back. `Some(reason)` to skip the message.
async fn withdrawn_consent(
    shared: &Shared,
    contact: ContactId,
) -> Result<Option<&'static str>, StoreError> {
    let asked = async {
        let mut conn = shared.db.write().await?;
        store::contacts::withdrawn(conn.conn(), &[contact], true).await
    };
    match asked.await {
        Ok(withdrawn) => Ok(withdrawn.first().map(|(_, reason)| *reason)),
        Err(error) => {
            // Not sent on a doubt: the message is handed back, for a later claim to decide.
            tracing::warn!(contact_id = %contact, %error, "consent could not be confirmed; the message is handed back");
            Err(error)
        }
    }
}

/// What a send's result means for its message, and until when the provider asked the whole
/// sender to wait (HTTP 429), if it did.
fn outcome_of(
    result: Result<providers::Accepted, SendError>,
    of_a_campaign: bool,
    attempts: i64,
    now: DateTime<Utc>,
    retry_base: Duration,
) -> (Outcome, Option<DateTime<Utc>>) {
    let error = match result {
        Ok(accepted) => {
            let sent = Outcome::Sent {
                provider_message_id: accepted.provider_message_id,
            };
            return (sent, None);
        }
        Err(SendError::RecipientOptedOut(error)) => return (Outcome::Unwanted { error }, None),
        Err(SendError::PauseCampaign(reason)) if of_a_campaign => {
            return (Outcome::CampaignBlocked { reason }, None);
        }
        Err(SendError::PauseCampaign(error)) => return (Outcome::Failed { error }, None),
        Err(error) => error,
    };
    let throttled_until = match &error {
        SendError::HoldLane { after, .. } => {
            Some(now + to_chrono(after.unwrap_or(Duration::from_secs(30))))
        }
        _ => None,
    };
    let outcome = match after_failure(&error, attempts, retry_base, &mut rand::rng()) {
        Next::RetryIn(wait) => Outcome::Retry {
            not_before: now + to_chrono(wait),
            error: error.to_string(),
        },
        Next::GiveUp => Outcome::Failed {
            error: error.to_string(),
        },
    };
    (outcome, throttled_until)
}

/// Records outcomes as they arrive: whatever has completed (up to [`GROUP`]) is made durable in
/// one commit while the next sends are out, then those sends' slots are freed. Plain sends of an
/// unpaced lane are logged ([`store::logged_sends`]) and applied to their messages in bulk
/// (every [`APPLY_LOGGED_AT`] sends or [`APPLY_LOGGED_WITHIN`]); anything else is recorded in
/// full at once, with what was logged before it. While `unrecorded` claims of a batch are out,
/// renews the lane's lease and their claims (a paced lane passes none: each of its claims is
/// fresh when its send starts, and the lane renews its lease between sends). Returns once every
/// send is durable.
async fn record_as_completed(
    shared: &Arc<Shared>,
    sender: SenderId,
    mut completions: mpsc::UnboundedReceiver<Completion>,
    mut unrecorded: HashSet<HeldClaim>,
    stop: &Stop,
    recording: Recording,
    logged: &mut Logged,
) -> Result<(), StoreError> {
    let spaced = matches!(recording, Recording::Spaced);
    let (mut claim_under_way, mut claiming) = match recording {
        Recording::Spaced => (watch::channel(false).1, false),
        Recording::Batch {
            mut claim_under_way,
        } => {
            let claiming = *claim_under_way.borrow_and_update();
            (claim_under_way, claiming)
        }
    };
    let every = to_chrono(heartbeat_every(&shared.config));
    let mut heartbeat_at = shared.clock.now() + every;
    let mut sleep = shared.clock.sleep_until(heartbeat_at);
    let mut apply_by = logged.apply_by().map(|at| shared.clock.sleep_until(at));
    let mut group = Vec::with_capacity(GROUP);
    loop {
        let first = tokio::select! {
            completion = completions.recv() => completion,
            () = &mut sleep, if !unrecorded.is_empty() => {
                heartbeat(shared, sender, stop, &unrecorded).await;
                heartbeat_at = shared.clock.now() + every;
                sleep = shared.clock.sleep_until(heartbeat_at);
                continue;
            }
            applied = logged.applied(), if logged.is_applying() => {
                applied.map_err(|(error, unapplied)| {
                    stop_recording(stop, sender, &error, unapplied);
                    error
                })?;
                logged.apply_if_enough(shared, sender, claiming);
                apply_by = logged.apply_by().map(|at| shared.clock.sleep_until(at));
                continue;
            }
            // It changes once, or its sender drops: either way the claim has ended.
            _ = claim_under_way.changed(), if claiming => {
                claiming = false;
                logged.apply_if_enough(shared, sender, claiming);
                apply_by = logged.apply_by().map(|at| shared.clock.sleep_until(at));
                continue;
            }
            () = until_due(&mut apply_by), if !logged.is_applying() => {
                logged.start_applying(shared, sender);
                apply_by = None;
                continue;
            }
        };
        // The sends of the batch are all durable; what was logged is applied on its own time.
        let Some(first) = first else {
            return Ok(());
        };
        group.push(first);
        while group.len() < GROUP
            && let Ok(more) = completions.try_recv()
        {
            group.push(more);
        }
        let durable = match shared.db.send_log() {
            Some(send_log) if !spaced && group.iter().all(Completion::is_plain_send) => {
                log_group(shared, send_log, sender, &group, logged).await
            }
            _ => record_group(shared, sender, &group, stop, spaced, logged).await,
        };
        durable.inspect_err(|error| stop_recording(stop, sender, error, group.len()))?;
        for completion in &group {
            unrecorded.remove(&completion.claim);
        }
        // Durable: dropping the completions frees their slots for the next sends.
        group.clear();
        logged.apply_if_enough(shared, sender, claiming);
        match logged.apply_by() {
            None => apply_by = None,
            Some(at) if apply_by.is_none() => apply_by = Some(shared.clock.sleep_until(at)),
            Some(_) => {}
        }
    }
}

/// How a lane's recorder makes its outcomes durable.
enum Recording {
    /// Each outcome in full, with the lane's last send time: a paced lane.
    Spaced,
    /// A batch's: plain sends are logged where the store logs them. The claim of the next
    /// batch and an apply of logged sends both want the one writer, and the next batch waits
    /// for its claim: an apply that is not yet due waits while `claim_under_way` holds true
    /// (its sender drops when the claim ends).
    Batch {
        claim_under_way: watch::Receiver<bool>,
    },
}

/// Resolves when the sleep is due; never without one.
async fn until_due(sleep: &mut Option<crate::clock::Sleep>) {
    match sleep {
        Some(sleep) => sleep.await,
        None => std::future::pending().await,
    }
}

/// A store that cannot take the lane's outcomes stops it from sending: what it could not make
/// durable is sent again once its claims run out.
fn stop_recording(stop: &Stop, sender: SenderId, error: &StoreError, unrecorded: usize) {
    stop.store_failed.store(true, Ordering::Release);
    tracing::error!(sender_id = %sender, %error, unrecorded, "sends could not be recorded; the lane stops sending");
}

/// Logged sends are applied to their messages once this many wait...
const APPLY_LOGGED_AT: usize = 256;
/// ... or this long after the first of them was logged: how long a message may still read
/// `sending` (and its campaign's counters, events and rollups lag) after its send was logged.
const APPLY_LOGGED_WITHIN: Duration = Duration::from_millis(250);

/// Sends logged as they completed and not yet applied to their messages: the groups waiting,
/// in the order logged, the segment of the log that holds them (and nothing else), and the
/// apply under way. That runs on a task of its own, so neither the recorder (which frees slots)
/// nor the end of a batch waits for it; one at a time, since each holds SQLite's single writer.
#[derive(Debug, Default)]
struct Logged {
    groups: Vec<LoggedGroup>,
    segment: Option<Segment>,
    applying: Option<Applying>,
}

#[derive(Debug)]
struct Applying {
    sends: usize,
    task: tokio::task::JoinHandle<Result<(), StoreError>>,
}

impl Logged {
    /// Sends waiting to be applied (not counting those of the apply under way).
    fn sends(&self) -> usize {
        self.groups.iter().map(|group| group.sends.len()).sum()
    }

    /// When the waiting sends are to be applied, at the latest.
    fn apply_by(&self) -> Option<DateTime<Utc>> {
        let first = self.groups.first()?;
        Some(first.at + to_chrono(APPLY_LOGGED_WITHIN))
    }

    fn is_applying(&self) -> bool {
        self.applying.is_some()
    }

    /// Starts applying once enough sends wait, unless the lane is claiming its next batch
    /// (the batch waits for that claim, and both want the one writer).
    fn apply_if_enough(&mut self, shared: &Arc<Shared>, sender: SenderId, claiming: bool) {
        if !claiming && self.sends() >= APPLY_LOGGED_AT {
            self.start_applying(shared, sender);
        }
    }

    /// Starts applying the waiting sends, unless an apply is under way (they go next).
    fn start_applying(&mut self, shared: &Arc<Shared>, sender: SenderId) {
        if self.applying.is_some() || self.groups.is_empty() {
            return;
        }
        let groups = std::mem::take(&mut self.groups);
        let segment = self.segment.take();
        let sends = groups.iter().map(|group| group.sends.len()).sum();
        let shared = shared.clone();
        let task =
            tokio::spawn(async move { apply_logged(&shared, sender, &groups, segment).await });
        self.applying = Some(Applying { sends, task });
    }

    /// The end of the apply under way, with how many sends it failed to apply; pending without
    /// one.
    async fn applied(&mut self) -> Result<(), (StoreError, usize)> {
        let Some(applying) = &mut self.applying else {
            return std::future::pending().await;
        };
        let ended = (&mut applying.task).await;
        let sends = applying.sends;
        self.applying = None;
        match ended {
            Ok(applied) => applied.map_err(|error| (error, sends)),
            Err(failed) if failed.is_panic() => std::panic::resume_unwind(failed.into_panic()),
            // The runtime is shutting down: the sends stay logged, recorded by the requeue.
            Err(_) => Ok(()),
        }
    }

    /// Applies every logged send: waits for the apply under way, then applies the rest.
    async fn apply_all(
        &mut self,
        shared: &Arc<Shared>,
        sender: SenderId,
    ) -> Result<(), StoreError> {
        if self.is_applying() {
            self.applied().await.map_err(|(error, _)| error)?;
        }
        self.start_applying(shared, sender);
        if self.is_applying() {
            self.applied().await.map_err(|(error, _)| error)?;
        }
        Ok(())
    }
}

impl Completion {
    /// A send the provider took: what the lane logs (a send gives no reservation back).
    fn is_plain_send(&self) -> bool {
        matches!(self.end, End::Outcome(Outcome::Sent { .. }))
    }
}

/// Makes a group of plain sends durable with one append to the lane's segment of the log, and
/// keeps them to apply.
async fn log_group(
    shared: &Shared,
    send_log: &SendLog,
    sender: SenderId,
    group: &[Completion],
    logged: &mut Logged,
) -> Result<(), StoreError> {
    let at = shared.clock.now();
    let sends = group
        .iter()
        .filter_map(|completion| match &completion.end {
            End::Outcome(Outcome::Sent {
                provider_message_id,
            }) => Some((completion.claim.id, provider_message_id.clone())),
            _ => None,
        })
        .collect();
    let group_logged = LoggedGroup { at, sends };
    super::retrying("logging sends", sender, || {
        std::future::ready(append(send_log, &mut logged.segment, &group_logged))
    })
    .await?;
    shared.activity.recorded(group_logged.sends.len());
    crate::metrics::sends_recorded(
        sender,
        group.iter().filter_map(|completion| match &completion.end {
            End::Outcome(outcome) => Some(outcome),
            End::Unsent => None,
        }),
    );
    logged.groups.push(group_logged);
    Ok(())
}

/// Appends `group` to the lane's segment of the log, starting one when it has none. A segment
/// whose append failed may end with part of a group: the next append starts another, and the
/// groups already in it stay there, applied with the others (the sweep deletes it then).
fn append(
    send_log: &SendLog,
    segment: &mut Option<Segment>,
    group: &LoggedGroup,
) -> Result<(), StoreError> {
    let appended = match segment {
        Some(segment) => segment.append(group),
        None => send_log
            .segment()
            .and_then(|started| segment.insert(started).append(group)),
    };
    if appended.is_err() {
        *segment = None;
    }
    Ok(appended?)
}

/// Applies logged sends to their messages (their counters, events and rollups) in one
/// transaction, then deletes their segment of the log.
async fn apply_logged(
    shared: &Shared,
    sender: SenderId,
    groups: &[LoggedGroup],
    segment: Option<Segment>,
) -> Result<(), StoreError> {
    super::retrying("applying logged sends", sender, || async {
        let mut tx = shared.db.begin().await?;
        store::logged_sends::apply(&mut tx, groups).await?;
        tx.commit().await
    })
    .await?;
    discard(segment, sender);
    Ok(())
}

/// Deletes a segment of the log whose sends are applied. Never fatal: a segment left behind is
/// swept.
fn discard(segment: Option<Segment>, sender: SenderId) {
    if let Some(Err(error)) = segment.map(Segment::discard) {
        tracing::warn!(sender_id = %sender, %error, "applied sends left in the log; the sweep deletes them");
    }
}

/// How often a lane renews its lease while a batch is out: often enough that a lane whose lease
/// was taken (its process stalled past the lease) stops within a second of resuming.
fn heartbeat_every(config: &super::EngineConfig) -> Duration {
    (config.lease / 3).min(Duration::from_secs(1))
}

/// Renews the lane's lease while a batch is out, and the claims of its unrecorded messages once
/// a third of their lease has passed; a lease another process took stops the lane.
async fn heartbeat(
    shared: &Shared,
    sender: SenderId,
    stop: &Stop,
    unrecorded: &HashSet<HeldClaim>,
) {
    let now = shared.clock.now();
    let until = now + to_chrono(shared.config.lease);
    let claim_lease = to_chrono(shared.config.claim_lease);
    let claims_due = !unrecorded.is_empty() && stop.claims_until() - now < claim_lease * 2 / 3;
    let claims_until = now + claim_lease;
    let renewed = async {
        let mut tx = shared.db.begin().await?;
        // The lease row first, as a claim takes it: on PostgreSQL the two lock in one order.
        let held = store::lanes::renew(tx.conn(), sender, &shared.owner, until).await?;
        if held && claims_due {
            let claims: Vec<HeldClaim> = unrecorded.iter().copied().collect();
            store::messages::renew_claims(tx.conn(), &claims, claims_until).await?;
        }
        tx.commit().await?;
        Ok::<_, StoreError>(held)
    };
    match renewed.await {
        Ok(true) => {
            if claims_due {
                stop.claims_renewed(claims_until);
            }
        }
        Ok(false) => {
            stop.lease_lost.store(true, Ordering::Release);
            tracing::warn!(sender_id = %sender, "lane lost its lease mid-batch; it starts no further send");
        }
        // A passing error: the next heartbeat, at most a second later, tries again well within
        // the lease.
        Err(error) => tracing::warn!(sender_id = %sender, %error, "lease renewal failed"),
    }
}

/// Commits one group of completions, trying again on a passing store error (a deadlock victim
/// on PostgreSQL, a busy database): these sends happened, and must not be left claimed, to be
/// sent again when their claims expire.
async fn record_group(
    shared: &Shared,
    sender: SenderId,
    group: &[Completion],
    stop: &Stop,
    spaced: bool,
    logged: &mut Logged,
) -> Result<(), StoreError> {
    let mut outcomes = Vec::with_capacity(group.len());
    let mut unsent = Vec::new();
    let mut last_started = None;
    let mut unreserved: BTreeMap<NaiveDate, i64> = BTreeMap::new();
    for completion in group {
        match &completion.end {
            End::Outcome(outcome) => {
                outcomes.push((completion.claim.id, outcome.clone()));
                last_started = last_started.max(Some(completion.started_at));
            }
            End::Unsent => unsent.push(completion.claim),
        }
        if let Some(day) = completion.unreserve {
            *unreserved.entry(day).or_default() += 1;
        }
    }
    let still_held = super::retrying("recording sends", sender, || async {
        let now = shared.clock.now();
        let mut tx = shared.db.begin().await?;
        // A paced sender's last send is what its next gap counts from, across restarts; an
        // unpaced one's is not worth a write per group (the heartbeat checks its lease). The
        // lease row comes first, as a claim takes it first: on PostgreSQL the two lock the
        // lease, the campaign and its messages in one order, so they cannot deadlock.
        let still_held = match last_started {
            Some(at) if spaced => {
                store::lanes::record_send(tx.conn(), sender, &shared.owner, at).await?
            }
            _ => true,
        };
        // What was logged before this group is recorded with it, in order.
        store::logged_sends::apply(&mut tx, &logged.groups).await?;
        store::messages::record_outcomes(&mut tx, &outcomes, now).await?;
        store::messages::release_unsent(tx.conn(), &unsent, now).await?;
        // What was reserved and not sent after all is no send of its day.
        for (day, unused) in &unreserved {
            store::usage::release(tx.conn(), sender, *day, *unused).await?;
        }
        tx.commit().await?;
        Ok(still_held)
    })
    .await?;
    logged.groups.clear();
    discard(logged.segment.take(), sender);
    shared.activity.recorded(outcomes.len());
    crate::metrics::sends_recorded(sender, outcomes.iter().map(|(_, outcome)| outcome));
    // The sends happened all the same: they are recorded, said so, and nothing more starts (the
    // lease was found lost by this commit, the heartbeat or a claim).
    if !still_held {
        stop.lease_lost.store(true, Ordering::Release);
    }
    if stop.lease_lost.load(Ordering::Acquire) && !outcomes.is_empty() {
        tracing::warn!(sender_id = %sender, recorded = outcomes.len(), "sends recorded after this lane lost its lease; it starts no further send");
    }
    if !unsent.is_empty() {
        tracing::info!(sender_id = %sender, released = unsent.len(), "claimed messages handed back unsent");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineConfig;

    #[test]
    fn a_batch_sent_at_the_providers_slowest_ends_within_a_third_of_its_claims_lease() {
        let config = EngineConfig::default();
        // 120 s claims, 64 at once, 10 s timeouts: 256 messages take at most 40 s.
        assert_eq!(batch_limit(&config, Duration::from_secs(10)), 256);
        for timeout in [1, 10, 100, 1_000, 10_000, 60_000] {
            let timeout = Duration::from_millis(timeout);
            let batch = batch_limit(&config, timeout);
            let rounds = batch.div_ceil(u32::try_from(config.concurrency).unwrap());
            let slowest = timeout * rounds;
            assert!(
                batch == 1 || slowest <= config.claim_lease / 3,
                "{batch} messages at {timeout:?} take {slowest:?}"
            );
        }
        // A fast provider keeps the configured batch; an impossible one still sends one.
        assert_eq!(batch_limit(&config, Duration::from_millis(1)), 1024);
        assert_eq!(batch_limit(&config, Duration::from_secs(3600)), 1);
    }

    #[test]
    fn a_fresh_claim_always_leaves_time_to_start_its_first_send() {
        let config = EngineConfig::default();
        let lease = to_chrono(config.claim_lease);
        for timeout in [1, 100, 10_000, 60_000, 119_000, 3_600_000] {
            let margin = start_margin(&config, Duration::from_millis(timeout));
            assert!(margin < lease, "{timeout} ms: {margin:?}");
        }
        // A 10 s provider: a send starts at the latest 22 s before its claim ends, so it is
        // answered, and recorded, before another lane may claim the message again.
        assert_eq!(
            start_margin(&config, Duration::from_secs(10)),
            chrono::Duration::seconds(22)
        );
    }
}
