//! The webhook dispatcher: three tasks in every `herald serve` process.
//!
//! - The **fan-out** reads the event log (consumer `webhooks`, one process at a time under a
//!   lease) and records one delivery per matching endpoint, in the transaction that records how
//!   far it has read: an event is fanned out once, or — after a crash between the two — again
//!   to no effect (a delivery is unique per endpoint and event).
//! - The **deliverer** claims due deliveries with a lease and POSTs them, signed, a bounded
//!   number at a time per endpoint: a slow receiver holds its own deliveries, not the others',
//!   and never the send path. Only the first pending delivery of a subject (a message, a
//!   campaign) at an endpoint is claimable, so one subject's events arrive in order.
//! - The **recorder** writes what attempts came to in group commits, and schedules the next
//!   attempt of a failure (API.md's schedule, or the receiver's `Retry-After`).
//!
//! A process killed mid-delivery loses nothing: its claims run out and another attempt is made,
//! with the same `webhook-id`, so receivers can drop the repeat.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::clock::Clock;
use crate::domain::event::EventType;
use crate::domain::ids::{DeliveryId, WebhookId, WorkspaceId};
use crate::domain::webhook::{
    DeliveryStatus, next_attempt_after, secret_key, sign, wants, webhook_id,
};
use crate::engine::SendActivity;
use crate::eventlog::{EventLog, EventReader, StartAt};
use crate::store::events::{self as log, StoredEvent};
use crate::store::webhooks::{self as store, Attempted, Claimed, NewDelivery, Webhook};
use crate::store::{self as db_store, Db};
use crate::url_guard::UrlGuard;

/// The event-log consumer that fans events out to endpoints.
pub const CONSUMER: &str = "webhooks";

/// How much of an answer is kept: enough to see an error message, never a whole page.
pub const EXCERPT_BYTES: usize = 256;

#[derive(Clone, Debug)]
pub struct DispatcherConfig {
    /// A delivery's answer must come within this (API.md: 10 s).
    pub timeout: Duration,
    /// How long a claim on a delivery, or the fan-out's hold on the log, lasts: after a crash,
    /// another process takes over once it has run out.
    pub lease: Duration,
    /// Deliveries in flight at once to one endpoint.
    pub per_endpoint: usize,
    /// Deliveries claimed at once.
    pub claim_batch: i64,
    /// Events read at once.
    pub read_batch: usize,
    /// How often an idle fan-out or deliverer looks again.
    pub poll: Duration,
    pub url_guard: UrlGuard,
    /// The engine's count of recorded sends: while it moves, the fan-out gives way.
    pub send_activity: SendActivity,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            lease: Duration::from_secs(60),
            per_endpoint: 16,
            claim_batch: 256,
            read_batch: 1024,
            poll: Duration::from_millis(100),
            url_guard: UrlGuard::STRICT,
            send_activity: SendActivity::default(),
        }
    }
}

/// The running dispatcher of one process.
pub struct WebhookDispatcher {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

struct Shared {
    db: Db,
    clock: Arc<dyn Clock>,
    client: reqwest::Client,
    config: DispatcherConfig,
    /// This process's name in leases.
    owner: String,
    /// Deliveries may be due: new ones fanned out, or a subject's earlier one finished.
    due: Notify,
    stop: watch::Receiver<bool>,
}

impl Shared {
    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    fn lease_until(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + chrono::Duration::from_std(self.config.lease).unwrap_or(chrono::Duration::MAX)
    }

    /// Waits `wait`, or less if the process stops.
    async fn stopped_or_after(&self, wait: Duration) {
        let mut stop = self.stop.clone();
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|stopping| *stopping) => {}
        }
    }

    /// Waits up to `wait`, less if deliveries may be due or the process stops.
    async fn idle(&self, wait: Duration) {
        let mut stop = self.stop.clone();
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = self.due.notified() => {}
            _ = stop.changed() => {}
        }
    }
}

impl WebhookDispatcher {
    /// Starts the fan-out, the deliverer and the recorder; `client` is the guarded client for
    /// users' URLs (no redirects, no private addresses unless allowed).
    pub fn start(
        db: Db,
        clock: Arc<dyn Clock>,
        client: reqwest::Client,
        config: DispatcherConfig,
    ) -> Self {
        let (stop, stopped) = watch::channel(false);
        let shared = Arc::new(Shared {
            db,
            clock,
            client,
            config,
            owner: format!("{}:{}", std::process::id(), uuid::Uuid::new_v4().simple()),
            due: Notify::new(),
            stop: stopped,
        });
        let (attempts, recorded) = mpsc::channel(1024);
        let mut tasks = JoinSet::new();
        tasks.spawn(fan_out(shared.clone(), attempts.clone()));
        tasks.spawn(deliver(shared.clone(), attempts));
        tasks.spawn(record(shared, recorded));
        Self { stop, tasks }
    }

    /// Stops claiming, lets deliveries in flight finish (each within its timeout) and records
    /// them.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Reads the log while this process holds the fan-out's lease, and records deliveries.
async fn fan_out(shared: Arc<Shared>, recorder: mpsc::Sender<Recorded>) {
    let events = EventLog::new(shared.db.clone(), shared.clock.clone());
    let mut reader: Option<EventReader> = None;
    let mut held_until: Option<DateTime<Utc>> = None;
    let mut health = EndpointHealth::default();
    let mut position_saved: Option<Instant> = None;
    let mut sends_seen = shared.config.send_activity.total();
    while !shared.stopping() {
        let now = shared.clock.now();
        // Renewed at half its life, so that it never runs out while this process reads.
        let renew = held_until.is_none_or(|until| {
            until - now < chrono::Duration::from_std(shared.config.lease / 2).unwrap_or_default()
        });
        if renew {
            match take_lease(&shared, now).await {
                Ok(true) => held_until = Some(shared.lease_until(now)),
                Ok(false) => {
                    // Another process fans out; its position is the one to resume from later.
                    held_until = None;
                    reader = None;
                    shared.idle(shared.config.lease / 4).await;
                    continue;
                }
                Err(error) => {
                    tracing::warn!(%error, "webhooks: cannot take the event log's lease");
                    shared.idle(shared.config.poll * 10).await;
                    continue;
                }
            }
        }
        if reader.is_none() {
            // A database's first fan-out reads the log from its oldest event: starting at its
            // end would lose what endpoints created before the reader opened were due (an
            // endpoint created and tested at once). Events from before an endpoint existed
            // are never its (`deliveries_of`).
            match events.reader(CONSUMER, StartAt::Beginning).await {
                Ok(new) => reader = Some(new),
                Err(error) => {
                    tracing::warn!(%error, "webhooks: cannot open the event log");
                    shared.idle(shared.config.poll * 10).await;
                    continue;
                }
            }
        }
        let Some(current) = reader.as_mut() else {
            continue;
        };
        let batch = match current.poll(shared.config.read_batch).await {
            Ok(batch) => batch,
            Err(error) => {
                tracing::warn!(%error, "webhooks: cannot read the event log");
                reader = None;
                shared.idle(shared.config.poll * 10).await;
                continue;
            }
        };
        if batch.is_empty() {
            shared.idle(shared.config.poll).await;
            continue;
        }
        let started = Instant::now();
        // The lease is kept while the batch is out: a batch to a slow endpoint can outlast it,
        // and another process would then deliver the same events again.
        let outcome = tokio::select! {
            outcome = fan_out_batch(&shared, &batch, &mut health, &mut position_saved, &recorder) => outcome,
            () = keep_lease(&shared) => {
                tracing::warn!("webhooks: the event log's lease was lost mid-batch");
                held_until = None;
                reader = None;
                continue;
            }
        };
        // `held_until` stays: a renewal during the batch only moved the real end later.
        match outcome {
            Ok(0) => {}
            Ok(_) => shared.due.notify_one(),
            Err(error) => {
                // The reader's position ran ahead of what was recorded: read again from there.
                tracing::warn!(%error, "webhooks: cannot record deliveries");
                reader = None;
                shared.idle(shared.config.poll * 10).await;
            }
        }
        // While lanes are sending, the fan-out takes about a fifth of the time: the sends
        // keep their pace, and the events they leave behind go out once they stop (or as the
        // gaps allow). Idle lanes get the fan-out at full speed.
        let sends = shared.config.send_activity.total();
        if sends != sends_seen {
            sends_seen = sends;
            let pause = (started.elapsed() * GIVE_WAY).min(Duration::from_secs(1));
            shared.stopped_or_after(pause).await;
        }
    }
}

/// Renews the fan-out's lease every third of its life; returns once it is lost.
async fn keep_lease(shared: &Shared) {
    loop {
        tokio::time::sleep(shared.config.lease / 3).await;
        match take_lease(shared, shared.clock.now()).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(error) => tracing::warn!(%error, "webhooks: cannot renew the event log's lease"),
        }
    }
}

async fn take_lease(shared: &Shared, now: DateTime<Utc>) -> db_store::Result<bool> {
    let mut conn = shared.db.write().await?;
    // A new consumer starts at the log's beginning, as its reader does (see `fan_out`).
    log::lease_consumer(
        conn.conn(),
        CONSUMER,
        &shared.owner,
        0,
        now,
        shared.lease_until(now),
    )
    .await
}

/// Delivers the events of `batch` and records them with the log's position after them.
///
/// Most deliveries go out at once, from memory, and are written once, with their first
/// attempt: to an endpoint that answers well, for a subject with nothing pending before it.
/// The others are written as pending for the deliverer to claim: a subject's events behind a
/// delivery still pending, an endpoint that failed or answered slowly of late (so that it holds
/// no one else's deliveries), and the rest of a subject's events after a failed attempt. The
/// position moves only once all of it is written, so a crash delivers a batch again (receivers
/// drop repeats by `webhook-id`) and never loses one. Returns how many it left pending.
async fn fan_out_batch(
    shared: &Arc<Shared>,
    batch: &[StoredEvent],
    health: &mut EndpointHealth,
    position_saved: &mut Option<Instant>,
    recorder: &mpsc::Sender<Recorded>,
) -> db_store::Result<usize> {
    let Some(last) = batch.last().map(|event| event.position) else {
        return Ok(0);
    };
    let workspaces: Vec<WorkspaceId> = batch
        .iter()
        .map(|event| event.workspace)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let (endpoints, deliveries, held) = {
        let mut conn = shared.db.read().await?;
        let endpoints = store::of_workspaces(conn.conn(), &workspaces).await?;
        let deliveries = deliveries_of(batch, &endpoints);
        let held: HashSet<(WebhookId, uuid::Uuid)> =
            if !deliveries.is_empty() && store::any_pending(conn.conn()).await? {
                let webhooks: Vec<WebhookId> = endpoints.iter().map(|e| e.id).collect();
                let subjects: Vec<uuid::Uuid> = deliveries
                    .iter()
                    .map(|d| d.subject)
                    .collect::<HashSet<_>>()
                    .into_iter()
                    .collect();
                let mut held = HashSet::new();
                for slice in subjects.chunks(500) {
                    held.extend(store::pending_subjects(conn.conn(), &webhooks, slice).await?);
                }
                held
            } else {
                HashSet::new()
            };
        (endpoints, deliveries, held)
    };
    // Events no endpoint wants move the position alone, and saving it costs the database's
    // writer a transaction, which on SQLite the callbacks and sends wait for. So their position
    // is saved once a second rather than after every batch. A restart reads at most that second
    // again, which delivers nothing to an endpoint created since (events from before an
    // endpoint existed are never its); one enabled or subscribed within that second may get
    // the second's events, as it would have had the fan-out been that second behind.
    if deliveries.is_empty()
        && position_saved.is_some_and(|saved| saved.elapsed() < QUIET_POSITION_SAVES)
    {
        return Ok(0);
    }
    let by_id: HashMap<WebhookId, Arc<Webhook>> = endpoints
        .into_iter()
        .map(|endpoint| (endpoint.id, Arc::new(endpoint)))
        .collect();
    let now = shared.clock.now();
    let (chains, mut queued) = split(deliveries, held, |webhook| health.is_fast(webhook, now));

    // Each subject's chain in order, the chains at once, `per_endpoint` at a time per endpoint.
    let mut running = JoinSet::new();
    let mut progress = Vec::new();
    let rows_written = watch::Sender::new(false);
    for chain in chains {
        let Some(endpoint) = by_id.get(&chain[0].webhook).cloned() else {
            continue;
        };
        let chain = Arc::new(Mutex::new(Chain {
            rest: chain.into(),
            ..Chain::default()
        }));
        progress.push(chain.clone());
        let gate = health.gate(endpoint.id, shared.config.per_endpoint);
        let shared = shared.clone();
        let recorder = recorder.clone();
        let row_written = rows_written.subscribe();
        running.spawn(async move {
            run_chain(&shared, &endpoint, &chain, &gate, &recorder, row_written).await;
        });
    }
    // What has not answered by the deadline is left to finish on its own, as a claimed row, and
    // an endpoint slower than a second goes to the deliverer: a slow receiver holds up no one
    // else's deliveries.
    let deadline = tokio::time::Instant::now() + BATCH_DEADLINE;
    while let Ok(Some(_)) = tokio::time::timeout_at(deadline, running.join_next()).await {}
    running.detach_all();
    let mut written = Vec::new();
    let mut gone = HashSet::new();
    let mut detached = Vec::new();
    for chain in progress {
        let Ok(mut chain) = chain.lock() else {
            continue;
        };
        for (delivery, recorded, took) in chain.done.drain(..) {
            health.observe(
                delivery.webhook,
                recorded.attempt.status == DeliveryStatus::Succeeded,
                took,
                shared.clock.now(),
            );
            gone.extend(recorded.gone);
            written.push((delivery, recorded.attempt));
        }
        chain.detached = true;
        if let Some(waiting) = chain.waiting.take() {
            chain.rest.push_front(waiting);
        }
        if let Some((delivery, since)) = chain.in_flight.clone() {
            health.observe(delivery.webhook, true, since.elapsed(), shared.clock.now());
            detached.push(delivery);
        }
        // After a failure (or behind a slow answer) the subject's later events wait, as rows.
        queued.extend(chain.rest.drain(..));
    }

    // In slices, each its own transaction: SQLite has one writer, and a lane records its sends
    // as they complete, so a long transaction here would hold the lane's next sends. The
    // position goes with the last slice.
    let pending = queued.len()
        + detached.len()
        + written
            .iter()
            .filter(|(_, a)| a.status == DeliveryStatus::Pending)
            .count();
    let claimed_by = (
        shared.owner.as_str(),
        shared.lease_until(shared.clock.now()),
    );
    for slice in detached.chunks(WRITE_SLICE) {
        let mut tx = shared.db.begin().await?;
        store::insert_deliveries(tx.conn(), slice, shared.clock.now(), Some(claimed_by)).await?;
        tx.commit().await?;
    }
    rows_written.send_replace(true);
    for slice in queued.chunks(WRITE_SLICE) {
        let mut tx = shared.db.begin().await?;
        store::insert_deliveries(tx.conn(), slice, shared.clock.now(), None).await?;
        tx.commit().await?;
    }
    for slice in written.chunks(WRITE_SLICE) {
        let mut tx = shared.db.begin().await?;
        store::insert_attempted(tx.conn(), slice).await?;
        tx.commit().await?;
    }
    let mut tx = shared.db.begin().await?;
    for endpoint in gone {
        store::disable(tx.conn(), endpoint, GONE, shared.clock.now()).await?;
    }
    log::save_position(tx.conn(), CONSUMER, last, shared.clock.now()).await?;
    tx.commit().await?;
    *position_saved = Some(Instant::now());
    Ok(pending)
}

/// How often the position is saved while the events read are none of any endpoint's.
const QUIET_POSITION_SAVES: Duration = Duration::from_secs(1);

/// How many times its own work the fan-out pauses while lanes are sending.
const GIVE_WAY: u32 = 4;

/// The most deliveries one of the dispatcher's transactions writes.
const WRITE_SLICE: usize = 64;

/// One subject's deliveries at one endpoint, as the fan-out attempts them.
#[derive(Default)]
struct Chain {
    /// Not yet attempted.
    rest: VecDeque<NewDelivery>,
    /// Next, waiting for a place among the endpoint's deliveries in flight.
    waiting: Option<NewDelivery>,
    /// Being attempted, since when.
    in_flight: Option<(NewDelivery, Instant)>,
    /// Attempted, with what came of each and how long it took.
    done: Vec<(NewDelivery, Recorded, Duration)>,
    /// The fan-out moved on without it: the attempt in flight is recorded by the recorder, on
    /// the claimed row the fan-out wrote for it.
    detached: bool,
}

/// Attempts a chain's deliveries in order until one fails or the fan-out moves on.
async fn run_chain(
    shared: &Shared,
    endpoint: &Webhook,
    chain: &Mutex<Chain>,
    gate: &Semaphore,
    recorder: &mpsc::Sender<Recorded>,
    mut row_written: watch::Receiver<bool>,
) {
    loop {
        let delivery = {
            let Ok(mut chain) = chain.lock() else { return };
            if chain.detached {
                return;
            }
            let Some(delivery) = chain.rest.pop_front() else {
                return;
            };
            chain.waiting = Some(delivery.clone());
            delivery
        };
        let Ok(_permit) = gate.acquire().await else {
            return;
        };
        {
            let Ok(mut chain) = chain.lock() else { return };
            // Moved on before its turn: the fan-out put it back among the rows to write.
            if chain.detached {
                return;
            }
            chain.waiting = None;
            chain.in_flight = Some((delivery.clone(), Instant::now()));
        }
        let claimed = Claimed {
            id: delivery.id,
            webhook_id: delivery.webhook,
            event_id: delivery.event_id,
            kind: delivery.kind.as_str().to_owned(),
            body: delivery.body.clone(),
            failures: 0,
            attempts: 0,
        };
        let started = Instant::now();
        let recorded = attempt(shared, endpoint, &claimed).await;
        let took = started.elapsed();
        let succeeded = recorded.attempt.status == DeliveryStatus::Succeeded;
        let detached = {
            let Ok(mut chain) = chain.lock() else { return };
            chain.in_flight = None;
            if chain.detached {
                true
            } else {
                chain.done.push((delivery, recorded.clone(), took));
                false
            }
        };
        if detached {
            // Recorded on its row once the fan-out has written it (or, if it never does, made
            // again when the claim runs out: a repeat, never a loss).
            let _ = row_written.wait_for(|written| *written).await;
            let _ = recorder.send(recorded).await;
            return;
        }
        if !succeeded {
            return;
        }
    }
}

/// Splits a batch's deliveries into chains to attempt at once — each subject's deliveries at one
/// endpoint, in order — and deliveries to leave pending: those of a subject `held` behind a
/// pending delivery, and all of an endpoint that is not `fast`.
fn split(
    deliveries: Vec<NewDelivery>,
    mut held: HashSet<(WebhookId, uuid::Uuid)>,
    mut fast: impl FnMut(WebhookId) -> bool,
) -> (Vec<Vec<NewDelivery>>, Vec<NewDelivery>) {
    let mut chains: Vec<Vec<NewDelivery>> = Vec::new();
    let mut chain_of: HashMap<(WebhookId, uuid::Uuid), usize> = HashMap::new();
    let mut queued = Vec::new();
    for delivery in deliveries {
        let key = (delivery.webhook, delivery.subject);
        if held.contains(&key) || !fast(delivery.webhook) {
            held.insert(key);
            queued.push(delivery);
            continue;
        }
        match chain_of.get(&key) {
            Some(&index) => chains[index].push(delivery),
            None => {
                chain_of.insert(key, chains.len());
                chains.push(vec![delivery]);
            }
        }
    }
    (chains, queued)
}

/// How endpoints have answered the fan-out of late: one that failed or took over
/// [`SLOW_ANSWER`] gets its deliveries through the deliverer for [`SLOW_FOR`], where it holds
/// only its own.
#[derive(Default)]
struct EndpointHealth {
    slow_until: HashMap<WebhookId, DateTime<Utc>>,
    gates: HashMap<WebhookId, Arc<Semaphore>>,
}

/// An answer slower than this takes the endpoint off the fan-out's own attempts for a while.
const SLOW_ANSWER: Duration = Duration::from_secs(1);
/// How long the fan-out waits for a batch's attempts before it moves on without the rest.
const BATCH_DEADLINE: Duration = Duration::from_secs(2);
const SLOW_FOR: Duration = Duration::from_secs(60);
const GONE: &str = "the endpoint answered 410 Gone";

impl EndpointHealth {
    fn is_fast(&mut self, webhook: WebhookId, now: DateTime<Utc>) -> bool {
        match self.slow_until.get(&webhook) {
            Some(until) if *until > now => false,
            Some(_) => {
                self.slow_until.remove(&webhook);
                true
            }
            None => true,
        }
    }

    fn observe(&mut self, webhook: WebhookId, succeeded: bool, took: Duration, now: DateTime<Utc>) {
        if !succeeded || took > SLOW_ANSWER {
            let until = now + chrono::Duration::from_std(SLOW_FOR).unwrap_or_default();
            self.slow_until.insert(webhook, until);
        }
    }

    fn gate(&mut self, webhook: WebhookId, permits: usize) -> Arc<Semaphore> {
        self.gates
            .entry(webhook)
            .or_insert_with(|| Arc::new(Semaphore::new(permits.max(1))))
            .clone()
    }
}

/// Each event of `batch` for each endpoint of its workspace that wants it: enabled and
/// subscribed; a test event goes to the endpoint it tests, and to no other.
fn deliveries_of(batch: &[StoredEvent], endpoints: &[Webhook]) -> Vec<NewDelivery> {
    let mut deliveries = Vec::new();
    for event in batch {
        // Written once an endpoint wants the event: most events of a busy log are no one's.
        let mut body: Option<String> = None;
        for endpoint in endpoints.iter().filter(|endpoint| {
            endpoint.workspace_id == event.workspace && event.occurred_at >= endpoint.created_at
        }) {
            let wanted = if event.kind == EventType::WebhookTest {
                endpoint.id.0 == event.subject
            } else {
                endpoint.enabled && wants(&endpoint.events.0, event.kind)
            };
            if wanted {
                deliveries.push(NewDelivery {
                    id: DeliveryId::generate(),
                    workspace: event.workspace,
                    webhook: endpoint.id,
                    event_id: event.position,
                    kind: event.kind,
                    subject: event.subject,
                    body: body
                        .get_or_insert_with(|| {
                            serde_json::json!({
                                "type": event.kind.as_str(),
                                "timestamp": event.occurred_at,
                                "data": event.payload,
                            })
                            .to_string()
                        })
                        .clone(),
                });
            }
        }
    }
    deliveries
}

/// One attempt's result on its way to the recorder.
#[derive(Clone)]
struct Recorded {
    attempt: Attempted,
    /// The endpoint answered 410 Gone: it is turned off.
    gone: Option<WebhookId>,
}

/// Claims due deliveries and attempts them, at most `per_endpoint` at a time to one endpoint.
async fn deliver(shared: Arc<Shared>, recorder: mpsc::Sender<Recorded>) {
    let per_endpoint = shared.config.per_endpoint.max(1);
    // Claimed and not yet recorded, per endpoint: an endpoint with this many waiting is not
    // claimed for until some finish.
    let claimed_per_endpoint = Arc::new(Mutex::new(HashMap::<WebhookId, usize>::new()));
    let mut gates: HashMap<WebhookId, Arc<Semaphore>> = HashMap::new();
    let mut attempts = JoinSet::new();
    let mut renewed = Instant::now();
    while !shared.stopping() {
        while attempts.try_join_next().is_some() {}
        if !attempts.is_empty() && renewed.elapsed() >= shared.config.lease / 3 {
            renewed = Instant::now();
            if let Err(error) = renew(&shared).await {
                tracing::warn!(%error, "webhooks: cannot renew claims");
            }
        }
        let full: Vec<WebhookId> = claimed_per_endpoint
            .lock()
            .map(|claimed| {
                claimed
                    .iter()
                    .filter(|(_, count)| **count >= per_endpoint * 4)
                    .map(|(id, _)| *id)
                    .collect()
            })
            .unwrap_or_default();
        let claimed = match claim(&shared, &full).await {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::warn!(%error, "webhooks: cannot claim deliveries");
                shared.idle(shared.config.poll * 10).await;
                continue;
            }
        };
        let full_batch = claimed.len() as i64 >= shared.config.claim_batch;
        for (delivery, endpoint) in claimed {
            if let Ok(mut counts) = claimed_per_endpoint.lock() {
                *counts.entry(endpoint.id).or_default() += 1;
            }
            let gate = gates
                .entry(endpoint.id)
                .or_insert_with(|| Arc::new(Semaphore::new(per_endpoint)))
                .clone();
            let shared = shared.clone();
            let recorder = recorder.clone();
            let counts = claimed_per_endpoint.clone();
            attempts.spawn(async move {
                let mut stop = shared.stop.clone();
                let permit = tokio::select! {
                    permit = gate.acquire_owned() => permit.ok(),
                    _ = stop.wait_for(|stopping| *stopping) => None,
                };
                // Stopping before its turn: given back unattempted.
                let unattempted = match permit {
                    Some(_permit) => {
                        let recorded = attempt(&shared, &endpoint, &delivery).await;
                        let _ = recorder.send(recorded).await;
                        None
                    }
                    None => Some(delivery.id),
                };
                if let Ok(mut counts) = counts.lock()
                    && let Some(count) = counts.get_mut(&endpoint.id)
                {
                    *count = count.saturating_sub(1);
                    if *count == 0 {
                        counts.remove(&endpoint.id);
                    }
                }
                unattempted
            });
        }
        if !full_batch {
            shared.idle(shared.config.poll).await;
        }
    }
    // Attempts in flight finish (each bounded by the timeout) and are recorded; the claims
    // still waiting for their turn are given back for the next process.
    let mut unattempted = Vec::new();
    while let Some(done) = attempts.join_next().await {
        unattempted.extend(done.ok().flatten());
    }
    if let Err(error) = release(&shared, &unattempted).await {
        tracing::warn!(%error, "webhooks: claims left to run out");
    }
}

/// Keeps this process's claims from running out while their endpoint is slow.
async fn renew(shared: &Shared) -> db_store::Result<()> {
    let until = shared.lease_until(shared.clock.now());
    let mut conn = shared.db.write().await?;
    store::renew_claims(conn.conn(), &shared.owner, until).await
}

/// Claims due deliveries with their endpoints.
async fn claim(
    shared: &Shared,
    full: &[WebhookId],
) -> db_store::Result<Vec<(Claimed, Arc<Webhook>)>> {
    let now = shared.clock.now();
    let claimed = {
        let mut conn = shared.db.write().await?;
        store::claim_due(
            conn.conn(),
            &shared.owner,
            now,
            shared.lease_until(now),
            shared.config.claim_batch,
            full,
        )
        .await?
    };
    if claimed.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<WebhookId> = claimed
        .iter()
        .map(|delivery| delivery.webhook_id)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let endpoints: HashMap<WebhookId, Arc<Webhook>> = {
        let mut conn = shared.db.read().await?;
        store::by_ids(conn.conn(), &ids)
            .await?
            .into_iter()
            .map(|endpoint| (endpoint.id, Arc::new(endpoint)))
            .collect()
    };
    // A delivery whose endpoint was deleted meanwhile went with it.
    Ok(claimed
        .into_iter()
        .filter_map(|delivery| {
            let endpoint = endpoints.get(&delivery.webhook_id)?.clone();
            Some((delivery, endpoint))
        })
        .collect())
}

/// POSTs one delivery, signed, and says what came of it.
async fn attempt(shared: &Shared, endpoint: &Webhook, delivery: &Claimed) -> Recorded {
    let at = shared.clock.now();
    let started = Instant::now();
    let answer = post(shared, endpoint, delivery, at).await;
    let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    let (status, retry_after, excerpt, error) = match answer {
        Ok(answer) => (
            Some(answer.status),
            answer.retry_after,
            answer.excerpt,
            None,
        ),
        Err(error) => (None, None, None, Some(error)),
    };
    let succeeded = status.is_some_and(|status| status.is_success());
    let gone = status == Some(StatusCode::GONE);
    let error = match status {
        _ if succeeded => None,
        Some(StatusCode::GONE) => Some("the endpoint answered 410 Gone: it is disabled".into()),
        Some(status) if status.is_redirection() => Some(format!(
            "the endpoint answered {status}; redirects are not followed"
        )),
        Some(status) => Some(format!("the endpoint answered {status}")),
        None => error,
    };
    let (status_after, failures, next_attempt_at) = if succeeded {
        (DeliveryStatus::Succeeded, delivery.failures, None)
    } else {
        let failures = delivery.failures + 1;
        let next = (!gone)
            .then(|| next_attempt_after(u32::try_from(failures).unwrap_or(u32::MAX), retry_after))
            .flatten();
        match next {
            Some(wait) => (
                DeliveryStatus::Pending,
                failures,
                Some(at + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX)),
            ),
            None => (DeliveryStatus::Failed, failures, None),
        }
    };
    crate::metrics::webhook_attempt(match status_after {
        DeliveryStatus::Succeeded => "succeeded",
        DeliveryStatus::Pending => "retrying",
        DeliveryStatus::Failed => "failed",
    });
    Recorded {
        attempt: Attempted {
            delivery: delivery.id,
            number: delivery.attempts + 1,
            at,
            status: status_after,
            failures,
            next_attempt_at,
            response_status: status.map(|status| i64::from(status.as_u16())),
            error,
            duration_ms,
            response_excerpt: excerpt,
        },
        gone: gone.then_some(endpoint.id),
    }
}

/// An endpoint's answer to one attempt.
struct Answer {
    status: StatusCode,
    retry_after: Option<Duration>,
    /// The first [`EXCERPT_BYTES`] of its body.
    excerpt: Option<String>,
}

/// The request itself: the URL checked again (the guard's resolver checks the address it
/// connects to) and the Standard Webhooks headers; `Err` says why no answer came.
async fn post(
    shared: &Shared,
    endpoint: &Webhook,
    delivery: &Claimed,
    at: DateTime<Utc>,
) -> Result<Answer, String> {
    let url = shared
        .config
        .url_guard
        .parse(&endpoint.url)
        .map_err(|refused| format!("the URL {refused}"))?;
    let key = secret_key(&endpoint.secret)
        .ok_or_else(|| "the endpoint's secret is not valid base64".to_owned())?;
    let id = webhook_id(delivery.event_id);
    let timestamp = at.timestamp();
    let signature = sign(&key, &id, timestamp, delivery.body.as_bytes());
    let response = shared
        .client
        .post(url)
        .timeout(shared.config.timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(reqwest::header::USER_AGENT, "Herald-Webhooks/1")
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(delivery.body.clone())
        .send()
        .await
        .map_err(|error| {
            if error.is_timeout() {
                format!("no answer within {} s", shared.config.timeout.as_secs_f64())
            } else {
                crate::providers::http::error_chain(&error)
            }
        })?;
    let status = response.status();
    let retry_after = crate::providers::http::retry_after(response.headers());
    Ok(Answer {
        status,
        retry_after,
        excerpt: excerpt(response).await,
    })
}

/// The first [`EXCERPT_BYTES`] of an answer's body, read no further.
async fn excerpt(mut response: reqwest::Response) -> Option<String> {
    let mut bytes = Vec::new();
    while bytes.len() < EXCERPT_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    bytes.truncate(EXCERPT_BYTES);
    (!bytes.is_empty()).then(|| String::from_utf8_lossy(&bytes).into_owned())
}

/// Most attempts recorded in one transaction.
const RECORD_BATCH: usize = 256;

/// Writes attempts as they finish, in group commits.
async fn record(shared: Arc<Shared>, mut recorded: mpsc::Receiver<Recorded>) {
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    while recorded.recv_many(&mut batch, RECORD_BATCH).await > 0 {
        let mut written = false;
        for _ in 0..5 {
            match write(&shared, &batch).await {
                Ok(()) => {
                    written = true;
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, "webhooks: cannot record attempts; trying again");
                    tokio::time::sleep(shared.config.poll).await;
                }
            }
        }
        if !written {
            // Their claims run out and they are attempted again: a repeat, never a loss.
            tracing::error!(count = batch.len(), "webhooks: attempts left unrecorded");
        }
        batch.clear();
        shared.due.notify_one();
    }
}

async fn write(shared: &Shared, batch: &[Recorded]) -> db_store::Result<()> {
    let attempts: Vec<Attempted> = batch.iter().map(|r| r.attempt.clone()).collect();
    let gone: HashSet<WebhookId> = batch.iter().filter_map(|r| r.gone).collect();
    let now = shared.clock.now();
    let mut tx = shared.db.begin().await?;
    store::record_attempts(tx.conn(), &attempts).await?;
    for endpoint in gone {
        store::disable(tx.conn(), endpoint, "the endpoint answered 410 Gone", now).await?;
    }
    tx.commit().await
}

/// Claims this process took and will not attempt, given back at shutdown.
async fn release(shared: &Shared, ids: &[DeliveryId]) -> db_store::Result<()> {
    let mut conn = shared.db.write().await?;
    store::release(conn.conn(), ids).await
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use sqlx::types::Json;

    use super::*;
    use crate::domain::webhook::EventPattern;

    fn endpoint(workspace: WorkspaceId, patterns: &[&str], enabled: bool) -> Webhook {
        Webhook {
            id: WebhookId::generate(),
            workspace_id: workspace,
            url: "https://example.com/hooks".into(),
            description: None,
            events: Json(
                patterns
                    .iter()
                    .map(|p| EventPattern::try_from((*p).to_owned()).unwrap())
                    .collect(),
            ),
            secret: crate::domain::webhook::new_secret(),
            enabled,
            disabled_reason: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    fn event(
        position: i64,
        workspace: WorkspaceId,
        kind: EventType,
        subject: uuid::Uuid,
    ) -> StoredEvent {
        StoredEvent {
            position,
            workspace,
            kind,
            subject,
            payload: serde_json::json!({"x": position}),
            occurred_at: Utc::now(),
        }
    }

    #[test]
    fn events_go_to_the_subscribed_enabled_endpoints_of_their_workspace_only() {
        let (acme, other) = (WorkspaceId::generate(), WorkspaceId::generate());
        let messages = endpoint(acme, &["message.*"], true);
        let everything = endpoint(acme, &["*"], true);
        let off = endpoint(acme, &["*"], false);
        let elsewhere = endpoint(other, &["*"], true);
        let endpoints = [
            messages.clone(),
            everything.clone(),
            off.clone(),
            elsewhere.clone(),
        ];
        let subject = uuid::Uuid::now_v7();
        let batch = [
            event(1, acme, EventType::MessageSent, subject),
            event(2, acme, EventType::CampaignStarted, subject),
            // A test goes to the endpoint it names, enabled or not, whatever its events.
            event(3, acme, EventType::WebhookTest, off.id.0),
        ];
        let got: Vec<(i64, WebhookId)> = deliveries_of(&batch, &endpoints)
            .iter()
            .map(|d| (d.event_id, d.webhook))
            .collect();
        assert_eq!(
            got,
            [
                (1, messages.id),
                (1, everything.id),
                (2, everything.id),
                (3, off.id)
            ]
        );
        let body: serde_json::Value =
            serde_json::from_str(&deliveries_of(&batch[..1], &endpoints)[0].body).unwrap();
        assert_eq!(body["type"], "message.sent");
        assert_eq!(body["data"], serde_json::json!({"x": 1}));
        assert!(body["timestamp"].as_str().unwrap().ends_with('Z'), "{body}");
    }

    #[test]
    fn an_endpoint_gets_no_event_from_before_it_existed() {
        let acme = WorkspaceId::generate();
        let subject = uuid::Uuid::now_v7();
        let mut before = event(1, acme, EventType::MessageSent, subject);
        before.occurred_at = Utc::now() - chrono::Duration::seconds(1);
        let hook = endpoint(acme, &["*"], true);
        let after = event(2, acme, EventType::MessageSent, subject);
        let got: Vec<i64> = deliveries_of(&[before, after], &[hook])
            .iter()
            .map(|d| d.event_id)
            .collect();
        assert_eq!(got, [2]);
    }
}
