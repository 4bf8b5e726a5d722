//! The engine end to end: campaigns launched in the store, sent by lanes through the http
//! provider to a mock gateway on 127.0.0.1, on SQLite and (with HERALD_TEST_POSTGRES_URL)
//! PostgreSQL.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{SubsecRound, Utc};
use common::TestDb;
use herald::clock::SystemClock;
use herald::domain::campaign::{Audience, CampaignStatus};
use herald::domain::ids::{CampaignId, SenderId, WorkspaceId};
use herald::domain::message::{Counters, MessageStatus};
use herald::domain::pacing::Pacing;
use herald::domain::phone::Phone;
use herald::domain::provider::ProviderKind;
use herald::domain::time::Zone;
use herald::engine::{self, EngineConfig, EngineHandle};
use herald::store::campaigns::{self, CampaignFields};
use herald::store::contacts::{self, ContactFields};
use herald::store::messages::{self, MessageFilter};
use herald::store::senders::{self, SenderFields};
use herald::store::{Conn, Page, usage, withdrawals, workspaces};
use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

fn fast() -> EngineConfig {
    EngineConfig {
        tick: Duration::from_millis(20),
        lease: Duration::from_secs(5),
        claim_lease: Duration::from_secs(5),
        requeue_every: Duration::from_millis(100),
        batch_size: 16,
        concurrency: 8,
        idle_exit: Duration::from_millis(100),
        retry_base: Duration::from_millis(10),
        sweep_every: Duration::from_millis(50),
        // The gateways are mock servers on 127.0.0.1.
        url_guard: herald::url_guard::UrlGuard::ALLOW_PRIVATE,
        ..EngineConfig::default()
    }
}

fn phone(n: u32) -> String {
    format!("+2010{n:08}")
}

struct Scenario {
    db: TestDb,
    ws: WorkspaceId,
    sender: SenderId,
    campaign: CampaignId,
    engine: Option<EngineHandle>,
}

impl Scenario {
    async fn new(db: TestDb, gateway: &MockServer, pacing: Pacing, recipients: u32) -> Self {
        let now = Utc::now();
        let ws = {
            let mut conn = db.write().await.unwrap();
            workspaces::ensure(conn.conn(), "acme", now)
                .await
                .unwrap()
                .id
        };
        let mut tx = db.begin().await.unwrap();
        for n in 0..recipients {
            let mut fields = ContactFields::new(Phone::from_trusted(phone(n)));
            fields.name = Some(format!("Contact {n}"));
            contacts::insert(&mut tx, ws, &fields, now).await.unwrap();
        }
        let config = json!({"url": format!("{}/send", gateway.uri()), "headers": {"X-Key": "k"}});
        let fields = SenderFields {
            name: "Support line",
            provider: ProviderKind::Http,
            provider_config: &config,
            timezone: Zone::UTC,
            pacing: &pacing,
            warmup_started_on: None,
        };
        let sender = senders::insert(&mut tx, ws, &fields, "secret", now)
            .await
            .unwrap()
            .id;
        tx.commit().await.unwrap();
        let fields = CampaignFields {
            whatsapp: None,
            name: "Spring sale".into(),
            sender_id: sender,
            template_id: None,
            content: "Hi <<name|there>>, code <<code>>".into(),
            media_url: None,
            audience: Audience::All,
            variables: BTreeMap::from([("code".to_string(), "X1".to_string())]),
        };
        let campaign = {
            let mut conn = db.write().await.unwrap();
            campaigns::insert(conn.conn(), ws, &fields, now)
                .await
                .unwrap()
                .id
        };
        Self {
            db,
            ws,
            sender,
            campaign,
            engine: None,
        }
    }

    /// Stores other provider settings for the scenario's sender, as an edit through the API would
    /// (the store does not check them: a lane finds out).
    async fn switch_provider(&self, provider: &str, config: &Value) {
        self.rewrite_sender(provider, config, "UTC").await;
    }

    /// Writes the sender's settings as they are, checked by nothing (a row from an older
    /// version, a hand edit).
    async fn rewrite_sender(&self, provider: &str, config: &Value, timezone: &str) {
        let mut conn = self.db.write().await.unwrap();
        let current = senders::get(conn.conn(), self.ws, self.sender)
            .await
            .unwrap();
        let fields = SenderFields {
            name: &current.name,
            provider: provider.parse().unwrap(),
            provider_config: config,
            timezone: current.timezone,
            pacing: &Pacing::default(),
            warmup_started_on: None,
        };
        senders::update(conn.conn(), self.ws, self.sender, &fields, Utc::now())
            .await
            .unwrap();
        // The zone as text, unchecked: what a hand edit can leave behind.
        let sql = "UPDATE senders SET timezone = $1 WHERE id = $2";
        match conn.conn() {
            Conn::Sqlite(c) => sqlx::query(sql)
                .bind(timezone)
                .bind(self.sender)
                .execute(c)
                .await
                .map(drop),
            Conn::Postgres(c) => sqlx::query(sql)
                .bind(timezone)
                .bind(self.sender)
                .execute(c)
                .await
                .map(drop),
        }
        .unwrap();
    }

    /// Launches the campaign and waits for Herald to pause it; returns it with the reason.
    async fn launched_until_paused(&mut self) -> (campaigns::Campaign, String) {
        self.launch().await;
        let paused = self.wait_for_status(CampaignStatus::Paused).await;
        let reason = paused.paused_reason.clone().unwrap_or_default();
        (paused, reason)
    }

    async fn launch(&mut self) {
        let mut tx = self.db.begin().await.unwrap();
        campaigns::launch(&mut tx, self.ws, self.campaign, Utc::now())
            .await
            .unwrap();
        tx.commit().await.unwrap();
        self.start_engine(fast()).await;
    }

    async fn start_engine(&mut self, config: EngineConfig) {
        let engine = engine::start(
            self.db.db.clone(),
            Arc::new(SystemClock),
            reqwest::Client::new(),
            config,
        );
        self.engine = Some(engine.await.unwrap());
    }

    /// Launches the campaign and starts an engine that reads time from `clock`.
    async fn launch_on(&mut self, clock: &herald::clock::ManualClock) {
        use herald::clock::Clock;
        let mut tx = self.db.begin().await.unwrap();
        campaigns::launch(&mut tx, self.ws, self.campaign, clock.now())
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let engine = engine::start(
            self.db.db.clone(),
            Arc::new(clock.clone()),
            reqwest::Client::new(),
            manual_config(),
        );
        self.engine = Some(engine.await.unwrap());
    }

    async fn campaign(&self) -> campaigns::Campaign {
        let mut conn = self.db.read().await.unwrap();
        campaigns::get(conn.conn(), self.ws, self.campaign)
            .await
            .unwrap()
    }

    async fn truth(&self) -> Counters {
        let mut conn = self.db.read().await.unwrap();
        campaigns::counted_from_messages(conn.conn(), self.campaign)
            .await
            .unwrap()
    }

    async fn messages(&self) -> Vec<messages::Message> {
        let mut conn = self.db.read().await.unwrap();
        let filter = MessageFilter {
            campaign: Some(self.campaign),
            ..MessageFilter::default()
        };
        messages::list(
            conn.conn(),
            self.ws,
            filter,
            Page {
                page: 1,
                per_page: 200,
            },
        )
        .await
        .unwrap()
        .0
    }

    /// Messages whose send has started: sent or failed, or in flight (skipped ones never were).
    /// Messages claimed at least once. A claim adds to `attempts`, which never goes down, so
    /// reading page by page while the lane records cannot count one twice or lose one.
    async fn started(&self) -> usize {
        let mut conn = self.db.read().await.unwrap();
        let mut started = 0;
        for page in 1.. {
            let (messages, _) = messages::list(
                conn.conn(),
                self.ws,
                MessageFilter {
                    campaign: Some(self.campaign),
                    ..MessageFilter::default()
                },
                Page {
                    page,
                    per_page: 200,
                },
            )
            .await
            .unwrap();
            started += messages.iter().filter(|m| m.attempts > 0).count();
            if messages.len() < 200 {
                break;
            }
        }
        started
    }

    async fn pause(&self) {
        let mut conn = self.db.write().await.unwrap();
        campaigns::pause(conn.conn(), self.ws, self.campaign, Utc::now())
            .await
            .unwrap();
    }

    async fn wait_for_status(&self, status: CampaignStatus) -> campaigns::Campaign {
        for _ in 0..500 {
            let campaign = self.campaign().await;
            if campaign.status == status {
                return campaign;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "campaign never became {status}: {:?}",
            self.campaign().await.counters()
        );
    }

    async fn wait_until_sent(&self, at_least: i64) {
        for _ in 0..500 {
            if self.campaign().await.sent_count >= at_least {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("fewer than {at_least} sent");
    }

    async fn stop(mut self) -> TestDb {
        if let Some(engine) = self.engine.take() {
            engine.shutdown().await;
        }
        self.db
    }
}

async fn requests(gateway: &MockServer) -> Vec<Request> {
    gateway.received_requests().await.unwrap_or_default()
}

fn body(request: &Request) -> Value {
    serde_json::from_slice(&request.body).unwrap()
}

async fn accepting_gateway() -> MockServer {
    let gateway = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/send"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "gw-1"})))
        .mount(&gateway)
        .await;
    gateway
}

async fn a_campaign_reaches_every_recipient_through_the_http_provider(db: TestDb) {
    let gateway = accepting_gateway().await;
    let mut scenario = Scenario::new(db, &gateway, Pacing::default(), 40).await;
    scenario.launch().await;
    let done = scenario.wait_for_status(CampaignStatus::Completed).await;
    assert_eq!(
        done.counters(),
        Counters {
            total: 40,
            sent: 40,
            ..Counters::default()
        }
    );
    assert_eq!(done.counters(), scenario.truth().await);

    let received = requests(&gateway).await;
    assert_eq!(received.len(), 40, "each recipient once");
    let mut seen = HashMap::new();
    for request in &received {
        let body = body(request);
        let key = request
            .headers
            .get("idempotency-key")
            .unwrap()
            .to_str()
            .unwrap();
        assert_eq!(
            body["id"], key,
            "Herald's message id is the idempotency key"
        );
        assert_eq!(request.headers.get("x-key").unwrap(), "k");
        let to = body["to"].as_str().unwrap().to_owned();
        let n: u32 = to[5..].parse().unwrap();
        assert_eq!(body["body"], format!("Hi Contact {n}, code X1"));
        assert_eq!(body["media_url"], Value::Null);
        assert!(seen.insert(to, key.to_owned()).is_none());
    }
    let messages = scenario.messages().await;
    assert!(
        messages
            .iter()
            .all(|m| m.provider_message_id.as_deref() == Some("gw-1") && m.sent_at.is_some())
    );
    scenario.stop().await;
}

async fn a_campaigns_media_goes_with_each_of_its_messages(db: TestDb) {
    let gateway = accepting_gateway().await;
    let mut scenario = Scenario::new(db, &gateway, Pacing::default(), 3).await;
    let campaign = scenario.campaign().await;
    let fields = CampaignFields {
        whatsapp: None,
        name: campaign.name,
        sender_id: campaign.sender_id,
        template_id: None,
        content: campaign.content,
        media_url: Some("https://cdn.example/sale.jpg".into()),
        audience: campaign.audience.0,
        variables: campaign.variables.0,
    };
    {
        let mut conn = scenario.db.write().await.unwrap();
        campaigns::update(
            conn.conn(),
            scenario.ws,
            scenario.campaign,
            &fields,
            Utc::now(),
        )
        .await
        .unwrap();
    }
    scenario.launch().await;
    scenario.wait_for_status(CampaignStatus::Completed).await;
    let received = requests(&gateway).await;
    assert_eq!(received.len(), 3);
    for request in &received {
        assert_eq!(body(request)["media_url"], "https://cdn.example/sale.jpg");
    }
    scenario.stop().await;
}

async fn transient_failures_retry_and_fatal_ones_fail_at_once(db: TestDb) {
    let gateway = MockServer::start().await;
    let answer = |to: String, response: ResponseTemplate| {
        Mock::given(method("POST"))
            .and(path("/send"))
            .and(body_partial_json(json!({"to": to})))
            .respond_with(response)
    };
    answer(
        phone(0),
        ResponseTemplate::new(400).set_body_string("invalid number"),
    )
    .mount(&gateway)
    .await;
    answer(phone(1), ResponseTemplate::new(503))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&gateway)
        .await;
    answer(phone(2), ResponseTemplate::new(503).set_body_string("down"))
        .mount(&gateway)
        .await;
    answer(
        phone(3),
        ResponseTemplate::new(429).insert_header("Retry-After", "1"),
    )
    .up_to_n_times(1)
    .with_priority(1)
    .mount(&gateway)
    .await;
    Mock::given(method("POST"))
        .and(path("/send"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(10)
        .mount(&gateway)
        .await;

    let mut scenario = Scenario::new(db, &gateway, Pacing::default(), 5).await;
    scenario.launch().await;
    let done = scenario.wait_for_status(CampaignStatus::Completed).await;
    assert_eq!(
        done.counters(),
        Counters {
            total: 5,
            sent: 3,
            failed: 2,
            ..Counters::default()
        }
    );
    assert_eq!(done.counters(), scenario.truth().await);

    let by_phone: HashMap<String, messages::Message> = scenario
        .messages()
        .await
        .into_iter()
        .map(|m| (m.phone.clone(), m))
        .collect();
    let rejected = &by_phone[&phone(0)];
    assert_eq!(
        (rejected.status, rejected.attempts),
        (MessageStatus::Failed, 1),
        "4xx fails at once"
    );
    assert_eq!(
        rejected.error.as_deref(),
        Some("HTTP 400: invalid number"),
        "the answer is kept"
    );
    let recovered = &by_phone[&phone(1)];
    assert_eq!(
        (recovered.status, recovered.attempts),
        (MessageStatus::Sent, 3)
    );
    let down = &by_phone[&phone(2)];
    assert_eq!(
        (down.status, down.attempts),
        (MessageStatus::Failed, 5),
        "five attempts, then failed"
    );
    assert_eq!(down.error.as_deref(), Some("HTTP 503: down"));
    let throttled = &by_phone[&phone(3)];
    assert_eq!(
        (throttled.status, throttled.attempts),
        (MessageStatus::Sent, 2),
        "429 retried after Retry-After"
    );
    let sends_to_down = requests(&gateway)
        .await
        .iter()
        .filter(|r| body(r)["to"] == phone(2))
        .count();
    assert_eq!(sends_to_down, 5);
    scenario.stop().await;
}

async fn pause_stops_new_sends_and_resume_continues_where_it_stopped(db: TestDb) {
    let gateway = accepting_gateway().await;
    let spaced = Pacing {
        shift_min_ms: Some(15),
        shift_max_ms: Some(15),
        ..Pacing::default()
    };
    let mut scenario = Scenario::new(db, &gateway, spaced, 20).await;
    scenario.launch().await;
    scenario.wait_until_sent(4).await;
    scenario.pause().await;
    let started_before_pause = scenario.started().await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        scenario.started().await,
        started_before_pause,
        "no new send starts after the pause returned"
    );
    assert_eq!(
        requests(&gateway).await.len(),
        started_before_pause,
        "sends in flight finished, none began"
    );
    assert!(started_before_pause < 20);

    {
        let mut conn = scenario.db.write().await.unwrap();
        campaigns::resume(conn.conn(), scenario.ws, scenario.campaign, Utc::now())
            .await
            .unwrap();
    }
    let done = scenario.wait_for_status(CampaignStatus::Completed).await;
    assert_eq!(
        done.counters(),
        Counters {
            total: 20,
            sent: 20,
            ..Counters::default()
        }
    );
    let received = requests(&gateway).await;
    assert_eq!(
        received.len(),
        20,
        "resume continued exactly where it stopped: nobody twice, nobody missed"
    );
    let mut keys: Vec<_> = received
        .iter()
        .map(|r| {
            r.headers
                .get("idempotency-key")
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 20);
    scenario.stop().await;
}

async fn cancel_skips_what_is_left(db: TestDb) {
    let gateway = accepting_gateway().await;
    let spaced = Pacing {
        shift_min_ms: Some(15),
        shift_max_ms: Some(15),
        ..Pacing::default()
    };
    let mut scenario = Scenario::new(db, &gateway, spaced, 20).await;
    scenario.launch().await;
    scenario.wait_until_sent(3).await;
    {
        let mut tx = scenario.db.begin().await.unwrap();
        campaigns::cancel(&mut tx, scenario.ws, scenario.campaign, Utc::now())
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    let started = scenario.started().await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    let campaign = scenario.campaign().await;
    assert_eq!(campaign.status, CampaignStatus::Canceled);
    assert_eq!(requests(&gateway).await.len(), started);
    let counters = campaign.counters();
    assert_eq!(
        (
            counters.sent as usize,
            counters.skipped as usize,
            counters.pending
        ),
        (started, 20 - started, 0)
    );
    assert_eq!(counters, scenario.truth().await);
    scenario.stop().await;
}

async fn the_daily_cap_holds(db: TestDb) {
    let gateway = accepting_gateway().await;
    let capped = Pacing {
        daily_limit: Some(5),
        ..Pacing::default()
    };
    let mut scenario = Scenario::new(db, &gateway, capped, 12).await;
    scenario.launch().await;
    scenario.wait_until_sent(5).await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    let campaign = scenario.campaign().await;
    assert_eq!(
        (campaign.status, campaign.sent_count, campaign.pending_count),
        (CampaignStatus::Running, 5, 7)
    );
    assert_eq!(requests(&gateway).await.len(), 5);
    let today = Utc::now().date_naive();
    let mut conn = scenario.db.read().await.unwrap();
    assert_eq!(
        usage::sent_on(conn.conn(), scenario.sender, today)
            .await
            .unwrap(),
        5,
        "counted in the database"
    );
    drop(conn);
    scenario.stop().await;
}

/// Notes when each request arrives, and answers it `latency` later.
struct SlowGateway {
    arrivals: Arc<std::sync::Mutex<Vec<std::time::Instant>>>,
    latency: Duration,
}

impl wiremock::Respond for SlowGateway {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        self.arrivals
            .lock()
            .unwrap()
            .push(std::time::Instant::now());
        ResponseTemplate::new(200)
            .set_body_json(json!({"id": "gw-1"}))
            .set_delay(self.latency)
    }
}

/// A paced sender's sends start at its pace, not one answer after another: with a provider
/// that takes 300 ms and a pace of one each 100 ms, the next sends start while the first is
/// still out, and the sends are no closer together than the pace.
async fn paced_sends_start_at_the_pace_while_earlier_ones_are_out(db: TestDb) {
    let latency = Duration::from_millis(300);
    let arrivals = Arc::new(std::sync::Mutex::new(Vec::new()));
    let gateway = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(SlowGateway {
            arrivals: arrivals.clone(),
            latency,
        })
        .mount(&gateway)
        .await;
    let ten_a_second = Pacing {
        rate_per_minute: Some(600),
        ..Pacing::default()
    };
    let mut scenario = Scenario::new(db, &gateway, ten_a_second, 6).await;
    scenario.launch().await;
    let done = scenario.wait_for_status(CampaignStatus::Completed).await;
    assert_eq!(done.sent_count, 6);
    let arrivals = arrivals.lock().unwrap().clone();
    assert_eq!(arrivals.len(), 6, "each message sent once");
    let most_out_at_once = arrivals
        .iter()
        .map(|&at| {
            arrivals
                .iter()
                .filter(|&&other| other <= at && at - other < latency)
                .count()
        })
        .max()
        .unwrap();
    assert!(
        most_out_at_once >= 2,
        "sends overlapped: at most {most_out_at_once} out at once"
    );
    // The pace gates each claim; a send starts when its claim commits, so a slow claim (a
    // connection the pool opens meanwhile) may bring one start nearer the next, never the
    // sends as a whole closer than the pace.
    let slack = Duration::from_millis(150);
    for (i, early) in arrivals.iter().enumerate() {
        for (j, late) in arrivals.iter().enumerate().skip(i + 1) {
            let paced = Duration::from_millis(100) * (j - i) as u32;
            assert!(
                *late - *early + slack >= paced,
                "sends {i} and {j} are {:?} apart",
                *late - *early
            );
        }
    }
    scenario.stop().await;
}

async fn a_restarted_engine_keeps_the_gap_after_the_last_send(db: TestDb) {
    let gateway = accepting_gateway().await;
    let slow = Pacing {
        rate_per_minute: Some(120),
        ..Pacing::default()
    }; // one each 500 ms
    let mut scenario = Scenario::new(db, &gateway, slow, 3).await;
    scenario.launch().await;
    scenario.wait_until_sent(1).await;
    let db = scenario.stop().await;
    let first = Utc::now();
    let restarted = engine::start(
        db.db.clone(),
        Arc::new(SystemClock),
        reqwest::Client::new(),
        fast(),
    )
    .await
    .unwrap();
    for _ in 0..300 {
        if requests(&gateway).await.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let received = requests(&gateway).await;
    assert!(received.len() >= 2, "the restarted engine sends");
    let gap = Utc::now() - first;
    assert!(
        gap >= chrono::Duration::milliseconds(300),
        "the rate gap survived the restart ({gap})"
    );
    restarted.shutdown().await;
}

async fn a_scheduled_campaign_launches_at_its_time(db: TestDb) {
    let gateway = accepting_gateway().await;
    let mut scenario = Scenario::new(db, &gateway, Pacing::default(), 3).await;
    // No housekeeping: the engine's tick alone finds the campaign due.
    scenario
        .start_engine(EngineConfig {
            sweep_every: Duration::from_secs(3600),
            ..fast()
        })
        .await;
    let at = (Utc::now() + chrono::Duration::milliseconds(1200)).trunc_subsecs(6);
    let scheduled = herald::service::campaigns::schedule(
        &scenario.db,
        scenario.ws,
        scenario.campaign,
        &at.to_rfc3339(),
        None,
        Utc::now(),
    )
    .await
    .unwrap();
    assert_eq!(
        (scheduled.status, scheduled.scheduled_at),
        (CampaignStatus::Scheduled, Some(at))
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        scenario.campaign().await.status,
        CampaignStatus::Scheduled,
        "not before its time"
    );
    let done = scenario.wait_for_status(CampaignStatus::Completed).await;
    let started = done.started_at.unwrap();
    assert!(started >= at, "launched at {started}, scheduled for {at}");
    assert!(
        started - at < chrono::Duration::milliseconds(2500),
        "launched within about a second: {started} vs {at}"
    );
    assert_eq!(done.sent_count, 3);
    scenario.stop().await;
}

async fn a_campaign_whose_launch_job_was_lost_is_launched_by_the_sweep(db: TestDb) {
    let gateway = accepting_gateway().await;
    let mut scenario = Scenario::new(db, &gateway, Pacing::default(), 3).await;
    {
        // Scheduled and committed, but the process died before queueing the job.
        let mut conn = scenario.db.write().await.unwrap();
        campaigns::schedule(
            conn.conn(),
            scenario.ws,
            scenario.campaign,
            Utc::now(),
            Utc::now(),
        )
        .await
        .unwrap();
    }
    scenario.start_engine(fast()).await;
    let done = scenario.wait_for_status(CampaignStatus::Completed).await;
    assert_eq!(done.sent_count, 3);
    assert_eq!(requests(&gateway).await.len(), 3, "launched once");
    scenario.stop().await;
}

async fn the_sandbox_reports_deliveries_and_reads_through_the_callback_path(db: TestDb) {
    let gateway = accepting_gateway().await;
    let mut scenario = Scenario::new(db, &gateway, Pacing::default(), 25).await;
    let sandbox =
        json!({"deliver_rate": 1, "read_rate": 1, "deliver_after_ms": 0, "read_after_ms": 0});
    scenario.switch_provider("sandbox", &sandbox).await;
    scenario.launch().await;
    scenario.wait_for_status(CampaignStatus::Completed).await;
    for _ in 0..300 {
        if scenario.campaign().await.read_count == 25 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats = scenario.campaign().await.stats();
    assert_eq!(
        (
            stats.counters.sent,
            stats.counters.delivered,
            stats.counters.read
        ),
        (25, 25, 25)
    );
    assert_eq!((stats.delivery_rate, stats.read_rate), (100.0, 100.0));
    assert_eq!(scenario.campaign().await.counters(), scenario.truth().await);
    assert!(
        requests(&gateway).await.is_empty(),
        "the sandbox sends nowhere"
    );
    scenario.stop().await;
}

/// Provider events still queued when the engine stops are applied before it returns: a stop
/// mid-campaign leaves every message the sandbox accepted (and reported at once) delivered.
async fn a_stopping_engine_applies_the_reports_it_had_queued(db: TestDb) {
    let gateway = accepting_gateway().await;
    let mut scenario = Scenario::new(db, &gateway, Pacing::default(), 1500).await;
    let sandbox =
        json!({"deliver_rate": 1, "read_rate": 0, "deliver_after_ms": 0, "read_after_ms": 0});
    scenario.switch_provider("sandbox", &sandbox).await;
    let mut tx = scenario.db.begin().await.unwrap();
    campaigns::launch(&mut tx, scenario.ws, scenario.campaign, Utc::now())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    // Whole batches: a stopping lane sends the rest of its batch, and its last reports are still
    // queued when it is done.
    scenario
        .start_engine(EngineConfig {
            batch_size: 1024,
            concurrency: 64,
            ..fast()
        })
        .await;
    scenario.wait_until_sent(100).await;
    if let Some(engine) = scenario.engine.take() {
        engine.shutdown().await;
    }
    let stopped = scenario.campaign().await;
    assert!(stopped.sent_count > 0);
    assert_eq!(
        stopped.delivered_count, stopped.sent_count,
        "every report queued before the stop was applied"
    );
    assert_eq!(stopped.counters(), scenario.truth().await);
    scenario.stop().await;
}

/// A manual clock shared with the engine: days pass when the test says so.
async fn sent_by_now(scenario: &Scenario, expected: i64) {
    for _ in 0..400 {
        if scenario.campaign().await.sent_count >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Nothing beyond the cap goes out while the clock stands still.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(scenario.campaign().await.sent_count, expected);
}

fn manual_config() -> EngineConfig {
    EngineConfig {
        // Lanes re-read the clock at least every lease / 3.
        lease: Duration::from_millis(300),
        // Claims outlast the clock's jumps: a send that starts a jump after its typing delay
        // ended is still well within its claim (a shorter one would hand the message back).
        claim_lease: Duration::from_secs(120),
        ..fast()
    }
}

async fn warmup_days_roll_over_at_local_midnight_across_a_dst_change(db: TestDb) {
    use herald::clock::ManualClock;
    let gateway = accepting_gateway().await;
    let warmup = Pacing {
        warmup_enabled: true,
        warmup_start_limit: Some(2),
        warmup_max_limit: Some(6),
        warmup_days: Some(3),
        ..Pacing::default()
    };
    let mut scenario = Scenario::new(db, &gateway, warmup.clone(), 30).await;
    let new_york = |day: u32, hour: u32| {
        chrono::TimeZone::with_ymd_and_hms(&chrono_tz::America::New_York, 2026, 3, day, hour, 0, 0)
            .unwrap()
            .with_timezone(&Utc)
    };
    {
        let mut conn = scenario.db.write().await.unwrap();
        let current = senders::get(conn.conn(), scenario.ws, scenario.sender)
            .await
            .unwrap();
        let config = current.provider_config.0.clone();
        let fields = SenderFields {
            name: &current.name,
            provider: ProviderKind::Http,
            provider_config: &config,
            timezone: "America/New_York".parse().unwrap(),
            pacing: &warmup,
            warmup_started_on: chrono::NaiveDate::from_ymd_opt(2026, 3, 7),
        };
        senders::update(
            conn.conn(),
            scenario.ws,
            scenario.sender,
            &fields,
            Utc::now(),
        )
        .await
        .unwrap();
    }
    // Saturday 2026-03-07, 23:00 in New York: warmup day 1, cap 2.
    let clock = ManualClock::new(new_york(7, 23));
    scenario.launch_on(&clock).await;
    sent_by_now(&scenario, 2).await;
    // 23:59 is still day 1.
    clock.set(new_york(7, 23) + chrono::Duration::minutes(59));
    sent_by_now(&scenario, 2).await;
    // Local midnight: day 2 (the 23-hour day clocks spring forward), cap 4.
    clock.set(new_york(8, 0));
    sent_by_now(&scenario, 6).await;
    // 23:30 on the short day is still day 2.
    clock.set(new_york(8, 23) + chrono::Duration::minutes(30));
    sent_by_now(&scenario, 6).await;
    // Day 3, the last warmup day: the max, 6.
    clock.set(new_york(9, 9));
    sent_by_now(&scenario, 12).await;
    // After warmup, with no daily limit, the max holds.
    clock.set(new_york(10, 9));
    sent_by_now(&scenario, 18).await;
    let mut conn = scenario.db.read().await.unwrap();
    for (day, sent) in [(7, 2), (8, 4), (9, 6), (10, 6)] {
        let date = chrono::NaiveDate::from_ymd_opt(2026, 3, day).unwrap();
        assert_eq!(
            usage::sent_on(conn.conn(), scenario.sender, date)
                .await
                .unwrap(),
            sent,
            "March {day}"
        );
    }
    drop(conn);
    scenario.stop().await;
}

async fn nothing_is_sent_outside_the_send_window(db: TestDb) {
    use herald::clock::ManualClock;
    use herald::domain::pacing::SendWindow;
    let gateway = accepting_gateway().await;
    let weekdays = Pacing {
        send_window: Some(SendWindow {
            days: vec![1, 2, 3, 4, 5],
            start: "09:00".parse().unwrap(),
            end: "17:00".parse().unwrap(),
        }),
        ..Pacing::default()
    };
    let mut scenario = Scenario::new(db, &gateway, weekdays, 5).await;
    // Saturday 2026-11-21 10:00 UTC: closed all weekend.
    let saturday = chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 11, 21, 10, 0, 0).unwrap();
    let clock = ManualClock::new(saturday);
    scenario.launch_on(&clock).await;
    sent_by_now(&scenario, 0).await;
    assert_eq!(scenario.started().await, 0, "nothing claimed while closed");
    // Monday 08:59: still closed.
    clock.set(saturday + chrono::Duration::hours(46) + chrono::Duration::minutes(59));
    sent_by_now(&scenario, 0).await;
    // Monday 09:00: open.
    clock.set(saturday + chrono::Duration::hours(47));
    sent_by_now(&scenario, 5).await;
    scenario.stop().await;
}

/// On the engine's own clock: a lane waits for typing on the clock that decides, so a manual
/// clock moved by the test drives it, and the test takes no real time for the delays.
async fn typing_delays_each_send_by_its_length(db: TestDb) {
    use herald::clock::ManualClock;
    let gateway = accepting_gateway().await;
    // 1 character a second, clamped to exactly 150 s for these short messages.
    let typing = Pacing {
        typing_enabled: true,
        typing_cps: Some(1),
        typing_min_ms: Some(150_000),
        typing_max_ms: Some(150_000),
        ..Pacing::default()
    };
    let mut scenario = Scenario::new(db, &gateway, typing, 3).await;
    let clock = ManualClock::new(Utc::now().trunc_subsecs(6));
    scenario.launch_on(&clock).await;
    // Bounded by real time, not by steps: the clock runs ahead while the lane starts, and on a
    // loaded machine a PostgreSQL lane's first send came after 80 to 290 steps of 10 s, once
    // after more than 500.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while scenario.campaign().await.status != CampaignStatus::Completed {
        assert!(
            std::time::Instant::now() < deadline,
            "the campaign never completed"
        );
        clock.advance(chrono::Duration::seconds(10));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut claimed: Vec<_> = scenario
        .messages()
        .await
        .iter()
        .map(|m| m.sent_at.unwrap())
        .collect();
    claimed.sort();
    for pair in claimed.windows(2) {
        assert!(
            pair[1] - pair[0] >= chrono::Duration::seconds(150),
            "typing spaces sends: {pair:?}"
        );
    }
    scenario.stop().await;
}

/// A lane whose lease is taken while it shows "typing…" sends nothing, and hands the message
/// back to the queue at once (its attempt undone) instead of leaving it claimed.
async fn a_lane_that_loses_its_lease_while_typing_hands_the_message_back(db: TestDb) {
    use herald::clock::ManualClock;
    let gateway = accepting_gateway().await;
    let typing = Pacing {
        typing_enabled: true,
        typing_cps: Some(1),
        typing_min_ms: Some(150_000),
        typing_max_ms: Some(150_000),
        ..Pacing::default()
    };
    let mut scenario = Scenario::new(db, &gateway, typing, 1).await;
    let clock = ManualClock::new(Utc::now().trunc_subsecs(6));
    scenario.launch_on(&clock).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while scenario.started().await == 0 {
        assert!(std::time::Instant::now() < deadline, "never claimed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    {
        let mut conn = scenario.db.write().await.unwrap();
        let far = Utc::now() + chrono::Duration::hours(1);
        let taken = herald::store::lanes::acquire(
            conn.conn(),
            scenario.sender,
            "another-process",
            far,
            far + chrono::Duration::hours(1),
        )
        .await
        .unwrap();
        assert!(taken.is_some(), "the takeover");
    }
    // The lane renews its lease while it waits, finds it taken, and stops: the engine's clock
    // moves a second at a time, far from the typing delay's end.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        clock.advance(chrono::Duration::seconds(1));
        let messages = scenario.messages().await;
        if messages[0].status == MessageStatus::Pending {
            assert_eq!(messages[0].attempts, 0, "the claim's attempt is undone");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {:?}",
            messages[0].status
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(requests(&gateway).await.is_empty(), "nothing was sent");
    scenario.stop().await;
}

async fn a_pause_under_load_stops_every_new_send(db: TestDb) {
    let gateway = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(5)))
        .mount(&gateway)
        .await;
    let mut scenario = Scenario::new(db, &gateway, Pacing::default(), 1500).await;
    scenario.launch().await;
    scenario.wait_until_sent(200).await;
    scenario.pause().await;
    let claimed_at_pause = scenario.started().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        scenario.started().await,
        claimed_at_pause,
        "no claim after the pause returned"
    );
    assert_eq!(
        requests(&gateway).await.len(),
        claimed_at_pause,
        "every started send finished, none began"
    );
    assert!(claimed_at_pause < 1500, "paused mid-campaign");
    let paused = scenario.campaign().await;
    assert_eq!(paused.counters(), scenario.truth().await);
    assert_eq!(paused.sent_count as usize, claimed_at_pause);
    scenario.stop().await;
}

/// A lane claims its next batch while it sends the current one; a stop (SIGTERM) starts no
/// further send, records every send that happened, and hands the rest back to the queue at
/// once — nothing stranded in `sending` until its claim runs out, nothing sent twice.
async fn a_stopping_engine_records_what_it_sent_and_hands_back_the_rest(db: TestDb) {
    // Slow answers: when the stop comes, the lane has the rest of its batch (16) and the batch
    // it claimed ahead (16) still to start, and a slot frees only every 300 ms.
    let gateway = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(300)))
        .mount(&gateway)
        .await;
    let mut scenario = Scenario::new(db, &gateway, Pacing::default(), 200).await;
    scenario.launch().await;
    scenario.wait_until_sent(8).await;
    let asked_before_the_stop = requests(&gateway).await.len();
    if let Some(engine) = scenario.engine.take() {
        engine.shutdown().await;
    }
    // A stop that sent what it had claimed would start 16 or more sends after it.
    let asked_after = requests(&gateway).await.len() - asked_before_the_stop;
    assert!(
        asked_after <= fast().concurrency,
        "{asked_after} sends started after the stop"
    );
    let started = scenario.started().await;
    let stopped = scenario.campaign().await;
    assert!(started < 200, "stopped mid-campaign");
    assert_eq!(
        stopped.sent_count as usize, started,
        "every claimed message was sent and recorded"
    );
    assert_eq!(requests(&gateway).await.len(), started, "and sent once");
    let messages = scenario.messages().await;
    assert!(
        messages.iter().all(|m| m.status != MessageStatus::Sending),
        "nothing left claimed"
    );
    assert!(
        messages
            .iter()
            .filter(|m| m.status == MessageStatus::Pending)
            .all(|m| m.attempts == 0),
        "what was handed back was never tried"
    );
    assert_eq!(stopped.counters(), scenario.truth().await);
    scenario.stop().await;
}

/// A gateway that answers each send after 300 ms, and a 200-recipient campaign on a lane of
/// batches of 16, four sends out at once: once the first four are recorded, four are out, eight
/// of the batch wait for a slot, and sixteen more are claimed ahead.
async fn a_batch_in_flight_when_consent_is_withdrawn(db: TestDb) -> (Scenario, MockServer) {
    let gateway = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(300)))
        .mount(&gateway)
        .await;
    // A cap that never binds, so that the day's count of sends is kept.
    let counted = Pacing {
        daily_limit: Some(10_000),
        ..Pacing::default()
    };
    let mut scenario = Scenario::new(db, &gateway, counted, 200).await;
    let mut tx = scenario.db.begin().await.unwrap();
    campaigns::launch(&mut tx, scenario.ws, scenario.campaign, Utc::now())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    scenario
        .start_engine(EngineConfig {
            concurrency: 4,
            // Long enough for batches of 16 at the provider's timeout (see `batch_limit`).
            claim_lease: Duration::from_secs(600),
            ..fast()
        })
        .await;
    scenario.wait_until_sent(4).await;
    (scenario, gateway)
}

/// Every contact, as this process's store opts them out (STOP, the API, the dashboard).
async fn opt_everyone_out(scenario: &Scenario) {
    let mut tx = scenario.db.begin().await.unwrap();
    for contact in all_contacts(scenario).await {
        contacts::set_opted_out(
            tx.conn(),
            scenario.ws,
            contact,
            Some(Utc::now()),
            Utc::now(),
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
}

async fn all_contacts(scenario: &Scenario) -> Vec<herald::domain::ids::ContactId> {
    let mut conn = scenario.db.read().await.unwrap();
    let page = Page {
        page: 1,
        per_page: 500,
    };
    contacts::list(conn.conn(), scenario.ws, &Default::default(), page)
        .await
        .unwrap()
        .0
        .into_iter()
        .map(|contact| contact.id)
        .collect()
}

/// After the withdrawal, the campaign ends with every message sent or skipped for it, the
/// counters equal to the truth and the day's cap charged for the sends alone; returns how many sends started after it.
async fn sends_after_withdrawal(scenario: &Scenario, gateway: &MockServer, asked: usize) -> usize {
    let done = scenario.wait_for_status(CampaignStatus::Completed).await;
    assert_eq!(done.counters(), scenario.truth().await);
    let started_after = requests(gateway).await.len() - asked;
    assert_eq!(done.sent_count as usize, asked + started_after);
    assert_eq!(done.sent_count + done.skipped_count, 200);
    let messages = scenario.messages().await;
    assert!(
        messages
            .iter()
            .filter(|m| m.status == MessageStatus::Skipped)
            .all(|m| m.error.as_deref() == Some("opted_out")),
        "skipped for the opt-out"
    );
    let mut conn = scenario.db.read().await.unwrap();
    let counted = usage::sent_on(conn.conn(), scenario.sender, Utc::now().date_naive())
        .await
        .unwrap();
    assert_eq!(
        counted, done.sent_count,
        "what was skipped took nothing from the cap"
    );
    started_after
}

/// How every contact's consent is withdrawn while a lane holds messages to them.
enum Withdrawal {
    /// By this process's store, as STOP, the API or the dashboard would: the lane hears of it.
    HeardHere,
    /// Where this process cannot hear it: another process on a PostgreSQL database (one process
    /// serves a SQLite file) whose telling of it never arrived.
    Elsewhere,
    /// By another process on a PostgreSQL database, which tells the others as its store does.
    ToldByAnotherProcess,
}

/// Withdraws everyone's consent while a batch is in flight; returns how many sends started after.
async fn sends_started_after(db: TestDb, withdrawal: Withdrawal) -> usize {
    let (scenario, gateway) = a_batch_in_flight_when_consent_is_withdrawn(db).await;
    let asked = requests(&gateway).await.len();
    match withdrawal {
        Withdrawal::HeardHere => opt_everyone_out(&scenario).await,
        Withdrawal::Elsewhere => opt_everyone_out_unheard(&scenario, false).await,
        Withdrawal::ToldByAnotherProcess => opt_everyone_out_unheard(&scenario, true).await,
    }
    let started_after = sends_after_withdrawal(&scenario, &gateway, asked).await;
    scenario.stop().await;
    started_after
}

/// What another process's opt-outs leave in the database, without announcing them in this
/// process; `told`: with the notice its store gives the other processes.
async fn opt_everyone_out_unheard(scenario: &Scenario, told: bool) {
    let mut tx = scenario.db.begin().await.unwrap();
    let sql = "UPDATE contacts SET opted_out_at = $1";
    match tx.conn() {
        Conn::Sqlite(c) => sqlx::query(sql).bind(Utc::now()).execute(c).await.map(drop),
        Conn::Postgres(c) => sqlx::query(sql).bind(Utc::now()).execute(c).await.map(drop),
    }
    .unwrap();
    for contact in all_contacts(scenario).await {
        messages::skip_pending_to(tx.conn(), contact, "opted_out", Utc::now())
            .await
            .unwrap();
        if told {
            withdrawals::tell_other_processes(tx.conn(), contact)
                .await
                .unwrap();
        }
    }
    tx.commit().await.unwrap();
}

/// STOP while a lane holds messages to the contact, in the batch it sends and in the one it
/// claimed ahead: none of them starts after the opt-out commits; only the sends already out
/// finish.
async fn no_send_starts_after_the_contact_opts_out(db: TestDb) {
    let started_after = sends_started_after(db, Withdrawal::HeardHere).await;
    // The four out at the opt-out; the eight waiting for a slot and the sixteen claimed ahead
    // would follow without the lane hearing of it.
    assert!(
        started_after <= 4,
        "{started_after} sends started after the opt-out"
    );
}

/// Consent withdrawn where this process cannot hear it: the batch claimed ahead is checked
/// against the database before it starts.
async fn a_batch_claimed_ahead_is_checked_for_consent_before_it_starts(db: TestDb) {
    let started_after = sends_started_after(db, Withdrawal::Elsewhere).await;
    // The four out and the eight of their batch: the sixteen claimed ahead would follow.
    assert!(
        started_after <= 12,
        "{started_after} sends started after the opt-out"
    );
}

/// STOP handled by another process on PostgreSQL: its notice reaches this process's lane when
/// the opt-out commits, and the messages the lane holds to the contact do not start, as when
/// this process handles it.
async fn a_withdrawal_in_another_process_stops_the_batch_being_sent(db: TestDb) {
    let started_after = sends_started_after(db, Withdrawal::ToldByAnotherProcess).await;
    // The four out at the opt-out; without the notice, the eight of their batch would follow.
    assert!(
        started_after <= 4,
        "{started_after} sends started after the opt-out"
    );
}

/// Another process takes the sender's lease mid-campaign (as it would once this one stalled
/// past its lease): the lane claims nothing more, records what it sent, hands back what it
/// claimed and did not send, and nothing is left in flight.
async fn a_lane_whose_lease_is_taken_claims_nothing_more(db: TestDb) {
    let gateway = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(20)))
        .mount(&gateway)
        .await;
    let mut scenario = Scenario::new(db, &gateway, Pacing::default(), 400).await;
    let mut tx = scenario.db.begin().await.unwrap();
    campaigns::launch(&mut tx, scenario.ws, scenario.campaign, Utc::now())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    scenario
        .start_engine(EngineConfig {
            // A long lease: the lane renews it (and finds it lost) only every 10 s, and its
            // heartbeat every second; the claim's own check is what stops it at once.
            lease: Duration::from_secs(30),
            ..fast()
        })
        .await;
    scenario.wait_until_sent(40).await;
    {
        let mut conn = scenario.db.write().await.unwrap();
        let taken = herald::store::lanes::acquire(
            conn.conn(),
            scenario.sender,
            "another-process",
            Utc::now() + chrono::Duration::hours(1),
            Utc::now() + chrono::Duration::hours(2),
        )
        .await
        .unwrap();
        assert!(taken.is_some(), "the takeover");
    }
    // The lane notices at its next claim or heartbeat, and settles.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let settled = scenario.started().await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(scenario.started().await, settled, "nothing claimed after");
    let messages = scenario.messages().await;
    assert!(
        messages.iter().all(|m| m.status != MessageStatus::Sending),
        "nothing left in flight: unsent claims were handed back"
    );
    let sent = messages
        .iter()
        .filter(|m| m.status == MessageStatus::Sent)
        .count();
    assert!(sent < 400, "stopped mid-campaign");
    assert_eq!(requests(&gateway).await.len(), sent, "every send recorded");
    assert_eq!(scenario.campaign().await.counters(), scenario.truth().await);
    scenario.stop().await;
}

/// Two engines (two processes) on one database and one paced sender: only one lane sends at a
/// time, so the sender's gap holds between every two sends, whoever made them.
async fn two_engines_never_send_for_one_sender_at_once(db: TestDb) {
    let gateway = accepting_gateway().await;
    let gap = Pacing {
        shift_min_ms: Some(40),
        shift_max_ms: Some(40),
        ..Pacing::default()
    };
    let mut scenario = Scenario::new(db, &gateway, gap, 12).await;
    scenario.launch().await;
    let second = engine::start(
        scenario.db.db.clone(),
        Arc::new(SystemClock),
        reqwest::Client::new(),
        fast(),
    )
    .await
    .unwrap();
    scenario.wait_for_status(CampaignStatus::Completed).await;
    second.shutdown().await;
    let mut sent_at: Vec<_> = scenario
        .messages()
        .await
        .iter()
        .map(|m| m.sent_at.unwrap())
        .collect();
    sent_at.sort();
    assert_eq!(requests(&gateway).await.len(), 12, "each once");
    for pair in sent_at.windows(2) {
        assert!(
            pair[1] - pair[0] >= chrono::Duration::milliseconds(35),
            "two lanes sent at once: {pair:?}"
        );
    }
    scenario.stop().await;
}

/// A sender whose stored settings no longer make a provider cannot send anything: its running
/// campaigns are paused with the reason (instead of a lane failing every tick), and resuming
/// clears it.
async fn a_sender_that_cannot_send_pauses_its_campaigns_with_the_reason(db: TestDb) {
    let gateway = accepting_gateway().await;
    let mut scenario = Scenario::new(db, &gateway, Pacing::default(), 5).await;
    scenario
        .switch_provider("http", &json!({"url": "not an address"}))
        .await;
    let (paused, reason) = scenario.launched_until_paused().await;
    assert!(
        reason.contains("provider_config.url"),
        "the reason names what is wrong: {reason}"
    );
    assert!(requests(&gateway).await.is_empty(), "nothing was sent");
    assert_eq!(paused.counters(), scenario.truth().await);
    let resumed = {
        let mut conn = scenario.db.write().await.unwrap();
        campaigns::resume(conn.conn(), scenario.ws, scenario.campaign, Utc::now())
            .await
            .unwrap()
    };
    assert_eq!(resumed.paused_reason, None, "resuming clears the reason");
    scenario.stop().await;
}

/// A provider that refuses the sender itself (a blocked account) stops its lane at once: the
/// campaign is paused with the platform's reason, the refused message waits (neither failed nor
/// sent), and nothing more is tried.
async fn a_provider_that_refuses_the_sender_pauses_its_campaigns(db: TestDb) {
    let gateway = accepting_gateway().await;
    let mut scenario = Scenario::new(db, &gateway, Pacing::default(), 5).await;
    scenario
        .switch_provider("sandbox", &json!({"refuse_sender": "account blocked"}))
        .await;
    let (paused, reason) = scenario.launched_until_paused().await;
    assert!(reason.contains("sandbox: account blocked"), "{reason}");
    assert_eq!(paused.counters(), scenario.truth().await);
    let messages = scenario.messages().await;
    assert!(
        messages
            .iter()
            .all(|m| m.status == MessageStatus::Pending && m.sent_at.is_none()),
        "nothing failed or sent: {:?}",
        messages.iter().map(|m| m.status).collect::<Vec<_>>()
    );
    assert!(
        messages.iter().map(|m| m.attempts).sum::<i64>() <= 8,
        "no more than one round of sends was tried"
    );
    scenario.stop().await;
}

/// A stored time zone that is no zone is never read as UTC (which would move the sender's day,
/// cap and window): the sender cannot send until it is fixed, and says why.
async fn a_sender_with_an_unknown_time_zone_pauses_instead_of_sending_in_utc(db: TestDb) {
    let gateway = accepting_gateway().await;
    let mut scenario = Scenario::new(db, &gateway, Pacing::default(), 3).await;
    scenario
        .rewrite_sender("sandbox", &json!({}), "Mars/Olympus")
        .await;
    let (_, reason) = scenario.launched_until_paused().await;
    assert!(reason.contains("Mars/Olympus"), "{reason}");
    assert!(
        scenario.messages().await.iter().all(|m| m.attempts == 0),
        "nothing was tried"
    );
    scenario.stop().await;
}

/// An upload committed whose job was never queued (its process died between the two) is run by
/// the engine's sweep; a second run of it finds it taken and leaves it alone.
async fn an_uploaded_import_is_run_by_the_engine_once(db: TestDb) {
    use herald::clock::{Clock, ManualClock};
    use herald::store::imports;

    let clock = ManualClock::new(Utc::now().trunc_subsecs(6));
    let ws = {
        let mut conn = db.write().await.unwrap();
        workspaces::ensure(conn.conn(), "acme", clock.now())
            .await
            .unwrap()
            .id
    };
    // Written by another process (or one that died right after the upload's commit).
    let csv = b"phone,name\n+15551230001,Ann\n+15551230002,Bo\n";
    let import = {
        let mut conn = db.write().await.unwrap();
        imports::insert(conn.conn(), ws, csv, clock.now())
            .await
            .unwrap()
    };
    let engine = engine::start(
        db.db.clone(),
        Arc::new(clock.clone()),
        reqwest::Client::new(),
        fast(),
    )
    .await
    .unwrap();
    let mut done = None;
    for _ in 0..300 {
        let mut conn = db.read().await.unwrap();
        let current = imports::get(conn.conn(), ws, import.id).await.unwrap();
        if current.status.as_str() == "completed" {
            done = Some(current);
            break;
        }
        drop(conn);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let done = done.expect("the engine ran the import");
    assert_eq!((done.total, done.created), (2, 2));
    // Another run (another process's tick) finds it finished and does nothing.
    herald::service::imports::run(&db, &clock, "another-process", import.id)
        .await
        .unwrap();
    let mut conn = db.read().await.unwrap();
    let again = imports::get(conn.conn(), ws, import.id).await.unwrap();
    assert_eq!((again.total, again.created), (2, 2), "imported once");
    drop(conn);
    engine.shutdown().await;
}

/// An engine whose first look at the queue found nothing, and whose next is a minute away.
async fn an_engine_between_its_looks(db: TestDb) -> (Scenario, MockServer) {
    let gateway = accepting_gateway().await;
    let mut scenario = Scenario::new(db, &gateway, Pacing::default(), 0).await;
    scenario
        .start_engine(EngineConfig {
            tick: Duration::from_secs(60),
            ..fast()
        })
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    (scenario, gateway)
}

/// Queues a single message (an automatic reply) of the scenario's sender, committed.
async fn queue_a_reply(scenario: &Scenario) {
    let message = messages::NewMessage {
        sender_id: scenario.sender,
        contact_id: None,
        phone: "+201000000001",
        body: "Thanks, we got it",
        media_url: None,
        not_before: Utc::now(),
        reply_to: None,
        whatsapp: None,
    };
    let mut tx = scenario.db.begin().await.unwrap();
    messages::insert_single(tx.conn(), scenario.ws, &message, Utc::now())
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

/// Waits up to five seconds (not the minute to the engine's next look) for a send.
async fn sent_before_the_next_look(gateway: &MockServer) {
    let queued = tokio::time::Instant::now();
    while requests(gateway).await.is_empty() {
        assert!(
            queued.elapsed() < Duration::from_secs(5),
            "the reply waited for the engine's next look"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An automatic reply must not wait for the engine's next look at the queue: with a tick of a
/// minute, only the wake-up can send this message within seconds (on PostgreSQL the database's
/// announcement would also wake it: the next test).
async fn a_woken_sender_sends_without_waiting_for_the_next_tick(db: TestDb) {
    let (scenario, gateway) = an_engine_between_its_looks(db).await;
    queue_a_reply(&scenario).await;
    scenario
        .engine
        .as_ref()
        .unwrap()
        .wakeups()
        .wake(scenario.sender);
    sent_before_the_next_look(&gateway).await;
    scenario.stop().await;
}

/// On PostgreSQL a reply may be queued by a process that does not run its sender's lane (the
/// callback reached another one): the database tells every process, and the one that can send
/// does so without waiting for its next look at the queue.
async fn work_queued_by_another_process_is_sent_without_waiting_for_a_tick(db: TestDb) {
    let (scenario, gateway) = an_engine_between_its_looks(db).await;
    // Queued as another process would: this engine's own wake-ups are not called.
    queue_a_reply(&scenario).await;
    sent_before_the_next_look(&gateway).await;
    scenario.stop().await;
}

postgres_tests!(
    a_batch_claimed_ahead_is_checked_for_consent_before_it_starts,
    a_withdrawal_in_another_process_stops_the_batch_being_sent,
    work_queued_by_another_process_is_sent_without_waiting_for_a_tick,
);

dialect_tests!(
    no_send_starts_after_the_contact_opts_out,
    a_woken_sender_sends_without_waiting_for_the_next_tick,
    a_stopping_engine_applies_the_reports_it_had_queued,
    an_uploaded_import_is_run_by_the_engine_once,
    a_sender_that_cannot_send_pauses_its_campaigns_with_the_reason,
    a_provider_that_refuses_the_sender_pauses_its_campaigns,
    a_sender_with_an_unknown_time_zone_pauses_instead_of_sending_in_utc,
    a_lane_whose_lease_is_taken_claims_nothing_more,
    two_engines_never_send_for_one_sender_at_once,
    a_stopping_engine_records_what_it_sent_and_hands_back_the_rest,
    typing_delays_each_send_by_its_length,
    a_lane_that_loses_its_lease_while_typing_hands_the_message_back,
    a_pause_under_load_stops_every_new_send,
    warmup_days_roll_over_at_local_midnight_across_a_dst_change,
    nothing_is_sent_outside_the_send_window,
    the_sandbox_reports_deliveries_and_reads_through_the_callback_path,
    a_scheduled_campaign_launches_at_its_time,
    a_campaign_whose_launch_job_was_lost_is_launched_by_the_sweep,
    a_campaign_reaches_every_recipient_through_the_http_provider,
    a_campaigns_media_goes_with_each_of_its_messages,
    transient_failures_retry_and_fatal_ones_fail_at_once,
    pause_stops_new_sends_and_resume_continues_where_it_stopped,
    cancel_skips_what_is_left,
    the_daily_cap_holds,
    a_restarted_engine_keeps_the_gap_after_the_last_send,
    paced_sends_start_at_the_pace_while_earlier_ones_are_out,
);
