//! Invariant 1 of DESIGN.md with a real process: `kill -9` a `herald serve` in the middle of a
//! campaign, start another, and every recipient is sent, none lost; repeats are only messages
//! that were in flight, they carry the same idempotency key, and the counters equal the truth.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use herald::domain::campaign::{Audience, CampaignStatus};
use herald::domain::pacing::Pacing;
use herald::domain::phone::Phone;
use herald::store::campaigns::{self, CampaignFields};
use herald::store::contacts::{self, ContactFields};
use herald::store::senders::{self, SenderFields};
use herald::store::workspaces;
use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const RECIPIENTS: u32 = 400;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(database_url: &str) -> Server {
    let child = Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("serve")
        .env("HERALD_DATABASE_URL", database_url)
        .env("HERALD_LISTEN", "127.0.0.1:0")
        .env("HERALD_CLAIM_LEASE_MS", "1500")
        .env("HERALD_LANE_LEASE_MS", "1500")
        .env("HERALD_ENGINE_TICK_MS", "50")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn herald serve");
    Server(child)
}

async fn a_killed_process_loses_no_recipient_and_repeats_only_what_was_in_flight(
    db: common::TestDb,
) {
    let gateway = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(100)))
        .mount(&gateway)
        .await;

    let url = db.url.clone();
    let now = Utc::now();
    let mut tx = db.begin().await.unwrap();
    let ws = workspaces::ensure(tx.conn(), "acme", now).await.unwrap().id;
    let people: Vec<ContactFields> = (0..RECIPIENTS)
        .map(|n| ContactFields::new(Phone::from_trusted(format!("+2010{n:08}"))))
        .collect();
    contacts::insert_new_batch(&mut tx, ws, &people, now)
        .await
        .unwrap();
    let config = json!({"url": format!("{}/send", gateway.uri())});
    let sender = SenderFields {
        name: "Gateway",
        provider: "http",
        provider_config: &config,
        timezone: "UTC",
        pacing: &Pacing::default(),
        warmup_started_on: None,
    };
    let sender = senders::insert(&mut tx, ws, &sender, "secret", now)
        .await
        .unwrap()
        .id;
    let fields = CampaignFields {
        name: "Crash".into(),
        sender_id: sender,
        template_id: None,
        content: "Hello <<phone>>".into(),
        media_url: None,
        audience: Audience::All,
        variables: BTreeMap::new(),
    };
    let campaign = campaigns::insert(tx.conn(), ws, &fields, now)
        .await
        .unwrap()
        .id;
    campaigns::launch(&mut tx, ws, campaign, now).await.unwrap();
    tx.commit().await.unwrap();

    let mut first = serve(&url);
    let deadline = Instant::now() + Duration::from_secs(30);
    while gateway.received_requests().await.unwrap_or_default().len() < 60 {
        assert!(Instant::now() < deadline, "the first process never sent");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.0.kill().expect("kill -9"); // SIGKILL: no shutdown, no cleanup
    first.0.wait().unwrap();
    let sent_before_kill: HashSet<String> = keys(&gateway).await.into_iter().collect();

    let _second = serve(&url);
    let deadline = Instant::now() + Duration::from_secs(60);
    let done = loop {
        let mut conn = db.read().await.unwrap();
        let current = campaigns::get(conn.conn(), ws, campaign).await.unwrap();
        if current.status == CampaignStatus::Completed {
            break current;
        }
        assert!(
            Instant::now() < deadline,
            "never completed: {:?}",
            current.counters()
        );
        drop(conn);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let all = keys(&gateway).await;
    let mut sends: HashMap<&str, usize> = HashMap::new();
    for key in &all {
        *sends.entry(key).or_default() += 1;
    }
    assert_eq!(
        sends.len(),
        RECIPIENTS as usize,
        "every recipient was sent, none lost"
    );
    let repeated: Vec<&&str> = sends
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(key, _)| key)
        .collect();
    assert!(sends.values().all(|&n| n <= 2), "nobody more than twice");
    assert!(
        repeated.iter().all(|key| sent_before_kill.contains(**key)),
        "only messages sent before the kill were repeated"
    );
    assert!(
        repeated.len() <= 256,
        "repeats bounded by one claimed batch: {}",
        repeated.len()
    );
    eprintln!(
        "{} sent before the kill, {} repeated after it",
        sent_before_kill.len(),
        repeated.len()
    );

    assert_eq!(done.sent_count, i64::from(RECIPIENTS));
    let mut conn = db.read().await.unwrap();
    assert_eq!(
        done.counters(),
        campaigns::counted_from_messages(conn.conn(), campaign)
            .await
            .unwrap()
    );
}

/// The idempotency keys of every request the gateway received, in order.
async fn keys(gateway: &MockServer) -> Vec<String> {
    gateway
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|request| {
            request
                .headers
                .get("idempotency-key")
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

dialect_tests!(a_killed_process_loses_no_recipient_and_repeats_only_what_was_in_flight);
