//! Outbound webhooks with real processes: `kill -9` a `herald serve` in the middle of its
//! deliveries, start another, and every event reaches the endpoint (a repeat carries the same
//! `webhook-id`); and on PostgreSQL two processes deliver each attempt once.

mod common;

use common::Server;
use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use herald::domain::event::{ContactEvent, EventType};
use herald::domain::ids::{ContactId, WorkspaceId};
use herald::service::webhooks::{self, WebhookInput};
use herald::store::events::{self, NewEvent};
use herald::store::workspaces;
use herald::url_guard::UrlGuard;

/// Events of each test: three read batches of the fan-out's 1,024 and some.
const EVENTS: usize = 3_000;

fn serve(database_url: &str) -> Server {
    let child = Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("serve")
        .env("HERALD_DATABASE_URL", database_url)
        .env("HERALD_LISTEN", "127.0.0.1:0")
        .env("HERALD_ALLOW_PRIVATE_URLS", "true")
        .env("HERALD_WEBHOOK_LEASE_MS", "1500")
        .env("HERALD_ENGINE_TICK_MS", "50")
        .env("RUST_LOG", "warn")
        .env_remove("HERALD_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn herald serve");
    Server(child)
}

/// An endpoint that takes 5 ms per delivery (so many are in flight when a process dies),
/// answers 500 to the first `failures` requests, and remembers every `webhook-id`.
#[derive(Clone, Default)]
struct Receiver {
    ids: Arc<Mutex<Vec<String>>>,
    failures: Arc<AtomicUsize>,
    /// The `webhook-id`s answered 500.
    failed: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    async fn start(failures: usize) -> (Self, String) {
        let receiver = Receiver::default();
        receiver.failures.store(failures, Ordering::SeqCst);
        let state = receiver.clone();
        let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
            let state = state.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                let id = headers
                    .get("webhook-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let failing = state
                    .failures
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                if failing {
                    state.failed.lock().unwrap().push(id.clone());
                }
                state.ids.lock().unwrap().push(id);
                if failing {
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    axum::http::StatusCode::NO_CONTENT
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, url)
    }

    fn ids(&self) -> Vec<String> {
        self.ids.lock().unwrap().clone()
    }

    async fn until_received(&self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.ids().len() < count {
            assert!(
                Instant::now() < deadline,
                "{} of {count} arrived",
                self.ids().len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until every one of `expected` has arrived, then a little more for stragglers.
    async fn until_all(&self, expected: &HashSet<String>) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got: HashSet<String> = self.ids().into_iter().collect();
            if expected.is_subset(&got) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {} events never arrived",
                expected.difference(&got).count(),
                expected.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A workspace with an endpoint for `contact.*` at `url`.
async fn workspace_with_endpoint(db: &herald::store::Db, url: &str) -> WorkspaceId {
    let ws = {
        let mut tx = db.begin().await.unwrap();
        let ws = workspaces::ensure(tx.conn(), "acme", Utc::now())
            .await
            .unwrap()
            .id;
        tx.commit().await.unwrap();
        ws
    };
    let input = WebhookInput {
        url: url.to_owned(),
        events: vec!["contact.*".into()],
        description: None,
        enabled: true,
    };
    webhooks::create(db, ws, input, UrlGuard::ALLOW_PRIVATE, Utc::now())
        .await
        .unwrap();
    ws
}

/// Waits until a process has started reading the log for webhooks: events appended before
/// that are not the webhooks' (the fan-out starts at the log's end).
async fn until_fan_out_registered(db: &herald::store::Db) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut conn = db.read().await.unwrap();
        if events::consumer_position(conn.conn(), herald::webhooks::CONSUMER)
            .await
            .unwrap()
            .is_some()
        {
            return;
        }
        assert!(Instant::now() < deadline, "no process started the fan-out");
        drop(conn);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `EVENTS` contact updates, one subject each; returns their `webhook-id`s.
async fn append_events(db: &herald::store::Db, ws: WorkspaceId) -> HashSet<String> {
    let now = Utc::now();
    let news: Vec<NewEvent> = (0..EVENTS)
        .map(|n| {
            let contact = ContactId::generate();
            let data = ContactEvent {
                contact_id: contact,
                phone: format!("+2010{n:08}"),
                name: None,
                opted_out: false,
            };
            NewEvent::new(ws, EventType::ContactUpdated, contact, &data, now).unwrap()
        })
        .collect();
    let mut tx = db.begin().await.unwrap();
    events::append(tx.conn(), &news).await.unwrap();
    tx.commit().await.unwrap();
    let mut conn = db.read().await.unwrap();
    let (stored, _) = events::read_after(conn.conn(), 0, i64::MAX).await.unwrap();
    stored
        .iter()
        .filter(|event| event.kind == EventType::ContactUpdated)
        .map(|event| herald::domain::webhook::webhook_id(event.position))
        .collect()
}

/// Waits until `count` deliveries are recorded as succeeded (the recording follows the
/// requests by a moment), and returns how many are.
async fn succeeded_when(db: &herald::store::Db, count: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = succeeded(db).await;
        if now >= count || Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn succeeded(db: &herald::store::Db) -> i64 {
    common::count(
        db,
        "SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'succeeded'",
    )
    .await
}

async fn a_killed_dispatcher_loses_no_delivery(db: common::TestDb) {
    let (receiver, url) = Receiver::start(0).await;
    let ws = workspace_with_endpoint(&db, &url).await;
    let first = serve(&db.url);
    until_fan_out_registered(&db).await;
    let expected = append_events(&db, ws).await;
    assert_eq!(expected.len(), EVENTS);

    // Mid-delivery: some received, most not, some in flight.
    receiver.until_received(EVENTS / 5).await;
    first.kill();
    let at_kill = receiver.ids().len();
    assert!(at_kill < EVENTS, "the kill came before the end");

    let _second = serve(&db.url);
    receiver.until_all(&expected).await;
    let ids = receiver.ids();
    let distinct: HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), EVENTS, "every event, and nothing else");
    // What the killed process had delivered but not yet recorded is delivered again, with the
    // same webhook-id: at most one read batch.
    let repeats = ids.len() - distinct.len();
    assert!(repeats <= 1_024, "{repeats} repeats");
    assert_eq!(
        succeeded_when(&db, EVENTS as i64).await,
        EVENTS as i64,
        "each delivery recorded once"
    );
}

/// Two processes on one PostgreSQL database: the first attempt fails, so the endpoint's
/// deliveries go through the claimed path that both processes run, and still every attempt is
/// made once.
async fn two_processes_deliver_each_attempt_once(db: common::TestDb) {
    let (receiver, url) = Receiver::start(1).await;
    let ws = workspace_with_endpoint(&db, &url).await;
    let _first = serve(&db.url);
    let _second = serve(&db.url);
    until_fan_out_registered(&db).await;
    let expected = append_events(&db, ws).await;
    receiver.until_all(&expected).await;
    // The failed delivery is tried again after 10 s.
    receiver.until_received(EVENTS + 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ids = receiver.ids();
    let failed = receiver.failed.lock().unwrap().clone();
    assert_eq!(failed.len(), 1);
    assert_eq!(
        ids.iter().filter(|id| **id == failed[0]).count(),
        2,
        "the first, failed, delivery is attempted again, once"
    );
    let distinct: HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), EVENTS);
    assert_eq!(
        ids.len(),
        EVENTS + 1,
        "each attempt once: every event, and the one that failed twice"
    );
    assert_eq!(succeeded_when(&db, EVENTS as i64).await, EVENTS as i64);
}

dialect_tests!(a_killed_dispatcher_loses_no_delivery);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_processes_deliver_each_attempt_once() {
    match common::postgres().await {
        Some(db) => two_processes_deliver_each_attempt_once(db).await,
        None => eprintln!(
            "{} is not set: the two-process webhook test not run",
            common::POSTGRES_URL_VAR
        ),
    }
}
