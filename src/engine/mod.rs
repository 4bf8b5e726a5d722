//! The dispatch engine: launching campaigns at their time, sender lanes that pace and send,
//! and the ingestion of what providers report back.
//!
//! One [`Engine`] runs in every `herald serve` process. Each tick it requeues claims whose
//! process died, launches campaigns whose time has come, and starts a lane for every sender with
//! work whose lease it can take. Lanes, not jobs, do the sending: a lane keeps its sender's pacing
//! state in memory, and its lease guarantees it is the only one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::clock::Clock;
use crate::domain::callback::{CallbackEvent, SenderEvents};
use crate::domain::ids::SenderId;
use crate::providers::ProviderContext;
use crate::service::callbacks;
use crate::store::lanes::Heard;
use crate::store::{self, Db};

mod lane;
/// The pacing gates as exact functions of time.
pub mod pacing;
/// Retry decisions and back-off.
pub mod retry;

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// How often the engine looks for due launches and senders with work.
    pub tick: Duration,
    /// How long a lane's lease on its sender lasts without renewal.
    pub lease: Duration,
    /// How long a claimed message stays claimed before another lane may send it again.
    pub claim_lease: Duration,
    /// How often claims whose lease ran out are put back in the queue.
    pub requeue_every: Duration,
    /// Messages a lane claims at once when nothing spaces its sends.
    pub batch_size: u32,
    /// Sends in flight at once per lane when nothing spaces its sends.
    pub concurrency: usize,
    /// A lane with nothing to send for this long gives its sender up.
    pub idle_exit: Duration,
    /// The wait before the first retry of a transient failure, doubled for each further one.
    pub retry_base: Duration,
    /// How often housekeeping runs: expired idempotency keys purged, old events pruned.
    pub sweep_every: Duration,
    /// How long the event log keeps what every consumer has read.
    pub event_retention: Duration,
    /// What the URLs in senders' settings must pass.
    pub url_guard: crate::url_guard::UrlGuard,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            tick: Duration::from_millis(250),
            lease: Duration::from_secs(30),
            claim_lease: Duration::from_secs(120),
            requeue_every: Duration::from_secs(5),
            batch_size: 1024,
            concurrency: 64,
            idle_exit: Duration::from_secs(2),
            retry_base: retry::DEFAULT_BASE,
            sweep_every: Duration::from_secs(15),
            event_retention: Duration::from_secs(7 * 24 * 3600),
            url_guard: crate::url_guard::UrlGuard::STRICT,
        }
    }
}

/// What the engine's tasks share.
pub(crate) struct Shared {
    db: Db,
    clock: Arc<dyn Clock>,
    providers: ProviderContext,
    config: EngineConfig,
    /// This process's name in lane leases.
    owner: String,
    wakeups: Wakeups,
    activity: SendActivity,
    shutdown: watch::Receiver<bool>,
}

impl Shared {
    fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }
}

/// Tells this process's engine that a sender has work to send now (an automatic reply), so
/// that it goes out without waiting for the engine's next look at the queue: the sender's lane
/// stops waiting, or the engine starts one. Work a lane in another process owns is found by
/// that process's next tick.
#[derive(Clone, Default)]
pub struct Wakeups(Arc<WakeupsInner>);

#[derive(Default)]
struct WakeupsInner {
    engine: tokio::sync::Notify,
    /// The senders whose lanes run in this process.
    lanes: std::sync::Mutex<HashMap<SenderId, Arc<tokio::sync::Notify>>>,
    /// Senders woken with no lane running here, for the engine to start.
    waiting: std::sync::Mutex<Vec<SenderId>>,
}

impl Wakeups {
    pub fn wake(&self, sender: SenderId) {
        let lane = self
            .0
            .lanes
            .lock()
            .ok()
            .and_then(|lanes| lanes.get(&sender).cloned());
        match lane {
            Some(lane) => lane.notify_one(),
            None => {
                if let Ok(mut waiting) = self.0.waiting.lock() {
                    waiting.push(sender);
                }
                self.0.engine.notify_one();
            }
        }
    }

    /// The signal of `sender`'s lane, which runs in this process from now on.
    fn lane(&self, sender: SenderId) -> Arc<tokio::sync::Notify> {
        let notify = Arc::new(tokio::sync::Notify::new());
        if let Ok(mut lanes) = self.0.lanes.lock() {
            lanes.insert(sender, notify.clone());
        }
        notify
    }

    fn lane_stopped(&self, sender: SenderId) {
        if let Ok(mut lanes) = self.0.lanes.lock() {
            lanes.remove(&sender);
        }
    }

    fn take_waiting(&self) -> Vec<SenderId> {
        self.0
            .waiting
            .lock()
            .map(|mut waiting| std::mem::take(&mut *waiting))
            .unwrap_or_default()
    }
}

/// A running engine; [`EngineHandle::shutdown`] stops it after in-flight sends are recorded.
pub struct EngineHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    wakeups: Wakeups,
    activity: SendActivity,
}

/// How many sends this process's lanes have recorded so far: work that shares the machine with
/// them (the webhook dispatcher) reads it to give way while campaigns are sending.
#[derive(Clone, Debug, Default)]
pub struct SendActivity(Arc<std::sync::atomic::AtomicU64>);

impl SendActivity {
    fn recorded(&self, sends: usize) {
        self.0.fetch_add(
            u64::try_from(sends).unwrap_or(u64::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    pub fn total(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl EngineHandle {
    /// How others in this process (the callbacks' handler) wake the engine's lanes.
    pub fn wakeups(&self) -> Wakeups {
        self.wakeups.clone()
    }

    /// The count of sends recorded by this engine's lanes.
    pub fn activity(&self) -> SendActivity {
        self.activity.clone()
    }

    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(error) = self.task.await {
            tracing::error!(%error, "engine task failed");
        }
    }
}

/// Starts the engine on the current runtime: lanes, launches at their time, imports, and
/// provider events.
pub async fn start(
    db: Db,
    clock: Arc<dyn Clock>,
    http: reqwest::Client,
    config: EngineConfig,
) -> Result<EngineHandle, store::StoreError> {
    let (stop, shutdown) = watch::channel(false);
    let (events, received) = mpsc::channel(EVENTS_QUEUED);
    let owner = format!("{}:{}", std::process::id(), uuid::Uuid::new_v4().simple());
    let wakeups = Wakeups::default();
    let activity = SendActivity::default();
    let shared = Arc::new(Shared {
        db,
        clock,
        providers: ProviderContext::new(http, events, None).with_url_guard(config.url_guard),
        config,
        owner,
        shutdown,
        wakeups: wakeups.clone(),
        activity: activity.clone(),
    });
    // Before the first look at the queue: work announced from then on is heard.
    if let Some(listener) = store::lanes::listen(&shared.db).await? {
        tokio::spawn(hear_other_processes(shared.clone(), listener));
    }
    let task = tokio::spawn(run(shared, received));
    Ok(EngineHandle {
        stop,
        task,
        wakeups,
        activity,
    })
}

/// Wakes the lanes of senders that other processes announce work for (PostgreSQL), so that a
/// reply queued by a process that does not run its sender's lane goes out without waiting for
/// this one's next tick; and tells this process's lanes of consent withdrawn in another, so
/// that a message they hold to that contact does not start. Ends with the engine.
async fn hear_other_processes(shared: Arc<Shared>, mut listener: store::lanes::Listener) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        tokio::select! {
            heard = listener.next() => match heard {
                Ok(Some(Heard::Work(sender))) => shared.wakeups.wake(sender),
                Ok(Some(Heard::Withdrawn(contact))) => store::withdrawals::tell_lanes_here(contact),
                Ok(None) => {}
                Err(error) => {
                    // The ticks still find the work, and each batch claimed ahead is checked
                    // for consent; listening is tried again after a tick.
                    tracing::warn!(%error, "other processes not heard");
                    tokio::time::sleep(shared.config.tick).await;
                }
            },
            _ = shutdown.changed() => return,
        }
    }
}

async fn run(shared: Arc<Shared>, events: mpsc::Receiver<SenderEvents>) {
    tracing::info!(owner = %shared.owner, "engine started");
    let (drain, drained) = tokio::sync::oneshot::channel();
    let ingesting = tokio::spawn(ingest_events(shared.clone(), events, drained));
    let mut lanes = Lanes::default();
    let mut shutdown = shared.shutdown.clone();
    let mut next_requeue = shared.clock.now();
    let mut next_sweep = shared.clock.now();
    let mut next_tick = tokio::time::Instant::now();
    let mut polls = Polls::default();
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next_tick) => {
                if let Err(error) = tick(&shared, &mut lanes, &mut next_requeue, &mut next_sweep).await {
                    tracing::error!(%error, "engine tick failed");
                }
                if let Err(error) = polls.visit(&shared).await {
                    tracing::error!(%error, "polled providers could not be visited");
                }
                next_tick = tokio::time::Instant::now() + shared.config.tick;
            }
            () = shared.wakeups.0.engine.notified() => {
                let mut woken = shared.wakeups.take_waiting();
                woken.sort_unstable();
                woken.dedup();
                let now = shared.clock.now();
                lanes.reap(now).await;
                // An automatic reply does not wait for the next tick to count it among the
                // senders with work: it may take the one lane over the share that is tolerated.
                let limit = lanes.share.saturating_add(1);
                if let Err(error) = start_lanes(&shared, &mut lanes, woken, limit, now).await {
                    tracing::error!(%error, "woken lanes could not start");
                }
            }
            _ = shutdown.changed() => break,
        }
    }
    lanes.leave_all();
    for (_, lane) in lanes.running {
        let _ = lane.task.await;
    }
    // The others count one process fewer from their next tick, and take its senders then.
    let left = async {
        let mut conn = shared.db.write().await?;
        store::processes::leave(conn.conn(), &shared.owner).await
    };
    if let Err(error) = left.await {
        tracing::warn!(%error, "could not say this process stopped; the others notice within a lease");
    }
    for (_, poll) in polls.running {
        let _ = poll.await;
    }
    // The lanes' last sends may have queued reports: they are applied before the engine stops.
    let _ = drain.send(());
    if let Err(error) = ingesting.await {
        tracing::error!(%error, "event ingestion failed");
    }
    tracing::info!("engine stopped");
}

/// The senders whose platform is polled for inbound messages (it pushes nothing), each polled
/// at its own interval, one poll at a time. Two processes may poll one sender at once: what
/// they bring is deduplicated by the platform's message ids, and the cursors only move forward
/// as far as what each stored.
#[derive(Default)]
struct Polls {
    next_at: HashMap<SenderId, chrono::DateTime<chrono::Utc>>,
    running: HashMap<SenderId, JoinHandle<Duration>>,
    next_scan: Option<chrono::DateTime<chrono::Utc>>,
    senders: Vec<SenderId>,
}

/// How often the list of polled senders is read again.
const POLLED_SENDERS_SCAN: Duration = Duration::from_secs(5);
/// When a poll failed before it knew its interval.
const POLL_RETRY: Duration = Duration::from_secs(30);

impl Polls {
    async fn visit(&mut self, shared: &Arc<Shared>) -> store::Result<()> {
        let now = shared.clock.now();
        if self.next_scan.is_none_or(|at| now >= at) {
            let polled: Vec<&str> = crate::providers::modules()
                .filter(|module| module.polls_inbound())
                .map(|module| module.name())
                .collect();
            let mut conn = shared.db.read().await?;
            self.senders = store::cursors::polled_senders(conn.conn(), &polled).await?;
            self.next_scan = Some(now + pacing::to_chrono(POLLED_SENDERS_SCAN));
        }
        let finished: Vec<SenderId> = self
            .running
            .iter()
            .filter(|(_, poll)| poll.is_finished())
            .map(|(sender, _)| *sender)
            .collect();
        for sender in finished {
            if let Some(poll) = self.running.remove(&sender) {
                let every = poll.await.unwrap_or(POLL_RETRY);
                self.next_at.insert(sender, now + pacing::to_chrono(every));
            }
        }
        if shared.is_shutting_down() {
            return Ok(());
        }
        for &sender in &self.senders {
            let due = self.next_at.get(&sender).is_none_or(|at| now >= *at);
            if due && !self.running.contains_key(&sender) {
                let task = tokio::spawn(poll_sender(shared.clone(), sender));
                self.running.insert(sender, task);
            }
        }
        Ok(())
    }
}

/// Polls one sender's platform and stores what it brought with the new cursors; returns how
/// long until the next poll.
async fn poll_sender(shared: Arc<Shared>, sender: SenderId) -> Duration {
    let polled = async {
        let (row, cursors) = {
            let mut conn = shared.db.read().await?;
            let row = store::senders::get_unscoped(conn.conn(), sender).await?;
            let mut cursors = store::cursors::of_sender(conn.conn(), sender).await?;
            // A platform's history before the sender came to Herald is not Herald's to answer.
            cursors
                .entry("since".to_owned())
                .or_insert_with(|| row.created_at.to_rfc3339());
            (row, cursors)
        };
        let module = crate::providers::module_of(row.provider);
        let poller = module
            .poller(&row.provider_config.0, &shared.providers.for_sender(sender))
            .map_err(|error| PollFailed::Provider(error.to_string()))?;
        let Some(poller) = poller else {
            return Ok(POLL_RETRY);
        };
        let polled = poller
            .poll(&cursors, shared.clock.now())
            .await
            .map_err(|error| PollFailed::Provider(error.to_string()))?;
        let inbound = polled.events.len();
        let batch = SenderEvents::new(sender, polled.events);
        let ingested = retrying("storing a poll", sender, || {
            callbacks::ingest_polled(&shared.db, &batch, &polled.cursors, shared.clock.now())
        })
        .await?;
        if ingested.replies_queued > 0 {
            shared.wakeups.wake(sender);
        }
        if inbound > 0 {
            crate::metrics::ingested(ingested.inbound_recorded, ingested.replies_queued);
            tracing::debug!(sender_id = %sender, inbound, "provider polled");
        }
        Ok::<_, PollFailed>(poller.every())
    };
    match polled.await {
        Ok(every) => every,
        Err(error) => {
            tracing::warn!(sender_id = %sender, %error, "polling the provider failed; trying again later");
            POLL_RETRY
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum PollFailed {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("{0}")]
    Provider(String),
}

/// The lanes this process runs, and the senders whose lane could not start, held back for a
/// while (doubling) instead of being retried every tick.
struct Lanes {
    running: HashMap<SenderId, RunningLane>,
    held_back: HashMap<SenderId, HeldBack>,
    /// The most lanes this process starts: its fair share of the senders with work among the
    /// live processes, as of the last tick.
    share: usize,
}

impl Default for Lanes {
    fn default() -> Self {
        Self {
            running: HashMap::new(),
            held_back: HashMap::new(),
            // Until the first tick has counted the processes.
            share: usize::MAX,
        }
    }
}

struct RunningLane {
    task: JoinHandle<LaneEnd>,
    /// Asks the lane to give its sender up.
    leave: watch::Sender<bool>,
}

impl RunningLane {
    fn is_leaving(&self) -> bool {
        *self.leave.borrow()
    }
}

/// Each process's share of `senders` senders with work among `processes` live processes:
/// ⌈S/N⌉, at least one (a sender woken between two ticks is not counted yet).
fn fair_share(senders: usize, processes: u32) -> usize {
    let processes = usize::try_from(processes.max(1)).unwrap_or(usize::MAX);
    senders.div_ceil(processes).max(1)
}

struct HeldBack {
    until: chrono::DateTime<chrono::Utc>,
    wait: Duration,
}

/// The first wait after a lane could not start, doubled each time it fails again.
const START_BACKOFF: Duration = Duration::from_secs(5);
const START_BACKOFF_MAX: Duration = Duration::from_secs(300);

impl Lanes {
    /// Takes the ends of finished lanes: a lane that could not start holds its sender back.
    async fn reap(&mut self, now: chrono::DateTime<chrono::Utc>) {
        let finished: Vec<SenderId> = self
            .running
            .iter()
            .filter(|(_, lane)| lane.task.is_finished())
            .map(|(sender, _)| *sender)
            .collect();
        for sender in finished {
            let Some(lane) = self.running.remove(&sender) else {
                continue;
            };
            match lane.task.await {
                Ok(LaneEnd::Stopped) => {
                    self.held_back.remove(&sender);
                }
                Ok(LaneEnd::CouldNotStart) | Err(_) => {
                    let wait = self
                        .held_back
                        .get(&sender)
                        .map_or(START_BACKOFF, |held| (held.wait * 2).min(START_BACKOFF_MAX));
                    tracing::warn!(sender_id = %sender, ?wait, "sender held back before its lane is tried again");
                    let until = now + pacing::to_chrono(wait);
                    self.held_back.insert(sender, HeldBack { until, wait });
                }
            }
        }
    }

    /// Lanes that keep their sender (not asked to leave).
    fn staying(&self) -> usize {
        self.running
            .values()
            .filter(|lane| !lane.is_leaving())
            .count()
    }

    /// Asks lanes beyond this process's share to give their senders up, once it holds more than
    /// one over it: they stop starting sends, record what they sent, hand back the rest and
    /// release their leases, and a process with fewer lanes takes the senders at its next tick.
    fn hand_over_beyond_share(&self) {
        let staying = self.staying();
        if staying <= self.share.saturating_add(1) {
            return;
        }
        let surplus = self
            .running
            .iter()
            .filter(|(_, lane)| !lane.is_leaving())
            .take(staying - self.share);
        for (sender, lane) in surplus {
            tracing::info!(sender_id = %sender, share = self.share, held = staying, "lane handed over to a process with fewer lanes");
            let _ = lane.leave.send(true);
        }
    }

    /// Asks every lane to give its sender up: the process stops.
    fn leave_all(&self) {
        for lane in self.running.values() {
            let _ = lane.leave.send(true);
        }
    }

    /// Whether a lane for `sender` may start here, this process holding at most `limit` lanes.
    fn may_start(
        &self,
        sender: SenderId,
        limit: usize,
        now: chrono::DateTime<chrono::Utc>,
    ) -> bool {
        self.staying() < limit
            && !self.running.contains_key(&sender)
            && self
                .held_back
                .get(&sender)
                .is_none_or(|held| now >= held.until)
    }
}

async fn tick(
    shared: &Arc<Shared>,
    lanes: &mut Lanes,
    next_requeue: &mut chrono::DateTime<chrono::Utc>,
    next_sweep: &mut chrono::DateTime<chrono::Utc>,
) -> store::Result<()> {
    let now = shared.clock.now();
    lanes.reap(now).await;
    if now >= *next_requeue {
        let store::messages::Expired { recorded, requeued } =
            store::messages::requeue_expired(&shared.db, now).await?;
        if recorded > 0 {
            tracing::warn!(recorded, "sends logged by a lane that stopped are recorded");
        }
        if requeued > 0 {
            tracing::warn!(requeued, "claims whose lease ran out are back in the queue");
        }
        *next_requeue = now + pacing::to_chrono(shared.config.requeue_every);
    }
    apply_parked_reports(shared, now).await?;
    // The database is the queue: a campaign whose time has come and an import nobody runs are
    // found here, a tick after they are due, whichever process wrote them.
    launch_due(shared).await?;
    run_waiting_imports(shared).await?;
    if now >= *next_sweep {
        let purged = {
            let mut conn = shared.db.write().await?;
            store::idempotency::purge_expired(conn.conn(), now).await?
        };
        if purged > 0 {
            tracing::debug!(purged, "expired idempotency keys purged");
        }
        store::logged_sends::sweep(&shared.db).await?;
        {
            let mut conn = shared.db.write().await?;
            let gone_before = now - pacing::to_chrono(shared.config.lease * 10);
            store::processes::forget_gone(conn.conn(), gone_before).await?;
        }
        prune_events(shared, now).await?;
        *next_sweep = now + pacing::to_chrono(shared.config.sweep_every);
    }
    let live = {
        let mut conn = shared.db.write().await?;
        let since = now - pacing::to_chrono(shared.config.lease);
        store::processes::alive(conn.conn(), &shared.owner, now, since).await?
    };
    let candidates = {
        let mut conn = shared.db.read().await?;
        store::lanes::senders_with_work(conn.conn(), now).await?
    };
    // A process alone takes every sender, whatever it counted a moment ago.
    lanes.share = if live <= 1 {
        usize::MAX
    } else {
        fair_share(candidates.len(), live)
    };
    lanes.hand_over_beyond_share();
    let limit = lanes.share;
    start_lanes(shared, lanes, candidates, limit, now).await
}

/// Starts a lane for each of `senders` that has none here, when its lease can be taken.
async fn start_lanes(
    shared: &Arc<Shared>,
    lanes: &mut Lanes,
    senders: Vec<SenderId>,
    limit: usize,
    now: chrono::DateTime<chrono::Utc>,
) -> store::Result<()> {
    for sender in senders {
        if !lanes.may_start(sender, limit, now) || shared.is_shutting_down() {
            continue;
        }
        let until = now + pacing::to_chrono(shared.config.lease);
        let acquired = {
            let mut conn = shared.db.write().await?;
            store::lanes::acquire(conn.conn(), sender, &shared.owner, now, until).await?
        };
        if let Some(last_send_at) = acquired {
            let (leave, leaving) = watch::channel(false);
            let task = tokio::spawn(run_lane(shared.clone(), sender, last_send_at, leaving));
            lanes.running.insert(sender, RunningLane { task, leave });
        }
    }
    Ok(())
}

/// Deletes events every consumer has read once they are older than the retention, a slice at a
/// time so that no sweep holds the writer long.
async fn prune_events(shared: &Shared, now: chrono::DateTime<chrono::Utc>) -> store::Result<()> {
    const SLICE: i64 = 10_000;
    let before = now - pacing::to_chrono(shared.config.event_retention);
    let mut pruned = 0;
    loop {
        let deleted = {
            let mut conn = shared.db.write().await?;
            store::events::prune(conn.conn(), before, SLICE).await?
        };
        pruned += deleted;
        if deleted < SLICE as u64 || shared.is_shutting_down() {
            break;
        }
    }
    if pruned > 0 {
        tracing::debug!(pruned, "old events pruned from the log");
    }
    Ok(())
}

/// Launches scheduled campaigns past their time. The launch is a compare-and-set, so when
/// several processes try, one wins and the rest are refused.
async fn launch_due(shared: &Shared) -> store::Result<()> {
    let now = shared.clock.now();
    let due = {
        let mut conn = shared.db.read().await?;
        store::campaigns::due(conn.conn(), now, 16).await?
    };
    for (workspace, campaign) in due {
        let launch = crate::service::campaigns::LaunchBy::Schedule;
        match crate::service::campaigns::launch(&shared.db, workspace, campaign, launch, now).await
        {
            Ok(_) => {}
            Err(crate::service::ServiceError::Store(error)) => return Err(error),
            Err(error) => tracing::error!(campaign_id = %campaign, %error, "campaign not launched"),
        }
    }
    Ok(())
}

/// How a lane's task ended.
enum LaneEnd {
    /// It ran, and stopped: idle, shut down, lease lost, or a store error.
    Stopped,
    /// It could not start; the sender is held back before the next try.
    CouldNotStart,
}

/// Runs imports that no run is working on: uploaded and not started yet, or left mid-file by a
/// process that died (its lease ran out). Each run takes the import's lease first, so another
/// process, or this one's next tick, finds it taken and leaves it.
async fn run_waiting_imports(shared: &Arc<Shared>) -> store::Result<()> {
    let now = shared.clock.now();
    let waiting = {
        let mut conn = shared.db.read().await?;
        store::imports::waiting(conn.conn(), now).await?
    };
    for id in waiting {
        tracing::info!(import_id = %id, "running an import");
        let shared = shared.clone();
        tokio::spawn(async move {
            let ran =
                crate::service::imports::run(&shared.db, shared.clock.as_ref(), &shared.owner, id)
                    .await;
            if let Err(error) = ran {
                tracing::error!(import_id = %id, %error, "import failed; its lease will run out and it is tried again");
            }
        });
    }
    Ok(())
}

async fn run_lane(
    shared: Arc<Shared>,
    sender: SenderId,
    last_send_at: Option<chrono::DateTime<chrono::Utc>>,
    leave: watch::Receiver<bool>,
) -> LaneEnd {
    let span = tracing::info_span!("lane", sender_id = %sender);
    let wakeups = shared.wakeups.clone();
    let end = async move {
        let mut lane = match lane::Lane::start(shared.clone(), sender, last_send_at, leave).await {
            Ok(lane) => lane,
            Err(error) => {
                could_not_start(&shared, sender, &error).await;
                return LaneEnd::CouldNotStart;
            }
        };
        tracing::debug!("lane started");
        match lane.run().await {
            Ok(()) => tracing::debug!("lane idle, stopping"),
            Err(error @ (lane::LaneError::SenderUnusable(_) | lane::LaneError::Settings(_))) => {
                // Like a sender whose settings no longer parse: paused, and held back.
                could_not_start(&shared, sender, &error).await;
                return LaneEnd::CouldNotStart;
            }
            Err(error) => tracing::warn!(%error, "lane stopped"),
        }
        lane.release().await;
        LaneEnd::Stopped
    }
    .instrument(span)
    .await;
    wakeups.lane_stopped(sender);
    end
}

/// A lane that cannot start (or whose provider refuses the sender itself) gives its lease back;
/// when the sender is the cause (a provider configuration that no longer parses, credentials
/// the platform refuses), its running campaigns are paused with the reason, since no retry can
/// send them until someone fixes the sender.
async fn could_not_start(shared: &Shared, sender: SenderId, error: &lane::LaneError) {
    tracing::error!(%error, "lane could not start");
    let now = shared.clock.now();
    let result = async {
        let mut conn = shared.db.write().await?;
        let problem = match error {
            lane::LaneError::Provider(problem) => Some(problem.to_string()),
            lane::LaneError::SenderUnusable(reason) | lane::LaneError::Settings(reason) => {
                Some(reason.clone())
            }
            lane::LaneError::LeaseLost | lane::LaneError::Store(_) => None,
        };
        if let Some(problem) = problem {
            let reason = format!("the sender cannot send: {problem}");
            let paused =
                store::campaigns::pause_for_sender(conn.conn(), sender, &reason, now).await?;
            if !paused.is_empty() {
                tracing::error!(paused = paused.len(), %reason, "sender's running campaigns paused");
            }
        }
        store::lanes::release(conn.conn(), sender, &shared.owner, now).await
    };
    if let Err(error) = result.await {
        tracing::warn!(%error, "could not settle a lane that failed to start");
    }
}

/// Attempts of a store write that must not be lost to a passing error before it is given up.
const WRITE_ATTEMPTS: u32 = 6;

/// Runs `write` until it succeeds, at most [`WRITE_ATTEMPTS`] times, waiting longer after each
/// failure (50 ms, 100 ms, …): for writes of what already happened — sends, provider reports —
/// which a deadlock or a busy database must not lose.
async fn retrying<T, F, Fut>(what: &str, sender: SenderId, mut write: F) -> store::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = store::Result<T>>,
{
    let mut attempt = 1;
    loop {
        match write().await {
            Ok(done) => return Ok(done),
            Err(error) if attempt < WRITE_ATTEMPTS => {
                tracing::warn!(sender_id = %sender, %error, attempt, "{what} failed; trying again");
                tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Events a provider may queue before it waits for ingestion to catch up.
const EVENTS_QUEUED: usize = 4096;
/// Events applied together in one transaction at most.
const EVENTS_PER_TRANSACTION: usize = 512;
/// How long a parked report waits for the send it names before it is dropped.
const PARKED_REPORTS_KEPT: chrono::Duration = chrono::Duration::hours(24);

/// Applies parked status reports whose sends are now recorded. An idle database costs one read.
async fn apply_parked_reports(
    shared: &Shared,
    now: chrono::DateTime<chrono::Utc>,
) -> store::Result<()> {
    let any = {
        let mut conn = shared.db.read().await?;
        store::messages::has_parked_reports(conn.conn()).await?
    };
    if !any {
        return Ok(());
    }
    let mut tx = shared.db.begin().await?;
    let swept = store::messages::apply_parked_reports(&mut tx, now, PARKED_REPORTS_KEPT).await?;
    tx.commit().await?;
    if swept.applied > 0 {
        tracing::debug!(applied = swept.applied, "parked status reports applied");
    }
    if swept.expired > 0 {
        tracing::warn!(
            dropped = swept.expired,
            "status reports that never found their message dropped"
        );
    }
    Ok(())
}

/// Applies events from providers, batching what arrives together per sender. When `drain`
/// fires, takes what is still queued and stops.
async fn ingest_events(
    shared: Arc<Shared>,
    mut events: mpsc::Receiver<SenderEvents>,
    drain: tokio::sync::oneshot::Receiver<()>,
) {
    let mut drain = std::pin::pin!(drain);
    let mut draining = false;
    loop {
        let first = if draining {
            events.recv().await
        } else {
            tokio::select! {
                first = events.recv() => first,
                _ = &mut drain => {
                    // Nothing new is taken in; what is queued is still applied.
                    events.close();
                    draining = true;
                    continue;
                }
            }
        };
        let Some(first) = first else { return };
        let mut by_sender: HashMap<SenderId, Vec<CallbackEvent>> = HashMap::new();
        by_sender
            .entry(first.sender)
            .or_default()
            .extend(first.events);
        let mut taken = 1;
        while taken < EVENTS_PER_TRANSACTION {
            let Ok(more) = events.try_recv() else { break };
            by_sender
                .entry(more.sender)
                .or_default()
                .extend(more.events);
            taken += 1;
        }
        for (sender, events) in by_sender {
            let batch = SenderEvents { sender, events };
            // On PostgreSQL a report can deadlock with the record of the send it reports on
            // (both lock the message): the loser's events are applied on the next attempt.
            let ingested = retrying("applying provider events", sender, || {
                callbacks::ingest(&shared.db, &batch, shared.clock.now())
            })
            .await;
            match ingested {
                Ok(ingested) if ingested.replies_queued > 0 => shared.wakeups.wake(sender),
                Ok(_) => {}
                Err(error) => {
                    tracing::error!(sender_id = %sender, %error, count = batch.events.len(), "provider events could not be applied; they are lost");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_process_takes_its_share_of_the_senders_rounded_up() {
        assert_eq!(fair_share(12, 1), 12);
        assert_eq!(fair_share(12, 3), 4);
        assert_eq!(fair_share(13, 3), 5);
        assert_eq!(fair_share(2, 3), 1);
        // No sender counted yet (one woken between ticks) still gets a lane.
        assert_eq!(fair_share(0, 2), 1);
        assert_eq!(fair_share(5, 0), 5);
    }

    #[tokio::test]
    async fn lanes_beyond_one_over_the_share_are_asked_to_leave() {
        let mut lanes = Lanes::default();
        let mut leaving = Vec::new();
        for n in 0..12u128 {
            let (leave, left) = watch::channel(false);
            let task = tokio::spawn(async { LaneEnd::Stopped });
            lanes.running.insert(
                SenderId(uuid::Uuid::from_u128(n)),
                RunningLane { task, leave },
            );
            leaving.push(left);
        }
        lanes.share = 11;
        lanes.hand_over_beyond_share();
        assert_eq!(lanes.staying(), 12, "one over the share is tolerated");
        lanes.share = 4;
        lanes.hand_over_beyond_share();
        assert_eq!(lanes.staying(), 4);
        assert_eq!(leaving.iter().filter(|left| *left.borrow()).count(), 8);
        let another = SenderId(uuid::Uuid::from_u128(99));
        assert!(!lanes.may_start(another, lanes.share, chrono::Utc::now()));
        assert!(
            lanes.may_start(another, lanes.share + 1, chrono::Utc::now()),
            "a woken sender may take the lane over the share"
        );
    }
}
